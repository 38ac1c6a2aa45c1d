"""The embedded bus: a durable append-only log in one SQLite file (WAL) in the data directory.

- ``records``: every published record, with a global monotonically increasing ``offset`` (the rowid);
  one partition (0) per topic.
- ``offsets``: the committed offset per (consumer group, topic). A consumer that dies before
  ``commit`` gets its records again (at-least-once).
- ``dead_letters``: records a stage gave up on, with the stage, error class, reason, attempt count and
  the original topic/offset (the same fields the Kafka adapter puts in ``<topic>.dlq`` headers).

Durability: WAL with ``synchronous=NORMAL`` survives a killed process (a committed transaction is
in the WAL); only an OS crash or power loss may lose the last transactions. Several processes may
share the file (SQLite locking, ``busy_timeout``); a consumer group has one member at a time here, as
the embedded mode runs each stage once (scale-out is the Kafka adapter's job).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

from stream import json_codec
from stream.article import iso_utc
from stream.bus import (
    H_ATTEMPTS,
    H_DEAD_LETTERED_AT,
    H_ERROR_CLASS,
    H_ERROR_MESSAGE,
    H_ORIGINAL_OFFSET,
    H_ORIGINAL_PARTITION,
    H_ORIGINAL_TOPIC,
    H_STAGE,
    DeadLetter,
    GroupLag,
    Record,
)
from stream.errors import BusError
from stream.sqlite_wal import connect_wal

logger = logging.getLogger(__name__)

AUTO_FLUSH_RECORDS = 500  # publishes buffered before an automatic flush (one transaction each)
BUSY_TIMEOUT_MS = 30_000  # wait this long for another process's write lock before failing
POLL_SLEEP_S = 0.05  # idle wait between polls while a timeout runs

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    offset INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    key TEXT NOT NULL,
    value BLOB NOT NULL,
    headers TEXT NOT NULL,
    ts REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS records_topic ON records(topic, offset);
CREATE TABLE IF NOT EXISTS topics (name TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS offsets (
    grp TEXT NOT NULL,
    topic TEXT NOT NULL,
    committed INTEGER NOT NULL,
    PRIMARY KEY (grp, topic)
);
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    key TEXT NOT NULL,
    value BLOB NOT NULL,
    headers TEXT NOT NULL,
    stage TEXT NOT NULL,
    error_class TEXT NOT NULL,
    reason TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    partition INTEGER NOT NULL,
    offset INTEGER NOT NULL,
    at TEXT NOT NULL,
    replayed INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS dead_letters_topic ON dead_letters(topic, replayed, id);
"""


def _connect(path: Path) -> sqlite3.Connection:
    conn = connect_wal(path, timeout_s=BUSY_TIMEOUT_MS / 1000)  # the stage processes open it at the same moment
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    return conn


