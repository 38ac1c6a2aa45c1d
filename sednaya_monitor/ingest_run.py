"""One `ingest` of a JSON-lines stream, with every non-blank line accounted for.

Each line ends as exactly one of: **indexed** (published, clustered and stored by this run),
**already seen** (its canonical URL came earlier in the input or is already stored: nothing to redo),
**off-topic** (``--relevance`` only), or **dead-lettered** (refused at ingest with the file, line and
reason, or refused by a later stage), so that ``in = indexed + already seen + off-topic + dead-lettered``.

A refused line is dead-lettered at once, keyed ``<resolved path>:<line>:<sha256 of the line, 16 hex>``
(``<stdin>`` for ``-``): a rerun of the same file finds the key among the dead letters it already has
and does not add it again. Valid articles are published in chunks; whatever was read is published
before the function returns or raises, so one bad line never costs the good lines read before it.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from sednaya_monitor.pipeline import Pipeline
from stream.article import Article
from stream.bus import Record
from stream.errors import InputError
from stream.ingest import IngestError, iter_lines, parse_line

logger = logging.getLogger(__name__)

STAGE = "ingest"
ERROR_CLASS = "IngestError"
PUBLISH_CHUNK = 500  # articles published per flush (progress granularity; all are flushed on any exit)
DLQ_SCAN_LIMIT = 10_000_000  # dead letters read to find the keys an earlier run already recorded
STDIN_ORIGIN = "<stdin>"
H_ORIGIN = "ingest.origin"  # dead-letter headers: where the line came from
H_LINE = "ingest.line"
H_KIND = "ingest.kind"


@dataclass
class IngestReport:
    """What happened to the lines of one input (see the module docstring for the balance)."""

    origin: str
    lines_in: int = 0  # non-blank lines read
    blank: int = 0
    indexed: int = 0
    already_seen: int = 0
    off_topic: int = 0
    dead_at_ingest: int = 0  # refused lines (recorded now, or by an earlier run of the same file)
    dead_recorded_before: int = 0  # of those, already in the dead letters from an earlier run
    dead_at_stages: int = 0  # published, then dead-lettered by a stage (embed, index)
    roles: Counter[str] = field(default_factory=Counter)  # story_role of this run's indexed articles

    @property
    def dead_letters(self) -> int:
        return self.dead_at_ingest + self.dead_at_stages

    @property
    def accounted(self) -> int:
        return self.indexed + self.already_seen + self.off_topic + self.dead_letters

    def lines(self, *, relevance: bool = False) -> list[str]:
        dead = f"{self.dead_letters}"
        if self.dead_letters:
            parts = [f"ingest {self.dead_at_ingest}", f"stages {self.dead_at_stages}"]
            if self.dead_recorded_before:
                parts.append(f"{self.dead_recorded_before} already recorded by an earlier run")
            dead += f" ({', '.join(parts)})"
        out = [
            f"lines in:      {self.lines_in}",
            f"indexed:       {self.indexed}",
            f"already seen:  {self.already_seen}",
            f"dead letters:  {dead}",
        ]
        if relevance:
            out.append(f"off-topic:     {self.off_topic}")
        out += [
            f"new stories:   {self.roles['first']}",
            f"duplicates:    {self.roles['duplicate']}",
            f"follow-ups:    {self.roles['follow_up']}",
        ]
        if self.blank:
            out.append(f"blank lines:   {self.blank} (skipped)")
        if self.accounted != self.lines_in:  # never expected: says so rather than print a false balance
            out.append(f"UNACCOUNTED:   {self.lines_in - self.accounted}")
        return out


def origin_key(source: BinaryIO) -> tuple[str, str]:
    """(name shown in messages, stable key prefix of dead letters) of an input stream."""
    name = getattr(source, "name", None)
    if not isinstance(name, str) or name in {"-", STDIN_ORIGIN}:
        return STDIN_ORIGIN, STDIN_ORIGIN
    return name, str(Path(name).resolve())


class IngestRun:
    """One ingest over ``pipeline``: :meth:`read` publishes an input's articles (and dead-letters its
    refused lines), :meth:`finish` drains every stage and returns the accounting.

    Args:
        pipeline: the stages, with the bus and the store they share.
        backfill: mark the articles as a historical load (no instant alerts).
        relevance: returns the article with its relevance, or None when off-topic (``--relevance``).
        on_error: ``(origin, error)`` for each refused line (the CLI prints it).
    """

    def __init__(
        self,
        pipeline: Pipeline,
        *,
        backfill: bool = False,
        relevance: Callable[[Article], Article | None] | None = None,
        on_error: Callable[[str, IngestError], None] | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.backfill = backfill
        self.relevance = relevance
        self.on_error = on_error
        self._known_letters: set[str] | None = None
        self._seen: set[str] = set()
        self._published: list[str] = []
        self.report = IngestReport(origin="")

    @property
    def published(self) -> int:
        return len(self._published)

    def read(self, source: BinaryIO) -> IngestReport:
        """Read ``source`` line by line; whatever was read is published before this returns or raises.

        Raises:
            InputError: reading ``source`` failed (the message names it and the last line read).
        """
        pipeline = self.pipeline
        settings = pipeline.settings
        metrics = pipeline.metrics
        shown, key_prefix = origin_key(source)
        report = self.report
        report.origin = shown
        if self._known_letters is None:
            self._known_letters = {
                d.key for d in pipeline.bus.dead_letters(settings.topic_raw, limit=DLQ_SCAN_LIMIT) if d.stage == STAGE
            }
        known = self._known_letters
        chunk: list[Article] = []

        def flush() -> None:
            if chunk:
                pipeline.publish(chunk)
                self._published.extend(a.id for a in chunk)
                chunk.clear()

        last_line = 0
        try:
            for line in iter_lines(source, max_line_bytes=settings.ingest_max_line_bytes):
                last_line = line.number
                item = parse_line(line, backfill=self.backfill, max_line_bytes=settings.ingest_max_line_bytes)
                if item is None:
                    report.blank += 1
                    continue
                report.lines_in += 1
                if isinstance(item, IngestError):
                    report.dead_at_ingest += 1
                    if self.on_error is not None:
                        self.on_error(shown, item)
                    key = f"{key_prefix}:{line.number}:{line.digest[:16]}"
                    if key in known:
                        report.dead_recorded_before += 1
                        continue
                    _dead_letter(pipeline, item, key=key, origin=shown)
                    known.add(key)
                    continue
                article = item
                if self.relevance is not None:
                    verdict = self.relevance(article)
                    if verdict is None:
                        report.off_topic += 1
                        metrics.articles.labels(stage=STAGE, status="rejected").inc()
                        continue
                    article = verdict
                if article.id in self._seen or pipeline.store.get_article(article.id) is not None:
                    report.already_seen += 1
                    metrics.articles.labels(stage=STAGE, status="already_seen").inc()
                    continue
                self._seen.add(article.id)
                metrics.articles.labels(stage=STAGE, status="accepted").inc()
                chunk.append(article)
                if len(chunk) >= PUBLISH_CHUNK:
                    flush()
        except OSError as exc:
            raise InputError(f"{shown}: read failed after line {last_line}: {exc}") from exc
        finally:
            flush()  # what was read is on the bus whatever happens next
        return report

    def finish(self, on_progress: Callable[[int], None] | None = None) -> IngestReport:
        """Drain every stage (``on_progress(records)`` per indexed batch), then find each published
        article in the store: indexed (with its story role) or dead-lettered by a stage."""
        self.pipeline.drain(on_progress=on_progress)
        report = self.report
        for article_id in self._published:
            stored = self.pipeline.store.get_article(article_id)
            if stored is None:
                report.dead_at_stages += 1
            else:
                report.indexed += 1
                report.roles[stored.story_role or "none"] += 1
        if report.accounted != report.lines_in:
            logger.error("ingest lines unaccounted", extra={"origin": report.origin, "in": report.lines_in,
                                                             "accounted": report.accounted})  # fmt: skip
        return report


def _dead_letter(pipeline: Pipeline, error: IngestError, *, key: str, origin: str) -> None:
    settings = pipeline.settings
    record = Record(
        topic=settings.topic_raw,
        key=key,
        value=error.raw,
        headers={H_ORIGIN: origin, H_LINE: str(error.line), H_KIND: error.kind},
        offset=-1,
    )
    pipeline.bus.dead_letter(record, stage=STAGE, error_class=ERROR_CLASS, reason=f"{origin}: {error}", attempts=1)
    pipeline.metrics.dead_letters.labels(stage=STAGE, reason=error.kind).inc()
    pipeline.metrics.articles.labels(stage=STAGE, status="dead_lettered").inc()
