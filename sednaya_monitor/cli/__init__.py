"""``sednaya-monitor``: the stable command line (DESIGN.md "The command line").

The group builds the ``Settings`` once (defaults < ``--config`` TOML < ``SEDNAYA_MONITOR_*`` env <
flags) and hands them to each command through the click context. Domain errors map to exit codes here
and only here: usage errors exit 2 (click), domain errors exit 1 with the message naming the input.
"""

from __future__ import annotations

import importlib
import logging
import sys
from pathlib import Path
from typing import Any

import click

from sednaya_monitor.cli.app_context import AppContext, Flags, apply_logging, settings_from_flags
from sednaya_monitor.malloc_arenas import limit_malloc_arenas
from stream.errors import SednayaError

# The module that registers each command on ``cli`` (importing it adds the command). A process imports only
# the module of the command it runs: the crawl commands bring Scrapy, Twisted and trafilatura, ``serve``
# FastAPI, ~50 MB resident that an ``embed`` or ``index`` process never uses (docs/benchmarks.md,
# "distributed_load"). tests/test_cli_commands.py checks the map against every registered command.
COMMAND_MODULES = {
    "alert": "commands_stages",
    "crawl": "commands_crawl",
    "demo": "commands_crawl",
    "dlq": "commands_dlq",
    "embed": "commands_stages",
    "export": "commands_core",
    "index": "commands_stages",
    "ingest": "commands_core",
    "lag": "commands_ops",
    "offsets": "commands_ops",
    "redrive": "commands_ops",
    "run": "commands_core",
    "search": "commands_core",
    "serve": "commands_serve",
    "sources": "commands_crawl",
    "stories": "commands_core",
    "watch": "commands_watch",
}


class LazyGroup(click.Group):
    """A group whose commands are registered when asked for (``COMMAND_MODULES``); listing them (help)
    registers them all."""

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module = COMMAND_MODULES.get(cmd_name)
        if cmd_name not in self.commands and module is not None:
            importlib.import_module(f"{__name__}.{module}")
        return super().get_command(ctx, cmd_name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        _register()
        return super().list_commands(ctx)


@click.group(cls=LazyGroup)
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    envvar="SEDNAYA_MONITOR_DATA_DIR",
    default=None,
    help="Where everything is written [env SEDNAYA_MONITOR_DATA_DIR; default ./sednaya-data].",
)
@click.option("--config", "config_file", type=click.Path(path_type=Path), default=None, help="TOML settings file.")
@click.option("--log-level", default=None, help="DEBUG, INFO, WARNING, ERROR.")
@click.option("-L", "logger_levels", multiple=True, help="Per-logger level, e.g. -L stream.bus:DEBUG.")
@click.option("--json-logs/--text-logs", default=None, help="JSON lines (default in distributed mode).")
@click.option("--bus", default=None, help="embedded or kafka://host:9092 [env SEDNAYA_MONITOR_BUS].")
@click.option("--store", default=None, help="embedded or http(s)://host:9200 [env SEDNAYA_MONITOR_STORE].")
@click.version_option(package_name="sednaya-monitor")
@click.pass_context
def cli(
    ctx: click.Context,
    data_dir: Path | None,
    config_file: Path | None,
    log_level: str | None,
    logger_levels: tuple[str, ...],
    json_logs: bool | None,
    bus: str | None,
    store: str | None,
) -> None:
    """Sednaya Monitor: crawl the coverage, cluster it into stories, search it, alert on new stories.

    --bus and --store may be given here or after the command; the command's own win.
    """
    overrides: dict[str, Any] = {"data_dir": data_dir, "log_level": log_level, "bus": bus, "store": store}
    flags = Flags(config_file=config_file, overrides=overrides, logger_levels=logger_levels, json_logs=json_logs)
    settings = settings_from_flags(flags)
    apply_logging(settings, flags)
    ctx.obj = AppContext(settings, flags)
    ctx.call_on_close(ctx.obj.close)


def _register() -> None:
    """Register every command (each command group lives in its own module; importing registers it)."""
    for module in sorted(set(COMMAND_MODULES.values())):
        importlib.import_module(f"{__name__}.{module}")


def main() -> None:
    """Console-script entry point: maps domain errors to exit code 1 with their message."""
    limit_malloc_arenas()  # before any thread starts (sednaya_monitor/malloc_arenas.py)
    try:
        code = cli.main(standalone_mode=False)  # returns ctx.exit(N)'s code when a command sets one
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except SednayaError as exc:
        logging.getLogger("sednaya_monitor").debug("command failed", exc_info=True)
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    if isinstance(code, int) and code:
        sys.exit(code)
