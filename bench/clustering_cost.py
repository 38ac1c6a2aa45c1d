"""Cost of the embed stage: articles/s of the whole stage next to ``model.encode`` alone on the same
texts (one run), and how the time per article changes from 1k to 20k articles streamed.

The scaling curve streams articles with their vectors supplied (as the distributed mode's
``stream.embedding_stage`` does), so it measures what could grow with the corpus (duplicates, anchors,
candidates, scoring, state); the model's cost per article is constant and measured in the first part.
Vectors beyond ``--base`` real ones are mixtures of two real vectors plus noise (distinct, with a
realistic similarity spread); the base vectors come from the embedding cache (bench/embedding_cache.py)
when the quality benchmark filled it.

READS THE SHARED DATA FOLDER ../shared/datasets/news-clustering/ (override with ``--data DIR``) for
real news texts (NeuS, 2021 roundups, BASIL, SemEval); they are used in place, not copied. To reach
20k distinct articles the stream recombines titles and texts of different records after the ~12.7k
originals. Articles get synthetic publication times, ``--per-day`` a day in stream order, so the
7-day look-back window holds ~7 x per-day articles whatever the stream length.

Rewrites the ``## clustering_cost`` section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from prometheus_client import CollectorRegistry

from bench.embedding_cache import DEFAULT_CACHE, CachedEmbedder
from bench.proc_memory import memory_mb
from bench.report import write_section as write_doc_section
from sednaya_monitor.prometheus_metrics import PrometheusMetrics
from sednaya_monitor.settings import load_settings
from sednaya_monitor.wiring import make_assign_stage, make_embedder
from stream.article import Article
from stream.bus import H_ENTERED_AT, H_SCHEMA
from stream.bus_embedded import EmbeddedBus
from stream.embed_text import embed_text
from stream.embedding import Embedder
from stream.text import content_hash
from stream.worker import StageWorker

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "datasets" / "news-clustering"
DOC = ROOT / "docs" / "benchmarks.md"
SECTION = "clustering_cost"
SEED = 5
START = datetime(2021, 1, 1, tzinfo=UTC)
BATCH = 64  # records per stage batch (settings.batch_size default)
NOISE = 0.02  # per-dimension noise of mixed vectors (unit vectors have ~0.05 per dimension)


class TimedEmbedder:
    """The real embedder, timing its calls (to split model time from the rest of the stage)."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        # ``model_languages = "auto"`` reads this flag: without it the stage would run the default
        # multilingual model as an English-only one (raw cosines, other thresholds, other stories)
        self.multilingual = bool(getattr(inner, "multilingual", False))
        self.seconds = 0.0
        self.texts = 0

    @property
    def dim(self) -> int:
        return self.inner.dim

    def embed(self, texts: Sequence[str]) -> NDArray[np.float32]:
        start = time.perf_counter()
        out = self.inner.embed(texts)
        self.seconds += time.perf_counter() - start
        self.texts += len(texts)
        return out


def texts(data: Path) -> list[tuple[str, str]]:
    """(title, text) of every record: roundups, BASIL and SemEval first (shuffled; the quality benchmark
    cached their vectors), then NeuS (shuffled). SemEval texts are bodies without a title."""
    first: list[tuple[str, str]] = []
    for name in ("allsides_roundups_2021.jsonl.gz", "basil_triplets.jsonl.gz"):
        with gzip.open(data / name, "rt", encoding="utf-8") as fh:
            first += [(r.get("title") or "", r.get("text") or "") for r in map(json.loads, fh)]
    with gzip.open(data / "semeval2022_task8_pairs_hfl_sample.jsonl.gz", "rt", encoding="utf-8") as fh:
        seen: set[str] = set()
        for r in map(json.loads, fh):
            for key in ("text1", "text2"):
                if r[key] not in seen:
                    seen.add(r[key])
                    first.append(("", r[key]))
    with gzip.open(data / "allsides_neus_undated.jsonl.gz", "rt", encoding="utf-8") as fh:
        neus = [(r.get("title") or "", r.get("text") or "") for r in map(json.loads, fh)]
    rng = random.Random(SEED)
    rng.shuffle(first)
    rng.shuffle(neus)
    return first + neus


