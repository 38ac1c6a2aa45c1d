"""Operators' commands: ``redrive`` (write chosen articles again), ``lag`` (every group's lag from the
broker) and ``offsets reset`` (move where a stopped consumer group resumes)."""

from __future__ import annotations

import json

import click

from sednaya_monitor import redrive as redrive_mod
from sednaya_monitor.cli import cli
from sednaya_monitor.cli.app_context import AppContext, pipeline_options, topic_aliases
from sednaya_monitor.lag import read_lag
from sednaya_monitor.topology import consumer_groups
from stream.errors import GroupActiveError
from stream.offset_reset import TARGET_FORMS, OffsetAdmin, ResetTargetError, parse_reset_target


def _topic(app: AppContext, name: str) -> str:
    return topic_aliases(app.settings).get(name, name)


@cli.command()
@click.option(
    "--topic",
    default="clustered",
    show_default=True,
    help="Topic to read: raw, clustered, events (or a full topic name).",
)
@click.option("--id", "ids", multiple=True, help="Re-drive this article id (repeatable).")
@click.option("--partition", type=click.IntRange(min=0), default=None, help="Only this partition of --topic.")
@click.option("--from-offset", type=click.IntRange(min=0), default=None, help="First offset (inclusive).")
@click.option("--to-offset", type=click.IntRange(min=0), default=None, help="Last offset (inclusive).")
@click.option("--missing", is_flag=True, help="Every article of --topic (raw or clustered) the store does not hold.")
@click.option("--dry-run", is_flag=True, help="List what would be re-published; publish nothing.")
@pipeline_options
@click.pass_context
def redrive(
    ctx: click.Context,
    topic: str,
    ids: tuple[str, ...],
    partition: int | None,
    from_offset: int | None,
    to_offset: int | None,
    missing: bool,
    dry_run: bool,
    bus: str | None,
    store: str | None,
) -> None:
    """Make the pipeline write chosen articles again (idempotent: the index stage upserts by id).

    An article is re-published as its last record on the clustered topic (the embed stage answers a
    known article on the raw topic with its old decision and publishes nothing); one never clustered
    goes back to the raw topic. Choose by --id, by --partition/--from-offset/--to-offset of --topic,
    or --missing (compare --topic with the store).

    \b
    sednaya-monitor redrive --missing --topic raw            # every article the store lacks
    sednaya-monitor redrive --id 3f2a...                     # one article
    sednaya-monitor redrive --topic clustered --partition 0 --from-offset 145 --to-offset 145
    """
    modes = sum([bool(ids), missing, partition is not None or from_offset is not None or to_offset is not None])
    if modes != 1:
        raise click.UsageError("choose exactly one of --id, --missing, or --partition/--from-offset/--to-offset")
    if from_offset is not None and to_offset is not None and to_offset < from_offset:
        raise click.BadParameter(f"{to_offset} is before --from-offset {from_offset}", param_hint="'--to-offset'")
    app = AppContext.of(ctx, bus=bus, store=store)
    selection = redrive_mod.Selection(
        topic=_topic(app, topic),
        ids=ids,
        partition=partition,
        start=from_offset,
        stop=None if to_offset is None else to_offset + 1,
        missing=missing,
    )
    store_ = app.reading_store() if missing else None
    plan = redrive_mod.plan(app.reading_bus(), store_, app.settings, selection)
    for record in plan.records:
        click.echo(f"{record.topic}\t{record.partition}:{record.offset}\t{redrive_mod.article_id(record)}")
    if missing:
        click.echo(f"{plan.held} articles of {selection.topic} already in the store", err=True)
    for article_id in plan.not_found:
        click.echo(f"not on any topic (retention?): {article_id}", err=True)
    counts = ", ".join(f"{n} to {t}" for t, n in sorted(plan.counts().items())) or "nothing"
    if dry_run:
        click.echo(f"dry run: would re-publish {counts}", err=True)
        return
    redrive_mod.execute(app.reading_bus(), plan.records)
    click.echo(f"re-published {counts}", err=True)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object per partition.")
