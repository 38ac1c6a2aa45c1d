"""The alert stage over the real embedded store, ledger, webhook receiver and SMTP server.

Story events are built here as the clustering stage would publish them; the end-to-end scenarios
through the whole pipeline (embedding and clustering deciding the events) are in
``tests/test_alert_pipeline.py``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import feedparser
import pytest
from prometheus_client import CollectorRegistry

from indexer.alert_stage import AlertStage
from indexer.atom import render_atom
from indexer.ledger import AlertLedger
from indexer.store_embedded import EmbeddedStore
from indexer.watchlists import SqliteWatchlistRepository, Watchlist
from stream.article import Article
from stream.bus import Record
from stream.metrics import Metrics
from stream.settings import Settings
from stream.story import StoryEvent
from tests.alert_fixtures import SmtpServer, WebhookReceiver, free_port, make_event
from tests.store_fixtures import make_article

SettingsFactory = Callable[..., Settings]
PUBLISHED = datetime(2024, 12, 9, 10, 0, tzinfo=UTC)


@pytest.fixture
def store(data_dir: Path) -> Iterator[EmbeddedStore]:
    s = EmbeddedStore(data_dir / "store.sqlite3")
    s.ensure_ready()
    yield s
    s.close()


@pytest.fixture
def metrics() -> Metrics:
    return Metrics(CollectorRegistry())


def _stage(settings: Settings, store: EmbeddedStore, metrics: Metrics) -> AlertStage:
    return AlertStage(settings, store, metrics, article_wait_s=0.0)


def _records(events: list[StoryEvent]) -> list[Record]:
    return [
        Record(topic="stories.events.v1", key=e.story.id, value=e.to_bytes(), offset=i) for i, e in enumerate(events)
    ]


def _count(metrics: Metrics, channel: str, result: str) -> float:
    return metrics.registry.get_sample_value("sednaya_alerts_total", {"channel": channel, "result": result}) or 0.0


def _stored(store: EmbeddedStore, *articles: Article) -> None:
    assert store.write_articles(list(articles)) == []


def _sednaya_article(n: int, **kw: Any) -> Article:
    fields: dict[str, Any] = {
        "url": f"https://wire.example/2024/12/09/sednaya-{n}",
        "title": "Families search Sednaya prison for missing relatives",
        "text": "Hundreds of families came to Sednaya prison north of Damascus to look for detainees.",
        "source": "wire",
        "published": PUBLISHED,
        "story_id": "story-open",
    }
    fields.update(kw)
    return make_article(**fields)


@pytest.mark.timeout(60)
def test_new_story_with_five_syndicated_copies_alerts_once(
    settings_factory: SettingsFactory, store: EmbeddedStore, metrics: Metrics, webhook: WebhookReceiver
) -> None:
    settings = settings_factory(public_url="https://mon.example")
    first = _sednaya_article(0, story_role="first")
    copies = [
        _sednaya_article(i, source=f"paper-{i}", story_role="duplicate", duplicate_of=first.id) for i in range(1, 6)
    ]
    _stored(store, first, *copies)
    stage = _stage(settings, store, metrics)
    stage.repository.add(Watchlist(name="sednaya", query="Sednaya OR صيدنايا", webhooks=(webhook.url,), secret="k"))
    events = [make_event("created", first, story_id="story-open")] + [
        make_event("updated", c, story_id="story-open", first_article_id=first.id, article_count=i + 2)
        for i, c in enumerate(copies)
    ]
    assert stage.handle(_records(events)) == [None] * 6
    assert stage.wait_idle(30)
    (delivery,) = webhook.wait_for(1)
    body = delivery.json()
    assert body["story"]["link"] == "https://mon.example/stories/story-open"
    assert body["article"]["id"] == first.id and body["matched_terms"] == ["Sednaya"]
    assert stage.ledger.count_alerts("sednaya") == 1
    assert stage.ledger.open_items("sednaya") == 5  # the copies wait for the digest
    assert _count(metrics, "webhook", "matched") == 1 and _count(metrics, "webhook", "sent") == 1
    latency = metrics.registry.get_sample_value("sednaya_alert_latency_seconds_count", {"channel": "webhook"})
    assert latency == 1
    # the same events again (a bus redelivery) fire nothing more
    assert stage.handle(_records(events)) == [None] * 6
    assert stage.wait_idle(30)
    time.sleep(0.2)
    assert len(webhook.delivered) == 1
    stage.close()


@pytest.mark.timeout(60)
def test_anniversary_retelling_joining_an_old_story_alerts_nobody(
    settings_factory: SettingsFactory, store: EmbeddedStore, metrics: Metrics, webhook: WebhookReceiver
) -> None:
    old = _sednaya_article(
        0, title="Amnesty report on Sednaya executions", published=datetime(2017, 2, 7, tzinfo=UTC), story_id="old"
    )
    retelling = _sednaya_article(
        1,
        title="Eight years after the Sednaya report, families still wait",
        story_id="old",
        story_role="follow_up",
    )
    _stored(store, old, retelling)
    stage = _stage(settings_factory(), store, metrics)
    stage.repository.add(Watchlist(name="sednaya", query="Sednaya", webhooks=(webhook.url,)))
    # the old story was loaded by a backfill (no alert), the re-telling joins it: an update
    events = [
        make_event("created", old, story_id="old", backfill=True),
        make_event("updated", retelling, story_id="old", first_article_id=old.id),
    ]
    assert stage.handle(_records(events)) == [None, None]
    assert stage.wait_idle(30)
    assert webhook.requests == []
    assert stage.ledger.count_alerts() == 0
    assert stage.ledger.open_items("sednaya") == 1  # the re-telling is in the next digest
    stage.close()


@pytest.mark.timeout(60)
def test_two_new_stories_in_two_languages_alert_once_each(
    settings_factory: SettingsFactory, store: EmbeddedStore, metrics: Metrics, webhook: WebhookReceiver
) -> None:
    en = _sednaya_article(0, story_id="s-en")
    ar = make_article(
        url="https://arabic-news.example/2024/12/10/saydnaya",
        title="الدفاع المدني ينهي البحث عن أقبية سرية في سجن صيدنايا",
        text="أعلن الدفاع المدني انتهاء عمليات البحث في سجن صيدنايا العسكري دون العثور على أقبية سرية.",
        lang="ar",
        source="arabic-news",
        story_id="s-ar",
        published=PUBLISHED + timedelta(days=1),
    )
    other = make_article(title="Football results", text="The match ended in a draw.", story_id="s-other")
    _stored(store, en, ar, other)
    stage = _stage(settings_factory(), store, metrics)
    stage.repository.add(Watchlist(name="both", query="Sednaya OR صيدنايا", webhooks=(webhook.url,)))
    events = [
        make_event("created", en, story_id="s-en"),
        make_event("created", ar, story_id="s-ar"),
        make_event("created", other, story_id="s-other"),
    ]
    stage.handle(_records(events))
    assert stage.wait_idle(30)
    delivered = webhook.wait_for(2)
    assert sorted(d.json()["article"]["lang"] for d in delivered) == ["ar", "en"]
    ar_body = next(d.json() for d in delivered if d.json()["article"]["lang"] == "ar")
    assert ar_body["matched_terms"] == ["صيدنايا"]
    time.sleep(0.2)
    assert len(webhook.delivered) == 2
    stage.close()


@pytest.mark.timeout(60)
def test_language_and_source_filters_restrict_the_match(
    settings_factory: SettingsFactory, store: EmbeddedStore, metrics: Metrics, webhook: WebhookReceiver
) -> None:
    en = _sednaya_article(0, story_id="s-en", source="wire")
    _stored(store, en)
    stage = _stage(settings_factory(), store, metrics)
    stage.repository.add(Watchlist(name="arabic-only", query="Sednaya", lang="ar", webhooks=(webhook.url,)))
    stage.repository.add(Watchlist(name="other-source", query="Sednaya", source="bbc", webhooks=(webhook.url,)))
    stage.repository.add(Watchlist(name="wire-en", query="Sednaya", source="wire", lang="en", webhooks=(webhook.url,)))
    stage.handle(_records([make_event("created", en, story_id="s-en")]))
    assert stage.wait_idle(30)
    (only,) = webhook.wait_for(1)
    assert only.json()["watchlist"] == "wire-en"
    stage.close()


@pytest.mark.timeout(60)
def test_backfill_never_fires_instant(
    settings_factory: SettingsFactory, store: EmbeddedStore, metrics: Metrics, webhook: WebhookReceiver
) -> None:
    article = _sednaya_article(0, backfill=True)
    _stored(store, article)
    stage = _stage(settings_factory(), store, metrics)
    stage.repository.add(Watchlist(name="w", query="Sednaya", webhooks=(webhook.url,)))
    stage.repository.add(Watchlist(name="d", query="Sednaya", webhooks=(webhook.url,), mode="digest"))
    stage.handle(_records([make_event("created", article, story_id="story-open", backfill=True)]))
    assert stage.wait_idle(30)
    assert stage.send_digests(force=True) == 0
    assert webhook.requests == [] and stage.ledger.count_alerts() == 0
    assert metrics.registry.get_sample_value("sednaya_articles_total", {"stage": "alert", "status": "skipped"}) == 1
    stage.close()


@pytest.mark.timeout(90)
def test_webhook_failing_twice_gets_one_delivery_and_a_hung_target_blocks_nothing(
    settings_factory: SettingsFactory,
    store: EmbeddedStore,
    metrics: Metrics,
    webhook: WebhookReceiver,
    slow_webhook: WebhookReceiver,
) -> None:
    refused = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens: fails every attempt
    settings = settings_factory(webhook_backoff_s=0.05, webhook_attempts=4)
    first, second = _sednaya_article(0, story_id="s1"), _sednaya_article(1, story_id="s2")
    _stored(store, first, second)
    stage = _stage(settings, store, metrics)
    stage.repository.add(Watchlist(name="w", query="Sednaya", webhooks=(slow_webhook.url, refused, webhook.url)))
    webhook.fail_next(2, 500)
    started = time.monotonic()
    assert stage.handle(_records([make_event("created", first, story_id="s1")])) == [None]
    assert stage.handle(_records([make_event("created", second, story_id="s2")])) == [None]
    assert time.monotonic() - started < 5.0  # delivery runs off the pipeline's thread
    # the healthy target gets both alerts while the hung one still has its first request open
    delivered = webhook.wait_for(2)
    assert sorted(d.json()["story"]["id"] for d in delivered) == ["s1", "s2"]
    assert [r.status for r in webhook.requests] == [500, 500, 200, 200]
    assert slow_webhook.delivered == [] and len(slow_webhook.requests) >= 1
    slow_webhook.release()  # the hung target now drops every connection: it fails after its retries
    assert stage.wait_idle(60)
    for found in stage.ledger.recent_alerts("w"):
        assert found.deliveries == {
            f"webhook:{slow_webhook.url}": "failed",
            f"webhook:{refused}": "failed",
            f"webhook:{webhook.url}": "sent",
        }
    assert _count(metrics, "webhook", "sent") == 2
    assert _count(metrics, "webhook", "failed") == 4
    assert _count(metrics, "webhook", "retried") == 2 + 3 * 4
    stage.close()


_CHILD = """
import sys
from pathlib import Path
from prometheus_client import CollectorRegistry
from indexer.alert_stage import AlertStage
from indexer.store_embedded import EmbeddedStore
from stream.bus import Record
from stream.metrics import Metrics
from stream.settings import load_settings