class EmbeddedBus:
    """``stream.bus.Bus`` over SQLite. Thread-safe within a process; shareable between processes."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._conn = _connect(self.path)
            self._conn.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise BusError(f"embedded bus {str(self.path)!r}: cannot open: {exc}") from exc
        self._lock = threading.RLock()
        self._pending: list[tuple[str, str, bytes, str, float]] = []

    # --- producing ----------------------------------------------------------------------------------
    def ensure_topics(self, topics: Sequence[str]) -> None:
        with self._lock:
            self._conn.executemany("INSERT OR IGNORE INTO topics(name) VALUES (?)", [(t,) for t in topics])

    def publish(self, topic: str, key: str, value: bytes, headers: Mapping[str, str] | None = None) -> None:
        with self._lock:
            self._pending.append((topic, key, bytes(value), json_codec.dumps_text(dict(headers or {})), time.time()))
            if len(self._pending) >= AUTO_FLUSH_RECORDS:
                self._write_pending()

    def flush(self, timeout_s: float | None = None) -> None:
        with self._lock:
            self._write_pending()

    def _write_pending(self) -> None:
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        try:
            with self._transaction():
                self._conn.executemany(
                    "INSERT INTO records(topic, key, value, headers, ts) VALUES (?, ?, ?, ?, ?)", batch
                )
        except sqlite3.Error as exc:
            self._pending = batch + self._pending
            raise BusError(f"embedded bus {str(self.path)!r}: {len(batch)} records not stored: {exc}") from exc

    def _transaction(self) -> _Transaction:
        return _Transaction(self._conn)

    # --- consuming ----------------------------------------------------------------------------------
    def consumer(self, topic: str, group: str) -> EmbeddedConsumer:
        return EmbeddedConsumer(self, topic, group)

    def _committed(self, group: str, topic: str) -> int:
        with self._lock:
            row = self._conn.execute(
                "SELECT committed FROM offsets WHERE grp = ? AND topic = ?", (group, topic)
            ).fetchone()
        return int(row[0]) if row else 0

    def _read(self, topic: str, after: int, limit: int) -> list[Record]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT offset, key, value, headers FROM records "
                "WHERE topic = ? AND offset > ? ORDER BY offset LIMIT ?",
                (topic, after, limit),
            ).fetchall()
        return [
            Record(topic=topic, key=k, value=bytes(v), headers=json_codec.loads_any(h), partition=0, offset=int(o))
            for o, k, v, h in rows
        ]

    def _commit(self, group: str, topic: str, offset: int) -> None:
        with self._lock, self._transaction():
            self._conn.execute(
                "INSERT INTO offsets(grp, topic, committed) VALUES (?, ?, ?) "
                "ON CONFLICT(grp, topic) DO UPDATE SET committed = MAX(committed, excluded.committed)",
                (group, topic, offset),
            )

    def _pending_count(self, topic: str, after: int) -> int:
        with self._lock:
            row = self._conn.execute(
                "SELECT COUNT(*) FROM records WHERE topic = ? AND offset > ?", (topic, after)
            ).fetchone()
        return int(row[0])

    # --- operators (stream.bus.BusAdmin) -----------------------------------------------------------
    READ_PAGE = 1000  # records per query while reading a topic

    def read_topic(
        self, topic: str, *, partition: int | None = None, start: int | None = None, stop: int | None = None
    ) -> Iterator[Record]:
        """Records of ``topic`` with ``start <= offset < stop`` (one partition, 0, per topic here)."""
        if partition not in (None, 0):
            raise BusError(f"embedded bus {str(self.path)!r}: topic {topic!r} has one partition (0), not {partition}")
        with self._lock:
            end = int(self._conn.execute("SELECT COALESCE(MAX(offset), 0) FROM records").fetchone()[0]) + 1
        last = min(end, stop) if stop is not None else end
        after = (start - 1) if start is not None else -1
        while True:
            page = [r for r in self._read(topic, after, self.READ_PAGE) if r.offset < last]
            yield from page
            if len(page) < self.READ_PAGE:
                return
            after = page[-1].offset

    def group_lag(self, pairs: Sequence[tuple[str, str]]) -> list[GroupLag]:
        """One partition (0) per topic; offsets are the log's global record numbers."""
        out = []
        for topic, group in pairs:
            committed = self._committed(group, topic)  # the last offset the group processed (0: none)
            with self._lock:
                row = self._conn.execute(
                    "SELECT COALESCE(MAX(offset), 0) FROM records WHERE topic = ?", (topic,)
                ).fetchone()
            pending = self._pending_count(topic, committed)
            end = int(row[0]) + 1
            out.append(GroupLag(topic=topic, group=group, partition=0, committed=end - pending, end=end))
        return out

    # --- dead letters -------------------------------------------------------------------------------
    def dead_letter(self, record: Record, *, stage: str, error_class: str, reason: str, attempts: int) -> None:
        at = iso_utc(datetime.now(UTC))
        headers = dict(record.headers)
        headers.update(
            {
                H_STAGE: stage,
                H_ERROR_CLASS: error_class,
                H_ERROR_MESSAGE: reason,
                H_ORIGINAL_TOPIC: record.topic,
                H_ORIGINAL_PARTITION: str(record.partition),
                H_ORIGINAL_OFFSET: str(record.offset),
                H_ATTEMPTS: str(attempts),
                H_DEAD_LETTERED_AT: at,
            }
        )
        with self._lock, self._transaction():
            self._conn.execute(
                "INSERT INTO dead_letters(topic, key, value, headers, stage, error_class, reason, attempts, "
                "partition, offset, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    record.topic,
                    record.key,
                    bytes(record.value),
                    json.dumps(headers),
                    stage,
                    error_class,
                    reason,
                    attempts,
                    record.partition,
                    record.offset,
                    at,
                ),
            )

    def dead_letters(self, topic: str, limit: int = 100) -> list[DeadLetter]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT id, topic, key, value, headers, stage, error_class, reason, attempts, partition, offset, at "
                "FROM dead_letters WHERE topic = ? AND replayed = 0 ORDER BY id LIMIT ?",
                (topic, limit),
            ).fetchall()
        return [
            DeadLetter(
                id=str(r[0]),
                topic=r[1],
                key=r[2],
                value=bytes(r[3]),
                headers=json.loads(r[4]),
                stage=r[5],
                error_class=r[6],
                reason=r[7],
                attempts=int(r[8]),
                partition=int(r[9]),
                offset=int(r[10]),
                at=datetime.fromisoformat(r[11]),
            )
            for r in rows
        ]

    def dead_letter_count(self, topic: str | None = None) -> int:
        """Dead letters not yet replayed (of ``topic``, or all)."""
        sql = "SELECT COUNT(*) FROM dead_letters WHERE replayed = 0"
        args: tuple[str, ...] = ()
        if topic is not None:
            sql += " AND topic = ?"
            args = (topic,)
        with self._lock:
            return int(self._conn.execute(sql, args).fetchone()[0])

    def replay(self, topic: str, ids: Sequence[str] | None = None) -> int:
        letters = self.dead_letters(topic, limit=1_000_000)
        if ids is not None:
            wanted = set(ids)
            unknown = wanted - {d.id for d in letters}
            if unknown:
                raise BusError(f"dead letters {sorted(unknown)} of topic {topic!r} not found (or already replayed)")
            letters = [d for d in letters if d.id in wanted]
        with self._lock, self._transaction():
            for letter in letters:
                headers = {k: v for k, v in letter.headers.items() if not k.startswith("dlq.")}
                self._conn.execute(
                    "INSERT INTO records(topic, key, value, headers, ts) VALUES (?, ?, ?, ?, ?)",
                    (topic, letter.key, letter.value, json.dumps(headers), time.time()),
                )
                self._conn.execute("UPDATE dead_letters SET replayed = 1 WHERE id = ?", (int(letter.id),))
        return len(letters)

    def close(self) -> None:
        with self._lock:
            try:
                self._write_pending()
            finally:
                self._conn.close()


