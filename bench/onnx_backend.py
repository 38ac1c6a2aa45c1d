"""all-MiniLM-L6-v2 on the torch, onnx and onnx-int8 backends: encode rate and identical story decisions.

READS THE SHARED DATA FOLDER ../shared/datasets/news-clustering/ in place (nothing copied): the NeuS test
split (822 articles, seeded order, undated), the 2021 roundups (1,479, date order) and BASIL (300, date
order), each text = title + the first 1000 body characters (``stream/embed_text.py``), as the product embeds.

For each set, in one run and one process, the three backends embed the same texts one after the other
(the same thread count for each: ``--threads``, torch's intra-op threads and ONNX Runtime's), timed, and
other int8 exports of the same graph (``ALTERNATIVES``); then
the embed stage's own clustering (``make_assign_stage`` + ``AssignStage.process`` in batches of 64, fresh
state, all-MiniLM-L6-v2's calibrated thresholds: what ``bench.clustering_quality`` runs) assigns the
articles with each backend's vectors. Per article, the story decision is compared with torch's:

- *join/new*: the article joined an existing story, or opened a new one, as it did with torch;
- *identical*: the same join/new decision and the same earlier articles in its (final, after merges) story;
  the headline figure (target >= 99 %). A divergence can cascade: later articles then meet other stories.

Also: cosine of each backend's vectors to torch's, the final partitions' agreement (ARI) and B-cubed F1
against the gold stories. ONNX Runtime runs one text at a time (``stream.embedding_onnx.TEXTS_PER_RUN``),
so an int8 vector depends on its own text only; ``--batch`` is torch's batch size.
Rewrites the ``## onnx_backend`` section of docs/benchmarks.md (``## onnx_backend (threads=N)`` for N > 1).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn.metrics import adjusted_rand_score

from bench.clustering_quality import (
    BASIL,
    DATA,
    NO_DATE,
    date_only,
    load,
    neus_splits,
    stage_story_ids,
    stream_order,
    to_article,
)
from bench.clustering_quality import bcubed as bcubed_prf
from bench.report import write_section
from sednaya_monitor.settings import Settings, load_settings
from sednaya_monitor.wiring import calibrated, limit_blas_threads
from stream.article import Article
from stream.embed_text import embed_text
from stream.embedding import SentenceTransformerEmbedder, resolve_model
from stream.embedding_onnx import KEEP_FLOAT, export_dir, quantise

SECTION = "onnx_backend"
MODEL = "all-MiniLM-L6-v2"
# Other int8 exports of the same float graph, measured beside the shipped one (label -> MatMul name patterns
# kept float32; the shipped ``KEEP_FLOAT`` keeps each layer's FFN and value projection float32).
ALTERNATIVES = {
    "int8, the FFN float (value projections int8)": (r"layer\.\d+/output/dense/MatMul$", r"intermediate/dense/MatMul$"),
    "int8, only the FFN down-projections float": (r"layer\.\d+/output/dense/MatMul$",),
    "int8, every MatMul": (),
}
BACKENDS = ("torch", "onnx", "onnx-int8", *ALTERNATIVES)


@dataclass
class SetRun:
    """One shared set: its records in stream order and texts, and per backend vectors and seconds."""

    name: str
    records: list[dict[str, Any]]
    texts: list[str]
    dated: bool
    vectors: dict[str, NDArray[np.float32]]
    seconds: dict[str, float]


def sets(data: Path) -> list[tuple[str, list[dict[str, Any]], bool]]:
    """The three shared sets in the order the clustering benchmark streams them."""
    neus_test = neus_splits(data)["test"]
    roundups = stream_order(load(data, "allsides_roundups_2021.jsonl.gz"), key=lambda r: r["published"][:10])
    basil = stream_order(load(data, BASIL), key=lambda r: r["published"][:10])
    return [("NeuS test", neus_test, False), ("2021 roundups", roundups, True), ("BASIL", basil, True)]


def stage_decisions(articles: list[Article], settings: Settings, embedder: Any) -> tuple[list[str], list[str]]:
    """The story id each article got when it was assigned, and its final story (merges resolved): the embed
    stage's own code, as ``bench.clustering_quality.run_stage`` runs it."""
    assigned, final, _ = stage_story_ids(articles, settings, embedder)
    return assigned, final


