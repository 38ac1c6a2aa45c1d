"""The OpenAPI 3.0 document of the JSON API, served at ``/api/openapi.json``.

Written by hand next to the handlers in ``app.py`` (one place to change both); tests validate it with
openapi-spec-validator and fuzz the live server against it with schemathesis.
"""

from __future__ import annotations

from typing import Any

from sednaya_monitor.web.params import MAX_CURSOR_CHARS, MAX_FILTER_CHARS, MAX_PAGE_SIZE, MAX_QUERY_CHARS
from stream.settings import Settings

WATCHLIST_INPUT_FIELDS = frozenset(  # keep in step with app._BODY_TYPES and SCHEMAS["WatchlistInput"]
    {"name", "query", "lang", "source", "webhooks", "secret", "slack", "emails", "mode", "every"}
)

_STR = {"type": "string"}
_NSTR = {"type": "string", "nullable": True}
_TIME = {"type": "string", "format": "date-time"}
_NTIME = {"type": "string", "format": "date-time", "nullable": True}
_STRS = {"type": "array", "items": {"type": "string"}}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _q(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description, "schema": schema}


def _path(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "description": description, "schema": {"type": "string"}}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERR = _json(_ref("Error"), "The request was refused; `error` names the parameter, field or position at fault.")
_KEYWORD = {"type": "string", "maxLength": MAX_FILTER_CHARS}
_DATE = {"type": "string", "maxLength": 64, "description": "ISO 8601 date (2024-12-08) or date-time"}

