"""The web application: FastAPI routes for the pages and the JSON API (no sockets here, see ``server.py``).

:func:`create_app` takes the collaborators (settings, search store, watchlist repository, alert log,
metrics) and returns an ASGI application. Route handlers are plain functions (``def``), so FastAPI
runs them in its worker threads; they share one store (the embedded store reads on a SQLite
connection per thread: no global lock), and repeated searches are answered from the
:class:`~sednaya_monitor.web.answer_cache.AnswerCache` while the data is unchanged. Errors map to statuses
in one place: :class:`HttpError` (4xx with its message), validation errors (400 naming the
parameter or body field), ``QuerySyntaxError``, ``QueryRefusedError`` (a query the store refuses) and
``WatchlistError`` (400 naming the position, query or field), anything else 500 (logged, no details
leaked). API errors are JSON ``{"error", "status"}``, page errors an HTML page.
"""

from __future__ import annotations

import csv
import dataclasses
import hmac
import io
import logging
import re
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime
from typing import Annotated, Any, Protocol

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from indexer.alerting.delivery import check_targets
from indexer.alerting.watchlists import Watchlist, WatchlistRepository, new_secret
from indexer.errors import QueryRefusedError, QuerySyntaxError, WatchlistError
from indexer.query import parse as parse_query
from indexer.store import Hit, SearchRequest, SearchResult, SearchStore, StoryGroup
from sednaya_monitor.prometheus_metrics import PrometheusMetrics
from sednaya_monitor.settings import Settings
from sednaya_monitor.web import models, pages, params
from sednaya_monitor.web.answer_cache import AnswerCache
from sednaya_monitor.web.errors import BadRequest, HttpError, NotFound
from sednaya_monitor.web.models import (
    AlertsQuery,
    ArticlesQuery,
    SearchQuery,
    StoriesQuery,
    WatchlistInput,
    body_message,
    parameter_message,
)
from sednaya_monitor.web.params import SearchParams
from sednaya_monitor.wiring import channel_config, make_raw_store
from stream.article import Article
from stream.story import Story
from stream.text import clean_text

logger = logging.getLogger(__name__)

CHART_LANGS = 6  # languages drawn in the volume chart; the rest are drawn together as "other"
CHART_STORIES = 2000  # stories read for the "new stories per day" chart
RECENT_ALERTS = 10  # alerts listed per watchlist on the watchlists page
OPTIONS_TTL_S = 30.0  # the filter drop-downs (facets over every article) are recomputed at most this often
STORY_SCAN = 5000  # stories read when the stories list is filtered (the store filters only by date)
CSV_MAX_ROWS = 10_000  # rows of a CSV export (metadata and URLs, no text)
CSV_PAGE = 500  # articles read per store call while exporting
HTML = "text/html; charset=utf-8"
# Pages are self-contained: no scripts at all, inline styles only, forms post back to us.
HTML_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; "
    "base-uri 'none'; frame-ancestors 'none'"
)
# A stored raw copy is someone else's page: shown sandboxed (no scripts, no same-origin, no fetches).
RAW_CSP = "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
CSV_COLUMNS = (
    "id", "published", "fetched_at", "lang", "source", "source_type", "story_id", "story_role", "duplicate_of",
    "title", "url", "canonical_url", "authors", "score",
)  # fmt: skip


class AlertLog(Protocol):
    """Where the pages read recent alerts from (the alert ledger)."""

    def recent(self, watchlist: str | None, limit: int) -> list[pages.AlertView]:
        """Newest first; all watchlists when ``watchlist`` is None."""

    def atom(self, watchlist: Watchlist, limit: int) -> bytes:
        """The Atom feed of ``watchlist``'s recent alerts."""


