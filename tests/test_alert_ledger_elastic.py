"""The alert ledger's pairs in Elasticsearch (noida-db on loopback): once per (watchlist, story) across
alert-stage restarts from an EMPTY data directory, across merges, and between concurrent processes."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from indexer.alerting.alert_stage import AlertStage
from indexer.alerting.alerts import Alert, build_alert
from indexer.alerting.ledger import AlertLedger
from indexer.alerting.ledger_elastic import ElasticAlertLedger, claim_id
from indexer.alerting.watchlists import Watchlist
from indexer.store_elastic import ElasticStore
from sednaya_monitor.prometheus_metrics import PrometheusMetrics
from sednaya_monitor.settings import Settings
from sednaya_monitor.wiring import elastic_config, make_alert_stage, make_ledger
from stream.bus import Record
from tests.alert_fixtures import WebhookReceiver, make_event
from tests.store_fixtures import NoidaServer, elastic_settings, make_article

WL = Watchlist(name="sednaya-watch.ar", query="Sednaya", webhooks=("http://127.0.0.1:9/hook",))
FRESH = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)


@pytest.fixture
def dist_settings(noida_server: NoidaServer, tmp_path: Path) -> Settings:
    return elastic_settings(noida_server.url, tmp_path).replace(alert_allow_private_targets=True)


def _ledger(settings: Settings, tmp_path: Path, name: str) -> ElasticAlertLedger:
    """A ledger on its own, empty data directory (another host, or a process whose disk was lost)."""
    ledger = make_ledger(settings.replace(data_dir=tmp_path / name))
    assert isinstance(ledger, ElasticAlertLedger)
    return ledger


def _alert(story_id: str, url: str = "https://wire.example/a") -> Alert:
    article = make_article(url=url, story_id=story_id)
    return build_alert(
        make_event("created", article, story_id=story_id),
        WL,
        article,
        matched_terms=("Sednaya",),
        public_url="http://h",
    )


def test_a_pair_alerts_once_across_empty_data_directories(dist_settings: Settings, tmp_path: Path) -> None:
    first = _ledger(dist_settings, tmp_path, "alert-1")
    alert = _alert("s1")
    assert first.record_alert(alert, mode="instant", targets=WL.targets) is not None
    first.close()
    again = _ledger(dist_settings, tmp_path, "alert-2")  # a new process, nothing on its disk
    assert again.alerted_article(WL.name, "s1") == alert.article_id
    assert again.record_alert(alert, mode="instant", targets=WL.targets) is None
    assert again.pending() == []  # nothing to deliver here
    (mirrored,) = again.recent_alerts(WL.name)  # the claim is shown locally (Atom feed, alert pages)
    assert mirrored.alert == alert and mirrored.deliveries == {}
    assert again.record_alert(_alert("s2", "https://wire.example/b"), mode="instant", targets=WL.targets) is not None
    again.close()


def test_a_merged_story_never_alerts_twice_from_another_directory(dist_settings: Settings, tmp_path: Path) -> None:
    first = _ledger(dist_settings, tmp_path, "alert-1")
    assert first.record_alert(_alert("s-old"), mode="instant", targets=WL.targets) is not None
    assert first.record_merge("s-new", ["s-old"]) == 1
    first.close()
    again = _ledger(dist_settings, tmp_path, "alert-2")
    assert again.story_group("s-new") == {"s-new", "s-old"}
    assert again.survivor("s-old") == "s-new"
    assert again.record_alert(_alert("s-new", "https://wire.example/n"), mode="instant", targets=WL.targets) is None
    again.close()


def test_concurrent_processes_claim_a_pair_once(dist_settings: Settings, tmp_path: Path) -> None:
    """Eight ledgers (own directories) decide the same pair at once: exactly one gets to deliver. This
    rests on the server answering 409 to the second ``_create`` of an id (noida-db does; so does
    Elasticsearch), not on the get-before-create, which all eight may pass together."""
    ledgers = [_ledger(dist_settings, tmp_path, f"alert-{i}") for i in range(8)]
    alert = _alert("s-race")
    ledgers[0]._ensure()
    barrier = threading.Barrier(len(ledgers))
    rows: list[int | None] = [None] * len(ledgers)

    def decide(i: int) -> None:
        barrier.wait()
        rows[i] = ledgers[i].record_alert(alert, mode="instant", targets=WL.targets)

    threads = [threading.Thread(target=decide, args=(i,)) for i in range(len(ledgers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sum(row is not None for row in rows) == 1
    assert sum(len(ledger.pending()) for ledger in ledgers) == len(WL.targets)
    for ledger in ledgers:
        assert ledger.has_alert(WL.name, "s-race")
        ledger.close()


def test_the_server_refuses_a_second_create(dist_settings: Settings, tmp_path: Path) -> None:
    """What the race test rests on, asked of the server directly (``PUT /<index>/_create/<id>``)."""
    from elasticsearch import ConflictError

    ledger = _ledger(dist_settings, tmp_path, "alert-1")
    ledger._ensure()
    doc_id = claim_id("w", "s")
    ledger.client.create(index=ledger.claims, id=doc_id, document={"watchlist": "w"})
    try:
        ledger.client.create(index=ledger.claims, id=doc_id, document={"watchlist": "w2"})
    except ConflictError:
        pass
    else:
        pytest.skip("this Elasticsearch-API server accepts a duplicate _create; real Elasticsearch answers 409")
    finally:
        ledger.close()


@pytest.fixture
def store(dist_settings: Settings) -> Iterator[ElasticStore]:
    store = ElasticStore(elastic_config(dist_settings), refresh=True)
    store.ensure_ready()
    yield store
    store.wipe()
    store.close()


@pytest.mark.timeout(120)
def test_alert_stage_restarted_from_an_empty_directory_fires_nothing_twice(
    dist_settings: Settings, store: ElasticStore, tmp_path: Path, webhook: WebhookReceiver
) -> None:
    article = make_article(
        url="https://wire.example/x",
        title="Families search Sednaya military prison",
        text="Hundreds of families came to the military prison at Sednaya looking for relatives.",
        story_id="s-x",
        published=FRESH,
    )
    assert store.write_articles([article]) == []
    event = make_event("created", article, story_id="s-x")
    record = Record(topic="stories.events.v1", key="s-x", value=event.to_bytes(), offset=0)

    def stage(name: str) -> AlertStage:
        settings = dist_settings.replace(data_dir=tmp_path / name)
        return make_alert_stage(
            settings, store, PrometheusMetrics(CollectorRegistry()), digest_interval_s=None, wait_interval_s=None
        )

    first = stage("alert-a")
    first.repository.add(Watchlist(name="prison", query="Sednaya prison", webhooks=(webhook.url,)))
    assert first.process(event) == "alerted"
    assert first.wait_idle(30)
    webhook.wait_for(1)
    first.close()
    second = stage("alert-b")  # the event comes again (offsets not committed), to a process with an empty disk
    assert second.handle([record]) == [None]
    assert second.process(event) == "no_match"
    assert second.wait_idle(30)
    second.close()
    assert len(webhook.delivered) == 1


def test_counts_and_recent_alerts_come_from_the_store(dist_settings: Settings, tmp_path: Path) -> None:
    """``watch list``, the Atom feed and the alert pages of a serve replica on an empty directory."""
    first = _ledger(dist_settings, tmp_path, "alert-1")
    older, newer = _alert("s-1", "https://wire.example/1"), _alert("s-2", "https://wire.example/2")
    assert first.record_alert(older, mode="instant", targets=WL.targets) is not None
    assert first.record_alert(newer, mode="instant", targets=WL.targets) is not None
    first.close()
    serve = _ledger(dist_settings, tmp_path, "serve")
    assert serve.count_alerts(WL.name) == 2 and serve.count_alerts() == 2 and serve.count_alerts("other") == 0
    assert [a.alert for a in serve.recent_alerts(WL.name)] == [newer, older]
    assert [a.alert for a in serve.recent_alerts(WL.name, limit=1)] == [newer]
    serve.close()


def _claim_doc(ledger: ElasticAlertLedger, story_id: str) -> dict[str, object]:
    found = ledger.client.get(index=ledger.claims, id=claim_id(WL.name, story_id))
    return dict(found["_source"])


def test_a_claim_left_by_a_process_that_died_before_queueing_it_is_taken_over(
    dist_settings: Settings, tmp_path: Path
) -> None:
    """Killed between the claim and its pending rows: the redelivered event, on another process with an
    empty directory, takes the claim over and delivers; a third process still fires nothing."""
    alert = _alert("s-orphan")
    dead = _ledger(dist_settings, tmp_path, "alert-dead")
    assert dead.claim(alert, mode="instant", targets=WL.targets) is not None  # ... and then SIGKILL
    dead.close()
    heir = _ledger(dist_settings, tmp_path, "alert-heir")
    assert heir.alerted_article(WL.name, "s-orphan") is None  # taken over: decide again
    row = heir.record_alert(alert, mode="instant", targets=WL.targets)
    assert row is not None and [p.target for p in heir.pending()] == list(WL.targets)
    doc = _claim_doc(heir, "s-orphan")
    assert (doc["state"], doc["holder"]) == ("queued", heir.holder)
    third = _ledger(dist_settings, tmp_path, "alert-third")
    assert third.alerted_article(WL.name, "s-orphan") == alert.article_id
    assert third.record_alert(alert, mode="instant", targets=WL.targets) is None
    for ledger in (heir, third):
        ledger.close()


def test_a_slow_holder_loses_its_claim_to_the_taker_and_delivers_nothing(
    dist_settings: Settings, tmp_path: Path
) -> None:
    alert = _alert("s-slow")
    slow = _ledger(dist_settings, tmp_path, "alert-slow")
    created = slow.claim(alert, mode="instant", targets=WL.targets)
    assert created is not None
    taker = _ledger(dist_settings, tmp_path, "alert-taker")  # the event was redelivered meanwhile
    assert taker.alerted_article(WL.name, "s-slow") is None
    assert taker.record_alert(alert, mode="instant", targets=WL.targets) is not None
    # The slow one writes its pending rows and dies before queueing (its conditional write would fail:
    # the claim was written since it was read); restarted on its own directory, it resumes nothing.
    assert AlertLedger.record_alert(slow, alert, mode="instant", targets=WL.targets) is not None
    assert not slow._queue(created)
    slow.close()
    restarted = _ledger(dist_settings, tmp_path, "alert-slow")
    assert restarted.pending() == []
    assert restarted.delivery_counts(WL.name)["failed"] == len(WL.targets)
    assert len(taker.pending()) == len(WL.targets)
    for ledger in (restarted, taker):
        ledger.close()


def test_a_holder_restarted_on_its_directory_queues_and_resumes_its_claim(
    dist_settings: Settings, tmp_path: Path
) -> None:
    alert = _alert("s-resume")
    first = _ledger(dist_settings, tmp_path, "alert-1")
    assert first.claim(alert, mode="instant", targets=WL.targets) is not None
    assert AlertLedger.record_alert(first, alert, mode="instant", targets=WL.targets) is not None
    holder = first.holder
    first.close()  # killed before queueing
    again = _ledger(dist_settings, tmp_path, "alert-1")
    assert again.holder == holder
    assert [p.target for p in again.pending()] == list(WL.targets)
    assert _claim_doc(again, "s-resume")["state"] == "queued"
    other = _ledger(dist_settings, tmp_path, "alert-2")
    assert other.alerted_article(WL.name, "s-resume") == alert.article_id  # queued: nothing to take over
    for ledger in (again, other):
        ledger.close()


def test_a_holder_killed_between_its_claim_and_its_rows_delivers_when_the_event_comes_again(
    dist_settings: Settings, tmp_path: Path
) -> None:
    """The same process, restarted on its own directory (its holder id kept there), gets the redelivered
    event: its own claim without local rows is its to deliver, not an alert already sent."""
    alert = _alert("s-own")
    first = _ledger(dist_settings, tmp_path, "alert-own")
    assert first.claim(alert, mode="instant", targets=WL.targets) is not None  # ... and then SIGKILL
    first.close()
    again = _ledger(dist_settings, tmp_path, "alert-own")
    assert again.pending() == []  # no rows were written: nothing to resume
    assert again.alerted_article(WL.name, "s-own") is None  # the redelivered event is decided again
    row = again.record_alert(alert, mode="instant", targets=WL.targets)
    assert row is not None and [p.target for p in again.pending()] == list(WL.targets)
    assert _claim_doc(again, "s-own")["state"] == "queued"
    assert again.record_alert(alert, mode="instant", targets=WL.targets) is None  # and only once
    other = _ledger(dist_settings, tmp_path, "alert-other")
    assert other.alerted_article(WL.name, "s-own") == alert.article_id
    for ledger in (again, other):
        ledger.close()


def test_a_dead_holders_claim_is_not_taken_over_by_an_event_that_delivers_nothing(
    dist_settings: Settings, tmp_path: Path
) -> None:
    """A process sees the dead holder's claim through another story of the merge group and its event
    delivers nothing (no match, not fresh): the claim stays for whoever delivers, here the process that
    gets the claimed story's own event again."""
    alert = _alert("s-claimed")
    dead = _ledger(dist_settings, tmp_path, "alert-dead")
    assert dead.claim(alert, mode="instant", targets=WL.targets) is not None
    dead.close()
    bystander = _ledger(dist_settings, tmp_path, "alert-bystander")
    bystander.record_merge("s-claimed", ["s-merged"])
    assert bystander.alerted_article(WL.name, "s-merged") is None  # decides, and its decision is to skip
    assert _claim_doc(bystander, "s-claimed")["state"] == "claimed"
    heir = _ledger(dist_settings, tmp_path, "alert-heir")
    assert heir.alerted_article(WL.name, "s-claimed") is None
    assert heir.record_alert(alert, mode="instant", targets=WL.targets) is not None
    assert [p.target for p in heir.pending()] == list(WL.targets)
    assert (_claim_doc(heir, "s-claimed")["state"], _claim_doc(heir, "s-claimed")["holder"]) == ("queued", heir.holder)
    assert bystander.alerted_article(WL.name, "s-merged") == alert.article_id  # settled now
    for ledger in (bystander, heir):
        ledger.close()


def test_a_related_link_and_a_merge_of_one_story_are_both_kept_in_the_store(
    dist_settings: Settings, tmp_path: Path
) -> None:
    first = _ledger(dist_settings, tmp_path, "alert-1")
    assert first.record_alert(_alert("s-older"), mode="instant", targets=WL.targets) is not None
    assert first.record_merge("s-older", ["s-facet"], kind="related") == 1
    assert first.record_merge("s-arabic", ["s-facet"]) == 1
    first.close()
    again = _ledger(dist_settings, tmp_path, "alert-2")  # another host: only the store's links
    assert again.story_group("s-arabic") == {"s-older", "s-facet", "s-arabic"}
    assert again.alerted_article(WL.name, "s-arabic") is not None
    assert again.record_alert(_alert("s-arabic", "https://wire.example/ar"), mode="instant", targets=()) is None
    assert again.survivor("s-facet") == "s-arabic"  # the merge first
    assert again.record_merge("s-older", ["s-facet"], kind="related") == 1  # new to this directory ...
    assert again.survivor("s-facet") == "s-arabic"  # ... and the store's merge stays a merge
    again.close()
