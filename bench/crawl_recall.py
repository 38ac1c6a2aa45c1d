"""Prefilter trade-off on the fixture news web (the demo web with tests/sites over it): fetches spent
against recall.

Three real crawls of the served fixture web (``sednaya-monitor crawl --json`` in a fresh process each),
differing only in what decides that a feed or sitemap entry is fetched:

- ``name only``: the entry must name the prison (the behaviour before issue 19: the topic file without
  its ``[prefilter]`` table, the registry without ``topic_sections``);
- ``name + region/event + sections``: the shipped prefilter (``crawlers/relevance.py`` ``prefilter``);
- ``no prefilter``: every entry fetched and judged on its full text (``prefilter = false`` everywhere).

The relevant set is what the third crawl publishes (full-text judgement of every entry, plus GDELT and
Google News discoveries). Recall of a policy = its published articles in that set / the set; fetches =
article pages requested.

The cost on real coverage: when ``/work/shared/datasets/multilingual-events/syria_events.jsonl.gz`` is
there (read in place, never copied; 297 real excerpts about Syria in 13 languages, none about the
prison), how many of their leads (headline when known + first 200 characters, standing in for a feed
entry's title and summary) the region/event rule would fetch, and how many the full-text filter would
then wrongly keep. Skipped when the file is absent.

Prints the figures and rewrites the ``## crawl recall`` section of docs/benchmarks.md. Run
``python -m bench.crawl_recall`` (about a minute).
"""

from __future__ import annotations

import re
import tempfile
import tomllib
from pathlib import Path
from typing import Any

from bench.report import write_section as write_doc_section
from crawlers.site_server import SiteServer
from sednaya_monitor.settings import Settings
from stream.article import Article
from tests.crawl_fixtures import FixtureWeb, _gdelt, _gnews, copy_test_web, crawl_json, render_registry
from tests.test_crawl_fixture_web import read_raw

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "benchmarks.md"
SECTION = "crawl recall"
SYRIA_EXCERPTS = Path("/work/shared/datasets/multilingual-events/syria_events.jsonl.gz")  # read in place
LEAD_CHARS = 200  # an excerpt's first characters stand in for a feed entry's summary
POLICIES = ("name only", "name + region/event + sections", "no prefilter")


def _registry_for(policy: str, text: str) -> str:
    if policy == "name only":
        return re.sub(r"(?m)^topic_sections = .*$", "", text)
    if policy == "no prefilter":
        text = re.sub(r"(?m)^prefilter = .*$", "", text)
        return text.replace("[[source]]\n", "[[source]]\nprefilter = false\n")
    return text


def _topic_for(policy: str, out: Path) -> Path:
    text = Settings().topic_file.read_text(encoding="utf-8")
    if policy == "name only":
        start = text.index("[prefilter]")
        end = text.index("\n[", start + 1)
        text = text[:start] + text[end + 1 :]
        assert "prefilter" not in tomllib.loads(text)
    out.write_text(text, encoding="utf-8")
    return out


def crawl(policy: str) -> tuple[dict[str, Any], set[str]]:
    """One crawl under ``policy``: the summary and the canonical URLs published."""
    with tempfile.TemporaryDirectory(prefix="bench-recall-") as tmp:
        root = Path(tmp) / "sites"
        copy_test_web(root)
        holder: dict[str, SiteServer] = {}
        server = SiteServer(
            root, dynamic={"gdelt": _gdelt(holder), "gnews": _gnews(holder)}, slow_s=3.0, huge_bytes=2_000_000
        )
        holder["server"] = server
        with server:
            registry = render_registry(root / "sources.toml", server, Path(tmp) / "sources.toml")
            registry.write_text(_registry_for(policy, registry.read_text(encoding="utf-8")), encoding="utf-8")
            topic = _topic_for(policy, Path(tmp) / "topic.toml")
            web = FixtureWeb(server=server, root=root, registry=registry)
            summary = crawl_json(web.env(Path(tmp) / "data", TOPIC_FILE=str(topic)))
            # Published articles as "site/path" (the ports differ between the three crawls).
            sites = {server.url(s).rstrip("/"): s for s in server.sites}
            published: set[str] = set()
            for record in read_raw(Path(tmp) / "data"):
                url = Article.from_json(record.value).canonical_url
                base = next(b for b in sites if url.startswith(b))
                published.add(sites[base] + url[len(base) :])
    return summary, published


def figures() -> list[str]:
    runs = {policy: crawl(policy) for policy in POLICIES}
    relevant = runs["no prefilter"][1]
    lines = [
        "| policy | entries fetched by the prefilter's decision | article pages fetched | relevant found | recall |",
        "|---|---|---|---|---|",
    ]
    for policy in POLICIES:
        summary, published = runs[policy]
        fetched = sum(summary["articles"].values())
        kept = summary.get("prefilter_kept", {})
        decided = ", ".join(f"{k} {v}" for k, v in sorted(kept.items())) or "-"
        found = len(published & relevant)
        lines.append(
            f"| {policy} | {decided}; skipped {summary['prefiltered']} | {fetched} | {found}/{len(relevant)} | "
            f"{found / len(relevant):.3f} |"
        )
    missed = sorted(relevant - runs["name + region/event + sections"][1])
    gnews = runs["name + region/event + sections"][0].get("google_news_links", {})
    lines += [
        "",
        f"- missed by the shipped prefilter: {', '.join(missed) or 'none'}",
        (
            f"- Google News article links: {gnews.get('decoded', 0)} decoded to the publisher URL without a fetch, "
            f"{gnews.get('opaque', 0)} opaque (rejected `unresolved_redirect`, not fetched)"
        ),
    ]
    return lines


def real_coverage_cost() -> list[str]:
    if not SYRIA_EXCERPTS.exists():
        return [f"- cost on real Syria coverage: skipped ({SYRIA_EXCERPTS} not on this machine)"]
    import gzip
    import json

    from crawlers.relevance import RelevanceFilter
    from stream.topic import load_topic

    relevance = RelevanceFilter(load_topic(Settings().topic_file))
    with gzip.open(SYRIA_EXCERPTS, "rt", encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle]
    fetched = kept = 0
    for row in rows:
        title = row.get("title") or ""
        if relevance.prefilter(f"{title}\n{row['text'][:LEAD_CHARS]}") is not None:
            fetched += 1
            kept += relevance.is_relevant(relevance.score(title, row["text"]))
    return [
        (
            f"- cost on real Syria coverage ({SYRIA_EXCERPTS.name}, read in place: {len(rows)} excerpts, 13 "
            f"languages, none about the prison): the region/event rule fetches {fetched} "
            f"({fetched / len(rows):.1%}) of their leads; the full-text filter keeps {kept} of those"
        )
    ]


def main() -> None:
    lines = [
        (
            "`python -m bench.crawl_recall`: three crawls of the fixture news web (tests/sites, 11 outlets) "
            "that differ only in the feed/sitemap prefilter; relevant = what the crawl without prefilter publishes."
        ),
        "",
        *figures(),
        *real_coverage_cost(),
    ]
    for line in lines:
        print(line)  # a benchmark's output
    write_doc_section(SECTION, lines, DOC)


if __name__ == "__main__":
    main()