SEARCH_PARAMETERS = [
    _q(
        "q",
        'Query in the query language: words, "phrases", AND/OR/NOT, ( ), title:/lang:/source:/story:',
        {"type": "string", "maxLength": MAX_QUERY_CHARS},
    ),
    _q("lang", "ISO 639-1 language of the article", _KEYWORD),
    _q("source", "Source id from the registry", _KEYWORD),
    _q("source_type", "Source type (wire, public-broadcaster, ngo, ...)", _KEYWORD),
    _q("since", "Published on or after (UTC)", _DATE),
    _q("until", "Published on or before (UTC); a bare date includes the whole day", _DATE),
    _q("story", "Only articles of this story", _KEYWORD),
    _q("sort", "Order of results", {"type": "string", "enum": ["relevance", "date"]}),
    _q("size", "Results (or story groups) per page", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE}),
    _q("after", "Cursor: the `next` value of the previous page", {"type": "string", "maxLength": MAX_CURSOR_CHARS}),
    _q(
        "view",
        "`flat` articles (default) or `stories` (grouped by story)",
        {"type": "string", "enum": ["flat", "stories"]},
    ),
    _q("facets", "Include facet counts (lang, source, source_type, story, day)", {"type": "boolean"}),
]

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error", "status"],
        "properties": {
            "error": _STR,
            "status": {"type": "integer"},
            "position": {"type": "integer", "description": "0-based offset of the bad token in the query"},
            "token": _STR,
        },
    },
    "Relevance": {
        "type": "object",
        "nullable": True,
        "properties": {"score": {"type": "number"}, "terms": _STRS},
    },
    "Article": {
        "type": "object",
        "required": ["id", "url", "canonical_url", "source", "lang", "title", "text", "fetched_at"],
        "properties": {
            "schema": {"type": "integer"},
            "id": _STR,
            "url": _STR,
            "canonical_url": _STR,
            "source": _STR,
            "channel": {"type": "string", "enum": ["feed", "sitemap", "search", "import"]},
            "backfill": {"type": "boolean"},
            "lang": _STR,
            "title": _STR,
            "text": _STR,
            "authors": _STRS,
            "published": _NTIME,
            "date_source": _STR,
            "discovered_at": _TIME,
            "fetched_at": _TIME,
            "content_sha256": _STR,
            "relevance": _ref("Relevance"),
            "duplicate_of": _NSTR,
            "story_id": _NSTR,
            "story_role": {"type": "string", "nullable": True, "enum": ["first", "duplicate", "follow_up", None]},
            "extra": {"type": "object", "additionalProperties": {"type": "string"}},
        },
    },
    "Story": {
        "type": "object",
        "required": ["id", "title", "first_seen", "last_seen", "article_count", "source_count", "languages"],
        "properties": {
            "id": _STR,
            "title": _STR,
            "first_seen": _TIME,
            "last_seen": _TIME,
            "article_count": {"type": "integer"},
            "source_count": {"type": "integer"},
            "languages": _STRS,
            "sources": _STRS,
            "first_article_id": _STR,
            "merged_into": _NSTR,
        },
    },
    "Hit": {
        "type": "object",
        "required": ["article", "score"],
        "properties": {
            "article": _ref("Article"),
            "score": {"type": "number"},
            "highlights": {"type": "object", "additionalProperties": _STRS},
            "matched_terms": _STRS,
        },
    },
    "StoryGroup": {
        "type": "object",
        "required": ["story_id", "article_count", "languages", "best"],
        "properties": {
            "story_id": _STR,
            "article_count": {"type": "integer"},
            "languages": _STRS,
            "story": {"allOf": [_ref("Story")], "nullable": True},
            "best": _ref("Hit"),
        },
    },
    "SearchResponse": {
        "type": "object",
        "required": ["total", "view", "hits", "groups", "facets", "next", "expanded"],
        "properties": {
            "total": {"type": "integer"},
            "view": {"type": "string", "enum": ["flat", "stories"]},
            "hits": {"type": "array", "items": _ref("Hit")},
            "groups": {"type": "array", "items": _ref("StoryGroup")},
            "facets": {
                "type": "object",
                "additionalProperties": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {"value": _STR, "count": {"type": "integer"}},
                    },
                },
            },
            "next": {"type": "string", "nullable": True, "description": "cursor for the next page (pass as `after`)"},
            "expanded": {
                "type": "object",
                "description": "name variants of the topic file searched besides a word as typed: "
                '{"Sednaya": ["Saydnaya", "صيدنايا", ...]} (quote the word or write `exact:` to turn it off)',
                "additionalProperties": {"type": "array", "items": _STR},
            },
        },
    },
    "Watchlist": {
        "type": "object",
        "required": ["name", "query", "mode"],
        "properties": {
            "name": _STR,
            "query": _STR,
            "lang": _NSTR,
            "source": _NSTR,
            "webhooks": _STRS,
            "slack": {"type": "boolean"},
            "emails": _STRS,
            "mode": {"type": "string", "enum": ["instant", "digest"]},
            "every": {"type": "string", "enum": ["hourly", "daily"]},
            "created_at": _TIME,
            "secret_set": {"type": "boolean"},
            "masked": {
                "type": "boolean",
                "description": "true without the API token: webhooks shown as scheme://host/…, e-mails as …@domain",
            },
            "secret": {"type": "string", "description": "only in the answer to POST: the webhook HMAC secret"},
        },
    },
    "WatchlistInput": {
        "type": "object",
        "required": ["name", "query"],
        "additionalProperties": False,
        "properties": {
            "name": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"},
            "query": {"type": "string", "minLength": 1, "maxLength": 2000},
            "lang": _NSTR,
            "source": _NSTR,
            "webhooks": _STRS,
            "secret": {"type": "string", "description": "webhook HMAC secret; generated when omitted"},
            "slack": {"type": "boolean"},
            "emails": _STRS,
            "mode": {"type": "string", "enum": ["instant", "digest"]},
            "every": {"type": "string", "enum": ["hourly", "daily"]},
        },
    },
    "Alert": {
        "type": "object",
        "required": ["watchlist", "story_id", "story_title", "at"],
        "properties": {
            "watchlist": _STR,
            "story_id": _STR,
            "story_title": _STR,
            "at": _TIME,
            "article_title": _STR,
            "article_url": _STR,
            "lang": _STR,
            "source": _STR,
            "matched_terms": _STRS,
        },
    },
}


