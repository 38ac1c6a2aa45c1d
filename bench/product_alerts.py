"""What an analyst's instant watchlist gets from the product itself on the multilingual tuning set: the
records streamed through the embedded pipeline (assignment, index, the alert stage with its ledger), the
alerts read from the ledger, set against the alert model of ``bench.multilingual_stories`` on the same
run's story events.

READS THE SHARED DATA FILE ../shared/datasets/multilingual-events/syria_events.jsonl.gz in place (``--data``
overrides); nothing from it is copied into the project.

Why: ``bench.multilingual_stories`` counts alerts with the alert stage's own rule (``decide``) over its own
union of merge groups and related links; the alert stage keeps those groups in its ledger, waits for
articles to be indexed, screens redeliveries and reads freshness. A difference between the two counts is
a defect of one of them (round 2, session 15: the ledger let a related link and a later merge of one story
replace each other; this bench was written after that fix, to keep the two in step).

How: one instant watchlist whose query matches every record by its language (``lang:ar OR lang:en OR
...``: every record's language), no delivery target (the ledger records the alert; the Atom feed would
carry it), ``alert_max_age_s`` wide enough for records from 2013 (freshness is not what is measured). The
records are streamed in the tuning set's order with the vectors computed once (the pipeline embeds
nothing again), dated ones carrying ``published``, undated ones discovered at ingest time, as
``bench.multilingual_stories`` streams them. An alert counts for the event of the report that opened its
story (the model's rule); ``irrelevant`` records are not events. Prints the table and writes the
``## product_alerts`` section of docs/benchmarks.md.

    python -m bench.product_alerts [--no-write]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import multilingual_stories as ms
from bench.report import write_section
from indexer.alerting.alert_stage import AlertStage
from indexer.alerting.watchlists import SqliteWatchlistRepository, Watchlist
from indexer.store import SearchStore
from sednaya_monitor.pipeline import Pipeline
from sednaya_monitor.settings import load_settings
from sednaya_monitor.wiring import calibrated, make_embedder
from stream.article import Article
from stream.bus import BusAdmin
from stream.story import StoryEvent

SECTION = "product_alerts"
WATCHLIST = "every-record"
MAX_AGE_S = 30 * 365 * 86400.0  # the tuning set's events go back to 2013
BATCH = 32  # records published per drain, as bench.multilingual_stories hands them to the stage


def watchlist(records: list[dict[str, Any]]) -> Watchlist:
    """One instant watchlist matching every record: an OR of their languages (the query language has no
    match-all; a watchlist needs a query)."""
    langs = sorted({r["lang"] for r in records})
    return Watchlist(name=WATCHLIST, query=" OR ".join(f"lang:{lang}" for lang in langs), mode="instant")


def opened_by(store: SearchStore, story_id: str, fallback: str) -> str:
    """The article that opened ``story_id`` (its first article in the store), else ``fallback``."""
    story = store.get_story(story_id)
    return story.first_article_id if story is not None and story.first_article_id else fallback


def product_run(records: list[dict[str, Any]], articles: list[Article]) -> tuple[Counter[str], list[StoryEvent], int]:
    """Alerts per event from the product's ledger, the story events of the run (read back from the bus's
    story-events topic), and the alerts counted."""
    event_of = {a.id: records[i]["event"] for i, a in enumerate(articles)}
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(environ={}, overrides={"data_dir": Path(tmp), "alert_max_age_s": MAX_AGE_S})
        repo = SqliteWatchlistRepository.in_data_dir(settings.data_dir)
        repo.add(watchlist(records))
        repo.close()
        pipeline = Pipeline(settings)
        stage = pipeline.stage(AlertStage)
        try:
            for at in range(0, len(articles), BATCH):
                pipeline.publish(articles[at : at + BATCH])
                pipeline.drain()
            stage.wait_idle(120)
            waiting = len(stage.ledger.waiting())
            if waiting:
                raise SystemExit(f"{waiting} story event(s) still wait for their article: the run is not complete")
            assert isinstance(pipeline.bus, BusAdmin)
            events = [StoryEvent.from_bytes(r.value) for r in pipeline.bus.read_topic(settings.topic_story_events)]
            alerts = stage.ledger.recent_alerts(WATCHLIST, limit=10_000)
            per_event: Counter[str] = Counter()
            for alert in alerts:
                first = opened_by(stage.store, alert.alert.story_id, alert.alert.article_id)
                per_event[event_of.get(first, event_of.get(alert.alert.article_id, "?"))] += 1
            return per_event, events, len(alerts)
        finally:
            stage.close()
            pipeline.close()


def _row(label: str, per_event: Counter[str], events: set[str], *, stray: bool) -> str:
    hit = [e for e in events if per_event[e]]
    alerts = sum(per_event[e] for e in hit)
    others = sum(n for e, n in per_event.items() if e not in events) if stray else "-"
    return f"| {label} | {len(hit)} / {len(events)} | {alerts / max(1, len(hit)):.2f} | {alerts} | {others} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ms.DATA)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    started = time.perf_counter()
    records = ms.stream(ms.load(args.data))
    settings = calibrated(load_settings(environ={}))
    embedder = make_embedder(settings)
    articles = ms.embedded_articles(records, embedder)
    every = {r["event"] for r in records} - {"irrelevant"}
    parts = {"whole set": every} | {f"half {h}": {e for e in every if ms.half(e) == h} for h in ("A", "B")}
    header = "| stream | count | events alerted | alerts per alerted event | alerts on events | alerts on irrelevant |"
    lines = [header, "|---|---|---:|---:|---:|---:|"]
    runs: list[str] = []
    differ: list[str] = []
    dated = [i for i, r in enumerate(records) if r["published"]]
    streams = {
        "every record": (records, articles),
        "dated records alone": ([records[i] for i in dated], [articles[i] for i in dated]),
    }
    for name, (recs, arts) in streams.items():
        product, events, counted = product_run(recs, arts)
        model = ms.alert_tally(recs, arts, events).per_event
        created = sum(e.kind == "created" for e in events)
        runs.append(f"{name}: {len(recs)} records, {created} stories created, {counted} alerts in the ledger")
        for label, names in parts.items():
            lines.append(_row(f"{name} | the product's ledger, {label}", product, names, stray=label == "whole set"))
            lines.append(_row(f"{name} | the bench's model, {label}", model, names, stray=False))
        differ += [f"{e} ({name})" for e in sorted(every) if product[e] != model[e]]
    intro = (
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, `python -m bench.product_alerts` (reads ../shared in place): "
        f"model `{settings.model_name}`, the records streamed through the embedded pipeline ({BATCH} per drain; "
        + "; ".join(runs)
        + "), one instant watchlist matching every record: the alerts in the ledger of the product's alert stage "
        "(its merge groups, related links, unconfirmed stories, waiting for the index), against the alert model "
        "of `bench.multilingual_stories` on the same run's story events (read back from the bus). An alert counts "
        "for the event of the report that opened its story; `irrelevant` records are no event (the product's "
        "alerts on them: last column)."
    )
    verdict = "agree on every event" if not differ else "DIFFER on " + ", ".join(differ)
    lines = [intro, "", *lines, "", f"The product and the model {verdict} ({time.perf_counter() - started:.0f} s)."]
    print("\n".join(lines))
    if not args.no_write:
        write_section(SECTION, lines)


if __name__ == "__main__":
    main()
