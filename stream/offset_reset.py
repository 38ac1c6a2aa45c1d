"""Resetting a consumer group's committed offsets: the target, the per-partition plan, the admin port.

``sednaya-monitor offsets reset --group G --topic T --to earliest|latest|offset:N|time:ISO`` moves where
group ``G`` resumes on topic ``T`` (docs/runbook.md, "Resetting a group's offsets"): back, to process
records again (the stages are idempotent), or forward, to skip them. Only a group without active
members can be moved (Kafka refuses an offset commit from outside a live group), so the stage is
stopped first. The Kafka adapter implements :class:`OffsetAdmin`; the embedded bus has no groups to
move while nothing runs (``run`` and ``ingest`` resume from their own log).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, Protocol, runtime_checkable

from stream.errors import SednayaError

TargetKind = Literal["earliest", "latest", "offset", "time"]
TARGET_FORMS = "earliest, latest, offset:N or time:ISO-8601 (e.g. time:2024-12-08T00:00:00Z)"


class ResetTargetError(SednayaError, ValueError):
    """A ``--to`` value that is none of the target forms (the message names it)."""


@dataclass(frozen=True, slots=True)
class ResetTarget:
    """Where to move: the first or the end offset, an offset (clamped into each partition's range), or
    the first record at or after a time (the end when none is)."""

    kind: TargetKind
    offset: int | None = None
    at: datetime | None = None

    def __str__(self) -> str:
        if self.kind == "offset":
            return f"offset:{self.offset}"
        if self.kind == "time" and self.at is not None:
            return "time:" + self.at.isoformat().replace("+00:00", "Z")
        return self.kind


def parse_reset_target(text: str) -> ResetTarget:
    """``earliest`` | ``latest`` | ``offset:N`` (N >= 0) | ``time:ISO`` (naive times are UTC).

    Raises:
        ResetTargetError: ``text`` is none of these (the message names it and the valid forms).
    """
    value = text.strip()
    if value in ("earliest", "latest"):
        return ResetTarget(kind=value)  # type: ignore[arg-type]  # one of the two literals, checked above
    kind, sep, rest = value.partition(":")
    if sep and kind == "offset":
        if rest.isdigit():
            return ResetTarget(kind="offset", offset=int(rest))
        raise ResetTargetError(f"--to {text!r}: the offset must be a non-negative integer; expected {TARGET_FORMS}")
    if sep and kind == "time":
        try:
            at = datetime.fromisoformat(rest)
        except ValueError as exc:
            raise ResetTargetError(f"--to {text!r}: {exc}; expected {TARGET_FORMS}") from exc
        return ResetTarget(kind="time", at=at if at.tzinfo is not None else at.replace(tzinfo=UTC))
    raise ResetTargetError(f"--to {text!r}: expected {TARGET_FORMS}")


@dataclass(frozen=True, slots=True)
class OffsetReset:
    """One partition of a reset: the group resumes at ``new`` instead of ``current`` (None: the group
    never committed this partition, so it would start at ``first``). ``first``/``end`` bound the
    partition (the offset of its first record, the offset after its last)."""

    topic: str
    group: str
    partition: int
    current: int | None
    new: int
    first: int
    end: int

    @property
    def moved(self) -> int:
        """Records the group will process again (> 0) or skip (< 0)."""
        start = self.current if self.current is not None else self.first
        return start - self.new


def clamp(offset: int, first: int, end: int) -> int:
    """``offset`` within ``[first, end]`` (``end`` = after the last record: the group is caught up)."""
    return max(first, min(offset, end))


@runtime_checkable
class OffsetAdmin(Protocol):
    """Offset resets through the broker's admin API (the Kafka adapter)."""

    def group_members(self, group: str) -> int | None:
        """Active members of ``group`` (None when the broker's description cannot be read).

        Raises:
            BusError: the broker cannot be asked.
        """

    def plan_offset_reset(self, topic: str, group: str, target: ResetTarget) -> list[OffsetReset]:
        """Every partition of ``topic``: ``group``'s committed offset and where ``target`` puts it.

        Raises:
            BusError: the topic does not exist or the broker cannot be asked.
        """

    def reset_offsets(self, moves: Sequence[OffsetReset]) -> None:
        """Commit each move's ``new`` offset for its group.

        Raises:
            GroupActiveError: the group has active members (the broker refused the commit).
            BusError: the broker cannot be asked or refused for another reason.
        """
