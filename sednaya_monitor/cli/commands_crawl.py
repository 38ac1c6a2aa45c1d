"""Crawling commands: ``sources list|check``, ``crawl`` (the distributed crawl stage) and ``demo``.

``crawl`` runs the Scrapy spiders of ``crawlers/`` once (or ``--follow``) and publishes to whatever bus
the settings name (``--bus kafka://host:9092`` for the distributed mode). The function the ``run``
command calls is :func:`crawlers.run.crawl` (re-exported here as :func:`crawl`); it can run once per
process because Twisted's reactor cannot restart.
"""

from __future__ import annotations

import json
import tempfile
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path

import click

import crawlers
from crawlers.errors import CrawlError, FeedError
from crawlers.registry import Source, load_registry, select
from crawlers.run import crawl
from crawlers.scrapy_settings import user_agent
from crawlers.seen import SeenStore
from crawlers.source_check import VERIFIED, read_listing, verdict
from sednaya_monitor import __version__
from sednaya_monitor.cli import cli
from sednaya_monitor.cli.app_context import AppContext, refuse_one_process_on_kafka
from sednaya_monitor.cli.locking import WAIT_FLAG, data_dir_locked, wait_option
from sednaya_monitor.metrics_server import serving_run
from sednaya_monitor.prometheus_metrics import set_build_info
from sednaya_monitor.settings import Settings
from sednaya_monitor.wiring import crawl_config, make_raw_store
from stream.article import parse_time

__all__ = ["crawl"]

CHECK_WORKERS = 8  # parallel checks (each to a different host: one request per URL)
DEMO_DIR = Path(crawlers.__file__).resolve().parent / "demo_site"  # ships inside the crawlers package


def _app(ctx: click.Context) -> AppContext:
    app = ctx.find_object(AppContext)
    assert app is not None, "the cli group sets the AppContext"
    return app


