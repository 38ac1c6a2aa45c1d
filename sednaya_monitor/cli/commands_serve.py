"""``serve``: the search page, JSON API, Atom feeds, ``/metrics`` and ``/healthz`` (DESIGN.md)."""

from __future__ import annotations

import click

from indexer.store import SearchStore
from sednaya_monitor import wiring
from sednaya_monitor.cli import cli
from sednaya_monitor.cli.app_context import AppContext, pipeline_options
from sednaya_monitor.web import make_server, serve_until_signalled
from sednaya_monitor.web.server import reserve, serve_forked

SERVE_FLAGS = {"serve_port": "--port", "serve_host": "--host", "serve_workers": "--workers"}  # setting -> flag


@cli.command()
@click.option("--port", type=click.IntRange(0, 65535), default=None, help="Port [settings serve_port, 8080].")
@click.option("--host", default=None, help="Bind address [settings serve_host, 127.0.0.1: loopback only].")
@click.option(
    "--workers", type=click.IntRange(1, 64), default=None, help="Serving processes [settings serve_workers, 1]."
)
@pipeline_options
@click.pass_context
def serve(
    ctx: click.Context, port: int | None, host: str | None, workers: int | None, bus: str | None, store: str | None
) -> None:
    """Serve the search page and the JSON API until Ctrl-C or SIGTERM (then stops cleanly).

    Writes (POST/DELETE /api/watchlists) need `Authorization: Bearer <api_token>`; with no
    api_token set (SEDNAYA_MONITOR_API_TOKEN) they are refused.
    """
    app = AppContext.of(ctx, SERVE_FLAGS, bus=bus, store=store, serve_port=port, serve_host=host, serve_workers=workers)
    settings = app.settings
    count = settings.serve_workers
    if count > 1:  # the parent only binds and supervises: no store is opened before the fork
        sock = reserve(settings.serve_host, settings.serve_port)
        name = sock.getsockname()
        url = f"http://{'[' + name[0] + ']' if ':' in name[0] else name[0]}:{name[1]}"

        def open_store() -> SearchStore:
            store = wiring.make_store(settings)
            store.ensure_ready()
            return store

        banner = f"serving on {url}/ (API: {url}/api/openapi.json, {count} workers); Ctrl-C stops"
        serve_forked(settings, sock, count, click.echo, open_store, banner=banner)
        return
    server = make_server(settings, app.reading_store(), app.metrics)
    click.echo(f"serving on {server.url}/ (API: {server.url}/api/openapi.json); Ctrl-C stops")
    serve_until_signalled(server, click.echo)
