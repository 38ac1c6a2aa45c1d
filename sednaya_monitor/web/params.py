"""Query-string parameters of the pages, parsed by the API's own models (``models.py``).

The same :class:`~sednaya_monitor.web.models.SearchQuery` serves ``/`` and ``/api/search`` so the page
and the API accept the same filters: ``q`` (the DESIGN.md query language), ``lang``, ``source``,
``source_type``, ``since``/``until`` (ISO 8601 date or date-time, UTC when no offset, 1990-01-01 to
tomorrow; ``until`` given as a bare date includes that whole day), ``story``, ``sort``
(``relevance``/``date``), ``size``, ``after`` (opaque cursor from a previous answer) and ``view``
(``stories`` = grouped by story, the page's default; ``flat``). A parameter given twice is refused.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from indexer.store import SearchRequest
from sednaya_monitor.web.errors import BadRequest
from sednaya_monitor.web.models import MAX_FILTER_CHARS, SearchQuery, parameter_message, parse_date

Params = Mapping[str, Sequence[str]]
M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True, kw_only=True, slots=True)
class SearchParams:
    """A parsed search: the store request plus how the page shows it."""

    request: SearchRequest
    view: str  # "stories" or "flat"
    after: str | None  # the cursor as received (to build links)


def single(params: Params, *, drop_blank: bool = False) -> dict[str, str]:
    """One value per name; raises BadRequest naming a parameter given more than once.

    ``drop_blank``: a blank value means "not given" (a page's form sends every field, empty or not).
    """
    out: dict[str, str] = {}
    for name, values in params.items():
        if len(values) > 1:
            raise BadRequest(f"parameter {name!r} given {len(values)} times; give it once")
        if values and not (drop_blank and not values[0].strip() and len(values[0]) <= MAX_FILTER_CHARS):
            out[name] = values[0]
    return out


def parse_model(model: type[M], params: Params) -> M:
    """``model`` from a page's query parameters (blanks dropped); raises BadRequest naming the first error."""
    try:
        return model.model_validate(single(params, drop_blank=True))
    except ValidationError as exc:
        raise BadRequest(parameter_message(exc.errors())) from None


def date(params: Params, name: str, *, end_of_day: bool = False) -> datetime | None:
    """One date parameter (see :func:`models.parse_date`); None when absent or blank."""
    value = single(params).get(name, "").strip()
    if not value:
        return None
    try:
        return parse_date(name, value, end_of_day=end_of_day)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None


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


def to_search(query: SearchQuery, *, default_view: str = "stories") -> SearchParams:
    """The store request for a validated :class:`SearchQuery`."""
    view = query.view or default_view
    request = SearchRequest(
        query=query.q,
        lang=query.lang,
        source=query.source,
        source_type=query.source_type,
        since=query.since,
        until=query.until,
        story=query.story,
        sort=query.sort,
        size=query.size,
        search_after=decode_cursor(query.after),
        facets=query.facets,
        highlight=True,
        by_story=view == "stories",
    )
    return SearchParams(request=request, view=view, after=query.after)


def search_params(params: Params, *, default_view: str = "stories") -> SearchParams:
    """Parse the search parameters (see the module docstring); raises BadRequest naming the parameter."""
    return to_search(parse_model(SearchQuery, params), default_view=default_view)
