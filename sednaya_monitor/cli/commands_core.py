"""The analyst's core commands: ``run``, ``ingest``, ``export``, ``stories``, ``search``."""

from __future__ import annotations

import csv
import json
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import IO, Any, BinaryIO

import click

from indexer.store import SearchRequest, SearchResult
from sednaya_monitor import __version__
from sednaya_monitor.cli import cli
from sednaya_monitor.cli.app_context import AppContext, pipeline_options, refuse_one_process_on_kafka
from sednaya_monitor.cli.locking import WAIT_FLAG, data_dir_locked, wait_option
from sednaya_monitor.ingest_run import IngestRun, RawTopicPublisher
from sednaya_monitor.metrics_server import serving_run
from sednaya_monitor.pipeline import Pipeline, RunSummary
from sednaya_monitor.prometheus_metrics import set_build_info
from sednaya_monitor.settings import Settings
from sednaya_monitor.wiring import crawl_config, make_raw_store
from stream.article import Article, parse_time
from stream.ingest import IngestError

EXPORT_FIELDS = ("id", "url", "source", "lang", "published", "story_id", "duplicate_of", "story_role")
STAGE_IDLE_S = 0.5  # while crawling, how long the stage thread waits after draining the bus


def _date(ctx: click.Context, param: click.Parameter, value: str | None) -> datetime | None:
    """A date option as aware UTC: ``YYYY-MM-DD`` is the start of that day, or an ISO 8601 date-time."""
    if value is None:
        return None
    ctx.meta[f"{__name__}.{param.name}"] = value  # as typed, for messages naming it (``_check_order``)
    try:
        return parse_time(value if "T" in value else value + "T00:00:00Z")
    except ValueError as exc:
        raise click.BadParameter(f"{value!r} is not a date (YYYY-MM-DD or ISO 8601)") from exc


def _until(ctx: click.Context, param: click.Parameter, value: str | None) -> datetime | None:
    """An upper date bound: ``YYYY-MM-DD`` includes that whole day (as the search page's ``until``)."""
    parsed = _date(ctx, param, value)
    if parsed is None or value is None or "T" in value:
        return parsed
    return parsed + timedelta(days=1) - timedelta(microseconds=1)


def _check_order(ctx: click.Context, since: datetime | None, until: datetime | None) -> None:
    """Raises a usage error naming both options as typed when ``since`` is after ``until``."""
    if since is not None and until is not None and since > until:
        typed = [ctx.meta.get(f"{__name__}.{name}") for name in ("since", "until")]
        raise click.UsageError(f"Invalid value: '--since' {typed[0]!r} is after '--until' {typed[1]!r}", ctx)


def _app(ctx: click.Context) -> AppContext:
    app = ctx.find_object(AppContext)
    assert app is not None, "the cli group sets the AppContext"
    return app


def _print_summary(summary: RunSummary, title: str) -> None:
    click.echo(title)
    for line in summary.lines():
        click.echo("  " + line)


@cli.command()
@click.argument("source", type=click.File("rb"))
@click.option("--relevance", is_flag=True, help="Apply the topic filter; off-topic articles are rejected.")
@click.option("--backfill", is_flag=True, help="Historical load: never fires instant alerts.")
@click.option(
    "--publish-only",
    is_flag=True,
    help="Only publish to the raw topic and exit with the count (the deployment's stage processes do the rest).",
)
@wait_option
@pipeline_options
@click.pass_context
def ingest(
    ctx: click.Context,
    source: BinaryIO,
    relevance: bool,
    backfill: bool,
    wait_s: float | None,
    publish_only: bool,
    bus: str | None,
    store: str | None,
) -> None:
    """Push articles from JSON lines (FILE or -) through embedding, clustering, indexing and alerting.

    Each line: at least url, title, text; optional lang, published, source, authors, schema (1). A line
    that is not UTF-8, not a JSON object, too long, too deep, or breaks the contract is reported with
    its file, line number and field, dead-lettered once (a rerun does not add it again), and the rest
    goes through; the exit code stays 0. The summary accounts for every line:
    in = indexed + already seen + dead letters (+ off-topic with --relevance). With --publish-only the
    articles are only published to the raw topic (of a running deployment: --bus kafka://...), and no
    stage runs in this process: in = published + dead letters (+ repeats in the input, off-topic); an
    article too large for the bus is dead-lettered. Without it a Kafka bus is refused (the deployment's
    stages do that work). A line of the crawl's dead-letter file is read as the article it holds.
    """
    app = AppContext.of(ctx, WAIT_FLAG, bus=bus, store=store, lock_wait_s=wait_s)
    if publish_only:
        _publish_only(app, source, relevance=relevance, backfill=backfill)
        return
    refuse_one_process_on_kafka(ctx, app.settings, "ingest")
    with data_dir_locked(app), serving_run(app.settings, app.metrics, one_off=True):
        _ingest(app, source, relevance=relevance, backfill=backfill)


