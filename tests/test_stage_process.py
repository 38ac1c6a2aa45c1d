"""Pieces of the stage processes: the health board over several workers, and the store guard that turns
"the store is down" into an uncommitted batch instead of dead letters (real EmbeddedStore)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from indexer.index_stage import IndexStage
from indexer.store_embedded import EmbeddedStore
from sednaya_monitor.cli.commands_stages import HealthBoard
from sednaya_monitor.metrics_server import Health
from sednaya_monitor.prometheus_metrics import PrometheusMetrics
from sednaya_monitor.settings import load_settings
from sednaya_monitor.store_guard import StoreGuard
from sednaya_monitor.wiring import elastic_config
from stream.bus import Record
from stream.errors import UnavailableError
from stream.worker import PermanentError
from tests.ports import free_port
from tests.store_fixtures import make_article


def test_the_process_stays_red_while_any_worker_is_red() -> None:
    metrics = PrometheusMetrics()
    health = Health(metrics)
    board = HealthBoard(health)
    index, stories = board.reporter("index"), board.reporter("index-stories")
    index(False, "store http://es:9200 unreachable")
    stories(True, "")
    assert not health.state.green and "store http://es:9200 unreachable" in health.state.reason
    stories(False, "store down too")
    index(True, "")
    assert not health.state.green and health.state.reason == "index-stories: store down too"
    stories(True, "")
    assert health.state.green
    assert metrics.registry.get_sample_value("sednaya_healthy") == 1


def clustered(n: int) -> list[Record]:
    out = []
    for i in range(n):
        article = make_article().replace(story_id=f"story{i}", story_role="first")
        out.append(Record(topic="articles.clustered.v1", key=article.id, value=article.to_bytes(), offset=i))
    return out


def test_the_guard_passes_results_through_while_the_store_answers(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path / "store.sqlite3")
    store.ensure_ready()
    guard = StoreGuard(IndexStage(store, PrometheusMetrics()), store, "embedded")
    assert guard.name == "index"
    poison = Record(topic="articles.clustered.v1", key="x", value=b"not an article", offset=9)
    outcomes = guard.handle([*clustered(2), poison])
    assert outcomes[:2] == [None, None]
    assert isinstance(outcomes[2], PermanentError)  # a broken record is the record's problem
    assert store.count_articles() == 2
    store.close()


@pytest.mark.timeout(60)
def test_the_guard_turns_a_store_that_is_not_there_into_unavailable(tmp_path: Path) -> None:
    from indexer.store_elastic import ElasticStore

    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there: the store is down
    store = ElasticStore(elastic_config(load_settings(environ={}, overrides={"data_dir": tmp_path, "store": url})))
    guard = StoreGuard(IndexStage(store, PrometheusMetrics()), store, url)
    with pytest.raises(UnavailableError, match=rf"store {url} unreachable"):
        guard.handle(clustered(1))
    store.close()


class _DownTwice:
    """The real index stage behind a store that is unreachable for the first two batches."""

    def __init__(self, stage: IndexStage) -> None:
        self.stage, self.name, self.calls = stage, stage.name, 0

    def handle(self, records: Sequence[Record]) -> list[BaseException | None]:
        self.calls += 1
        if self.calls <= 2:
            raise UnavailableError("store http://es:9200 unreachable")
        return list(self.stage.handle(records))


def test_an_outage_ends_with_one_line_counting_the_failed_tries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    from stream import worker as worker_mod
    from stream.bus_embedded import EmbeddedBus

    monkeypatch.setattr(worker_mod, "UNAVAILABLE_BACKOFF_S", 0.01)
    bus = EmbeddedBus(tmp_path / "bus.sqlite3")
    store = EmbeddedStore(tmp_path / "store.sqlite3")
    store.ensure_ready()
    for record in clustered(2):
        bus.publish(record.topic, record.key, record.value)
    bus.flush()
    handler = _DownTwice(IndexStage(store, PrometheusMetrics()))
    worker = worker_mod.StageWorker(bus, "articles.clustered.v1", "index", handler, metrics=PrometheusMetrics())
    with caplog.at_level(logging.INFO, logger="stream.worker"):
        assert worker.run_once(0.0) == 2
    down = [r for r in caplog.records if r.getMessage() == "dependency unavailable, batch kept uncommitted"]
    back = [r for r in caplog.records if r.getMessage() == "dependency available again"]
    assert len(down) == 2 and len(back) == 1
    assert back[0].failed_tries == 2 and back[0].stage == "index"  # type: ignore[attr-defined]
    assert store.count_articles() == 2
    worker.close()
    store.close()
    bus.close()
