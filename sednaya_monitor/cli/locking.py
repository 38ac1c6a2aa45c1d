"""The ``--wait`` option and the data-directory lock as the writing commands (``ingest``, ``run``,
``demo``) take it (``sednaya_monitor.data_lock``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import click

from sednaya_monitor.cli.app_context import AppContext
from sednaya_monitor.data_lock import DataDirLock, Holder

WAIT_FLAG = {"lock_wait_s": "--wait"}  # the setting --wait sets, for AppContext.of(ctx, WAIT_FLAG, lock_wait_s=...)


def wait_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--wait SECONDS``: how long to wait for another process holding the data directory (the
    setting ``lock_wait_s``: pass it to ``AppContext.of`` with :data:`WAIT_FLAG`)."""
    return click.option(
        "--wait",
        "wait_s",
        type=click.FloatRange(min=0),
        default=None,
        help="Wait up to SECONDS for another ingest/run holding the data directory [settings lock_wait_s; 0].",
    )(func)


@contextmanager
def data_dir_locked(app: AppContext) -> Iterator[None]:
    """Hold the data-directory lock (``sednaya_monitor.data_lock``) for the block, waiting up to
    ``lock_wait_s`` (``--wait``); says so when waiting."""

    def waiting(holder: Holder | None) -> None:
        who = str(holder) if holder is not None else "another process"
        click.echo(f"waiting up to {wait:g} s for the data directory, held by {who}", err=True)

    wait = app.settings.lock_wait_s
    with DataDirLock(app.settings.data_dir, wait_s=wait, on_wait=waiting):
        yield
