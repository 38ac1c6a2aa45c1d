"""A SQLite state store mirrored to a changelog (Kafka Streams' state-store pattern), so that the story
state needs no disk shared between the processes that may own it.

**Capture, generic over the schema.** :class:`ChangeCapture` installs three triggers on every table of
the store (every table whose name does not start with ``_`` or ``sqlite_``, found when the store opens):
each insert, update or delete notes ``(table, primary key)`` in the local table ``_changes``, in the same
transaction as the write. After the store commits, :meth:`ChangeCapture.pending` reads the current row of
every noted key (``SELECT rowid, *``: every column, present and future) and the owner appends one keyed
record per row to the changelog: key ``[table, *primary key]`` (JSON), value the row as JSON (BLOBs in
base64, the rowid kept so a replica's scans run in the same order) or a tombstone (``None``) for a row that
is gone. A table or column added to the schema later rides along with no change here; a primary key must
be text or numbers (SQLite's ``json_array`` refuses BLOBs: such a write fails loudly).

**Local tables.** Tables named in ``local`` (the story state's ``outbox``) are not captured: they stay on
the owner's disk and their rows never travel (the outbox held the clustered article with its vector and
each story event, then their tombstones: most of the changelog's bytes and a second append per batch).

**Order of effects.** The owner commits its batch locally (decisions, stories and outbox in one
transaction, with the ``_changes`` notes), publishes the outbox and waits for the bus's acknowledgement,
deletes the outbox rows, then appends the changed rows to the changelog and waits for that
acknowledgement, deletes the notes, and only then commits its input offsets. The changelog never holds a
decision whose records were not published: nothing is shipped while the local outbox holds a row
(:meth:`ChangelogStoryState._ship`). A crash before the bus's acknowledgement leaves the outbox (the same
process publishes it when it comes back) and the input uncommitted: whoever owns the partition next, on a
state without the batch, decides it again with the same decisions and publishes them. A crash after the
publish and before the changelog's acknowledgement publishes the batch's records twice (the next owner
redoes it): at least once, as a crash between the publish and the acknowledgement of the outbox's
tombstones did when the outbox travelled in the changelog. A copy that diverged (below) empties its local
tables too: what they held was redone by another owner.

**Older changelogs.** Records of a local table written by a version that captured it (``["outbox", seq]``)
are still applied on replay (an outbox an older owner left unpublished is published by the new one) and
tombstoned by the next append once the local table no longer holds them, so compaction drops them.

**Restore.** A process keeps in ``_changelog_local`` the changelog offset its store is current to
(the checkpoint). Before its first batch and before every batch (:meth:`ChangelogStoryState.catch_up`)
it reads the changelog from there to the end: records it appended itself are skipped, others are applied
(upsert or delete by key) and the in-memory caches are rebuilt from the result. A store with notes that
were never shipped (its process died) while another process appended since its checkpoint has diverged:
its tables are emptied and the whole changelog replayed (on a compacted topic: the latest row per key).
A new process on an empty data directory does exactly that, so a standby on any host takes over from
what it reads from the broker.

**Seed.** When the capture is installed on a store for the first time, every row already there is noted
(the schema's own rows, or a whole state kept on a shared file by an older version): a changelog that
is still empty receives them with the first commit; a changelog that already has records wins over
them (the new copy is emptied and replays it).
"""

from __future__ import annotations

import base64
import json
import logging
import math
import sqlite3
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from stream import json_codec
from stream.errors import StoryStateError
from stream.story_state import StoryState

logger = logging.getLogger(__name__)

CHANGES_TABLE = "_changes"  # local notes of changed keys, shipped after each commit
LOCAL_TABLE = "_changelog_local"  # the checkpoint: changelog offset this store is current to
TRIGGER_PREFIX = "_cdc_"
_BLOB = "$b64"  # a BLOB value in the JSON row
LOCAL_TABLES = ("outbox",)  # the story state's tables that stay on the owner's disk (module docstring)


