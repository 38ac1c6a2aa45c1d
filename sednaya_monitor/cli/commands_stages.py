"""One stage per process for the distributed mode: ``embed``, ``index``, ``alert``.

Each stage process serves ``/metrics`` and ``/healthz``, waits for its broker and store with backoff
(saying what it waits for, health red meanwhile), so start-up order does not matter, and on SIGTERM
finishes the batch in hand, commits and leaves its consumer group.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import TypeVar

import click

from indexer.index_stage import IndexStage, StoryIndexStage
from indexer.store import SearchStore
from sednaya_monitor import wiring
from sednaya_monitor.cli import cli
from sednaya_monitor.cli.context import AppContext
from sednaya_monitor.metrics_server import Health, MetricsServer
from sednaya_monitor.pipeline import GROUP_ALERT, GROUP_EMBED, GROUP_INDEX, GROUP_INDEX_STORIES
from stream.bus import Bus
from stream.metrics import Metrics
from stream.settings import Settings
from stream.worker import Handler, StageWorker

logger = logging.getLogger(__name__)

CONNECT_BACKOFF_S = 0.5  # first wait before retrying an unreachable broker or store, doubled each time
CONNECT_BACKOFF_MAX_S = 10.0  # longest wait between two connection attempts
POLL_TIMEOUT_S = 0.5  # how long a worker waits for records before the loop checks the other workers

T = TypeVar("T")


def connect_with_backoff(what: str, connect: Callable[[], T], health: Health, stop: threading.Event) -> T | None:
    """Call ``connect`` until it succeeds (returns its value) or ``stop`` is set (returns None)."""
    delay = CONNECT_BACKOFF_S
    while not stop.is_set():
        try:
            value = connect()
        except Exception as exc:  # noqa: BLE001  # any failure to connect is waited out, and said
            reason = f"waiting for {what}: {type(exc).__name__}: {exc}"
            logger.warning("waiting for dependency", extra={"dependency": what, "error": str(exc), "retry_in_s": delay})
            health.set_red(reason)
            stop.wait(delay)
            delay = min(delay * 2, CONNECT_BACKOFF_MAX_S)
            continue
        health.set_green()
        return value
    return None


def install_signal_handlers(stop: threading.Event) -> None:
    def handler(signum: int, frame: FrameType | None) -> None:
        logger.info("stopping", extra={"signal": signal.Signals(signum).name})
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


StageFactory = Callable[[Settings, Metrics, Bus, SearchStore | None], list[tuple[str, str, Handler]]]


def run_stage(app: AppContext, name: str, factory: StageFactory, *, needs_store: bool) -> None:
    """Connect, build the stage's workers with ``factory`` and run them until SIGTERM."""
    settings = app.settings
    metrics = app.metrics
    metrics.info.info({"stage": name, "model": settings.model_name, "bus": settings.bus.split("://")[0]})
    health = Health(metrics)
    server = MetricsServer(metrics, health, host=settings.metrics_host, port=settings.metrics_port).start()
    click.echo(f"{name}: /metrics and /healthz on {server.url}", err=True)
    stop = threading.Event()
    install_signal_handlers(stop)

    def open_bus() -> Bus:
        bus = wiring.make_bus(settings)
        bus.ensure_topics(settings.topics)
        return bus

    def open_store() -> SearchStore:
        store = wiring.make_store(settings)
        store.ensure_ready()
        return store

    bus = connect_with_backoff(f"bus {settings.bus}", open_bus, health, stop)
    store = connect_with_backoff(f"store {settings.store}", open_store, health, stop) if needs_store else None
    try:
        if bus is None or (needs_store and store is None):
            return
        workers = [
            StageWorker(
                bus,
                topic,
                group,
                handler,
                metrics=metrics,
                max_attempts=settings.max_attempts,
                batch_size=settings.batch_size,
                on_health=lambda green, reason: health.set_green() if green else health.set_red(reason),
                stop=stop,
            )
            for topic, group, handler in factory(settings, metrics, bus, store)
        ]
        logger.info("stage running", extra={"stage": name, "groups": [w.group for w in workers]})
        _loop(workers, stop)
    finally:
        if bus is not None:
            bus.close()
        if store is not None:
            store.close()
        server.stop()


