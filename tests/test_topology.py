"""One topology table (``sednaya_monitor.topology``) for the one-process pipeline and the stage commands.

Both ways of running build their workers from ``topology.STAGES``: the same input topics, consumer
groups and handlers, and ``StoreGuard`` on every stage that writes to or reads from the store, in
both (a store that is down holds the batch uncommitted instead of dead-lettering it).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from indexer.alerting.alert_stage import AlertStage
from indexer.index_stage import IndexStage, StoryIndexStage
from indexer.store_embedded import EmbeddedStore
from sednaya_monitor import topology
from sednaya_monitor.cli.commands_stages import stage_workers
from sednaya_monitor.pipeline import Pipeline
from sednaya_monitor.prometheus_metrics import PrometheusMetrics
from sednaya_monitor.settings import Settings
from sednaya_monitor.store_guard import StoreGuard
from sednaya_monitor.topology import StageParts
from stream.assign_stage import AssignStage
from stream.bus_embedded import EmbeddedBus
from stream.cluster_stage import SharedStateClusterStage
from stream.embedding import Embedder
from stream.embedding_stage import EmbeddingStage
from stream.worker import StageStopped, StageWorker
from tests.store_fixtures import make_article


def _rows(workers: list[StageWorker]) -> list[tuple[str, str, type, bool]]:
    return [(w.topic, w.group, type(topology.unwrap(w.handler)), isinstance(w.handler, StoreGuard)) for w in workers]


def _table(settings: Settings, specs: list[topology.StageSpec], kinds: list[type]) -> list[tuple[str, str, type, bool]]:
    return [(s.topic(settings), s.group, kind, s.store_guard) for s, kind in zip(specs, kinds, strict=True)]


@pytest.fixture
def bus_and_store(data_dir: Path) -> Iterator[tuple[EmbeddedBus, EmbeddedStore]]:
    bus = EmbeddedBus(data_dir / "bus.sqlite3")
    store = EmbeddedStore(data_dir / "store.sqlite3")
    store.ensure_ready()
    yield bus, store
    bus.close()
    store.close()


@pytest.fixture
def pipeline(
    settings: Settings, embedder: Embedder, bus_and_store: tuple[EmbeddedBus, EmbeddedStore]
) -> Iterator[Pipeline]:
    bus, store = bus_and_store
    built = Pipeline(settings, bus=bus, store=store, embedder=embedder)
    yield built
    built.close()


def test_the_pipeline_runs_the_one_process_rows_of_the_table(settings: Settings, pipeline: Pipeline) -> None:
    specs = topology.one_process()
    assert [s.name for s in specs] == ["embed", "index", "index-stories", "alert"]
    assert _rows(pipeline.workers) == _table(settings, specs, [AssignStage, IndexStage, StoryIndexStage, AlertStage])
    assert isinstance(pipeline.stage(AlertStage), AlertStage)


def test_the_stage_commands_run_the_stage_process_rows_of_the_table(
    settings: Settings, embedder: Embedder, bus_and_store: tuple[EmbeddedBus, EmbeddedStore]
) -> None:
    bus, store = bus_and_store
    parts = StageParts(settings, PrometheusMetrics(), bus, store, embedder)
    kinds: dict[str, list[type]] = {
        "embed": [EmbeddingStage, SharedStateClusterStage],
        "index": [IndexStage, StoryIndexStage],
        "alert": [AlertStage],
    }
    assert list(topology.COMMANDS) == list(kinds)
    for command, expected in kinds.items():
        specs = topology.stage_process(command)
        workers = stage_workers(specs, parts, stop=threading.Event())
        try:
            assert _rows(workers) == _table(settings, specs, expected)
        finally:
            for worker in workers:
                close = getattr(worker.handler, "close", None)
                if callable(close):
                    close()


def test_both_ways_cover_every_consumer_group_of_the_table(settings: Settings) -> None:
    groups = topology.consumer_groups(settings)
    assert groups == [
        (settings.topic_raw, "embed"),
        (settings.topic_embedded, "cluster"),
        (settings.topic_clustered, "index"),
        (settings.topic_story_events, "index-stories"),
        (settings.topic_story_events, "alert"),
    ]
    one = {(s.topic(settings), s.group) for s in topology.one_process()}
    split = {(s.topic(settings), s.group) for c in topology.COMMANDS for s in topology.stage_process(c)}
    assert one | split == set(groups)
    # the store-facing stages are the same rows, guarded the same way, in both
    assert [s.name for s in topology.one_process() if s.store_guard] == [
        s.name for c in topology.COMMANDS for s in topology.stage_process(c) if s.store_guard
    ]
    with pytest.raises(ValueError, match="'crawl'"):
        topology.stage_process("crawl")


def test_a_store_that_goes_away_holds_the_one_process_batch_instead_of_dead_lettering_it(
    settings: Settings, pipeline: Pipeline, bus_and_store: tuple[EmbeddedBus, EmbeddedStore]
) -> None:
    bus, store = bus_and_store
    article = make_article().replace(story_id="s1", story_role="first")
    bus.publish(settings.topic_clustered, article.id, article.to_bytes(), {})
    bus.flush()
    store.close()
    path = settings.data_dir / "store.sqlite3"  # the store is gone: it cannot be opened again
    for leftover in settings.data_dir.glob("store.sqlite3*"):
        leftover.unlink()
    path.mkdir()
    (index,) = [w for w in pipeline.workers if w.group == topology.GROUP_INDEX]
    index.stop.set()  # stop at the first wait instead of waiting for the store
    with pytest.raises(StageStopped, match="unreachable"):
        index.run_once()
    assert pipeline.summary().dead_letters == 0
    # uncommitted: the record is still there for the next run
    assert bus.consumer(settings.topic_clustered, topology.GROUP_INDEX).poll(10, 0.0)


class CountingEmbedder:
    """A real embedder whose ``embed`` calls are counted (a warm-up at start is one)."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.calls = 0

    @property
    def dim(self) -> int:
        return self.inner.dim

    def embed(self, texts: Sequence[str]) -> NDArray[np.float32]:
        self.calls += 1
        return self.inner.embed(texts)


@pytest.mark.parametrize(("group", "warmed"), [(topology.GROUP_CLUSTER, False), (topology.GROUP_EMBED, True)])
def test_only_the_vector_worker_loads_the_model_before_joining(
    settings: Settings,
    embedder: Embedder,
    bus_and_store: tuple[EmbeddedBus, EmbeddedStore],
    group: str,
    warmed: bool,
) -> None:
    """``embed --no-vectors`` (the story assigner alone) reads records that carry their vectors: it does not
    load the model at start (a record without one loads it then); ``embed --no-cluster`` warms it up."""
    bus, store = bus_and_store
    counting = CountingEmbedder(embedder)
    specs = [spec for spec in topology.stage_process("embed") if spec.group == group]
    workers = stage_workers(
        specs, StageParts(settings, PrometheusMetrics(), bus, store, counting), stop=threading.Event()
    )
    try:
        assert counting.calls == (1 if warmed else 0)
    finally:
        for worker in workers:
            close = getattr(worker.handler, "close", None)
            if callable(close):
                close()
