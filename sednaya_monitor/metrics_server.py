"""``/metrics`` and ``/healthz`` for stage processes and ``run``, and the Pushgateway push of ``run`` once-off.

A stage process starts one :class:`MetricsServer` (a WSGI server in a daemon thread) on
``settings.metrics_host:settings.metrics_port`` and reports its health through a :class:`Health`:
green while it works, red with a reason while it cannot (broker or store unreachable). ``/healthz``
answers ``200 {"status": "green"}`` or ``503 {"status": "red", "reason": "..."}``; Docker's
HEALTHCHECK and Kubernetes probes read it. The health state is mirrored in the ``sednaya_healthy`` gauge.

``run`` once-off exits before Prometheus could scrape it, so when ``settings.pushgateway`` is set it
pushes its final figures there (:func:`push_final`; :func:`serving_run` does both for a command).

A port that cannot be bound (held by another process: the stage of the container a one-off command was
``docker-compose exec``'d in, whose image sets ``SEDNAYA_MONITOR_METRICS_PORT``) raises
:class:`MetricsBindError` naming the address and the setting. A long-running process (a stage, ``crawl
--follow``, ``run --follow``) stops with it: a stage nobody can scrape or health-check must not look up.
A one-off command (``ingest``, ``run``, ``crawl`` without ``--follow``) logs it once as a warning and goes on
without serving: its figures still go to the Pushgateway when one is set.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Self
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import push_to_gateway
from prometheus_client.exposition import ThreadingWSGIServer, make_wsgi_app

from sednaya_monitor.prometheus_metrics import PrometheusMetrics
from sednaya_monitor.settings import Settings
from stream.errors import SednayaError

logger = logging.getLogger(__name__)

PUSH_TIMEOUT_S = 10.0  # a Pushgateway that does not answer in 10 s must not hold the end of `run`
PUSH_JOB = "sednaya-monitor-run"  # the `job` label of pushed figures (deploy/prometheus scrapes it so)

PORT_SETTING = "metrics_port: SEDNAYA_MONITOR_METRICS_PORT or --metrics-port; 0 = not served"


class MetricsBindError(SednayaError, OSError):
    """The metrics server cannot bind its address; the message names host, port and the setting."""


StartResponse = Callable[[str, list[tuple[str, str]]], Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


@dataclass(frozen=True)
class HealthState:
    green: bool
    reason: str  # "" when green


class Health:
    """Thread-safe green/red flag of one process; stages set it, ``/healthz`` reads it.

    Starts green (a process that started is healthy until it says otherwise). Every change is
    mirrored in ``metrics.healthy`` (1 green, 0 red) when ``metrics`` is given, and logged.
    """

    def __init__(self, metrics: PrometheusMetrics | None = None) -> None:
        self._lock = threading.Lock()
        self._state = HealthState(green=True, reason="")
        self._metrics = metrics
        if metrics is not None:
            metrics.healthy.set(1)

    def set_green(self) -> None:
        self._set(HealthState(green=True, reason=""))

    def set_red(self, reason: str) -> None:
        """Mark the process unhealthy; ``reason`` says what it waits for (e.g. ``"store http://es:9200: ..."``)."""
        if not reason:
            raise ValueError("Health.set_red needs a reason naming what is wrong, got an empty string")
        self._set(HealthState(green=False, reason=reason))

    def _set(self, state: HealthState) -> None:
        with self._lock:
            changed = state != self._state
            self._state = state
        if self._metrics is not None:
            self._metrics.healthy.set(1 if state.green else 0)
        if changed:
            if state.green:
                logger.info("health green")
            else:
                logger.warning("health red", extra={"reason": state.reason})

    @property
    def state(self) -> HealthState:
        with self._lock:
            return self._state


class _QuietHandler(WSGIRequestHandler):
    """Request lines go to DEBUG logging instead of stderr (a scrape per second would flood it)."""

    def log_message(self, format: str, *args: Any) -> None:  # signature of the base class
        logger.debug("metrics request: " + format, *args)


def make_app(metrics: PrometheusMetrics, health: Health) -> WSGIApp:
    """The WSGI app: ``/healthz`` from ``health``, everything else is the registry's exposition."""
    exposition = make_wsgi_app(metrics.registry)

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == "/healthz":
            state = health.state
            body: dict[str, str] = {"status": "green" if state.green else "red"}
            if not state.green:
                body["reason"] = state.reason
            payload = json.dumps(body).encode()
            status = "200 OK" if state.green else "503 Service Unavailable"
            start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))])
            return [payload]
        result: Iterable[bytes] = exposition(environ, start_response)
        return result

    return app


