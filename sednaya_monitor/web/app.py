"""The web application: routes a request to a page or an API answer. No sockets here (see ``server.py``).

``App.handle(Request) -> Response`` is a plain function of the request and the collaborators (search
store, watchlist repository, alert log, metrics), so the HTTP plumbing stays thin. Errors map to
statuses in one place: :class:`HttpError` (4xx with its message), ``QuerySyntaxError`` and
``WatchlistError`` (400 naming the position or field), anything else 500 (logged, no details leaked).
"""

from __future__ import annotations

import dataclasses
import hmac
import json
import logging
import re
import threading
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from crawlers.raw_store import RawStore
from indexer.delivery import check_targets
from indexer.errors import QuerySyntaxError, WatchlistError
from indexer.query import parse as parse_query
from indexer.store import Hit, SearchRequest, SearchResult, SearchStore, StoryGroup
from indexer.watchlists import Watchlist, WatchlistRepository, new_secret
from sednaya_monitor.web import openapi, pages, params
from sednaya_monitor.web.errors import BadRequest, HttpError, NotFound
from sednaya_monitor.web.params import Params, SearchParams
from stream.metrics import Metrics
from stream.settings import Settings

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024  # a watchlist is a few hundred bytes; anything bigger is refused (413)
CHART_LANGS = 6  # languages drawn in the volume chart (one facet query each); the rest are rare
CHART_STORIES = 2000  # stories read for the "new stories per day" chart
RECENT_ALERTS = 10  # alerts listed per watchlist on the watchlists page
HTML = "text/html; charset=utf-8"
JSON = "application/json; charset=utf-8"
# Pages are self-contained: no scripts at all, inline styles only, forms post back to us.
HTML_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; "
    "base-uri 'none'; frame-ancestors 'none'"
)
# A stored raw copy is someone else's page: shown sandboxed (no scripts, no same-origin, no fetches).
RAW_CSP = "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True, kw_only=True, slots=True)
class Request:
    method: str
    path: str  # decoded path, no query string
    query: Mapping[str, list[str]]
    headers: Mapping[str, str]  # lower-case names
    body: bytes = b""


@dataclass(kw_only=True, slots=True)
class Response:
    status: int
    body: bytes
    content_type: str
    headers: dict[str, str] = field(default_factory=dict)


class AlertLog(Protocol):
    """Where the pages read recent alerts from (the alert ledger)."""

    def recent(self, watchlist: str | None, limit: int) -> list[pages.AlertView]:
        """Newest first; all watchlists when ``watchlist`` is None."""

    def atom(self, watchlist: Watchlist, limit: int) -> bytes:
        """The Atom feed of ``watchlist``'s recent alerts."""


Handler = Callable[[Request, dict[str, str]], Response]


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return Response(status=status, body=body, content_type=JSON, headers=dict(headers or {}))


def html_response(body: bytes, status: int = 200) -> Response:
    return Response(status=status, body=body, content_type=HTML, headers={"Content-Security-Policy": HTML_CSP})


def hit_dict(hit: Hit) -> dict[str, Any]:
    return {
        "article": hit.article.to_dict(),
        "score": hit.score,
        "highlights": {k: list(v) for k, v in hit.highlights.items()},
        "matched_terms": list(hit.matched_terms),
    }


def group_dict(group: StoryGroup) -> dict[str, Any]:
    return {
        "story_id": group.story_id,
        "article_count": group.article_count,
        "languages": list(group.languages),
        "story": None if group.story is None else group.story.to_dict(),
        "best": hit_dict(group.best),
    }


