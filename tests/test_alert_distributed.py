"""Distributed mode, the index stage down for a minute: every instant alert still arrives, once.

Separate OS processes on loopback (``tests.distributed_fixtures``): ``embed`` and ``alert`` run, ``index``
does not. The story events reach the alert stage before their articles are in the store: the events
wait (``/healthz`` red, ``sednaya_alert_events_waiting``), nothing is dead-lettered. After 60 s the
index stage starts; every alert is delivered once and the health turns green.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from indexer.alerting.watchlists import Watchlist
from indexer.alerting.watchlists_elastic import ElasticWatchlistRepository
from sednaya_monitor.wiring import elastic_config
from stream.article import Article
from tests import story_corpus as corpus
from tests.alert_fixtures import WebhookReceiver, serve_webhook
from tests.distributed_fixtures import Deployment, ElasticServer, new_deployment, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

INDEX_DOWN_S = 60.0  # how long the index stage stays away (the scenario)
EVENTS_TIMEOUT_S = 300.0  # embed loads the model first: slow on a busy 2-core box


def _fresh(article: Article, hours_ago: float) -> Article:
    """The corpus is dated 2017-2025: the same texts as if published just now (within alert_max_age_s)."""
    when = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=hours_ago)
    return article.replace(published=when, discovered_at=when, fetched_at=when)


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with serve_webhook() as r:
        yield r


@pytest.fixture
def deployment(dist_elastic: ElasticServer, tmp_path: Path) -> Iterator[Deployment]:
    d = new_deployment(dist_elastic, tmp_path, alert_allow_private_targets="true")  # the receiver is loopback
    yield d
    d.close()


def test_index_stage_down_for_a_minute_every_alert_arrives_once(
    deployment: Deployment, receiver: WebhookReceiver
) -> None:
    repo = ElasticWatchlistRepository(elastic_config(deployment.settings))
    repo.add(Watchlist(name="sednaya", query="Sednaya OR صيدنايا", webhooks=(receiver.url,), secret="k"))
    repo.close()
    embed = deployment.stage("embed")
    alert = deployment.stage("alert")
    alert.wait_serving()
    articles = [
        _fresh(corpus.crematorium_original(), 5),
        _fresh(corpus.commander_arrest(), 3),
        _fresh(corpus.turk_visit_ar(), 1),
    ]
    started = time.monotonic()
    deployment.publish(articles)
    embed.wait_serving()
    wait_for(
        "the alert stage to hold every story event (their articles are not indexed)",
        lambda: alert.sample("sednaya_alert_events_waiting") >= len(articles),
        EVENTS_TIMEOUT_S,
        deployment=deployment,
    )
    assert alert.health() == 503  # red, saying why (docs/alerts.md)
    assert "wait for their article to be indexed" in _healthz(alert.url)
    remaining = INDEX_DOWN_S - (time.monotonic() - started)
    if remaining > 0:
        time.sleep(remaining)
    assert receiver.requests == []
    assert alert.sample("sednaya_dead_letters_total") == 0
    assert deployment.bus.dead_letters(deployment.settings.topic_story_events) == []

    deployment.stage("index")  # the index stage comes back
    docs = deployment.wait_indexed([a.id for a in articles], EVENTS_TIMEOUT_S)
    stories = {a.story_id for a in docs}
    assert len(stories) == len(articles)  # three events, three stories
    delivered = receiver.wait_for(len(stories), timeout_s=120)
    wait_for("the alert health to turn green", lambda: alert.health() == 200, 60, deployment=deployment)
    time.sleep(3.0)  # a second copy would arrive by now
    delivered = receiver.delivered
    assert sorted(d.json()["story"]["id"] for d in delivered) == sorted(stories)  # type: ignore[type-var]  # each alert once
    assert {d.json()["article"]["id"] for d in delivered} == {a.id for a in articles}
    assert alert.sample("sednaya_alert_events_waiting") == 0
    assert alert.sample("sednaya_dead_letters_total") == 0
    assert deployment.bus.dead_letters(deployment.settings.topic_story_events) == []


def _healthz(url: str) -> str:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url + "/healthz", timeout=5) as response:  # loopback only
            return str(response.read().decode())
    except urllib.error.HTTPError as exc:
        return str(exc.read().decode())
