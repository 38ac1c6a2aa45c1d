"""The ``Bus`` port: topics of keyed records with consumer groups and dead-letter twins.

Two adapters implement it: ``stream.bus_embedded.EmbeddedBus`` (SQLite WAL log in the data directory)
and ``stream.bus_kafka.KafkaBus`` (kafka-python). Stages only see this module.

Delivery is at-least-once: a consumer that dies before ``commit`` gets its records again, so every
stage's effects must be idempotent (the store writes by ``_id``; clustering remembers decisions).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, runtime_checkable

from stream.errors import BusError

# Header names, the same on both buses.
H_SCHEMA = "schema"  # contract version of the value
H_ENTERED_AT = "entered_at"  # ISO 8601 UTC time the article first entered the bus (alert latency)
H_STAGE = "dlq.stage"
H_ERROR_CLASS = "dlq.error_class"
H_ERROR_MESSAGE = "dlq.error_message"
H_ORIGINAL_TOPIC = "dlq.original_topic"
H_ORIGINAL_PARTITION = "dlq.original_partition"
H_ORIGINAL_OFFSET = "dlq.original_offset"
H_ATTEMPTS = "dlq.attempts"
H_DEAD_LETTERED_AT = "dlq.at"
# A letter whose copy of the record was refused as too large carries no value, and says why here
# (size and the broker's error); find the record by dlq.original_topic/partition/offset and its key.
H_VALUE_DROPPED = "dlq.value_dropped"
# Error text kept in a letter's dlq.error_message: a record just under the broker's size limit must still fit
# with its headers (an exception may quote the whole record).
DLQ_REASON_MAX_BYTES = 2048


def dlq_reason(text: str) -> str:
    """``text`` cut to at most ``DLQ_REASON_MAX_BYTES`` UTF-8 bytes (marked with a trailing ``...``)."""
    raw = text.encode("utf-8")
    if len(raw) <= DLQ_REASON_MAX_BYTES:
        return text
    return raw[: DLQ_REASON_MAX_BYTES - 3].decode("utf-8", "ignore") + "..."


@dataclass(frozen=True, kw_only=True, slots=True)
class Undelivered:
    """One record the bus did not deliver: where it was going, its size and the broker's error."""

    topic: str
    key: str
    value_bytes: int
    error: str
    too_large: bool  # refused for its size: no retry will deliver it


class UndeliveredError(BusError):
    """``Bus.flush`` could not deliver records published by the calling thread; ``failures`` names each."""

    def __init__(self, message: str, failures: Sequence[Undelivered]) -> None:
        super().__init__(message)
        self.failures = tuple(failures)


@dataclass(frozen=True, kw_only=True, slots=True)
class Record:
    """One record read from a topic. ``offset`` is unique within (topic, partition)."""

    topic: str
    key: str
    value: bytes
    headers: Mapping[str, str] = field(default_factory=dict)
    partition: int = 0
    offset: int = 0


@dataclass(frozen=True, kw_only=True, slots=True)
class DeadLetter:
    """A record that could not be processed, with who/when/what/where."""

    id: str  # adapter-specific handle, used by replay
    topic: str  # the original topic
    key: str
    value: bytes
    headers: Mapping[str, str]
    stage: str
    error_class: str
    reason: str
    attempts: int
    partition: int
    offset: int
    at: datetime


class Consumer(Protocol):
    """A member of a consumer group on one topic."""

    def poll(self, max_records: int, timeout_s: float) -> list[Record]:
        """Up to ``max_records`` records not yet committed by the group (empty when none arrive in time)."""

    def commit(self) -> None:
        """Commit everything returned by ``poll`` so far (call after the effects are durable)."""

    def lag(self) -> dict[int, int]:
        """Records not yet committed by this group, per partition this member holds."""

    def close(self) -> None:
        """Leave the group (uncommitted records go to the next member)."""


class Bus(Protocol):
    def ensure_topics(self, topics: Sequence[str]) -> None:
        """Create ``topics`` and their dead-letter twins when missing."""

    def publish(self, topic: str, key: str, value: bytes, headers: Mapping[str, str] | None = None) -> None:
        """Queue a record; records with one key keep their order. Failures surface in ``flush``."""

    def flush(self, timeout_s: float | None = None) -> None:
        """Block until every record this thread published is acknowledged.

        Raises:
            UndeliveredError: naming each of this thread's records that was not delivered (another thread's
                failures are its own flush's to report).
            BusError: the bus could not be reached or asked.
        """

    def consumer(self, topic: str, group: str) -> Consumer:
        """Join ``group`` on ``topic``."""

    def dead_letter(self, record: Record, *, stage: str, error_class: str, reason: str, attempts: int) -> None:
        """Send ``record`` to its topic's dead-letter twin with the stage, error and attempt count."""

    def dead_letters(self, topic: str, limit: int = 100) -> list[DeadLetter]:
        """Dead letters of ``topic`` not yet replayed, oldest first."""

    def replay(self, topic: str, ids: Sequence[str] | None = None) -> int:
        """Re-publish dead letters of ``topic`` (all, or ``ids``) to ``topic``; returns how many."""

    def close(self) -> None:
        """Flush and release connections."""


@dataclass(frozen=True, slots=True)
class GroupLag:
    """How far consumer ``group`` is behind on one partition of ``topic``, as the broker sees it.

    ``committed`` is the next offset the group will process (its committed offset; the partition's
    first offset when the group never committed) and ``end`` the offset after the last record.
    """

    topic: str
    group: str
    partition: int
    committed: int
    end: int

    @property
    def lag(self) -> int:
        return max(0, self.end - self.committed)


@runtime_checkable
class BusAdmin(Protocol):
    """What operators' commands need beyond the ``Bus`` port: read a topic, and lag from the broker.

    Both adapters implement it; stages never use it.
    """

    def read_topic(
        self, topic: str, *, partition: int | None = None, start: int | None = None, stop: int | None = None
    ) -> Iterator[Record]:
        """Records of ``topic`` (one partition, or all) with ``start <= offset < stop``, in offset order
        per partition; reads up to the end as it was when called.

        Raises:
            BusError: the topic or partition does not exist, or the broker cannot be read.
        """

    def group_lag(self, pairs: Sequence[tuple[str, str]]) -> list[GroupLag]:
        """For each ``(topic, group)``: every partition's committed offset and end offset, from the broker
        (so a group whose members are all dead still shows its lag growing).

        Raises:
            BusError: the broker cannot be asked.
        """