def _publish_only(app: AppContext, source: BinaryIO, *, relevance: bool, backfill: bool) -> None:
    """Publish the articles of ``source`` to the raw topic, read and accounted as ``ingest`` reads them
    (``IngestRun``: line limit, dead letters recorded once, records that would not fit the bus refused);
    the counts are printed also when the bus or the input failed (then the error follows)."""
    settings = app.settings
    app.bus.ensure_topics(settings.topics)
    relevance_filter = _relevance_filter(settings) if relevance else None

    def show(origin: str, error: IngestError) -> None:
        click.echo(f"{origin}: {error}", err=True)

    run = IngestRun(
        RawTopicPublisher(settings, app.metrics, app.bus), backfill=backfill, relevance=relevance_filter, on_error=show
    )
    done = False
    try:
        run.read(source)
        done = True
    finally:
        report = run.report
        where = f"{settings.topic_raw} on {settings.bus}"
        if done:
            click.echo(f"published {report.published} articles to {where}")
        else:
            click.echo(f"publishing to {where} stopped after {report.lines_in} lines (the error follows)")
        for line in report.lines(relevance=relevance):
            click.echo("  " + line)
        if report.dead_letters:
            click.echo(f"  {report.dead_letters} lines dead-lettered; see `sednaya-monitor dlq list`")


def _ingest(app: AppContext, source: BinaryIO, *, relevance: bool, backfill: bool) -> None:
    settings = app.settings
    set_build_info(
        app.metrics, version=__version__, model=settings.model_name, stage="all", bus=settings.bus.split("://")[0]
    )
    pipeline = Pipeline(settings, app.metrics, bus=app.bus, store=app.store, embedder=app.embedder)
    relevance_filter = _relevance_filter(settings) if relevance else None

    def show(origin: str, error: IngestError) -> None:
        click.echo(f"{origin}: {error}", err=True)

    run = IngestRun(pipeline, backfill=backfill, relevance=relevance_filter, on_error=show)
    try:
        run.read(source)
        with click.progressbar(length=run.published, label="processing", file=sys.stderr) as bar:
            report = run.finish(on_progress=bar.update)
    finally:
        pipeline.close()  # alert deliveries in flight finish (or stay pending for the next start)
    click.echo(f"ingest finished: {report.origin}")
    for line in report.lines(relevance=relevance):
        click.echo("  " + line)
    if report.dead_letters:
        click.echo(f"  {report.dead_letters} lines dead-lettered; see `sednaya-monitor dlq list`")


def _relevance_filter(settings: Settings) -> Callable[[Article], Article | None]:
    """The crawlers' topic filter as a function: the article with its relevance, or None if off-topic."""
    from crawlers.relevance import RelevanceFilter
    from stream.topic import load_topic

    topic_filter = RelevanceFilter(load_topic(settings.topic_file))

    def apply(article: Article) -> Article | None:
        relevance = topic_filter.score(article.title, article.text)
        return article.replace(relevance=relevance) if topic_filter.is_relevant(relevance) else None

    return apply


@cli.command()
@click.option("--follow", is_flag=True, help="Keep polling each source on its own interval.")
@click.option("--backfill-since", callback=_date, help="GDELT backfill from DATE; articles marked backfill.")
@wait_option
@click.pass_context
def run(ctx: click.Context, follow: bool, backfill_since: datetime | None, wait_s: float | None) -> None:
    """The main job: crawl the configured sources once (or keep polling) and run every stage.

    One process, the embedded bus: a Kafka bus is refused (run the distributed stages instead).
    """
    app = AppContext.of(ctx, WAIT_FLAG, lock_wait_s=wait_s)
    refuse_one_process_on_kafka(ctx, app.settings, "run")
    with data_dir_locked(app), serving_run(app.settings, app.metrics, push=not follow, one_off=not follow):
        _run(app, follow=follow, backfill_since=backfill_since)


def _run(app: AppContext, *, follow: bool, backfill_since: datetime | None) -> None:
    from crawlers.run import crawl

    set_build_info(app.metrics, version=__version__, model=app.settings.model_name, stage="all", bus="embedded")
    pipeline = Pipeline(app.settings, app.metrics, bus=app.bus, store=app.store, embedder=app.embedder)
    stop = threading.Event()
    errors: list[BaseException] = []

    def stages() -> None:
        try:
            while not stop.is_set():
                pipeline.drain()
                stop.wait(STAGE_IDLE_S)
        except BaseException as exc:  # noqa: BLE001  # re-raised after the crawl: the thread must not die silently
            errors.append(exc)
            stop.set()

    worker = threading.Thread(target=stages, name="stages", daemon=True)
    worker.start()
    try:
        crawl_summary = crawl(
            crawl_config(app.settings),
            app.bus,
            app.metrics,
            raw=make_raw_store(app.settings),
            follow=follow,
            backfill_since=backfill_since,
        )
    finally:
        stop.set()
        worker.join()
    try:
        if errors:
            raise errors[0]
        summary = pipeline.drain()
    finally:
        pipeline.close()
    click.echo(str(crawl_summary))
    _print_summary(summary, "run finished")


