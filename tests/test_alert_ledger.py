"""The alert ledger (pair recorded once, pending -> sent/failed, digests) and the Atom feed."""

from __future__ import annotations

import contextlib
import sqlite3
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import feedparser
import pytest

from indexer.alerting.alerts import Alert, build_alert
from indexer.alerting.atom import feed_path, render_atom
from indexer.alerting.ledger import AlertLedger
from indexer.alerting.watchlists import Watchlist
from stream.bus import Record
from tests.alert_fixtures import make_event
from tests.store_fixtures import make_article

WL = Watchlist(name="sednaya-watch", query="Sednaya OR صيدنايا", webhooks=("http://127.0.0.1:9/hook",))


def _alert(story_id: str, kind: str = "created", **kw: object) -> Alert:
    article = make_article(**kw)
    return build_alert(
        make_event(kind, article, story_id=story_id), WL, article, matched_terms=("Sednaya",), public_url="http://h"
    )


def test_pair_is_recorded_once_with_pending_deliveries(data_dir: Path) -> None:
    ledger = AlertLedger.in_data_dir(data_dir)
    alert = _alert("s1")
    row = ledger.record_alert(alert, mode="instant", targets=WL.targets)
    assert row is not None
    assert ledger.record_alert(alert, mode="instant", targets=WL.targets) is None
    assert ledger.has_alert(WL.name, "s1") and not ledger.has_alert(WL.name, "s2")
    (pending,) = ledger.pending()
    assert (pending.kind, pending.ref_id, pending.target, pending.watchlist) == (
        "alert",
        row,
        "webhook:http://127.0.0.1:9/hook",
        WL.name,
    )
    ledger.mark("alert", row, pending.target, "sent", attempts=3)
    assert ledger.pending() == []
    assert ledger.delivery_counts(WL.name) == {"pending": 0, "sent": 1, "failed": 0}
    found = ledger.get_alert(row)
    assert found is not None and found.alert == alert and found.deliveries == {pending.target: "sent"}
    assert found.alert_id == "sednaya-watch/s1"
    ledger.close()


def test_ledger_survives_reopening(data_dir: Path) -> None:
    ledger = AlertLedger.in_data_dir(data_dir)
    ledger.record_alert(_alert("s1"), mode="instant", targets=WL.targets)
    ledger.close()
    again = AlertLedger.in_data_dir(data_dir)
    assert len(again.pending()) == 1
    assert again.record_alert(_alert("s1"), mode="instant", targets=WL.targets) is None
    again.close()


def test_merge_groups_count_as_one_story_and_survive_reopening(data_dir: Path) -> None:
    ledger = AlertLedger.in_data_dir(data_dir)
    assert ledger.record_alert(_alert("absorbed"), mode="instant", targets=()) is not None
    assert ledger.record_merge("survivor", ["absorbed", "survivor"]) == 1  # the survivor itself is ignored
    assert ledger.record_merge("survivor", ["absorbed"]) == 0  # a redelivered merged event
    ledger.record_merge("later", ["survivor"])  # the survivor is absorbed in turn: one group of three
    ledger.close()
    again = AlertLedger.in_data_dir(data_dir)
    for story in ("absorbed", "survivor", "later"):
        assert again.has_alert(WL.name, story), story
    assert again.record_alert(_alert("later"), mode="instant", targets=()) is None  # no second alert
    assert again.story_group("absorbed") == {"absorbed", "survivor", "later"}
    assert not again.has_alert("other-watchlist", "survivor") and not again.has_alert(WL.name, "unrelated")
    again.close()


