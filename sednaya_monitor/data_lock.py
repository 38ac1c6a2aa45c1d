"""The data-directory lock: one writer of the embedded bus, story state and store at a time.

``ingest``, ``run`` and ``demo`` take it: two of them on one directory would each redo the other's
records and print false summaries. It is an advisory lock (``filelock``: ``flock`` on Unix) on
``<data dir>/lock``, released by the kernel when the holder dies, even by ``kill -9``; the holder writes
its pid, command and start time to ``<data dir>/lock.holder.json`` so that a second process can say who
holds it. Read-only commands (``search``, ``export``, ``serve``, ``stories``) never take it.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

from filelock import FileLock, Timeout

from stream.article import now_utc
from stream.errors import DataDirLockedError

logger = logging.getLogger(__name__)

LOCK_FILE = "lock"  # the file flock()ed; its content is irrelevant (filelock may truncate it)
HOLDER_FILE = "lock.holder.json"  # who holds the lock: written by the holder after it has the lock
POLL_INTERVAL_S = 0.2  # how often a waiting process retries the lock


@dataclass(frozen=True, slots=True)
class Holder:
    pid: int
    command: str
    host: str
    since: str  # ISO 8601 UTC

    def __str__(self) -> str:
        return f"pid {self.pid} on {self.host} ({self.command}), since {self.since}"


def current_command() -> str:
    """This process's command line as a shell would show it (``sednaya-monitor ingest a.jsonl``)."""
    args = list(sys.argv)
    prog = Path(args[0]).name if args and args[0] and args[0] != "-c" else "sednaya-monitor"
    return shlex.join([prog, *args[1:]])


def read_holder(data_dir: Path) -> Holder | None:
    """The recorded holder (None when there is no readable record: no holder, or one just starting)."""
    try:
        data = json.loads((data_dir / HOLDER_FILE).read_text(encoding="utf-8"))
        return Holder(pid=int(data["pid"]), command=str(data["command"]), host=str(data["host"]),
                      since=str(data["since"]))  # fmt: skip
    except (OSError, ValueError, KeyError, TypeError):
        return None


class DataDirLock:
    """Context manager holding the lock on ``data_dir``.

    Args:
        data_dir: the directory (created when missing).
        wait_s: how long to wait for the current holder; 0 fails at once.
        command: recorded for the next process to see (default: this process's command line).
        on_wait: called once with the holder (or None) when the lock is busy and this one waits.

    Raises:
        DataDirLockedError: on entry, when the lock is still held after ``wait_s`` seconds.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        wait_s: float = 0.0,
        command: str | None = None,
        on_wait: Callable[[Holder | None], None] | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.wait_s = wait_s
        self.command = command if command is not None else current_command()
        self.on_wait = on_wait
        self._lock: FileLock | None = None

    def __enter__(self) -> Self:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(self.data_dir / LOCK_FILE))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            holder = read_holder(self.data_dir)
            if self.wait_s <= 0:
                raise DataDirLockedError(self._busy(holder, waited=False)) from None
            if self.on_wait is not None:
                self.on_wait(holder)
            try:
                lock.acquire(timeout=self.wait_s, poll_interval=POLL_INTERVAL_S)
            except Timeout:
                raise DataDirLockedError(self._busy(read_holder(self.data_dir) or holder, waited=True)) from None
        self._lock = lock
        record = {"pid": os.getpid(), "command": self.command, "host": socket.gethostname(),
                  "since": now_utc().isoformat().replace("+00:00", "Z")}  # fmt: skip
        tmp = self.data_dir / f"{HOLDER_FILE}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(record), encoding="utf-8")
        os.replace(tmp, self.data_dir / HOLDER_FILE)
        logger.debug("data directory locked", extra={"data_dir": str(self.data_dir), "pid": os.getpid()})
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._lock is None:
            return
        holder = read_holder(self.data_dir)
        if holder is not None and holder.pid == os.getpid():
            (self.data_dir / HOLDER_FILE).unlink(missing_ok=True)
        self._lock.release()
        self._lock = None

    def _busy(self, holder: Holder | None, *, waited: bool) -> str:
        who = f"by {holder}" if holder is not None else "by another process (holder not recorded yet)"
        tail = (
            f"waited {self.wait_s:g} s; try again later or wait longer with --wait SECONDS"
            if waited
            else "wait for it to finish, or pass --wait SECONDS to wait for it"
        )
        return f"data directory {str(self.data_dir)!r} is in use {who}: {tail}"