@pipeline_options
@click.pass_context
def lag(ctx: click.Context, as_json: bool, bus: str | None, store: str | None) -> None:
    """Every consumer group's lag per partition, from the broker (committed offset vs end offset).

    A group whose members are all dead still shows here, its lag growing as records arrive.
    """
    app = AppContext.of(ctx, bus=bus, store=store)
    rows = read_lag(app.reading_bus(), app.settings)
    totals: dict[tuple[str, str], int] = {}
    for row in rows:
        totals[(row.topic, row.group)] = totals.get((row.topic, row.group), 0) + row.lag
        if as_json:
            click.echo(
                json.dumps(
                    {
                        "topic": row.topic,
                        "group": row.group,
                        "partition": row.partition,
                        "committed": row.committed,
                        "end": row.end,
                        "lag": row.lag,
                    }
                )
            )
    if as_json:
        return
    click.echo(f"{'topic':<32} {'group':<14} {'lag':>8}   partitions (partition:committed/end)")
    for (topic, group), total in totals.items():
        parts = " ".join(f"{r.partition}:{r.committed}/{r.end}" for r in rows if r.topic == topic and r.group == group)
        click.echo(f"{topic:<32} {group:<14} {total:>8}   {parts}")


@cli.group()
def offsets() -> None:
    """Consumer groups' committed offsets on the Kafka bus (docs/runbook.md, "Resetting a group's offsets")."""


@offsets.command("reset")
@click.option("--group", required=True, help="Consumer group: embed, cluster, index, index-stories, alert.")
@click.option("--topic", required=True, help="Topic: raw, embedded, clustered, events (or a full topic name).")
@click.option("--to", "to", required=True, help=f"Where the group resumes: {TARGET_FORMS}.")
@click.option("--dry-run", is_flag=True, help="Show each partition's current and new offset; commit nothing.")
@pipeline_options
@click.pass_context
def offsets_reset(
    ctx: click.Context, group: str, topic: str, to: str, dry_run: bool, bus: str | None, store: str | None
) -> None:
    """Move where GROUP resumes on TOPIC: back to process records again (every stage is idempotent), or
    forward to skip them. Refused while the group has active members: stop its stage (every replica)
    first, and start it again after the reset.

    \b
    sednaya-monitor offsets reset --group index --topic clustered --to time:2024-12-08T00:00:00Z --dry-run
    sednaya-monitor offsets reset --group alert --topic events --to latest
    """
    try:
        target = parse_reset_target(to)
    except ResetTargetError as exc:
        raise click.BadParameter(str(exc), param_hint="'--to'") from exc
    app = AppContext.of(ctx, bus=bus, store=store)
    admin = app.reading_bus()
    if not isinstance(admin, OffsetAdmin):
        raise click.UsageError(
            f"offsets reset needs the Kafka bus (--bus kafka://host:port); bus {app.settings.bus!r} has no consumer "
            "groups to move while nothing runs"
        )
    name = _topic(app, topic)
    if (name, group) not in consumer_groups(app.settings):
        pairs = ", ".join(f"{g} on {t}" for t, g in consumer_groups(app.settings))
        click.echo(f"warning: {group!r} on {name!r} is not a group of the pipeline ({pairs})", err=True)
    members = admin.group_members(group)
    moves = admin.plan_offset_reset(name, group, target)
    click.echo(f"{'partition':>9} {'current':>9} {'new':>9} {'first':>9} {'end':>9}   records")
    for move in moves:
        current = "-" if move.current is None else str(move.current)
        change = f"{move.moved} again" if move.moved > 0 else (f"{-move.moved} skipped" if move.moved else "unchanged")
        click.echo(f"{move.partition:>9} {current:>9} {move.new:>9} {move.first:>9} {move.end:>9}   {change}")
    again = sum(m.moved for m in moves if m.moved > 0)
    skipped = -sum(m.moved for m in moves if m.moved < 0)
    known = "unknown (the broker's group description is unreadable)" if members is None else str(members)
    click.echo(
        f"group {group} on {name} to {target}: {again} records to process again, {skipped} skipped; "
        f"active members: {known}",
        err=True,
    )
    if dry_run:
        click.echo("dry run: nothing committed", err=True)
        return
    if members:
        raise GroupActiveError(
            f"consumer group {group!r} has {members} active member(s): stop the stage that consumes with it (every "
            "replica), wait for its session timeout, then reset again"
        )
    admin.reset_offsets(moves)
    click.echo(f"committed: group {group} resumes on {name} at the new offsets", err=True)