def decision_keys(assigned: list[str], final: list[str]) -> tuple[list[bool], list[frozenset[int]]]:
    """Per article: did it join a story it did not open (vs a new story), and the earlier articles of its
    final story."""
    seen: set[str] = set()
    joined: list[bool] = []
    members: dict[str, list[int]] = {}
    earlier: list[frozenset[int]] = []
    for i, (a, f) in enumerate(zip(assigned, final, strict=True)):
        joined.append(a in seen)
        seen.add(a)
        earlier.append(frozenset(members.get(f, ())))
        members.setdefault(f, []).append(i)
    return joined, earlier


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA, help="the shared news-clustering folder")
    parser.add_argument("--threads", type=int, default=1, help="threads of every backend (torch and ONNX Runtime)")
    parser.add_argument("--batch", type=int, default=32, help="texts per encode call")
    parser.add_argument("--cache", type=Path, default=None, help="export folder (default: a temporary one)")
    parser.add_argument("--no-write", action="store_true", help="print only, leave docs/benchmarks.md alone")
    args = parser.parse_args()
    print(f"reading the shared benchmark data in {args.data} (used in place, not copied)")
    import torch

    torch.set_num_threads(args.threads)
    settings = calibrated(load_settings(environ={}).replace(model_name=MODEL, model_threads=args.threads))
    limit_blas_threads(settings)
    with tempfile.TemporaryDirectory() as tmp:
        cache = args.cache or Path(tmp)
        models = {
            b: SentenceTransformerEmbedder(MODEL, args.batch, backend=b, cache_dir=cache, threads=args.threads)
            for b in BACKENDS[:3]
        }
        loads: dict[str, float] = {}
        for b, model in models.items():  # load (and export) outside the clock, then warm up
            start = time.perf_counter()
            model.embed(["warm-up text for the model"] * 4)
            loads[b] = time.perf_counter() - start
        # the alternatives: the same float export quantised otherwise, each in a cache folder of its own
        source = resolve_model(MODEL)
        for n, (label, keep_float) in enumerate(ALTERNATIVES.items()):
            own = cache / f"alternative-{n}"
            shutil.copytree(export_dir(cache, MODEL, source), export_dir(own, MODEL, source))
            start = time.perf_counter()
            quantise(export_dir(own, MODEL, source), keep_float=keep_float)
            models[label] = SentenceTransformerEmbedder(
                MODEL, args.batch, backend="onnx-int8", cache_dir=own, threads=args.threads
            )
            models[label].embed(["warm-up text for the model"] * 4)
            loads[label] = time.perf_counter() - start
        runs: list[SetRun] = []
        for name, records, dated in sets(args.data):
            texts = [embed_text(r["title"] or "", r["text"] or "") for r in records]
            run = SetRun(name, records, texts, dated, {}, {})
            for b in BACKENDS:  # one after the other on the same texts, in this one process
                start = time.perf_counter()
                run.vectors[b] = models[b].embed(texts)
                run.seconds[b] = time.perf_counter() - start
                print(f"{name}: {b} {len(texts) / run.seconds[b]:.1f} texts/s", flush=True)
            runs.append(run)
        lines = report(runs, models, settings, loads, args)
    print("\n".join(lines))
    if not args.no_write:
        write_section(SECTION if args.threads == 1 else f"{SECTION} (threads={args.threads})", lines)


