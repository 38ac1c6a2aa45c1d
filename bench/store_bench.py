"""Search-store benchmark: bulk indexing rate and query latency, embedded store vs the Elasticsearch adapter.

Generates N articles (default 50,000) in English, French, German, Turkish and Arabic from a fixed seed,
grouped in stories, and for each store (the embedded SQLite FTS5 store in a temporary directory; the
Elasticsearch adapter against a noida-db stand-in started on a free loopback port):

- writes them with ``write_articles`` in batches of ``BATCH`` (what the index stage does) and reports
  documents per second (the Elasticsearch side without per-batch refresh, then one refresh);
- runs a fixed mix of queries (words, phrases, booleans, filters, Arabic variants, date sort, facets,
  by-story) ``--rounds`` times and reports p50/p95 latency per kind and overall.

Prints the figures and rewrites the ``## store_bench`` section of docs/benchmarks.md.
Run: ``python -m bench.store_bench [--articles N] [--rounds R]``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.report import write_section as write_doc_section
from indexer.names import NameGroups
from indexer.store import SearchRequest, SearchStore
from indexer.store_elastic import ElasticStore
from indexer.store_embedded import EmbeddedStore
from sednaya_monitor.settings import load_settings
from sednaya_monitor.wiring import elastic_config
from stream.article import Article
from stream.canonical_url import id_for_url
from stream.text import content_hash
from stream.topic import load_topic
from tests.ports import free_port

SECTION = "store_bench"
ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "benchmarks.md"
BATCH = 500  # articles per write_articles call (a large index-stage batch)
SEED = 7
STAND_IN_TIMEOUT_S = 600.0  # the stand-in scans every document per clause: seconds per query at 50k articles
WORDS = {
    "en": [
        "prison",
        "detainees",
        "families",
        "report",
        "amnesty",
        "officials",
        "briefing",
        "crematorium",
        "military",
        "executions",
        "missing",
        "relatives",
        "court",
        "survivors",
        "torture",
        "released",
        "cells",
        "satellite",
        "images",
        "investigation",
        "war",
    ],
    "fr": [
        "prison",
        "détenus",
        "familles",
        "rapport",
        "amnistie",
        "responsables",
        "exécutions",
        "disparus",
        "tribunal",
        "survivants",
        "torture",
        "libérés",
        "cellules",
        "images",
        "enquête",
        "guerre",
    ],
    "de": [
        "Gefängnis",
        "Häftlinge",
        "Familien",
        "Bericht",
        "Amnestie",
        "Behörden",
        "Hinrichtungen",
        "Vermisste",
        "Gericht",
        "Überlebende",
        "Folter",
        "freigelassen",
        "Zellen",
        "Bilder",
        "Untersuchung",
        "Krieg",
    ],
    "tr": [
        "hapishane",
        "tutuklular",
        "aileler",
        "rapor",
        "af",
        "yetkililer",
        "infazlar",
        "kayıplar",
        "mahkeme",
        "hayatta",
        "kalanlar",
        "işkence",
        "serbest",
        "hücreler",
        "görüntüler",
        "soruşturma",
        "savaş",
    ],
    "ar": [
        "سجن",
        "معتقلين",
        "عائلات",
        "تقرير",
        "العفو",
        "المسؤولين",
        "الإعدامات",
        "المفقودين",
        "محكمة",
        "الناجين",
        "التعذيب",
        "الإفراج",
        "زنازين",
        "صور",
        "تحقيق",
        "الحرب",
    ],
}
NAMES = {"en": "Sednaya", "fr": "Saydnaya", "de": "Saidnaya", "tr": "Sednaya", "ar": "صيدنايا"}
SOURCES = [f"source-{i:02d}" for i in range(40)]
SOURCE_TYPES = ["wire", "public-broadcaster", "pan-arab", "syrian-independent", "ngo", "other"]
QUERIES: list[tuple[str, dict[str, object]]] = [
    ("word", {"query": "Sednaya"}),
    ("rare word", {"query": "satellite"}),
    ("phrase", {"query": '"missing relatives"'}),
    ("boolean", {"query": "(amnesty OR report) AND prison NOT torture"}),
    ("arabic variant", {"query": "صیدنایا"}),
    ("field filter", {"query": "lang:fr détenus"}),
    ("filters + date sort", {"query": "", "lang": "ar", "sort": "date"}),
    ("facets", {"query": "Sednaya", "facets": True}),
    ("by story", {"query": "executions", "by_story": True}),
    ("highlight", {"query": "crematorium", "highlight": True}),
    ("word forms", {"query": "detainee"}),
    ("minus", {"query": "Saydnaya -torture"}),
    ("exact name", {"query": '"Sednaya"'}),
]


def generate(n: int) -> list[Article]:
    rng = random.Random(SEED)
    start = datetime(2017, 1, 1, tzinfo=UTC)
    langs = list(WORDS)
    out = []
    for i in range(n):
        lang = langs[i % len(langs)] if rng.random() < 0.8 else "en"
        words = WORDS[lang]
        text = " ".join(rng.choice(words) if rng.random() > 0.05 else NAMES[lang] for _ in range(80)) + "."
        title = " ".join(rng.choice(words) for _ in range(6)) + (f" {NAMES[lang]}" if rng.random() < 0.5 else "")
        url = f"https://{rng.choice(SOURCES)}.example/{i}"
        ident, canonical = id_for_url(url)
        published = start + timedelta(minutes=37 * i)
        out.append(
            Article(
                id=ident,
                url=url,
                canonical_url=canonical,
                source=url.split("/")[2].split(".", maxsplit=1)[0],
                channel="feed",
                backfill=True,
                lang=lang,
                title=title,
                text=text,
                authors=(),
                published=published,
                date_source="feed",
                discovered_at=published,
                fetched_at=published,
                content_sha256=content_hash(text),
                relevance=None,
                story_id=f"story-{i // 10:05d}",
                story_role="first" if i % 10 == 0 else "follow_up",
                extra={"source_type": rng.choice(SOURCE_TYPES)},
            )
        )
    return out


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def measure(
    store: SearchStore, articles: list[Article], rounds: int, after_write: Callable[[], object]
) -> dict[str, object]:
    started = time.perf_counter()
    failures = 0
    for i in range(0, len(articles), BATCH):
        failures += len(store.write_articles(articles[i : i + BATCH]))
    after_write()
    write_s = time.perf_counter() - started
    count = store.count_articles()
    latencies: dict[str, list[float]] = {name: [] for name, _ in QUERIES}
    cpu: dict[str, list[float]] = {name: [] for name, _ in QUERIES}
    totals: dict[str, int] = {}
    for _ in range(rounds):
        for name, params in QUERIES:
            request = SearchRequest(**params)  # type: ignore[arg-type]
            t0, c0 = time.perf_counter(), time.process_time()
            result = store.search(request)
            latencies[name].append((time.perf_counter() - t0) * 1000)
            cpu[name].append((time.process_time() - c0) * 1000)
            totals[name] = result.total
    return {
        "docs_per_s": len(articles) / write_s,
        "write_s": write_s,
        "count": count,
        "failures": failures,
        "latencies": latencies,
        "cpu": cpu,
        "totals": totals,
    }


def _wait(url: str, proc: subprocess.Popen[bytes], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"noida-db exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "/", timeout=2):
                return
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.1)
    raise RuntimeError(f"noida-db did not answer on {url} within {timeout_s} s")


def stop_process_group(proc: subprocess.Popen[bytes], timeout_s: float = 10.0) -> None:
    """SIGTERM the process group of ``proc`` (the console script and the server binary it runs), then
    SIGKILL what is left after ``timeout_s``."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            proc.poll()
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                proc.wait()
                return
            time.sleep(0.05)
    proc.wait()


