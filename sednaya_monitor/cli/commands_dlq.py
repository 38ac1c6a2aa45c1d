"""``sednaya-monitor dlq list|replay``: inspect and re-publish dead letters on either bus, and list the
crawl's dead-letter file (``crawlers.dead_letter``: articles the bus refused while crawling)."""

from __future__ import annotations

import json

import click

from crawlers.dead_letter import CrawlLetter, DeadLetterFile
from sednaya_monitor.cli import cli
from sednaya_monitor.cli.app_context import AppContext, pipeline_options, topic_aliases
from stream.bus import DeadLetter

REASON_WIDTH = 100  # characters of the error message shown per letter in the text listing
CRAWL_FILE_MARK = "crawl-file"  # the topic column of a crawl dead letter in the listing
TOPIC_HELP = "Only this topic: raw, embedded, clustered, events, or a full topic name (default: every one)."


def _topics(app: AppContext, topic: str | None) -> list[str]:
    """The topics to read: every pipeline topic, or ``topic`` resolved as ``redrive`` and ``offsets`` do.

    Raises:
        click.BadParameter: ``topic`` is neither a short name nor a pipeline topic (the valid ones named).
    """
    settings = app.settings
    if topic is None:
        return list(settings.topics)
    aliases = topic_aliases(settings)
    name = aliases.get(topic, topic)
    if name not in settings.topics:
        raise click.BadParameter(
            f"{topic!r} is not a pipeline topic: use one of {', '.join(aliases)} "
            f"or a full name ({', '.join(settings.topics)})",
            param_hint="'--topic'",
        )
    return [name]


def _cut(reason: str) -> str:
    return reason if len(reason) <= REASON_WIDTH else reason[: REASON_WIDTH - 1] + "…"


def _as_json(letter: DeadLetter) -> dict[str, object]:
    return {
        "id": letter.id,
        "place": "bus",
        "topic": letter.topic,
        "key": letter.key,
        "stage": letter.stage,
        "error_class": letter.error_class,
        "reason": letter.reason,
        "attempts": letter.attempts,
        "partition": letter.partition,
        "offset": letter.offset,
        "at": letter.at.isoformat().replace("+00:00", "Z"),
        "headers": dict(letter.headers),
        "size_bytes": len(letter.value),
    }


def _crawl_json(letter: CrawlLetter, file: DeadLetterFile) -> dict[str, object]:
    return {
        "id": f"crawl:{letter.line}",
        "place": CRAWL_FILE_MARK,
        "file": str(file.path),
        "line": letter.line,
        "stage": "crawl",
        "kind": letter.kind,
        "url": letter.url,
        "source": letter.source,
        "error_class": letter.error_class,
        "reason": letter.reason,
        "at": letter.at,
        "size_bytes": letter.size_bytes,
    }


@cli.group()
def dlq() -> None:
    """Dead letters: records a stage gave up on (``<topic>.dlq``), with stage, error and attempts, and the
    crawl's dead-letter file (``<data-dir>/crawl/dead-letters.jsonl``)."""


@dlq.command("list")
@click.option("--topic", default=None, help=TOPIC_HELP)
@click.option(
    "--crawl",
    "crawl_only",
    is_flag=True,
    help="Only the crawl's dead-letter file of --data-dir (listed after the bus's letters by default); "
    "replay its articles with `sednaya-monitor ingest FILE` (`ingest --publish-only FILE` on a Kafka bus).",
)
@click.option("--limit", default=100, show_default=True, type=click.IntRange(min=1), help="Letters per topic.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@pipeline_options
@click.pass_context
def list_letters(
    ctx: click.Context,
    topic: str | None,
    crawl_only: bool,
    limit: int,
    as_json: bool,
    bus: str | None,
    store: str | None,
) -> None:
    """Dead letters not yet replayed, oldest first; then the crawl's dead-letter file (topic column
    ``crawl-file``, id ``crawl:<line>``) when the data directory has one."""
    if crawl_only and topic is not None:
        raise click.UsageError("--crawl lists the crawl's dead-letter file, which has no topic: drop --topic")
    app = AppContext.of(ctx, bus=bus, store=store)
    total = 0
    if not crawl_only:
        for name in _topics(app, topic):
            letters = app.reading_bus().dead_letters(name, limit=limit)
            total += len(letters)
            for letter in letters:
                if as_json:
                    click.echo(json.dumps(_as_json(letter), ensure_ascii=False))
                    continue
                click.echo(
                    f"{letter.id}\t{name}\t{letter.key}\t{letter.stage}\t{letter.error_class}\t"
                    f"attempts={letter.attempts}\t{letter.at.isoformat()}\t{_cut(letter.reason)}"
                )
    crawl_file = DeadLetterFile(app.settings.data_dir)
    crawl_letters: list[CrawlLetter] = []
    if topic is None:
        crawl_letters = crawl_file.letters()[:limit]
        total += len(crawl_letters)
        for crawl_letter in crawl_letters:
            if as_json:
                click.echo(json.dumps(_crawl_json(crawl_letter, crawl_file), ensure_ascii=False))
                continue
            click.echo(
                f"crawl:{crawl_letter.line}\t{CRAWL_FILE_MARK}\t{crawl_letter.url}\tcrawl\t"
                f"{crawl_letter.error_class or '-'}\tkind={crawl_letter.kind}\t{crawl_letter.at}\t"
                f"{_cut(crawl_letter.reason)}"
            )
    if not as_json:
        where = f" ({len(crawl_letters)} in {crawl_file.path})" if crawl_letters or crawl_only else ""
        click.echo(f"{total} dead letters{where}", err=True)


@dlq.command("replay")
@click.option("--topic", default=None, help=TOPIC_HELP)
@click.option("--id", "ids", multiple=True, help="Replay only these letters (ids from `dlq list`); repeatable.")
@pipeline_options
@click.pass_context
def replay(ctx: click.Context, topic: str | None, ids: tuple[str, ...], bus: str | None, store: str | None) -> None:
    """Re-publish dead letters to their topic (all, or --id ...); replayed letters leave the list.

    The crawl's dead-letter file is replayed with `sednaya-monitor ingest FILE` instead (`--publish-only` on a
    Kafka bus).
    """
    app = AppContext.of(ctx, bus=bus, store=store)
    if ids and topic is None:
        raise click.UsageError("--id needs --topic (letter ids are per topic)")
    if any(i.startswith("crawl:") for i in ids):
        raise click.UsageError(
            f"crawl:<line> letters are lines of {DeadLetterFile(app.settings.data_dir).path}: "
            "replay them with `sednaya-monitor ingest FILE` (`ingest --publish-only FILE` on a Kafka bus)"
        )
    for name in _topics(app, topic):
        count = app.reading_bus().replay(name, list(ids) if ids else None)
        click.echo(f"{name}: replayed {count}")
