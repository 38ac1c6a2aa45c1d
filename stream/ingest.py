"""JSON-lines import (`sednaya-monitor ingest`): one object per line, at least ``url``, ``title``,
``text``; optional ``lang``, ``published``, ``source``, ``authors`` and ``schema`` (only ``1``).

Input is read as bytes, one line at a time, so no line can stop the file: a line that is longer than
the limit, not UTF-8, not JSON, not an object, nested too deep, holds an invalid code point (a lone
surrogate from a ``\\ud800`` escape) or breaks the contract becomes an :class:`IngestError` naming the
line number, the field and the reason (``kind`` is a bounded label for metrics), which the caller
reports and dead-letters; the rest goes through.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, BinaryIO, Literal
from urllib.parse import urlsplit

from stream.article import (
    SUPPORTED_SCHEMAS,
    Article,
    invalid_code_point,
    is_supported_schema,
    json_type,
    now_utc,
    parse_time,
    type_mismatch,
)
from stream.canonical_url import id_for_url
from stream.errors import ContractError, UnsupportedSchemaError
from stream.language import detect_language
from stream.text import content_hash, normalize_whitespace

logger = logging.getLogger(__name__)

REQUIRED = ("url", "title", "text")
OPTIONAL_STRINGS = ("lang", "published", "source")
MAX_LINE_BYTES = 8 * 1024 * 1024  # default line limit (settings.ingest_max_line_bytes): an article is ~100 KB
MAX_JSON_DEPTH = 16  # an import record is an object of strings and one list; deeper is no article
SKIP_CHUNK_BYTES = 64 * 1024  # how much of an over-long line is read at a time while skipping it
UTF8_BOM = b"\xef\xbb\xbf"

ErrorKind = Literal[
    "too_long",
    "not_utf8",
    "not_json",
    "too_deep",
    "not_object",
    "invalid_code_point",
    "unsupported_schema",
    "contract",
    "unexpected",
]


@dataclass(frozen=True, slots=True)
class Line:
    """One input line as read: 1-based ``number``, its bytes (without the newline), and whether it was
    cut at the limit (``raw`` then holds only the first ``max_line_bytes``)."""

    number: int
    raw: bytes
    truncated: bool = False

    @property
    def digest(self) -> str:
        """Hex SHA-256 of the bytes kept (the dead-letter identity of this line, with its origin)."""
        return hashlib.sha256(self.raw).hexdigest()


@dataclass(frozen=True, slots=True)
class IngestError:
    """A line that could not become an article."""

    line: int  # 1-based
    field: str | None
    message: str
    raw: bytes
    kind: ErrorKind = "contract"

    def __str__(self) -> str:
        where = f"line {self.line}" + (f", field {self.field!r}" if self.field else "")
        return f"{where}: {self.message}"


def iter_lines(stream: BinaryIO, *, max_line_bytes: int = MAX_LINE_BYTES) -> Iterator[Line]:
    """Lines of a binary stream, split on ``\\n`` only (a ``\\r`` or U+2028 inside a line stays there).

    Never holds more than ``max_line_bytes`` + 1 bytes of one line: a longer line is yielded cut, with
    ``truncated=True``, and the rest of it is read and dropped in chunks.
    """
    number = 0
    while True:
        chunk = stream.readline(max_line_bytes + 1)
        if not chunk:
            return
        number += 1
        if len(chunk) > max_line_bytes and not chunk.endswith(b"\n"):
            while True:
                rest = stream.readline(SKIP_CHUNK_BYTES)
                if not rest or rest.endswith(b"\n"):
                    break
            yield Line(number, chunk[:max_line_bytes], truncated=True)
            continue
        yield Line(number, chunk.rstrip(b"\r\n") if chunk.endswith(b"\n") else chunk)


def parse_line(
    line: Line, *, backfill: bool = False, max_line_bytes: int = MAX_LINE_BYTES, now: datetime | None = None
) -> Article | IngestError | None:
    """The article of one line, the error that keeps it out, or None for a blank line. Never raises:
    an error no check foresaw becomes an ``unexpected`` IngestError naming its class (and is logged)."""
    try:
        return _parse_line(line, backfill=backfill, max_line_bytes=max_line_bytes, now=now)
    except Exception as exc:  # one line must never end the file: dead-lettered with its class
        logger.exception("unexpected error on an import line", extra={"line": line.number})
        return IngestError(line.number, None, f"unexpected {type(exc).__name__}: {exc}", line.raw, "unexpected")


def _parse_line(
    line: Line, *, backfill: bool, max_line_bytes: int, now: datetime | None
) -> Article | IngestError | None:
    raw = line.raw
    if line.number == 1 and raw.startswith(UTF8_BOM):
        raw = raw[len(UTF8_BOM) :]
    if line.truncated:
        return IngestError(
            line.number, None, f"line is longer than {max_line_bytes} bytes (first {max_line_bytes} kept)",
            raw, "too_long",
        )  # fmt: skip
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return IngestError(line.number, None, f"not valid UTF-8 at byte {exc.start}: {exc.reason}", raw, "not_utf8")
    if not text.strip():
        return None
    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        return IngestError(line.number, None, f"nested deeper than {MAX_JSON_DEPTH} levels", raw, "too_deep")
    except ValueError as exc:
        return IngestError(line.number, None, f"not valid JSON: {exc}", raw, "not_json")
    if not isinstance(data, dict):
        return IngestError(line.number, None, f"expected a JSON object, got {json_type(data)}", raw, "not_object")
    if _depth(data) > MAX_JSON_DEPTH:
        return IngestError(line.number, None, f"nested deeper than {MAX_JSON_DEPTH} levels", raw, "too_deep")
    bad = invalid_code_point(data)
    if bad is not None:
        return IngestError(
            line.number, bad[0], f"invalid code point {bad[1]} (lone surrogate)", raw, "invalid_code_point"
        )
    try:
        return article_from_record(data, backfill=backfill, now=now)
    except UnsupportedSchemaError as exc:
        return IngestError(line.number, "schema", str(exc.args[0]), raw, "unsupported_schema")
    except ContractError as exc:
        field = exc.args[1] if len(exc.args) > 1 else None
        return IngestError(line.number, field, str(exc.args[0]), raw, "contract")


def article_from_record(data: Any, *, backfill: bool = False, now: datetime | None = None) -> Article:
    """Build an import-channel article from a JSON object.

    Raises:
        UnsupportedSchemaError: ``schema`` is given and is not a supported version (``1``).
        ContractError: a required field is missing or a field has the wrong type ("wrong type:
            expected string, got number"); ``args[1]`` names the field.
    """
    if not isinstance(data, dict):
        raise ContractError(f"expected a JSON object, got {json_type(data)}", None)
    if "schema" in data and not is_supported_schema(data["schema"]):
        raise UnsupportedSchemaError(
            f"schema {data['schema']!r} is not supported (supported: {sorted(SUPPORTED_SCHEMAS)})", "schema"
        )
    for key in REQUIRED:
        value = data.get(key)
        if value is not None and not isinstance(value, str):
            raise ContractError(type_mismatch("string", value), key)
        if value is None or not value.strip():
            raise ContractError(f"required field {key!r} is missing or empty", key)
    for key in OPTIONAL_STRINGS:
        if data.get(key) is not None and not isinstance(data[key], str):
            raise ContractError(type_mismatch("string", data[key]), key)
    authors = data.get("authors", [])
    if not isinstance(authors, list):
        raise ContractError(type_mismatch("array of strings", authors), "authors")
    for i, author in enumerate(authors):
        if not isinstance(author, str):
            raise ContractError(f"item {i}: {type_mismatch('string', author)}", "authors")
    try:
        ident, canonical = id_for_url(data["url"])
    except ContractError as exc:
        raise ContractError(str(exc), "url") from exc
    published: datetime | None = None
    if data.get("published"):
        try:
            published = parse_time(data["published"])
        except ValueError as exc:
            raise ContractError(str(exc), "published") from exc
    title = normalize_whitespace(data["title"])
    text = data["text"].strip()
    lang = data.get("lang") or detect_language(f"{title}\n{text}")
    if not (lang == "und" or (len(lang) == 2 and lang.isalpha() and lang.islower())):
        raise ContractError(f"field 'lang' is {lang!r}, expected an ISO 639-1 code such as 'ar'", "lang")
    stamp = now or now_utc()
    return Article(
        id=ident,
        url=data["url"].strip(),
        canonical_url=canonical,
        source=data.get("source") or (urlsplit(canonical).hostname or "unknown"),
        channel="import",
        backfill=backfill,
        lang=lang,
        title=title,
        text=text,
        authors=tuple(authors),
        published=published,
        # An importer's date is the record's own publication date, as a feed entry gives it.
        date_source="feed" if published else "none",
        discovered_at=stamp,
        fetched_at=stamp,
        content_sha256=content_hash(text),
        relevance=None,
    )


def read_jsonl(lines: Iterable[str | bytes], *, backfill: bool = False) -> Iterator[Article | IngestError]:
    """Articles (or errors naming line and field) from JSON lines given one by one; blank lines are
    skipped. A ``str`` line is taken as its UTF-8 bytes (a lone surrogate in it makes it invalid UTF-8)."""
    for number, line in enumerate(lines, start=1):
        raw = line if isinstance(line, bytes) else line.encode("utf-8", "surrogatepass")
        item = parse_line(Line(number, raw.rstrip(b"\r\n")), backfill=backfill)
        if item is not None:
            yield item


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _depth(value: Any) -> int:
    """Nesting depth of a decoded JSON value (a scalar is 0, ``{}`` is 1), computed without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
            deepest = max(deepest, depth + 1)
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
            deepest = max(deepest, depth + 1)
    return deepest
