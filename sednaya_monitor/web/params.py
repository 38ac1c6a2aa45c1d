"""Query-string parameters of the page and the API, parsed once, with errors naming the parameter.

The same parser serves ``/`` and ``/api/search`` so the page and the API accept the same filters:
``q`` (the DESIGN.md query language), ``lang``, ``source``, ``source_type``, ``since``/``until``
(ISO 8601 date or date-time, UTC when no offset; ``until`` given as a bare date includes that whole
day), ``story``, ``sort`` (``relevance``/``date``), ``size``, ``after`` (opaque cursor from a previous
answer) and ``view`` (``stories`` = grouped by story, the default; ``flat``).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from indexer.store import SearchRequest
from sednaya_monitor.web.errors import BadRequest
from stream.article import parse_time

DEFAULT_PAGE_SIZE = 20  # results per page: one screen of story groups
MAX_PAGE_SIZE = 100  # bounds the work one request can ask of the store
MAX_QUERY_CHARS = 1000  # longer queries are refused rather than parsed (no analyst types more)
MAX_CURSOR_CHARS = 2000  # a cursor is a handful of sort values; anything longer is not ours
MAX_FILTER_CHARS = 200  # language, source, story ids are short keywords
VIEWS = ("stories", "flat")
SORTS = ("relevance", "date")
_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")  # keywords are single-line identifiers


Params = Mapping[str, Sequence[str]]


@dataclass(frozen=True, kw_only=True, slots=True)
class SearchParams:
    """A parsed search: the store request plus how the page shows it."""

    request: SearchRequest
    view: str  # "stories" or "flat"
    after: str | None  # the cursor as received (to build links)


def one(params: Params, name: str, *, max_chars: int = MAX_FILTER_CHARS) -> str | None:
    """The single value of ``name`` (``None`` when absent or blank); raises BadRequest when repeated/too long."""
    values = params.get(name, [])
    if len(values) > 1:
        raise BadRequest(f"parameter {name!r} given {len(values)} times; give it once")
    if not values:
        return None
    value = values[0].strip()
    if len(value) > max_chars:
        raise BadRequest(f"parameter {name!r} is {len(value)} characters long; at most {max_chars} allowed")
    if "\x00" in value:
        raise BadRequest(f"parameter {name!r} contains a NUL character")
    return value or None


def keyword(params: Params, name: str) -> str | None:
    """A keyword filter (language, source, story id), matched exactly; no control characters."""
    value = one(params, name)
    if value is not None and _CONTROL.search(value):
        raise BadRequest(f"parameter {name!r}={value!r}: control characters are not allowed")
    return value


def integer(params: Params, name: str, *, default: int, low: int, high: int) -> int:
    """An integer in ``[low, high]``; raises BadRequest naming the parameter otherwise."""
    value = one(params, name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise BadRequest(f"parameter {name!r}={value!r}: expected an integer") from None
    if not low <= number <= high:
        raise BadRequest(f"parameter {name!r}={number}: expected an integer from {low} to {high}")
    return number


def boolean(params: Params, name: str, *, default: bool) -> bool:
    value = one(params, name)
    if value is None:
        return default
    lowered = value.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise BadRequest(f"parameter {name!r}={value!r}: expected true or false")


def choice(params: Params, name: str, choices: Sequence[str], *, default: str) -> str:
    value = one(params, name)
    if value is None:
        return default
    if value not in choices:
        raise BadRequest(f"parameter {name!r}={value!r}: expected one of {', '.join(choices)}")
    return value


def date(params: Params, name: str, *, end_of_day: bool = False) -> datetime | None:
    """ISO 8601 date or date-time as aware UTC. A bare date for an upper bound means the end of that day."""
    value = one(params, name, max_chars=64)
    if value is None:
        return None
    try:
        parsed = parse_time(value)
    except ValueError:
        raise BadRequest(f"parameter {name!r}={value!r}: expected an ISO 8601 date (2024-12-08) or date-time") from None
    if end_of_day and _DATE_ONLY.match(value):
        return parsed + timedelta(days=1) - timedelta(microseconds=1)
    return parsed


def encode_cursor(after: Sequence[str] | None) -> str | None:
    """The store's ``next_after`` as an opaque URL-safe token (``None`` stays ``None``)."""
    if after is None:
        return None
    raw = json.dumps(list(after), ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_cursor(token: str | None) -> tuple[str, ...] | None:
    """Inverse of :func:`encode_cursor`; raises BadRequest for a token this server did not make."""
    if token is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        values = json.loads(raw.decode("utf-8"))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise BadRequest(f"parameter 'after'={token!r}: not a cursor returned by this server") from None
    if not isinstance(values, list) or not values or not all(isinstance(v, str) for v in values):
        raise BadRequest(f"parameter 'after'={token!r}: not a cursor returned by this server")
    return tuple(values)


def search_params(params: Params, *, default_view: str = "stories", facets: bool = False) -> SearchParams:
    """Parse the search parameters (see the module docstring); raises BadRequest naming the parameter."""
    since = date(params, "since")
    until = date(params, "until", end_of_day=True)
    if since is not None and until is not None and since > until:
        raise BadRequest(f"parameter 'since' ({since.date()}) is after 'until' ({until.date()})")
    view = choice(params, "view", VIEWS, default=default_view)
    after = one(params, "after", max_chars=MAX_CURSOR_CHARS)
    request = SearchRequest(
        query=one(params, "q", max_chars=MAX_QUERY_CHARS) or "",
        lang=keyword(params, "lang"),
        source=keyword(params, "source"),
        source_type=keyword(params, "source_type"),
        since=since,
        until=until,
        story=keyword(params, "story"),
        sort=choice(params, "sort", SORTS, default="relevance"),  # type: ignore[arg-type]  # checked in SORTS
        size=integer(params, "size", default=DEFAULT_PAGE_SIZE, low=1, high=MAX_PAGE_SIZE),
        search_after=decode_cursor(after),
        facets=facets,
        highlight=True,
        by_story=view == "stories",
    )
    return SearchParams(request=request, view=view, after=after)