@pytest.mark.parametrize("merge_first", [False, True])
def test_a_story_related_to_one_story_and_merged_into_another_keeps_both_links(
    data_dir: Path, merge_first: bool
) -> None:
    # "facet" was created related to "older" (alerted), and later merged into "arabic" (which did not match):
    # the group is all three, in either order of the two links, so "arabic" never alerts (it did, when the
    # second link replaced the first)
    ledger = AlertLedger.in_data_dir(data_dir)
    assert ledger.record_alert(_alert("older"), mode="instant", targets=()) is not None
    links = [("older", "related"), ("arabic", "merged")]
    for survivor, kind in reversed(links) if merge_first else links:
        assert ledger.record_merge(survivor, ["facet"], kind=kind) == 1  # type: ignore[arg-type]
    assert ledger.story_group("arabic") == {"older", "facet", "arabic"}
    assert ledger.has_alert(WL.name, "arabic")
    assert ledger.record_alert(_alert("arabic"), mode="instant", targets=()) is None
    assert ledger.record_merge("older", ["facet"], kind="related") == 0  # a redelivered created event
    ledger.close()


def test_survivor_is_one_story_for_a_chain_of_merges_and_related_links(data_dir: Path) -> None:
    ledger = AlertLedger.in_data_dir(data_dir)
    ledger.record_merge("a", ["b"], kind="related")  # b is about a
    ledger.record_merge("b", ["c"])  # c merged into b
    assert {story: ledger.survivor(story) for story in "abc"} == {"a": "a", "b": "a", "c": "a"}
    # a merge folding the older story into the one related to it (its first article was dated earlier):
    # the two links point at each other, and both stories answer the same survivor, the merge's
    ledger.record_merge("y", ["x"], kind="related")
    ledger.record_merge("y", ["x"])  # the same pair, merged after all: a merge
    ledger.record_merge("q", ["p"], kind="related")  # p is about q
    ledger.record_merge("p", ["q"])  # q merged into p
    assert (ledger.survivor("x"), ledger.survivor("y")) == ("y", "y")
    assert (ledger.survivor("p"), ledger.survivor("q")) == ("p", "p")
    assert ledger.survivor("never-linked") == "never-linked"
    ledger.close()


def test_a_ledger_of_an_older_version_is_upgraded_with_its_merges(data_dir: Path) -> None:
    path = data_dir / "alerts.sqlite3"
    data_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.closing(sqlite3.connect(path)) as db:  # the merges table as it was (one row per absorbed story)
        db.execute("CREATE TABLE merges (absorbed TEXT PRIMARY KEY, survivor TEXT NOT NULL, at TEXT NOT NULL)")
        db.execute("CREATE INDEX merges_by_survivor ON merges (survivor)")
        db.execute("INSERT INTO merges VALUES ('absorbed', 'survivor', '2025-01-01T00:00:00Z')")
        db.commit()
    ledger = AlertLedger(path)
    assert ledger.story_group("absorbed") == {"absorbed", "survivor"}
    assert ledger.record_merge("older", ["absorbed"], kind="related") == 1  # a second link of the same story
    assert ledger.story_group("survivor") == {"absorbed", "survivor", "older"}
    ledger.close()
    again = AlertLedger(path)  # opened again: nothing to upgrade, nothing lost
    assert again.story_group("older") == {"absorbed", "survivor", "older"}
    again.close()


def test_waiting_events_survive_reopening_in_order(data_dir: Path) -> None:
    ledger = AlertLedger.in_data_dir(data_dir)
    record = Record(topic="t", key="k", value=b"\x00event", headers={"entered_at": "x"}, partition=2, offset=7)
    first = ledger.park(record, story_id="s", article_id="a1", next_try=100.0)
    ledger.park(replace(record, offset=8), story_id="s", article_id="a2", next_try=50.0)  # due earlier, behind a1
    ledger.park(replace(record, offset=9), story_id="t", article_id="b1", next_try=50.0)
    assert ledger.park(record, story_id="s", article_id="a1", next_try=100.0) == first  # the same record again
    ledger.close()
    again = AlertLedger.in_data_dir(data_dir)
    assert [w.article_id for w in again.waiting()] == ["a1", "a2", "b1"]
    assert again.waiting()[0].record == record and again.is_waiting("s")
    assert [w.article_id for w in again.waiting(due_at=60.0)] == ["b1"]  # a2 waits behind a1
    assert [w.article_id for w in again.waiting(due_at=100.0)] == ["a1", "a2", "b1"]
    count, oldest = again.waiting_summary()
    assert count == 3 and oldest is not None and oldest.id == first
    again.unpark(first)
    assert [w.article_id for w in again.waiting(due_at=60.0)] == ["a2", "b1"]
    again.close()


