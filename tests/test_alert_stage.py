"""The alert stage over the real embedded store, ledger, webhook receiver and SMTP server.

Story events are built here as the clustering stage would publish them; the end-to-end scenarios
through the whole pipeline (embedding and clustering deciding the events) are in
``tests/test_alert_pipeline.py``.
"""

from __future__ import annotations

import itertools
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

from indexer.alerting.alert_stage import AlertStage
from indexer.alerting.atom import render_atom
from indexer.alerting.ledger import AlertLedger
from indexer.alerting.watchlists import SqliteWatchlistRepository, Watchlist
from indexer.store_embedded import EmbeddedStore
from sednaya_monitor.prometheus_metrics import PrometheusMetrics
from sednaya_monitor.settings import Settings
from sednaya_monitor.wiring import alert_config, make_alert_stage
from stream.article import Article
from stream.bus import Record
from stream.bus_embedded import EmbeddedBus
from stream.story import StoryEvent
from stream.worker import StageWorker
from tests.alert_fixtures import SmtpServer, WebhookReceiver, allow_loopback, make_event
from tests.ports import free_port
from tests.store_fixtures import make_article

SettingsFactory = Callable[..., Settings]
TOPIC = "stories.events.v1"


@pytest.fixture
def settings_factory(settings_factory: SettingsFactory) -> SettingsFactory:
    """Loopback receivers: private targets allowed explicitly (the refusal is tested in test_alert_delivery)."""
    return allow_loopback(settings_factory)


PUBLISHED = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)  # fresh: within alert_max_age_s


@pytest.fixture
def store(data_dir: Path) -> Iterator[EmbeddedStore]:
    s = EmbeddedStore(data_dir / "store.sqlite3")
    s.ensure_ready()
    yield s
    s.close()


@pytest.fixture
def metrics() -> PrometheusMetrics:
    return PrometheusMetrics(CollectorRegistry())


def _stage(settings: Settings, store: EmbeddedStore, metrics: PrometheusMetrics) -> AlertStage:
    return make_alert_stage(settings, store, metrics)


_offsets = itertools.count()  # a topic's offsets: every record its own, across calls


def _records(events: list[StoryEvent]) -> list[Record]:
    return [Record(topic=TOPIC, key=e.story.id, value=e.to_bytes(), offset=next(_offsets)) for e in events]


def _count(metrics: PrometheusMetrics, channel: str, result: str) -> float:
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
    settings_factory: SettingsFactory, store: EmbeddedStore, metrics: PrometheusMetrics, webhook: WebhookReceiver
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
    # the ledger holds nothing more to send (a late duplicate would need a pending delivery) ...
    assert stage.ledger.pending() == [] and stage.ledger.delivery_counts("sednaya")["sent"] == 1
    assert stage.ledger.count_alerts("sednaya") == 1
    time.sleep(0.2)  # ... and the receiver got nothing more meanwhile
    assert len(webhook.delivered) == 1
    stage.close()


@pytest.mark.timeout(60)
def test_anniversary_retelling_joining_an_old_story_alerts_nobody(
    settings_factory: SettingsFactory, store: EmbeddedStore, metrics: PrometheusMetrics, webhook: WebhookReceiver
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
        make_event("updated", retelling, story_id="old", first_article_id=old.id, first_seen=old.published),
    ]
    assert stage.handle(_records(events)) == [None, None]
    assert stage.wait_idle(30)
    assert webhook.requests == []
    assert stage.ledger.count_alerts() == 0
    assert stage.ledger.open_items("sednaya") == 1  # the re-telling is in the next digest
    stage.close()


