"""What every command gets: the settings and lazily built collaborators (bus, store, metrics).

Flags map onto the settings in one function, :func:`settings_from_flags`: the group's flags
(``--data-dir``, ``--config``, ``--log-level``, ``--bus``, ``--store``) and a command's own
(``--bus``, ``--store``, ``--metrics-port``), wherever they are written on the command line, go
through the settings loader together, so a bad value is reported as the flag that gave it. Logging is
configured from the final settings (:meth:`AppContext.with_flags`): JSON lines are chosen after every
flag is read.

Commands that read pipeline data refuse to create an empty embedded bus or store silently: when the
data directory holds none, or the settings point one adapter at a cluster and leave the other
embedded, they stop with an error saying which flag to pass.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import click

from indexer.store import SearchStore
from sednaya_monitor import wiring
from sednaya_monitor.cli.logs import configure_logging
from sednaya_monitor.prometheus_metrics import PrometheusMetrics
from sednaya_monitor.settings import Settings, load_settings
from stream.bus import Bus
from stream.embedding import Embedder
from stream.errors import SednayaError

BUS_FILE = "bus.sqlite3"  # the embedded bus in the data directory (stream.bus_embedded)
STORE_FILE = "store.sqlite3"  # the embedded store in the data directory (indexer.store_embedded)

F = TypeVar("F", bound=Callable[..., Any])
logger = logging.getLogger(__name__)
LOG_FORMAT_KEY = "sednaya.json_logs"  # ctx.meta key of a --json-logs/--text-logs given after the command


class NotDeployedError(SednayaError):
    """A command that reads pipeline data would open an empty embedded bus or store (names the flag to pass)."""


def topic_aliases(settings: Settings) -> dict[str, str]:
    """The short names operators' commands take for the pipeline topics (``--topic raw`` ...)."""
    return {
        "raw": settings.topic_raw,
        "embedded": settings.topic_embedded,
        "clustered": settings.topic_clustered,
        "events": settings.topic_story_events,
    }


def refuse_one_process_on_kafka(ctx: click.Context, settings: Settings, command: str) -> None:
    """Refuse a command that runs every stage in its own process (``run``, ``ingest``, ``demo``) on a
    distributed bus: it would join the deployment's consumer groups (taking partitions from the live stage
    processes) and decide stories from a story state of its own, skipping the deployment's assigner.

    Raises:
        click.UsageError: the bus is distributed; the message names the setting and what to run instead.
    """
    if not settings.distributed_bus:
        return
    from sednaya_monitor.topology import one_process

    groups = ", ".join(dict.fromkeys(spec.group for spec in one_process()))
    raise click.UsageError(
        f"`{command}` runs every stage in this process: on the bus {settings.bus!r} it would join the "
        f"deployment's consumer groups ({groups}) and assign stories from a state of its own. With a Kafka bus "
        "(setting bus: --bus, SEDNAYA_MONITOR_BUS or the settings file) run the distributed stages "
        "(sednaya-monitor crawl --follow, embed, index, alert) and give them files with "
        "`sednaya-monitor ingest --publish-only FILE`; or use --bus embedded for a one-process run.",
        ctx,
    )


@dataclass(frozen=True)
class Flags:
    """The group's flags, kept so a command's own flags are loaded together with them."""

    config_file: Path | None = None
    overrides: Mapping[str, Any] = field(default_factory=dict)  # setting name -> flag value (None = not given)
    logger_levels: tuple[str, ...] = ()
    json_logs: bool | None = None


def settings_from_flags(
    flags: Flags, command: Mapping[str, Any] | None = None, flag_names: Mapping[str, str] | None = None
) -> Settings:
    """Defaults < ``--config`` < ``SEDNAYA_MONITOR_*`` < group flags < the command's flags.

    ``flag_names`` names a command's flag whose name is not ``--<setting>`` (``serve_port``: ``--port``).

    Raises:
        click.UsageError: a value is invalid; the message names its origin (``--bus='kafka:x': ...``).
    """
    overrides = {k: v for k, v in flags.overrides.items() if v is not None}
    overrides.update({k: v for k, v in (command or {}).items() if v is not None})
    try:
        return load_settings(flags.config_file, overrides=overrides, flag_names=flag_names)
    except SednayaError as exc:
        raise click.UsageError(str(exc)) from exc


def apply_logging(settings: Settings, flags: Flags) -> None:
    """JSON lines when asked (``--json-logs``) or, by default, when the bus is distributed."""
    json_mode = flags.json_logs if flags.json_logs is not None else settings.distributed_bus
    configure_logging(settings.log_level, flags.logger_levels, json_lines=json_mode)
    logger.debug(
        "logging configured",
        extra={
            "json_lines": json_mode,
            "bus": settings.bus,
            "store": settings.store,
            "data_dir": str(settings.data_dir),
        },
    )


