"""``sednaya-monitor watch add|list|remove|test|alerts|digest``: saved searches that alert on new stories.

Watchlists live in ``<data_dir>/watchlists.sqlite3``, or in the search store when it is Elasticsearch
(``sednaya_monitor.wiring.make_watchlists``); the alert ledger in ``<data_dir>/alerts.sqlite3``. The alert
stage reads the watchlists on every batch, so one added here applies to the next story event.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

import click

from indexer.alerting.delivery import check_targets
from indexer.alerting.watchlists import Watchlist, WatchlistRepository, new_secret, require
from indexer.errors import QuerySyntaxError, WatchlistError
from indexer.store import SearchRequest
from sednaya_monitor.cli import cli
from sednaya_monitor.cli.app_context import AppContext, NotDeployedError, pipeline_options
from sednaya_monitor.wiring import channel_config, make_alert_stage, make_ledger, make_watchlists

TEST_LIMIT = 20  # stories shown by `watch test`
DIGEST_WAIT_S = 120.0  # `watch digest` waits this long for the deliveries it started


def _app(ctx: click.Context, bus: str | None, store: str | None) -> AppContext:
    return AppContext.of(ctx, bus=bus, store=store)


@contextmanager
def _repository(app: AppContext) -> Iterator[WatchlistRepository]:
    settings = app.settings
    if settings.distributed_bus and not settings.distributed_store:
        raise NotDeployedError(
            f"the bus is {settings.bus!r} (distributed) but the store is 'embedded': a deployment keeps its "
            "watchlists in its store; pass --store http(s)://host:9200 (or set store in the settings file / "
            "SEDNAYA_MONITOR_STORE)"
        )
    repo = make_watchlists(settings)
    try:
        yield repo
    finally:
        repo.close()


@cli.group()
def watch() -> None:
    """Saved searches (watchlists) that alert once per NEW story: webhook, e-mail, Atom."""


@watch.command("add")
@click.argument("name")
@click.argument("query")
@click.option("--lang", default=None, help="Only articles in this language (ISO 639-1).")
@click.option("--source", default=None, help="Only articles from this source id.")
@click.option("--webhook", "webhooks", multiple=True, metavar="URL", help="POST alerts here (repeatable).")
@click.option("--secret", default=None, help="HMAC secret for X-Sednaya-Signature [default: generated].")
@click.option("--slack", is_flag=True, help="Send webhook bodies in Slack's incoming-webhook format.")
@click.option("--email", "emails", multiple=True, metavar="ADDR", help="E-mail alerts here (repeatable).")
@click.option("--mode", type=click.Choice(["instant", "digest"]), default="instant", show_default=True)
@click.option("--every", type=click.Choice(["hourly", "daily"]), default="daily", show_default=True,
              help="Digest period (new stories in digest mode; follow-ups in both modes).")  # fmt: skip
@click.option("--replace", is_flag=True, help="Overwrite a watchlist of the same name.")
@pipeline_options
@click.pass_context
def watch_add(
    ctx: click.Context,
    name: str,
    query: str,
    lang: str | None,
    source: str | None,
    webhooks: tuple[str, ...],
    secret: str | None,
    slack: bool,
    emails: tuple[str, ...],
    mode: str,
    every: str,
    replace: bool,
    bus: str | None,
    store: str | None,
) -> None:
    """Save QUERY (the search query language) as watchlist NAME."""
    app = _app(ctx, bus, store)
    generated = secret is None and bool(webhooks)
    try:
        watchlist = Watchlist(
            name=name,
            query=query,
            lang=lang,
            source=source,
            webhooks=webhooks,
            secret=new_secret() if generated else (secret or ""),
            slack=slack,
            emails=emails,
            mode=mode,  # type: ignore[arg-type]  # click.Choice restricts it
            every=every,  # type: ignore[arg-type]  # click.Choice restricts it
        )
        check_targets(watchlist, channel_config(app.settings))  # e.g. webhooks to private addresses, unless allowed
    except WatchlistError as exc:
        raise click.UsageError(str(exc)) from exc
    with _repository(app) as repo:
        repo.add(watchlist, replace=replace)
    click.echo(f"watchlist {name!r} saved ({mode}{', ' + every + ' digest' if mode == 'digest' else ''})")
    if generated:
        click.echo(f"webhook secret (X-Sednaya-Signature: t=<unix>,v1=HMAC-SHA256(t.body)): {watchlist.secret}")
    base = app.settings.public_url.rstrip("/")
    click.echo(f"Atom feed: {base}/watchlists/{name}/atom.xml")


@watch.command("list")
@click.option("--json", "as_json", is_flag=True, help="JSON array (secrets left out).")
@pipeline_options
@click.pass_context
def watch_list(ctx: click.Context, as_json: bool, bus: str | None, store: str | None) -> None:
    """The watchlists with their targets and alert counts."""
    app = _app(ctx, bus, store)
    with _repository(app) as repo:
        watchlists = repo.all()
    ledger = make_ledger(app.settings)
    try:
        rows = [(w, ledger.count_alerts(w.name), ledger.delivery_counts(w.name)) for w in watchlists]
        waiting, oldest = ledger.waiting_summary()
    finally:
        ledger.close()
    if waiting and oldest is not None and not as_json:  # said on stderr: the listing stays parseable
        click.echo(
            f"{waiting} story event(s) wait for their article to be indexed (oldest: article {oldest.article_id} "
            f"of story {oldest.story_id}, since {oldest.since:%Y-%m-%d %H:%M} UTC)",
            err=True,
        )
    if as_json:
        out = [{**w.to_dict(), "alerts": n, "deliveries": counts} for w, n, counts in rows]
        click.echo(json.dumps(out, ensure_ascii=False, indent=2))
        return
    if not rows:
        click.echo("no watchlists (add one with: sednaya-monitor watch add NAME QUERY --webhook URL)")
        return
    for w, n, counts in rows:
        filters = "".join(f" {k}:{v}" for k, v in (("lang", w.lang), ("source", w.source)) if v)
        click.echo(f"{w.name}  [{w.mode}{'/' + w.every if w.mode == 'digest' else ''}]  {w.query}{filters}")
        targets = [
            *(f"webhook {u}{' (slack)' if w.slack else ''}" for u in w.webhooks),
            *(f"email {a}" for a in w.emails),
        ]
        click.echo(f"    targets: {', '.join(targets) or 'Atom feed only'}")
        click.echo(
            f"    alerts: {n}; deliveries sent {counts['sent']}, failed {counts['failed']}, pending {counts['pending']}"
        )


@watch.command("remove")
@click.argument("name")
@pipeline_options
@click.pass_context
def watch_remove(ctx: click.Context, name: str, bus: str | None, store: str | None) -> None:
    """Delete watchlist NAME (its past alerts stay in the ledger)."""
    with _repository(_app(ctx, bus, store)) as repo:
        require(repo, name)
        repo.remove(name)
    click.echo(f"watchlist {name!r} removed")


@watch.command("test")
@click.argument("name")
@click.option("--limit", default=TEST_LIMIT, show_default=True, help="Stories to show.")
@click.option("--json", "as_json", is_flag=True)
@pipeline_options
@click.pass_context
def watch_test(
    ctx: click.Context, name: str, limit: int, as_json: bool, bus: str | None, store: str | None
) -> None:
    """Run NAME's query against the store and show the stories it matches (nothing is sent)."""
    app = _app(ctx, bus, store)
    with _repository(app) as repo:
        wl = require(repo, name)
    request = SearchRequest(
        query=wl.query, lang=wl.lang, source=wl.source, by_story=True, size=limit, sort="date", highlight=True
    )
    try:
        result = app.reading_store().search(request)
    except QuerySyntaxError as exc:
        raise click.UsageError(f"watchlist {name!r}: {exc}") from exc
    ledger = make_ledger(app.settings)
    try:
        alerted = {g.story_id: ledger.has_alert(wl.name, g.story_id) for g in result.groups}
    finally:
        ledger.close()
    if as_json:
        out = {
            "watchlist": wl.name,
            "total_articles": result.total,
            "stories": [
                {
                    "story_id": g.story_id,
                    "article_count": g.article_count,
                    "languages": list(g.languages),
                    "alerted": alerted[g.story_id],
                    "best": {
                        k: g.best.article.to_dict()[k] for k in ("id", "title", "source", "lang", "url", "published")
                    },
                    "matched_terms": list(g.best.matched_terms),
                }
                for g in result.groups
            ],
        }
        click.echo(json.dumps(out, ensure_ascii=False, indent=2))
        return
    click.echo(f"{wl.name}: {result.total} matching articles in {len(result.groups)} stories shown")
    for g in result.groups:
        a = g.best.article
        published = a.published.date().isoformat() if a.published else "----------"
        mark = "alerted" if alerted[g.story_id] else "       "
        click.echo(f"{mark}  {published}  [{a.lang}] {a.title}  ({a.source}; {g.article_count} articles)")
        click.echo(f"         story {g.story_id}  {a.url}")


