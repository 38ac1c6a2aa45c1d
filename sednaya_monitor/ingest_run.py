"""One `ingest` of a JSON-lines stream, with every non-blank line accounted for.

Each line ends as exactly one of: **indexed** (published, clustered and stored by this run),
**already seen** (its canonical URL came earlier in the input or is already stored: nothing to redo),
**off-topic** (``--relevance`` only), or **dead-lettered** (refused at ingest with the file, line and
reason, or refused by a later stage), so that ``in = indexed + already seen + off-topic + dead-lettered``.
With ``--publish-only`` (:class:`RawTopicPublisher`: no stage, no store) **published** takes the place of
indexed, and a chunk whose flush the bus refused is **not confirmed** (publishing it again is harmless).

A bus with a largest record (Kafka: ``stream.bus_kafka.MAX_RECORD_BYTES``) gets no article whose record would not fit
with ``STAGE_HEADROOM_BYTES`` to spare for what the stages add to it: such a line is refused at ingest
(``too_large``) instead of failing the publish, and a dead letter's copy of a line is cut to fit the bus.

A refused line is dead-lettered at once, keyed ``<resolved path>:<line>:<sha256 of the line, 16 hex>``
(``<stdin>`` for ``-``): a rerun of the same file finds the key among the dead letters it already has
and does not add it again. Valid articles are published in chunks; whatever was read is published
before the function returns or raises, so one bad line never costs the good lines read before it.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Protocol

from indexer.store import SearchStore
from sednaya_monitor.pipeline import Pipeline, publish_articles
from sednaya_monitor.prometheus_metrics import PrometheusMetrics
from sednaya_monitor.settings import Settings
from stream.article import Article
from stream.bus import Bus, Record
from stream.errors import InputError
from stream.ingest import IngestError, Line, iter_lines, parse_line

logger = logging.getLogger(__name__)

STAGE = "ingest"
ERROR_CLASS = "IngestError"
PUBLISH_CHUNK = 500  # articles published per flush (progress granularity; all are flushed on any exit)
DLQ_SCAN_LIMIT = 10_000_000  # dead letters read to find the keys an earlier run already recorded
STDIN_ORIGIN = "<stdin>"
H_ORIGIN = "ingest.origin"  # dead-letter headers: where the line came from
H_LINE = "ingest.line"
H_KIND = "ingest.kind"
H_KEPT = "ingest.kept_bytes"  # set when the letter holds only the first N bytes of the line (cut to fit the bus)
# Kept free under the bus's largest record for what the stages add to an article (its vector on
# articles.embedded: up to ~20 KB as a JSON list; the story fields on articles.clustered): an article that
# fits the raw topic must fit theirs.
STAGE_HEADROOM_BYTES = 64 * 1024
# A record's size beyond key, value and header bytes, as kafka-python estimates it (batch header 61 bytes,
# varints): generous.
RECORD_OVERHEAD_BYTES = 256
# Kept free under the bus's largest record in a dead letter for its dlq.* headers (the error message, the
# origin path): the letter's copy of the line is cut to the rest.
DEAD_LETTER_HEADROOM_BYTES = 16 * 1024
ARTICLE_HEADER_BYTES = 64  # schema + entered_at headers of a raw-topic record (pipeline.publish_article)


def max_record_bytes(settings: Settings) -> int | None:
    """The largest record the settings' bus takes, in bytes (None: no limit an article could reach): the Kafka
    producer's (``stream.bus_kafka.MAX_RECORD_BYTES``)."""
    if not settings.distributed_bus:
        return None
    from stream.bus_kafka import MAX_RECORD_BYTES  # the Kafka client only when the bus is Kafka

    return MAX_RECORD_BYTES


def record_bytes(article: Article) -> int:
    """The size of ``article``'s raw-topic record as a Kafka producer counts it (key, value, headers, overhead)."""
    return len(article.id) + len(article.to_bytes()) + ARTICLE_HEADER_BYTES + RECORD_OVERHEAD_BYTES


class IngestTarget(Protocol):
    """Where an :class:`IngestRun` publishes: a :class:`Pipeline`, or a :class:`RawTopicPublisher`."""

    @property
    def settings(self) -> Settings: ...

    @property
    def metrics(self) -> PrometheusMetrics: ...

    @property
    def bus(self) -> Bus: ...

    @property
    def store(self) -> SearchStore | None:
        """The store asked whether an article is known already; None: not asked (the stages answer it)."""

    def publish(self, articles: Iterable[Article]) -> int:
        """Publish ``articles`` to the raw topic and flush (raises ``BusError`` when the flush fails)."""


class RawTopicPublisher:
    """The target of ``ingest --publish-only``: the raw topic of ``bus``, no stage and no store."""

    def __init__(self, settings: Settings, metrics: PrometheusMetrics, bus: Bus) -> None:
        self.settings = settings
        self.metrics = metrics
        self.bus = bus
        self.store: SearchStore | None = None

    def publish(self, articles: Iterable[Article]) -> int:
        return publish_articles(self.bus, self.settings, articles)


