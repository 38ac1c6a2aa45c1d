"""The JSON API as pydantic models: query parameters, request bodies and answers.

FastAPI builds the OpenAPI document (``/api/openapi.json``) from these classes, and the same classes
check what comes in, so the document and the server cannot drift apart. Each schema exists once:
:class:`WatchlistInput` is both the documented POST body and the validator of it.

Query parameters are strings on the wire; a blank value (``lang=`` from a form) means "not given",
a NUL anywhere is refused, keyword filters refuse control characters, and every date must fall in
``1990-01-01 … now + 1 day`` (an article cannot be older than the archive or from the future).
"""

from __future__ import annotations

import json
import re
import types
import typing
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, WithJsonSchema, field_validator, model_validator

from indexer.alerting.watchlists import MAX_QUERY_CHARS as MAX_WATCHLIST_QUERY_CHARS
from indexer.alerting.watchlists import NAME_RE
from stream.article import parse_time

DEFAULT_PAGE_SIZE = 20  # results per page: one screen of story groups
MAX_PAGE_SIZE = 100  # bounds the work one request can ask of the store
MAX_QUERY_CHARS = 1000  # longer queries are refused rather than parsed (no analyst types more)
MAX_CURSOR_CHARS = 2000  # a cursor is a handful of sort values; anything longer is not ours
MAX_FILTER_CHARS = 200  # language, source, story ids are short keywords
MAX_LIST = 500  # stories or alerts listed at once
EARLIEST_DATE = datetime(1990, 1, 1, tzinfo=UTC)  # before the archive of any monitored source
FUTURE_SLACK = timedelta(days=1)  # time zones and clock skew; anything later is a typo
_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_KEYWORD_PATTERN = r"^[^\x00-\x1f\x7f]*$"  # keywords are single-line identifiers

DATE_DESCRIPTION = "ISO 8601 date (2024-12-08) or date-time, UTC when no offset; from 1990-01-01 to tomorrow"
Keyword = Annotated[str | None, Field(max_length=MAX_FILTER_CHARS, pattern=_KEYWORD_PATTERN)]
DateTimeText = Annotated[str, Field(json_schema_extra={"format": "date-time"})]


def latest_date() -> datetime:
    return datetime.now(UTC) + FUTURE_SLACK


def parse_date(name: str, value: str, *, end_of_day: bool = False) -> datetime:
    """A date parameter as aware UTC; ``ValueError`` naming ``name`` when unparsable or out of range.

    A bare date as an upper bound (``end_of_day``) means the end of that day.
    """
    try:
        parsed = parse_time(value)
    except (ValueError, OverflowError):  # OverflowError: an offset that moves 0001-01-01 out of range
        raise ValueError(f"parameter {name!r}={value!r}: expected an ISO 8601 date (2024-12-08) or date-time") from None
    latest = latest_date()
    if not EARLIEST_DATE <= parsed <= latest:
        raise ValueError(
            f"parameter {name!r}={value!r}: outside {EARLIEST_DATE.date()} … {latest.date()} "
            "(dates before the archive or in the future)"
        )
    if end_of_day and _DATE_ONLY.match(value.strip()):
        return parsed + timedelta(days=1) - timedelta(microseconds=1)
    return parsed


# Text parameters whose blank value means "not given" (an API client may send ``lang=``); a blank
# number, date or choice is refused by the API, and dropped only by the pages (``params.single``).
TEXT_PARAMETERS = frozenset({"q", "lang", "source", "source_type", "story", "after", "watchlist"})
DateBound = Annotated[
    datetime | None,
    WithJsonSchema(
        {
            "anyOf": [{"type": "string", "format": "date-time"}, {"type": "string", "format": "date"}],
            "description": DATE_DESCRIPTION,
        }
    ),
]


