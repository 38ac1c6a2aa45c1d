"""Crawl figures on the fixture news web (the demo web with tests/sites over it): extraction speed and
agreement with the golden files, and one full crawl (feeds, sitemaps, GDELT and Google News stand-ins) through the CLI.

Run ``python -m bench.crawl``; prints the figures and rewrites the ``## crawl`` section of
docs/benchmarks.md. The machine is shared: times are from one run, not a controlled measurement.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path

from bench.report import write_section as write_doc_section
from crawlers.site_server import SiteServer
from scripts.regenerate_extraction_golden import golden_path, observe, pages
from tests.crawl_fixtures import FixtureWeb, _gdelt, _gnews, copy_test_web, crawl_json, render_registry

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "benchmarks.md"
SECTION = "crawl"
REPEAT = 5  # extraction passes over the fixture pages (the first includes lingua's model loading)


def extraction_figures() -> list[str]:
    items = pages()
    per_pass: list[float] = []
    agree = fields = 0
    for i in range(REPEAT):
        started = time.perf_counter()
        results = [observe(p) for p in items]
        per_pass.append(time.perf_counter() - started)
        if i == 0:
            for page, actual in zip(items, results, strict=True):
                expected = json.loads(golden_path(page).read_text(encoding="utf-8"))["expected"]
                for key in expected:
                    fields += 1
                    agree += actual.get(key) == expected[key]
    warm = statistics.median(per_pass[1:])
    return [
        (
            f"- extraction: {len(items)} fixture pages, first pass {per_pass[0]:.2f} s (loads the language models), "
            f"then median {warm:.3f} s per pass = {len(items) / warm:.0f} pages/s"
        ),
        f"- golden agreement: {agree}/{fields} fields",
    ]


def crawl_figures() -> list[str]:
    with tempfile.TemporaryDirectory(prefix="bench-crawl-") as tmp:
        root = Path(tmp) / "sites"
        copy_test_web(root)
        holder: dict[str, SiteServer] = {}
        server = SiteServer(
            root, dynamic={"gdelt": _gdelt(holder), "gnews": _gnews(holder)}, slow_s=3.0, huge_bytes=2_000_000
        )
        holder["server"] = server
        with server:
            registry = render_registry(root / "sources.toml", server, Path(tmp) / "sources.toml")
            web = FixtureWeb(server=server, root=root, registry=registry)
            started = time.perf_counter()
            first = crawl_json(web.env(Path(tmp) / "data"))
            first_s = time.perf_counter() - started
            hits_first = len(server.hits)
            started = time.perf_counter()
            second = crawl_json(web.env(Path(tmp) / "data"))
            second_s = time.perf_counter() - started
            hits_second = len(server.hits) - hits_first
    fetches = sum(sum(c.values()) for c in first["fetches"].values())
    return [
        (
            f"- first crawl of the fixture web: {first_s:.1f} s wall (process start included), {hits_first} HTTP "
            f"requests, {fetches} counted fetches, {first['published']} articles published, "
            f"{sum(first['extraction'].values()) - first['extraction'].get('ok', 0)} rejected with a reason"
        ),
        (
            f"- second crawl, nothing new: {second_s:.1f} s, {hits_second} HTTP requests "
            f"({second['published']} published, {second['skipped_seen']} links already seen); the en site's "
            "robots.txt Crawl-delay (0.25 s) paces most of both runs"
        ),
    ]


def write_section(lines: list[str]) -> None:
    write_doc_section(SECTION, lines, DOC)


def main() -> None:
    lines = [
        "`python -m bench.crawl`: the fixture news web of the tests (5 languages, broken cases included).",
        "",
        *extraction_figures(),
        *crawl_figures(),
    ]
    for line in lines:
        print(line)
    write_section(lines)


if __name__ == "__main__":
    main()
