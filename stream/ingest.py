"""JSON-lines import (`sednaya-monitor ingest`): one object per line, at least ``url``, ``title``,
``text``; optional ``lang``, ``published``, ``source``, ``authors``.

A malformed line never stops the file: it becomes an :class:`IngestError` naming the line number and the
field, which the caller reports and dead-letters, and the rest goes through.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from stream.article import Article, now_utc, parse_time
from stream.canonical_url import id_for_url
from stream.errors import ContractError
from stream.language import detect_language
from stream.text import content_hash, normalize_whitespace

REQUIRED = ("url", "title", "text")


@dataclass(frozen=True, slots=True)
class IngestError:
    """A line that could not become an article."""

    line: int  # 1-based
    field: str | None
    message: str
    raw: str

    def __str__(self) -> str:
        where = f"line {self.line}" + (f", field {self.field!r}" if self.field else "")
        return f"{where}: {self.message}"


def article_from_record(data: Any, *, backfill: bool = False, now: datetime | None = None) -> Article:
    """Build an import-channel article from a JSON object.

    Raises:
        ContractError: a required field is missing or a field has the wrong type; ``args[1]`` names
            the field.
    """
    if not isinstance(data, dict):
        raise ContractError(f"expected a JSON object, got {type(data).__name__}", None)
    for key in REQUIRED:
        value = data.get(key)
        if not isinstance(value, str) or not value.strip():
            raise ContractError(f"required field {key!r} is missing or empty", key)
    for key in ("lang", "published", "source"):
        if key in data and data[key] is not None and not isinstance(data[key], str):
            raise ContractError(f"field {key!r} must be a string", key)
    authors = data.get("authors", [])
    if not isinstance(authors, list) or not all(isinstance(a, str) for a in authors):
        raise ContractError("field 'authors' must be a list of strings", "authors")
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


def read_jsonl(lines: Iterable[str], *, backfill: bool = False) -> Iterator[Article | IngestError]:
    """Articles (or errors naming line and field) from JSON lines; blank lines are skipped."""
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except ValueError as exc:
            yield IngestError(number, None, f"not valid JSON: {exc}", line)
            continue
        try:
            yield article_from_record(data, backfill=backfill)
        except ContractError as exc:
            field = exc.args[1] if len(exc.args) > 1 else None
            yield IngestError(number, field, str(exc.args[0]), line)