@pytest.mark.timeout(60)
def test_two_new_stories_in_two_languages_alert_once_each(
    settings_factory: SettingsFactory, store: EmbeddedStore, metrics: PrometheusMetrics, webhook: WebhookReceiver
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
    assert stage.ledger.pending() == [] and stage.ledger.delivery_counts("both")["sent"] == 2  # nothing left
    time.sleep(0.2)
    assert len(webhook.delivered) == 2
    stage.close()


@pytest.mark.timeout(60)
def test_language_and_source_filters_restrict_the_match(
    settings_factory: SettingsFactory, store: EmbeddedStore, metrics: PrometheusMetrics, webhook: WebhookReceiver
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
    settings_factory: SettingsFactory, store: EmbeddedStore, metrics: PrometheusMetrics, webhook: WebhookReceiver
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
    metrics: PrometheusMetrics,
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
from indexer.store_embedded import EmbeddedStore
from stream.bus import Record
from stream.bus_embedded import EmbeddedBus
from sednaya_monitor.prometheus_metrics import PrometheusMetrics
from sednaya_monitor.wiring import make_alert_stage
from sednaya_monitor.settings import load_settings

data_dir, event_file = Path(sys.argv[1]), Path(sys.argv[2])
settings = load_settings(
    environ={}, overrides={"data_dir": data_dir, "webhook_attempts": 1, "alert_allow_private_targets": True}
)
store = EmbeddedStore(data_dir / "store.sqlite3")
stage = make_alert_stage(settings, store, PrometheusMetrics(CollectorRegistry()))
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
    metrics = PrometheusMetrics(CollectorRegistry())
    stage = AlertStage(alert_config(settings), store, metrics, repository=repo, ledger=ledger)
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
    settings_factory: SettingsFactory, store: EmbeddedStore, metrics: PrometheusMetrics, smtp_server: SmtpServer
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
        published=PUBLISHED,
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


def test_malformed_event_fails_naming_the_problem(
    settings_factory: SettingsFactory, store: EmbeddedStore, metrics: PrometheusMetrics
) -> None:
    stage = _stage(settings_factory(), store, metrics)
    (bad,) = stage.handle([Record(topic="t", key="k", value=b"not json")])
    assert bad is not None and "not valid JSON" in str(bad)
    stage.close()


# --- 1. an event whose article is not indexed yet waits; nothing is dead-lettered for lag -------------


def _worker(bus: EmbeddedBus, stage: AlertStage, metrics: PrometheusMetrics) -> StageWorker:
    return StageWorker(bus, TOPIC, "alert", stage, metrics=metrics, max_attempts=3)


@pytest.mark.timeout(90)
def test_event_waits_for_its_article_and_is_delivered_once_when_indexed(
    settings_factory: SettingsFactory,
    data_dir: Path,
    store: EmbeddedStore,
    metrics: PrometheusMetrics,
    webhook: WebhookReceiver,
) -> None:
    """The index stage lags: the alert stage keeps the events (health red, saying why), commits, dead-letters
    nothing, survives a restart meanwhile, and delivers each alert once when the articles are indexed."""
    bus = EmbeddedBus(data_dir / "bus.sqlite3")
    bus.ensure_topics([TOPIC])
    first = _sednaya_article(0, story_id="lagging")
    follow = _sednaya_article(1, story_id="lagging", source="paper")
    other = _sednaya_article(2, story_id="other", title="Sednaya survivors testify in Koblenz")
    for event in (
        make_event("created", first, story_id="lagging"),
        make_event("updated", follow, story_id="lagging", first_article_id=first.id),
        make_event("created", other, story_id="other"),
    ):
        bus.publish(TOPIC, event.story.id, event.to_bytes())
    bus.flush()
    health: list[tuple[bool, str]] = []
    stage = _stage(settings_factory(), store, metrics)
    stage.attach_health(lambda green, reason: health.append((green, reason)))
    stage.repository.add(Watchlist(name="w", query="Sednaya", webhooks=(webhook.url,)))
    worker = _worker(bus, stage, metrics)
    assert worker.run_once() == 3
    assert bus.dead_letter_count() == 0 and worker.consumer.lag() == {0: 0}  # committed, nothing dead-lettered
    assert metrics.registry.get_sample_value("sednaya_alert_events_waiting") == 3
    green, reason = health[-1]
    assert not green
    assert reason.startswith("3 story event(s) wait for their article to be indexed")
    assert f"oldest: article {first.id} of story lagging" in reason
    time.sleep(1.0)  # the stage looks again with backoff meanwhile
    assert webhook.requests == []
    stage.close()  # a restart while they wait: the ledger keeps them

    stage = _stage(settings_factory(), store, metrics)
    stage.attach_health(lambda green, reason: health.append((green, reason)))
    assert metrics.registry.get_sample_value("sednaya_alert_events_waiting") == 3
    _stored(store, first, follow, other)  # the index stage catches up
    delivered = webhook.wait_for(2)
    assert stage.wait_idle(30)
    assert sorted(d.json()["story"]["id"] for d in delivered) == ["lagging", "other"]
    lagging = next(d.json() for d in delivered if d.json()["story"]["id"] == "lagging")
    assert lagging["article"]["id"] == first.id  # per-story order kept: the first article, then the follow-up
    assert stage.ledger.open_items("w") == 1 and stage.ledger.waiting() == []
    assert metrics.registry.get_sample_value("sednaya_alert_events_waiting") == 0
    assert health[-1] == (True, "")
    time.sleep(0.3)
    assert len(webhook.delivered) == 2 and bus.dead_letter_count() == 0
    stage.close()
    bus.close()


@pytest.mark.timeout(90)
def test_dlq_replay_of_an_alert_dead_letter_waits_then_delivers(
    settings_factory: SettingsFactory,
    data_dir: Path,
    store: EmbeddedStore,
    metrics: PrometheusMetrics,
    webhook: WebhookReceiver,
) -> None:
    """A dead letter of the alert stage (from an older version, or after ``alert_wait_max_s``) replayed
    before its article is indexed is not dead-lettered again: it waits and is delivered once."""
    bus = EmbeddedBus(data_dir / "bus.sqlite3")
    bus.ensure_topics([TOPIC])
    article = _sednaya_article(0, story_id="replayed")
    event = make_event("created", article, story_id="replayed")
    settings = settings_factory(alert_wait_max_s=0.5)
    stage = _stage(settings, store, metrics)
    stage.bus = bus
    stage.repository.add(Watchlist(name="w", query="Sednaya", webhooks=(webhook.url,)))
    bus.publish(TOPIC, "replayed", event.to_bytes())
    bus.flush()
    worker = _worker(bus, stage, metrics)
    assert worker.run_once() == 1 and bus.dead_letter_count() == 0
    deadline = time.monotonic() + 30  # after alert_wait_max_s (0.5 s here) it is dead-lettered, with its reason
    while bus.dead_letter_count(TOPIC) == 0:
        assert time.monotonic() < deadline, "the waiting event was never dead-lettered"
        time.sleep(0.05)
    (letter,) = bus.dead_letters(TOPIC)
    assert letter.stage == "alert" and letter.error_class == "ArticleNotIndexedError"
    assert f"article {article.id} is not in the store after waiting" in letter.reason
    stage.close()

    stage = _stage(settings_factory(), store, metrics)  # default alert_wait_max_s: 7 days
    stage.bus = bus
    assert bus.replay(TOPIC) == 1  # `sednaya-monitor dlq replay` before the article is indexed
    worker = _worker(bus, stage, metrics)
    assert worker.run_once() == 1
    time.sleep(0.5)
    assert bus.dead_letter_count() == 0 and webhook.requests == []
    _stored(store, article)
    (delivered,) = webhook.wait_for(1)
    assert delivered.json()["article"]["id"] == article.id
    assert stage.wait_idle(30)
    time.sleep(0.3)
    assert len(webhook.delivered) == 1 and bus.dead_letter_count() == 0
    stage.close()
    bus.close()


# --- 2. the age guard ---------------------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_articles_older_than_alert_max_age_go_to_the_digest_as_older_coverage(
    settings_factory: SettingsFactory, store: EmbeddedStore, metrics: PrometheusMetrics, webhook: WebhookReceiver
) -> None:
    now = datetime.now(UTC)
    years_old = _sednaya_article(0, story_id="s-old", published=datetime(2019, 3, 1, tzinfo=UTC))
    four_days = _sednaya_article(1, story_id="s-4d", published=now - timedelta(days=4))
    undated_old = _sednaya_article(2, story_id="s-undated", published=None, discovered_at=now - timedelta(days=5))
    undated_new = _sednaya_article(3, story_id="s-undated-new", published=None, discovered_at=now)
    two_days = _sednaya_article(4, story_id="s-2d", published=now - timedelta(days=2))
    _stored(store, years_old, four_days, undated_old, undated_new, two_days)
    stage = _stage(settings_factory(), store, metrics)  # default alert_max_age_s: 3 days
    wl = Watchlist(name="w", query="Sednaya", webhooks=(webhook.url,), every="hourly", created_at=now)
    stage.repository.add(wl)
    events = [
        make_event("created", a, story_id=str(a.story_id), first_seen=a.published or a.discovered_at)
        for a in (years_old, four_days, undated_old, undated_new, two_days)
    ]
    assert stage.handle(_records(events)) == [None] * 5
    delivered = webhook.wait_for(2)
    assert sorted(d.json()["story"]["id"] for d in delivered) == ["s-2d", "s-undated-new"]
    assert stage.ledger.count_alerts("w") == 2  # older coverage does not count as the story's alert
    assert stage.ledger.open_items("w") == 3
    assert stage.send_digests(now + timedelta(hours=1, minutes=1)) == 1
    (digest,) = [d.json() for d in webhook.wait_for(3) if d.json()["type"] == "sednaya.digest"]
    assert {s["id"]: (s["new"], s["older"]) for s in digest["stories"]} == {
        "s-old": (False, True),
        "s-4d": (False, True),
        "s-undated": (False, True),
    }
    assert {a["role"] for s in digest["stories"] for a in s["articles"]} == {"older"}
    stage.close()


# --- 3. matching on the whole story ---------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_story_starting_in_arabic_fires_a_lang_en_watchlist_when_english_coverage_joins(
    settings_factory: SettingsFactory, store: EmbeddedStore, metrics: PrometheusMetrics, webhook: WebhookReceiver
) -> None:
    ar = make_article(
        url="https://arabic-news.example/2024/12/10/saydnaya",
        title="الدفاع المدني ينهي البحث عن أقبية سرية في سجن صيدنايا",
        text="أعلن الدفاع المدني انتهاء عمليات البحث في سجن صيدنايا العسكري دون العثور على أقبية سرية.",
        lang="ar",
        source="arabic-news",
        story_id="s-multi",
        published=PUBLISHED,
    )
    en = _sednaya_article(1, story_id="s-multi", source="wire", published=PUBLISHED + timedelta(hours=1))
    en2 = _sednaya_article(2, story_id="s-multi", source="paper", published=PUBLISHED + timedelta(hours=1))
    _stored(store, ar, en, en2)
    stage = _stage(settings_factory(), store, metrics)
    stage.repository.add(Watchlist(name="english", query="Sednaya", lang="en", webhooks=(webhook.url,)))
    stage.repository.add(Watchlist(name="any", query="Sednaya OR صيدنايا", webhooks=(webhook.url,)))
    created = make_event("created", ar, story_id="s-multi")
    assert stage.handle(_records([created])) == [None]
    (first,) = webhook.wait_for(1)
    assert first.json()["watchlist"] == "any" and first.json()["article"]["lang"] == "ar"
    joined = [
        make_event(
            "updated", a, story_id="s-multi", first_article_id=ar.id, first_seen=ar.published, languages=("ar", "en")
        )
        for a in (en, en2)
    ]
    assert stage.handle(_records(joined)) == [None, None]
    delivered = webhook.wait_for(2)
    body = next(d.json() for d in delivered if d.json()["watchlist"] == "english")
    assert body["story"]["id"] == "s-multi"
    assert body["article"]["id"] == en.id  # the alert names the matching article
    assert (body["article"]["lang"], body["article"]["source"]) == ("en", "wire")
    assert stage.handle(_records([created, *joined])) == [None] * 3  # redelivered: nothing more
    assert stage.wait_idle(30)
    time.sleep(0.3)
    assert len(webhook.delivered) == 2  # once per (watchlist, story)
    assert stage.ledger.open_items("english") == 1  # the second English article is a follow-up
    assert stage.ledger.open_items("any") == 2
    stage.close()


