"""Persistent crawl state in the data directory (``<data_dir>/crawl/state.sqlite3``).

- ``seen``: every article URL already handled (published or rejected for good), by canonical URL, so a
  second run fetches only what is new. Transient failures (timeouts, 5xx) are not recorded: they are
  tried again next run.
- ``validators``: ``ETag``/``Last-Modified`` of feeds and sitemaps for conditional GET (304 = nothing new).
- ``source_health``: last outcome and last success per source, shown by ``sources list|check``.
- ``source_checks``: per feed/sitemap URL, the last ``sources check`` outcome and the date it last
  answered with a parseable document holding recent entries (``verified_at``).

SQLite in WAL mode, autocommit: every mark is durable when the call returns.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Self

from stream.article import now_utc, parse_time
from stream.sqlite_wal import connect_wal

STATE_FILE = Path("crawl") / "state.sqlite3"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS seen (
    canonical TEXT PRIMARY KEY,
    article_id TEXT NOT NULL,
    status TEXT NOT NULL,
    first_seen TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS validators (
    url TEXT PRIMARY KEY,
    etag TEXT,
    last_modified TEXT,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS source_checks (
    url TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    outcome TEXT NOT NULL,
    checked_at TEXT NOT NULL,
    entries INTEGER,
    newest TEXT,
    verified_at TEXT
);
CREATE TABLE IF NOT EXISTS source_health (
    source TEXT PRIMARY KEY,
    last_outcome TEXT NOT NULL,
    last_fetch TEXT NOT NULL,
    last_success TEXT
);
"""


@dataclass(frozen=True, kw_only=True, slots=True)
class SourceHealth:
    source: str
    last_outcome: str
    last_fetch: datetime
    last_success: datetime | None


@dataclass(frozen=True, kw_only=True, slots=True)
class UrlCheck:
    """The last ``sources check`` of one feed/sitemap URL."""

    source: str
    url: str
    outcome: str
    checked_at: datetime
    entries: int | None
    newest: datetime | None
    verified_at: datetime | None  # last time it answered with recent entries (None: never)


class SeenStore:
    """Crawl state of one data directory. Use as a context manager or call :meth:`close`."""

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / STATE_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = connect_wal(self.path, timeout_s=30.0)  # crawl shards may open it at the same moment
        self._db.executescript(_SCHEMA)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._db.close()

    def is_seen(self, canonical: str) -> bool:
        """True when the article at ``canonical`` was already published or rejected for good."""
        row = self._db.execute("SELECT 1 FROM seen WHERE canonical = ?", (canonical,)).fetchone()
        return row is not None

    def status(self, canonical: str) -> str | None:
        row = self._db.execute("SELECT status FROM seen WHERE canonical = ?", (canonical,)).fetchone()
        return None if row is None else str(row[0])

    def mark(self, canonical: str, article_id: str, status: str) -> None:
        """Remember ``canonical`` with ``status`` (``published`` or ``rejected:<reason>``); first mark wins."""
        self._db.execute(
            "INSERT OR IGNORE INTO seen (canonical, article_id, status, first_seen) VALUES (?, ?, ?, ?)",
            (canonical, article_id, status, now_utc().isoformat()),
        )

    def count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM seen").fetchone()[0])

    def validators(self, url: str) -> tuple[str | None, str | None]:
        """``(etag, last_modified)`` stored for ``url`` (None when unknown)."""
        row = self._db.execute("SELECT etag, last_modified FROM validators WHERE url = ?", (url,)).fetchone()
        return (None, None) if row is None else (row[0], row[1])

    def save_validators(self, url: str, etag: str | None, last_modified: str | None) -> None:
        if not etag and not last_modified:
            return
        self._db.execute(
            "INSERT INTO validators (url, etag, last_modified, updated_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(url) DO UPDATE SET etag = excluded.etag, last_modified = excluded.last_modified, "
            "updated_at = excluded.updated_at",
            (url, etag, last_modified, now_utc().isoformat()),
        )

    def forget_validators(self, url: str) -> None:
        """Send no validators for ``url`` any more (a listing read whole every time)."""
        self._db.execute("DELETE FROM validators WHERE url = ?", (url,))

    def record_fetch(self, source: str, outcome: str, *, success: bool) -> None:
        """Remember the latest fetch outcome of ``source`` (and the time when it succeeded)."""
        now = now_utc().isoformat()
        self._db.execute(
            "INSERT INTO source_health (source, last_outcome, last_fetch, last_success) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(source) DO UPDATE SET last_outcome = excluded.last_outcome, "
            "last_fetch = excluded.last_fetch, last_success = COALESCE(excluded.last_success, last_success)",
            (source, outcome, now, now if success else None),
        )

    def record_check(
        self, source: str, url: str, outcome: str, *, entries: int | None, newest: datetime | None, verified: bool
    ) -> None:
        """Remember a ``sources check`` of ``url``; ``verified`` (a parseable document with recent entries)
        sets ``verified_at`` to now, otherwise the previous ``verified_at`` is kept."""
        now = now_utc().isoformat()
        self._db.execute(
            "INSERT INTO source_checks (url, source, outcome, checked_at, entries, newest, verified_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(url) DO UPDATE SET source = excluded.source, "
            "outcome = excluded.outcome, checked_at = excluded.checked_at, entries = excluded.entries, "
            "newest = excluded.newest, verified_at = COALESCE(excluded.verified_at, verified_at)",
            (
                url,
                source,
                outcome,
                now,
                entries,
                None if newest is None else newest.isoformat(),
                now if verified else None,
            ),
        )

    def checks(self) -> list[UrlCheck]:
        """Every recorded URL check, by source then URL."""
        rows = self._db.execute(
            "SELECT source, url, outcome, checked_at, entries, newest, verified_at FROM source_checks "
            "ORDER BY source, url"
        )
        return [
            UrlCheck(
                source=source,
                url=url,
                outcome=outcome,
                checked_at=parse_time(checked),
                entries=entries,
                newest=None if newest is None else parse_time(newest),
                verified_at=None if verified is None else parse_time(verified),
            )
            for source, url, outcome, checked, entries, newest, verified in rows
        ]

    def health(self) -> dict[str, SourceHealth]:
        out: dict[str, SourceHealth] = {}
        for source, outcome, fetched, success in self._db.execute(
            "SELECT source, last_outcome, last_fetch, last_success FROM source_health"
        ):
            out[source] = SourceHealth(
                source=source,
                last_outcome=outcome,
                last_fetch=parse_time(fetched),
                last_success=None if success is None else parse_time(success),
            )
        return out
