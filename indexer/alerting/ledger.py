"""The alert ledger: what was decided and delivered, in ``<data_dir>/alerts.sqlite3``.

The (watchlist, story) pair of an alert is written **before** anything is delivered, together with one
``pending`` delivery row per target, in one transaction. Delivery then marks each row ``sent`` or
``failed``. So:

* a redelivered story event (bus retry, restart before commit) finds the pair and fires nothing;
* a process that dies between the ledger write and the delivery finds the ``pending`` rows on start
  (:meth:`AlertLedger.pending`) and delivers them: each target gets the alert once. Only a crash in the
  instant between a target's acknowledgement and the ``sent`` mark can repeat a delivery; the payload
  ``id`` lets receivers drop that repeat.

Digest entries (follow-ups, and new stories of ``digest`` watchlists) wait in ``digest_items`` until
:meth:`AlertLedger.open_digest` assigns them to a digest, again with ``pending`` delivery rows written
before sending.

Two more tables make the stage's decisions survive restarts:

* ``merges``: ``absorbed -> survivor`` links, one row per pair: ``merged`` from ``merged`` story events,
  ``related`` from a new story's ``related_story`` (the clustering stage found it probably about an older
  story). "Has this watchlist alerted on this story?" is asked of the story's whole merge group (every
  story reachable through the links, either way), so a story that absorbed (or was absorbed into, or is
  related to) an alerted story never alerts a second time. A story can have both kinds of link, to
  different stories (related to A when it was created, merged into X later): each is kept (until
  round 2, session 15, one row per absorbed story: the later link replaced the earlier and split the
  group).
* ``waiting``: story events whose article the index stage has not stored yet; the stage looks again
  with backoff and processes them when the article is there (``AlertStage`` module docstring).
"""

from __future__ import annotations

import base64
import json
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

from indexer.alerting.alerts import Alert
from stream.article import iso_utc, now_utc, parse_time
from stream.bus import Record
from stream.sqlite_wal import connect_wal

DeliveryKind = Literal["alert", "digest"]
Status = Literal["pending", "sent", "failed"]
STATUSES = ("pending", "sent", "failed")

