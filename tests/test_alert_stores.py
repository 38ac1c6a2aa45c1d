"""Watchlist matching goes through the store's own search translation: the same alerts on both stores
(the embedded SQLite store and Elasticsearch through the noida-db stand-in)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from prometheus_client import CollectorRegistry

from indexer.alert_stage import AlertStage
from indexer.store import SearchStore
from indexer.watchlists import Watchlist
from stream.metrics import Metrics
from stream.settings import Settings
from tests.alert_fixtures import WebhookReceiver, make_event
from tests.store_fixtures import make_article


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
    )
    ar = make_article(
        url="https://arabic-news.example/b",
        title="عائلات المعتقلين في سجن صيدنايا",
        text="توافدت العائلات إلى سجن صيدنايا العسكري بحثا عن ذويها.",
        lang="ar",
        source="arabic-news",
        story_id="s-ar",
    )
    monastery = make_article(
        url="https://travel.example/c",
        title="A visit to the Sednaya monastery",
        text="The old monastery of Our Lady of Saidnaya draws pilgrims every September.",
        source="travel",
        story_id="s-travel",
    )
    store = contract_store
    assert store.write_articles([en, ar, monastery]) == []
    stage = AlertStage(settings_factory(), store, Metrics(CollectorRegistry()))
    for wl in (
        Watchlist(name="prison", query='"military prison" OR سجن', webhooks=(webhook.url,)),
        Watchlist(name="not-monastery", query="Sednaya NOT monastery", webhooks=(webhook.url,)),
        Watchlist(name="arabic", query="صيدنايا", lang="ar", webhooks=(webhook.url,)),
        Watchlist(name="travel-only", query="Sednaya", source="travel", webhooks=(webhook.url,)),
    ):
        stage.repository.add(wl)
    events = [make_event("created", a, story_id=str(a.story_id)) for a in (en, ar, monastery)]
    for event in events:
        assert stage.process(event) in {"alerted", "no_match"}
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