def _names() -> NameGroups:
    """The name groups of the repository's topic file (what ``wiring.make_store`` gives the stores)."""
    return NameGroups.from_topic(load_topic(load_settings(environ={}).topic_file))


def run_embedded(articles: list[Article], rounds: int, work: Path) -> dict[str, object]:
    store = EmbeddedStore(work / "store.sqlite3", names=_names())
    store.ensure_ready()
    try:
        return measure(store, articles, rounds, lambda: None)
    finally:
        store.close()


def run_stand_in(articles: list[Article], rounds: int, work: Path) -> dict[str, object]:
    binary = shutil.which("noida-db")
    if binary is None:
        raise RuntimeError("noida-db is not installed (pip install -e '.[dev]')")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with (work / "noida.log").open("wb") as log:
        proc = subprocess.Popen(
            [
                binary,
                "start",
                "--only",
                "elasticsearch",
                "--elasticsearch-port",
                str(port),
                "--data-dir",
                str(work / "es"),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # the console script runs the binary as a child: stop the whole group
        )
    try:
        _wait(url, proc)
        settings = load_settings(
            environ={},
            overrides={"data_dir": work, "store": url, "es_prefix": "bench", "es_timeout_s": STAND_IN_TIMEOUT_S},
        )
        store = ElasticStore(elastic_config(settings), names=_names())
        store.ensure_ready()
        try:
            return measure(store, articles, rounds, lambda: store.client.indices.refresh(index=store.articles_alias))
        finally:
            store.close()
    finally:
        stop_process_group(proc)


def _write_section(lines: list[str]) -> None:
    write_doc_section(SECTION, lines, DOC)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--articles", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=20, help="times the query mix is run on the embedded store")
    parser.add_argument(
        "--stand-in-rounds", type=int, default=2, help="times on the stand-in (seconds per query at 50k articles)"
    )
    parser.add_argument("--no-doc", action="store_true", help="print only, leave docs/benchmarks.md alone")
    parser.add_argument(
        "--embedded-only", action="store_true", help="skip the stand-in (minutes per round at 50k articles)"
    )
    parser.add_argument(
        "--before",
        type=Path,
        help="a JSON file of an earlier run (--save) of the embedded store: its p50/p95 are shown next to this run's",
    )
    parser.add_argument("--save", type=Path, help="write this run's embedded figures to a JSON file")
    args = parser.parse_args()
    load = os.getloadavg()
    t0 = time.perf_counter()
    articles = generate(args.articles)
    print(f"generated {len(articles)} articles in {time.perf_counter() - t0:.1f} s", flush=True)
    results: dict[str, dict[str, object]] = {}
    runners = [("embedded", run_embedded)] + ([] if args.embedded_only else [("stand-in", run_stand_in)])
    with tempfile.TemporaryDirectory(prefix="store-bench-") as tmp:
        for name, runner in runners:
            work = Path(tmp) / name
            work.mkdir()
            print(f"== {name}", flush=True)
            rounds = args.rounds if name == "embedded" else args.stand_in_rounds
            results[name] = runner(articles, rounds, work)
            r = results[name]
            print(
                f"{name}: {r['docs_per_s']:.0f} docs/s ({r['write_s']:.1f} s, {r['count']} stored, "
                f"{r['failures']} failed)",
                flush=True,
            )
    if args.save:
        args.save.write_text(json.dumps(results["embedded"], indent=1), encoding="utf-8")
    if args.before:
        before = json.loads(args.before.read_text(encoding="utf-8"))
        results = {"embedded before": before, "embedded": results["embedded"], **results}
    command = f"`python -m bench.store_bench --articles {args.articles} --rounds {args.rounds}"
    command += " --embedded-only" if args.embedded_only else f" --stand-in-rounds {args.stand_in_rounds}"
    command += " --before <file>`" if args.before else "`"
    lines = [
        (
            f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by {command}: {args.articles} generated articles "
            f"(80-word texts in en/fr/de/tr/ar, stories of 10, no embeddings) written with `write_articles` in "
            f"batches of {BATCH}, then the query mix below run one query at a time, {args.rounds} times on the "
            "embedded store (SQLite FTS5, temporary file), with word forms (`stream.word_forms`) and the name groups "
            "of `stream/topics/sednaya.toml` (`indexer.names`: `Sednaya` also searches its 20 other spellings)"
            + (
                ""
                if args.embedded_only
                else f", and {args.stand_in_rounds} times on the Elasticsearch adapter against the noida-db 0.2.2 "
                "stand-in on loopback (no refresh during the load, one refresh after it; the stand-in is not "
                "Elasticsearch: its figures say what the adapter costs against an in-process server, not how a "
                "cluster performs)"
            )
            + f". Load average {load[0]:.1f} before the run, {os.getloadavg()[0]:.1f} after it (a machine shared "
            "with other work: wall-clock latencies grow with it; `CPU` is the process time each query took, "
            "which does not)."
            + (
                " `embedded before` is the same run, harness included, on the store code before the change "
                "described in docs/search.md (Speed), saved with `--save` and passed with `--before`."
                if args.before
                else ""
            )
        ),
        "",
        "| store | docs/s bulk-indexed | load s | all queries p50 ms | all queries p95 ms | CPU p50 ms | CPU p95 ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        every = [v for vals in r["latencies"].values() for v in vals]  # type: ignore[attr-defined]
        spent = [v for vals in r.get("cpu", {}).values() for v in vals]  # type: ignore[attr-defined]
        cpu_cells = f"{statistics.median(spent):.1f} | {percentile(spent, 0.95):.1f}" if spent else "- | -"
        lines.append(
            f"| {name} | {r['docs_per_s']:.0f} | {r['write_s']:.1f} | {statistics.median(every):.1f} | "
            f"{percentile(every, 0.95):.1f} | {cpu_cells} |"
        )
    names = list(results)
    lines += [
        "",
        "| query | hits (" + " / ".join(names) + ") | " + " | ".join(f"{n} p50 / p95 ms" for n in names) + " |",
        "|---|---|" + "---|" * len(names),
    ]
    for name, params in QUERIES:
        cells = []
        for store_name in names:
            vals = results[store_name]["latencies"].get(name, [])  # type: ignore[attr-defined]
            cells.append(f"{statistics.median(vals):.1f} / {percentile(vals, 0.95):.1f}" if vals else "-")
        hits = " / ".join(str(results[s]["totals"].get(name, "-")) for s in names)  # type: ignore[attr-defined]
        shown = ", ".join(f"{k}={v!r}" for k, v in params.items())
        lines.append(f"| {name} (`{shown}`) | {hits} | " + " | ".join(cells) + " |")
    print("\n".join(lines))
    if not args.no_doc:
        _write_section(lines)


if __name__ == "__main__":
    main()
