"""GDELT DOC 2.0 API, ArtList mode: query building, time slicing and tolerant response parsing.

The API returns at most ``GDELT_MAX_RECORDS`` (250) articles per query, so a window whose answer is full
is split in two and both halves are asked again, down to ``MIN_SLICE`` (GDELT's 15-minute update
interval); a full answer at that size is recorded as truncated. Responses are JSON that is sometimes
malformed (raw control characters, invalid backslash escapes, trailing commas): :func:`parse_artlist`
repairs those; what cannot be repaired raises ``FeedError("malformed_json")`` for the dead-letter file.
A rate-limit or error answer (plain text instead of JSON, HTTP 429/5xx) is ``degraded``, never
"zero results"; ``{}`` is GDELT's real "no match".
API: https://blog.gdeltproject.org/gdelt-doc-2-0-api-debuts/
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from crawlers.errors import FeedError

GDELT_MAX_RECORDS = 250  # hard cap of one ArtList answer
MIN_SLICE = timedelta(minutes=15)  # GDELT updates every 15 minutes: no finer slice exists
GDELT_TIME = "%Y%m%d%H%M%S"
MIN_TERM_CHARS = 4  # GDELT rejects very short keywords
_INVALID_ESCAPE = re.compile(r'\\(?!["\\/bfnrtu])')
_TRAILING_COMMA = re.compile(r",\s*([}\]])")


@dataclass(frozen=True, slots=True)
class GdeltArticle:
    url: str
    title: str
    seen: datetime | None  # when GDELT saw it (not the publication date)
    language: str
    domain: str


def build_query(names: Sequence[str]) -> str:
    """``("Sednaya" OR "Saydnaya" OR ...)``: every name variant, quoted, de-duplicated."""
    terms = [n for n in dict.fromkeys(n.strip() for n in names) if len(n) >= MIN_TERM_CHARS]
    if len(terms) == 1:
        return f'"{terms[0]}"'
    return "(" + " OR ".join(f'"{t}"' for t in terms) + ")"


def build_queries(names: Sequence[str], base: str, url_limit: int) -> list[str]:
    """:func:`build_query` over consecutive groups of ``names``, as few as keep every request's URL within
    ``url_limit`` characters (Scrapy drops a longer request without a word: ``URLLENGTH_LIMIT``, 2083 by
    default; the topic's 33 names and strong names took 2,052 in December 2026). A single name too long for
    the limit is asked on its own (its request is then dropped, and the crawl says so: the spider)."""
    terms = [n for n in dict.fromkeys(n.strip() for n in names) if len(n) >= MIN_TERM_CHARS]
    moment = datetime(2000, 1, 1, tzinfo=UTC)
    groups: list[list[str]] = []
    for term in terms:
        if groups and len(build_url(base, build_query([*groups[-1], term]), moment, moment)) <= url_limit:
            groups[-1].append(term)
        else:
            groups.append([term])
    return [build_query(group) for group in groups]


def build_url(base: str, query: str, start: datetime, end: datetime) -> str:
    params = {
        "query": query,
        "mode": "ArtList",
        "format": "json",
        "maxrecords": str(GDELT_MAX_RECORDS),
        "sort": "DateAsc",
        "startdatetime": start.astimezone(UTC).strftime(GDELT_TIME),
        "enddatetime": end.astimezone(UTC).strftime(GDELT_TIME),
    }
    return f"{base}?{urlencode(params)}"


def split(start: datetime, end: datetime) -> list[tuple[datetime, datetime]] | None:
    """The two halves of ``[start, end)``, or None when it is already at ``MIN_SLICE``."""
    if end - start <= MIN_SLICE:
        return None
    middle = start + (end - start) / 2
    return [(start, middle), (middle, end)]


def repair_json(text: str) -> Any:
    """``json.loads`` after the repairs GDELT answers need; raises ``ValueError`` when none helps."""
    attempts = (
        text,
        _INVALID_ESCAPE.sub(r"\\\\", text),
        _TRAILING_COMMA.sub(r"\1", _INVALID_ESCAPE.sub(r"\\\\", text)),
    )
    last: ValueError | None = None
    for candidate in attempts:
        try:
            return json.loads(candidate, strict=False)  # strict=False: raw control characters in strings
        except ValueError as exc:
            last = exc
    assert last is not None
    raise last


def _seen(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.strptime(value, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        return None


def parse_artlist(url: str, status: int, body: bytes) -> tuple[list[GdeltArticle], bool]:
    """``(articles, repaired)`` from one ArtList answer.

    Raises:
        FeedError: ``degraded`` for rate limits, errors and non-JSON answers; ``malformed_json`` for JSON
            that stays broken after repair (the caller dead-letters the body).
    """
    if status == 429:
        raise FeedError(url, "degraded", "HTTP 429: rate limited")
    if status >= 400:
        raise FeedError(url, "degraded", f"HTTP {status}")
    text = body.decode("utf-8", "replace").strip()
    if not text.startswith("{"):
        raise FeedError(url, "degraded", f"not a JSON answer: {text[:120]!r}")
    repaired = False
    try:
        data = json.loads(text)
    except ValueError:
        try:
            data = repair_json(text)
        except ValueError as exc:
            raise FeedError(url, "malformed_json", str(exc)) from exc
        repaired = True
    if not isinstance(data, dict):
        raise FeedError(url, "malformed_json", "top level is not an object")
    raw = data.get("articles", [])
    if not isinstance(raw, list):
        raise FeedError(url, "malformed_json", "'articles' is not a list")
    out = []
    for item in raw:
        if isinstance(item, dict) and isinstance(item.get("url"), str):
            out.append(
                GdeltArticle(
                    url=item["url"],
                    title=str(item.get("title") or ""),
                    seen=_seen(item.get("seendate")),
                    language=str(item.get("language") or ""),
                    domain=str(item.get("domain") or ""),
                )
            )
    return out, repaired
