"""The article contract, version 1 (see ``stream/schema/article.v1.json``).

An :class:`Article` is what every stage passes on: crawlers build it, the embedding stage adds
``duplicate_of``/``story_id``/``story_role`` (and the vector), the indexer stores it. On the wire it is
JSON with a ``schema`` field; never pickle. Adding an optional field with a default keeps old readers
working; renaming or removing a field is a new version (a new schema file and a new golden JSON).

**The embedding's two forms.** ``embedding`` is a JSON array of numbers, or (the compact form the
pipeline's own hops write: ``articles.embedded``, ``articles.clustered``, the story state's outbox) a
string: the base64 of the vector's little-endian IEEE-754 float32 values (2.7 KB for 512 dimensions
against ~10 KB of decimal text, and no float parsing). Readers take either and get the same floats: the
compact form is written only when every value is a float32 exactly (what a model returns), else the
array is. A reader built before the compact form refuses it loudly (``ContractError``: "must be a list
of numbers"), never drops the vector: upgrade the readers of those topics before their writers.
"""

from __future__ import annotations

import array
import base64
import binascii
import dataclasses
import math
import re
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, TypeGuard

from stream import json_codec
from stream.errors import ContractError, UnsupportedSchemaError
from stream.text import LONE_SURROGATE

SCHEMA_VERSION = 1
SUPPORTED_SCHEMAS = frozenset({1})

Channel = Literal["feed", "sitemap", "search", "import"]
DateSource = Literal["jsonld", "meta", "feed", "sitemap", "url", "none"]
StoryRole = Literal["first", "duplicate", "follow_up"]

CHANNELS: frozenset[str] = frozenset({"feed", "sitemap", "search", "import"})
DATE_SOURCES: frozenset[str] = frozenset({"jsonld", "meta", "feed", "sitemap", "url", "none"})
STORY_ROLES: frozenset[str] = frozenset({"first", "duplicate", "follow_up"})


@dataclass(frozen=True, kw_only=True, slots=True)
class Relevance:
    """Topic-filter verdict: ``score`` in [0, 1] and the topic terms that matched."""

    score: float
    terms: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True, slots=True)
