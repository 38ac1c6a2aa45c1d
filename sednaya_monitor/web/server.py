"""HTTP serving of ``serve``: uvicorn in front of the FastAPI app of ``app.py``, hardened for the open web.

:func:`make_server` binds the listening socket (``settings.serve_host``/``serve_port`` unless given;
port 0 picks a free one; backlog BACKLOG) and :func:`serve_in_thread` runs it in a thread for tests;
:func:`serve_until_signalled` runs it until SIGINT or SIGTERM (``serve`` and ``demo``).

Around the app, from the outside in:

- :class:`Observe`: HEAD answered as GET without the body, security headers on every answer
  (``nosniff``, ``no-referrer``, ``no-store``, the page CSP), request metrics
  ``sednaya_http_requests_total{route,method,status}`` and
  ``sednaya_http_request_duration_seconds{route}`` (route names, never paths), and a 503 for an
  answer not started within ``serve_request_timeout_s``;
- :class:`AllowedHosts`: the ``Host`` header must be a loopback name, the host of ``public_url`` or
  one of ``serve_allowed_hosts`` (DNS rebinding cannot reach the API);
- :class:`BodyLimit`: ``Content-Length`` over ``serve_max_body_bytes`` is 413, chunked bodies 411,
  both before a byte of the body is read, with the connection closed.

uvicorn runs with no ``Server`` banner, its own logging off (our logger gets one line per failure,
never a traceback for a client that went away), asyncio's transports (TCP_NODELAY, one write per
answer) and :class:`GuardedH11Protocol`, which drops a connection whose request does not arrive in
full within ``serve_request_read_s`` (slow or cut-off headers and bodies are never executed).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import os
import select
import signal
import socket
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from types import FrameType, TracebackType
from typing import Any, ClassVar, Protocol, Self
from urllib.parse import urlsplit

import h11
import uvicorn
from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from indexer.alerting.watchlists import WatchlistRepository
from indexer.store import SearchStore
from sednaya_monitor.prometheus_metrics import LATENCY_BUCKETS, PrometheusMetrics
from sednaya_monitor.settings import Settings
from sednaya_monitor.web.alert_feeds import LedgerAlertLog
from sednaya_monitor.web.app import HTML_CSP, AlertLog, create_app
from sednaya_monitor.wiring import make_ledger, make_watchlists

logger = logging.getLogger(__name__)

WORKER_START_S = 30.0  # how long serve --workers waits for its workers to listen before it says where
BACKLOG = 1024  # pending connections the kernel queues (a burst of clients never waits for a SYN retry)
MAX_HEADER_BYTES = 16 * 1024  # request line and headers; beyond it h11 refuses the request
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
SHUTDOWN_GRACE_S = 5  # open requests get this long to finish on stop


class Closable(Protocol):
    def close(self) -> None: ...


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


# --- middleware --------------------------------------------------------------------------------------


def _json_error(status: int, message: str) -> tuple[list[tuple[bytes, bytes]], bytes]:
    body = json.dumps({"error": message, "status": status}, ensure_ascii=False).encode("utf-8")
    return [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())], body


async def _send_error(send: Send, status: int, message: str, *, close: bool = False) -> None:
    headers, body = _json_error(status, message)
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class Observe:
    """Security headers, request metrics, the answer deadline, and the last catch of a failed request."""

    def __init__(self, app: ASGIApp, metrics: HttpMetrics, *, timeout_s: float) -> None:
        self.app = app
        self.metrics = metrics
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        state: dict[str, Any] = {"status": 500, "started": False, "abandoned": False, "gone": False}
        first_byte = asyncio.Event()

        async def guarded_send(message: Message) -> None:
            if state["abandoned"]:
                return  # the deadline answered already; the late handler's answer goes nowhere
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
                state["started"] = True
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"server"]
                names = {k.lower() for k, _ in headers}
                headers += [
                    (name, value)
                    for name, value in (
                        (b"x-content-type-options", b"nosniff"),
                        (b"referrer-policy", b"no-referrer"),
                        (b"cache-control", b"no-store"),
                    )
                    if name not in names
                ]
                content_type = dict(headers).get(b"content-type", b"")
                if content_type.startswith(b"text/html") and b"content-security-policy" not in names:
                    headers.append((b"content-security-policy", HTML_CSP.encode()))
                message = {**message, "headers": headers}
                first_byte.set()
            with contextlib.suppress(OSError):  # the client went away: nothing to tell it
                await send(message)

        method = scope["method"]
        inner = dict(scope)  # the app sees HEAD as GET (every page and GET answer has a HEAD, body left out by uvicorn)
        if method == "HEAD":
            inner["method"] = "GET"

        async def watched_receive() -> Message:
            message = await receive()
            if message["type"] == "http.disconnect":
                state["gone"] = True
            return message

        task = asyncio.ensure_future(self.app(inner, watched_receive, guarded_send))
        waiter = asyncio.ensure_future(first_byte.wait())
        try:
            done, _pending = await asyncio.wait({task, waiter}, timeout=self.timeout_s, return_when="FIRST_COMPLETED")
            if not done:  # no answer started in time: say so now, let the worker finish in the background
                state["abandoned"] = True
                task.add_done_callback(_drain)
                state["status"] = 503
                await _send_error(
                    send, 503, f"the answer took longer than {self.timeout_s:g} s (serve_request_timeout_s)"
                )
                logger.warning(
                    "request timed out",
                    extra={"stage": "serve", "url": scope.get("path", ""), "timeout": self.timeout_s},
                )
            else:
                await task
        except Exception as exc:  # the app's 500 handler answered and logged it; never re-raise
            if state["gone"]:
                pass  # the client left mid-request: nothing to answer, nothing to log
            elif not state["started"]:
                state["status"] = 500
                await _send_error(send, 500, "internal error (logged on the server)")
                logger.error("request failed", exc_info=exc, extra={"stage": "serve", "url": scope.get("path", "")})
        finally:
            waiter.cancel()
            route = inner.get("route")
            status = 499 if state["gone"] else int(state["status"])  # 499: the client closed the request
            name = getattr(route, "name", None) or inner.get("sednaya_route") or "not_found"
            if status == 405:
                name = "method_not_allowed"
            self.metrics.requests.labels(route=name, method=method, status=str(status)).inc()
            self.metrics.seconds.labels(route=name).observe(time.perf_counter() - started)


def _drain(task: asyncio.Future[Any]) -> None:
    """Retrieve the outcome of an abandoned request (an exception there was already answered with 503)."""
    if not task.cancelled() and task.exception() is not None:
        logger.debug("abandoned request failed", extra={"stage": "serve", "reason": str(task.exception())})


def allowed_hosts(settings: Settings) -> tuple[str, ...]:
    """Loopback names, the host of ``public_url`` and ``serve_allowed_hosts`` (lower case)."""
    hosts = list(LOOPBACK_NAMES)
    public = urlsplit(settings.public_url).hostname
    if public:
        hosts.append(public)
    hosts += [h.strip() for h in settings.serve_allowed_hosts.split(",") if h.strip()]
    return tuple(dict.fromkeys(h.lower() for h in hosts))


def host_name(header: str) -> str:
    """The name of a ``Host`` header value without the port (``[::1]:80`` -> ``::1``)."""
    value = header.strip().lower()
    if value.startswith("["):
        return value[1:].partition("]")[0]
    return value.rpartition(":")[0] if value.count(":") == 1 else value


class AllowedHosts:
    """Refuses (400) a ``Host`` header outside the allowlist: a rebinding page cannot use our API."""

    def __init__(self, app: ASGIApp, hosts: Sequence[str]) -> None:
        self.app = app
        self.exact = {h for h in hosts if not h.startswith("*.")}
        self.suffixes = tuple(h[1:] for h in hosts if h.startswith("*."))

    def allowed(self, name: str) -> bool:
        return name in self.exact or (bool(self.suffixes) and name.endswith(self.suffixes))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            host = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"host"), "")
            if not self.allowed(host_name(host)):
                scope["sednaya_route"] = "bad_host"
                await _send_error(send, 400, f"Host header {host!r} is not allowed (settings serve_allowed_hosts)")
                return
        await self.app(scope, receive, send)


class BodyLimit:
    """413 for a declared body over ``limit``, 411 for chunked bodies; the body is never read first."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = dict(scope["headers"])
            if b"transfer-encoding" in headers:
                await _send_error(send, 411, "chunked request bodies are not accepted: send Content-Length", close=True)
                return
            length = int(headers.get(b"content-length", b"0") or b"0")  # h11 has checked it is a number
            if length > self.limit:
                await _send_error(
                    send, 413, f"request body of {length} bytes is over the limit of {self.limit}", close=True
                )
                return
        await self.app(scope, receive, send)


