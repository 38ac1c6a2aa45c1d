"""The crawl's dead-letter file: ``<data_dir>/crawl/dead-letters.jsonl``.

What lands here: relevant articles the bus refused (``kind = "article"``, the full v1 JSON in
``payload``, so ``sednaya-monitor ingest`` can replay it) and search-API responses that could not be
parsed even after repair (``kind = "search_response"``, the first ``MAX_PAYLOAD_CHARS`` of the body).
A file, not the bus's own dead-letter topic, because the usual reason to dead-letter here is that the
bus itself failed. One JSON object per line with who/when/what/where.

``sednaya-monitor dlq list`` shows these letters after the bus's (topic column ``crawl-file``, id
``crawl:<line>``; ``dlq list --crawl`` shows only them); ``sednaya-monitor ingest FILE`` (``--publish-only``
on a Kafka bus) replays the ``article`` letters. Replayed letters stay in the file: a second replay
publishes their articles again, which the stages answer as ``replayed`` (move the file aside after a
replay).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stream.article import now_utc

DEAD_LETTER_FILE = Path("crawl") / "dead-letters.jsonl"
MAX_PAYLOAD_CHARS = 200_000  # keeps one line readable; an API body larger than this is cut


UNREADABLE = "unreadable"  # kind of a listed line that is no letter (cut by a crash in the middle of a write)


@dataclass(frozen=True, slots=True)
class CrawlLetter:
    """One line of the file as listed: its 1-based ``line`` number and the letter's fields ("" if absent)."""

    line: int
    at: str
    kind: str  # "article", "search_response", or UNREADABLE
    url: str
    source: str
    error_class: str
    reason: str
    size_bytes: int  # of the line


class DeadLetterFile:
    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / DEAD_LETTER_FILE
        self._lock = threading.Lock()

    def write(self, *, kind: str, url: str, source: str, reason: str, error_class: str, payload: Any) -> None:
        """Append one dead letter (flushed before returning)."""
        if isinstance(payload, str) and len(payload) > MAX_PAYLOAD_CHARS:
            payload = payload[:MAX_PAYLOAD_CHARS]
        line = json.dumps(
            {
                "at": now_utc().isoformat(),
                "stage": "crawl",
                "kind": kind,
                "url": url,
                "source": source,
                "reason": reason,
                "error_class": error_class,
                "payload": payload,
            },
            ensure_ascii=False,
        )
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write(line + "\n")

    def letters(self) -> list[CrawlLetter]:
        """Every non-blank line as a :class:`CrawlLetter`, oldest first (empty when there is no file); a line
        that is not a JSON object is listed with kind ``UNREADABLE`` and the reason, not skipped."""
        if not self.path.exists():
            return []
        out: list[CrawlLetter] = []
        with self.path.open("rb") as fh:
            for number, raw in enumerate(fh, start=1):
                if not raw.strip():
                    continue
                try:
                    data = json.loads(raw)
                except ValueError as exc:
                    data = {"kind": UNREADABLE, "reason": f"line {number} is not JSON: {exc}"}
                if not isinstance(data, dict):
                    data = {"kind": UNREADABLE, "reason": f"line {number} is not a JSON object"}
                out.append(
                    CrawlLetter(
                        line=number,
                        size_bytes=len(raw.rstrip(b"\r\n")),
                        **{name: str(data.get(name) or "") for name in _LISTED},
                    )
                )
        return out

    def read(self) -> list[dict[str, Any]]:
        """Every dead letter, oldest first (empty when the file does not exist)."""
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text(encoding="utf-8").splitlines() if line.strip()]


_LISTED = ("at", "kind", "url", "source", "error_class", "reason")  # CrawlLetter's fields read from a line