def _remember_log_format(ctx: click.Context, param: click.Parameter, value: bool | None) -> None:
    if value is not None:
        ctx.meta[LOG_FORMAT_KEY] = value


def pipeline_options(func: F) -> F:
    """``--bus`` and ``--store`` on a command that reads or writes pipeline data, and the group's
    ``--json-logs/--text-logs`` again, so they may follow the command name too."""
    func = click.option(
        "--json-logs/--text-logs",
        default=None,
        expose_value=False,
        callback=_remember_log_format,
        help="JSON lines (default in distributed mode); also accepted before the command.",
    )(func)
    func = click.option("--store", default=None, help="embedded or http(s)://host:9200 [env SEDNAYA_MONITOR_STORE].")(
        func
    )
    return click.option("--bus", default=None, help="embedded or kafka://host:9092 [env SEDNAYA_MONITOR_BUS].")(func)


class AppContext:
    def __init__(self, settings: Settings, flags: Flags | None = None) -> None:
        self.settings = settings
        self.flags = flags if flags is not None else Flags()
        self.metrics = PrometheusMetrics()
        self._bus: Bus | None = None
        self._store: SearchStore | None = None
        self._embedder: Embedder | None = None

    @staticmethod
    def of(ctx: click.Context, flag_names: Mapping[str, str] | None = None, **command_flags: Any) -> AppContext:
        """The command's context: the group's, or a new one when the command passed flags of its own
        (setting name -> value; settings reloaded with them, logging configured again, closed with the
        command). ``flag_names``: the flags whose name is not ``--<setting>``, for error messages."""
        app = ctx.find_object(AppContext)
        assert app is not None, "the cli group sets the AppContext"
        return app.with_flags(ctx, flag_names, **command_flags)

    def with_flags(
        self, ctx: click.Context, flag_names: Mapping[str, str] | None = None, **command_flags: Any
    ) -> AppContext:
        json_logs = ctx.meta.get(LOG_FORMAT_KEY)
        if all(v is None for v in command_flags.values()) and json_logs is None:
            return self
        flags = self.flags if json_logs is None else replace(self.flags, json_logs=json_logs)
        settings = settings_from_flags(flags, command_flags, flag_names)
        apply_logging(settings, flags)
        app = AppContext(settings, flags)
        ctx.call_on_close(app.close)
        return app

    # --- collaborators -------------------------------------------------------------------------------

    def _check_reading(self, what: str) -> None:
        """Refuse to read from an embedded adapter that would be created empty, or beside a cluster."""
        settings = self.settings
        if what == "store" and not settings.distributed_store and settings.distributed_bus:
            raise NotDeployedError(
                f"the bus is {settings.bus!r} (distributed) but the store is 'embedded': pass --store "
                "http(s)://host:9200 (or set store in the settings file / SEDNAYA_MONITOR_STORE)"
            )
        if what == "bus" and not settings.distributed_bus and settings.distributed_store:
            raise NotDeployedError(
                f"the store is {settings.store!r} (distributed) but the bus is 'embedded': pass --bus "
                "kafka://host:9092 (or set bus in the settings file / SEDNAYA_MONITOR_BUS)"
            )
        distributed = settings.distributed_store if what == "store" else settings.distributed_bus
        path = settings.data_dir / (STORE_FILE if what == "store" else BUS_FILE)
        if not distributed and not path.exists():
            flag = "--store http(s)://host:9200" if what == "store" else "--bus kafka://host:9092"
            raise NotDeployedError(
                f"no embedded {what} at {str(path)!r} (nothing was run with --data-dir {str(settings.data_dir)!r}); "
                f"for a deployment pass {flag} or --config FILE, or --data-dir of an embedded run"
            )

    def reading_bus(self) -> Bus:
        """The bus, for a command that reads what the pipeline wrote (never creates an empty embedded bus)."""
        if self._bus is None:
            self._check_reading("bus")
        return self.bus

    def reading_store(self) -> SearchStore:
        """The store, for a command that reads what the pipeline wrote (never creates an empty embedded store)."""
        if self._store is None:
            self._check_reading("store")
        return self.store

    @property
    def bus(self) -> Bus:
        if self._bus is None:
            self.settings.data_dir.mkdir(parents=True, exist_ok=True)
            self._bus = wiring.make_bus(self.settings, self.metrics)
        return self._bus

    @property
    def store(self) -> SearchStore:
        if self._store is None:
            self.settings.data_dir.mkdir(parents=True, exist_ok=True)
            self._store = wiring.make_store(self.settings)
            self._store.ensure_ready()
        return self._store

    @property
    def embedder(self) -> Embedder:
        """The model of the settings (loaded on its first use, not here)."""
        if self._embedder is None:
            self._embedder = wiring.make_embedder(self.settings, self.metrics)
        return self._embedder

    def close(self) -> None:
        if self._bus is not None:
            self._bus.close()
            self._bus = None
        if self._store is not None:
            self._store.close()
            self._store = None