# --- 4. merges ---------------------------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_a_new_story_related_to_an_alerted_one_fires_no_second_alert(
    settings_factory: SettingsFactory, store: EmbeddedStore, metrics: PrometheusMetrics, webhook: WebhookReceiver
) -> None:
    first = _sednaya_article(0, story_id="older")
    facet = _sednaya_article(1, story_id="facet", source="other-paper")
    joining = _sednaya_article(2, story_id="facet", source="third-paper")
    unrelated = _sednaya_article(3, story_id="unrelated", source="fourth-paper")
    _stored(store, first, facet, joining, unrelated)
    stage = _stage(settings_factory(), store, metrics)
    stage.repository.add(Watchlist(name="prison", query="Sednaya", webhooks=(webhook.url,)))
    events = [
        make_event("created", first, story_id="older"),
        make_event("created", facet, story_id="facet", related_story="older"),
        make_event("updated", joining, story_id="facet", first_article_id=facet.id),
        make_event("created", unrelated, story_id="unrelated"),
    ]
    assert stage.handle(_records(events)) == [None] * 4
    assert stage.wait_idle(30)
    time.sleep(0.3)
    assert sorted(d.json()["story"]["id"] for d in webhook.delivered) == ["older", "unrelated"]
    assert stage.ledger.open_items("prison") == 2  # the related story's two articles are follow-ups
    assert stage.ledger.story_group("facet") == {"older", "facet"}
    stage.close()