@dataclass
class IngestReport:
    """What happened to the lines of one input (see the module docstring for the balance)."""

    origin: str
    publish_only: bool = False  # published only (RawTopicPublisher): ``published`` ends a line, not ``indexed``
    lines_in: int = 0  # non-blank lines read
    blank: int = 0
    published: int = 0  # published to the raw topic by this run, the bus's flush confirmed
    unconfirmed: int = 0  # published, but the bus's flush failed: may or may not be on the bus
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
        ended = self.published + self.unconfirmed if self.publish_only else self.indexed
        return ended + self.already_seen + self.off_topic + self.dead_letters

    def lines(self, *, relevance: bool = False) -> list[str]:
        if self.publish_only:
            return self._published_lines(relevance=relevance)
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
        return out + self._tail()

    def _published_lines(self, *, relevance: bool) -> list[str]:
        dead = f"{self.dead_letters}"
        if self.dead_recorded_before:
            dead += f" ({self.dead_recorded_before} already recorded by an earlier run)"
        out = [
            f"lines in:      {self.lines_in}",
            f"published:     {self.published}",
            f"already seen:  {self.already_seen} (earlier in this input)",
            f"dead letters:  {dead}",
        ]
        if relevance:
            out.append(f"off-topic:     {self.off_topic}")
        if self.unconfirmed:
            out.append(f"not confirmed: {self.unconfirmed} (the bus refused their flush; publishing again is harmless)")
        return out + self._tail()

    def _tail(self) -> list[str]:
        out = []
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
        pipeline: the stages, with the bus and the store they share; or a :class:`RawTopicPublisher`
            (publish only: :meth:`finish` is not called, :attr:`report` is the accounting).
        backfill: mark the articles as a historical load (no instant alerts).
        relevance: returns the article with its relevance, or None when off-topic (``--relevance``).
        on_error: ``(origin, error)`` for each refused line (the CLI prints it).
    """

    def __init__(
        self,
        pipeline: IngestTarget,
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
        self.report = IngestReport(origin="", publish_only=not isinstance(pipeline, Pipeline))

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
        store = pipeline.store
        record_limit = max_record_bytes(settings)
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
            if not chunk:
                return
            try:
                pipeline.publish(chunk)
            except BaseException:
                report.unconfirmed += len(chunk)
                chunk.clear()
                raise
            report.published += len(chunk)
            self._published.extend(a.id for a in chunk)
            chunk.clear()

        def refuse(line: Line, error: IngestError) -> None:
            report.dead_at_ingest += 1
            if self.on_error is not None:
                self.on_error(shown, error)
            key = f"{key_prefix}:{line.number}:{line.digest[:16]}"
            if key in known:
                report.dead_recorded_before += 1
                return
            _dead_letter(pipeline, error, key=key, origin=shown, record_limit=record_limit)
            known.add(key)

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
                    refuse(line, item)
                    continue
                article = item
                if self.relevance is not None:
                    verdict = self.relevance(article)
                    if verdict is None:
                        report.off_topic += 1
                        metrics.articles.labels(stage=STAGE, status="rejected").inc()
                        continue
                    article = verdict
                if article.id in self._seen or (store is not None and store.get_article(article.id) is not None):
                    report.already_seen += 1
                    metrics.articles.labels(stage=STAGE, status="already_seen").inc()
                    continue
                too_large = _too_large(article, line, record_limit)
                if too_large is not None:
                    refuse(line, too_large)
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
        pipeline.bus.flush()  # the dead letters of lines after the last chunk
        return report

    def finish(self, on_progress: Callable[[int], None] | None = None) -> IngestReport:
        """Drain every stage (``on_progress(records)`` per indexed batch), then find each published
        article in the store: indexed (with its story role) or dead-lettered by a stage.

        Raises:
            TypeError: the run publishes only (a :class:`RawTopicPublisher`): there is nothing to drain.
        """
        pipeline = self.pipeline
        if not isinstance(pipeline, Pipeline):
            raise TypeError(f"IngestRun.finish drains the stages of a Pipeline, not of a {type(pipeline).__name__}")
        pipeline.drain(on_progress=on_progress)
        report = self.report
        for article_id in self._published:
            stored = pipeline.store.get_article(article_id)
            if stored is None:
                report.dead_at_stages += 1
            else:
                report.indexed += 1
                report.roles[stored.story_role or "none"] += 1
        if report.accounted != report.lines_in:
            logger.error("ingest lines unaccounted", extra={"origin": report.origin, "in": report.lines_in,
                                                             "accounted": report.accounted})  # fmt: skip
        return report


def _too_large(article: Article, line: Line, record_limit: int | None) -> IngestError | None:
    """The error of an article whose raw-topic record would not fit the bus (with the stages' headroom)."""
    if record_limit is None:
        return None
    size = record_bytes(article)
    allowed = record_limit - STAGE_HEADROOM_BYTES
    if size <= allowed:
        return None
    return IngestError(
        line.number,
        None,
        f"article {article.url} makes a {size}-byte bus record; the bus takes at most {record_limit} "
        f"({allowed} for an article, {STAGE_HEADROOM_BYTES} kept for what the stages add)",
        line.raw,
        "too_large",
    )


def _dead_letter(
    pipeline: IngestTarget, error: IngestError, *, key: str, origin: str, record_limit: int | None
) -> None:
    settings = pipeline.settings
    value = error.raw
    headers = {H_ORIGIN: origin, H_LINE: str(error.line), H_KIND: error.kind}
    reason = f"{origin}: {error}"
    if record_limit is not None and len(value) > record_limit - DEAD_LETTER_HEADROOM_BYTES:
        value = value[: record_limit - DEAD_LETTER_HEADROOM_BYTES]
        headers[H_KEPT] = str(len(value))
        reason += f" (the letter keeps the first {len(value)} bytes of the line)"
    record = Record(topic=settings.topic_raw, key=key, value=value, headers=headers, offset=-1)
    pipeline.bus.dead_letter(record, stage=STAGE, error_class=ERROR_CLASS, reason=reason, attempts=1)
    pipeline.metrics.dead_letters.labels(stage=STAGE, reason=error.kind).inc()
    pipeline.metrics.articles.labels(stage=STAGE, status="dead_lettered").inc()
