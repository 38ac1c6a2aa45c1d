"""Watchlist matching goes through the store's own search translation: the same alerts on both stores
(the embedded SQLite store and Elasticsearch through the noida-db stand-in)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry

from indexer.alerting.watchlists import Watchlist
from indexer.store import SearchStore
from sednaya_monitor.prometheus_metrics import PrometheusMetrics
from sednaya_monitor.settings import Settings
from sednaya_monitor.wiring import make_alert_stage
from stream.bus import Record
from stream.story import StoryEvent
from tests.alert_fixtures import WebhookReceiver, allow_loopback, make_event
from tests.store_fixtures import make_article

FRESH = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)  # within alert_max_age_s


def _records(events: list[StoryEvent]) -> list[Record]:
    return [
        Record(topic="stories.events.v1", key=e.story.id, value=e.to_bytes(), offset=i) for i, e in enumerate(events)
    ]


@pytest.mark.timeout(120)
def test_same_alerts_on_both_stores(
    contract_store: SearchStore, settings_factory: Callable[..., Settings], webhook: WebhookReceiver
) -> None:
    en = make_article(
        url="https://wire.example/a",
        title="Families search Sednaya military prison",
        text="Hundreds of families came to the military prison at Sednaya looking for relatives.",
        source="wire",
        story_id="s-en",
        published=FRESH,
    )
    ar = make_article(
        url="https://arabic-news.example/b",
        title="عائلات المعتقلين في سجن صيدنايا",
        text="توافدت العائلات إلى سجن صيدنايا العسكري بحثا عن ذويها.",
        lang="ar",
        source="arabic-news",
        story_id="s-ar",
        published=FRESH,
    )
    monastery = make_article(
        url="https://travel.example/c",
        title="A visit to the Sednaya monastery",
        text="The old monastery of Our Lady of Saidnaya draws pilgrims every September.",
        source="travel",
        story_id="s-travel",
        published=FRESH,
    )
    store = contract_store
    assert store.write_articles([en, ar, monastery]) == []
    stage = make_alert_stage(allow_loopback(settings_factory)(), store, PrometheusMetrics(CollectorRegistry()))
    for wl in (
        Watchlist(name="prison", query='"military prison" OR سجن', webhooks=(webhook.url,)),
        Watchlist(name="not-monastery", query="Sednaya NOT monastery", webhooks=(webhook.url,)),
        Watchlist(name="arabic", query="صيدنايا", lang="ar", webhooks=(webhook.url,)),
        Watchlist(name="travel-only", query="Sednaya", source="travel", webhooks=(webhook.url,)),
    ):
        stage.repository.add(wl)
    events = [make_event("created", a, story_id=str(a.story_id)) for a in (en, ar, monastery)]
    # events go through handle(): an article the store does not show yet (Elasticsearch refresh) waits
    assert stage.handle(_records(events)) == [None] * 3
    assert stage.wait_idle(60)
    got = sorted((d.json()["watchlist"], d.json()["story"]["id"]) for d in webhook.wait_for(5))
    assert got == [
        ("arabic", "s-ar"),
        ("not-monastery", "s-en"),
        ("prison", "s-ar"),
        ("prison", "s-en"),
        ("travel-only", "s-travel"),
    ]
    terms = {(d.json()["watchlist"], d.json()["story"]["id"]): d.json()["matched_terms"] for d in webhook.delivered}
    assert terms[("arabic", "s-ar")] == ["صيدنايا"]
    stage.close()


@pytest.mark.timeout(120)
def test_whole_story_matching_is_the_same_on_both_stores(
    contract_store: SearchStore, settings_factory: Callable[..., Settings], webhook: WebhookReceiver
) -> None:
    """A story that starts in Arabic fires a lang:en watchlist when English coverage joins, naming it."""
    ar = make_article(
        url="https://arabic-news.example/m1",
        title="عائلات المعتقلين في سجن صيدنايا",
        text="توافدت العائلات إلى سجن صيدنايا العسكري بحثا عن ذويها.",
        lang="ar",
        source="arabic-news",
        story_id="s-multi",
        published=FRESH,
    )
    en = make_article(
        url="https://wire.example/m2",
        title="Families search Sednaya military prison",
        text="Hundreds of families came to the military prison at Sednaya looking for relatives.",
        source="wire",
        story_id="s-multi",
        published=FRESH + timedelta(minutes=30),
    )
    store = contract_store
    assert store.write_articles([ar, en]) == []
    stage = make_alert_stage(allow_loopback(settings_factory)(), store, PrometheusMetrics(CollectorRegistry()))
    stage.repository.add(Watchlist(name="english", query="Sednaya prison", lang="en", webhooks=(webhook.url,)))
    events = [
        make_event("created", ar, story_id="s-multi"),
        make_event("updated", en, story_id="s-multi", first_article_id=ar.id, first_seen=ar.published),
    ]
    assert stage.handle(_records(events)) == [None, None]
    (delivered,) = webhook.wait_for(1, timeout_s=60)
    body = delivered.json()
    assert (body["story"]["id"], body["article"]["id"]) == ("s-multi", en.id)
    assert (body["article"]["lang"], body["article"]["source"]) == ("en", "wire")
    assert stage.wait_idle(60)
    stage.close()