def document(settings: Settings) -> dict[str, Any]:
    """The OpenAPI 3.0.3 document; ``servers`` points at ``settings.public_url``."""
    unauthorized = _json(_ref("Error"), "No or wrong bearer token (401), or writes disabled: no api_token set (403)")
    limit = _q("limit", "At most this many", {"type": "integer", "minimum": 1, "maximum": 500})
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "Sednaya Monitor API",
            "version": "1",
            "description": "Search the coverage of Sednaya prison, its stories, watchlists and alerts.",
        },
        "servers": [{"url": settings.public_url.rstrip("/") or "/"}],
        "paths": {
            "/api/search": {
                "get": {
                    "operationId": "search",
                    "summary": "Full-text search, flat or grouped by story",
                    "parameters": SEARCH_PARAMETERS,
                    "responses": {"200": _json(_ref("SearchResponse"), "Results"), "400": _ERR},
                }
            },
            "/api/stories": {
                "get": {
                    "operationId": "listStories",
                    "summary": "Stories, newest last_seen first",
                    "parameters": [_q("since", "Stories seen since (UTC)", _DATE), limit],
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["stories"],
                                "properties": {"stories": {"type": "array", "items": _ref("Story")}},
                            },
                            "Stories",
                        ),
                        "400": _ERR,
                    },
                }
            },
            "/api/stories/{story_id}": {
                "get": {
                    "operationId": "getStory",
                    "summary": "A story and its articles, oldest first",
                    "parameters": [_path("story_id", "Story id")],
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["story", "articles"],
                                "properties": {
                                    "story": _ref("Story"),
                                    "articles": {"type": "array", "items": _ref("Article")},
                                },
                            },
                            "The story",
                        ),
                        "404": _ERR,
                    },
                }
            },
            "/api/articles": {
                "get": {
                    "operationId": "listArticles",
                    "summary": "Stored articles, newest first (filters as in search, no query)",
                    "parameters": [p for p in SEARCH_PARAMETERS if p["name"] not in ("q", "view", "sort", "facets")],
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["total", "articles", "next"],
                                "properties": {
                                    "total": {"type": "integer"},
                                    "articles": {"type": "array", "items": _ref("Article")},
                                    "next": {"type": "string", "nullable": True},
                                },
                            },
                            "Articles",
                        ),
                        "400": _ERR,
                    },
                }
            },
            "/api/articles/{article_id}": {
                "get": {
                    "operationId": "getArticle",
                    "summary": "One stored article",
                    "parameters": [_path("article_id", "Article id (32 hex characters)")],
                    "responses": {
                        "200": _json(
                            {"type": "object", "required": ["article"], "properties": {"article": _ref("Article")}},
                            "The article",
                        ),
                        "404": _ERR,
                    },
                }
            },
            "/api/watchlists": {
                "get": {
                    "operationId": "listWatchlists",
                    "summary": "Every watchlist (secrets left out)",
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["watchlists"],
                                "properties": {"watchlists": {"type": "array", "items": _ref("Watchlist")}},
                            },
                            "Watchlists",
                        ),
                        "503": _ERR,
                    },
                },
                "post": {
                    "operationId": "addWatchlist",
                    "summary": "Add a watchlist (needs the bearer token)",
                    "security": [{"bearer": []}],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _ref("WatchlistInput")}},
                    },
                    "responses": {
                        "201": _json(
                            {
                                "type": "object",
                                "required": ["watchlist"],
                                "properties": {"watchlist": _ref("Watchlist")},
                            },
                            "Created; the answer carries the webhook secret once",
                        ),
                        "400": _ERR,
                        "401": unauthorized,
                        "403": unauthorized,
                        "409": _json(_ref("Error"), "A watchlist of that name exists"),
                        "413": _ERR,
                    },
                },
            },
            "/api/watchlists/{name}": {
                "get": {
                    "operationId": "getWatchlist",
                    "summary": "One watchlist",
                    "parameters": [_path("name", "Watchlist name")],
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["watchlist"],
                                "properties": {"watchlist": _ref("Watchlist")},
                            },
                            "The watchlist",
                        ),
                        "404": _ERR,
                    },
                },
                "delete": {
                    "operationId": "removeWatchlist",
                    "summary": "Remove a watchlist (needs the bearer token)",
                    "security": [{"bearer": []}],
                    "parameters": [_path("name", "Watchlist name")],
                    "responses": {
                        "204": {"description": "Removed"},
                        "401": unauthorized,
                        "403": unauthorized,
                        "404": _ERR,
                    },
                },
            },
            "/api/alerts": {
                "get": {
                    "operationId": "listAlerts",
                    "summary": "Recent alerts, newest first",
                    "parameters": [_q("watchlist", "Only this watchlist's alerts", {"type": "string"}), limit],
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["alerts"],
                                "properties": {"alerts": {"type": "array", "items": _ref("Alert")}},
                            },
                            "Alerts",
                        ),
                        "400": _ERR,
                        "503": _ERR,
                    },
                }
            },
        },
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