def _arabic_article(n: int, story_id: str) -> Article:
    return make_article(
        url=f"https://arabic-news.example/sednaya/{n}",
        title="سجن صيدنايا: عائلات تبحث عن ذويها",
        text="عائلات المعتقلين تبحث عن ذويها في سجن صيدنايا قرب دمشق.",
        lang="ar",
        source="arabic-news",
        story_id=story_id,
        published=PUBLISHED,
    )


@pytest.mark.timeout(60)
@pytest.mark.parametrize("late_link", [False, True], ids=["in-order", "created-event-after-the-merge"])
def test_a_story_related_to_one_story_and_merged_into_another_alerts_once(
    settings_factory: SettingsFactory,
    store: EmbeddedStore,
    metrics: PrometheusMetrics,
    webhook: WebhookReceiver,
    late_link: bool,
) -> None:
    # "older" alerts an English-only watchlist; "facet" is created related to it; "arabic" (which the watchlist
    # does not hear: its articles are Arabic) later absorbs "facet". One event: its English report on "arabic"
    # is a follow-up. The facet's created event may also be handled after the merge (it waited for its
    # article, or came again after a restart): the related link must not replace the merge, nor the other way.
    older = _sednaya_article(0, story_id="older")
    facet = _sednaya_article(1, story_id="facet", source="other-paper")
    arabic = _arabic_article(2, "arabic")
    english = _sednaya_article(3, story_id="arabic", source="third-paper")
    _stored(store, older, facet, arabic, english)
    stage = _stage(settings_factory(), store, metrics)
    stage.repository.add(Watchlist(name="en", query="Sednaya", lang="en", webhooks=(webhook.url,)))
    created_facet = make_event("created", facet, story_id="facet", related_story="older")
    merged = make_event("merged", arabic, story_id="arabic", merged_ids=("facet",))
    events = [make_event("created", older, story_id="older"), make_event("created", arabic, story_id="arabic")]
    events += [merged, created_facet] if late_link else [created_facet, merged]
    events.append(make_event("updated", english, story_id="arabic", first_article_id=arabic.id))
    assert stage.handle(_records(events)) == [None] * 5
    assert stage.wait_idle(30)
    time.sleep(0.3)
    assert [d.json()["story"]["id"] for d in webhook.delivered] == ["older"]
    assert stage.ledger.story_group("arabic") == {"older", "facet", "arabic"}
    assert stage.ledger.survivor("facet") == "arabic"  # the digest shows the group under the merge's survivor
    stage.close()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("why", ["no watchlist yet", "backfill"])