@dataclass(frozen=True, slots=True)
class Change:
    """One changelog record: ``key`` = JSON ``[table, *primary key]``; ``value`` = the row, None = gone."""

    key: str
    value: bytes | None


@dataclass(frozen=True, slots=True)
class LoggedChange:
    offset: int
    writer: str  # the id of the process that appended it
    change: Change


class Changelog(Protocol):
    """The append-only, keyed log a state store is mirrored to (``stream.changelog_kafka``)."""

    writer: str  # this process's id, carried by every record it appends

    def append(self, changes: Sequence[Change]) -> tuple[int, int] | None:
        """Append in order and wait for the acknowledgement (raises ``UnavailableError`` when not acknowledged);
        returns the offset of the first record appended and the offset after the last one (what the log
        itself added, an end marker say, included) when the log tells them and nothing of another writer
        lies between them; None otherwise."""
        ...

    def read(self, start: int) -> Iterator[LoggedChange]:
        """Records from offset ``start`` to the end as it is when called (nothing, at no more cost than
        asking the end offset, when ``start`` is the end)."""
        ...

    def interrupt(self) -> None:
        """The process is stopping: a read in progress and later ones end soon with ``UnavailableError``
        (a broker that is down must not hold a shutdown), appends wait for their acknowledgements briefly."""
        ...

    def close(self) -> None: ...


def _encode(value: Any) -> Any:
    return {_BLOB: base64.b64encode(value).decode("ascii")} if isinstance(value, bytes) else value


def _decode(value: Any) -> Any:
    return base64.b64decode(value[_BLOB]) if isinstance(value, dict) else value


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True, slots=True)
class _Table:
    name: str
    columns: tuple[str, ...]
    key: tuple[str, ...]  # primary-key columns (``rowid`` for a table without one)
    rowid: bool  # has a rowid that is not one of its columns (kept in the row as ``_rowid``)