def bearer_of(request: Request) -> HTTPAuthorizationCredentials | None:
    """The request's ``Authorization: Bearer`` credentials, if any, read without declaring the route
    secured (read routes answer everyone; the token only unmasks watchlist targets)."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return HTTPAuthorizationCredentials(scheme="Bearer", credentials=token.strip())


def expanded_dict(result: SearchResult) -> dict[str, list[str]]:
    """The name variants a search added, by the word typed (``SearchResult.expanded``), as JSON."""
    return {typed: list(added) for typed, added in result.expanded.items()}


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


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(data, status_code=status, headers=headers)


def html_response(body: bytes, status: int = 200) -> HTMLResponse:
    return HTMLResponse(body, status_code=status, headers={"Content-Security-Policy": HTML_CSP})


class Web:
    """The collaborators and the logic behind the routes (one per application)."""

    def __init__(
        self,
        settings: Settings,
        store: SearchStore,
        metrics: PrometheusMetrics,
        *,
        watchlists: WatchlistRepository | None,
        alerts: AlertLog | None,
    ) -> None:
        self.settings = settings
        self.store = store  # shared by the worker threads (the embedded store reads on a connection per thread)
        self.answers = AnswerCache(store, settings.serve_cache_entries, metrics.registry)
        self.metrics = metrics
        self.watchlists = watchlists
        self.alerts = alerts
        self.raw_store = make_raw_store(settings)
        self._options: tuple[float, pages.FilterOptions] | None = None

    def search(self, request: SearchRequest) -> SearchResult:
        """``store.search`` (through the answer cache); a cursor the store cannot use (``ValueError``)
        becomes a 400 naming ``after``."""
        try:
            return self.answers.get(("search", request), lambda: self.store.search(request))
        except (QuerySyntaxError, QueryRefusedError):
            raise
        except ValueError as exc:
            if request.search_after is None:
                raise
            raise BadRequest(f"parameter 'after': {exc}") from None

    def filter_options(self) -> pages.FilterOptions:
        """The drop-down values (facets over every article), cached for OPTIONS_TTL_S."""
        cached = self._options
        if cached is not None and time.monotonic() - cached[0] < OPTIONS_TTL_S:
            return cached[1]
        facets = self.search(SearchRequest(size=1, facets=True)).facets
        options = pages.FilterOptions(
            langs=facets.get("lang", []), sources=facets.get("source", []), source_types=facets.get("source_type", [])
        )
        self._options = (time.monotonic(), options)
        return options

    def volume(self, request: SearchRequest) -> dict[date, dict[str, int]]:
        """Articles matching ``request`` per day and language: one store call (``day_lang_counts``).

        The CHART_LANGS languages with most articles are drawn apart, the rest as ``other``. A store
        without ``day_lang_counts`` is asked once per language (facets), as the protocol allows.
        """
        base = dataclasses.replace(request, size=1, search_after=None, facets=True, highlight=False, by_story=False)
        counts = getattr(self.store, "day_lang_counts", None)
        rows: list[tuple[str, str, int]] = []
        if counts is not None:
            rows = self.answers.get(("day_lang_counts", base), lambda: counts(base))
        else:
            langs = [request.lang] if request.lang else [v for v, _ in self.search(base).facets.get("lang", [])]
            for lang in langs[:CHART_LANGS]:
                facet = self.search(dataclasses.replace(base, lang=lang)).facets.get("day", [])
                rows += [(day, lang, n) for day, n in facet]
        totals: dict[str, int] = defaultdict(int)
        for _day, lang, n in rows:
            totals[lang] += n
        top = set(sorted(totals, key=lambda x: (-totals[x], x))[:CHART_LANGS])
        out: dict[date, dict[str, int]] = {}
        last_key: str | None = None
        slot: dict[str, int] | None = None
        for key, lang, n in rows:  # rows come day by day: each day's key is parsed once, not once per language
            if key != last_key:
                last_key = key
                try:
                    slot = out.setdefault(date.fromisoformat(key[:10]), {})
                except ValueError:
                    slot = None
            if slot is not None:
                shown = lang if lang in top else "other"
                slot[shown] = slot.get(shown, 0) + n
        return out

    def has_raw(self, sha: str) -> bool:
        """Whether the crawlers kept the page of content hash ``sha`` (``crawlers.raw_store`` layout)."""
        return bool(_SHA256.match(sha)) and self.raw_store.has(sha)

    def has_token(self, credentials: HTTPAuthorizationCredentials | None) -> bool:
        """The request carries the valid API token (read endpoints then show watchlist targets in full)."""
        try:
            self.require_token(credentials)
        except HttpError:
            return False
        return True

    def require_token(self, credentials: HTTPAuthorizationCredentials | None) -> None:
        """Write endpoints: ``Authorization: Bearer <settings.api_token>``; refused outright when no token is set."""
        if not self.settings.api_token:
            raise HttpError(403, "write endpoints are disabled: set api_token (SEDNAYA_MONITOR_API_TOKEN) to enable")
        if credentials is None or not credentials.credentials:
            raise HttpError(
                401, "missing 'Authorization: Bearer <token>' header", headers={"WWW-Authenticate": "Bearer"}
            )
        token = credentials.credentials.strip().encode("utf-8")
        if not hmac.compare_digest(token, self.settings.api_token.encode("utf-8")):
            raise HttpError(401, "the bearer token is not valid", headers={"WWW-Authenticate": "Bearer"})

    def repo(self) -> WatchlistRepository:
        if self.watchlists is None:
            raise HttpError(503, "watchlists are not available on this server")
        return self.watchlists

    def stories(self, query: StoriesQuery) -> list[Story]:
        """Stories newest ``last_seen`` first, filtered by language and minimum sources/languages."""
        filtered = query.lang is not None or query.min_sources > 1 or query.min_languages > 1
        found = self.store.list_stories(since=query.since, limit=STORY_SCAN if filtered else query.limit)
        out = [
            s
            for s in found
            if (query.lang is None or query.lang in s.languages)
            and s.source_count >= query.min_sources
            and len(s.languages) >= query.min_languages
        ]
        return out[: query.limit]

    def story(self, story_id: str) -> tuple[Story, list[Article], list[Story]]:
        """The story, its articles oldest first, and the stories merged into it (three store calls)."""
        store = self.store
        story = store.get_story(story_id)
        if story is None:
            raise NotFound(f"no story {story_id!r}")
        articles = store.story_articles(story_id)
        merged_of = getattr(store, "merged_stories", None)
        merged: list[Story] = merged_of(story_id) if merged_of is not None else []
        return story, articles, merged


def _lenient(query: Request) -> SearchParams:
    """Best-effort parameters to refill the form after a bad request (the query text kept as typed)."""
    q = query.query_params.get("q", "")[: models.MAX_QUERY_CHARS]
    return SearchParams(request=SearchRequest(query=q), view="stories", after=None)


def _multi(request: Request) -> dict[str, list[str]]:
    out: dict[str, list[str]] = defaultdict(list)
    for key, value in request.query_params.multi_items():
        out[key].append(value)
    return out


def single_values(request: Request) -> None:
    """Dependency of every API route: a query parameter given twice is refused (400 naming it)."""
    params.single(_multi(request))


BEARER = HTTPBearer(auto_error=False, description="The token of settings api_token")


def require_writer(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)]
) -> None:
    """Dependency of the write routes (resolved before the body is read): the bearer token."""
    web: Web = request.app.state.web
    web.require_token(credentials)


def arrivals(articles: Sequence[Article]) -> list[dict[str, Any]]:
    return [
        {
            "lang": a.lang,
            "first_published": a.when.isoformat().replace("+00:00", "Z"),
            "after_first_s": a.after_s,
            "article_id": a.article.id,
            "source": a.article.source,
            "articles": a.count,
        }
        for a in pages.language_arrivals(articles)
    ]


def csv_cell(value: object) -> str:
    """A CSV cell: Unicode hygiene, and a leading ``'`` before ``= + - @`` so spreadsheets never run it."""
    text = clean_text("" if value is None else str(value))
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def csv_rows(web: Web, request: SearchRequest) -> Iterator[bytes]:
    """The CSV export: a header, then one row per matching article (pages of CSV_PAGE, up to CSV_MAX_ROWS)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    page = dataclasses.replace(request, size=CSV_PAGE, by_story=False, highlight=False, facets=False)
    written = 0
    while True:
        result = web.search(page)
        for hit in result.hits[: CSV_MAX_ROWS - written]:
            a = hit.article
            writer.writerow(
                [
                    csv_cell(x)
                    for x in (
                        a.id,
                        (a.published or a.fetched_at).isoformat().replace("+00:00", "Z"),
                        a.fetched_at.isoformat().replace("+00:00", "Z"),
                        a.lang,
                        a.source,
                        a.extra.get("source_type", ""),
                        a.story_id,
                        a.story_role,
                        a.duplicate_of,
                        a.title,
                        a.url,
                        a.canonical_url,
                        "; ".join(a.authors),
                        f"{hit.score:.4f}",
                    )
                ]
            )
            written += 1
        yield buffer.getvalue().encode("utf-8")
        buffer.seek(0)
        buffer.truncate()
        if result.next_after is None or written >= CSV_MAX_ROWS or not result.hits:
            return
        page = dataclasses.replace(page, search_after=result.next_after)


def allowed_methods(app: FastAPI, path: str) -> str:
    """``Allow`` for ``path``: the methods of every route on it (GET implies HEAD, answered by the server)."""
    methods: set[str] = set()
    for route in app.routes:
        regex = getattr(route, "path_regex", None)
        if regex is not None and regex.match(path):
            methods |= set(getattr(route, "methods", ()) or ())
    if "GET" in methods:
        methods.add("HEAD")
    return ", ".join(sorted(methods))


def error_response(
    request: Request,
    status: int,
    message: str,
    *,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> Response:
    """JSON ``{"error", "status"}`` under ``/api/``, the error page elsewhere."""
    if request.url.path.startswith("/api/"):
        return json_response({"error": message, "status": status, **(extra or {})}, status, headers)
    response = html_response(pages.render_error(status, message), status)
    response.headers.update(headers or {})
    return response


def create_app(
    settings: Settings,
    store: SearchStore,
    metrics: PrometheusMetrics,
    *,
    watchlists: WatchlistRepository | None = None,
    alerts: AlertLog | None = None,
) -> FastAPI:
    """The ASGI application of ``serve`` (pages, API, ``/metrics``, ``/healthz``); ``app.state.web`` holds the logic."""
    web = Web(settings, store, metrics, watchlists=watchlists, alerts=alerts)
    app = FastAPI(
        title="Sednaya Monitor API",
        version="1",
        description="Search the coverage of Sednaya prison, its stories, watchlists and alerts.",
        openapi_url="/api/openapi.json",
        docs_url=None,
        redoc_url=None,
        redirect_slashes=False,
        servers=[{"url": settings.public_url.rstrip("/") or "/"}],
    )
    app.state.web = web
    api_errors: dict[int | str, dict[str, Any]] = {400: {"model": models.Error, "description": "Refused input"}}
    not_found: dict[int | str, dict[str, Any]] = {404: {"model": models.Error, "description": "No such item"}}
    unavailable: dict[int | str, dict[str, Any]] = {503: {"model": models.Error, "description": "Not available"}}
    auth_errors: dict[int | str, dict[str, Any]] = {
        401: {"model": models.Error, "description": "No or wrong bearer token"},
        403: {"model": models.Error, "description": "Writes disabled: no api_token set"},
    }
    api = [Depends(single_values)]

    # --- errors ----------------------------------------------------------------------------------

    @app.exception_handler(HttpError)
    def _http_error(request: Request, exc: HttpError) -> Response:
        return error_response(request, exc.status, exc.message, headers=exc.headers)

    @app.exception_handler(QuerySyntaxError)
    def _query_error(request: Request, exc: QuerySyntaxError) -> Response:
        return error_response(request, 400, str(exc), extra={"position": exc.position, "token": exc.token})

    @app.exception_handler(QueryRefusedError)
    def _query_refused(request: Request, exc: QueryRefusedError) -> Response:
        return error_response(request, 400, str(exc))

    @app.exception_handler(WatchlistError)
    def _watchlist_error(request: Request, exc: WatchlistError) -> Response:
        return error_response(request, 400, str(exc))

    @app.exception_handler(RequestValidationError)
    def _invalid(request: Request, exc: RequestValidationError) -> Response:
        errors = list(exc.errors())
        in_body = bool(errors) and errors[0].get("loc", ("",))[0] == "body"
        message = body_message(errors) if in_body else parameter_message(errors)
        return error_response(request, 400, message)

    @app.exception_handler(StarletteHTTPException)
    def _starlette(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404:
            return error_response(request, 404, f"no page at {request.url.path!r}")
        if exc.status_code == 405:
            allowed = allowed_methods(app, request.url.path)
            message = f"method {request.method} is not allowed on {request.url.path} (allowed: {allowed})"
            return error_response(request, 405, message, headers={"Allow": allowed})
        return error_response(request, exc.status_code, str(exc.detail), headers=dict(exc.headers or {}))

    @app.exception_handler(Exception)
    def _crash(request: Request, exc: Exception) -> Response:
        if isinstance(exc, ClientDisconnect):  # the client went away mid-request: not our failure
            return error_response(request, 400, "the client closed the connection")
        logger.error("request failed", exc_info=exc, extra={"url": request.url.path, "stage": "serve"})
        return error_response(request, 500, "internal error (logged on the server)")

    # --- pages -----------------------------------------------------------------------------------

    @app.get("/", name="page_search", include_in_schema=False)
    def page_search(request: Request) -> Response:
        """At most three store calls: filter options (cached), the search, the chart. The page of the
        same query string is kept with the store's answers (until the data changes)."""
        options = web.filter_options()

        def render() -> bytes:
            sp = params.search_params(_multi(request))
            # the page shows each hit's highlights; "why it matched" only where a hit has none (``explain``)
            result = web.search(dataclasses.replace(sp.request, explain=False))
            volume = web.volume(sp.request) if sp.after is None else None
            return pages.render_search(sp, result, options, volume=volume, default_size=models.DEFAULT_PAGE_SIZE)

        try:
            shown = (tuple(options.langs), tuple(options.sources), tuple(options.source_types))
            page = web.answers.get(("page", request.url.query, shown), render)
        except (BadRequest, QuerySyntaxError, QueryRefusedError) as exc:
            message = exc.message if isinstance(exc, BadRequest) else str(exc)
            return html_response(pages.render_search(_lenient(request), None, options, error=message), 400)
        return html_response(page)

    @app.get("/search.csv", name="search_csv", include_in_schema=False)
    def search_csv(request: Request) -> Response:
        """The search as CSV (metadata and URLs of every matching article, up to CSV_MAX_ROWS)."""
        sp = params.search_params(_multi(request), default_view="flat")
        first = web.search(dataclasses.replace(sp.request, size=1, by_story=False, highlight=False))  # 400s now
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        return StreamingResponse(
            csv_rows(web, sp.request),
            media_type="text/csv; charset=utf-8",
            headers={
                "Content-Disposition": f'attachment; filename="sednaya-search-{stamp}.csv"',
                "X-Total-Count": str(first.total),
            },
        )

    @app.get("/stories", name="page_stories", include_in_schema=False)
    def page_stories(request: Request) -> Response:
        raw = params.single(_multi(request))
        options = web.filter_options()
        try:
            query = params.parse_model(StoriesQuery, _multi(request))
        except BadRequest as exc:
            return html_response(pages.render_stories([], langs=options.langs, filters=raw, error=exc.message), 400)
        filters = {**query.model_dump(), "since": query.since.date().isoformat() if query.since else ""}
        page = pages.render_stories(web.stories(query), langs=options.langs, filters=filters)
        return html_response(page)

    @app.get("/stories/{story_id}", name="page_story", include_in_schema=False)
    def page_story(story_id: str) -> Response:
        story, articles, merged = web.story(story_id)
        raw = {a.id: web.has_raw(a.content_sha256) for a in articles}
        return html_response(pages.render_story(story, articles, raw, merged=merged))

    @app.get("/timeline", name="page_timeline", include_in_schema=False)
    def page_timeline(request: Request) -> Response:
        options = web.filter_options()
        try:
            sp = params.search_params(_multi(request))
            volume = web.volume(sp.request)
        except (BadRequest, QuerySyntaxError, QueryRefusedError) as exc:
            message = exc.message if isinstance(exc, BadRequest) else str(exc)
            return html_response(pages.render_timeline(_lenient(request), options, {}, {}, error=message), 400)
        stories = web.store.list_stories(since=sp.request.since, limit=CHART_STORIES)
        new: dict[date, dict[str, int]] = defaultdict(dict)
        for s in stories:
            day = s.first_seen.date()
            new[day]["stories"] = new[day].get("stories", 0) + 1
        return html_response(pages.render_timeline(sp, options, volume, dict(new)))

    @app.get("/watchlists", name="page_watchlists", include_in_schema=False)
    def page_watchlists() -> Response:
        watchlists = web.watchlists.all() if web.watchlists is not None else []
        return _watchlists_page(watchlists)

    @app.get("/watchlists/{name}", name="page_watchlist", include_in_schema=False)
    def page_watchlist(name: str) -> Response:
        found = web.repo().get(name)
        if found is None:
            raise NotFound(f"no watchlist named {name!r}")
        return _watchlists_page([found])

    def _watchlists_page(watchlists: Sequence[Watchlist]) -> Response:
        recent: dict[str, Sequence[pages.AlertView]] = {}
        if web.alerts is not None:
            for w in watchlists:
                recent[w.name] = web.alerts.recent(w.name, RECENT_ALERTS)
        return html_response(pages.render_watchlists(watchlists, recent, alerts_available=web.alerts is not None))

    @app.get("/watchlists/{name}/atom.xml", name="atom", include_in_schema=False)
    def atom(name: str) -> Response:
        watchlist = web.repo().get(name)
        if watchlist is None:
            raise NotFound(f"no watchlist named {name!r}")
        if web.alerts is None:
            raise HttpError(503, "the alert ledger is not available on this server")
        body = web.alerts.atom(watchlist, RECENT_ALERTS * 5)
        return Response(body, media_type="application/atom+xml; charset=utf-8")

    @app.get("/raw/{sha}", name="raw", include_in_schema=False)
    def raw_copy(sha: str) -> Response:
        body = web.raw_store.get(sha) if _SHA256.match(sha) else None
        if body is None:
            raise NotFound(f"no stored copy for content hash {sha!r}")
        # bytes as downloaded: no charset here, the page's own <meta charset> decides
        return Response(body, headers={"Content-Type": "text/html", "Content-Security-Policy": RAW_CSP})

    @app.get("/healthz", name="healthz", include_in_schema=False)
    def healthz() -> Response:
        try:
            count = web.store.count_articles()
        except Exception as exc:  # noqa: BLE001  # any store failure means unhealthy, reported as 503
            logger.warning("health check failed", extra={"stage": "serve", "reason": str(exc)})
            return json_response({"status": "red", "reason": f"search store: {exc}"}, 503)
        return json_response({"status": "green", "articles": count})

    @app.get("/metrics", name="metrics", include_in_schema=False)
    def metrics_page() -> Response:
        return Response(generate_latest(web.metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    # --- API -------------------------------------------------------------------------------------

    @app.get(
        "/api/search",
        name="api_search",
        operation_id="search",
        summary="Full-text search, flat or grouped by story",
        response_model=models.SearchResponse,
        responses=api_errors,
        dependencies=api,
    )
    def api_search(query: Annotated[SearchQuery, Query()]) -> Response:
        sp = params.to_search(query, default_view="flat")
        result = web.search(sp.request)
        return json_response(
            {
                "total": result.total,
                "view": sp.view,
                "hits": [hit_dict(h) for h in result.hits] if sp.view == "flat" else [],
                "groups": [group_dict(g) for g in result.groups] if sp.view == "stories" else [],
                "facets": {k: [{"value": v, "count": n} for v, n in items] for k, items in result.facets.items()},
                "next": params.encode_cursor(result.next_after),
                "expanded": expanded_dict(result),
            }
        )

    @app.get(
        "/api/stories",
        name="api_stories",
        operation_id="listStories",
        summary="Stories, newest last_seen first, filtered by language and coverage",
        response_model=models.StoriesResponse,
        responses=api_errors,
        dependencies=api,
    )
    def api_stories(query: Annotated[StoriesQuery, Query()]) -> Response:
        return json_response({"stories": [s.to_dict() for s in web.stories(query)]})

    @app.get(
        "/api/stories/{story_id}",
        name="api_story",
        operation_id="getStory",
        summary="A story, its articles oldest first, its spread across languages and the stories merged into it",
        response_model=models.StoryResponse,
        responses={**api_errors, **not_found},
        dependencies=api,
    )
    def api_story(story_id: str) -> Response:
        story, articles, merged = web.story(story_id)
        return json_response(
            {
                "story": story.to_dict(),
                "articles": [a.to_dict() for a in articles],
                "languages": arrivals(articles),
                "merged": [m.to_dict() for m in merged],
            }
        )

    @app.get(
        "/api/articles",
        name="api_articles",
        operation_id="listArticles",
        summary="Stored articles, newest first (filters as in search, no query)",
        response_model=models.ArticlesResponse,
        responses=api_errors,
        dependencies=api,
    )
    def api_articles(request: Request, query: Annotated[ArticlesQuery, Query()]) -> Response:
        for name in ("q", "view", "sort", "facets"):
            if name in request.query_params:
                raise BadRequest(f"parameter {name!r} is not accepted here: use /api/search")
        sp = params.to_search(SearchQuery.model_validate(query.model_dump()), default_view="flat")
        listing = dataclasses.replace(sp.request, sort="date", highlight=False, by_story=False)
        result = web.search(listing)
        return json_response(
            {
                "total": result.total,
                "articles": [h.article.to_dict() for h in result.hits],
                "next": params.encode_cursor(result.next_after),
                "expanded": expanded_dict(result),
            }
        )

    @app.get(
        "/api/articles/{article_id}",
        name="api_article",
        operation_id="getArticle",
        summary="One stored article",
        response_model=models.ArticleResponse,
        responses={**api_errors, **not_found},
        dependencies=api,
    )
    def api_article(article_id: str) -> Response:
        article = web.store.get_article(article_id)
        if article is None:
            raise NotFound(f"no article {article_id!r}")
        return json_response({"article": article.to_dict()})

    @app.get(
        "/api/watchlists",
        name="api_watchlists",
        operation_id="listWatchlists",
        summary="Every watchlist (secrets left out)",
        response_model=models.WatchlistsResponse,
        responses={**api_errors, **unavailable},
        dependencies=api,
    )
    def api_watchlists(request: Request) -> Response:
        """Targets in full for a valid bearer token only; masked otherwise (``Watchlist.masked``)."""
        full = web.has_token(bearer_of(request))
        return json_response({"watchlists": [w.to_dict() if full else w.masked() for w in web.repo().all()]})

    @app.post(
        "/api/watchlists",
        name="api_watchlist_add",
        operation_id="addWatchlist",
        summary="Add a watchlist (needs the bearer token)",
        status_code=201,
        response_model=models.WatchlistResponse,
        responses={
            **api_errors,
            **auth_errors,
            **unavailable,
            409: {"model": models.Error, "description": "A watchlist of that name exists"},
            411: {"model": models.Error, "description": "Chunked bodies are refused: send Content-Length"},
            413: {"model": models.Error, "description": "Body over the size limit"},
        },
        dependencies=[*api, Depends(require_writer)],
    )
    def api_watchlist_add(body: WatchlistInput) -> Response:
        repo = web.repo()
        data = body.model_dump(exclude_none=True)
        if data.get("webhooks") and not data.get("secret"):
            data["secret"] = new_secret()
        watchlist = Watchlist.from_dict(data)
        watchlist.validate()
        # webhooks to private/metadata addresses -> 400 unless allowed
        check_targets(watchlist, channel_config(web.settings))
        parse_query(watchlist.query)  # QuerySyntaxError -> 400 naming the position, before anything is stored
        if repo.get(watchlist.name) is not None:
            raise HttpError(409, f"watchlist {watchlist.name!r} already exists (DELETE it first)")
        repo.add(watchlist)
        logger.info("watchlist added", extra={"stage": "serve", "watchlist": watchlist.name})
        return json_response(
            {"watchlist": watchlist.to_dict(with_secret=True)}, 201, {"Location": f"/api/watchlists/{watchlist.name}"}
        )

    @app.get(
        "/api/watchlists/{name}",
        name="api_watchlist",
        operation_id="getWatchlist",
        summary="One watchlist",
        response_model=models.WatchlistResponse,
        responses={**api_errors, **not_found, **unavailable},
        dependencies=api,
    )
    def api_watchlist(name: str, request: Request) -> Response:
        found = web.repo().get(name)
        if found is None:
            raise NotFound(f"no watchlist named {name!r}")
        return json_response({"watchlist": found.to_dict() if web.has_token(bearer_of(request)) else found.masked()})

    @app.delete(
        "/api/watchlists/{name}",
        name="api_watchlist_remove",
        operation_id="removeWatchlist",
        summary="Remove a watchlist (needs the bearer token)",
        status_code=204,
        response_class=Response,
        responses={**api_errors, **auth_errors, **not_found, **unavailable},
        dependencies=[*api, Depends(require_writer)],
    )
    def api_watchlist_remove(name: str) -> Response:
        if not web.repo().remove(name):
            raise NotFound(f"no watchlist named {name!r}")
        logger.info("watchlist removed", extra={"stage": "serve", "watchlist": name})
        return Response(status_code=204)

    @app.get(
        "/api/alerts",
        name="api_alerts",
        operation_id="listAlerts",
        summary="Recent alerts, newest first",
        response_model=models.AlertsResponse,
        responses={**api_errors, **unavailable},
        dependencies=api,
    )
    def api_alerts(query: Annotated[AlertsQuery, Query()]) -> Response:
        if web.alerts is None:
            raise HttpError(503, "the alert ledger is not available on this server")
        return json_response({"alerts": [a.to_dict() for a in web.alerts.recent(query.watchlist, query.limit)]})

    original_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        """FastAPI's document without its 422 answers: validation errors are 400 here (``Error``)."""
        if app.openapi_schema is None:
            doc = original_openapi()
            for operations in doc.get("paths", {}).values():
                for operation in operations.values():
                    operation.get("responses", {}).pop("422", None)
            schemas = doc.get("components", {}).get("schemas", {})
            schemas.pop("HTTPValidationError", None)
            schemas.pop("ValidationError", None)
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