class Article:
    """One news article. Required fields have no default; ``None`` means unknown, never ``""``."""

    id: str  # stream.canonical_url.article_id(canonical_url): bus key and store _id
    url: str  # as found
    canonical_url: str
    source: str  # source-registry id, or the host for unregistered sources
    channel: Channel
    backfill: bool  # historical load: never fires instant alerts
    lang: str  # ISO 639-1 detected from the text ("und" when undetermined)
    title: str
    text: str
    authors: tuple[str, ...]
    published: datetime | None  # UTC; None = unknown
    date_source: DateSource
    discovered_at: datetime  # UTC
    fetched_at: datetime  # UTC
    content_sha256: str  # hash of the normalised text (stream.text.content_hash)
    relevance: Relevance | None
    # Set downstream by the embedding stage.
    embedding: tuple[float, ...] | None = None
    duplicate_of: str | None = None
    story_id: str | None = None
    story_role: StoryRole | None = None
    schema: int = SCHEMA_VERSION
    extra: dict[str, str] = field(default_factory=dict)  # free-form tags (e.g. stance); str -> str

    def replace(self, **changes: Any) -> Article:
        """A copy with ``changes`` applied (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self, *, with_embedding: bool = False, compact: bool = False) -> dict[str, Any]:
        """JSON-ready dict. The embedding is left out unless ``with_embedding``; ``compact``: as base64 of
        float32 values when they are float32 exactly (module docstring), else as the array."""
        out: dict[str, Any] = {
            "schema": self.schema,
            "id": self.id,
            "url": self.url,
            "canonical_url": self.canonical_url,
            "source": self.source,
            "channel": self.channel,
            "backfill": self.backfill,
            "lang": self.lang,
            "title": self.title,
            "text": self.text,
            "authors": list(self.authors),
            "published": iso_utc_or_none(self.published),
            "date_source": self.date_source,
            "discovered_at": iso_utc_or_none(self.discovered_at),
            "fetched_at": iso_utc_or_none(self.fetched_at),
            "content_sha256": self.content_sha256,
            "relevance": None
            if self.relevance is None
            else {"score": self.relevance.score, "terms": list(self.relevance.terms)},
            "duplicate_of": self.duplicate_of,
            "story_id": self.story_id,
            "story_role": self.story_role,
        }
        if self.extra:
            out["extra"] = dict(self.extra)
        if with_embedding and self.embedding is not None:
            packed = embedding_f32(self.embedding) if compact else None
            out["embedding"] = list(self.embedding) if packed is None else packed
        return out

    def to_json(self, *, with_embedding: bool = False, compact: bool = False) -> str:
        data = self.to_dict(with_embedding=with_embedding, compact=compact)
        return json_codec.dumps_text(data, finite=self._finite(isinstance(data.get("embedding"), list)))

    def to_bytes(self, *, with_embedding: bool = False, compact: bool = False) -> bytes:
        """UTF-8 JSON; ``compact``: the embedding in its compact form (module docstring) where exact."""
        data = self.to_dict(with_embedding=with_embedding, compact=compact)
        return json_codec.dumps(data, finite=self._finite(isinstance(data.get("embedding"), list)))

    def _finite(self, with_embedding: bool) -> bool:
        """Whether every float to encode is finite (else the standard library writes NaN/Infinity)."""
        total = 0.0 if self.relevance is None else self.relevance.score
        if with_embedding and self.embedding is not None:
            total += sum(self.embedding)  # NaN or infinite if any value is (or if the sum overflows)
        return math.isfinite(total)

    @classmethod
    def from_dict(cls, data: Any, *, check_text: bool = True) -> Article:
        """Decode a v1 dict (``check_text=False``: the caller knows no string holds a lone surrogate).

        Raises:
            UnsupportedSchemaError: ``schema`` is missing or not a supported version.
            ContractError: a field is missing or of the wrong type (the message names the field).
        """
        if not isinstance(data, dict):
            raise ContractError(f"article must be a JSON object, got {type(data).__name__}")
        schema = data.get("schema")
        if not is_supported_schema(schema):
            raise UnsupportedSchemaError(
                f"article {data.get('id', '?')!r}: schema {schema!r} is not supported "
                f"(supported: {sorted(SUPPORTED_SCHEMAS)})"
            )
        bad_text = invalid_code_point(data) if check_text else None
        if bad_text is not None:
            raise ContractError(
                f"article {data.get('id')!r}: field {bad_text[0]!r}: invalid code point {bad_text[1]} (lone surrogate)"
            )
        ident = _req_str(data, "id")
        where = f"article {ident}"
        relevance_raw = data.get("relevance")
        relevance: Relevance | None = None
        if relevance_raw is not None:
            if not isinstance(relevance_raw, dict):
                raise ContractError(f"{where}: {wrong_type('relevance', 'object or null', relevance_raw)}")
            score = relevance_raw.get("score")
            if not isinstance(score, (int, float)) or isinstance(score, bool):
                raise ContractError(f"{where}: {wrong_type('relevance.score', 'number', score)}")
            terms = relevance_raw.get("terms", [])
            relevance = Relevance(score=float(score), terms=tuple(_str_list(terms, where, "relevance.terms")))
        embedding_raw = data.get("embedding")
        embedding: tuple[float, ...] | None = None
        if isinstance(embedding_raw, str):
            embedding = embedding_from_f32(embedding_raw, where)
        elif embedding_raw is not None:
            if not isinstance(embedding_raw, list) or not (
                set(map(type, embedding_raw)) <= _NUMBER_TYPES  # decoded JSON: exact types, checked fast
                or all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in embedding_raw)
            ):
                raise ContractError(f"{where}: field 'embedding' must be a list of numbers or a base64 string")
            embedding = tuple(map(float, embedding_raw))
        channel = _req_str(data, "channel", where)
        if channel not in CHANNELS:
            raise ContractError(f"{where}: field 'channel' is {channel!r}, expected one of {sorted(CHANNELS)}")
        date_source = _req_str(data, "date_source", where)
        if date_source not in DATE_SOURCES:
            raise ContractError(
                f"{where}: field 'date_source' is {date_source!r}, expected one of {sorted(DATE_SOURCES)}"
            )
        role = data.get("story_role")
        if role is not None and role not in STORY_ROLES:
            raise ContractError(f"{where}: field 'story_role' is {role!r}, expected one of {sorted(STORY_ROLES)}")
        backfill = data.get("backfill")
        if not isinstance(backfill, bool):
            raise ContractError(f"{where}: {wrong_type('backfill', 'boolean', backfill)}")
        extra = data.get("extra") or {}
        if not isinstance(extra, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in extra.items()):
            raise ContractError(f"{where}: field 'extra' must be an object of strings")
        published = _opt_time(data, "published", where)
        discovered_at = _opt_time(data, "discovered_at", where)
        fetched_at = _opt_time(data, "fetched_at", where)
        if discovered_at is None or fetched_at is None:
            missing = "discovered_at" if discovered_at is None else "fetched_at"
            raise ContractError(f"{where}: field {missing!r} is required")
        return cls(
            id=ident,
            url=_req_str(data, "url", where),
            canonical_url=_req_str(data, "canonical_url", where),
            source=_req_str(data, "source", where),
            channel=channel,  # type: ignore[arg-type]  # checked against CHANNELS above
            backfill=backfill,
            lang=_req_str(data, "lang", where),
            title=_req_str(data, "title", where, allow_empty=True),
            text=_req_str(data, "text", where, allow_empty=True),
            authors=tuple(_str_list(data.get("authors", []), where, "authors")),
            published=published,
            date_source=date_source,  # type: ignore[arg-type]  # checked against DATE_SOURCES above
            discovered_at=discovered_at,
            fetched_at=fetched_at,
            content_sha256=_req_str(data, "content_sha256", where),
            relevance=relevance,
            embedding=embedding,
            duplicate_of=_opt_str(data, "duplicate_of", where),
            story_id=_opt_str(data, "story_id", where),
            story_role=role,
            schema=schema,
            extra=dict(extra),
        )

    @classmethod
    def from_json(cls, raw: str | bytes) -> Article:
        """Decode JSON text; raises :class:`ContractError` for invalid JSON."""
        try:
            data = json_codec.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ContractError(f"article is not valid JSON: {exc}") from exc
        except RecursionError as exc:
            raise ContractError("article is not valid JSON: nested too deep") from exc
        return cls.from_dict(data, check_text=may_hold_surrogate(raw))


def embedding_f32(values: tuple[float, ...]) -> str | None:
    """The compact form of an embedding: base64 of its little-endian float32 values; None when a value is
    not a float32 exactly (the array form keeps it as it is)."""
    try:
        packed = array.array("f", values)
    except OverflowError:  # beyond float32's range
        return None
    if packed.tolist() != list(values):
        return None  # rounded (or NaN, which equals nothing: the array form writes it as before)
    if sys.byteorder == "big":
        packed.byteswap()
    return base64.b64encode(packed.tobytes()).decode("ascii")


def embedding_from_f32(text: str, where: str = "article") -> tuple[float, ...]:
    """The floats of an embedding's compact form; ``ContractError`` naming the field when it is not one."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ContractError(f"{where}: field 'embedding': not base64 of float32 values: {exc}") from exc
    if len(raw) % 4:
        raise ContractError(f"{where}: field 'embedding': {len(raw)} bytes, not a whole number of float32 values")
    packed = array.array("f")
    packed.frombytes(raw)
    if sys.byteorder == "big":
        packed.byteswap()
    return tuple(packed.tolist())