class ChangeCapture:
    """Triggers, notes and replay on one SQLite connection (module docstring)."""

    def __init__(self, db: sqlite3.Connection, *, where: str, local: Sequence[str] = ()) -> None:
        self.db = db
        self.where = where  # the store's name in error messages
        self.legacy: set[str] = set()  # changelog keys of local tables' rows read from an older changelog
        db.execute(
            f"CREATE TABLE IF NOT EXISTS {CHANGES_TABLE} "
            "(seq INTEGER PRIMARY KEY, tbl TEXT NOT NULL, key TEXT NOT NULL)"
        )
        db.execute(f"CREATE TABLE IF NOT EXISTS {LOCAL_TABLE} (name TEXT PRIMARY KEY, value TEXT NOT NULL)")
        found = {t.name: t for t in self._read_tables()}
        self.local = {name: table for name, table in found.items() if name in set(local)}  # never captured
        self.tables = {name: table for name, table in found.items() if name not in self.local}
        for table in self.tables.values():
            self._install(table)
        for table in self.local.values():
            self._uninstall(table)  # an older version captured it
        if self._local("installed") is None:
            # Rows written before the triggers existed (the schema's own, or a whole state kept on a shared
            # file before): noted once, so they reach the changelog when it is still empty (a seed).
            self.note_all()
            self._set_local("installed", "1")
        db.commit()

    def _local(self, name: str) -> str | None:
        row = self.db.execute(f"SELECT value FROM {LOCAL_TABLE} WHERE name = ?", (name,)).fetchone()
        return None if row is None else str(row[0])

    def _set_local(self, name: str, value: str) -> None:
        self.db.execute(
            f"INSERT INTO {LOCAL_TABLE} (name, value) VALUES (?, ?) "
            "ON CONFLICT(name) DO UPDATE SET value = excluded.value",
            (name, value),
        )

    def note_all(self) -> None:
        """Note every row of every captured table (shipped with the next commit)."""
        for table in self.tables.values():
            keyed = "json_array(" + ", ".join(_quote(c) for c in table.key) + ")"
            self.db.execute(
                f"INSERT INTO {CHANGES_TABLE} (tbl, key) SELECT ?, {keyed} FROM {_quote(table.name)}", (table.name,)
            )

    @property
    def synced(self) -> bool:
        """This copy caught up with the changelog at least once (else it is a fresh replica or a seed)."""
        return self._local("synced") is not None

    def mark_synced(self) -> None:
        self._set_local("synced", "1")

    def _read_tables(self) -> list[_Table]:
        out = []
        for name, sql in self.db.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' "
            "AND name NOT LIKE '\\_%' ESCAPE '\\' ORDER BY name"
        ).fetchall():
            info = self.db.execute(f"PRAGMA table_info({_quote(name)})").fetchall()
            columns = tuple(str(row[1]) for row in info)
            key = tuple(str(row[1]) for row in sorted((r for r in info if r[5]), key=lambda r: r[5]))
            without_rowid = "WITHOUT ROWID" in str(sql).upper()
            alias = len(key) == 1 and any(r[1] == key[0] and str(r[2]).upper() == "INTEGER" for r in info)
            out.append(
                _Table(name=name, columns=columns, key=key or ("rowid",), rowid=not without_rowid and not alias)
            )
        return out

    def _uninstall(self, table: _Table) -> None:
        for event in ("insert", "update", "delete"):
            self.db.execute(f"DROP TRIGGER IF EXISTS {_quote(f'{TRIGGER_PREFIX}{table.name}_{event}')}")
        self.db.execute(f"DELETE FROM {CHANGES_TABLE} WHERE tbl = ?", (table.name,))

    def _install(self, table: _Table) -> None:
        def keyed(row: str) -> str:
            return "json_array(" + ", ".join(f"{row}.{_quote(c)}" for c in table.key) + ")"

        name = table.name.replace("'", "''")
        note = f"INSERT INTO {CHANGES_TABLE} (tbl, key) VALUES ('{name}', "
        for event, body in (
            ("INSERT", note + keyed("NEW") + ");"),
            ("UPDATE", note + keyed("OLD") + "); " + note + keyed("NEW") + ");"),
            ("DELETE", note + keyed("OLD") + ");"),
        ):
            trigger = _quote(f"{TRIGGER_PREFIX}{table.name}_{event.lower()}")
            self.db.execute(f"DROP TRIGGER IF EXISTS {trigger}")  # the key columns may have changed
            self.db.execute(f"CREATE TRIGGER {trigger} AFTER {event} ON {_quote(table.name)} BEGIN {body} END")

    # --- shipping -----------------------------------------------------------------------------------

    def has_pending(self) -> bool:
        return self.db.execute(f"SELECT 1 FROM {CHANGES_TABLE} LIMIT 1").fetchone() is not None

    def pending(self) -> tuple[list[Change], int]:
        """The current row of every noted key, in the order first noted; and the last note's ``seq``."""
        notes = self.db.execute(
            f"SELECT tbl, key, MIN(seq) AS first, MAX(seq) FROM {CHANGES_TABLE} GROUP BY tbl, key ORDER BY first"
        ).fetchall()
        changes: list[Change] = []
        last = 0
        for tbl, key, _first, seq in notes:
            last = max(last, int(seq))
            table = self.tables.get(tbl)
            if table is None:
                continue  # a local table's note (made by the replay of an older changelog): not shipped
            values = json.loads(key)
            changes.append(Change(key=json.dumps([tbl, *values], ensure_ascii=False), value=self._row(table, values)))
        return changes, last

    def _row(self, table: _Table, key: list[Any]) -> bytes | None:
        where = " AND ".join(f"{_quote(c)} IS ?" for c in table.key)
        select = ("rowid AS _rowid, " if table.rowid else "") + "*"
        cursor = self.db.execute(f"SELECT {select} FROM {_quote(table.name)} WHERE {where}", key)
        row = cursor.fetchone()
        if row is None:
            return None
        names = [d[0] for d in cursor.description]
        # orjson (json_codec) unless a REAL is infinite (orjson would write null; the standard library keeps it)
        finite = all(math.isfinite(v) for v in row if isinstance(v, float))
        return json_codec.dumps({n: _encode(v) for n, v in zip(names, row, strict=True)}, finite=finite)

    def shipped(self, up_to_seq: int) -> None:
        self.db.execute(f"DELETE FROM {CHANGES_TABLE} WHERE seq <= ?", (up_to_seq,))
        self.db.commit()

    # --- replay -------------------------------------------------------------------------------------

    def checkpoint(self) -> int:
        return int(self._local("offset") or 0)

    def set_checkpoint(self, offset: int) -> None:
        self._set_local("offset", str(offset))

    def apply(self, change: Change) -> None:
        """Upsert or delete one row (inside the caller's transaction; the notes it makes are dropped)."""
        try:
            tbl, *key = json.loads(change.key)
        except (ValueError, TypeError) as exc:
            raise StoryStateError(f"{self.where}: changelog key {change.key!r} is not [table, *key]") from exc
        table = self.tables.get(tbl)
        if table is None and tbl in self.local:
            table = self.local[tbl]  # written by an older version: applied, tombstoned once gone locally
            if change.value is None:
                self.legacy.discard(change.key)
            else:
                self.legacy.add(change.key)
        if table is None:
            raise StoryStateError(
                f"{self.where}: changelog record for table {tbl!r}, which this version does not have "
                f"(tables: {', '.join(sorted(self.tables))}); upgrade this process"
            )
        where = " AND ".join(f"{_quote(c)} IS ?" for c in table.key)
        self.db.execute(f"DELETE FROM {_quote(table.name)} WHERE {where}", key)
        if change.value is None:
            return
        row = {n: _decode(v) for n, v in json_codec.loads(change.value).items()}
        unknown = [n for n in row if n != "_rowid" and n not in table.columns]
        if unknown:
            raise StoryStateError(
                f"{self.where}: changelog row of table {tbl!r} has columns {unknown} this version does not "
                "have; upgrade this process"
            )
        names = [("rowid" if n == "_rowid" else n) for n in row if n != "_rowid" or table.rowid]
        values = [v for n, v in row.items() if n != "_rowid" or table.rowid]
        marks = ", ".join("?" * len(names))
        self.db.execute(
            f"INSERT OR REPLACE INTO {_quote(table.name)} ({', '.join(_quote(n) for n in names)}) VALUES ({marks})",
            values,
        )

    def max_seq(self) -> int:
        return int(self.db.execute(f"SELECT COALESCE(MAX(seq), 0) FROM {CHANGES_TABLE}").fetchone()[0])

    def drop_notes_after(self, seq: int) -> None:
        self.db.execute(f"DELETE FROM {CHANGES_TABLE} WHERE seq > ?", (seq,))

    def wipe(self) -> None:
        """Empty every captured and local table and every note (before a replay from the beginning)."""
        self.legacy.clear()
        for table in (*self.tables.values(), *self.local.values()):
            self.db.execute(f"DELETE FROM {_quote(table.name)}")
        self.db.execute(f"DELETE FROM {CHANGES_TABLE}")
        self.set_checkpoint(0)


