"""The distributed embed stage's two halves on the embedded bus with the real model: ``EmbeddingStage``
(raw -> articles.embedded) and ``SharedStateClusterStage`` (articles.embedded -> stories), including a
standby that takes over after another process wrote the shared story state."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

from sednaya_monitor.prometheus_metrics import PrometheusMetrics
from sednaya_monitor.settings import Settings
from sednaya_monitor.wiring import make_assign_stage
from stream.article import Article
from stream.bus import H_ENTERED_AT, H_SCHEMA, Record
from stream.bus_embedded import EmbeddedBus
from stream.cluster_stage import SharedStateClusterStage
from stream.embed_text import embed_text
from stream.embedding import Embedder, SentenceTransformerEmbedder
from stream.embedding_stage import EMBEDDED_KEY, H_ARTICLE_ID, EmbeddingStage
from stream.errors import ContractError
from stream.story_state import STATE_FILE
from stream.worker import EndOfInputAware
from tests.distributed_fixtures import fixture_articles


@pytest.fixture
def bus(settings: Settings) -> Iterator[EmbeddedBus]:
    bus = EmbeddedBus(settings.data_dir / "bus.sqlite3")
    bus.ensure_topics(settings.topics)
    yield bus
    bus.close()


def raw_records(settings: Settings, articles: Sequence[Article]) -> list[Record]:
    return [
        Record(
            topic=settings.topic_raw,
            key=a.id,
            value=a.to_bytes(),
            headers={H_SCHEMA: "1", H_ENTERED_AT: "2026-11-24T10:00:00Z"},
            offset=i,
        )
        for i, a in enumerate(articles)
    ]


def read_all(bus: EmbeddedBus, topic: str) -> list[Record]:
    consumer = bus.consumer(topic, "reader")
    out: list[Record] = []
    while batch := consumer.poll(100, 0.0):
        out.extend(batch)
    consumer.close()
    return out


def embedded_records(
    settings: Settings, bus: EmbeddedBus, embedder: Embedder, articles: Sequence[Article]
) -> list[Record]:
    stage = EmbeddingStage(settings.topic_embedded, PrometheusMetrics(), bus=bus, embedder=embedder)
    assert stage.handle(raw_records(settings, articles)) == [None] * len(articles)
    return read_all(bus, settings.topic_embedded)


def cluster_stage(
    settings: Settings, bus: EmbeddedBus, embedder: SentenceTransformerEmbedder
) -> SharedStateClusterStage:
    metrics = PrometheusMetrics()
    return SharedStateClusterStage(
        lambda: make_assign_stage(settings, metrics, embedder=embedder, bus=bus), settings.data_dir / STATE_FILE
    )


def decisions(bus: EmbeddedBus, settings: Settings) -> dict[str, tuple[str | None, str | None, str | None]]:
    out: dict[str, tuple[str | None, str | None, str | None]] = {}
    for record in read_all(bus, settings.topic_clustered):
        article = Article.from_json(record.value)
        out[article.id] = (article.story_id, article.story_role, article.duplicate_of)
    return out


def test_vector_stage_publishes_each_article_with_its_vector_under_one_key(
    settings: Settings, bus: EmbeddedBus, embedder: SentenceTransformerEmbedder
) -> None:
    articles = fixture_articles()
    metrics = PrometheusMetrics()
    stage = EmbeddingStage(settings.topic_embedded, metrics, bus=bus, embedder=embedder)
    poison = Record(topic=settings.topic_raw, key="poison", value=b"not json", offset=99)
    wrong_key = Record(topic=settings.topic_raw, key="other", value=articles[0].to_bytes(), offset=100)
    outcomes = stage.handle([*raw_records(settings, articles), poison, wrong_key])
    assert outcomes[: len(articles)] == [None] * len(articles)
    assert isinstance(outcomes[-2], ContractError) and "offset 99" in str(outcomes[-2])
    assert isinstance(outcomes[-1], ContractError) and "not the article id" in str(outcomes[-1])
    out = read_all(bus, settings.topic_embedded)
    assert [r.key for r in out] == [EMBEDDED_KEY] * len(articles)
    assert [r.headers[H_ARTICLE_ID] for r in out] == [a.id for a in articles]
    assert all(r.headers[H_ENTERED_AT] == "2026-11-24T10:00:00Z" for r in out)
    got = np.array([Article.from_json(r.value).embedding for r in out], dtype=np.float32)
    want = embedder.embed([embed_text(a.title, a.text) for a in articles])
    assert got.shape == (len(articles), 512)
    assert np.allclose(got, want, atol=1e-6)
    counted = metrics.registry.get_sample_value("sednaya_articles_total", {"stage": "embed", "status": "embedded"})
    assert counted == len(articles)


def test_split_stage_decides_like_the_one_process_stage(
    settings: Settings, bus: EmbeddedBus, embedder: SentenceTransformerEmbedder, tmp_path: Path
) -> None:
    articles = fixture_articles()
    one_process = make_assign_stage(settings.replace(data_dir=tmp_path / "one"), PrometheusMetrics(), embedder=embedder)
    enriched, _events = one_process.process(articles)
    one_process.close()
    expected = {a.id: (a.story_id, a.story_role, a.duplicate_of) for a in enriched}

    records = embedded_records(settings, bus, embedder, articles)
    stage = cluster_stage(settings, bus, embedder)
    assert stage.handle(records) == [None] * len(records)
    stage.close()
    assert decisions(bus, settings) == expected
    assert len({story for story, _, _ in expected.values()}) == 3  # crematorium, regatta, Arabic families


def test_a_standby_rebuilds_its_caches_after_another_process_wrote_the_state(
    settings: Settings, bus: EmbeddedBus, embedder: SentenceTransformerEmbedder, tmp_path: Path
) -> None:
    articles = fixture_articles()
    reference = make_assign_stage(settings.replace(data_dir=tmp_path / "one"), PrometheusMetrics(), embedder=embedder)
    enriched, _events = reference.process(articles)
    reference.close()
    expected = {a.id: (a.story_id, a.story_role, a.duplicate_of) for a in enriched}

    records = embedded_records(settings, bus, embedder, articles)
    active = cluster_stage(settings, bus, embedder)
    standby = cluster_stage(settings, bus, embedder)  # built now: its caches know nothing of what follows
    assert active.handle(records[:3]) == [None] * 3  # the original and two copies
    active.close()  # the active member dies; the standby gets the partition
    assert standby.handle(records[3:]) == [None] * (len(records) - 3)
    assert standby.rebuilds == 1
    # The later copies join the story the other process opened (stories as in one process). Their
    # roles are not compared: a plain restart of AssignStage on the same state already finds fewer
    # near-duplicates of pre-restart originals (follow_up instead of duplicate), distributed or not.
    got = decisions(bus, settings)
    assert {i: d[0] for i, d in got.items()} == {i: d[0] for i, d in expected.items()}
    assert standby.handle(records[3:]) == [None] * (len(records) - 3)  # a redelivery: same answers, no rebuild
    assert standby.rebuilds == 1
    standby.close()


def test_the_end_of_input_reaches_the_held_events_another_process_wrote(
    settings: Settings, bus: EmbeddedBus, embedder: SentenceTransformerEmbedder
) -> None:
    """The shared-state assigner is ``EndOfInputAware``: told that a finite run's input ended, it reads the
    state another process wrote (its caches are stale) and releases the warm-up's held story events."""
    held = settings.replace(warmup_hold_s=600.0)
    records = embedded_records(held, bus, embedder, fixture_articles()[:3])
    active = cluster_stage(held, bus, embedder)
    standby = cluster_stage(held, bus, embedder)
    assert isinstance(standby, EndOfInputAware)
    assert active.handle(records) == [None] * len(records)
    assert read_all(bus, held.topic_story_events) == []  # held: a fresh state's warm-up
    active.close()
    released = standby.end_of_input()
    assert [e.article_id for e in released] == [r.headers[H_ARTICLE_ID] for r in records]
    assert len(read_all(bus, held.topic_story_events)) == len(records)
    assert standby.end_of_input() == []
    standby.close()
