"""Distributed mode with no disk shared between stage processes (tansu + noida-db on loopback, every
process on its own temporary data directory): SIGKILL of the process holding story assignment
mid-stream; the standby, on another directory, takes over from the changelog topic."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sednaya_monitor.prometheus_metrics import PrometheusMetrics
from sednaya_monitor.wiring import make_assign_stage
from stream.article import Article
from stream.embedding import Embedder
from stream.embedding_stage import H_ARTICLE_ID
from tests.distributed_fixtures import (
    Deployment,
    ElasticServer,
    StageProcess,
    fixture_articles,
    generated_articles,
    new_deployment,
    wait_for,
)
from tests.test_distributed_e2e import INDEX_TIMEOUT_S, assert_exactly_once, read_articles

pytestmark = pytest.mark.slow

Decision = tuple[str | None, str | None, str | None]  # story_id, story_role, duplicate_of
STATUSES = ("first", "clustered", "follow_up", "duplicate")


def assigned(process: StageProcess) -> float:
    """Decisions the process counted (stage ``cluster``)."""
    return sum(process.sample("sednaya_articles_total", stage="cluster", status=s) for s in STATUSES)


@pytest.fixture
def deployment(dist_elastic: ElasticServer, tmp_path: Path) -> Iterator[Deployment]:
    deployment = new_deployment(dist_elastic, tmp_path)
    try:
        yield deployment
    finally:
        deployment.close()


def uninterrupted(deployment: Deployment, embedder: Embedder, tmp_path: Path) -> dict[str, Decision]:
    """The decisions one process makes from the articles (with their vectors) in the order of
    ``articles.embedded``, with nothing interrupted."""
    ordered: list[Article] = []
    seen: set[str] = set()
    for record in deployment.bus.read_topic(deployment.settings.topic_embedded):
        article = Article.from_json(record.value)
        if record.headers.get(H_ARTICLE_ID, article.id) not in seen:
            seen.add(article.id)
            ordered.append(article)
    reference_settings = deployment.settings.replace(data_dir=tmp_path / "reference")
    stage = make_assign_stage(reference_settings, PrometheusMetrics(), embedder=embedder)
    try:
        enriched, _events = stage.process(ordered)
    finally:
        stage.close()
    return {a.id: (a.story_id, a.story_role, a.duplicate_of) for a in enriched}


@pytest.mark.timeout(600)
def test_sigkill_of_the_assigner_on_its_own_directory_the_standby_takes_over_from_the_changelog(
    deployment: Deployment, embedder: Embedder, tmp_path: Path
) -> None:
    index = deployment.stage("index")
    vectors = deployment.stage("embed", extra=["--no-cluster"])
    # Two assigners in group "cluster", each on its own (empty) data directory, joined at once.
    assigners = [deployment.stage("embed", extra=["--no-vectors"]) for _ in range(2)]
    for process in (index, vectors, *assigners):
        process.wait_serving()
    dirs = {Path(p.argv[p.argv.index("--data-dir") + 1]) for p in deployment.processes}
    assert len(dirs) == len(deployment.processes), "a data directory is shared"

    generated = generated_articles(96, seed=41)
    ids = set(deployment.publish(fixture_articles() + generated[:48]))
    wait_for(
        "an assigner to be mid-stream",
        lambda: any(assigned(p) >= 16 for p in assigners),
        INDEX_TIMEOUT_S,
        deployment=deployment,
    )
    active = max(assigners, key=assigned)
    standby = next(p for p in assigners if p is not active)
    active.kill()
    # The rest of the stream comes after the kill: an assigner fast enough to finish the first part before
    # it dies (as CI saw) must not leave the standby with nothing to take over.
    ids |= set(deployment.publish(generated[48:]))

    docs = deployment.wait_indexed(ids, INDEX_TIMEOUT_S + 120)
    assert_exactly_once(docs, ids)
    assert assigned(standby) > 0
    assert "story state restored from the changelog" in standby.log_text()

    published = read_articles(deployment, deployment.settings.topic_clustered)
    versions = {i: {(a.story_id, a.story_role, a.duplicate_of) for a in found} for i, found in published.items()}
    twice = {i: v for i, v in versions.items() if len(v) > 1}
    assert not twice, f"an article published with two decisions: {twice}"
    got = {i: next(iter(v)) for i, v in versions.items() if i in ids}
    assert got == uninterrupted(deployment, embedder, tmp_path)
