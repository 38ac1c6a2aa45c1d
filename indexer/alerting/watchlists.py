"""Watchlists (saved searches that alert on new stories) and where they are kept.

A :class:`Watchlist` is a name, a query in the query language of DESIGN.md, optional language and
source filters, delivery targets (webhook URLs signed with the watchlist's HMAC secret, optionally in
Slack's payload format, and e-mail addresses) and a mode: ``instant`` (one alert per story, on its first
fresh matching article: ``indexer.alerting.alerts``) or ``digest`` (new stories collected and sent ``hourly`` or
``daily``). Every watchlist also gets a digest of updates (duplicates and follow-ups of the stories it
alerted on, older coverage) at its ``every``.

Where they are kept (``sednaya_monitor.wiring.make_watchlists``): :class:`SqliteWatchlistRepository` in
``<data_dir>/watchlists.sqlite3`` in the embedded mode; ``indexer.alerting.watchlists_elastic`` in the search
store when it is Elasticsearch (distributed mode).
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

from indexer.errors import QuerySyntaxError, WatchlistError
from indexer.query import parse
from stream.article import iso_utc, now_utc, parse_time
from stream.sqlite_wal import connect_wal

logger = logging.getLogger(__name__)

Mode = Literal["instant", "digest"]
Every = Literal["hourly", "daily"]
MODES: frozenset[str] = frozenset({"instant", "digest"})
EVERIES: frozenset[str] = frozenset({"hourly", "daily"})
EVERY_SECONDS: dict[str, int] = {"hourly": 3600, "daily": 86400}

# Names appear in URLs (/watchlists/<name>/atom.xml) and e-mail subjects: keep them URL-safe and short.
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
# A simple addr-spec check: we do not try to validate RFC 5322, only catch typos like a missing "@".
EMAIL_RE = re.compile(r"^[^@\s<>]+@[^@\s<>]+$")
SECRET_BYTES = 32  # generated HMAC secrets: 256 bits, hex encoded
MAX_QUERY_CHARS = 2000  # a saved search is typed by a person; longer is a paste accident


@dataclass(frozen=True, kw_only=True, slots=True)
class Watchlist:
    """A saved search. ``secret`` signs webhook bodies (``X-Sednaya-Signature``); empty = unsigned."""

    name: str
    query: str
    lang: str | None = None
    source: str | None = None
    webhooks: tuple[str, ...] = ()
    secret: str = ""
    slack: bool = False  # webhook bodies in Slack's incoming-webhook format ({"text", "blocks"})
    emails: tuple[str, ...] = ()
    mode: Mode = "instant"
    every: Every = "daily"  # digest period (new stories in digest mode; updates in both modes)
    created_at: datetime = field(default_factory=now_utc)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raises ``WatchlistError`` naming the watchlist and the bad field."""
        if not NAME_RE.match(self.name):
            raise WatchlistError(
                f"watchlist name {self.name!r}: use 1-64 letters, digits, '.', '_' or '-', "
                "starting with a letter or digit"
            )
        where = f"watchlist {self.name!r}"
        if not self.query.strip():
            raise WatchlistError(f"{where}: the query is empty")
        if len(self.query) > MAX_QUERY_CHARS:
            raise WatchlistError(f"{where}: the query has {len(self.query)} characters (at most {MAX_QUERY_CHARS})")
        try:
            parse(self.query)
        except QuerySyntaxError as exc:
            raise WatchlistError(f"{where}: {exc}") from exc
        if self.mode not in MODES:
            raise WatchlistError(f"{where}: mode {self.mode!r}, expected one of {sorted(MODES)}")
        if self.every not in EVERIES:
            raise WatchlistError(f"{where}: every {self.every!r}, expected one of {sorted(EVERIES)}")
        for url in self.webhooks:
            parts = urlsplit(url)
            if parts.scheme not in {"http", "https"} or not parts.netloc:
                raise WatchlistError(f"{where}: webhook {url!r} is not an http(s) URL")
        for addr in self.emails:
            if not EMAIL_RE.match(addr):
                raise WatchlistError(f"{where}: e-mail address {addr!r} is not of the form name@host")
        if self.slack and not self.webhooks:
            raise WatchlistError(f"{where}: --slack needs a webhook URL")

    @property
    def targets(self) -> tuple[str, ...]:
        """Target ids, the ledger's delivery keys and the channel registry's keys (``indexer.alerting.channels``):
        ``webhook:<url>`` (``slack:<url>`` when ``slack``) and ``email:<addr>``."""
        kind = "slack" if self.slack else "webhook"
        return tuple(f"{kind}:{u}" for u in self.webhooks) + tuple(f"email:{a}" for a in self.emails)

    def masked(self) -> dict[str, Any]:
        """``to_dict()`` for readers without the API token: webhook URLs (which often hold a secret,
        e.g. Slack's) and e-mail addresses reduced to scheme and host / domain."""
        out = self.to_dict()
        out["webhooks"] = [mask_url(u) for u in self.webhooks]
        out["emails"] = [mask_email(a) for a in self.emails]
        out["masked"] = True
        return out

    def to_dict(self, *, with_secret: bool = False) -> dict[str, Any]:
        """JSON-ready dict; the secret is left out (``secret_set`` says whether there is one) unless asked."""
        out: dict[str, Any] = {
            "name": self.name,
            "query": self.query,
            "lang": self.lang,
            "source": self.source,
            "webhooks": list(self.webhooks),
            "slack": self.slack,
            "emails": list(self.emails),
            "mode": self.mode,
            "every": self.every,
            "created_at": iso_utc(self.created_at),
            "secret_set": bool(self.secret),
        }
        if with_secret:
            out["secret"] = self.secret
        return out

    @classmethod
    def from_dict(cls, data: Any) -> Watchlist:
        """Inverse of ``to_dict(with_secret=True)``; raises ``WatchlistError`` naming the bad field."""
        if not isinstance(data, dict):
            raise WatchlistError(f"watchlist must be a JSON object, got {type(data).__name__}")
        name = data.get("name")
        try:
            created = data.get("created_at")
            return cls(
                name=str(name),
                query=str(data["query"]),
                lang=data.get("lang") or None,
                source=data.get("source") or None,
                webhooks=tuple(str(u) for u in data.get("webhooks", [])),
                secret=str(data.get("secret") or ""),
                slack=bool(data.get("slack", False)),
                emails=tuple(str(a) for a in data.get("emails", [])),
                mode=data.get("mode", "instant"),
                every=data.get("every", "daily"),
                created_at=parse_time(created) if created else now_utc(),
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, WatchlistError):
                raise
            raise WatchlistError(f"watchlist {name!r}: invalid field: {exc}") from exc