@watch.command("alerts")
@click.argument("name")
@click.option("--limit", default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@pipeline_options
@click.pass_context
def watch_alerts(
    ctx: click.Context, name: str, limit: int, as_json: bool, bus: str | None, store: str | None
) -> None:
    """NAME's recent alerts, newest first, with each target's delivery status."""
    app = _app(ctx, bus, store)
    with _repository(app) as repo:
        wl = require(repo, name)
    ledger = make_ledger(app.settings)
    try:
        items = ledger.recent_alerts(wl.name, limit=limit)
    finally:
        ledger.close()
    if as_json:
        out = [{"id": i.alert_id, "mode": i.mode, **i.alert.to_dict(), "deliveries": i.deliveries} for i in items]
        click.echo(json.dumps(out, ensure_ascii=False, indent=2))
        return
    for i in items:
        states = ", ".join(f"{t} {s}" for t, s in i.deliveries.items()) or i.mode
        click.echo(f"{i.created_at:%Y-%m-%d %H:%M}  [{i.alert.lang}] {i.alert.story_title}  ({states})")
        click.echo(f"    {i.alert.link}")


@watch.command("digest")
@click.option("--force", is_flag=True, help="Send every queued digest now, due or not.")
@pipeline_options
@click.pass_context
def watch_digest(ctx: click.Context, force: bool, bus: str | None, store: str | None) -> None:
    """Send the digests that are due (and resume deliveries left pending); for cron or by hand."""
    app = _app(ctx, bus, store)
    stage = make_alert_stage(app.settings, app.store, app.metrics, digest_interval_s=None, wait_interval_s=None)
    try:
        opened = stage.send_digests(force=force)
        if not stage.wait_idle(DIGEST_WAIT_S):
            click.echo("some deliveries are still running; they resume on the next start", err=True)
    finally:
        stage.close()
    sent = app.metrics.registry.get_sample_value("sednaya_alerts_total", {"channel": "email", "result": "sent"}) or 0
    hooks = sum(
        app.metrics.registry.get_sample_value("sednaya_alerts_total", {"channel": channel, "result": "sent"}) or 0
        for channel in ("webhook", "slack")
    )
    click.echo(f"digests opened: {opened}; sent by e-mail: {int(sent)}, by webhook: {int(hooks)}")