class ChangelogStoryState(StoryState):
    """:class:`~stream.story_state.StoryState` whose every committed write is appended to ``changelog``
    before the commit returns, and which catches up with other writers' records (module docstring).

    Args:
        path, window_days, duplicate_threshold, duplicate_window_days: as ``StoryState``.
        changelog: the log (``stream.changelog_kafka.KafkaChangelog``); closed with the state.
    """

    def __init__(
        self,
        path: Path,
        *,
        changelog: Changelog,
        window_days: int = 7,
        duplicate_threshold: float = 0.8,
        duplicate_window_days: int = 30,
    ) -> None:
        super().__init__(
            path,
            window_days=window_days,
            duplicate_threshold=duplicate_threshold,
            duplicate_window_days=duplicate_window_days,
        )
        self.changelog = changelog
        try:
            self.capture = ChangeCapture(self._db, where=f"story state {str(self.path)!r}", local=LOCAL_TABLES)
        except sqlite3.Error as exc:
            raise StoryStateError(f"story state {str(self.path)!r}: cannot install change capture: {exc}") from exc
        self.restored = 0  # records of other writers applied, since start
        self.full_restores = 0  # times the whole changelog was replayed into emptied tables

    # --- writing ------------------------------------------------------------------------------------

    def commit(self) -> None:
        super().commit()
        self._ship()  # at once when the batch has nothing to publish; else after the publish (outbox_done)

    def outbox_done(self, up_to_seq: int) -> None:
        super().outbox_done(up_to_seq)
        self._ship()

    def _ship(self) -> None:
        """Append the noted rows, unless the outbox still holds records to publish (module docstring, "Order
        of effects"): the changelog never tells another replica of a decision whose records are not out."""
        if self._new_outbox or self._db.execute("SELECT 1 FROM outbox LIMIT 1").fetchone() is not None:
            return
        changes, last = self.capture.pending()
        gone = sorted(self.capture.legacy)  # an older version's outbox rows, published and deleted since
        changes.extend(Change(key=key, value=None) for key in gone)
        if not changes:
            return
        span = self.changelog.append(changes)  # UnavailableError: the notes stay, the next commit ships them
        if span is not None and span[0] == self.capture.checkpoint():
            # no one appended between our copy's checkpoint and our records, nor among them: we are current
            # past them (and the next catch-up does not read our own records back)
            self.capture.set_checkpoint(span[1])
        self.capture.shipped(last)
        self.capture.legacy.difference_update(gone)

    # --- restoring ----------------------------------------------------------------------------------

    def catch_up(self) -> int:
        """Bring the store up to the changelog's end; returns how many records of other writers were
        applied (the caches are rebuilt when any was). Own unshipped notes are shipped when no other
        writer appended meanwhile; otherwise the store is rebuilt from the whole changelog."""
        start = self.capture.checkpoint()
        records = list(self.changelog.read(start))
        foreign = [r for r in records if r.writer != self.changelog.writer]
        if self.capture.has_pending() and foreign:
            if self.capture.synced:
                logger.warning(
                    "story state diverged from the changelog (unshipped writes of a dead owner); replaying it all",
                    extra={"state": str(self.path), "checkpoint": start, "foreign": len(foreign)},
                )
            else:
                logger.info("a new copy of the story state: replaying the changelog", extra={"state": str(self.path)})
            self._db.rollback()
            self.capture.wipe()
            records = list(self.changelog.read(0))
            foreign = [r for r in records if r.writer != self.changelog.writer]
            self.full_restores += 1
        if foreign:
            before = self.capture.max_seq()
            for record in foreign:
                self.capture.apply(record.change)
            self.capture.drop_notes_after(before)
        if records:
            self.capture.set_checkpoint(records[-1].offset + 1)
        self.capture.mark_synced()
        self._db.commit()
        if foreign:
            self.restored += len(foreign)
            self.rollback()  # nothing is open: this rebuilds the caches from the restored tables
        if self.capture.has_pending():
            self._ship()
        return len(foreign)

    def interrupt(self) -> None:
        """See ``Changelog.interrupt``: called from another thread when the process stops, before ``close``."""
        self.changelog.interrupt()

    def close(self) -> None:
        try:
            self._ship()
        except Exception as exc:  # noqa: BLE001  # closing: the notes stay for the next start
            logger.warning("changelog not written at close", extra={"state": str(self.path), "error": str(exc)})
        finally:
            try:
                super().close()
            finally:
                self.changelog.close()


def new_writer_id() -> str:
    """A process's writer id: unique per start (a restarted process is another writer)."""
    return uuid.uuid4().hex
