"""Embedded pipeline throughput against a fixed yardstick, measured in one run.

READS THE SHARED DATA FILE ../shared/datasets/multilingual-events/syria_events.jsonl.gz in place (297 real
excerpts in 13 languages; nothing copied). On the same texts it times, one after the other:

1. the yardstick: all-MiniLM-L6-v2 through sentence-transformers, ``encode`` alone (batch 32);
2. the default model's encode alone;
3. the whole embedded pipeline with the default settings (``sednaya_monitor.pipeline.Pipeline``: publish to
   the embedded bus, embed, cluster, index into the embedded store, alert stage), fresh data directory.

Prints articles/s and the ratio pipeline / yardstick (issue 23's target: >= 2), and rewrites the
``## ingest_yardstick`` section of docs/benchmarks.md. The machine is shared: the ratio, measured in one
run, is the figure to compare, not the absolute rates.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.multilingual_stories import DATA, load, stream, to_article
from bench.report import write_section
from sednaya_monitor.pipeline import Pipeline
from sednaya_monitor.prometheus_metrics import PrometheusMetrics
from sednaya_monitor.settings import load_settings
from sednaya_monitor.wiring import make_embedder
from stream.embed_text import embed_text
from stream.embedding import SentenceTransformerEmbedder

SECTION = "ingest_yardstick"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    records = stream(load(args.data))
    texts = [embed_text(r["title"] or "", r["text"]) for r in records]
    minilm = SentenceTransformerEmbedder("all-MiniLM-L6-v2", 32)
    minilm.embed(texts[:8])  # load outside the clock
    start = time.perf_counter()
    minilm.embed(texts)
    yard = len(texts) / (time.perf_counter() - start)
    base = load_settings(environ={})
    model = make_embedder(base)
    model.embed(texts[:8])
    start = time.perf_counter()
    model.embed(texts)
    raw = len(texts) / (time.perf_counter() - start)
    articles = [to_article(r, i, ()).replace(embedding=None) for i, r in enumerate(records)]
    with tempfile.TemporaryDirectory() as tmp:
        pipeline = Pipeline(base.replace(data_dir=Path(tmp)), PrometheusMetrics(), embedder=model)
        try:
            start = time.perf_counter()
            pipeline.publish(articles)
            pipeline.drain()
            rate = len(articles) / (time.perf_counter() - start)
        finally:
            pipeline.close()
    lines = [
        (f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, `python -m bench.ingest_yardstick` (reads ../shared in place), "
        f"{len(texts)} texts, one run, shared 2-core machine."),
        "",
        "| what | texts/s |",
        "|---|---:|",
        f"| yardstick: all-MiniLM-L6-v2 encode (sentence-transformers) | {yard:.1f} |",
        f"| default model `{base.model_name}` encode | {raw:.1f} |",
        f"| embedded pipeline end to end, default settings | {rate:.1f} |",
        "",
        f"Pipeline / yardstick: **{rate / yard:.2f}** (target ≥ 2); pipeline / its own model: {rate / raw:.2f}.",
    ]
    print("\n".join(lines))
    if not args.no_write:
        write_section(SECTION, lines)


if __name__ == "__main__":
    main()
