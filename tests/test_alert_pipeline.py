"""End to end: fixture articles through ``Pipeline`` (real model, clustering, embedded bus and store)
to a real webhook receiver. Here the clustering stage decides what is new, not the test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from indexer.alerting.alert_stage import AlertStage
from indexer.alerting.watchlists import SqliteWatchlistRepository, Watchlist
from sednaya_monitor.pipeline import Pipeline
from sednaya_monitor.settings import Settings
from stream.article import Article
from stream.embedding import SentenceTransformerEmbedder
from tests import story_corpus as corpus
from tests.alert_fixtures import WebhookReceiver

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

FIXTURES = Path(__file__).parent / "fixtures" / "articles"


@pytest.fixture
def pipeline(
    settings_factory: Callable[..., Settings], embedder: SentenceTransformerEmbedder, webhook: WebhookReceiver
) -> Iterator[Pipeline]:
    settings = settings_factory(
        public_url="https://mon.example",
        alert_allow_private_targets=True,  # the receiver listens on 127.0.0.1
        alert_max_age_s=30 * 365 * 86400.0,  # the corpus is dated 2017: widen the freshness window (the age
        # guard itself is tested in tests/test_alert_stage.py)
    )
    repo = SqliteWatchlistRepository.in_data_dir(settings.data_dir)
    repo.add(Watchlist(name="sednaya", query="Sednaya OR Saydnaya OR صيدنايا", webhooks=(webhook.url,), secret="k"))
    repo.close()
    p = Pipeline(settings, embedder=embedder)
    yield p
    _alert_stage(p).close()
    p.close()


def _alert_stage(p: Pipeline) -> AlertStage:
    return p.stage(AlertStage)


def _run(p: Pipeline, articles: list[Article]) -> None:
    p.publish(articles)
    summary = p.drain()
    assert summary.dead_letters == 0
    assert _alert_stage(p).wait_idle(60)


def test_new_story_plus_five_syndicated_copies_then_an_anniversary_piece(
    pipeline: Pipeline, webhook: WebhookReceiver
) -> None:
    original = corpus.crematorium_original()
    _run(pipeline, [original, *corpus.crematorium_copies(), corpus.unrelated_regatta()])
    (alert,) = webhook.wait_for(1)
    body = alert.json()
    assert body["article"]["id"] == original.id
    assert body["story"]["link"].startswith("https://mon.example/stories/")
    assert body["story"]["id"] == pipeline.store.get_article(original.id).story_id  # type: ignore[union-attr]
    stage = _alert_stage(pipeline)
    assert stage.ledger.open_items("sednaya") == 5  # the copies wait for the digest
    # a year later, an anniversary piece re-tells the briefing: it joins the old story, no new alert
    _run(pipeline, [corpus.anniversary_piece()])
    assert len(webhook.delivered) == 1
    assert stage.ledger.count_alerts("sednaya") == 1


def test_two_new_stories_in_two_languages_alert_once_each(pipeline: Pipeline, webhook: WebhookReceiver) -> None:
    arabic = corpus.unrelated_arabic()
    _run(pipeline, [corpus.crematorium_original(), arabic])
    delivered = webhook.wait_for(2)
    assert sorted(d.json()["article"]["lang"] for d in delivered) == ["ar", "en"]
    assert len({d.json()["story"]["id"] for d in delivered}) == 2


def test_backfill_articles_never_fire_instant_alerts(pipeline: Pipeline, webhook: WebhookReceiver) -> None:
    old = corpus.crematorium_original().replace(backfill=True)
    _run(pipeline, [old])
    assert pipeline.store.get_article(old.id) is not None
    assert webhook.requests == []
    assert _alert_stage(pipeline).ledger.count_alerts() == 0