def test_a_related_link_counts_when_its_created_event_alerts_nobody(
    settings_factory: SettingsFactory,
    store: EmbeddedStore,
    metrics: PrometheusMetrics,
    webhook: WebhookReceiver,
    why: str,
) -> None:
    # The two stories' created events decide no alert (no watchlist exists yet, or the stories come from a
    # historical load); live reports of both come later, after a watchlist is added. One story for alerting:
    # the first live report alerts, the other is a follow-up.
    backfill = why == "backfill"
    older = _sednaya_article(0, story_id="older", backfill=backfill)
    facet = _sednaya_article(1, story_id="facet", source="other-paper", backfill=backfill)
    live_older = _sednaya_article(2, story_id="older", source="third-paper")
    live_facet = _sednaya_article(3, story_id="facet", source="fourth-paper")
    _stored(store, older, facet, live_older, live_facet)
    stage = _stage(settings_factory(), store, metrics)
    watchlist = Watchlist(name="w", query="Sednaya", webhooks=(webhook.url,))
    if backfill:
        stage.repository.add(watchlist)
    created = [
        make_event("created", older, story_id="older", backfill=backfill),
        make_event("created", facet, story_id="facet", related_story="older", backfill=backfill),
    ]
    assert stage.handle(_records(created)) == [None, None]
    if not backfill:
        stage.repository.add(watchlist)
    live = [
        make_event("updated", live_older, story_id="older", first_article_id=older.id, article_count=2),
        make_event("updated", live_facet, story_id="facet", first_article_id=facet.id, article_count=2),
    ]
    assert stage.handle(_records(live)) == [None, None]
    assert stage.wait_idle(30)
    time.sleep(0.3)
    assert [(d.json()["story"]["id"], d.json()["article"]["id"]) for d in webhook.delivered] == [
        ("older", live_older.id)
    ]
    stage.close()