class _Transaction:
    """``BEGIN IMMEDIATE`` … ``COMMIT`` (or ``ROLLBACK`` on error) on an autocommit connection."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.conn.execute("ROLLBACK" if exc_type else "COMMIT")


class EmbeddedConsumer:
    """The one member of ``group`` on ``topic``; starts after the group's committed offset."""

    def __init__(self, bus: EmbeddedBus, topic: str, group: str) -> None:
        self.bus = bus
        self.topic = topic
        self.group = group
        self._position = bus._committed(group, topic)
        self._closed = False

    def poll(self, max_records: int, timeout_s: float) -> list[Record]:
        if self._closed:
            raise BusError(f"consumer of group {self.group!r} on {self.topic!r} is closed")
        deadline = time.monotonic() + timeout_s
        while True:
            records = self.bus._read(self.topic, self._position, max_records)
            if records or time.monotonic() >= deadline:
                break
            time.sleep(POLL_SLEEP_S)
        if records:
            self._position = records[-1].offset
        return records

    def commit(self) -> None:
        self.bus._commit(self.group, self.topic, self._position)

    def lag(self) -> dict[int, int]:
        return {0: self.bus._pending_count(self.topic, self.bus._committed(self.group, self.topic))}

    def close(self) -> None:
        self._closed = True
