"""One stage per process for the distributed mode: ``embed``, ``index``, ``alert``.

Each stage process serves ``/metrics`` and ``/healthz``, waits for its broker and store with backoff
(saying what it waits for, health red meanwhile), so start-up order does not matter, and on SIGTERM
finishes the batch in hand, commits and leaves its consumer group.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import TypeVar

import click

from indexer.store import SearchStore
from sednaya_monitor import __version__, topology, wiring
from sednaya_monitor.cli import cli
from sednaya_monitor.cli.app_context import AppContext
from sednaya_monitor.lag import LagExporter
from sednaya_monitor.metrics_server import Health, MetricsServer
from sednaya_monitor.prometheus_metrics import set_build_info
from sednaya_monitor.topology import StageParts, StageSpec
from stream.bus import Bus
from stream.worker import StageWorker

logger = logging.getLogger(__name__)

CONNECT_BACKOFF_S = 0.5  # first wait before retrying an unreachable broker or store, doubled each time
CONNECT_BACKOFF_MAX_S = 10.0  # longest wait between two connection attempts
POLL_TIMEOUT_S = 0.5  # how long a worker waits for records before it checks the stop event
JOIN_SLICE_S = 0.5  # the main thread wakes this often while the workers run

T = TypeVar("T")


def connect_with_backoff(what: str, connect: Callable[[], T], health: Health, stop: threading.Event) -> T | None:
    """Call ``connect`` until it succeeds (returns its value) or ``stop`` is set (returns None)."""
    delay = CONNECT_BACKOFF_S
    attempts = 0
    while not stop.is_set():
        try:
            value = connect()
        except Exception as exc:  # noqa: BLE001  # any failure to connect is waited out, and said
            attempts += 1
            reason = f"waiting for {what}: {type(exc).__name__}: {exc}"
            # one line per failure, no traceback; the log filter writes a repeat once a minute with its count
            logger.warning(
                "waiting for dependency",
                extra={
                    "dependency": what,
                    "error": f"{type(exc).__name__}: {exc}",
                    "attempt": attempts,
                    "retry_in_s": delay,
                },
            )
            health.set_red(reason)
            stop.wait(delay)
            delay = min(delay * 2, CONNECT_BACKOFF_MAX_S)
            continue
        if attempts:
            logger.info("dependency reached", extra={"dependency": what, "failed_attempts": attempts})
        health.set_green()
        return value
    return None


class HealthBoard:
    """The process health from its workers' reports: red while any worker is red (with its reason).

    Each worker reports only for itself; without the board a worker that succeeds would turn the
    process green while another still waits for its store.
    """

    def __init__(self, health: Health) -> None:
        self.health = health
        self._lock = threading.Lock()
        self._red: dict[str, str] = {}  # worker name -> reason

    def reporter(self, worker: str) -> Callable[[bool, str], None]:
        def report(green: bool, reason: str) -> None:
            with self._lock:
                if green:
                    self._red.pop(worker, None)
                else:
                    self._red[worker] = reason
                # a worker's reason may already start with its name ("index: store down"): not twice
                reasons = [
                    why if why.startswith(f"{name}:") else f"{name}: {why}" for name, why in sorted(self._red.items())
                ]
            if reasons:
                self.health.set_red("; ".join(reasons))
            else:
                self.health.set_green()

        return report


def install_signal_handlers(stop: threading.Event) -> None:
    def handler(signum: int, frame: FrameType | None) -> None:
        logger.info("stopping", extra={"signal": signal.Signals(signum).name})
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def stage_workers(
    specs: list[StageSpec],
    parts: StageParts,
    *,
    board: HealthBoard | None = None,
    stop: threading.Event | None = None,
) -> list[StageWorker]:
    """One worker per topology row (``sednaya_monitor.topology``), each reporting to ``board``."""
    settings = parts.settings
    if any(spec.needs_embedder for spec in specs):
        # Load the model before joining a group: a first batch that loads it could outlast the poll interval.
        embedder = parts.embedder
        logger.info("loading the embedding model", extra={"model": settings.model_name, "dim": embedder.dim})
        embedder.embed(["model warm-up"])  # ``dim`` alone does not load every model (USE knows its size)
    workers: list[StageWorker] = []
    for spec in specs:
        handler = topology.build(spec, parts)
        inner = topology.unwrap(handler)
        attach = getattr(inner, "attach_health", None)
        if board is not None and callable(attach):  # a stage with health of its own (the alert stage's waiting)
            attach(board.reporter(f"{inner.name}-waiting"))
        workers.append(
            StageWorker(
                parts.bus,
                spec.topic(settings),
                spec.group,
                handler,
                metrics=parts.metrics,
                max_attempts=settings.max_attempts,
                batch_size=settings.batch_size,
                on_health=board.reporter(spec.group) if board is not None else None,
                stop=stop,
                report_lag=settings.lag_interval_s <= 0,
            )
        )
    return workers


def run_stage(app: AppContext, name: str, specs: list[StageSpec]) -> None:
    """Connect, build the workers of the topology rows ``specs`` and run them until SIGTERM."""
    settings = app.settings
    metrics = app.metrics
    needs_store = any(spec.needs_store for spec in specs)
    set_build_info(
        metrics, version=__version__, model=settings.model_name, stage=name, bus=settings.bus.split("://")[0]
    )
    health = Health(metrics)
    server = MetricsServer(metrics, health, host=settings.metrics_host, port=settings.metrics_port).start()
    click.echo(f"{name}: /metrics and /healthz on {server.url}", err=True)
    stop = threading.Event()
    install_signal_handlers(stop)

    def open_bus() -> Bus:
        bus = wiring.make_bus(settings, metrics)
        bus.ensure_topics(settings.topics)
        return bus

    def open_store() -> SearchStore:
        store = wiring.make_store(settings)
        store.ensure_ready()
        return store

    bus = connect_with_backoff(f"bus {settings.bus}", open_bus, health, stop)
    store = connect_with_backoff(f"store {settings.store}", open_store, health, stop) if needs_store else None
    workers: list[StageWorker] = []
    # Every group's lag from the broker (its own client), so a dead stage's lag shows in this process.
    exporter = LagExporter(settings, metrics, lambda: wiring.make_bus(settings))
    try:
        if bus is None or (needs_store and store is None):
            return
        exporter.start()
        workers = stage_workers(specs, StageParts(settings, metrics, bus, store), board=HealthBoard(health), stop=stop)
        logger.info("stage running", extra={"stage": name, "groups": [w.group for w in workers]})
        _loop(workers, stop)
    finally:
        exporter.stop()
        for worker in workers:  # e.g. the alert stage lets deliveries in flight finish
            close = getattr(worker.handler, "close", None)
            if callable(close):
                close()
        if bus is not None:
            bus.close()
        if store is not None:
            store.close()
        server.stop()


def _loop(workers: list[StageWorker], stop: threading.Event) -> None:
    """Run each worker in its own thread until ``stop`` is set; a worker that fails stops them all.

    One thread per worker (not one loop over them): a Kafka consumer must keep polling while it joins
    its group, and a long batch of one worker (an embedding batch) must not starve another's consumer.

    Raises:
        the first exception a worker raised (the process then exits non-zero and is restarted).
    """
    failures: list[BaseException] = []

    def run(worker: StageWorker) -> None:
        try:
            worker.run_forever(POLL_TIMEOUT_S)
        except BaseException as exc:
            logger.exception("worker failed; stopping the stage", extra={"stage": worker.handler.name})
            failures.append(exc)
            stop.set()

    threads = [
        threading.Thread(target=run, args=(worker,), name=f"worker-{worker.group}", daemon=True) for worker in workers
    ]
    for thread in threads:
        thread.start()
    interrupted = False
    while any(thread.is_alive() for thread in threads):
        for thread in threads:
            thread.join(JOIN_SLICE_S)  # short joins: the main thread keeps handling SIGTERM
        if stop.is_set() and not interrupted:  # a batch waiting on a dead broker must not outlast the grace
            interrupted = True
            for worker in workers:
                worker.interrupt()
    if failures:
        raise failures[0]


def _stage_options(func: Callable[..., None]) -> Callable[..., None]:
    func = click.option("--metrics-port", type=int, default=None, help="Port of /metrics and /healthz (0 = any).")(func)
    func = click.option("--store", default=None, help="embedded or http://host:9200 [env SEDNAYA_MONITOR_STORE].")(func)
    return click.option("--bus", default=None, help="embedded or kafka://host:9092 [env SEDNAYA_MONITOR_BUS].")(func)


def _with_overrides(ctx: click.Context, bus: str | None, store: str | None, metrics_port: int | None) -> AppContext:
    return AppContext.of(ctx, bus=bus, store=store, metrics_port=metrics_port)


@cli.command()
@_stage_options
@click.option(
    "--cluster/--no-cluster",
    default=True,
    help="Also stand by for story assignment (group 'cluster'); --no-cluster embeds only.",
)
@click.option(
    "--vectors/--no-vectors",
    default=True,
    help="Embed articles (group 'embed'); --no-vectors only assigns stories, or stands by to: a standby of "
    "the story assignment that takes no share of the embedding.",
)
@click.pass_context
def embed(
    ctx: click.Context, bus: str | None, store: str | None, metrics_port: int | None, cluster: bool, vectors: bool
) -> None:
    """Stage: articles.raw → embedding → articles.embedded → near-duplicates, stories → articles.clustered + events.

    Two workers in one process: the vectors (group 'embed' on articles.raw: every replica takes a share
    of the partitions) and story assignment (group 'cluster' on articles.embedded: one partition, so one
    replica assigns while the others stand by). On a Kafka bus each replica keeps its own copy of the
    story state in its --data-dir, mirrored to the compacted topic 'topic_story_changelog'; a standby
    catches up from it before its first batch (no disk shared between replicas).
    """
    if not (vectors or cluster):
        raise click.UsageError("--no-vectors with --no-cluster leaves the embed stage nothing to do")
    specs = topology.stage_process("embed")
    if not cluster:
        specs = [spec for spec in specs if spec.group != topology.GROUP_CLUSTER]
    if not vectors:
        specs = [spec for spec in specs if spec.group != topology.GROUP_EMBED]
    run_stage(_with_overrides(ctx, bus, store, metrics_port), "embed", specs)


@cli.command()
@_stage_options
@click.pass_context
def index(ctx: click.Context, bus: str | None, store: str | None, metrics_port: int | None) -> None:
    """Stage: articles.clustered and stories.events → the search store."""
    run_stage(_with_overrides(ctx, bus, store, metrics_port), "index", topology.stage_process("index"))


@cli.command()
@_stage_options
@click.pass_context
def alert(ctx: click.Context, bus: str | None, store: str | None, metrics_port: int | None) -> None:
    """Stage: stories.events → watchlist matching → webhook, e-mail, Atom."""
    run_stage(_with_overrides(ctx, bus, store, metrics_port), "alert", topology.stage_process("alert"))
