"""Stories (sets of articles about one real-world event) and the story events on the bus."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from stream import json_codec
from stream.article import SCHEMA_VERSION, iso_utc, parse_time
from stream.errors import ContractError, UnsupportedSchemaError

EventKind = Literal["created", "updated", "merged"]
EVENT_KINDS = frozenset({"created", "updated", "merged"})


@dataclass(frozen=True, kw_only=True, slots=True)
class Story:
    id: str
    title: str  # representative title (of the first article)
    first_seen: datetime  # UTC: earliest published (or fetched) time of its articles
    last_seen: datetime
    article_count: int
    source_count: int
    languages: tuple[str, ...]
    sources: tuple[str, ...] = ()
    first_article_id: str = ""
    centroid: tuple[float, ...] | None = None  # L2-normalised mean embedding
    merged_into: str | None = None  # set when this story was merged into another

    def to_dict(self, *, with_centroid: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "title": self.title,
            "first_seen": iso_utc(self.first_seen),
            "last_seen": iso_utc(self.last_seen),
            "article_count": self.article_count,
            "source_count": self.source_count,
            "languages": list(self.languages),
            "sources": list(self.sources),
            "first_article_id": self.first_article_id,
            "merged_into": self.merged_into,
        }
        if with_centroid and self.centroid is not None:
            out["centroid"] = list(self.centroid)
        return out

    @classmethod
    def from_dict(cls, data: Any) -> Story:
        if not isinstance(data, dict):
            raise ContractError(f"story must be a JSON object, got {type(data).__name__}")
        try:
            centroid = data.get("centroid")
            return cls(
                id=str(data["id"]),
                title=str(data["title"]),
                first_seen=parse_time(data["first_seen"]),
                last_seen=parse_time(data["last_seen"]),
                article_count=int(data["article_count"]),
                source_count=int(data["source_count"]),
                languages=tuple(data.get("languages", [])),
                sources=tuple(data.get("sources", [])),
                first_article_id=str(data.get("first_article_id", "")),
                centroid=None if centroid is None else tuple(float(x) for x in centroid),
                merged_into=data.get("merged_into"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ContractError(f"story {data.get('id', '?')}: invalid field: {exc}") from exc


@dataclass(frozen=True, kw_only=True, slots=True)
class StoryEvent:
    """Published on ``stories.events``: ``created`` is what instant alerts fire on."""

    kind: EventKind
    story: Story
    article_id: str  # the article that caused the event
    at: datetime
    backfill: bool = False  # caused by a historical load: never fires instant alerts
    entered_at: datetime | None = None  # when the causing article entered the bus (alert latency)
    merged_ids: tuple[str, ...] = ()  # for "merged": the stories folded into ``story``
    schema: int = SCHEMA_VERSION
    extra: dict[str, str] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        centroid = self.story.centroid
        return json_codec.dumps(
            {
                "schema": self.schema,
                "kind": self.kind,
                "story": self.story.to_dict(),
                "article_id": self.article_id,
                "at": iso_utc(self.at),
                "backfill": self.backfill,
                "entered_at": iso_utc(self.entered_at) if self.entered_at else None,
                "merged_ids": list(self.merged_ids),
                "extra": self.extra,
            },
            finite=centroid is None or math.isfinite(sum(centroid)),
        )

    @classmethod
    def from_bytes(cls, raw: bytes) -> StoryEvent:
        try:
            data = json_codec.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ContractError(f"story event is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise ContractError("story event must be a JSON object")
        if data.get("schema") != SCHEMA_VERSION:
            raise UnsupportedSchemaError(f"story event: schema {data.get('schema')!r} is not supported")
        kind = data.get("kind")
        if kind not in EVENT_KINDS:
            raise ContractError(f"story event: field 'kind' is {kind!r}, expected one of {sorted(EVENT_KINDS)}")
        try:
            return cls(
                kind=kind,
                story=Story.from_dict(data["story"]),
                article_id=str(data["article_id"]),
                at=parse_time(data["at"]),
                backfill=bool(data.get("backfill", False)),
                entered_at=parse_time(data["entered_at"]) if data.get("entered_at") else None,
                merged_ids=tuple(data.get("merged_ids", [])),
                extra=dict(data.get("extra") or {}),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ContractError(f"story event: invalid field: {exc}") from exc
