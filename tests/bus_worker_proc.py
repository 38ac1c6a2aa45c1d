"""A stage in its own process, for the kill tests: ``python -m tests.bus_worker_proc CONFIG TOPIC GROUP DB``.

It consumes ``TOPIC`` as group ``GROUP`` through ``stream.worker.StageWorker`` and, for each record,
appends a row to ``deliveries`` and upserts ``articles`` keyed by the record key in the SQLite file
``DB`` (each row durable before the next record), sleeping ``--delay`` seconds per record so a
parent can kill it mid-batch. SIGTERM finishes the batch, commits and leaves the group (exit 0).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from sednaya_monitor import wiring
from sednaya_monitor.prometheus_metrics import PrometheusMetrics
from sednaya_monitor.settings import load_settings
from stream.bus import Record
from stream.worker import StageWorker

SCHEMA = """
CREATE TABLE IF NOT EXISTS articles (id TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS deliveries (n INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL, pid INTEGER NOT NULL);
"""


class SqliteSink:
    """The downstream store: idempotent by id, like the search store."""

    name = "sink"

    def __init__(self, db: Path, delay_s: float, pid: int) -> None:
        self.conn = sqlite3.connect(db, isolation_level=None, timeout=30)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.executescript(SCHEMA)
        self.delay_s = delay_s
        self.pid = pid

    def handle(self, records: Sequence[Record]) -> list[BaseException | None]:
        for record in records:
            self.conn.execute("BEGIN IMMEDIATE")
            self.conn.execute("INSERT INTO deliveries(id, pid) VALUES (?, ?)", (record.key, self.pid))
            self.conn.execute(
                "INSERT INTO articles(id, value) VALUES (?, ?) ON CONFLICT(id) DO UPDATE SET value = excluded.value",
                (record.key, record.value),
            )
            self.conn.execute("COMMIT")
            time.sleep(self.delay_s)
        return [None] * len(records)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("config", type=Path)
    parser.add_argument("topic")
    parser.add_argument("group")
    parser.add_argument("db", type=Path)
    parser.add_argument("--delay", type=float, default=0.02)
    parser.add_argument("--batch-size", type=int, default=10)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    settings = load_settings(args.config, environ={})
    bus = wiring.make_bus(settings)
    sink = SqliteSink(args.db, args.delay, os.getpid())
    stop = threading.Event()
    worker = StageWorker(
        bus, args.topic, args.group, sink, metrics=PrometheusMetrics(), batch_size=args.batch_size, stop=stop
    )

    def on_term(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_term)
    try:
        worker.run_forever(poll_timeout_s=0.5)
    finally:
        bus.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