def mask_url(url: str) -> str:
    """``https://hooks.slack.com/services/T0/B0/xyz`` -> ``https://hooks.slack.com/…``."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or '?'}/…"


def mask_email(address: str) -> str:
    """``desk@example.org`` -> ``…@example.org``."""
    return "…@" + address.rpartition("@")[2]


def new_secret() -> str:
    """A fresh random HMAC secret (hex, ``SECRET_BYTES`` bytes)."""
    return secrets.token_hex(SECRET_BYTES)


class WatchlistRepository(Protocol):
    def add(self, watchlist: Watchlist, *, replace: bool = False) -> None:
        """Store ``watchlist``; raises ``WatchlistError`` if the name exists and not ``replace``."""

    def get(self, name: str) -> Watchlist | None: ...

    def all(self) -> list[Watchlist]:
        """Every watchlist, by name."""

    def remove(self, name: str) -> bool:
        """True if it existed."""

    def close(self) -> None: ...


_SCHEMA = """
CREATE TABLE IF NOT EXISTS watchlists (
    name TEXT PRIMARY KEY,
    body TEXT NOT NULL,            -- Watchlist.to_dict(with_secret=True) as JSON
    updated_at TEXT NOT NULL
);
"""


class SqliteWatchlistRepository:
    """Watchlists in one SQLite file (``<data_dir>/watchlists.sqlite3``); safe to share between threads."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = connect_wal(self.path, timeout_s=30.0)  # serve's workers open it at the same moment
        self._db.executescript(_SCHEMA)

    @classmethod
    def in_data_dir(cls, data_dir: Path) -> SqliteWatchlistRepository:
        return cls(Path(data_dir) / "watchlists.sqlite3")

    def add(self, watchlist: Watchlist, *, replace: bool = False) -> None:
        body = json.dumps(watchlist.to_dict(with_secret=True), ensure_ascii=False)
        stamp = now_utc().isoformat()
        with self._lock:
            if replace:
                self._db.execute(
                    "INSERT OR REPLACE INTO watchlists(name, body, updated_at) VALUES (?, ?, ?)",
                    (watchlist.name, body, stamp),
                )
                return
            try:
                self._db.execute(
                    "INSERT INTO watchlists(name, body, updated_at) VALUES (?, ?, ?)", (watchlist.name, body, stamp)
                )
            except sqlite3.IntegrityError as exc:
                raise WatchlistError(
                    f"watchlist {watchlist.name!r} already exists (remove it first, or replace it)"
                ) from exc

    def get(self, name: str) -> Watchlist | None:
        with self._lock:
            row = self._db.execute("SELECT body FROM watchlists WHERE name = ?", (name,)).fetchone()
        return None if row is None else Watchlist.from_dict(json.loads(row[0]))

    def all(self) -> list[Watchlist]:
        with self._lock:
            rows = self._db.execute("SELECT name, body FROM watchlists ORDER BY name").fetchall()
        out: list[Watchlist] = []
        for name, body in rows:
            try:
                out.append(Watchlist.from_dict(json.loads(body)))
            except WatchlistError as exc:  # stored by an older version with other rules: skip, say so
                logger.warning("stored watchlist invalid, skipped", extra={"watchlist": name, "error": str(exc)})
        return out

    def remove(self, name: str) -> bool:
        with self._lock:
            cur = self._db.execute("DELETE FROM watchlists WHERE name = ?", (name,))
        return cur.rowcount > 0

    def close(self) -> None:
        with self._lock:
            self._db.close()


def require(repository: WatchlistRepository, name: str) -> Watchlist:
    """The watchlist called ``name``; raises ``WatchlistError`` listing the known names when missing."""
    found = repository.get(name)
    if found is None:
        known: Sequence[str] = [w.name for w in repository.all()]
        raise WatchlistError(f"no watchlist named {name!r} (known: {', '.join(known) or 'none'})")
    return found
