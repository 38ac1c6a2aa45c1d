"""Search-page benchmark: keep-alive clients on ``/`` of ``serve`` over a 10,000-article embedded store.

Generates the articles of ``bench.store_bench`` (fixed seed, five languages, stories of ten articles),
writes them and their stories to an embedded store in a temporary directory, starts
``sednaya-monitor serve`` on a free loopback port in a process of its own, then for each client count
(default 1, then 20) runs that many threads, each with one keep-alive connection
(``requests.Session``), requesting search pages from a fixed mix (English words, Arabic and French
names, phrases, a language filter, grouped and flat views) for ``--seconds``. Reports requests per
second, p50/p95/p99 latency and errors (any status other than 200, or a failed connection).

Each client count runs twice by default: with the answer cache (``serve_cache_entries``: repeated
searches are answered from kept store answers while the data is unchanged) and without it (every page
asks the store). ``--save``/``--before`` put an earlier run's figures (or older code's) beside these.

The clients share one Python process (the GIL): at 20 clients the client side costs some of the two
cores too, so the figures are a floor. Prints the figures and rewrites the ``## web_search (workers=N)`` section
of docs/benchmarks.md. Run: ``python -m bench.web_search [--articles N] [--seconds S] [--clients 1,20] [--workers W]
[--cache on,off] [--save F] [--before F]``.
Reads nothing from /work/shared.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import requests

from bench.report import write_section
from bench.store_bench import generate, percentile
from indexer.store_embedded import EmbeddedStore
from stream.article import Article
from stream.story import Story

SECTION = "web_search"
BATCH = 500
QUERIES = [
    {"q": "prison"},
    {"q": "Sednaya"},
    {"q": "صيدنايا"},
    {"q": "صيدنايا", "lang": "ar"},
    {"q": '"military prison"', "view": "flat"},
    {"q": "families OR survivors", "view": "flat"},
    {"q": "Saydnaya"},
    {"q": "report NOT amnesty", "sort": "date"},
    {"q": "torture", "lang": "en"},
    {"q": "détenus"},
]


def stories_of(articles: list[Article]) -> list[Story]:
    groups: dict[str, list[Article]] = {}
    for a in articles:
        if a.story_id:
            groups.setdefault(a.story_id, []).append(a)
    out = []
    for story_id, members in groups.items():
        times = [a.published or a.fetched_at for a in members]
        out.append(
            Story(
                id=story_id,
                title=members[0].title,
                first_seen=min(times),
                last_seen=max(times),
                article_count=len(members),
                source_count=len({a.source for a in members}),
                languages=tuple(sorted({a.lang for a in members})),
                sources=tuple(sorted({a.source for a in members})),
                first_article_id=members[0].id,
            )
        )
    return out


def fill(data_dir: Path, n: int) -> None:
    store = EmbeddedStore(data_dir / "store.sqlite3")
    store.ensure_ready()
    articles = generate(n)
    for i in range(0, len(articles), BATCH):
        failures = store.write_articles(articles[i : i + BATCH])
        assert not failures, failures[:3]
    store.write_stories(stories_of(articles))
    store.close()


def start_server(
    data_dir: Path, workers: int, cache_entries: int | None = None, code: Path | None = None
) -> tuple[subprocess.Popen[str], str]:
    """``serve`` over ``data_dir`` in a process of its own, from the checkout ``code`` (default: this one)."""
    cmd = [sys.executable, "-c", "from sednaya_monitor.cli import main; main()"]
    cmd += ["--data-dir", str(data_dir), "serve", "--port", "0", "--workers", str(workers)]
    env = {**os.environ, "SEDNAYA_MONITOR_LOG_LEVEL": "WARNING"}
    if code is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(code.resolve()), *filter(None, [env.get("PYTHONPATH")])])
    if cache_entries is not None:
        env["SEDNAYA_MONITOR_SERVE_CACHE_ENTRIES"] = str(cache_entries)
    # ``python -c`` puts the working directory first on sys.path: run another checkout from inside it
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env, cwd=None if code is None else code
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("serving on "):
        proc.kill()
        raise SystemExit(f"serve did not start: {line!r}")
    base = line.split()[2].rstrip("/")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if requests.get(base + "/healthz", timeout=5).status_code == 200:
                return proc, base
        except requests.ConnectionError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("serve did not answer /healthz")


def tree_cpu_s(pid: int) -> float:
    """CPU seconds (user + system, every thread) used so far by process ``pid`` and its descendants (``/proc``)."""
    parents: dict[int, int] = {}
    ticks: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended meanwhile
            continue
        parents[int(entry.name)] = int(fields[1])
        ticks[int(entry.name)] = int(fields[11]) + int(fields[12])  # utime, stime
    tree, todo = {pid}, [pid]
    while todo:
        parent = todo.pop()
        children = [p for p, pp in parents.items() if pp == parent and p not in tree]
        tree.update(children)
        todo += children
    return sum(ticks.get(p, 0) for p in tree) / os.sysconf("SC_CLK_TCK")


def run(base: str, clients: int, seconds: float) -> dict[str, float]:
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds
    barrier = threading.Barrier(clients)

    def client(k: int) -> None:
        nonlocal errors
        mine: list[float] = []
        bad = 0
        with requests.Session() as session:
            barrier.wait()
            i = k
            while time.monotonic() < stop_at:
                params = QUERIES[i % len(QUERIES)]
                i += 1
                started = time.perf_counter()
                try:
                    r = session.get(base + "/", params=params, timeout=60)
                    ok = r.status_code == 200 and len(r.content) > 0
                except requests.RequestException:
                    ok = False
                mine.append(time.perf_counter() - started)
                bad += 0 if ok else 1
        with lock:
            latencies.extend(mine)
            errors += bad

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - started
    return {
        "clients": clients,
        "requests": len(latencies),
        "rps": len(latencies) / wall,
        "p50": percentile(latencies, 0.50) * 1000,
        "p95": percentile(latencies, 0.95) * 1000,
        "p99": percentile(latencies, 0.99) * 1000,
        "errors": errors,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--articles", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=20.0, help="per client count")
    parser.add_argument("--clients", default="1,20", help="comma-separated client counts")
    parser.add_argument("--workers", type=int, default=1, help="serve --workers (processes)")
    parser.add_argument(
        "--cache",
        default="on,off",
        help="answer cache settings to run, comma-separated: on (serve_cache_entries default), off (0)",
    )
    parser.add_argument("--save", type=Path, help="write this run's figures to a JSON file")
    parser.add_argument(
        "--before", type=Path, help="a JSON file of an earlier run (--save, or the same figures of older code)"
    )
    parser.add_argument(
        "--before-code",
        type=Path,
        help="another checkout (e.g. the main branch's worktree): its `serve` runs beside this one's, each client "
        "count on both back to back, as the `before` rows",
    )
    parser.add_argument("--no-doc", action="store_true", help="print only, leave docs/benchmarks.md alone")
    args = parser.parse_args()
    counts = [int(c) for c in args.clients.split(",")]
    modes = [m.strip() for m in args.cache.split(",") if m.strip()]
    load = os.getloadavg()
    results: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="sednaya-web-bench-") as tmp:
        data_dir = Path(tmp)
        t0 = time.monotonic()
        fill(data_dir, args.articles)
        print(f"store: {args.articles} articles written in {time.monotonic() - t0:.1f} s")
        codes: list[tuple[str, Path | None]] = [("after", None)]
        if args.before_code is not None:
            codes.insert(0, ("before", args.before_code))
        for mode in modes:
            servers = {}
            try:
                for label, code in codes:  # both serve the same store; each runs while the other idles
                    servers[label] = start_server(data_dir, args.workers, None if mode == "on" else 0, code)
                    for params in QUERIES:  # warm-up: first connections per thread, filter options, facet columns
                        requests.get(servers[label][1] + "/", params=params, timeout=60)
                for clients in counts:
                    for label, _code in codes:  # the codes back to back, under the same load
                        proc, base = servers[label]
                        cpu_before = tree_cpu_s(proc.pid)
                        figures = run(base, clients, args.seconds)
                        cpu_ms = (tree_cpu_s(proc.pid) - cpu_before) * 1000 / max(1, figures["requests"])
                        result: dict[str, object] = {"code": label, "cache": mode, **figures, "cpu_ms": cpu_ms}
                        results.append(result)
                        print(
                            f"{label}: cache {mode}, {clients:>3} clients: {result['requests']:.0f} requests, "
                            f"{result['rps']:.1f} req/s, p50 {result['p50']:.0f} ms, p95 {result['p95']:.0f} ms, "
                            f"p99 {result['p99']:.0f} ms, errors {result['errors']:.0f}, "
                            f"server CPU {result['cpu_ms']:.1f} ms/request",
                            flush=True,
                        )
            finally:
                for proc, _base in servers.values():
                    proc.terminate()
                    proc.wait(timeout=30)
    if args.save:
        args.save.write_text(json.dumps(results, indent=1), encoding="utf-8")
    before = json.loads(args.before.read_text(encoding="utf-8")) if args.before else []
    if args.no_doc:
        return
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        (
            f"Measured {stamp} by `python -m bench.web_search --articles {args.articles} --seconds {args.seconds:g} "
            f"--workers {args.workers} --cache {args.cache}{' --before <file>' if before else ''}"
            f"{' --before-code <main checkout>' if args.before_code else ''}` "
            f"on {platform.machine()} with {os.cpu_count()} cores, shared with other work (load average "
            f"{load[0]:.1f} before, {os.getloadavg()[0]:.1f} after): "
            f"`serve --workers {args.workers}` (FastAPI + uvicorn) in processes of its own over an embedded store of "
            f"{args.articles} generated articles in 5 languages; each client is a thread with one keep-alive "
            "connection requesting the search page (`/`, grouped or flat, with the chart) from a fixed mix of "
            f"{len(QUERIES)} queries. Errors: any answer but 200, or a failed connection. `cache on`: the answer "
            "cache (`serve_cache_entries`, default 256) keeps the store's answers and the rendered page while the data "
            "is unchanged, so after the warm-up every page of this fixed mix is served from kept answers (an analyst "
            "repeating a search, a shared link, a reload); `cache off` (`serve_cache_entries=0`) asks the store and "
            "renders every page: what a never-seen search costs. `server CPU ms/request`: user and system time of "
            "the `serve` processes (`/proc`) during the run, divided by the requests answered: what a page costs "
            "(it grows with the machine's load far less than latency does)."
            + (
                " `before` rows: the same clients, in the same session, against `serve` of the code before the "
                "change described in docs/search.md (Speed), saved with `--save` and passed with `--before`."
                if before
                else ""
            )
            + (
                " `before` rows: `serve` of the code before the change described in docs/search.md (Speed), run "
                "beside this one's over the same store, each client count on the two back to back (same load)."
                if args.before_code
                else ""
            )
        ),
        "",
        "| code | cache | clients | requests | req/s | p50 ms | p95 ms | p99 ms | errors | server CPU ms/request |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, rows in (("before", before), ("after", results)):
        for r in rows:
            lines.append(
                f"| {r.get('code', label)} | {r.get('cache', 'none')} | {r['clients']:.0f} | {r['requests']:.0f} "
                f"| {r['rps']:.1f} "
                f"| {r['p50']:.0f} | {r['p95']:.0f} | {r['p99']:.0f} | {r['errors']:.0f} | "
                + (f"{r['cpu_ms']:.1f} |" if "cpu_ms" in r else "- |")
            )
    write_section(f"{SECTION} (workers={args.workers})", lines)
    print(f"docs/benchmarks.md: section {SECTION} (workers={args.workers}) rewritten")


if __name__ == "__main__":
    main()