def articles(pairs: list[tuple[str, str]], n: int, per_day: int) -> list[Article]:
    rng = random.Random(SEED)
    base = pairs[:]
    while len(base) < n:  # recombine: a title of one record with the text of another
        a, b = rng.choice(pairs), rng.choice(pairs)
        base.append((a[0], b[1]))
    out = []
    for i, (title, text) in enumerate(base[:n]):
        when = START + timedelta(days=i // per_day, seconds=i % per_day)
        ident = content_hash(f"cost-{i}")[:32]
        out.append(
            Article(
                id=ident,
                url=f"https://bench.example/{ident}",
                canonical_url=f"https://bench.example/{ident}",
                source=f"src-{i % 40}",
                channel="import",
                backfill=True,
                lang="en",
                title=title,
                text=text,
                authors=(),
                published=when,
                date_source="meta",
                discovered_at=when,
                fetched_at=when,
                content_sha256=content_hash(text + str(i)),
                relevance=None,
            )
        )
    return out


def run(data: Path, sample: int, total: int, per_day: int, base: int, cache: Path) -> dict[str, Any]:
    settings = load_settings(environ={})
    model = make_embedder(settings)
    _ = model.dim  # load once, outside every timing
    pool = articles(texts(data), total, per_day)
    result: dict[str, Any] = {"sample": sample, "total": total, "per_day": per_day, "base": base}

    # 1. model.encode alone, then the whole stage (process) and the stage on the bus, same texts.
    head = pool[:sample]
    start = time.perf_counter()
    model.embed([embed_text(a.title, a.text) for a in head])
    result["encode_s"] = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        stage = make_assign_stage(
            settings.replace(data_dir=Path(tmp)), PrometheusMetrics(CollectorRegistry()), embedder=model
        )
        start = time.perf_counter()
        for i in range(0, sample, BATCH):
            stage.process(head[i : i + BATCH])
        result["process_s"] = time.perf_counter() - start
        stage.close()
    with tempfile.TemporaryDirectory() as tmp:
        s = settings.replace(data_dir=Path(tmp))
        bus = EmbeddedBus(Path(tmp) / "bus.sqlite3")
        bus.ensure_topics(s.topics)
        for a in head:
            bus.publish(s.topic_raw, a.id, a.to_bytes(), {H_SCHEMA: "1", H_ENTERED_AT: "2021-01-01T00:00:00Z"})
        bus.flush()
        metrics = PrometheusMetrics(CollectorRegistry())
        stage = make_assign_stage(s, metrics, embedder=model, bus=bus)
        worker = StageWorker(bus, s.topic_raw, "embed", stage, metrics=metrics, batch_size=BATCH)
        start = time.perf_counter()
        while worker.run_once():
            pass
        result["bus_s"] = time.perf_counter() - start
        worker.close()
        stage.close()
        bus.close()

    # 2. streaming 1k..total with vectors supplied: time per article per 1k block.
    cached = CachedEmbedder(model, settings.model_name, cache)
    real = cached.embed([embed_text(a.title, a.text) for a in pool[:base]])
    rng = np.random.default_rng(SEED)
    supplied: list[Article] = []
    for i, article in enumerate(pool):
        if i < base:
            vec = real[i]
        else:
            a, b = rng.integers(0, base, size=2)
            noise = np.asarray(rng.normal(0.0, NOISE, size=real.shape[1]), dtype=np.float32)
            mixed = real[a] + real[b] + noise
            vec = mixed / np.linalg.norm(mixed)
        supplied.append(article.replace(embedding=tuple(float(x) for x in vec)))
    timed = TimedEmbedder(model)
    blocks: list[dict[str, float]] = []
    result["rss_before_mb"] = memory_mb()  # model, texts and supplied vectors loaded; no story state yet
    with tempfile.TemporaryDirectory() as tmp:
        stage = make_assign_stage(
            settings.replace(data_dir=Path(tmp)), PrometheusMetrics(CollectorRegistry()), embedder=timed
        )
        for block_start in range(0, total, 1000):
            block = supplied[block_start : block_start + 1000]
            model_before = timed.seconds
            start, cpu_start = time.perf_counter(), time.process_time()
            for i in range(0, len(block), BATCH):
                stage.process(block[i : i + BATCH])
            elapsed = time.perf_counter() - start
            cpu = time.process_time() - cpu_start  # the vectors are supplied: no model thread runs here
            model_s = timed.seconds - model_before
            active = len(stage.state.active_ids(block[-1].published or START))
            blocks.append(
                {
                    "upto": block_start + len(block),
                    "ms_per_article": 1000 * elapsed / len(block),
                    "cpu_ms": 1000 * cpu / len(block),
                    "model_ms": 1000 * model_s / len(block),
                    "rest_ms": 1000 * (elapsed - model_s) / len(block),
                    "active": active,
                    "stories": stage.state.story_count(),
                    "rss_mb": memory_mb(),
                }
            )
            print(f"  {blocks[-1]}", flush=True)
        stage.close()
    result["blocks"] = blocks
    result["peak_mb"] = memory_mb(field="VmHWM")
    result["model"] = settings.model_name
    return result


def report(r: dict[str, Any]) -> list[str]:
    n = r["sample"]
    lines = [
        (
            f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by `python -m bench.clustering_cost`, reading real "
            "news texts from the shared folder `../shared/datasets/news-clustering/` in place (NeuS, 2021 roundups, "
            "BASIL, SemEval; recombined title/text pairs past the originals). Model "
            f"`{r['model']}` on CPU (2 cores, shared), batches of {BATCH}, synthetic publication times "
            f"{r['per_day']} articles a day (the 7-day window holds ~7x that)."
        ),
        "",
        f"Same {n} texts, one run:",
        "",
        "| what | seconds | articles/s |",
        "|---|---|---|",
        f"| `model.encode` alone (title + lead window) | {r['encode_s']:.1f} | {n / r['encode_s']:.0f} |",
        (
            f"| whole stage, `AssignStage.process` (embed, duplicates, clustering, state) | {r['process_s']:.1f} | "
            f"{n / r['process_s']:.0f} |"
        ),
        (
            f"| whole stage on the embedded bus (`StageWorker`: poll, decode, publish, flush, commit) | "
            f"{r['bus_s']:.1f} | {n / r['bus_s']:.0f} |"
        ),
        "",
        (
            f"Streaming {r['total']:,} articles through one stage (state growing), vectors supplied ({r['base']:,} "
            "real, the rest mixtures of two real ones plus noise): time per article in each block of 1,000 "
            "(duplicates, anchors, candidates, scoring, merges, SQLite state), and the process's resident memory "
            f"after each block (before the first: {r['rss_before_mb']:.0f} MB, the model, the texts and the "
            "supplied vectors; what it gains is the story state's caches and SQLite's)."
        ),
        "",
        (
            "| articles streamed | ms/article (wall) | CPU ms/article | active stories around an article "
            "| stories so far | resident MB |"
        ),
        "|---|---|---|---|---|---|",
    ]
    for b in r["blocks"]:
        lines.append(
            f"| {b['upto']:,} | {b['ms_per_article']:.2f} | {b['cpu_ms']:.2f} | {b['active']} | {b['stories']:,} | "
            f"{b['rss_mb']:.0f} |"
        )
    first, last = r["blocks"][0], r["blocks"][-1]
    lines += [
        "",
        (
            f"CPU per article: {first['cpu_ms']:.2f} ms in the first 1k, {last['cpu_ms']:.2f} ms in the last "
            f"(x{last['cpu_ms'] / max(first['cpu_ms'], 1e-9):.2f}) while the corpus grew "
            f"{last['upto'] / first['upto']:.0f}-fold and the stories so far "
            f"{last['stories'] / first['stories']:.0f}-fold, "
            f"with {first['active']} -> {last['active']} active stories around an article (those out of reach are "
            "left out unscored, `stream.clustering.Reach`; what grows with the state is one matrix product over "
            "every story of the content index, up to 20,000, beside the product over the 5,000 recent articles "
            "and the merge passes)."
        ),
        "",
        (
            f"Memory: {r['rss_before_mb']:.0f} MB before the stream, {first['rss_mb']:.0f} MB after "
            f"{first['upto']:,} articles, {last['rss_mb']:.0f} MB after {last['upto']:,} "
            f"({last['rss_mb'] - first['rss_mb']:+.0f} MB for {last['upto'] - first['upto']:,} more articles and "
            f"{last['stories'] - first['stories']:,} more stories); peak {r['peak_mb']:.0f} MB."
        ),
        "",
    ]
    return lines


def write_section(lines: list[str]) -> None:
    write_doc_section(SECTION, lines, DOC)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DATA, help="the shared news-clustering folder")
    parser.add_argument("--sample", type=int, default=500, help="texts for the encode-vs-stage comparison")
    parser.add_argument("--total", type=int, default=20000, help="articles streamed for the scaling curve")
    parser.add_argument("--per-day", type=int, default=100, help="synthetic articles per day")
    parser.add_argument("--base", type=int, default=3000, help="real vectors behind the scaling curve")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="embedding cache (outside the repo)")
    parser.add_argument("--no-write", action="store_true", help="print only, leave docs/benchmarks.md alone")
    args = parser.parse_args()
    print(f"reading news texts from the shared benchmark data in {args.data} (used in place, not copied)")
    lines = report(run(args.data, args.sample, args.total, args.per_day, args.base, args.cache))
    print("\n".join(lines))
    if not args.no_write:
        write_section(lines)


if __name__ == "__main__":
    main()