class App:
    """Routes and handlers. Collaborators are passed in; ``store`` calls are serialised by a lock."""

    def __init__(
        self,
        settings: Settings,
        store: SearchStore,
        metrics: Metrics,
        *,
        watchlists: WatchlistRepository | None = None,
        alerts: AlertLog | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.metrics = metrics
        self.watchlists = watchlists
        self.alerts = alerts
        self.raw_store = RawStore(settings.data_dir)
        self._store_lock = threading.RLock()
        self.routes: list[tuple[str, re.Pattern[str], str, Handler]] = []
        for method, pattern, name, handler in (
            ("GET", r"/", "page_search", self.page_search),
            ("GET", r"/stories", "page_stories", self.page_stories),
            ("GET", r"/stories/(?P<story_id>[^/]+)", "page_story", self.page_story),
            ("GET", r"/timeline", "page_timeline", self.page_timeline),
            ("GET", r"/watchlists", "page_watchlists", self.page_watchlists),
            ("GET", r"/watchlists/(?P<name>[^/]+)", "page_watchlist", self.page_watchlists),
            ("GET", r"/watchlists/(?P<name>[^/]+)/atom\.xml", "atom", self.atom),
            ("GET", r"/raw/(?P<sha>[^/]+)", "raw", self.raw_copy),
            ("GET", r"/healthz", "healthz", self.healthz),
            ("GET", r"/metrics", "metrics", self.metrics_page),
            ("GET", r"/api/openapi\.json", "api_openapi", self.api_openapi),
            ("GET", r"/api/search", "api_search", self.api_search),
            ("GET", r"/api/stories", "api_stories", self.api_stories),
            ("GET", r"/api/stories/(?P<story_id>[^/]+)", "api_story", self.api_story),
            ("GET", r"/api/articles", "api_articles", self.api_articles),
            ("GET", r"/api/articles/(?P<article_id>[^/]+)", "api_article", self.api_article),
            ("GET", r"/api/watchlists", "api_watchlists", self.api_watchlists),
            ("POST", r"/api/watchlists", "api_watchlist_add", self.api_watchlist_add),
            ("GET", r"/api/watchlists/(?P<name>[^/]+)", "api_watchlist", self.api_watchlist),
            ("DELETE", r"/api/watchlists/(?P<name>[^/]+)", "api_watchlist_remove", self.api_watchlist_remove),
            ("GET", r"/api/alerts", "api_alerts", self.api_alerts),
        ):
            self.routes.append((method, re.compile(f"^{pattern}$"), name, handler))

    # --- dispatch ----------------------------------------------------------------------------------

    def route(self, request: Request) -> tuple[str, Handler | None, dict[str, str]]:
        """``(route name, handler, path args)``; handler None with name ``method_not_allowed``/``not_found``."""
        allowed = False
        for method, pattern, name, handler in self.routes:
            m = pattern.match(request.path)
            if m is None:
                continue
            if method == request.method or (method == "GET" and request.method == "HEAD"):
                return name, handler, {k: unquote(v) for k, v in m.groupdict().items()}
            allowed = True
        return ("method_not_allowed" if allowed else "not_found"), None, {}

    def allowed_methods(self, path: str) -> str:
        """``Allow`` header value for ``path``: its routes' methods (GET implies HEAD)."""
        methods = {method for method, pattern, _n, _h in self.routes if pattern.match(path)}
        if "GET" in methods:
            methods.add("HEAD")
        return ", ".join(sorted(methods))

    def handle(self, request: Request) -> tuple[str, Response]:
        """Answer ``request``: ``(route name for metrics, response)``. Never raises."""
        name, handler, args = self.route(request)
        api = request.path.startswith("/api/")
        try:
            if handler is None:
                if name == "method_not_allowed":
                    allowed = self.allowed_methods(request.path)
                    raise HttpError(
                        405,
                        f"method {request.method} is not allowed on {request.path} (allowed: {allowed})",
                        headers={"Allow": allowed},
                    )
                raise NotFound(f"no page at {request.path!r}")
            return name, handler(request, args)
        except HttpError as exc:
            return name, self.error(exc.status, exc.message, api=api, headers=exc.headers)
        except QuerySyntaxError as exc:
            return name, self.error(400, str(exc), api=api, extra={"position": exc.position, "token": exc.token})
        except WatchlistError as exc:
            return name, self.error(400, str(exc), api=api)
        except Exception:
            logger.exception("request failed", extra={"url": request.path, "stage": "serve"})
            return name, self.error(500, "internal error (logged on the server)", api=api)

    def error(
        self,
        status: int,
        message: str,
        *,
        api: bool,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> Response:
        if api:
            return json_response({"error": message, "status": status, **(extra or {})}, status, headers)
        response = html_response(pages.render_error(status, message), status)
        response.headers.update(headers or {})
        return response

    # --- helpers -----------------------------------------------------------------------------------

    def search(self, request: SearchRequest) -> SearchResult:
        """``store.search``; a cursor the store cannot use (``ValueError``) becomes a 400 naming ``after``."""
        try:
            with self._store_lock:
                return self.store.search(request)
        except QuerySyntaxError:
            raise
        except ValueError as exc:
            if request.search_after is None:
                raise
            raise BadRequest(f"parameter 'after': {exc}") from None

    def filter_options(self) -> pages.FilterOptions:
        facets = self.search(SearchRequest(size=1, facets=True)).facets
        return pages.FilterOptions(
            langs=facets.get("lang", []), sources=facets.get("source", []), source_types=facets.get("source_type", [])
        )

    def volume(self, request: SearchRequest, langs: Sequence[tuple[str, int]]) -> dict[date, dict[str, int]]:
        """Articles matching ``request`` per day and language (one facet query per language, top CHART_LANGS)."""
        out: dict[date, dict[str, int]] = defaultdict(dict)
        base = SearchRequest(
            query=request.query,
            source=request.source,
            source_type=request.source_type,
            since=request.since,
            until=request.until,
            story=request.story,
            size=1,
            facets=True,
        )
        chosen = [request.lang] if request.lang else [lang for lang, _ in langs[:CHART_LANGS]]
        for lang in chosen:
            if lang is None:
                continue
            per_lang = self.search(dataclasses.replace(base, lang=lang))
            for key, count in per_lang.facets.get("day", []):
                try:
                    day = date.fromisoformat(key[:10])
                except ValueError:
                    continue
                out[day][lang] = out[day].get(lang, 0) + count
        return dict(out)

    def has_raw(self, sha: str) -> bool:
        """Whether the crawlers kept the page of content hash ``sha`` (``crawlers.raw_store`` layout)."""
        return bool(_SHA256.match(sha)) and self.raw_store.path_for(sha).is_file()

    def has_token(self, request: Request) -> bool:
        """The request carries the valid API token (read endpoints then show watchlist targets in full)."""
        try:
            self.require_token(request)
        except HttpError:
            return False
        return True

    def require_token(self, request: Request) -> None:
        """Write endpoints: ``Authorization: Bearer <settings.api_token>``; refused outright when no token is set."""
        if not self.settings.api_token:
            raise HttpError(403, "write endpoints are disabled: set api_token (SEDNAYA_MONITOR_API_TOKEN) to enable")
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise HttpError(
                401, "missing 'Authorization: Bearer <token>' header", headers={"WWW-Authenticate": "Bearer"}
            )
        if not hmac.compare_digest(token.strip().encode("utf-8"), self.settings.api_token.encode("utf-8")):
            raise HttpError(401, "the bearer token is not valid", headers={"WWW-Authenticate": "Bearer"})

    def repo(self) -> WatchlistRepository:
        if self.watchlists is None:
            raise HttpError(503, "watchlists are not available on this server")
        return self.watchlists

    # --- pages -------------------------------------------------------------------------------------

    def page_search(self, request: Request, _args: dict[str, str]) -> Response:
        options = self.filter_options()
        try:
            sp = params.search_params(request.query)
            result = self.search(sp.request)
        except (BadRequest, QuerySyntaxError) as exc:
            message = exc.message if isinstance(exc, BadRequest) else str(exc)
            page = pages.render_search(_lenient(request.query), None, options, error=message)
            return html_response(page, 400)
        volume = self.volume(sp.request, result.facets.get("lang", []) or options.langs) if sp.after is None else None
        return html_response(pages.render_search(sp, result, options, volume=volume))

    def page_stories(self, request: Request, _args: dict[str, str]) -> Response:
        since = params.date(request.query, "since")
        limit = params.integer(request.query, "limit", default=50, low=1, high=500)
        with self._store_lock:
            stories = self.store.list_stories(since=since, limit=limit)
        return html_response(pages.render_stories(stories))

    def page_story(self, _request: Request, args: dict[str, str]) -> Response:
        story_id = args["story_id"]
        with self._store_lock:
            story = self.store.get_story(story_id)
            if story is None:
                raise NotFound(f"no story {story_id!r}")
            articles = self.store.story_articles(story_id)
        raw = {a.id: self.has_raw(a.content_sha256) for a in articles}
        return html_response(pages.render_story(story, articles, raw))

    def page_timeline(self, request: Request, _args: dict[str, str]) -> Response:
        options = self.filter_options()
        try:
            sp = params.search_params(request.query)
            volume = self.volume(sp.request, options.langs)
        except (BadRequest, QuerySyntaxError) as exc:
            message = exc.message if isinstance(exc, BadRequest) else str(exc)
            page = pages.render_timeline(_lenient(request.query), options, {}, {}, error=message)
            return html_response(page, 400)
        with self._store_lock:
            stories = self.store.list_stories(since=sp.request.since, limit=CHART_STORIES)
        new: dict[date, dict[str, int]] = defaultdict(dict)
        for s in stories:
            day = s.first_seen.date()
            new[day]["stories"] = new[day].get("stories", 0) + 1
        return html_response(pages.render_timeline(sp, options, volume, dict(new)))

    def page_watchlists(self, _request: Request, args: dict[str, str]) -> Response:
        """Every watchlist with its recent alerts, or one (``/watchlists/<name>``, the feed's alternate link)."""
        if "name" in args:
            found = self.repo().get(args["name"])
            if found is None:
                raise NotFound(f"no watchlist named {args['name']!r}")
            watchlists = [found]
        else:
            watchlists = self.watchlists.all() if self.watchlists is not None else []
        recent: dict[str, Sequence[pages.AlertView]] = {}
        if self.alerts is not None:
            for w in watchlists:
                recent[w.name] = self.alerts.recent(w.name, RECENT_ALERTS)
        page = pages.render_watchlists(watchlists, recent, alerts_available=self.alerts is not None)
        return html_response(page)

    def atom(self, _request: Request, args: dict[str, str]) -> Response:
        watchlist = self.repo().get(args["name"])
        if watchlist is None:
            raise NotFound(f"no watchlist named {args['name']!r}")
        if self.alerts is None:
            raise HttpError(503, "the alert ledger is not available on this server")
        body = self.alerts.atom(watchlist, RECENT_ALERTS * 5)
        return Response(status=200, body=body, content_type="application/atom+xml; charset=utf-8")

    def raw_copy(self, _request: Request, args: dict[str, str]) -> Response:
        sha = args["sha"]
        body = self.raw_store.get(sha) if _SHA256.match(sha) else None
        if body is None:
            raise NotFound(f"no stored copy for content hash {sha!r}")
        # bytes as downloaded: no charset here, the page's own <meta charset> decides
        return Response(status=200, body=body, content_type="text/html", headers={"Content-Security-Policy": RAW_CSP})

    def healthz(self, _request: Request, _args: dict[str, str]) -> Response:
        try:
            with self._store_lock:
                count = self.store.count_articles()
        except Exception as exc:  # noqa: BLE001  # any store failure means unhealthy, reported as 503
            logger.warning("health check failed", extra={"stage": "serve", "reason": str(exc)})
            return json_response({"status": "red", "reason": f"search store: {exc}"}, 503)
        return json_response({"status": "green", "articles": count})

    def metrics_page(self, _request: Request, _args: dict[str, str]) -> Response:
        return Response(status=200, body=generate_latest(self.metrics.registry), content_type=CONTENT_TYPE_LATEST)

    # --- API ---------------------------------------------------------------------------------------

    def api_openapi(self, _request: Request, _args: dict[str, str]) -> Response:
        return json_response(openapi.document(self.settings))

    def api_search(self, request: Request, _args: dict[str, str]) -> Response:
        sp = params.search_params(
            request.query, default_view="flat", facets=params.boolean(request.query, "facets", default=False)
        )
        result = self.search(sp.request)
        return json_response(
            {
                "total": result.total,
                "view": sp.view,
                "hits": [hit_dict(h) for h in result.hits] if sp.view == "flat" else [],
                "groups": [group_dict(g) for g in result.groups] if sp.view == "stories" else [],
                "facets": {k: [{"value": v, "count": n} for v, n in items] for k, items in result.facets.items()},
                "next": params.encode_cursor(result.next_after),
                "expanded": {typed: list(added) for typed, added in result.expanded.items()},
            }
        )

    def api_stories(self, request: Request, _args: dict[str, str]) -> Response:
        since = params.date(request.query, "since")
        limit = params.integer(request.query, "limit", default=50, low=1, high=500)
        with self._store_lock:
            stories = self.store.list_stories(since=since, limit=limit)
        return json_response({"stories": [s.to_dict() for s in stories]})

    def api_story(self, _request: Request, args: dict[str, str]) -> Response:
        story_id = args["story_id"]
        with self._store_lock:
            story = self.store.get_story(story_id)
            if story is None:
                raise NotFound(f"no story {story_id!r}")
            articles = self.store.story_articles(story_id)
        return json_response({"story": story.to_dict(), "articles": [a.to_dict() for a in articles]})

    def api_articles(self, request: Request, _args: dict[str, str]) -> Response:
        """Every stored article matching the filters, newest first, a page at a time (``next`` cursor)."""
        for name in ("q", "view", "sort", "facets"):
            if name in request.query:
                raise BadRequest(f"parameter {name!r} is not accepted here: use /api/search")
        sp = params.search_params(request.query, default_view="flat")
        listing = dataclasses.replace(sp.request, sort="date", highlight=False, by_story=False)
        result = self.search(listing)
        return json_response(
            {
                "total": result.total,
                "articles": [h.article.to_dict() for h in result.hits],
                "next": params.encode_cursor(result.next_after),
                "expanded": {typed: list(added) for typed, added in result.expanded.items()},
            }
        )

    def api_article(self, _request: Request, args: dict[str, str]) -> Response:
        article_id = args["article_id"]
        with self._store_lock:
            article = self.store.get_article(article_id)
        if article is None:
            raise NotFound(f"no article {article_id!r}")
        return json_response({"article": article.to_dict()})

    def api_watchlists(self, request: Request, _args: dict[str, str]) -> Response:
        """Targets in full for a valid bearer token only; masked otherwise (``Watchlist.masked``)."""
        full = self.has_token(request)
        return json_response({"watchlists": [w.to_dict() if full else w.masked() for w in self.repo().all()]})

    def api_watchlist(self, request: Request, args: dict[str, str]) -> Response:
        found = self.repo().get(args["name"])
        if found is None:
            raise NotFound(f"no watchlist named {args['name']!r}")
        return json_response({"watchlist": found.to_dict() if self.has_token(request) else found.masked()})

    def api_watchlist_add(self, request: Request, _args: dict[str, str]) -> Response:
        self.require_token(request)
        repo = self.repo()
        try:
            data = json.loads(request.body.decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadRequest(f"request body is not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise BadRequest(f"request body must be a JSON object, got {type(data).__name__}")
        check_watchlist_body(data)
        if data.get("webhooks") and not data.get("secret"):
            data = {**data, "secret": new_secret()}
        watchlist = Watchlist.from_dict(data)
        check_targets(watchlist, self.settings)  # webhooks to private/metadata addresses -> 400 unless allowed
        parse_query(watchlist.query)  # QuerySyntaxError -> 400 naming the position, before anything is stored
        if repo.get(watchlist.name) is not None:
            raise HttpError(409, f"watchlist {watchlist.name!r} already exists (DELETE it first)")
        repo.add(watchlist)
        logger.info("watchlist added", extra={"stage": "serve", "watchlist": watchlist.name})
        return json_response(
            {"watchlist": watchlist.to_dict(with_secret=True)},
            201,
            {"Location": f"/api/watchlists/{watchlist.name}"},
        )

    def api_watchlist_remove(self, request: Request, args: dict[str, str]) -> Response:
        self.require_token(request)
        if not self.repo().remove(args["name"]):
            raise NotFound(f"no watchlist named {args['name']!r}")
        logger.info("watchlist removed", extra={"stage": "serve", "watchlist": args["name"]})
        return Response(status=204, body=b"", content_type=JSON)

    def api_alerts(self, request: Request, _args: dict[str, str]) -> Response:
        name = params.one(request.query, "watchlist")
        limit = params.integer(request.query, "limit", default=50, low=1, high=500)
        if self.alerts is None:
            raise HttpError(503, "the alert ledger is not available on this server")
        return json_response({"alerts": [a.to_dict() for a in self.alerts.recent(name, limit)]})


_BODY_TYPES: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "name": ("a string", lambda v: isinstance(v, str)),
    "query": ("a string", lambda v: isinstance(v, str)),
    "lang": ("a string or null", lambda v: v is None or isinstance(v, str)),
    "source": ("a string or null", lambda v: v is None or isinstance(v, str)),
    "secret": ("a string", lambda v: isinstance(v, str)),
    "webhooks": ("a list of strings", lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v)),
    "emails": ("a list of strings", lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v)),
    "slack": ("true or false", lambda v: isinstance(v, bool)),
    "mode": ("a string", lambda v: isinstance(v, str)),
    "every": ("a string", lambda v: isinstance(v, str)),
}


def check_watchlist_body(data: dict[str, Any]) -> None:
    """Field names and JSON types of a POSTed watchlist (values are checked by ``Watchlist.validate``)."""
    unknown = sorted(set(data) - openapi.WATCHLIST_INPUT_FIELDS)
    if unknown:
        raise BadRequest(f"request body: unknown field(s) {', '.join(map(repr, unknown))}")
    for key in ("name", "query"):
        if key not in data:
            raise BadRequest(f"request body: field {key!r} is required")
    for key, value in data.items():
        expected, ok = _BODY_TYPES[key]
        if not ok(value):
            raise BadRequest(f"request body: field {key!r} must be {expected}, got {json.dumps(value)[:80]}")


def _lenient(query: Params) -> SearchParams | None:
    """Best-effort parameters to refill the form after a bad request (the query text kept as typed)."""
    q = query.get("q", [""])[0][: params.MAX_QUERY_CHARS]
    return SearchParams(request=SearchRequest(query=q), view="stories", after=None)


def parse_request(method: str, raw_path: str, headers: Mapping[str, str], body: bytes) -> Request:
    """A :class:`Request` from the raw request line parts (query string parsed, header names lower-cased)."""
    path, _, query = raw_path.partition("?")
    return Request(
        method=method.upper(),
        path=path or "/",
        query=parse_qs(query, keep_blank_values=True),
        headers={k.lower(): v for k, v in headers.items()},
        body=body,
    )