class QueryModel(BaseModel):
    """Query-string parameters: blank text is absent, NUL refused (messages name the parameter)."""

    model_config = ConfigDict(extra="ignore")

    @model_validator(mode="before")
    @classmethod
    def _blank_is_absent(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        out: dict[str, Any] = {}
        for key, value in data.items():
            if isinstance(value, str):
                if "\x00" in value:
                    raise ValueError(f"parameter {key!r} contains a NUL character")
                if key in TEXT_PARAMETERS and not value.strip() and len(value) <= MAX_FILTER_CHARS:
                    continue
            out[key] = value
        return out

    @field_validator("since", "until", mode="before", check_fields=False)
    @classmethod
    def _date(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, str):
            return parse_date(str(info.field_name), value, end_of_day=info.field_name == "until")
        return value


class FilterQuery(QueryModel):
    """Filters shared by the search and the article listing."""

    lang: Keyword = Field(None, description="ISO 639-1 language of the article")
    source: Keyword = Field(None, description="Source id from the registry")
    source_type: Keyword = Field(None, description="Source type (wire, public-broadcaster, ngo, ...)")
    since: DateBound = Field(None, description="Published on or after. " + DATE_DESCRIPTION)
    until: DateBound = Field(
        None, description="Published on or before; a bare date includes the whole day. " + DATE_DESCRIPTION
    )
    story: Keyword = Field(None, description="Only articles of this story")
    size: int = Field(DEFAULT_PAGE_SIZE, ge=1, le=MAX_PAGE_SIZE, description="Results (or story groups) per page")
    after: str | None = Field(
        None, max_length=MAX_CURSOR_CHARS, description="Cursor: the `next` value of the previous page"
    )

    @model_validator(mode="after")
    def _order(self) -> FilterQuery:
        if self.since is not None and self.until is not None and self.since > self.until:
            raise ValueError(f"parameter 'since' ({self.since.date()}) is after 'until' ({self.until.date()})")
        return self


class SearchQuery(FilterQuery):
    """``/api/search`` and the search page (whose default view is ``stories``)."""

    q: str = Field(
        "",
        max_length=MAX_QUERY_CHARS,
        description='Query in the query language: words, "phrases", AND/OR/NOT, ( ), title:/lang:/source:/story:',
    )
    sort: Literal["relevance", "date"] = Field(
        "relevance",
        description="Order of results (`relevance`: newest first when the query has no word or phrase to rank by)",
    )
    view: Literal["flat", "stories"] | None = Field(
        None, description="`flat` articles (API default) or `stories` (grouped by story; page default)"
    )
    facets: bool = Field(False, description="Include facet counts (lang, source, source_type, story, day)")

    @field_validator("q", mode="after")
    @classmethod
    def _strip(cls, value: str) -> str:
        return value.strip()


class ArticlesQuery(FilterQuery):
    """``/api/articles``: the search filters without a query (newest first)."""


class StoriesQuery(QueryModel):
    """``/api/stories`` and the stories page: newest ``last_seen`` first, with filters."""

    since: DateBound = Field(None, description="Stories seen since. " + DATE_DESCRIPTION)
    lang: Keyword = Field(None, description="Only stories with an article in this language")
    min_sources: int = Field(1, ge=1, le=10_000, description="Only stories covered by at least this many sources")
    min_languages: int = Field(1, ge=1, le=200, description="Only stories covered in at least this many languages")
    limit: int = Field(50, ge=1, le=MAX_LIST, description="At most this many stories")


class AlertsQuery(QueryModel):
    watchlist: str | None = Field(None, max_length=MAX_FILTER_CHARS, description="Only this watchlist's alerts")
    limit: int = Field(50, ge=1, le=MAX_LIST, description="At most this many alerts")


# --- answers ---------------------------------------------------------------------------------------


class Error(BaseModel):
    error: str = Field(description="What was refused; names the parameter, field or position at fault")
    status: int
    position: int | None = Field(None, description="0-based offset of the bad token in the query")
    token: str | None = None


class Relevance(BaseModel):
    score: float
    terms: list[str]


class Article(BaseModel):
    """An article as stored (``stream.article.Article.to_dict``; the embedding left out)."""

    schema_: int = Field(alias="schema")
    id: str
    url: str
    canonical_url: str
    source: str
    channel: str
    backfill: bool
    lang: str
    title: str
    text: str
    authors: list[str]
    published: DateTimeText | None
    date_source: str
    discovered_at: DateTimeText | None
    fetched_at: DateTimeText
    content_sha256: str
    relevance: Relevance | None
    duplicate_of: str | None
    story_id: str | None
    story_role: Literal["first", "duplicate", "follow_up"] | None
    extra: dict[str, str] = Field(default_factory=dict)


class Story(BaseModel):
    id: str
    title: str
    first_seen: DateTimeText
    last_seen: DateTimeText
    article_count: int
    source_count: int
    languages: list[str]
    sources: list[str]
    first_article_id: str
    merged_into: str | None


class Hit(BaseModel):
    article: Article
    score: float
    highlights: dict[str, list[str]]
    matched_terms: list[str]


class StoryGroup(BaseModel):
    story_id: str
    article_count: int = Field(description="Articles of the story that match the query")
    languages: list[str]
    story: Story | None
    best: Hit


class Facet(BaseModel):
    value: str
    count: int


class SearchResponse(BaseModel):
    total: int
    view: Literal["flat", "stories"]
    hits: list[Hit]
    groups: list[StoryGroup]
    facets: dict[str, list[Facet]]
    next: str | None = Field(description="Cursor for the next page (pass as `after`)")
    expanded: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Name variants the search added, by the word typed (shown as 'also searched'); empty when none",
    )


class StoriesResponse(BaseModel):
    stories: list[Story]


class LanguageArrival(BaseModel):
    """When a story first appeared in a language, and how long after its first article."""

    lang: str
    first_published: DateTimeText
    after_first_s: float = Field(description="Seconds after the story's first article")
    article_id: str
    source: str
    articles: int = Field(description="Articles of the story in this language")


class StoryResponse(BaseModel):
    story: Story
    articles: list[Article]
    languages: list[LanguageArrival] = Field(description="First article per language, in order of arrival")
    merged: list[Story] = Field(description="Stories merged into this one")


class ArticlesResponse(BaseModel):
    total: int
    articles: list[Article]
    next: str | None


class ArticleResponse(BaseModel):
    article: Article