class MetricsServer:
    """Serves ``/metrics`` and ``/healthz`` from a daemon thread until :meth:`stop`.

    ``port=0`` binds a free port (tests); :attr:`port` is the bound one after :meth:`start`.
    Raises :class:`MetricsBindError` (an ``OSError``) from :meth:`start` naming host, port and the
    setting when the address cannot be bound.
    """

    def __init__(
        self, metrics: PrometheusMetrics, health: Health | None = None, *, host: str = "127.0.0.1", port: int = 0
    ):
        self.metrics = metrics
        self.health = health if health is not None else Health(metrics)
        self.host = host
        self._requested_port = port
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> Self:
        try:
            server = make_server(
                self.host,
                self._requested_port,
                make_app(self.metrics, self.health),
                server_class=ThreadingWSGIServer,
                handler_class=_QuietHandler,
            )
        except OSError as exc:
            raise MetricsBindError(
                f"metrics server cannot bind {self.host}:{self._requested_port}: {exc.strerror or exc} "
                f"(setting {PORT_SETTING})"
            ) from exc
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="metrics-server", daemon=True)
        self._thread.start()
        logger.info("metrics served", extra={"url": self.url})
        return self

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("MetricsServer.port read before start()")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """``http://host:port`` of the running server."""
        return f"http://{self.host}:{self.port}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Self:
        return self.start() if self._server is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve_metrics(settings: Settings, metrics: PrometheusMetrics, health: Health | None = None) -> MetricsServer | None:
    """Start the server on ``settings.metrics_host:settings.metrics_port``; ``None`` when the port is 0 (off)."""
    if settings.metrics_port == 0:
        return None
    return MetricsServer(metrics, health, host=settings.metrics_host, port=settings.metrics_port).start()


@contextmanager
def serving_run(
    settings: Settings, metrics: PrometheusMetrics, *, push: bool = True, one_off: bool = False
) -> Iterator[MetricsServer | None]:
    """For ``run``/``ingest``/``crawl``: serve ``/metrics`` while the block runs (``settings.metrics_port``;
    0 = not served, yields None), then push the final figures to ``settings.pushgateway`` when ``push`` and
    one is configured, also when the block raised (the figures of a failed run matter most).

    ``one_off``: a command that ends by itself; a port it cannot bind is logged once as a warning and the
    block runs without a server (yields None). Otherwise :class:`MetricsBindError` is raised.
    """
    try:
        server = serve_metrics(settings, metrics)
    except MetricsBindError as exc:
        if not one_off:
            raise
        logger.warning("metrics not served, the command goes on without them: %s", exc)
        server = None
    try:
        yield server
    finally:
        if push:
            push_final(settings, metrics)
        if server is not None:
            server.stop()


def push_final(settings: Settings, metrics: PrometheusMetrics, *, job: str = PUSH_JOB) -> bool:
    """Push every metric of ``metrics`` to ``settings.pushgateway`` (PUT: replaces the job's group).

    Returns False (and pushes nothing) when no Pushgateway is configured. A Pushgateway that cannot be
    reached is logged as a warning and returns False: the run's work is done and must not fail for it.
    """
    if not settings.pushgateway:
        return False
    try:
        push_to_gateway(settings.pushgateway, job=job, registry=metrics.registry, timeout=PUSH_TIMEOUT_S)
    except OSError as exc:
        logger.warning("pushgateway push failed", extra={"url": settings.pushgateway, "error": repr(exc)})
        return False
    logger.info("final metrics pushed", extra={"url": settings.pushgateway, "job": job})
    return True
