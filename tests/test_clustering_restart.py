"""A restarted embed stage makes the same duplicate decisions as one that never stopped, also for an
original that arrived out of publication order (the 2017 briefing after a 2024 article)."""

from pathlib import Path

from sednaya_monitor.prometheus_metrics import PrometheusMetrics
from sednaya_monitor.settings import load_settings
from sednaya_monitor.wiring import make_assign_stage
from stream.assign_stage import AssignStage
from stream.embedding import Embedder
from tests.distributed_fixtures import fixture_articles


def test_restart_keeps_out_of_order_originals_for_near_duplicates(tmp_path: Path, embedder: Embedder) -> None:
    articles = fixture_articles()

    def stage(data_dir: Path) -> AssignStage:
        return make_assign_stage(
            load_settings(environ={}, overrides={"data_dir": data_dir}), PrometheusMetrics(), embedder=embedder
        )

    reference = stage(tmp_path / "ref")
    expected = {a.id: (a.story_role, a.duplicate_of) for a in reference.process(articles)[0]}
    reference.close()
    first = stage(tmp_path / "restart")
    got = {a.id: (a.story_role, a.duplicate_of) for a in first.process(articles[:3])[0]}
    first.close()
    second = stage(tmp_path / "restart")
    got.update({a.id: (a.story_role, a.duplicate_of) for a in second.process(articles[3:])[0]})
    second.close()
    assert any(role == "duplicate" for role, _ in expected.values())
    assert got == expected