LinkKind = Literal["merged", "related"]  # a link of the merge groups (``merges``)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    watchlist TEXT NOT NULL,
    story_id TEXT NOT NULL,
    mode TEXT NOT NULL,            -- instant | digest
    payload TEXT NOT NULL,         -- Alert.to_dict() as JSON
    created_at TEXT NOT NULL,
    UNIQUE (watchlist, story_id)
);
CREATE INDEX IF NOT EXISTS alerts_by_watchlist ON alerts (watchlist, id);
CREATE TABLE IF NOT EXISTS digest_items (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    watchlist TEXT NOT NULL,
    story_id TEXT NOT NULL,
    article_id TEXT NOT NULL,
    payload TEXT NOT NULL,
    at TEXT NOT NULL,
    digest_id INTEGER,             -- NULL until assigned to a digest
    UNIQUE (watchlist, article_id)
);
CREATE INDEX IF NOT EXISTS digest_items_open ON digest_items (watchlist, digest_id);
CREATE TABLE IF NOT EXISTS digests (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    watchlist TEXT NOT NULL,
    period_start TEXT NOT NULL,
    period_end TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS deliveries (
    kind TEXT NOT NULL,            -- alert | digest
    ref_id INTEGER NOT NULL,       -- alerts.id or digests.id
    target TEXT NOT NULL,          -- webhook:<url> | email:<addr>
    status TEXT NOT NULL,          -- pending | sent | failed
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT NOT NULL DEFAULT '',
    updated_at TEXT NOT NULL,
    PRIMARY KEY (kind, ref_id, target)
);
CREATE INDEX IF NOT EXISTS deliveries_pending ON deliveries (status);
CREATE TABLE IF NOT EXISTS merges (
    absorbed TEXT NOT NULL,        -- a story folded into another (merged), or a new story related to an older one
    survivor TEXT NOT NULL,
    at TEXT NOT NULL,
    kind TEXT NOT NULL DEFAULT 'merged',  -- merged | related
    PRIMARY KEY (absorbed, survivor)
);
CREATE INDEX IF NOT EXISTS merges_by_survivor ON merges (survivor);
CREATE TABLE IF NOT EXISTS waiting (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    story_id TEXT NOT NULL,
    article_id TEXT NOT NULL,      -- the article the event waits for (not indexed yet)
    record TEXT NOT NULL,          -- the bus record (topic, key, value, headers, partition, offset) as JSON
    since TEXT NOT NULL,           -- when it started waiting
    next_try REAL NOT NULL,        -- unix time of the next look-up
    tries INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS waiting_by_story ON waiting (story_id, id);
"""


@dataclass(frozen=True, kw_only=True, slots=True)
class LedgerAlert:
    """An alert row with the state of its deliveries (``target -> status``)."""

    id: int
    alert: Alert
    mode: str
    created_at: datetime
    deliveries: dict[str, str]

    @property
    def alert_id(self) -> str:
        """Stable public id of the alert (payload ``id``): ``<watchlist>/<story_id>``."""
        return f"{self.alert.watchlist}/{self.alert.story_id}"


@dataclass(frozen=True, kw_only=True, slots=True)
class PendingDelivery:
    """A delivery row still ``pending`` (to resume on start)."""

    kind: DeliveryKind
    ref_id: int
    target: str
    watchlist: str
    attempts: int


@dataclass(frozen=True, kw_only=True, slots=True)
class Waiting:
    """A story event parked until its article is indexed."""

    id: int
    story_id: str
    article_id: str
    record: Record
    since: datetime
    next_try: float  # unix time
    tries: int


@dataclass(frozen=True, kw_only=True, slots=True)
class Digest:
    id: int
    watchlist: str
    period_start: datetime
    period_end: datetime
    entries: tuple[Alert, ...]

    @property
    def digest_id(self) -> str:
        return f"{self.watchlist}/digest/{self.id}"


class AlertLedger:
    """The ledger in one SQLite file; one connection guarded by a lock (delivery threads share it)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = connect_wal(self.path, timeout_s=30.0)  # serve's workers open it at the same moment
        self._db.execute("PRAGMA synchronous=NORMAL")
        with self._lock:
            _upgrade_merges(self._db)
        self._db.executescript(_SCHEMA)

    @classmethod
    def in_data_dir(cls, data_dir: Path) -> AlertLedger:
        return cls(Path(data_dir) / "alerts.sqlite3")

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # --- alerts -----------------------------------------------------------------------------------

    def story_group(self, story_id: str) -> set[str]:
        """``story_id`` and every story merged with it, directly or through others (``merges``)."""
        with self._lock:
            return _group(self._db, story_id)

    def record_merge(self, survivor: str, absorbed: Sequence[str], *, kind: LinkKind = "merged") -> int:
        """Remember that ``absorbed`` stories were folded into ``survivor`` (``kind`` ``merged``), or that
        a new story is related to the older ``survivor`` (``related``); returns how many links were new.
        Links of other pairs stay: a story can be related to one story and merged into another."""
        now = iso_utc(now_utc())
        added = 0
        with self._tx() as db:
            for story_id in absorbed:
                if story_id == survivor:
                    continue
                cur = db.execute(
                    "INSERT OR IGNORE INTO merges(absorbed, survivor, at, kind) VALUES (?, ?, ?, ?)",
                    (story_id, survivor, now, kind),
                )
                if cur.rowcount == 0 and kind == "merged":  # a related link that a merge confirms
                    db.execute(
                        "UPDATE merges SET kind = 'merged' WHERE absorbed = ? AND survivor = ?", (story_id, survivor)
                    )
                added += cur.rowcount
        return added

    def survivor(self, story_id: str) -> str:
        """The story ``story_id``'s group is shown under (digests): the story it was merged into, following
        merges of merges, and from there the older story it is related to, until a step leads back into
        stories already passed. One answer for every story of a chain, also when a merge folded an older
        story into the one related to it (a related link and a merge pointing at each other)."""
        with self._lock:
            return follow_links(lambda current: merge_links(self._db, current), story_id)

    def has_alert(self, watchlist: str, story_id: str) -> bool:
        """The watchlist has an alert (instant, or a digest-mode new story) on ``story_id``'s merge group."""
        return self.alerted_article(watchlist, story_id) is not None

    def alerted_article(self, watchlist: str, story_id: str) -> str | None:
        """The article named by the watchlist's alert on ``story_id``'s merge group, or None."""
        with self._lock:
            return _alert_in_group(self._db, watchlist, _group(self._db, story_id))

    def record_alert(self, alert: Alert, *, mode: str, targets: Sequence[str]) -> int | None:
        """Write the (watchlist, story) pair and a ``pending`` row per target, atomically.

        Returns the alert's row id, or None when the watchlist already has an alert on the story or on
        a story merged with it (nothing to deliver).
        For ``mode="digest"`` pass no targets: the alert waits for the digest (see ``add_digest_item``).
        """
        now = iso_utc(now_utc())
        with self._tx() as db:
            if _alert_in_group(db, alert.watchlist, _group(db, alert.story_id)) is not None:
                return None
            cur = db.execute(
                "INSERT OR IGNORE INTO alerts(watchlist, story_id, mode, payload, created_at) VALUES (?, ?, ?, ?, ?)",
                (alert.watchlist, alert.story_id, mode, json.dumps(alert.to_dict(), ensure_ascii=False), now),
            )
            if cur.rowcount == 0:
                return None
            alert_id = int(cur.lastrowid or 0)
            db.executemany(
                "INSERT INTO deliveries(kind, ref_id, target, status, updated_at) VALUES ('alert', ?, ?, 'pending', ?)",
                [(alert_id, target, now) for target in targets],
            )
        return alert_id

    def get_alert(self, alert_row: int) -> LedgerAlert | None:
        with self._lock:
            row = self._db.execute(
                "SELECT id, payload, mode, created_at FROM alerts WHERE id = ?", (alert_row,)
            ).fetchone()
            if row is None:
                return None
            return self._ledger_alert(row)

    def recent_alerts(self, watchlist: str, *, limit: int = 50) -> list[LedgerAlert]:
        """The watchlist's alerts (instant and digest-mode new stories), newest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, payload, mode, created_at FROM alerts WHERE watchlist = ? ORDER BY id DESC LIMIT ?",
                (watchlist, limit),
            ).fetchall()
            return [self._ledger_alert(r) for r in rows]

    def _ledger_alert(self, row: tuple[int, str, str, str]) -> LedgerAlert:
        deliveries = dict(
            self._db.execute(
                "SELECT target, status FROM deliveries WHERE kind = 'alert' AND ref_id = ? ORDER BY target", (row[0],)
            ).fetchall()
        )
        return LedgerAlert(
            id=row[0],
            alert=Alert.from_dict(json.loads(row[1])),
            mode=row[2],
            created_at=parse_time(row[3]),
            deliveries=deliveries,
        )

    def count_alerts(self, watchlist: str | None = None) -> int:
        with self._lock:
            if watchlist is None:
                row = self._db.execute("SELECT COUNT(*) FROM alerts").fetchone()
            else:
                row = self._db.execute("SELECT COUNT(*) FROM alerts WHERE watchlist = ?", (watchlist,)).fetchone()
        return int(row[0])

    # --- deliveries ---------------------------------------------------------------------------------

    def pending(self) -> list[PendingDelivery]:
        """Every delivery still ``pending`` (oldest first): what a restart resumes."""
        with self._lock:
            rows = self._db.execute(
                "SELECT d.kind, d.ref_id, d.target, d.attempts, "
                "COALESCE(a.watchlist, g.watchlist) "
                "FROM deliveries d "
                "LEFT JOIN alerts a ON d.kind = 'alert' AND a.id = d.ref_id "
                "LEFT JOIN digests g ON d.kind = 'digest' AND g.id = d.ref_id "
                "WHERE d.status = 'pending' ORDER BY d.updated_at, d.ref_id, d.target"
            ).fetchall()
        return [
            PendingDelivery(kind=r[0], ref_id=int(r[1]), target=r[2], attempts=int(r[3]), watchlist=str(r[4]))
            for r in rows
        ]

    def mark(
        self, kind: DeliveryKind, ref_id: int, target: str, status: Status, *, attempts: int, error: str = ""
    ) -> None:
        """Set a delivery's final (or pending) state with the attempts it took and the last error."""
        if status not in STATUSES:
            raise ValueError(f"delivery status {status!r}: expected one of {STATUSES}")
        with self._lock:
            self._db.execute(
                "UPDATE deliveries SET status = ?, attempts = attempts + ?, last_error = ?, updated_at = ? "
                "WHERE kind = ? AND ref_id = ? AND target = ?",
                (status, attempts, error[:2000], iso_utc(now_utc()), kind, ref_id, target),
            )

    def delivery_counts(self, watchlist: str | None = None) -> dict[str, int]:
        """``status -> deliveries`` over alerts and digests (of one watchlist, or all)."""
        query = (
            "SELECT d.status, COUNT(*) FROM deliveries d "
            "LEFT JOIN alerts a ON d.kind = 'alert' AND a.id = d.ref_id "
            "LEFT JOIN digests g ON d.kind = 'digest' AND g.id = d.ref_id "
        )
        args: tuple[str, ...] = ()
        if watchlist is not None:
            query += "WHERE COALESCE(a.watchlist, g.watchlist) = ? "
            args = (watchlist,)
        with self._lock:
            rows = self._db.execute(query + "GROUP BY d.status", args).fetchall()
        counts = dict.fromkeys(STATUSES, 0)
        counts.update({str(s): int(n) for s, n in rows})
        return counts

    # --- digests ------------------------------------------------------------------------------------

    def add_digest_item(self, alert: Alert) -> bool:
        """Queue ``alert`` for the watchlist's next digest; False if that article is already queued."""
        with self._lock:
            cur = self._db.execute(
                "INSERT OR IGNORE INTO digest_items(watchlist, story_id, article_id, payload, at) "
                "VALUES (?, ?, ?, ?, ?)",
                (
                    alert.watchlist,
                    alert.story_id,
                    alert.article_id,
                    json.dumps(alert.to_dict(), ensure_ascii=False),
                    iso_utc(alert.at),
                ),
            )
        return cur.rowcount > 0

    def open_items(self, watchlist: str) -> int:
        """Digest entries of ``watchlist`` not yet assigned to a digest."""
        with self._lock:
            row = self._db.execute(
                "SELECT COUNT(*) FROM digest_items WHERE watchlist = ? AND digest_id IS NULL", (watchlist,)
            ).fetchone()
        return int(row[0])

    def last_digest_end(self, watchlist: str) -> datetime | None:
        with self._lock:
            row = self._db.execute("SELECT MAX(period_end) FROM digests WHERE watchlist = ?", (watchlist,)).fetchone()
        return None if row is None or row[0] is None else parse_time(row[0])

    def open_digest(
        self, watchlist: str, *, period_start: datetime, period_end: datetime, targets: Sequence[str]
    ) -> Digest | None:
        """Assign every open entry of ``watchlist`` to a new digest with ``pending`` deliveries, atomically.

        Returns None (and writes nothing) when there is no open entry.
        """
        now = iso_utc(now_utc())
        with self._tx() as db:
            n = db.execute(
                "SELECT COUNT(*) FROM digest_items WHERE watchlist = ? AND digest_id IS NULL", (watchlist,)
            ).fetchone()[0]
            if not n:
                return None
            cur = db.execute(
                "INSERT INTO digests(watchlist, period_start, period_end, created_at) VALUES (?, ?, ?, ?)",
                (watchlist, iso_utc(period_start), iso_utc(period_end), now),
            )
            digest_row = int(cur.lastrowid or 0)
            db.execute(
                "UPDATE digest_items SET digest_id = ? WHERE watchlist = ? AND digest_id IS NULL",
                (digest_row, watchlist),
            )
            db.executemany(
                "INSERT INTO deliveries(kind, ref_id, target, status, updated_at) "
                "VALUES ('digest', ?, ?, 'pending', ?)",
                [(digest_row, target, now) for target in targets],
            )
        digest = self.get_digest(digest_row)
        assert digest is not None  # written in the transaction above
        return digest

    def get_digest(self, digest_row: int) -> Digest | None:
        with self._lock:
            row = self._db.execute(
                "SELECT id, watchlist, period_start, period_end FROM digests WHERE id = ?", (digest_row,)
            ).fetchone()
            if row is None:
                return None
            items = self._db.execute(
                "SELECT payload FROM digest_items WHERE digest_id = ? ORDER BY at, id", (digest_row,)
            ).fetchall()
        return Digest(
            id=int(row[0]),
            watchlist=str(row[1]),
            period_start=parse_time(row[2]),
            period_end=parse_time(row[3]),
            entries=tuple(Alert.from_dict(json.loads(p[0])) for p in items),
        )

    # --- story events waiting for their article -----------------------------------------------------

    def park(self, record: Record, *, story_id: str, article_id: str, next_try: float) -> int:
        """Keep ``record`` (a story event) until its article is indexed; returns its waiting id. A record
        already waiting (the same topic, partition and offset: its batch handed again, or redelivered after
        a restart) is not kept twice."""
        body = json.dumps(
            {
                "topic": record.topic,
                "key": record.key,
                "value": base64.b64encode(bytes(record.value)).decode("ascii"),
                "headers": dict(record.headers),
                "partition": record.partition,
                "offset": record.offset,
            }
        )
        with self._tx() as db:
            known = db.execute(
                "SELECT id FROM waiting WHERE json_extract(record, '$.topic') = ? "
                "AND json_extract(record, '$.partition') = ? AND json_extract(record, '$.offset') = ?",
                (record.topic, record.partition, record.offset),
            ).fetchone()
            if known is not None:
                return int(known[0])
            cur = db.execute(
                "INSERT INTO waiting(story_id, article_id, record, since, next_try) VALUES (?, ?, ?, ?, ?)",
                (story_id, article_id, body, iso_utc(now_utc()), next_try),
            )
        return int(cur.lastrowid or 0)

    def is_waiting(self, story_id: str) -> bool:
        """An earlier event of ``story_id`` still waits (later ones wait behind it: per-story order)."""
        with self._lock:
            row = self._db.execute("SELECT 1 FROM waiting WHERE story_id = ? LIMIT 1", (story_id,)).fetchone()
        return row is not None

    def waiting(self, *, due_at: float | None = None) -> list[Waiting]:
        """Waiting events, oldest first: all, or (``due_at``, unix time) those due by then that no
        earlier, not yet due event of the same story holds back."""
        if due_at is None:
            return self._waiting("", ())
        return self._waiting(
            " WHERE next_try <= ? AND NOT EXISTS (SELECT 1 FROM waiting e WHERE e.story_id = w.story_id "
            "AND e.id < w.id AND e.next_try > ?)",
            (due_at, due_at),
        )

    def waiting_summary(self) -> tuple[int, Waiting | None]:
        """How many events wait, and the oldest (None when none)."""
        with self._lock:
            count = int(self._db.execute("SELECT COUNT(*) FROM waiting").fetchone()[0])
        if not count:
            return 0, None
        oldest = self._waiting(" WHERE id = (SELECT MIN(id) FROM waiting)", ())
        return count, (oldest[0] if oldest else None)

    def _waiting(self, where: str, args: tuple[float, ...]) -> list[Waiting]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, story_id, article_id, record, since, next_try, tries FROM waiting w"
                + where
                + " ORDER BY id",
                args,
            ).fetchall()
        out: list[Waiting] = []
        for r in rows:
            data = json.loads(r[3])
            record = Record(
                topic=str(data["topic"]),
                key=str(data["key"]),
                value=base64.b64decode(data["value"]),
                headers={str(k): str(v) for k, v in data["headers"].items()},
                partition=int(data["partition"]),
                offset=int(data["offset"]),
            )
            out.append(
                Waiting(
                    id=int(r[0]),
                    story_id=str(r[1]),
                    article_id=str(r[2]),
                    record=record,
                    since=parse_time(r[4]),
                    next_try=float(r[5]),
                    tries=int(r[6]),
                )
            )
        return out

    def reschedule(self, waiting_id: int, *, next_try: float) -> None:
        with self._lock:
            self._db.execute("UPDATE waiting SET next_try = ?, tries = tries + 1 WHERE id = ?", (next_try, waiting_id))

    def unpark(self, waiting_id: int) -> None:
        with self._lock:
            self._db.execute("DELETE FROM waiting WHERE id = ?", (waiting_id,))

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _group(db: sqlite3.Connection, story_id: str) -> set[str]:
    """The merge group of ``story_id``: every story reachable through ``merges`` in either direction."""
    seen = {story_id}
    frontier = [story_id]
    while frontier:
        current = frontier.pop()
        rows = db.execute(
            "SELECT survivor FROM merges WHERE absorbed = ? UNION SELECT absorbed FROM merges WHERE survivor = ?",
            (current, current),
        ).fetchall()
        for (other,) in rows:
            if other not in seen:
                seen.add(other)
                frontier.append(other)
    return seen


def _alert_in_group(db: sqlite3.Connection, watchlist: str, group: set[str]) -> str | None:
    """The article id of the watchlist's alert on any story of ``group``, or None."""
    marks = ",".join("?" * len(group))
    row = db.execute(
        f"SELECT json_extract(payload, '$.article_id') FROM alerts WHERE watchlist = ? AND story_id IN ({marks}) "
        "ORDER BY id LIMIT 1",
        (watchlist, *sorted(group)),
    ).fetchone()
    return None if row is None else str(row[0])


def merge_links(db: sqlite3.Connection, story_id: str) -> list[tuple[str, str]]:
    """``(survivor, kind)`` of every link out of ``story_id``, merges first, then the oldest first."""
    rows = db.execute(
        "SELECT survivor, kind FROM merges WHERE absorbed = ? ORDER BY kind = 'related', at, survivor", (story_id,)
    ).fetchall()
    return [(str(r[0]), str(r[1])) for r in rows]


def follow_links(links: Callable[[str], list[tuple[str, str]]], story_id: str) -> str:
    """Follow ``merged`` links as far as they go, then one ``related`` link to a story that does not merge
    back into the stories passed, and so on (see :meth:`AlertLedger.survivor`); ``links`` answers as
    :func:`merge_links`."""
    current, passed = story_id, {story_id}
    while True:
        out = links(current)
        step = next((to for to, kind in out if kind == "merged" and to not in passed), None)
        if step is None:
            step = next((to for to, kind in out if kind == "related" and _merged_end(links, to) not in passed), None)
        if step is None:
            return current
        current = step
        passed.add(current)


def _merged_end(links: Callable[[str], list[tuple[str, str]]], story_id: str) -> str:
    """Where ``merged`` links from ``story_id`` end."""
    current, seen = story_id, {story_id}
    while True:
        step = next((to for to, kind in links(current) if kind == "merged" and to not in seen), None)
        if step is None:
            return current
        current = step
        seen.add(current)


def _upgrade_merges(db: sqlite3.Connection) -> None:
    """A ledger written before round 2, session 15 keyed ``merges`` by the absorbed story alone: rebuild it
    keyed by the pair, with a ``kind`` column (its rows are taken as merges: which were related links is
    not known, and a group counts both alike)."""
    columns = {str(r[1]) for r in db.execute("PRAGMA table_info(merges)").fetchall()}
    if not columns or "kind" in columns:
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        db.execute("ALTER TABLE merges RENAME TO merges_before_pairs")
        db.execute("DROP INDEX IF EXISTS merges_by_survivor")
        db.execute(
            "CREATE TABLE merges (absorbed TEXT NOT NULL, survivor TEXT NOT NULL, at TEXT NOT NULL, "
            "kind TEXT NOT NULL DEFAULT 'merged', PRIMARY KEY (absorbed, survivor))"
        )
        db.execute(
            "INSERT OR IGNORE INTO merges(absorbed, survivor, at, kind) "
            "SELECT absorbed, survivor, at, 'merged' FROM merges_before_pairs"
        )
        db.execute("DROP TABLE merges_before_pairs")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
