"""The story state on the broker (issue 21): what it costs per article beside the model, how many bytes a
story takes, and how long a standby on another data directory takes to assign again after a SIGKILL.

1. **Cost per article** (one process, a fresh tansu broker): N generated articles are embedded with the
   default model (timed: the model's cost per article), then clustered in batches of ``--batch`` twice
   over the same vectors, once on the plain SQLite ``StoryState`` and once on ``ChangelogStoryState``
   (every commit shipped to the compacted changelog topic and acknowledged, a catch-up read before each
   batch, as ``ChangelogClusterStage`` does). The difference is the state store's cost per article;
   bytes appended to the changelog per article, and the compacted state (the latest record per key, what
   a new owner replays) per story, are counted from the topic.
2. **Failover** (separate processes on tansu + noida-db, every process on its own data directory):
   ``index``, ``embed --no-cluster`` (vectors) and two ``embed --no-vectors`` (assigners, one active, one
   standby). A burst is published; when the active assigner has decided a third of it, it gets SIGKILL.
   Failover time = kill until the standby's first decision (``sednaya_articles_total{stage="cluster"}``),
   which includes the broker noticing the death (``kafka_session_timeout_ms``), the group rebalance and the
   catch-up read; the catch-up alone is timed from the standby's log.

Usage: ``python -m bench.distributed_state [--articles 400] [--batch 16] [--failover-articles 150]``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.report import write_section
from sednaya_monitor.prometheus_metrics import PrometheusMetrics
from sednaya_monitor.settings import Settings, load_settings
from sednaya_monitor.wiring import kafka_config, make_assign_stage
from stream.article import Article
from stream.bus_kafka import KafkaBus
from stream.changelog_kafka import KafkaChangelog
from stream.embedding import Embedder
from stream.state_changelog import ChangelogStoryState
from stream.story_state import STATE_FILE, StoryState
from tests.broker_fixtures import free_port, make_tansu
from tests.distributed_fixtures import ElasticServer, StageProcess, generated_articles, new_deployment

SECTION = "distributed_state"
TOPIC = "bench.stories.changelog.v1"
FAILOVER_TIMEOUT_S = 300.0
STATUSES = ("first", "clustered", "follow_up", "duplicate")


def _clock(fn: Any) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _cluster(settings: Settings, embedder: Embedder, state: StoryState, articles: list[Article], batch: int) -> float:
    """Seconds to cluster ``articles`` (vectors given) in batches, as the cluster stage does."""
    stage = make_assign_stage(settings, PrometheusMetrics(), embedder=embedder, state=state)
    catch_up = state.catch_up if isinstance(state, ChangelogStoryState) else None
    start = time.perf_counter()
    for at in range(0, len(articles), batch):
        if catch_up is not None:
            catch_up()
        stage.process(articles[at : at + batch])
    seconds = time.perf_counter() - start
    stage.close()
    return seconds


def measure_cost(root: Path, n: int, batch: int) -> dict[str, Any]:
    from sednaya_monitor.wiring import make_embedder
    from stream.embed_text import embed_text

    broker = make_tansu(root / "tansu")
    broker.workdir.mkdir(parents=True, exist_ok=True)
    broker.start()
    try:
        settings = load_settings(
            environ={}, overrides={"data_dir": root / "cost", "bus": broker.url, "kafka_partitions": 1}
        )
        articles = generated_articles(n, seed=303)
        embedder = make_embedder(settings)
        embedder.embed([embed_text(a.title, a.text) for a in articles[:8]])  # load the model (not timed)
        vectors: list[Any] = []
        model_s = _clock(lambda: vectors.extend(embedder.embed([embed_text(a.title, a.text) for a in articles])))
        with_vectors = [
            a.replace(embedding=tuple(float(x) for x in v)) for a, v in zip(articles, vectors, strict=True)
        ]

        plain_dir = root / "plain"
        plain = StoryState(plain_dir / STATE_FILE)
        plain_s = _cluster(settings.replace(data_dir=plain_dir), embedder, plain, with_vectors, batch)

        log_dir = root / "changelog"
        changelog = KafkaChangelog(kafka_config(settings), TOPIC)
        state = ChangelogStoryState(log_dir / STATE_FILE, changelog=changelog)
        logged_s = _cluster(settings.replace(data_dir=log_dir), embedder, state, with_vectors, batch)
        appended, records = changelog.bytes_appended, changelog.records_appended
        check = StoryState(log_dir / STATE_FILE)
        stories = check.story_count(live_only=False)
        live = check.story_count()
        check.close()
        sqlite_bytes = sum(p.stat().st_size for p in log_dir.glob(STATE_FILE + "*"))

        latest: dict[bytes, int] = {}
        by_table: dict[str, int] = {}
        bus = KafkaBus(kafka_config(settings))
        try:
            for record in bus.read_topic(TOPIC):
                latest[record.key.encode()] = len(record.key.encode()) + len(record.value)
        finally:
            bus.close()
        for key, size in latest.items():
            table = json.loads(key)[0]
            by_table[table] = by_table.get(table, 0) + size
        compacted = sum(latest.values())
        replay_log = KafkaChangelog(kafka_config(settings), TOPIC)
        replay = ChangelogStoryState(root / "replay" / STATE_FILE, changelog=replay_log)
        replay_s = _clock(replay.catch_up)
        replay.close()
        return {
            "articles": n,
            "batch": batch,
            "model_ms": 1000 * model_s / n,
            "plain_ms": 1000 * plain_s / n,
            "changelog_ms": 1000 * logged_s / n,
            "appended_per_article": appended / n,
            "records_per_article": records / n,
            "stories": stories,
            "live_stories": live,
            "compacted_bytes": compacted,
            "compacted_per_story": compacted / max(1, stories),
            "by_table": by_table,
            "sqlite_per_story": sqlite_bytes / max(1, stories),
            "replay_s": replay_s,
            "replay_records": len(latest),
        }
    finally:
        broker.stop()


def _assigned(process: StageProcess) -> float:
    return sum(process.sample("sednaya_articles_total", stage="cluster", status=s) for s in STATUSES)


def measure_failover(root: Path, n: int) -> dict[str, Any]:
    es = ElasticServer(port=free_port(), data_dir=root / "es", log_path=root / "noida.log")
    es.start()
    deployment = new_deployment(es, root / "failover")
    try:
        index = deployment.stage("index")
        vectors = deployment.stage("embed", extra=["--no-cluster"])
        assigners = [deployment.stage("embed", extra=["--no-vectors"]) for _ in range(2)]
        for process in (index, vectors, *assigners):
            process.wait_serving()
        ids = set(deployment.publish(generated_articles(n, seed=404)))
        deadline = time.monotonic() + FAILOVER_TIMEOUT_S
        while not any(_assigned(p) >= n / 3 for p in assigners):
            if time.monotonic() > deadline:
                raise RuntimeError(f"no assigner reached {n // 3} decisions:\n{deployment.logs()}")
            time.sleep(0.1)
        active = max(assigners, key=_assigned)
        standby = next(p for p in assigners if p is not active)
        decided_at_kill = _assigned(active)
        killed = time.monotonic()
        active.kill()
        while _assigned(standby) == 0:
            if time.monotonic() - killed > FAILOVER_TIMEOUT_S:
                raise RuntimeError(f"the standby made no decision:\n{standby.log_tail()}")
            time.sleep(0.05)
        failover_s = time.monotonic() - killed
        deployment.wait_indexed(ids, FAILOVER_TIMEOUT_S)
        restored: list[dict[str, Any]] = []
        for line in standby.log_text().splitlines():
            if "restored from the changelog" in line and line.lstrip().startswith("{"):
                restored.append(json.loads(line))
        return {
            "articles": n,
            "decided_at_kill": int(decided_at_kill),
            "failover_s": failover_s,
            "session_timeout_ms": deployment.settings.kafka_session_timeout_ms,
            "catch_up_records": sum(int(r.get("records", 0)) for r in restored),
            "catch_up_s": sum(float(r.get("seconds", 0.0)) for r in restored),
        }
    finally:
        deployment.close()
        es.stop()


def section(cost: dict[str, Any], failover: dict[str, Any] | None) -> list[str]:
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    over = cost["changelog_ms"] - cost["plain_ms"]
    ranked = sorted(cost["by_table"].items(), key=lambda kv: -kv[1])
    tables = ", ".join(f"{t} {b / cost['articles']:.0f}" for t, b in ranked)
    lines = [
        (
            f"Measured {when} by `python -m bench.distributed_state --articles {cost['articles']} --batch "
            f"{cost['batch']}`: a fresh tansu broker (memory engine) on this 2-core machine, the default model "
            "(use-multilingual-v3), generated articles. Cost per article: the model's embedding, then story "
            "assignment over the same vectors on the plain SQLite state and on the state mirrored to its "
            "compacted changelog topic (each commit appended and acknowledged, a catch-up read before each batch)."
        ),
        "",
        "| per article | ms |",
        "|---|---|",
        f"| the model (embedding) | {cost['model_ms']:.1f} |",
        f"| story assignment, plain SQLite state | {cost['plain_ms']:.1f} |",
        f"| story assignment, state + changelog | {cost['changelog_ms']:.1f} |",
        f"| the changelog's own cost | {over:.1f} ({100 * over / cost['model_ms']:.0f}% of the model's) |",
        "",
        "| state size | bytes |",
        "|---|---|",
        (f"| appended to the changelog per article ({cost['records_per_article']:.1f} records) | "
        f"{cost['appended_per_article']:.0f} |"),
        (f"| compacted changelog (latest record per key) per story ({cost['stories']} stories, "
        f"{cost['live_stories']} live) | {cost['compacted_per_story']:.0f} |"),
        f"| local SQLite copy (with WAL) per story | {cost['sqlite_per_story']:.0f} |",
        "",
        (f"Compacted bytes per article by table: {tables}. A new owner on an empty data directory replays "
        f"{cost['replay_records']} records in {cost['replay_s']:.2f} s."),
    ]
    if failover is not None:
        lines += [
            "",
            (
                f"Failover (separate processes, each on its own data directory: `index`, `embed --no-cluster`, two "
                f"`embed --no-vectors`; {failover['articles']} articles, SIGKILL of the active assigner after "
                f"{failover['decided_at_kill']} decisions): **{failover['failover_s']:.1f} s from the kill to the "
                f"standby's first decision**, with `kafka_session_timeout_ms` = {failover['session_timeout_ms']}: "
                "the broker's notice of the death and the group's rebalance are most of it; the standby's catch-up "
                f"(the tail of the changelog since its start: {failover['catch_up_records']} records) took "
                f"{failover['catch_up_s']:.2f} s."
            ),
        ]
    lines += [
        "",
        (
            "Reading: the state store costs milliseconds per article against the model's tens: the changelog "
            "append is one acknowledged produce per batch and the catch-up, while no one else writes, one "
            "end-offset request per batch, so a larger batch spreads both. A story's bytes are dominated by its "
            "vectors (the story row holds the vector sum, `story_langs` one per language) and the MinHash "
            "signatures of its originals, which the compacted topic keeps once per key."
        ),
    ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--articles", type=int, default=400, help="articles of the cost run")
    parser.add_argument("--batch", type=int, default=16, help="records per batch (the stages' batch_size)")
    parser.add_argument("--failover-articles", type=int, default=150, help="articles of the failover run; 0 = skip")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory(prefix="dist-state-") as tmp:
        root = Path(tmp)
        cost = measure_cost(root, args.articles, args.batch)
        print(json.dumps(cost, indent=1), flush=True)
        failover = measure_failover(root, args.failover_articles) if args.failover_articles else None
        if failover is not None:
            print(json.dumps(failover, indent=1), flush=True)
    lines = section(cost, failover)
    write_section(SECTION, lines)
    for line in lines:
        print(line)


if __name__ == "__main__":
    main()