@pytest.mark.timeout(60)
def test_a_batch_handed_again_is_counted_once_and_waits_once(
    settings_factory: SettingsFactory, store: EmbeddedStore, metrics: PrometheusMetrics, webhook: WebhookReceiver
) -> None:
    # The worker hands a whole batch again when the store turned out to be down after part of it was handled
    # (StoreGuard), and a restart redelivers what was not committed: the events decided the first time are
    # not counted again (nor under another status), the one parked for its article is not parked twice.
    indexed = _sednaya_article(0, story_id="indexed")
    lagging = _sednaya_article(1, story_id="lagging", source="other-paper")
    _stored(store, indexed)
    stage = _stage(settings_factory(), store, metrics)
    stage.repository.add(Watchlist(name="w", query="Sednaya", webhooks=(webhook.url,)))
    events = [make_event("created", indexed, story_id="indexed"), make_event("created", lagging, story_id="lagging")]
    records = _records(events)
    assert stage.handle(records) == [None, None]
    assert stage.handle(records) == [None, None]
    assert len(stage.ledger.waiting()) == 1
    _stored(store, lagging)
    stage.retry_waiting(force=True)  # (or the stage's own waiting thread takes it first)
    assert sorted(d.json()["story"]["id"] for d in webhook.wait_for(2)) == ["indexed", "lagging"]
    assert stage.ledger.waiting() == []
    assert stage.wait_idle(30)

    def sample(name: str, labels: dict[str, str]) -> float:
        return metrics.registry.get_sample_value(name, labels) or 0.0

    assert sample("sednaya_alert_story_events_total", {"kind": "created"}) == 2
    assert sample("sednaya_articles_total", {"stage": "alert", "status": "alerted"}) == 2
    stage.close()