def test_digest_takes_open_items_once(data_dir: Path) -> None:
    ledger = AlertLedger.in_data_dir(data_dir)
    first, copy = _alert("s1"), _alert("s1", kind="updated")
    assert ledger.add_digest_item(first) and ledger.add_digest_item(copy)
    assert not ledger.add_digest_item(copy)
    assert ledger.open_items(WL.name) == 2
    start, end = datetime(2024, 12, 9, tzinfo=UTC), datetime(2024, 12, 10, tzinfo=UTC)
    digest = ledger.open_digest(WL.name, period_start=start, period_end=end, targets=WL.targets)
    assert digest is not None
    assert [e.article_id for e in digest.entries] == [first.article_id, copy.article_id]
    assert ledger.open_items(WL.name) == 0
    assert ledger.open_digest(WL.name, period_start=end, period_end=end, targets=WL.targets) is None
    assert ledger.last_digest_end(WL.name) == end
    assert [(p.kind, p.ref_id) for p in ledger.pending()] == [("digest", digest.id)]
    ledger.close()


def test_atom_feed_parses_as_atom_with_the_alerts(data_dir: Path) -> None:
    ledger = AlertLedger.in_data_dir(data_dir)
    published = datetime(2024, 12, 9, 10, 0, tzinfo=UTC)
    en = _alert("story-en", title="Families search Sednaya & its cells", published=published)
    ar = _alert("story-ar", title="عائلات تبحث في سجن صيدنايا", lang="ar", published=published + timedelta(hours=1))
    for alert in (en, ar):
        ledger.record_alert(alert, mode="instant", targets=())
    body = render_atom(WL, ledger.recent_alerts(WL.name), "https://mon.example")
    assert body.startswith(b"<?xml version='1.0' encoding='utf-8'?>")
    feed = feedparser.parse(body)
    assert feed.bozo == 0, feed.get("bozo_exception")
    assert feed.version == "atom10"
    assert feed.feed.title == "Sednaya Monitor: sednaya-watch"
    assert feed.feed.id.startswith("tag:mon.example,")
    self_link = next(link.href for link in feed.feed.links if link.rel == "self")
    assert (
        self_link
        == "https://mon.example" + feed_path(WL.name)
        == "https://mon.example/watchlists/sednaya-watch/atom.xml"
    )
    assert [e.title for e in feed.entries] == [ar.story_title, en.story_title]  # newest first
    entry = feed.entries[1]
    assert entry.link == "http://h/stories/story-en"
    assert next(link.href for link in entry.links if link.rel == "related") == en.url
    assert "Matched: Sednaya" in entry.summary
    assert entry.published_parsed[:4] == (2024, 12, 9, 10)
    assert len({e.id for e in feed.entries}) == 2
    ledger.close()


def test_atom_feed_of_a_watchlist_without_alerts_is_valid() -> None:
    feed = feedparser.parse(render_atom(WL, [], "http://127.0.0.1:8080"))
    assert feed.bozo == 0 and feed.version == "atom10" and feed.entries == []


def test_atom_drops_characters_xml_forbids(data_dir: Path) -> None:
    ledger = AlertLedger.in_data_dir(data_dir)
    ledger.record_alert(_alert("s1", title="bad\x00 control\x1b chars"), mode="instant", targets=())
    feed = feedparser.parse(render_atom(WL, ledger.recent_alerts(WL.name), "http://h"))
    assert feed.bozo == 0
    assert feed.entries[0].title == "bad control chars"
    ledger.close()