def report(
    runs: list[SetRun],
    models: dict[str, SentenceTransformerEmbedder],
    settings: Settings,
    loads: dict[str, float],
    args: argparse.Namespace,
) -> list[str]:
    total = sum(len(r.texts) for r in runs)
    rates = {b: total / sum(r.seconds[b] for r in runs) for b in BACKENDS}
    load = os.getloadavg()
    lines = [
        (
            f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, `python -m bench.onnx_backend --threads {args.threads} "
            f"--batch {args.batch}` (reads ../shared/datasets/news-clustering in place), {MODEL}, {total} texts "
            f"(title + 1000 characters), one process, shared 2-core machine, load average at the end "
            f"{load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}. Export + load (not timed below): "
            + ", ".join(f"{b} {loads[b]:.1f} s" for b in BACKENDS)
            + f". onnx-int8 as shipped keeps the MatMuls matching {' or '.join(f'`{k}`' for k in KEEP_FLOAT)} "
            "float32 (each layer's FFN and value projection); the last rows are other int8 exports of the "
            "same graph, not shipped. "
            "ONNX Runtime runs one text at a time "
            f"(stream/embedding_onnx.py TEXTS_PER_RUN). Clustering: the embed stage's own code, thresholds "
            f"{settings.cluster_threshold} / merge {settings.merge_threshold} (raw cosines, calibrated)."
        ),
        "",
        "| backend | texts/s (all sets) | × torch | cosine to torch: mean | min | "
        + " | ".join(f"{r.name} texts/s" for r in runs)
        + " |",
        "|---|---:|---:|---:|---:|" + "---:|" * len(runs),
    ]
    for b in BACKENDS:
        cos = np.concatenate([np.sum(r.vectors[b] * r.vectors["torch"], axis=1) for r in runs])
        lines.append(
            f"| {b} | {rates[b]:.1f} | {rates[b] / rates['torch']:.2f} | {cos.mean():.5f} | {cos.min():.4f} | "
            + " | ".join(f"{len(r.texts) / r.seconds[b]:.1f}" for r in runs)
            + " |"
        )
    lines += [
        "",
        (
            "Story decisions against torch's (per article, in stream order): *join/new* = same choice between "
            "joining a story and opening one; *identical* = that and the same earlier articles in its final story "
            "(target ≥ 99 %). ARI: final partition against torch's; F1: B-cubed against the gold stories."
        ),
        "",
        "| set | articles | backend | join/new same | identical | ARI vs torch | stories | B³ F1 (torch → backend) |",
        "|---|---:|---|---:|---:|---:|---:|---|",
    ]
    overall: dict[str, list[int]] = {b: [0, 0] for b in BACKENDS[1:]}
    for run in runs:
        gold = [str(r["story"]) for r in run.records]
        outcomes: dict[str, tuple[list[str], list[str]]] = {}
        for b in BACKENDS:
            arts = [
                to_article(
                    r,
                    i,
                    date_only(r["published"]) if run.dated else NO_DATE,
                    run.vectors[b][i],
                    dated=run.dated,
                )
                for i, r in enumerate(run.records)
            ]
            outcomes[b] = stage_decisions(arts, settings, models[b])
        ref_joined, ref_earlier = decision_keys(*outcomes["torch"])
        ref_f1 = bcubed_prf(gold, outcomes["torch"][1])[2]
        for b in BACKENDS[1:]:
            joined, earlier = decision_keys(*outcomes[b])
            same_choice = sum(x == y for x, y in zip(joined, ref_joined, strict=True))
            same = sum(x == y and e == f for x, y, e, f in zip(joined, ref_joined, earlier, ref_earlier, strict=True))
            overall[b][0] += same
            overall[b][1] += len(joined)
            n = len(joined)
            lines.append(
                f"| {run.name} | {n} | {b} | {same_choice / n:.1%} | **{same / n:.1%}** | "
                f"{adjusted_rand_score(outcomes['torch'][1], outcomes[b][1]):.4f} | "
                f"{len(set(outcomes['torch'][1]))} → {len(set(outcomes[b][1]))} | "
                f"{ref_f1:.3f} → {bcubed_prf(gold, outcomes[b][1])[2]:.3f} |"
            )
            print(f"{run.name}: {b} identical {same / n:.2%}", flush=True)
    lines += [
        "",
        "Identical story decisions over all three sets: "
        + ", ".join(f"{b} **{s / n:.2%}** ({s} / {n})" for b, (s, n) in overall.items())
        + ".",
    ]
    return lines


if __name__ == "__main__":
    main()