@pytest.mark.timeout(60)
def test_an_unconfirmed_story_alerts_on_its_second_report_and_waits_in_the_digest_until_then(
    settings_factory: SettingsFactory, store: EmbeddedStore, metrics: PrometheusMetrics, webhook: WebhookReceiver
) -> None:
    # "near" only nearly relates to "older" (the clustering stage could not tell a new event from one more
    # language of the older one): no instant alert on its first report, one on its second; "alone" never
    # gets a second report and stays an unconfirmed entry of the instant watchlist's digest.
    older = _sednaya_article(0, story_id="older")
    near = _sednaya_article(1, story_id="near", source="other-paper")
    second = _sednaya_article(2, story_id="near", source="third-paper")
    third = _sednaya_article(3, story_id="near", source="fourth-paper")
    alone = _sednaya_article(4, story_id="alone", source="fifth-paper")
    _stored(store, older, near, second, third, alone)
    stage = _stage(settings_factory(), store, metrics)
    stage.repository.add(Watchlist(name="now", query="Sednaya", webhooks=(webhook.url,)))
    stage.repository.add(Watchlist(name="daily", query="Sednaya", mode="digest"))
    events = [
        make_event("created", older, story_id="older"),
        make_event("created", near, story_id="near", near_story="older"),
        make_event("created", alone, story_id="alone", near_story="older"),
    ]
    assert stage.handle(_records(events)) == [None] * 3
    assert stage.wait_idle(30)
    time.sleep(0.3)
    assert [d.json()["story"]["id"] for d in webhook.delivered] == ["older"]
    assert stage.ledger.alerted_article("now", "near") is None  # still new to the watchlist
    assert stage.ledger.alerted_article("daily", "near") == near.id  # a digest watchlist: told as usual
    later = [
        make_event("updated", second, story_id="near", first_article_id=near.id),
        make_event("updated", third, story_id="near", first_article_id=near.id),
    ]
    assert stage.handle(_records(later)) == [None] * 2
    assert stage.wait_idle(30)
    time.sleep(0.3)
    fired = [d.json() for d in webhook.delivered]
    assert [(f["story"]["id"], f["article"]["id"]) for f in fired] == [("older", older.id), ("near", second.id)]
    assert stage.ledger.alerted_article("now", "near") == second.id
    # the instant watchlist's digest: "alone" is still unconfirmed; "near" was confirmed and alerted since,
    # so its first report is listed as what it now is, a report of a story the watchlist was alerted on
    assert stage.send_digests(force=True) == 2
    assert stage.wait_idle(30)
    time.sleep(0.3)
    digests = [d.json() for d in webhook.delivered if d.json()["type"] == "sednaya.digest"]
    assert len(digests) == 1
    stories = {s["id"]: s for s in digests[0]["stories"]}
    assert stories["alone"]["unconfirmed"] and not stories["alone"]["new"]
    assert [a["role"] for a in stories["alone"]["articles"]] == ["unconfirmed"]
    assert not stories["near"]["unconfirmed"]
    assert [a["role"] for a in stories["near"]["articles"]] == ["follow_up", "follow_up"]
    assert [s["id"] for s in digests[0]["stories"]] == ["alone", "near"]  # unconfirmed before updated
    stage.close()


