"""Logging set-up: only the CLI configures handlers (modules just ``getLogger(__name__)``).

- JSON lines (``time`` in ISO 8601 UTC) or text with a timestamp; the CLI picks one after every flag is read.
- Third-party client libraries (``THIRD_PARTY``) log at WARNING unless ``-L name:LEVEL`` says otherwise,
  and their lines never carry a traceback (the exception's class and message go in ``error``).
- A warning or error repeated within ``REPEAT_WINDOW_S`` (same logger, level, message and dependency)
  is written once; the next one written after the window says how many were held back (``repeated``).
  A 30-second store outage is then a few lines, not hundreds of tracebacks.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from datetime import UTC, datetime

THIRD_PARTY = ("kafka", "elastic_transport", "elasticsearch", "urllib3")  # client libraries: WARNING by default
REPEAT_WINDOW_S = 60.0  # an identical warning within this many seconds is counted, not written again
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


class JsonLinesFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and every ``extra`` field."""

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        out.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD})
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """Human text with the ``extra`` fields appended as key=value."""

    def format(self, record: logging.LogRecord) -> str:
        base = super().format(record)
        extras = {k: v for k, v in record.__dict__.items() if k not in _STANDARD}
        if extras:
            base += " " + " ".join(f"{k}={v}" for k, v in extras.items())
        return base


class RepeatFilter(logging.Filter):
    """Strips third-party tracebacks and collapses repeated warnings (see the module docstring)."""

    def __init__(self, window_s: float = REPEAT_WINDOW_S) -> None:
        super().__init__()
        self.window_s = window_s
        self._lock = threading.Lock()
        self._seen: dict[tuple[str, int, str, str], list[float]] = {}  # key -> [first time written, held back]

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.split(".", 1)[0] in THIRD_PARTY and record.exc_info:
            error = record.exc_info[1]
            record.error = f"{type(error).__name__}: {error}" if error is not None else "unknown"
            record.exc_info = None
            record.exc_text = None
        if record.levelno < logging.WARNING:
            return True
        key = (record.name, record.levelno, str(record.msg), str(getattr(record, "dependency", "")))
        with self._lock:
            seen = self._seen.get(key)
            if seen is not None and record.created - seen[0] < self.window_s:
                seen[1] += 1
                return False
            if seen is not None and seen[1]:
                record.repeated = int(seen[1])
            self._seen[key] = [record.created, 0]
        if record.exc_info and seen is not None:  # the first occurrence had the traceback
            record.error = f"{type(record.exc_info[1]).__name__}: {record.exc_info[1]}"
            record.exc_info = None
            record.exc_text = None
        return True


def configure_logging(level: str, logger_levels: tuple[str, ...], *, json_lines: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLinesFormatter() if json_lines else TextFormatter(TEXT_FORMAT))
    handler.addFilter(RepeatFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in THIRD_PARTY:
        logging.getLogger(name).setLevel(logging.WARNING)
    for spec in logger_levels:
        name, _, lvl = spec.rpartition(":")
        logging.getLogger(name).setLevel(lvl.upper())