def _since(ctx: click.Context, param: click.Parameter, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_time(value if "T" in value else value + "T00:00:00Z")
    except ValueError as exc:
        raise click.BadParameter(f"{value!r} is not a date (YYYY-MM-DD or ISO 8601)") from exc


@cli.group()
def sources() -> None:
    """The source registry and each source's health."""


@sources.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per source.")
@click.pass_context
def sources_list(ctx: click.Context, as_json: bool) -> None:
    """Every registered source with its feeds, sitemaps and the health seen by the last crawls."""
    settings = _app(ctx).settings
    registry = load_registry(settings.sources_file)
    health = {}
    last_verified: dict[str, str] = {}  # source -> newest verified_at over its feeds and sitemaps
    if (settings.data_dir / "crawl" / "state.sqlite3").exists():
        with SeenStore(settings.data_dir) as seen:
            health = seen.health()
            for check in seen.checks():
                if check.verified_at is not None:
                    stamp = check.verified_at.isoformat()
                    last_verified[check.source] = max(stamp, last_verified.get(check.source, stamp))
    for source in registry:
        state = health.get(source.id)
        row = {
            "id": source.id,
            "name": source.name,
            "lang": source.lang,
            "country": source.country,
            "type": source.type,
            "feeds": list(source.feeds),
            "sitemaps": list(source.sitemaps),
            "langs": list(source.langs),
            "search_only": source.search_only,
            "verified": source.verified,
            "last_verified": last_verified.get(source.id),
            "last_outcome": state.last_outcome if state else None,
            "last_success": state.last_success.isoformat() if state and state.last_success else None,
        }
        if as_json:
            click.echo(json.dumps(row, ensure_ascii=False))
        else:
            health_text = f"{row['last_outcome']} (last ok {row['last_success'] or 'never'})" if state else "never"
            click.echo(
                f"{source.id:24} {','.join(source.langs)} {source.country} {source.type:19} "
                f"feeds={len(source.feeds)} sitemaps={len(source.sitemaps)} "
                f"verified={'yes' if source.verified else 'no'} "
                f"last_verified={row['last_verified'] or 'never'} health={health_text}"
                + (f" search_only={source.search_only!r}" if source.search_only else "")
            )
    if not as_json:
        click.echo(f"{len(registry)} sources in {settings.sources_file}")


@dataclass(frozen=True, slots=True)
class Check:
    source: str
    url: str
    outcome: str  # the crawl's fetch outcomes, or ok/stale/empty/undated/malformed_xml (crawlers/source_check.py)
    detail: str
    seconds: float
    entries: int | None = None
    newest: str | None = None  # ISO 8601 time of the newest entry

    @property
    def answered(self) -> bool:
        """The URL answered with a feed or sitemap (verified or not)."""
        return self.entries is not None

    @property
    def verified(self) -> bool:
        return self.outcome == VERIFIED


def check_url(settings: Settings, source: str, url: str) -> Check:
    """One GET of a feed or sitemap URL with the crawler's User-Agent, then its verdict; never raises."""
    started = time.monotonic()
    request = urllib.request.Request(url, headers={"User-Agent": user_agent(crawl_config(settings))})  # noqa: S310  # http(s) only: the registry validates schemes
    try:
        with urllib.request.urlopen(request, timeout=settings.crawl_download_timeout_s) as resp:  # noqa: S310
            body = resp.read(settings.crawl_max_page_bytes + 1)
            kind = resp.headers.get("Content-Type", "?")
    except urllib.error.HTTPError as exc:
        code = exc.code
        outcome = f"http_{code}" if code in (403, 404, 429) else ("http_5xx" if code >= 500 else "http_4xx")
        return Check(source, url, outcome, f"HTTP {code}", time.monotonic() - started)
    except urllib.error.URLError as exc:
        reason = str(exc.reason)
        outcome = "dns" if "name" in reason.lower() or "resolution" in reason.lower() else "connection"
        return Check(source, url, outcome, reason, time.monotonic() - started)
    except TimeoutError:
        detail = f"no answer in {settings.crawl_download_timeout_s}s"
        return Check(source, url, "timeout", detail, time.monotonic() - started)
    except OSError as exc:
        return Check(source, url, "connection", str(exc), time.monotonic() - started)
    if len(body) > settings.crawl_max_page_bytes:
        return Check(
            source, url, "too_large", f"over {settings.crawl_max_page_bytes} bytes", time.monotonic() - started
        )
    try:
        listing = read_listing(body, max_bytes=settings.crawl_max_page_bytes)
    except FeedError as exc:
        return Check(source, url, exc.outcome, f"{kind}, {len(body)} bytes: {exc.detail}", time.monotonic() - started)
    outcome = verdict(listing, max_age=timedelta(days=settings.sources_check_max_age_days))
    newest = None if listing.newest is None else listing.newest.isoformat()
    detail = f"{listing.kind}, {listing.entries} entries, newest {newest or 'undated'}"
    return Check(source, url, outcome, detail, time.monotonic() - started, listing.entries, newest)


@sources.command("check")
@click.option("--source", "source_ids", multiple=True, help="Only this source id (repeatable).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def sources_check(ctx: click.Context, source_ids: tuple[str, ...], as_json: bool) -> None:
    """Fetch every feed and sitemap once: does it answer with a parseable feed or sitemap holding entries
    newer than `sources_check_max_age_days`? Records the date each last did; exit 1 if none answers."""
    app = _app(ctx)
    settings = app.settings
    chosen: list[Source] = select(load_registry(settings.sources_file), source_ids or None)
    jobs = [(s.id, url) for s in chosen for url in (*s.feeds, *s.sitemaps)]
    with ThreadPoolExecutor(CHECK_WORKERS) as pool:
        results = list(pool.map(lambda job: check_url(settings, *job), jobs))
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with SeenStore(settings.data_dir) as seen:
        for result in results:
            fetch_outcome = "ok" if result.answered else result.outcome  # the fetch itself succeeded
            app.metrics.source_fetches.labels(source=result.source, outcome=fetch_outcome).inc()
            seen.record_fetch(result.source, fetch_outcome, success=result.answered)
            seen.record_check(
                result.source,
                result.url,
                result.outcome,
                entries=result.entries,
                newest=None if result.newest is None else parse_time(result.newest),
                verified=result.verified,
            )
    for result in results:
        if as_json:
            click.echo(json.dumps({**asdict(result), "verified": result.verified}, ensure_ascii=False))
        else:
            click.echo(f"{result.outcome:13} {result.source:24} {result.url}  ({result.detail})")
    for source in chosen:
        if source.search_only:
            row = {"source": source.id, "url": None, "outcome": "search_only", "detail": source.search_only}
            click.echo(
                json.dumps(row, ensure_ascii=False)
                if as_json
                else f"{'search_only':13} {source.id:24} ({source.search_only})"
            )
    answered = sum(r.answered for r in results)
    if not as_json:
        click.echo(f"{sum(r.verified for r in results)}/{len(results)} URLs verified, {answered} answered")
    if results and not answered:
        raise CrawlError(f"none of the {len(results)} feed/sitemap URLs answered (see the outcomes above)")


@cli.command("crawl")
@click.option("--follow", is_flag=True, help="Keep polling each source on its own interval (Ctrl-C stops).")
@click.option("--source", "source_ids", multiple=True, help="Only this registry source id (repeatable).")
@click.option("--spider", "spiders", multiple=True, help="Only this spider (feeds, sitemaps, gdelt, googlenews).")
@click.option("--backfill-since", callback=_since, help="GDELT backfill from DATE; articles marked backfill.")
@click.option("--bus", "bus_url", default=None, help="Bus to publish to: embedded or kafka://HOST:PORT.")
@click.option("--store", "store_url", default=None, help="Accepted like every stage's; the crawl writes to no store.")
@click.option("--metrics-port", type=int, default=None, help="Serve /metrics and /healthz on this port (0 = off).")
@click.option("--json", "as_json", is_flag=True, help="Print the crawl summary as JSON.")
@click.pass_context
def crawl_command(
    ctx: click.Context,
    follow: bool,
    source_ids: tuple[str, ...],
    spiders: tuple[str, ...],
    backfill_since: datetime | None,
    bus_url: str | None,
    store_url: str | None,
    metrics_port: int | None,
    as_json: bool,
) -> None:
    """The crawl stage: fetch the sources, extract, filter by topic, publish to the raw topic.

    Serves /metrics and /healthz while it runs when a metrics port is set (``--metrics-port`` or
    ``SEDNAYA_MONITOR_METRICS_PORT``); a one-off crawl pushes its final figures to the Pushgateway. With
    --follow a port that cannot be bound stops the crawl; a one-off crawl warns and goes on without it.
    """
    app = AppContext.of(ctx, bus=bus_url, store=store_url, metrics_port=metrics_port)
    set_build_info(
        app.metrics,
        version=__version__,
        model=app.settings.model_name,
        stage="crawl",
        bus=app.settings.bus.split("://")[0],
    )
    with serving_run(app.settings, app.metrics, push=not follow, one_off=not follow):
        summary = crawl(
            crawl_config(app.settings),
            app.bus,
            app.metrics,
            raw=make_raw_store(app.settings),
            follow=follow,
            sources=source_ids or None,
            backfill_since=backfill_since,
            spiders=spiders or None,
        )
    if as_json:
        click.echo(json.dumps(summary.to_dict(), ensure_ascii=False))
    else:
        click.echo(str(summary))


def demo_registry(template: Path, urls: dict[str, str]) -> str:
    """The demo registry text with ``{{site:NAME}}`` replaced by the served sites' base URLs."""
    text = template.read_text(encoding="utf-8")
    for site, url in urls.items():
        text = text.replace("{{site:" + site + "}}", url.rstrip("/"))
    return text


@cli.command()
@click.option("--port", type=click.IntRange(0, 65535), default=None, help="Search page port [settings serve_port].")
@click.option("--no-serve", is_flag=True, help="Stop after the crawl and the pipeline; do not start the page.")
@wait_option
@click.pass_context
def demo(ctx: click.Context, port: int | None, no_serve: bool, wait_s: float | None) -> None:
    """Serve the bundled offline news web on loopback, run the main job against it, then the search page."""
    from crawlers.site_server import DEMO_CANONICAL, SiteServer
    from sednaya_monitor.pipeline import Pipeline

    app = AppContext.of(ctx, {**WAIT_FLAG, "serve_port": "--port"}, lock_wait_s=wait_s, serve_port=port)
    refuse_one_process_on_kafka(ctx, app.settings, "demo")
    # The crawl and the pipeline write the data directory: held alone; the search page after is read-only.
    with data_dir_locked(app):
        with (
            SiteServer(DEMO_DIR / "sites", canonical=DEMO_CANONICAL) as web,
            tempfile.TemporaryDirectory(prefix="sednaya-demo-") as tmp,
        ):
            registry = Path(tmp) / "sources.toml"
            registry.write_text(
                demo_registry(DEMO_DIR / "sources.toml.tmpl", {s: web.url(s) for s in web.sites}), encoding="utf-8"
            )
            click.echo(f"demo web: {', '.join(f'{s}={web.url(s)}' for s in web.sites)}")
            app.settings = app.settings.replace(
                sources_file=registry, discovery=False, crawl_download_delay_s=0.0, crawl_retry_times=0
            )
            summary = crawl(crawl_config(app.settings), app.bus, app.metrics, raw=make_raw_store(app.settings))
        click.echo(str(summary))
        pipeline = Pipeline(app.settings, app.metrics, bus=app.bus, store=app.store, embedder=app.embedder)
        try:
            run_summary = pipeline.drain()
        finally:
            pipeline.close()
    click.echo("pipeline:")
    for line in run_summary.lines():
        click.echo("  " + line)
    data = app.settings.data_dir
    click.echo("try:")
    for command in ("search Sednaya", "search 'صيدنايا'", "search --by-story prison", "stories"):
        click.echo(f"  sednaya-monitor --data-dir {data} {command}")
    if no_serve:
        return
    from sednaya_monitor.web import make_server, serve_until_signalled

    server = make_server(app.settings, app.store, app.metrics)
    click.echo(f"search page: {server.url}/ (Ctrl-C stops)")
    serve_until_signalled(server, click.echo)
