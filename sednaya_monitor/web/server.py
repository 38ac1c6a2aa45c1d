"""HTTP plumbing of ``serve``: a stdlib ``ThreadingHTTPServer`` in front of :class:`~sednaya_monitor.web.app.App`.

The standard library is enough for a loopback analyst page: one thread per request, no framework to
keep up to date. :func:`make_server` binds (``settings.serve_host``/``serve_port`` unless given; port
0 picks a free one) and :func:`serve_in_thread` runs it in a daemon thread for tests and ``demo``.
Requests are counted in ``sednaya_http_requests_total{route,method,status}`` and timed in
``sednaya_http_request_duration_seconds{route}`` on the process registry (route names, never paths).
"""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import ClassVar, Protocol, Self

from prometheus_client import CollectorRegistry, Counter, Histogram

from indexer.ledger import AlertLedger
from indexer.store import SearchStore
from indexer.watchlists import WatchlistRepository, open_watchlists
from sednaya_monitor.web.alerts import LedgerAlertLog
from sednaya_monitor.web.app import MAX_BODY_BYTES, AlertLog, App, Response, json_response, parse_request
from stream.metrics import LATENCY_BUCKETS, Metrics
from stream.settings import Settings

logger = logging.getLogger(__name__)


class Closable(Protocol):
    def close(self) -> None: ...


READ_TIMEOUT_S = 30.0  # a client that sends nothing for 30 s loses its connection (and its thread)