class Watchlist(BaseModel):
    name: str
    query: str
    lang: str | None
    source: str | None
    webhooks: list[str]
    slack: bool
    emails: list[str]
    mode: Literal["instant", "digest"]
    every: Literal["hourly", "daily"]
    created_at: DateTimeText
    secret_set: bool
    secret: str | None = Field(None, description="Only in the answer to POST: the webhook HMAC secret")


class WatchlistInput(BaseModel):
    """A new watchlist (``POST /api/watchlists``). Values are checked further by ``Watchlist.validate``."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: str = Field(json_schema_extra={"pattern": NAME_RE.pattern})
    query: str = Field(min_length=1, max_length=MAX_WATCHLIST_QUERY_CHARS)
    lang: str | None = None
    source: str | None = None
    webhooks: list[str] = Field(default_factory=list)
    secret: str | None = Field(None, description="Webhook HMAC secret; generated when omitted")
    slack: bool = False
    emails: list[str] = Field(default_factory=list)
    mode: Literal["instant", "digest"] = "instant"
    every: Literal["hourly", "daily"] = "daily"

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NAME_RE.match(value):
            raise ValueError(
                f"watchlist name {value!r}: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
            )
        return value


class WatchlistResponse(BaseModel):
    watchlist: Watchlist


class WatchlistsResponse(BaseModel):
    watchlists: list[Watchlist]


class Alert(BaseModel):
    watchlist: str
    story_id: str
    story_title: str
    at: DateTimeText
    article_title: str
    article_url: str
    lang: str
    source: str
    matched_terms: list[str]


class AlertsResponse(BaseModel):
    alerts: list[Alert]


# --- validation errors as messages ------------------------------------------------------------------

_TYPE_WORDS = {
    "string_type": "a string",
    "list_type": "a list of strings",
    "bool_type": "true or false",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "bool_parsing": "true or false",
}


def _shown(value: Any) -> str:
    """A parameter value as the messages show it: ``0`` for a number, ``'ten'`` for text."""
    if isinstance(value, str) and re.fullmatch(r"-?\d{1,18}", value):
        return value
    return repr(value)


def _expected(error: Any) -> str:
    kind = error.get("type", "")
    ctx = error.get("ctx") or {}
    if kind in ("greater_than_equal", "less_than_equal"):
        return "out of range (" + str(error.get("msg", "")).lower() + ")"
    if kind == "literal_error":
        return "expected one of " + str(ctx.get("expected", "")).replace("'", "")
    if kind == "string_too_long":
        return f"at most {ctx.get('max_length')} characters allowed"
    if kind == "string_pattern_mismatch":
        return "control characters are not allowed"
    if kind in _TYPE_WORDS:
        return "expected " + _TYPE_WORDS[kind]
    return str(error.get("msg", "invalid"))


def parameter_message(errors: list[Any]) -> str:
    """The first validation error of query parameters, naming the parameter and its value."""
    error = errors[0]
    loc = [part for part in error.get("loc", ()) if part not in ("query", "path")]
    message = str(error.get("msg", ""))
    if error.get("type") == "value_error":
        return message.removeprefix("Value error, ")
    if not loc:
        return message
    name = str(loc[0])
    if error.get("type") == "missing":
        return f"parameter {name!r} is required"
    return f"parameter {name!r}={_shown(error.get('input'))}: {_expected(error)}"


def _describe(annotation: Any) -> str:
    """``list[str]`` -> "a list of strings", ``str | None`` -> "a string or null" (from the model's types)."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return " or ".join(_describe(a) for a in args) + " or null"
    if typing.get_origin(annotation) is list:
        return "a list of " + _describe(args[0]).removeprefix("a ") + "s"
    if annotation is bool:
        return "true or false"
    if annotation is int:
        return "an integer"
    return "a string"


def body_message(errors: list[Any]) -> str:
    """The first validation error of a JSON body, naming the field and what it should be."""
    error = errors[0]
    kind = error.get("type", "")
    loc = [part for part in error.get("loc", ()) if part != "body"]
    if kind == "json_invalid":
        return f"request body is not JSON: {(error.get('ctx') or {}).get('error', error.get('msg'))}"
    if not loc:
        if kind in ("model_attributes_type", "dict_type", "model_type"):
            value = error.get("input")
            return f"request body must be a JSON object, got {type(value).__name__}"
        return "request body: " + str(error.get("msg", "")).removeprefix("Value error, ")
    name = str(loc[0])
    if kind == "missing":
        return f"request body: field {name!r} is required"
    if kind == "extra_forbidden":
        return f"request body: unknown field(s) {name!r}"
    if kind == "value_error":
        return str(error.get("msg", "")).removeprefix("Value error, ")
    field = WatchlistInput.model_fields.get(name)
    expected = _describe(field.annotation) if field is not None else _TYPE_WORDS.get(kind, "valid")
    if kind in ("literal_error", "string_too_short", "string_too_long"):
        return f"request body: field {name!r}: {_expected(error)}, got {json.dumps(error.get('input'))[:80]}"
    return f"request body: field {name!r} must be {expected}, got {json.dumps(error.get('input'))[:80]}"