data_dir, event_file = Path(sys.argv[1]), Path(sys.argv[2])
settings = load_settings(environ={}, overrides={"data_dir": data_dir, "webhook_attempts": 1})
store = EmbeddedStore(data_dir / "store.sqlite3")
stage = AlertStage(settings, store, Metrics(CollectorRegistry()), article_wait_s=0.0)
stage.handle([Record(topic="stories.events.v1", key="k", value=event_file.read_bytes())])
print("handled", flush=True)
stage.wait_idle()
"""


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_restart_between_ledger_write_and_delivery_sends_once(
    settings_factory: SettingsFactory, data_dir: Path, store: EmbeddedStore, webhook: WebhookReceiver, tmp_path: Path
) -> None:
    article = _sednaya_article(0)
    _stored(store, article)
    repo = SqliteWatchlistRepository.in_data_dir(data_dir)
    repo.add(Watchlist(name="w", query="Sednaya", webhooks=(webhook.url,)))
    event = make_event("created", article, story_id="story-open")
    event_file = tmp_path / "event.json"
    event_file.write_bytes(event.to_bytes())
    webhook.hold_next(1)  # the first POST is received but never answered: the process dies waiting
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(data_dir), str(event_file)],
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
    )
    try:
        webhook.wait_for_requests(1, timeout_s=60)  # the child starts Python and its imports first
        os.kill(child.pid, signal.SIGKILL)  # the ledger holds the alert as pending; nothing was delivered
    finally:
        child.wait(timeout=30)
    webhook.release()
    ledger = AlertLedger.in_data_dir(data_dir)
    assert [p.target for p in ledger.pending()] == [f"webhook:{webhook.url}"]
    assert webhook.delivered == []
    # restart: the new stage resumes the pending delivery, then the uncommitted event comes again
    settings = settings_factory()
    metrics = Metrics(CollectorRegistry())
    stage = AlertStage(settings, store, metrics, repository=repo, ledger=ledger, article_wait_s=0.0)
    assert stage.handle(_records([event])) == [None]
    assert stage.wait_idle(30)
    (delivered,) = webhook.wait_for(1)
    assert delivered.json()["id"] == "w/story-open"
    time.sleep(0.3)
    assert len(webhook.delivered) == 1
    assert ledger.pending() == [] and ledger.delivery_counts("w")["sent"] == 1
    stage.close()
    ledger.close()
    repo.close()


@pytest.mark.timeout(60)
def test_digest_email_arrives_with_plain_and_html_parts(
    settings_factory: SettingsFactory, store: EmbeddedStore, metrics: Metrics, smtp_server: SmtpServer
) -> None:
    settings = settings_factory(smtp_port=smtp_server.port, public_url="https://mon.example")
    first = _sednaya_article(0, story_id="s1")
    copies = [_sednaya_article(i, source=f"paper-{i % 2}", story_id="s1") for i in range(1, 4)]
    second = make_article(
        url="https://arabic-news.example/x",
        title="سجن صيدنايا: شهادات جديدة",
        text="شهادات جديدة من معتقلين سابقين في سجن صيدنايا.",
        lang="ar",
        source="arabic-news",
        story_id="s2",
    )
    _stored(store, first, *copies, second)
    stage = _stage(settings, store, metrics)
    wl = Watchlist(name="daily", query="Sednaya OR صيدنايا", emails=("analyst@test.example",), mode="digest")
    stage.repository.add(wl)
    events = [
        make_event("created", first, story_id="s1"),
        *(make_event("updated", c, story_id="s1", first_article_id=first.id) for c in copies),
        make_event("created", second, story_id="s2"),
    ]
    assert stage.handle(_records(events)) == [None] * 5
    assert stage.wait_idle(30)
    assert smtp_server.messages == []  # digest mode: nothing instant
    assert stage.send_digests(wl.created_at + timedelta(minutes=30)) == 0  # a daily digest is not due yet
    assert stage.send_digests(wl.created_at + timedelta(days=1, minutes=1)) == 1
    assert stage.wait_idle(30)
    (mail,) = smtp_server.wait_for(1)
    assert mail.rcpt_tos == ["analyst@test.example"]
    assert mail.message["Subject"] == "[daily] daily digest: 2 new, 0 updated stories"
    plain = mail.message.get_body(("plain",))
    rich = mail.message.get_body(("html",))
    assert plain is not None and rich is not None
    text = plain.get_content()
    assert "https://mon.example/stories/s1" in text and "https://mon.example/stories/s2" in text
    assert "Sources: paper-1 (2), paper-0 (1), wire (1)" in text
    assert "سجن صيدنايا" in rich.get_content()
    assert stage.send_digests(wl.created_at + timedelta(days=3)) == 0  # nothing new queued
    # the digest-mode new stories are in the Atom feed too
    feed = feedparser.parse(render_atom(wl, stage.ledger.recent_alerts("daily"), settings.public_url))
    assert feed.bozo == 0 and feed.version == "atom10"
    assert {e.link for e in feed.entries} == {"https://mon.example/stories/s1", "https://mon.example/stories/s2"}
    assert _count(metrics, "email", "sent") == 1
    stage.close()


def test_event_for_an_article_not_in_the_store_fails_naming_it(
    settings_factory: SettingsFactory, store: EmbeddedStore, metrics: Metrics
) -> None:
    article = _sednaya_article(0)  # never written
    stage = _stage(settings_factory(), store, metrics)
    stage.repository.add(Watchlist(name="w", query="Sednaya"))
    (error,) = stage.handle(_records([make_event("created", article, story_id="story-open")]))
    assert error is not None
    assert str(error) == f"story story-open (created): article {article.id} is not in the store"
    (bad,) = stage.handle([Record(topic="t", key="k", value=b"not json")])
    assert bad is not None and "not valid JSON" in str(bad)
    stage.close()


@pytest.mark.timeout(60)
def test_the_stage_sends_due_digests_on_its_own(
    settings_factory: SettingsFactory, store: EmbeddedStore, metrics: Metrics, webhook: WebhookReceiver
) -> None:
    article = _sednaya_article(0, story_id="s1")
    _stored(store, article)
    stage = AlertStage(settings_factory(), store, metrics, article_wait_s=0.0, digest_interval_s=0.1)
    two_hours_ago = datetime.now(UTC) - timedelta(hours=2)
    stage.repository.add(
        Watchlist(
            name="h", query="Sednaya", webhooks=(webhook.url,), mode="digest", every="hourly", created_at=two_hours_ago
        )
    )
    stage.handle(_records([make_event("created", article, story_id="s1")]))
    (digest,) = webhook.wait_for(1)  # no send_digests call: the stage's own thread found it due
    body = digest.json()
    assert body["type"] == "sednaya.digest" and [s["id"] for s in body["stories"]] == ["s1"]
    assert body["stories"][0]["sources"] == {"wire": 1}
    stage.close()