def wrap(app: FastAPI, settings: Settings, metrics: HttpMetrics) -> ASGIApp:
    """The app inside its guards (see the module docstring)."""
    inner: ASGIApp = BodyLimit(app, settings.serve_max_body_bytes)
    inner = AllowedHosts(inner, allowed_hosts(settings))
    return Observe(inner, metrics, timeout_s=settings.serve_request_timeout_s)


# --- the HTTP protocol -----------------------------------------------------------------------------------


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a read deadline: a request must arrive in full within ``READ_S``.

    uvicorn limits idle keep-alive time but not how long a client may take to send one request, so a
    client could hold a connection by sending a header line a minute. Here the clock starts when the
    connection opens (and again after each answer) and stops when the whole request, body included,
    has arrived; when it runs out the connection is closed without an answer. A request that is cut
    off never reaches the app (h11 hands it over only complete).
    """

    READ_S: ClassVar[float] = 30.0
    _read_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        with contextlib.suppress(OSError):  # asyncio sets it for TCP already; say it, answers are one write
            sock = transport.get_extra_info("socket")
            if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._arm()

    def _arm(self) -> None:
        self._disarm()
        self._read_deadline = self.loop.call_later(self.READ_S, self._read_timeout)

    def _disarm(self) -> None:
        if self._read_deadline is not None:
            self._read_deadline.cancel()
            self._read_deadline = None

    def _read_timeout(self) -> None:
        self._read_deadline = None
        if self.conn.their_state in (h11.IDLE, h11.SEND_BODY) and not self.transport.is_closing():
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state not in (h11.IDLE, h11.SEND_BODY):
            self._disarm()  # the request is in; the answer deadline is Observe's
        elif self._read_deadline is None and not self.transport.is_closing():
            self._arm()  # part of a request (uvicorn cancelled its keep-alive timer on this data): the clock runs

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._disarm()  # idle time between requests is uvicorn's keep-alive timeout

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)


def _protocol(settings: Settings) -> type[GuardedH11Protocol]:
    return type("SednayaH11Protocol", (GuardedH11Protocol,), {"READ_S": settings.serve_request_read_s})


# --- the server ----------------------------------------------------------------------------------------


class WebServer:
    """A bound listening socket and the uvicorn server that will serve it; ``url`` is where it listens."""

    def __init__(
        self, sock: socket.socket, app: FastAPI, settings: Settings, *, owned: Sequence[Closable] = ()
    ) -> None:
        self.socket = sock
        self.app = app
        self._owned = list(owned)
        metrics = HttpMetrics.on(app.state.web.metrics.registry)
        config = uvicorn.Config(
            wrap(app, settings, metrics),
            http=_protocol(settings),
            lifespan="off",
            log_config=None,
            access_log=False,
            server_header=False,
            date_header=True,
            backlog=BACKLOG,
            timeout_keep_alive=settings.serve_keep_alive_s,
            timeout_graceful_shutdown=SHUTDOWN_GRACE_S,
            limit_concurrency=settings.serve_max_connections,
            h11_max_incomplete_event_size=MAX_HEADER_BYTES,
        )
        self.server = uvicorn.Server(config)  # in a thread, uvicorn leaves signals alone: serve_until_signalled's job

    @property
    def server_address(self) -> tuple[str, int]:
        name = self.socket.getsockname()
        return str(name[0]), int(name[1])

    @property
    def url(self) -> str:
        host, port = self.server_address
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{port}"

    def serve_forever(self) -> None:
        """Serve in the calling thread until :meth:`shutdown` (uvicorn's own signal handling stays off)."""
        self.server.run(sockets=[self.socket])

    def shutdown(self) -> None:
        self.server.should_exit = True

    def server_close(self) -> None:
        """Close the socket and what :func:`make_server` opened (ledger, watchlists)."""
        self.socket.close()
        for item in self._owned:
            item.close()
        self._owned.clear()


def bind(host: str, port: int) -> socket.socket:
    """The listening socket (IPv6 when ``host`` has a colon), backlog BACKLOG."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host, port), family=family, backlog=BACKLOG)
    sock.set_inheritable(True)
    return sock


def reserve(host: str, port: int) -> socket.socket:
    """The address of ``serve --workers N``: where the kernel supports it (Linux), a socket bound with
    ``SO_REUSEPORT`` that does not listen; each worker then listens on a socket of its own bound to the same
    address (:func:`worker_socket`), and the kernel spreads new connections evenly over them. One listening
    socket shared by all workers instead lets whichever worker wakes first accept a burst of keep-alive
    connections: 20 clients landed 20/0, 16/4 and 14/6 on two workers, one core idle while the other queued
    (docs/search.md). Without ``SO_REUSEPORT``: :func:`bind`'s shared listening socket."""
    if not hasattr(socket, "SO_REUSEPORT"):
        return bind(host, port)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def worker_socket(reserved: socket.socket) -> socket.socket:
    """The socket a worker of :func:`serve_forked` accepts on: its own, listening on ``reserved``'s address
    (see :func:`reserve`), or ``reserved`` itself when that is already the one shared listening socket."""
    if reserved.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
        return reserved
    host, port = reserved.getsockname()[:2]
    return socket.create_server((host, port), family=reserved.family, backlog=BACKLOG, reuse_port=True)


def make_server(
    settings: Settings,
    store: SearchStore,
    metrics: PrometheusMetrics,
    *,
    host: str | None = None,
    port: int | None = None,
    watchlists: WatchlistRepository | None = None,
    alerts: AlertLog | None = None,
    sock: socket.socket | None = None,
) -> WebServer:
    """Bind the web server (not yet serving).

    ``host``/``port`` default to ``settings.serve_host``/``settings.serve_port`` (127.0.0.1:8080);
    port 0 takes a free port (read it back from ``server.url``); ``sock`` serves an already bound
    socket instead (a worker process of :func:`serve_forked`). ``watchlists`` defaults to the
    deployment's repository (``sednaya_monitor.wiring.make_watchlists``: SQLite in ``settings.data_dir``,
    or the Elasticsearch store); ``alerts`` defaults to the alert ledger there (both closed with the server).
    Raises ``OSError`` when the address is taken.
    """
    owned: list[Closable] = []
    if watchlists is None:
        repo = make_watchlists(settings)
        owned.append(repo)
        watchlists = repo
    if alerts is None:
        ledger = make_ledger(settings)
        owned.append(ledger)
        alerts = LedgerAlertLog(ledger, watchlists, settings.public_url)
    app = create_app(settings, store, metrics, watchlists=watchlists, alerts=alerts)
    bind_host = settings.serve_host if host is None else host
    bind_port = settings.serve_port if port is None else port
    try:
        listening = sock if sock is not None else bind(bind_host, bind_port)
    except OSError:
        for item in owned:
            item.close()
        raise
    server = WebServer(listening, app, settings, owned=owned)
    if sock is None:
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
    """A :class:`WebServer` serving in a thread; ``stop()`` (or leaving the ``with``) shuts it down."""

    def __init__(self, server: WebServer) -> None:
        self.server = server
        self.thread = threading.Thread(target=server.serve_forever, name="sednaya-web", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not server.server.started and self.thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)

    @property
    def url(self) -> str:
        return self.server.url

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join(timeout=SHUTDOWN_GRACE_S + 10)
        self.server.server_close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def serve_in_thread(
    settings: Settings,
    store: SearchStore,
    metrics: PrometheusMetrics,
    *,
    host: str | None = None,
    port: int | None = None,
    watchlists: WatchlistRepository | None = None,
    alerts: AlertLog | None = None,
) -> RunningServer:
    """:func:`make_server` and serve it in a thread. Use as a context manager or call ``stop()``."""
    server = make_server(settings, store, metrics, host=host, port=port, watchlists=watchlists, alerts=alerts)
    return RunningServer(server)


def serve_until_signalled(server: WebServer, say: Callable[[str], None]) -> int:
    """Serve until SIGINT (Ctrl-C) or SIGTERM, then stop cleanly (open requests get SHUTDOWN_GRACE_S).

    Returns the signal number that stopped it (0 when the server stopped by itself). Must run in the
    main thread (signal handlers); the previous handlers are restored afterwards.
    """
    stop = threading.Event()
    caught: list[int] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        caught.append(signum)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        running = RunningServer(server)
        while not stop.wait(0.2):
            if not running.thread.is_alive():
                break
        say(f"stopping ({signal.Signals(caught[0]).name})" if caught else "stopping")
        running.stop()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return caught[0] if caught else 0


def serve_forked(
    settings: Settings,
    sock: socket.socket,
    workers: int,
    say: Callable[[str], None],
    open_store: Callable[[], SearchStore],
    *,
    banner: str = "",
) -> int:
    """Serve ``sock`` from ``workers`` processes until SIGINT or SIGTERM (``serve --workers N``).

    Page rendering and highlighting are Python work under one interpreter lock, so one process
    uses one core. Each worker is forked after the address is reserved (:func:`reserve`), listens on a
    socket of its own (:func:`worker_socket`) and opens its own store, watchlist repository and alert
    ledger (nothing SQLite crosses the fork); the kernel spreads connections evenly over them.
    ``banner`` is said once every worker listens (connections opened before would all land on the
    first). A worker that dies is started again. On a signal the workers get SIGTERM, finish open
    requests and exit; returns the signal number. ``/metrics`` counts per worker (each answer comes
    from one of them).
    """
    children: dict[int, int] = {}  # pid -> worker index

    def spawn(index: int, ready: int | None = None) -> None:
        pid = os.fork()
        if pid == 0:  # the worker
            code = 1
            try:
                for sig in (signal.SIGINT, signal.SIGTERM):
                    signal.signal(sig, signal.SIG_DFL)
                own = worker_socket(sock)  # listening from here: connections queue until it serves
                if ready is not None:
                    os.write(ready, b".")
                    os.close(ready)
                store = open_store()
                server = make_server(settings, store, PrometheusMetrics(), sock=own)
                serve_until_signalled(server, lambda _message: None)
                store.close()
                code = 0
            except BaseException:  # a worker reports and exits; the parent starts another
                logger.exception("web worker failed", extra={"stage": "serve", "worker": index})
            finally:
                os._exit(code)
        children[pid] = index

    stop = threading.Event()
    caught: list[int] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        caught.append(signum)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        listening, ready = os.pipe()
        for index in range(workers):
            spawn(index, ready)
        os.close(ready)
        _wait_ready(listening, workers, WORKER_START_S)
        if banner:
            say(banner)
        while not stop.wait(0.2):
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid and pid in children and not stop.is_set():
                index = children.pop(pid)
                logger.error(
                    "web worker exited; starting another", extra={"stage": "serve", "worker": index, "status": status}
                )
                time.sleep(1.0)  # a worker that cannot start must not spin
                spawn(index)
        say(f"stopping ({signal.Signals(caught[0]).name})" if caught else "stopping")
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + SHUTDOWN_GRACE_S + 10
        while children and time.monotonic() < deadline:
            pid, _status = os.waitpid(-1, os.WNOHANG)
            if pid:
                children.pop(pid, None)
            else:
                time.sleep(0.05)
        for pid in children:  # still there after the grace period
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sock.close()
    return caught[0] if caught else 0


def _wait_ready(fd: int, workers: int, timeout_s: float) -> None:
    """Read one byte per worker from the pipe ``fd`` (each writes it once it listens), at most ``timeout_s``
    (a worker that fails to start is logged and started again by the supervisor loop); closes ``fd``."""
    deadline = time.monotonic() + timeout_s
    seen = 0
    try:
        while seen < workers:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return
            chunk = os.read(fd, workers)
            if not chunk:  # every writer closed: the rest failed before listening
                return
            seen += len(chunk)
    finally:
        os.close(fd)
