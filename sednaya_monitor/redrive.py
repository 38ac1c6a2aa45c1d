"""Re-drive: make the pipeline write chosen articles again, from what the bus still holds.

Why re-publishing to the raw topic is not enough: the embed stage remembers each article's decision
and answers a known id with it (status ``replayed``) without publishing anything new, so an article
whose store write was lost after the index stage committed would never be written again. Re-drive
therefore re-publishes the article's **clustered** record (its last one on ``topic_clustered``: the
enriched article with its story) to ``topic_clustered``, which the index stage upserts by id. Only an
article that never got a clustered record (the embed stage never decided it) goes back to
``topic_raw``, where it is processed for the first time.

Every step is idempotent: a re-driven record is an upsert by article id, and re-driving twice writes
the same document twice. Story documents travel on ``topic_story_events``; an offset range of that
topic is re-published as it is (story writes are upserts by story id too).

The selection is one of: article ids; a topic/partition/offset range; or every article of the raw (or
clustered) topic that the store does not hold.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from indexer.store import SearchStore
from sednaya_monitor.settings import Settings
from stream.bus import Bus, BusAdmin, Record
from stream.errors import SednayaError

logger = logging.getLogger(__name__)

H_REDRIVE_OF = "redrive.of"  # header of a re-driven record: "<topic>:<partition>:<offset>" it copies


class RedriveError(SednayaError):
    """A re-drive cannot be done as asked (the message names the id, topic or offset)."""


@dataclass(frozen=True, slots=True)
class Selection:
    """What to re-drive. Exactly one of ``ids``, ``partition``/``start``/``stop`` (a range of ``topic``),
    or ``missing`` (every article id of ``topic`` the store does not hold)."""

    topic: str  # the topic the selection reads (a pipeline topic name)
    ids: tuple[str, ...] = ()
    partition: int | None = None
    start: int | None = None  # first offset (inclusive)
    stop: int | None = None  # offset after the last one (exclusive)
    missing: bool = False


@dataclass
class Plan:
    """Records to re-publish (each to its own topic), and what the selection found nowhere."""

    records: list[Record] = field(default_factory=list)
    not_found: list[str] = field(default_factory=list)  # ids in no topic
    held: int = 0  # articles of the topic the store already holds (``missing`` selections)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for record in self.records:
            out[record.topic] = out.get(record.topic, 0) + 1
        return out


def _admin(bus: Bus) -> BusAdmin:
    if not isinstance(bus, BusAdmin):
        raise RedriveError(f"bus {type(bus).__name__} cannot read topics back (no read_topic/group_lag)")
    return bus


def article_id(record: Record) -> str:
    return record.headers.get("article.id") or record.key


def _latest_by_id(records: Iterable[Record], wanted: set[str] | None = None) -> dict[str, Record]:
    """The last record of each article id (a later record of an id supersedes an earlier one)."""
    out: dict[str, Record] = {}
    for record in records:
        key = article_id(record)
        if wanted is None or key in wanted:
            out[key] = record
    return out


def plan(bus: Bus, store: SearchStore | None, settings: Settings, selection: Selection) -> Plan:
    """Find the records that re-drive ``selection``.

    Raises:
        RedriveError: the topic is not a pipeline topic, ``missing`` without a store, or no id found.
        BusError: the bus cannot be read.
    """
    reader = _admin(bus)
    article_topics = (settings.topic_raw, settings.topic_clustered)
    if selection.topic not in (*article_topics, settings.topic_story_events):
        raise RedriveError(
            f"topic {selection.topic!r}: re-drive reads {settings.topic_raw!r}, {settings.topic_clustered!r} "
            f"or {settings.topic_story_events!r}"
        )
    result = Plan()
    if selection.topic == settings.topic_story_events:
        if selection.ids or selection.missing:
            raise RedriveError(f"topic {selection.topic!r}: story events are re-driven by offset range only")
        result.records = list(
            reader.read_topic(
                selection.topic, partition=selection.partition, start=selection.start, stop=selection.stop
            )
        )
        return result
    if selection.ids:
        wanted: set[str] | None = set(selection.ids)
    elif selection.missing:
        if store is None:
            raise RedriveError("--missing needs the store to compare with")
        ids = list(_latest_by_id(reader.read_topic(selection.topic)))
        wanted = {i for i in ids if store.get_article(i) is None}
        result.held = len(ids) - len(wanted)
    else:
        chosen = reader.read_topic(
            selection.topic, partition=selection.partition, start=selection.start, stop=selection.stop
        )
        wanted = set(_latest_by_id(chosen))
    if not wanted:
        return result
    clustered = _latest_by_id(reader.read_topic(settings.topic_clustered), wanted)
    raw_needed = wanted - set(clustered)
    raw = _latest_by_id(reader.read_topic(settings.topic_raw), raw_needed) if raw_needed else {}
    result.records = [clustered[i] for i in sorted(clustered)] + [raw[i] for i in sorted(raw)]
    result.not_found = sorted(raw_needed - set(raw))
    if selection.ids and result.not_found:
        raise RedriveError(
            f"article ids {result.not_found} are on neither {settings.topic_clustered!r} nor {settings.topic_raw!r} "
            "(retention may have removed them: re-ingest the source instead)"
        )
    return result


def execute(bus: Bus, records: Sequence[Record]) -> int:
    """Re-publish ``records`` to their own topics (key, value, headers kept; ``redrive.of`` added); flush.

    Returns how many. Raises ``BusError`` when the bus does not acknowledge them.
    """
    for record in records:
        headers = dict(record.headers)
        headers[H_REDRIVE_OF] = f"{record.topic}:{record.partition}:{record.offset}"
        bus.publish(record.topic, record.key, record.value, headers)
    bus.flush()
    if records:
        logger.info("records re-driven", extra={"count": len(records)})
    return len(records)