def _loop(workers: list[StageWorker], stop: threading.Event) -> None:
    from stream.worker import StageStopped

    try:
        while not stop.is_set():
            idle = True
            for worker in workers:
                if worker.run_once(POLL_TIMEOUT_S / len(workers)):
                    idle = False
            if idle:
                time.sleep(0)
    except StageStopped:
        logger.info("stopped while a dependency was down; the batch in hand stays uncommitted")
    finally:
        for worker in workers:
            worker.close()


def _stage_options(func: Callable[..., None]) -> Callable[..., None]:
    func = click.option("--metrics-port", type=int, default=None, help="Port of /metrics and /healthz (0 = any).")(func)
    func = click.option("--store", default=None, help="embedded or http://host:9200 [env SEDNAYA_MONITOR_STORE].")(func)
    return click.option("--bus", default=None, help="embedded or kafka://host:9092 [env SEDNAYA_MONITOR_BUS].")(func)


def _with_overrides(ctx: click.Context, bus: str | None, store: str | None, metrics_port: int | None) -> AppContext:
    app = ctx.find_object(AppContext)
    assert app is not None, "the cli group sets the AppContext"
    changes: dict[str, object] = {}
    if bus:
        changes["bus"] = bus
    if store:
        changes["store"] = store
    if metrics_port is not None:
        changes["metrics_port"] = metrics_port
    return AppContext(app.settings.replace(**changes)) if changes else app


@cli.command()
@_stage_options
@click.pass_context
def embed(ctx: click.Context, bus: str | None, store: str | None, metrics_port: int | None) -> None:
    """Stage: articles.raw → embedding, near-duplicates, story clustering → articles.clustered + stories.events."""
    from stream.embed_stage import EmbedStage

    def factory(settings: Settings, metrics: Metrics, bus_: Bus, store_: SearchStore | None) -> list[
        tuple[str, str, Handler]
    ]:
        return [(settings.topic_raw, GROUP_EMBED, EmbedStage(settings, metrics, bus=bus_))]

    run_stage(_with_overrides(ctx, bus, store, metrics_port), "embed", factory, needs_store=False)


@cli.command()
@_stage_options
@click.pass_context
def index(ctx: click.Context, bus: str | None, store: str | None, metrics_port: int | None) -> None:
    """Stage: articles.clustered and stories.events → the search store."""

    def factory(settings: Settings, metrics: Metrics, bus_: Bus, store_: SearchStore | None) -> list[
        tuple[str, str, Handler]
    ]:
        assert store_ is not None
        return [
            (settings.topic_clustered, GROUP_INDEX, IndexStage(store_, metrics)),
            (settings.topic_story_events, GROUP_INDEX_STORIES, StoryIndexStage(store_, metrics)),
        ]

    run_stage(_with_overrides(ctx, bus, store, metrics_port), "index", factory, needs_store=True)


@cli.command()
@_stage_options
@click.pass_context
def alert(ctx: click.Context, bus: str | None, store: str | None, metrics_port: int | None) -> None:
    """Stage: stories.events → watchlist matching → webhook, e-mail, Atom."""
    from indexer.alert_stage import AlertStage

    def factory(settings: Settings, metrics: Metrics, bus_: Bus, store_: SearchStore | None) -> list[
        tuple[str, str, Handler]
    ]:
        assert store_ is not None
        return [(settings.topic_story_events, GROUP_ALERT, AlertStage(settings, store_, metrics))]

    run_stage(_with_overrides(ctx, bus, store, metrics_port), "alert", factory, needs_store=True)
