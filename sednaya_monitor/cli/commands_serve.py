"""``serve``: the search page, JSON API, Atom feeds, ``/metrics`` and ``/healthz`` (DESIGN.md)."""

from __future__ import annotations

import click

from sednaya_monitor.cli import cli
from sednaya_monitor.cli.context import AppContext, pipeline_options
from sednaya_monitor.web import make_server


@cli.command()
@click.option("--port", type=click.IntRange(0, 65535), default=None, help="Port [settings serve_port, 8080].")
@click.option("--host", default=None, help="Bind address [settings serve_host, 127.0.0.1: loopback only].")
@pipeline_options
@click.pass_context
def serve(ctx: click.Context, port: int | None, host: str | None, bus: str | None, store: str | None) -> None:
    """Serve the search page and the JSON API until interrupted (Ctrl-C).

    Writes (POST/DELETE /api/watchlists) need `Authorization: Bearer <api_token>`; with no
    api_token set (SEDNAYA_MONITOR_API_TOKEN) they are refused.
    """
    app = AppContext.of(ctx, bus=bus, store=store)
    server = make_server(app.settings, app.reading_store(), app.metrics, host=host, port=port)
    click.echo(f"serving on {server.url}/ (API: {server.url}/api/openapi.json); Ctrl-C stops")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        click.echo("stopping")
    finally:
        server.server_close()
