"""Records per second produced and consumed on each bus, for ~2 KB article records, in one run.

Buses: the embedded SQLite log, Kafka (kafka-python ``KafkaBus``) on tansu and on noida-db's Kafka
side, the brokers started on free loopback ports as in the tests. Produce = publish every record and
flush every ``FLUSH_EVERY`` (acknowledged, ``acks=all``, ``stream.bus_kafka.COMPRESSION``). Consume = one
member of a new group polling batches of ``BATCH`` and committing after each, timed from the first record
(the group join is reported apart). Rewrites the ``## bus_throughput`` section of docs/benchmarks.md.

    python -m bench.bus_throughput [--records 5000]
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.report import write_section as write_doc_section
from sednaya_monitor import wiring
from sednaya_monitor.settings import load_settings
from stream.article import Article
from stream.bus import H_SCHEMA, Bus
from stream.bus_kafka import COMPRESSION
from tests.broker_fixtures import Broker, make_noida, make_tansu, unique_name

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "benchmarks.md"
SECTION = "bus_throughput"
RECORD_BYTES = 2048  # the article JSON is padded with words to about this size
FLUSH_EVERY = 500  # records per flush, as `ingest` publishes
BATCH = 64  # records per poll: settings.batch_size default
CONSUME_TIMEOUT_S = 300.0
WORDS = (
    "prison",
    "detainees",
    "families",
    "court",
    "report",
    "witness",
    "release",
    "cell",
    "list",
    "names",
    "survivors",
    "missing",
    "camp",
    "torture",
    "trial",
    "testimony",
    "archive",
    "search",
    "rescue",
    "teams",
    "records",
    "hearing",
    "commission",
    "evidence",
    "grave",
)


def make_records(n: int, seed: int = 7) -> list[tuple[str, bytes]]:
    rng = random.Random(seed)
    now = datetime(2026, 11, 24, tzinfo=UTC)
    out = []
    for i in range(n):
        ident = f"{i:016x}"
        article = Article(
            id=ident,
            url=f"https://news.example.org/a/{i}",
            canonical_url=f"https://news.example.org/a/{i}",
            source="news.example.org",
            channel="feed",
            backfill=False,
            lang="en",
            title=f"Benchmark article {i}",
            text="",
            authors=(),
            published=now,
            date_source="feed",
            discovered_at=now,
            fetched_at=now,
            content_sha256="0" * 64,
            relevance=None,
        )
        data = article.to_dict()
        base = len(json.dumps(data).encode())
        words: list[str] = []
        size = base
        while size < RECORD_BYTES:
            word = rng.choice(WORDS)
            words.append(word)
            size += len(word) + 1
        data["text"] = " ".join(words)
        out.append((ident, json.dumps(data).encode()))
    return out


def measure(bus: Bus, records: list[tuple[str, bytes]], topic: str) -> dict[str, float]:
    bus.ensure_topics([topic])
    started = time.perf_counter()
    for i, (key, value) in enumerate(records, 1):
        bus.publish(topic, key, value, {H_SCHEMA: "1"})
        if i % FLUSH_EVERY == 0:
            bus.flush()
    bus.flush()
    produce_s = time.perf_counter() - started

    consumer = bus.consumer(topic, unique_name("bench"))
    joined = time.perf_counter()
    first: float | None = None
    seen = 0
    deadline = time.monotonic() + CONSUME_TIMEOUT_S
    while seen < len(records) and time.monotonic() < deadline:
        batch = consumer.poll(BATCH, 1.0)
        if batch and first is None:
            first = time.perf_counter()
        seen += len(batch)
        if batch:
            consumer.commit()
    done = time.perf_counter()
    consumer.close()
    if seen < len(records):
        raise RuntimeError(f"only {seen} of {len(records)} records consumed from {topic!r}")
    assert first is not None
    return {
        "produced_per_s": len(records) / produce_s,
        "consumed_per_s": len(records) / (done - first),
        "first_record_s": first - joined,
        "produce_s": produce_s,
        "consume_s": done - first,
    }


def run(n: int) -> dict[str, dict[str, float]]:
    records = make_records(n)
    mean_bytes = sum(len(v) for _k, v in records) / n
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="bus-bench-") as tmp:
        work = Path(tmp)
        kinds: list[tuple[str, Callable[[Path], Broker] | None]] = [
            ("embedded", None),
            ("tansu", make_tansu),
            ("noida", make_noida),
        ]
        for kind, maker in kinds:
            broker = maker(work / kind) if maker else None
            if broker is not None:
                broker.workdir.mkdir(parents=True, exist_ok=True)
                broker.start()
            try:
                overrides: dict[str, Any] = {"data_dir": work / f"{kind}-data", "kafka_partitions": 3}
                if broker is not None:
                    overrides.update(bus=broker.url, kafka_client_id=unique_name("bench"))
                settings = load_settings(environ={}, overrides=overrides)
                bus = wiring.make_bus(settings)
                try:
                    results[kind] = measure(bus, records, unique_name("bench.") + ".v1")
                finally:
                    bus.close()
            finally:
                if broker is not None:
                    broker.stop()
            r = results[kind]
            print(
                f"{kind:9s} produced {r['produced_per_s']:9.0f} rec/s   consumed {r['consumed_per_s']:9.0f} rec/s"
                f"   first record after {r['first_record_s']:.2f} s",
                flush=True,
            )
    results["_meta"] = {"records": float(n), "mean_bytes": mean_bytes}
    return results


def write_section(results: dict[str, dict[str, float]]) -> None:
    meta = results["_meta"]
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        (
            f"Measured {when} by `python -m bench.bus_throughput --records {int(meta['records'])}`: "
            f"{int(meta['records'])} article records of {meta['mean_bytes']:.0f} bytes (JSON, keyed by id) per bus, "
            "all buses in one run. Produce: publish + flush every "
            f"{FLUSH_EVERY} (Kafka: acks=all, idempotent, {COMPRESSION}, 3 partitions). Consume: one member of a new "
            f"group, poll {BATCH} + commit per batch, timed from the first record; the group join before it is shown "
            "apart. "
            "tansu runs on its memory:// engine; noida-db 0.2.2 and the embedded log write to disk."
        ),
        "",
        "| bus | produced rec/s | consumed rec/s | produce MB/s | group join + first fetch s |",
        "|---|---|---|---|---|",
    ]
    for kind in ("embedded", "tansu", "noida"):
        r = results.get(kind)
        if r is None:
            lines.append(f"| {kind} | - | - | - | - |")
            continue
        mb = r["produced_per_s"] * meta["mean_bytes"] / 1e6
        lines.append(
            f"| {kind} | {r['produced_per_s']:.0f} | {r['consumed_per_s']:.0f} | {mb:.1f} | {r['first_record_s']:.2f} |"
        )
    write_doc_section(SECTION, lines, DOC)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=5000, help="records per bus")
    args = parser.parse_args()
    results = run(args.records)
    write_section(results)
    print(f"wrote ## {SECTION} in {DOC}")


if __name__ == "__main__":
    main()