@cli.command()
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl", show_default=True)
@click.option("--output", "-o", type=click.File("w", encoding="utf-8"), default="-", help="File (default stdout).")
@click.option("--full", is_flag=True, help="Every article field (jsonl only), not only the export columns.")
@pipeline_options
@click.pass_context
def export(ctx: click.Context, fmt: str, output: IO[str], full: bool, bus: str | None, store: str | None) -> None:
    """Every stored article with id, url, source, lang, published, story_id, duplicate_of, story_role."""
    app = AppContext.of(ctx, bus=bus, store=store)
    rows = (_export_row(a, full=full and fmt == "jsonl") for a in app.reading_store().iter_articles())
    if fmt == "csv":
        writer = csv.DictWriter(output, fieldnames=EXPORT_FIELDS, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if row[k] is None else row[k] for k in EXPORT_FIELDS})
    else:
        for row in rows:
            output.write(json.dumps(row, ensure_ascii=False) + "\n")


def _export_row(article: Article, *, full: bool) -> dict[str, Any]:
    data = article.to_dict()
    return data if full else {k: data[k] for k in EXPORT_FIELDS}


@cli.command()
@click.option("--since", callback=_date, help="Only stories seen since DATE.")
@click.option("--limit", default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@pipeline_options
@click.pass_context
def stories(
    ctx: click.Context, since: datetime | None, limit: int, as_json: bool, bus: str | None, store: str | None
) -> None:
    """Stories, newest first, with counts, languages and representative title."""
    app = AppContext.of(ctx, bus=bus, store=store)
    found = app.reading_store().list_stories(since=since, limit=limit)
    if as_json:
        click.echo(json.dumps([s.to_dict() for s in found], ensure_ascii=False, indent=2))
        return
    for story in found:
        click.echo(
            f"{story.id}  {story.last_seen:%Y-%m-%d}  {story.article_count:>4} art  {story.source_count:>3} src  "
            f"[{','.join(story.languages)}]  {story.title}"
        )


@cli.command()
@click.argument("query", default="")
@click.option("--lang")
@click.option("--source")
@click.option("--since", callback=_date, help="From DATE (YYYY-MM-DD: the start of that day, or ISO 8601).")
@click.option("--until", callback=_until, help="Up to DATE; a plain YYYY-MM-DD includes that whole day.")
@click.option("--story")
@click.option("--by-story", is_flag=True, help="One line per story with its best article.")
@click.option(
    "--sort",
    type=click.Choice(["relevance", "date"]),
    default="relevance",
    show_default=True,
    help="relevance: newest first when the query has no word or phrase to rank by (filters, NOT alone).",
)
@click.option("--limit", default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@pipeline_options
@click.pass_context
def search(
    ctx: click.Context,
    query: str,
    lang: str | None,
    source: str | None,
    since: datetime | None,
    until: datetime | None,
    story: str | None,
    by_story: bool,
    sort: str,
    limit: int,
    as_json: bool,
    bus: str | None,
    store: str | None,
) -> None:
    """Full-text search with the query language: words, "phrases", AND/OR/NOT, (), field:value."""
    from indexer.errors import QueryRefusedError, QuerySyntaxError

    _check_order(ctx, since, until)
    app = AppContext.of(ctx, bus=bus, store=store)
    request = SearchRequest(
        query=query,
        lang=lang,
        source=source,
        since=since,
        until=until,
        story=story,
        by_story=by_story,
        sort=sort,  # type: ignore[arg-type]  # click.Choice restricts it to the SortOrder values
        size=limit,
    )
    try:
        result = app.reading_store().search(request)
    except (QuerySyntaxError, QueryRefusedError) as exc:
        raise click.BadParameter(str(exc), param_hint="'QUERY'") from exc
    if as_json:
        click.echo(json.dumps(_result_json(result), ensure_ascii=False, indent=2))
        return
    for line in _result_lines(result, by_story=by_story):
        click.echo(line)


def _result_json(result: SearchResult) -> dict[str, Any]:
    return {
        "total": result.total,
        "hits": [{"score": h.score, **h.article.to_dict()} for h in result.hits],
        "groups": [
            {
                "story_id": g.story_id,
                "article_count": g.article_count,
                "languages": list(g.languages),
                "best": g.best.article.to_dict(),
            }
            for g in result.groups
        ],
        "next_after": list(result.next_after) if result.next_after else None,
        "expanded": {typed: list(added) for typed, added in result.expanded.items()},
    }


def also_searched(result: SearchResult) -> list[str]:
    """``also searched: ...`` lines, one per expanded name (``indexer.names``)."""
    return [f"also searched: {', '.join(added)} (variants of {typed!r})" for typed, added in result.expanded.items()]


def _result_lines(result: SearchResult, *, by_story: bool) -> Iterator[str]:
    yield f"{result.total} matching articles"
    yield from also_searched(result)
    if by_story:
        for group in result.groups:
            best = group.best.article
            yield (
                f"{group.story_id}  {group.article_count:>4} art  [{','.join(group.languages)}]  "
                f"{best.title}  ({best.source}, {best.url})"
            )
        return
    for hit in result.hits:
        a = hit.article
        day = a.published.strftime("%Y-%m-%d") if a.published else "----------"
        yield f"{a.id}  {day}  {a.lang}  {a.source}  {a.title}  {a.url}"