@pytest.mark.timeout(60)
def test_after_a_merge_the_survivor_counts_as_alerted_across_restarts(
    settings_factory: SettingsFactory,
    data_dir: Path,
    store: EmbeddedStore,
    metrics: PrometheusMetrics,
    webhook: WebhookReceiver,
) -> None:
    a1 = _sednaya_article(0, story_id="absorbed")
    s1 = make_article(
        url="https://arabic-news.example/s1",
        title="سجن صيدنايا: شهادات جديدة",
        text="شهادات جديدة من معتقلين سابقين في سجن صيدنايا.",
        lang="ar",
        source="arabic-news",
        story_id="survivor",
        published=PUBLISHED,
    )
    later_en = _sednaya_article(2, story_id="survivor", source="paper")
    b1 = _sednaya_article(3, story_id="other-absorbed", source="bbc")
    _stored(store, a1, s1, later_en, b1)
    stage = _stage(settings_factory(), store, metrics)
    stage.repository.add(Watchlist(name="en", query="Sednaya", lang="en", webhooks=(webhook.url,)))
    # the English story alerted; the survivor (Arabic so far) has not matched the lang:en watchlist
    assert stage.handle(_records([make_event("created", a1, story_id="absorbed")])) == [None]
    assert stage.handle(_records([make_event("created", s1, story_id="survivor")])) == [None]
    webhook.wait_for(1)
    merged = make_event("merged", s1, story_id="survivor", merged_ids=("absorbed",))
    assert stage.handle(_records([merged])) == [None]
    stage.close()

    stage = _stage(settings_factory(), store, metrics)  # a restart: the ledger keeps the merge
    updated = make_event("updated", later_en, story_id="survivor", first_article_id=s1.id)
    assert stage.handle(_records([updated])) == [None]
    # and the other way round: the survivor alerted, a story absorbed into it gets no second alert either
    merged_b = make_event("merged", s1, story_id="survivor", merged_ids=("other-absorbed",))
    assert stage.handle(_records([merged_b, make_event("created", b1, story_id="other-absorbed")])) == [None, None]
    assert stage.wait_idle(30)
    time.sleep(0.3)
    assert [d.json()["story"]["id"] for d in webhook.delivered] == ["absorbed"]
    assert stage.ledger.open_items("en") == 1  # the survivor's English article is a follow-up
    assert stage.ledger.story_group("other-absorbed") == {"survivor", "absorbed", "other-absorbed"}
    # a merge is no article: counted as a story event, not under sednaya_articles_total
    assert metrics.registry.get_sample_value("sednaya_alert_story_events_total", {"kind": "merged"}) == 2
    assert metrics.registry.get_sample_value("sednaya_articles_total", {"stage": "alert", "status": "merged"}) is None
    articles = sum(
        metrics.registry.get_sample_value("sednaya_articles_total", {"stage": "alert", "status": status}) or 0
        for status in ("alerted", "queued", "no_match", "skipped", "dead_lettered")
    )
    assert articles == 4  # a1, s1, later_en, b1: one status each
    # a late event of the absorbed story (another partition) is a follow-up too, and the digest lists the
    # merge group as one story, the survivor's
    late = _sednaya_article(4, story_id="absorbed", source="late-paper")
    _stored(store, late)
    assert stage.handle(_records([make_event("updated", late, story_id="absorbed", first_article_id=a1.id)])) == [None]
    assert stage.ledger.open_items("en") == 2
    assert stage.send_digests(force=True) == 1
    (digest,) = [d.json() for d in webhook.wait_for(2) if d.json()["type"] == "sednaya.digest"]
    assert [s["id"] for s in digest["stories"]] == ["survivor"]
    assert digest["stories"][0]["link"].endswith("/stories/survivor")
    assert {a["id"] for a in digest["stories"][0]["articles"]} == {later_en.id, late.id}
    stage.close()


@pytest.mark.timeout(60)
def test_the_stage_sends_due_digests_on_its_own(
    settings_factory: SettingsFactory, store: EmbeddedStore, metrics: PrometheusMetrics, webhook: WebhookReceiver
) -> None:
    article = _sednaya_article(0, story_id="s1")
    _stored(store, article)
    stage = make_alert_stage(settings_factory(), store, metrics, digest_interval_s=0.1)
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