class HttpMetrics:
    """Request counter and latency histogram of the web server, one pair per registry."""

    _by_registry: ClassVar[weakref.WeakKeyDictionary[CollectorRegistry, HttpMetrics]] = weakref.WeakKeyDictionary()
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "sednaya_http_requests_total",
            "HTTP requests answered by the search page and API, by route, method and status.",
            ["route", "method", "status"],
            registry=registry,
        )
        self.seconds = Histogram(
            "sednaya_http_request_duration_seconds",
            "Time to answer an HTTP request, by route.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )

    @classmethod
    def on(cls, registry: CollectorRegistry) -> HttpMetrics:
        """The instance registered on ``registry`` (created once: a second server reuses it)."""
        with cls._lock:
            found = cls._by_registry.get(registry)
            if found is None:
                found = cls(registry)
                cls._by_registry[registry] = found
            return found


class WebServer(ThreadingHTTPServer):
    """A ``ThreadingHTTPServer`` that carries the app; ``url`` is where it listens."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self, address: tuple[str, int], app: App, http_metrics: HttpMetrics, *, owned: Sequence[Closable] = ()
    ) -> None:
        self.app = app
        self.http_metrics = http_metrics
        self._owned = list(owned)
        super().__init__(address, _Handler)

    def server_close(self) -> None:
        """Close the socket and what :func:`make_server` opened for this server (ledger, watchlists)."""
        super().server_close()
        for item in self._owned:
            item.close()
        self._owned.clear()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        name = host.decode() if isinstance(host, bytes) else str(host)
        shown = f"[{name}]" if ":" in name else name
        return f"http://{shown}:{port}"


class _Handler(BaseHTTPRequestHandler):
    server: WebServer
    protocol_version = "HTTP/1.1"
    server_version = "SednayaMonitor/0.1"
    timeout = READ_TIMEOUT_S

    def do_GET(self) -> None:
        self._serve("GET")

    def do_HEAD(self) -> None:
        self._serve("HEAD")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def __getattr__(self, name: str) -> Callable[[], None]:
        """Any other method (PUT, TRACE, QUERY, ...) goes to the app, which answers 405 with ``Allow``.

        The stdlib answers unknown methods with 501, a server error; a client's odd method is not one.
        """
        if name.startswith("do_") and name[3:].isalpha():
            method = name[3:]
            return lambda: self._serve(method)
        raise AttributeError(name)

    def _serve(self, method: str) -> None:
        started = time.perf_counter()
        route = "unknown"
        response: Response
        length_header = self.headers.get("Content-Length", "0") or "0"
        try:
            length = int(length_header)
        except ValueError:
            length = -1
        if self.headers.get("Transfer-Encoding"):
            response = json_response(
                {"error": "chunked request bodies are not accepted: send Content-Length", "status": 411}, 411
            )
            self.close_connection = True  # the unread body must not be taken for the next request
        elif length < 0:
            response = json_response({"error": f"Content-Length {length_header!r} is not a size", "status": 400}, 400)
            self.close_connection = True
        elif length > MAX_BODY_BYTES:
            response = json_response(
                {"error": f"request body of {length} bytes is over the limit of {MAX_BODY_BYTES}", "status": 413}, 413
            )
            self.close_connection = True
        else:
            body = self.rfile.read(length) if length else b""
            request = parse_request(method, self.path, dict(self.headers.items()), body)
            route, response = self.server.app.handle(request)
        self._send(response, head=method == "HEAD")
        metrics = self.server.http_metrics
        metrics.requests.labels(route=route, method=method, status=str(response.status)).inc()
        metrics.seconds.labels(route=route).observe(time.perf_counter() - started)

    def _send(self, response: Response, *, head: bool) -> None:
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Cache-Control", "no-store")
        for name, value in response.headers.items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if not head and response.body:
            self.wfile.write(response.body)

    def log_message(self, format: str, *args: object) -> None:  # stdlib signature
        logger.debug("http " + format, *args, extra={"stage": "serve"})


def make_server(
    settings: Settings,
    store: SearchStore,
    metrics: Metrics,
    *,
    host: str | None = None,
    port: int | None = None,
    watchlists: WatchlistRepository | None = None,
    alerts: AlertLog | None = None,
) -> WebServer:
    """Bind the web server (not yet serving).

    ``host``/``port`` default to ``settings.serve_host``/``settings.serve_port`` (127.0.0.1:8080);
    port 0 takes a free port (read it back from ``server.url``). ``watchlists`` defaults to the
    deployment's repository (``indexer.watchlists.open_watchlists``: SQLite in ``settings.data_dir``,
    or the Elasticsearch store); ``alerts`` defaults to the alert ledger there (both
    closed with the server).
    Raises ``OSError`` when the address is taken.
    """
    owned: list[Closable] = []
    if watchlists is None:
        repo = open_watchlists(settings)
        owned.append(repo)
        watchlists = repo
    if alerts is None:
        ledger = AlertLedger.in_data_dir(settings.data_dir)
        owned.append(ledger)
        alerts = LedgerAlertLog(ledger, watchlists, settings.public_url)
    app = App(settings, store, metrics, watchlists=watchlists, alerts=alerts)
    bind_host = settings.serve_host if host is None else host
    bind_port = settings.serve_port if port is None else port
    try:
        server = WebServer((bind_host, bind_port), app, HttpMetrics.on(metrics.registry), owned=owned)
    except OSError:
        for item in owned:
            item.close()
        raise
    logger.info("web server bound", extra={"stage": "serve", "url": server.url})
    if not _is_loopback(bind_host):
        logger.warning(
            "serving beyond loopback: the search page has no login; put it behind an authenticating proxy",
            extra={"stage": "serve", "url": server.url},
        )
    return server


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


class RunningServer:
    """A :class:`WebServer` serving in a daemon thread; ``stop()`` (or leaving the ``with``) shuts it down."""

    def __init__(self, server: WebServer) -> None:
        self.server = server
        self.thread = threading.Thread(target=server.serve_forever, name="sednaya-web", daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return self.server.url

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def serve_in_thread(
    settings: Settings,
    store: SearchStore,
    metrics: Metrics,
    *,
    host: str | None = None,
    port: int | None = None,
    watchlists: WatchlistRepository | None = None,
    alerts: AlertLog | None = None,
) -> RunningServer:
    """:func:`make_server` and serve it in a daemon thread. Use as a context manager or call ``stop()``."""
    server = make_server(settings, store, metrics, host=host, port=port, watchlists=watchlists, alerts=alerts)
    return RunningServer(server)
