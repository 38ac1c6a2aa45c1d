"""Operating a distributed deployment (tansu + noida-db, stage commands as OS processes), as the runbook says:

1. after a clean run, every stage accounts for every article: in = out + dead letters, per stage (the
   alert stage too: one status per article, the merge events counted apart);
2. a write the store acknowledged and then lost (the document deleted behind the service) comes back
   with ``sednaya-monitor redrive --missing`` alone: no hand-written producer;
3. the index stage is killed: the lag of its group, exported from the broker by the processes still
   alive, grows while records arrive, and falls to 0 once a new index stage catches up.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from stream.article import Article
from tests.distributed_fixtures import (
    CLI,
    Deployment,
    ElasticServer,
    StageProcess,
    fixture_articles,
    generated_articles,
    new_deployment,
    wait_for,
)

pytestmark = pytest.mark.slow

INDEX_TIMEOUT_S = 150.0  # embedding on a loaded 2-core machine, plus a group rebalance or two
LAG_TIMEOUT_S = 60.0  # the exporters ask the broker every second here (lag_interval_s)
CLI_TIMEOUT_S = 120.0


@pytest.fixture(scope="module")
def deployment(dist_elastic: ElasticServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    found = new_deployment(dist_elastic, tmp_path_factory.mktemp("ops"), lag_interval_s="1")
    try:
        for name in ("index", "alert", "embed"):
            found.stage(name)
        for process in found.processes:
            process.wait_serving()
        yield found
    finally:
        found.close()


def _process(deployment: Deployment, name: str) -> StageProcess:
    return next(p for p in reversed(deployment.processes) if p.name == name and p.alive())


def _cli(deployment: Deployment, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [
        *CLI,
        "--data-dir",
        str(deployment.root / "operator"),
        *args,
        "--bus",
        deployment.broker.url,
        "--store",
        deployment.elastic.url,
    ]
    done = subprocess.run(argv, env=deployment.env, capture_output=True, text=True, timeout=CLI_TIMEOUT_S, check=False)
    assert done.returncode == 0, f"{args}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done


def _fresh(deployment: Deployment, n: int, seed: int) -> list[Article]:
    """``n`` generated articles the deployment has not seen (the generator reuses some URLs across seeds,
    and a known article is answered with its old decision, publishing nothing new)."""
    known = {r.key for r in deployment.bus.read_topic(deployment.settings.topic_raw)}
    out = [a for a in generated_articles(4 * n, seed=seed) if a.id not in known]
    assert len(out) >= n
    return out[:n]


def _lag(process: StageProcess, group: str, topic: str) -> float:
    return process.sample("sednaya_bus_consumer_lag_records", group=group, topic=topic)


@pytest.mark.timeout(400)
def test_clean_run_accounts_for_every_article_then_a_lost_write_is_redriven(deployment: Deployment) -> None:
    settings = deployment.settings
    articles = fixture_articles() + generated_articles(8, seed=5)
    ids = set(deployment.publish(articles))
    docs = deployment.wait_indexed(ids, INDEX_TIMEOUT_S)
    assert sorted(d.id for d in docs) == sorted(ids)
    embed, index = _process(deployment, "embed"), _process(deployment, "index")

    # 1. per stage: in = out + dead, each article counted once per stage (docs/runbook.md, statuses)
    n = len(articles)
    wait_for("the index counters", lambda: index.sample("sednaya_articles_total", stage="index") >= n, 30)
    for process, stage, topic in (
        (embed, "embed", settings.topic_raw),
        (embed, "cluster", settings.topic_embedded),
        (index, "index", settings.topic_clustered),
    ):
        consumed = process.sample("sednaya_bus_records_total", topic=topic, op="consumed")
        counted = process.sample("sednaya_articles_total", stage=stage)
        dead = process.sample("sednaya_articles_total", stage=stage, status="dead_lettered")
        assert consumed == counted == n, (stage, consumed, counted)
        assert dead == 0, stage
    decisions = {
        status: embed.sample("sednaya_articles_total", stage="cluster", status=status)
        for status in ("first", "duplicate", "clustered", "follow_up", "replayed")
    }
    assert sum(decisions.values()) == n and decisions["replayed"] == 0, decisions
    assert embed.sample("sednaya_articles_total", stage="embed", status="embedded") == n
    # the alert stage: one story event per article (created or updated) plus the merges, which are no article
    alert = _process(deployment, "alert")
    wait_for("the alert counters", lambda: alert.sample("sednaya_articles_total", stage="alert") >= n, 60)
    taken = alert.sample("sednaya_bus_records_total", topic=settings.topic_story_events, op="consumed")
    kinds = {k: alert.sample("sednaya_alert_story_events_total", kind=k) for k in ("created", "updated", "merged")}
    assert taken == sum(kinds.values()), (taken, kinds)
    assert kinds["created"] + kinds["updated"] == n, kinds
    assert alert.sample("sednaya_articles_total", stage="alert") == n
    assert alert.sample("sednaya_articles_total", stage="alert", status="dead_lettered") == 0

    # 2. the store loses an acknowledged write behind the service's back
    lost = next(d for d in docs if d.story_role == "duplicate")
    deployment.store.client.delete_by_query(
        index=f"{settings.es_prefix}-articles", query={"term": {"id": lost.id}}, refresh=True
    )
    assert deployment.store.get_article(lost.id) is None

    # re-publishing it to the raw topic would be a no-op ("replayed"); redrive finds its clustered record
    dry = _cli(deployment, "redrive", "--missing", "--topic", "raw", "--dry-run")
    assert [line.split("\t")[2] for line in dry.stdout.splitlines()] == [lost.id], dry.stdout
    assert f"{n - 1} articles of {settings.topic_raw} already in the store" in dry.stderr
    done = _cli(deployment, "redrive", "--missing", "--topic", "raw")
    assert f"re-published 1 to {settings.topic_clustered}" in done.stderr, done.stderr
    wait_for("the lost article back in the store", lambda: deployment.store.get_article(lost.id) is not None, 60)
    back = deployment.store.get_article(lost.id)
    assert back is not None
    assert (back.story_id, back.story_role, back.duplicate_of) == (lost.story_id, lost.story_role, lost.duplicate_of)
    again = deployment.indexed()
    assert sorted(d.id for d in again) == sorted(ids), "an article is missing or indexed twice"
    # the embed stage decided nothing again: no article was re-published to the raw topic
    assert embed.sample("sednaya_articles_total", stage="cluster", status="replayed") == 0
    nothing = _cli(deployment, "redrive", "--missing", "--topic", "raw")
    assert "re-published nothing" in nothing.stderr


@pytest.mark.timeout(400)
def test_a_killed_index_stage_shows_growing_lag_from_the_broker(deployment: Deployment) -> None:
    settings = deployment.settings
    index = _process(deployment, "index")
    embed = _process(deployment, "embed")
    alert = _process(deployment, "alert")
    topic = settings.topic_clustered
    wait_for("index lag 0 before the kill", lambda: _lag(embed, "index", topic) == 0, LAG_TIMEOUT_S)
    index.kill()

    first = _fresh(deployment, 6, seed=41)
    deployment.publish(first)
    second = [a for a in _fresh(deployment, 11, seed=42) if a.id not in {f.id for f in first}][:5]
    wait_for(
        "index lag of the first batch, seen by embed and alert",
        lambda: _lag(embed, "index", topic) >= len(first) and _lag(alert, "index", topic) >= len(first),
        INDEX_TIMEOUT_S,
        deployment=deployment,
    )
    deployment.publish(second)
    total = len(first) + len(second)
    wait_for(
        "index lag growing with the second batch",
        lambda: _lag(embed, "index", topic) >= total,
        INDEX_TIMEOUT_S,
        deployment=deployment,
    )
    listing = _cli(deployment, "lag")
    row = next(line for line in listing.stdout.splitlines() if line.startswith(topic) and " index " in line)
    assert int(row.split()[2]) >= total, listing.stdout

    replacement = deployment.stage("index")
    replacement.wait_serving()
    ids = {a.id for a in first + second}
    deployment.wait_indexed(ids, INDEX_TIMEOUT_S)
    wait_for("index lag back to 0", lambda: _lag(embed, "index", topic) == 0, LAG_TIMEOUT_S, deployment=deployment)