def utc(value: datetime) -> datetime:
    """``value`` as an aware UTC datetime (naive values are taken as UTC)."""
    if value.tzinfo is UTC:  # already UTC (most values: parsed "Z"/"+00:00" times); astimezone would copy it
        return value
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def parse_time(value: str) -> datetime:
    """Parse ISO 8601 (``Z`` allowed) into aware UTC; raises ``ValueError`` naming the value."""
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ValueError(f"{value!r} is not an ISO 8601 date/time") from exc
    return utc(parsed)


def now_utc() -> datetime:
    return datetime.now(UTC)


def iso_utc(value: datetime) -> str:
    """``value`` in UTC as ISO 8601 ending in ``Z``: how the contract, the stores and the ledger write times."""
    return utc(value).isoformat().replace("+00:00", "Z")


def iso_utc_or_none(value: datetime | None) -> str | None:
    """:func:`iso_utc`, or ``None`` for a missing time."""
    return None if value is None else iso_utc(value)


def is_supported_schema(value: Any) -> TypeGuard[int]:
    """Whether ``value`` (any decoded JSON) is a contract version this build reads."""
    return isinstance(value, int) and not isinstance(value, bool) and value in SUPPORTED_SCHEMAS


def json_type(value: Any) -> str:
    """The JSON name of ``value``'s type (``null``, ``boolean``, ``number``, ``string``, ``array``, ``object``)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def type_mismatch(expected: str, value: Any) -> str:
    """``"wrong type: expected string, got number"`` (JSON type names)."""
    return f"wrong type: expected {expected}, got {json_type(value)}"


def wrong_type(key: str, expected: str, value: Any) -> str:
    """``"field 'url': wrong type: expected string, got number"``."""
    return f"field {key!r}: {type_mismatch(expected, value)}"


_NUMBER_TYPES = frozenset({int, float})  # exact types: bool is an int subclass and not a number here
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")  # JSON's \ud800-\udfff escapes
_SURROGATE_ESCAPE_TEXT = re.compile(r"\\u[dD][89a-fA-F]")  # the same in text


def may_hold_surrogate(raw: str | bytes) -> bool:
    """Whether JSON text ``raw`` can decode to a string with a lone surrogate: only through a ``\\udXXX``
    escape (UTF-8 bytes cannot encode one), or, in a ``str``, a surrogate written as such. A cheap
    scan that lets :meth:`Article.from_json` skip walking every decoded string (and embedding value)."""
    if isinstance(raw, str):
        # two plain scans, each skipped when it cannot match (no "\\u"; ASCII only), instead of one regex
        # alternation tried at every character (a few times faster on a stored article)
        if "\\u" in raw and _SURROGATE_ESCAPE_TEXT.search(raw) is not None:
            return True
        return not raw.isascii() and LONE_SURROGATE.search(raw) is not None
    return _SURROGATE_ESCAPE.search(raw) is not None


def invalid_code_point(value: Any, path: str = "") -> tuple[str, str] | None:
    """A string in ``value`` (walked iteratively, keys included) holding a lone surrogate, as (field path,
    ``"U+D800"``); None when every string is valid Unicode text. JSON's ``\\ud800`` escapes decode
    to such code points, which no UTF-8 encoder, language detector or hash over UTF-8 accepts."""
    stack: list[tuple[str, Any]] = [(path, value)]
    while stack:
        where, item = stack.pop()
        if isinstance(item, str):
            match = LONE_SURROGATE.search(item)
            if match is not None:
                return where or "(value)", f"U+{ord(match.group()):04X}"
        elif isinstance(item, dict):
            for k, v in item.items():
                child = f"{where}.{k}" if where else str(k)
                stack.append((child, v))
                stack.append((child, str(k)))  # a key is text too
        elif isinstance(item, list):
            stack.extend((f"{where}[{i}]", v) for i, v in enumerate(item))
    return None


def _req_str(data: dict[str, Any], key: str, where: str = "article", *, allow_empty: bool = False) -> str:
    value = data.get(key)
    if value is None:
        raise ContractError(f"{where}: field {key!r} is required (missing or null)")
    if not isinstance(value, str):
        raise ContractError(f"{where}: {wrong_type(key, 'string', value)}")
    if not allow_empty and not value:
        raise ContractError(f"{where}: field {key!r} must not be empty")
    return value


def _opt_str(data: dict[str, Any], key: str, where: str) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ContractError(f"{where}: {wrong_type(key, 'string or null', value)}")
    if not value:
        raise ContractError(f"{where}: field {key!r} must be a non-empty string or null")
    return value


def _opt_time(data: dict[str, Any], key: str, where: str) -> datetime | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ContractError(f"{where}: {wrong_type(key, 'ISO 8601 string or null', value)}")
    try:
        return parse_time(value)
    except ValueError as exc:
        raise ContractError(f"{where}: field {key!r}: {exc}") from exc


def _str_list(value: Any, where: str, key: str) -> list[str]:
    if not isinstance(value, list):
        raise ContractError(f"{where}: {wrong_type(key, 'array of strings', value)}")
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise ContractError(f"{where}: {wrong_type(f'{key}[{i}]', 'string', item)}")
    return list(value)
