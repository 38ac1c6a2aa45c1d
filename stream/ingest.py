"""JSON-lines import (`sednaya-monitor ingest`): one object per line, at least ``url`` and a ``title`` or a
``text``; optional ``lang``, ``published``, ``source``, ``authors`` and ``schema`` (only ``1``).

Fields are read as exporters write them (``stream.import_fields``): ``published`` as ISO 8601, RFC 2822, a
Unix time or a written date; ``lang`` in any case, with a region, or as a three-letter code, and only as a
hint when the text is in another script; ``authors`` null as none. A record with only a headline keeps it
as its text; one with only a text takes its first line (at most ``DERIVED_TITLE_CHARS``) as its title.

A line of the crawl's dead-letter file (``crawlers.dead_letter``: an object with ``"stage": "crawl"``, a
``kind`` and a ``payload``) is read as its letter: a ``kind = "article"`` letter's ``payload`` is the full v1
article the bus refused, taken as it was crawled (its channel, dates and relevance kept); a letter of
another kind (an unparsable search-API answer) holds no article and is refused naming its kind. So
``sednaya-monitor ingest <data_dir>/crawl/dead-letters.jsonl`` replays the crawl's dead letters.

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
    type_mismatch,
)
from stream.canonical_url import id_for_url
from stream.errors import ContractError, UnsupportedSchemaError
from stream.import_fields import language_hint, plain_text, published_at, script_agrees
from stream.language import detect_language
from stream.text import clean_text, content_hash, normalize_whitespace

logger = logging.getLogger(__name__)

REQUIRED = ("url",)
CONTENT = ("title", "text")  # one of them at least
OPTIONAL_STRINGS = ("lang", "source")
DERIVED_TITLE_CHARS = 200  # a title taken from the first line of a record that has only a text
MAX_LINE_BYTES = 8 * 1024 * 1024  # default line limit (settings.ingest_max_line_bytes): an article is ~100 KB
MAX_JSON_DEPTH = 16  # an import record is an object of strings and one list; deeper is no article
CRAWL_LETTER_STAGE = "crawl"  # "stage" of a crawl dead-letter line (crawlers.dead_letter writes these keys)
CRAWL_LETTER_ARTICLE = "article"  # its "kind" when "payload" holds a whole v1 article
SKIP_CHUNK_BYTES = 64 * 1024  # how much of an over-long line is read at a time while skipping it
UTF8_BOM = b"\xef\xbb\xbf"

ErrorKind = Literal[
    "too_long",
    "too_large",  # an article whose bus record would exceed the bus's largest record (sednaya_monitor.ingest_run)
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
        if is_crawl_letter(data):
            return article_from_crawl_letter(data, backfill=backfill)
        return article_from_record(data, backfill=backfill, now=now)
    except UnsupportedSchemaError as exc:
        return IngestError(line.number, "schema", str(exc.args[0]), raw, "unsupported_schema")
    except ContractError as exc:
        field = exc.args[1] if len(exc.args) > 1 else None
        return IngestError(line.number, field, str(exc.args[0]), raw, "contract")


def is_crawl_letter(data: dict[str, Any]) -> bool:
    """Whether a decoded line is a crawl dead letter (``crawlers.dead_letter``), not an import record."""
    return data.get("stage") == CRAWL_LETTER_STAGE and "kind" in data and "payload" in data


def article_from_crawl_letter(data: dict[str, Any], *, backfill: bool = False) -> Article:
    """The article a crawl dead letter holds: its ``payload`` decoded as a v1 article (``Article.from_dict``),
    marked ``backfill`` when asked (never unmarked).

    Raises:
        ContractError: the letter is not of kind ``"article"`` (``args[1]`` is ``"kind"``), or its payload
            breaks the contract (``args[1]`` is ``"payload"``).
        UnsupportedSchemaError: the payload's ``schema`` is not a supported version.
    """
    kind = data.get("kind")
    if kind != CRAWL_LETTER_ARTICLE:
        raise ContractError(
            f"crawl dead letter of kind {kind!r} holds no article "
            f"(only {CRAWL_LETTER_ARTICLE!r} letters can be ingested)",
            "kind",
        )
    try:
        article = Article.from_dict(data["payload"])
    except UnsupportedSchemaError:
        raise
    except ContractError as exc:
        raise ContractError(f"crawl dead letter: {exc}", "payload") from exc
    return article.replace(backfill=True) if backfill and not article.backfill else article


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
    for key in (*REQUIRED, *CONTENT, *OPTIONAL_STRINGS):
        if data.get(key) is not None and not isinstance(data[key], str):
            raise ContractError(type_mismatch("string", data[key]), key)
    for key in REQUIRED:
        if not (data.get(key) or "").strip():
            raise ContractError(f"required field {key!r} is missing or empty", key)
    if not any((data.get(key) or "").strip() for key in CONTENT):
        raise ContractError("fields 'title' and 'text' are both missing or empty: no article", "text")
    authors = data.get("authors") or []
    if not isinstance(authors, list):
        raise ContractError(type_mismatch("array of strings", authors), "authors")
    for i, author in enumerate(authors):
        if author is not None and not isinstance(author, str):
            raise ContractError(f"item {i}: {type_mismatch('string', author)}", "authors")
    try:
        ident, canonical = id_for_url(data["url"])
    except ContractError as exc:
        raise ContractError(str(exc), "url") from exc
    try:
        published = published_at(data.get("published"))
    except (TypeError, ValueError) as exc:
        raise ContractError(str(exc), "published") from exc
    title, text = _content(data.get("title") or "", data.get("text") or "")
    lang = article_language(title, text, data.get("lang"))
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
        authors=tuple(a for a in authors if a and a.strip()),
        published=published,
        # An importer's date is the record's own publication date, as a feed entry gives it.
        date_source="feed" if published else "none",
        discovered_at=stamp,
        fetched_at=stamp,
        content_sha256=content_hash(text),
        relevance=None,
    )


def _content(title: str, text: str) -> tuple[str, str]:
    """Title and text of a record that has at least one of them (the module docstring)."""
    title, text = normalize_whitespace(clean_text(plain_text(title))), clean_text(plain_text(text)).strip()
    if not text:
        return title, title
    if not title:
        first = normalize_whitespace(text.split("\n", 1)[0])
        title = first if len(first) <= DERIVED_TITLE_CHARS else first[:DERIVED_TITLE_CHARS].rsplit(" ", 1)[0] + " …"
    return title, text


def article_language(title: str, text: str, value: str | None) -> str:
    """The language of an imported article: its ``lang`` field read as a hint (``import_fields``), trusted
    when the text is written in that language's script, else what the text says (``detect_language``,
    the hint winning only where detection is unsure), as the crawler reads a page's own ``lang``."""
    hint = language_hint(value)
    sample = f"{title}\n{text}"
    if hint is not None and script_agrees(hint, sample):
        return hint
    return detect_language(sample, hint=hint)


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
