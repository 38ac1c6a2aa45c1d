"""``sednaya-monitor dlq list|replay``: inspect and re-publish dead letters on either bus."""

from __future__ import annotations

import json

import click

from sednaya_monitor.cli import cli
from sednaya_monitor.cli.app_context import AppContext, pipeline_options
from stream.bus import DeadLetter

REASON_WIDTH = 100  # characters of the error message shown per letter in the text listing


def _topics(app: AppContext, topic: str | None) -> list[str]:
    return [topic] if topic else list(app.settings.topics)


def _as_json(letter: DeadLetter) -> dict[str, object]:
    return {
        "id": letter.id,
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


@cli.group()
def dlq() -> None:
    """Dead letters: records a stage gave up on (``<topic>.dlq``), with stage, error and attempts."""


@dlq.command("list")
@click.option("--topic", default=None, help="Only this topic (default: every pipeline topic).")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(min=1), help="Letters per topic.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@pipeline_options
@click.pass_context
def list_letters(
    ctx: click.Context, topic: str | None, limit: int, as_json: bool, bus: str | None, store: str | None
) -> None:
    """Dead letters not yet replayed, oldest first."""
    app = AppContext.of(ctx, bus=bus, store=store)
    total = 0
    for name in _topics(app, topic):
        letters = app.reading_bus().dead_letters(name, limit=limit)
        total += len(letters)
        for letter in letters:
            if as_json:
                click.echo(json.dumps(_as_json(letter), ensure_ascii=False))
                continue
            reason = letter.reason if len(letter.reason) <= REASON_WIDTH else letter.reason[: REASON_WIDTH - 1] + "…"
            click.echo(
                f"{letter.id}\t{name}\t{letter.key}\t{letter.stage}\t{letter.error_class}\t"
                f"attempts={letter.attempts}\t{letter.at.isoformat()}\t{reason}"
            )
    if not as_json:
        click.echo(f"{total} dead letters", err=True)


@dlq.command("replay")
@click.option("--topic", default=None, help="Only this topic (default: every pipeline topic).")
@click.option("--id", "ids", multiple=True, help="Replay only these letters (ids from `dlq list`); repeatable.")
@pipeline_options
@click.pass_context
def replay(ctx: click.Context, topic: str | None, ids: tuple[str, ...], bus: str | None, store: str | None) -> None:
    """Re-publish dead letters to their topic (all, or --id ...); replayed letters leave the list."""
    app = AppContext.of(ctx, bus=bus, store=store)
    if ids and topic is None:
        raise click.UsageError("--id needs --topic (letter ids are per topic)")
    for name in _topics(app, topic):
        count = app.reading_bus().replay(name, list(ids) if ids else None)
        click.echo(f"{name}: replayed {count}")
