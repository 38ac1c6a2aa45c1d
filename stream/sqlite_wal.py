"""Opening a SQLite file in WAL mode while other processes may be opening it at the same moment.

Switching a database to WAL (``PRAGMA journal_mode=WAL``) needs a lock that SQLite does not wait for: when
two processes open a new file together (``serve --workers 2`` forks workers that each open the watchlists,
the alert ledger and the store at once), one of them gets "database is locked" at once, whatever the busy
timeout. :func:`connect_wal` tries the switch again until the timeout instead.
Every SQLite file that more than one process opens goes through it: the embedded bus, the store, the
watchlists, the alert ledger, the crawl state (the story state has one owner).
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

FIRST_RETRY_S = 0.01  # then doubled, up to MAX_RETRY_S
MAX_RETRY_S = 0.2


def connect_wal(path: Path, *, timeout_s: float) -> sqlite3.Connection:
    """A connection to ``path`` in WAL mode (autocommit: ``isolation_level=None``, usable from any thread),
    waiting up to ``timeout_s`` for a lock as SQLite's busy timeout does, the switch to WAL included.

    Raises:
        sqlite3.OperationalError: still locked after ``timeout_s``, or any other error of the switch.
    """
    conn = sqlite3.connect(path, timeout=timeout_s, check_same_thread=False, isolation_level=None)
    deadline = time.monotonic() + timeout_s
    delay = FIRST_RETRY_S
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return conn
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() + delay > deadline:
                conn.close()
                raise
            time.sleep(delay)
            delay = min(MAX_RETRY_S, delay * 2)
