"""Operators' commands on the embedded bus and store, and on tansu: ``redrive``, ``lag``, reading commands
that refuse an empty embedded store, flags that name themselves in errors, and logging by flag order.

The pipeline here is the real index stage over real buses; articles come to ``articles.clustered``
as the embed stage would publish them (enriched with a story), so no model is needed.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from indexer.index_stage import IndexStage
from indexer.store_embedded import EmbeddedStore
from sednaya_monitor.cli import _register, cli
from sednaya_monitor.pipeline import publish_article
from sednaya_monitor.prometheus_metrics import PrometheusMetrics
from sednaya_monitor.settings import Settings, load_settings
from sednaya_monitor.topology import GROUP_INDEX
from sednaya_monitor.wiring import kafka_config, make_alert_stage
from stream.bus import H_SCHEMA
from stream.bus_embedded import EmbeddedBus
from stream.errors import SednayaError
from stream.worker import StageWorker
from tests.broker_fixtures import Broker, kafka_test_overrides
from tests.store_fixtures import make_article

_register()


def _clustered(n: int) -> list:  # type: ignore[type-arg]
    return [make_article(story_id=f"s{i % 2}", story_role="first" if i < 2 else "follow_up") for i in range(n)]


def _publish_clustered(bus: EmbeddedBus, settings: Settings, articles: list) -> None:  # type: ignore[type-arg]
    for article in articles:
        publish_article(bus, settings, article.replace(story_id=None, story_role=None))  # what the crawl sent
        bus.publish(settings.topic_clustered, article.id, article.to_bytes(), {H_SCHEMA: "1"})
    bus.flush()


def _index(bus: EmbeddedBus, store: EmbeddedStore, settings: Settings) -> int:
    stage = IndexStage(store, PrometheusMetrics())
    worker = StageWorker(bus, settings.topic_clustered, GROUP_INDEX, stage, metrics=PrometheusMetrics())
    total = 0
    while taken := worker.run_once(0.0):
        total += taken
    return total


def _delete_behind_the_service(path: Path, article_id: str) -> None:
    """Lose a document the way a store can: the row is gone, nobody was told."""
    conn = sqlite3.connect(path)
    with conn:
        (rowid,) = conn.execute("SELECT rowid FROM articles WHERE id = ?", (article_id,)).fetchone()
        for table in ("articles", "article_docs", "articles_fts"):
            conn.execute(f"DELETE FROM {table} WHERE rowid = ?", (rowid,))  # fixed table names
    conn.close()


@pytest.fixture
def embedded_pipeline(settings: Settings) -> tuple[EmbeddedBus, EmbeddedStore]:
    bus = EmbeddedBus(settings.data_dir / "bus.sqlite3")
    store = EmbeddedStore(settings.data_dir / "store.sqlite3")
    store.ensure_ready()
    return bus, store


def invoke(*args: str) -> tuple[int, str, str]:
    """Run the CLI in-process; domain errors exit 1 with ``Error: <message>`` as ``main`` maps them."""
    result = CliRunner().invoke(cli, list(args))
    if isinstance(result.exception, SednayaError):
        return 1, result.stdout, result.stderr + f"Error: {result.exception}"
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def test_redrive_missing_writes_a_lost_article_again(
    settings: Settings, embedded_pipeline: tuple[EmbeddedBus, EmbeddedStore]
) -> None:
    bus, store = embedded_pipeline
    articles = _clustered(5)
    _publish_clustered(bus, settings, articles)
    assert _index(bus, store, settings) == 5
    lost = articles[3]
    _delete_behind_the_service(settings.data_dir / "store.sqlite3", lost.id)
    assert store.get_article(lost.id) is None and store.count_articles() == 4

    code, out, err = invoke("--data-dir", str(settings.data_dir), "redrive", "--missing", "--topic", "raw", "--dry-run")
    assert code == 0, err
    assert out.split() == [settings.topic_clustered, f"0:{bus_offset(bus, settings, lost.id)}", lost.id]
    assert "4 articles of " in err and "would re-publish 1 to " + settings.topic_clustered in err
    assert _index(bus, store, settings) == 0  # a dry run publishes nothing

    code, out, err = invoke("--data-dir", str(settings.data_dir), "redrive", "--missing", "--topic", "raw")
    assert code == 0, err
    assert f"re-published 1 to {settings.topic_clustered}" in err
    assert _index(bus, store, settings) == 1
    back = store.get_article(lost.id)
    assert back is not None and back.story_id == lost.story_id and back.title == lost.title
    assert store.count_articles() == 5

    # idempotent: nothing missing now, and re-driving by id again writes the same document once
    code, _out, err = invoke("--data-dir", str(settings.data_dir), "redrive", "--missing")
    assert code == 0 and "re-published nothing" in err
    code, _out, err = invoke("--data-dir", str(settings.data_dir), "redrive", "--id", lost.id, "--id", articles[0].id)
    assert code == 0 and f"re-published 2 to {settings.topic_clustered}" in err
    assert _index(bus, store, settings) == 2
    assert store.count_articles() == 5


def bus_offset(bus: EmbeddedBus, settings: Settings, article_id: str) -> int:
    return next(r.offset for r in bus.read_topic(settings.topic_clustered) if r.key == article_id)


def test_redrive_by_offset_range_and_unclustered_articles_go_to_raw(
    settings: Settings, embedded_pipeline: tuple[EmbeddedBus, EmbeddedStore]
) -> None:
    bus, store = embedded_pipeline
    articles = _clustered(4)
    _publish_clustered(bus, settings, articles)
    never = make_article()
    publish_article(bus, settings, never)  # on raw only: the embed stage never decided it
    bus.flush()
    _index(bus, store, settings)
    offsets = [bus_offset(bus, settings, a.id) for a in articles]
    base = ["--data-dir", str(settings.data_dir), "redrive"]
    code, out, err = invoke(
        *base, "--partition", "0", "--from-offset", str(offsets[1]), "--to-offset", str(offsets[2]), "--dry-run"
    )
    assert code == 0, err
    assert [line.split()[2] for line in out.splitlines()] == sorted([articles[1].id, articles[2].id])

    code, out, err = invoke(*base, "--id", never.id)
    assert code == 0, err
    assert f"re-published 1 to {settings.topic_raw}" in err
    raw = [r for r in bus.read_topic(settings.topic_raw) if r.key == never.id]
    assert len(raw) == 2 and raw[-1].headers["redrive.of"].startswith(f"{settings.topic_raw}:0:")

    code, _out, err = invoke(*base, "--id", "0" * 32)
    assert code == 1 and "article ids ['" + "0" * 32 + "'] are on neither" in err
    code, _out, err = invoke(*base, "--id", never.id, "--missing")
    assert code == 2 and "choose exactly one of --id, --missing" in err
    code, _out, err = invoke(*base, "--from-offset", "5", "--to-offset", "2")
    assert code == 2 and "'--to-offset'" in err


def test_lag_from_the_embedded_log(settings: Settings, embedded_pipeline: tuple[EmbeddedBus, EmbeddedStore]) -> None:
    bus, store = embedded_pipeline
    _publish_clustered(bus, settings, _clustered(3))
    code, out, err = invoke("--data-dir", str(settings.data_dir), "lag", "--json")
    assert code == 0, err
    rows = {(r["topic"], r["group"]): r for r in map(json.loads, out.splitlines())}
    assert rows[(settings.topic_clustered, "index")]["lag"] == 3
    assert rows[(settings.topic_raw, "embed")]["lag"] == 3
    _index(bus, store, settings)
    _code, out, _err = invoke("--data-dir", str(settings.data_dir), "lag")
    line = next(x for x in out.splitlines() if x.startswith(settings.topic_clustered) and " index " in x)
    assert line.split()[2] == "0", out


@pytest.mark.timeout(120)
def test_the_lag_exporter_does_not_hold_a_stop_up_while_the_broker_is_down(tmp_path: Path) -> None:
    """Every stage process runs the exporter; with the broker gone a round waits on admin requests (up to
    30 s), and ``stop`` joined it for 15 s and then closed its client for several more: a SIGTERM of an
    index stage outlasted its 20 s grace. Now ``stop`` gives a round in progress ``STOP_WAIT_S``."""
    from sednaya_monitor.lag import STOP_WAIT_S, LagExporter
    from stream.bus_kafka import KafkaBus
    from tests.broker_fixtures import make_tansu

    broker = make_tansu(tmp_path / "tansu")
    broker.workdir.mkdir(parents=True)
    broker.start()
    try:
        overrides = {**kafka_test_overrides(broker), "data_dir": tmp_path / "data", "lag_interval_s": 0.2}
        settings = load_settings(environ={}, overrides=overrides)
        KafkaBus(kafka_config(settings)).ensure_topics(settings.topics)
        exporter = LagExporter(settings, PrometheusMetrics(), lambda: KafkaBus(kafka_config(settings))).start()
        deadline = time.monotonic() + 60
        while exporter.rounds < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert exporter.rounds >= 1
    finally:
        broker.stop()
    time.sleep(1.0)  # the next rounds now wait on the dead broker
    started = time.monotonic()
    exporter.stop()
    assert time.monotonic() - started < STOP_WAIT_S + 2.0


@pytest.mark.timeout(120)
def test_lag_from_the_broker_grows_while_the_group_is_dead(tansu_broker: Broker, data_dir: Path) -> None:
    """The index group consumes, commits and dies; records keep coming: the broker-side lag grows."""
    from sednaya_monitor.lag import LagExporter
    from stream.bus_kafka import KafkaBus

    settings = load_settings(environ={}, overrides={**kafka_test_overrides(tansu_broker), "data_dir": data_dir})
    bus = KafkaBus(kafka_config(settings))
    bus.ensure_topics(settings.topics)
    metrics = PrometheusMetrics()
    exporter = LagExporter(settings, metrics, lambda: KafkaBus(kafka_config(settings)))
    try:
        for article in _clustered(6):
            bus.publish(settings.topic_clustered, article.id, article.to_bytes())
            bus.flush()  # one batch per record: tansu's ListOffsets is exact then, the fetch check is not needed
        consumer = bus.consumer(settings.topic_clustered, GROUP_INDEX)
        taken: list[object] = []
        deadline = time.monotonic() + 60
        while len(taken) < 6 and time.monotonic() < deadline:
            taken += consumer.poll(16, 1.0)
        consumer.commit()
        consumer.close()  # the stage is gone: nobody reports its lag any more
        assert len(taken) == 6

        def index_lag() -> float:
            exporter.export_once()
            return sum(
                s.value
                for f in metrics.registry.collect()
                if f.name == "sednaya_bus_consumer_lag_records"
                for s in f.samples
                if s.labels["group"] == GROUP_INDEX and s.labels["topic"] == settings.topic_clustered
            )

        assert index_lag() == 0
        for article in _clustered(5):
            bus.publish(settings.topic_clustered, article.id, article.to_bytes())
        bus.flush()  # one batch: its size is only seen by fetching the last batch (tansu)
        assert index_lag() == 5
        for article in _clustered(4):
            bus.publish(settings.topic_clustered, article.id, article.to_bytes())
            bus.flush()
        assert index_lag() == 9
        # the groups that never committed count from the first offset: embed has every raw record ahead
        rows = {(r.topic, r.group): r for r in bus.group_lag([(settings.topic_raw, "embed")])}
        assert rows[(settings.topic_raw, "embed")].lag == 0
    finally:
        exporter.stop()
        bus.close()


def test_reading_commands_refuse_an_empty_embedded_store(tmp_path: Path) -> None:
    empty = tmp_path / "nothing-here"
    for args in (["export"], ["stories"], ["search", "x"], ["dlq", "list"], ["lag"], ["redrive", "--missing"]):
        code, _out, err = invoke("--data-dir", str(empty), *args)
        assert code == 1, (args, err)
        assert "no embedded " in err and "nothing was run with --data-dir" in err, (args, err)
    assert not empty.exists() or not any(empty.iterdir()), "a reading command created an empty store"
    code, _out, err = invoke("--data-dir", str(empty), "--bus", "kafka://127.0.0.1:1", "export")
    assert code == 1 and "the store is 'embedded': pass --store" in err


def test_a_bad_flag_is_reported_as_the_flag(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code, _out, err = invoke("--data-dir", str(tmp_path), "export", "--bus", "kafka://kafka:x")
    assert code == 2 and "--bus='kafka://kafka:x'" in err and "SEDNAYA_MONITOR_BUS" not in err
    code, _out, err = invoke("--data-dir", str(tmp_path), "--store", "ftp://es:9200", "stories")
    assert code == 2 and "--store='ftp://es:9200'" in err
    monkeypatch.setenv("SEDNAYA_MONITOR_BUS", "kafka://kafka:x")
    code, _out, err = invoke("--data-dir", str(tmp_path), "dlq", "list")
    assert code == 2 and "SEDNAYA_MONITOR_BUS='kafka://kafka:x'" in err
    # a flag that overrides a bad variable wins (the variable is not even read)
    code, _out, err = invoke("--data-dir", str(tmp_path), "--bus", "embedded", "export")
    assert "SEDNAYA_MONITOR_BUS" not in err


@pytest.mark.parametrize(
    ("argv", "json_lines"),
    [
        (["--bus", "kafka://127.0.0.1:1", "export"], True),
        (["export", "--bus", "kafka://127.0.0.1:1"], True),
        (["--json-logs", "export"], True),
        (["export", "--json-logs"], True),
        (["export", "--bus", "kafka://127.0.0.1:1", "--text-logs"], False),
        (["--text-logs", "export", "--bus", "kafka://127.0.0.1:1"], False),
        (["export"], False),
    ],
    ids=["bus-before", "bus-after", "asked-before", "asked-after", "text-after", "text-before", "embedded"],
)
def test_logs_are_json_with_timestamps_whatever_the_flag_order(
    argv: list[str], json_lines: bool, tmp_path: Path
) -> None:
    code, _out, err = invoke("--log-level", "DEBUG", "--data-dir", str(tmp_path / "d"), *argv)
    assert code == 1  # nothing to export here; what matters is the log line before the error
    lines = [line for line in err.splitlines() if "logging configured" in line]
    assert lines, err
    last = lines[-1]
    if json_lines:
        record = json.loads(last)
        assert record["time"].endswith("+00:00") and record["level"] == "DEBUG"
    else:
        stamp = last.split(" ", 2)[:2]  # "2026-12-06 01:02:03,456 DEBUG ..."
        assert len(stamp[0]) == 10 and stamp[0][4] == "-" and ":" in stamp[1], last


def test_ingest_publish_only_publishes_to_the_raw_topic_and_runs_no_stage(settings: Settings, tmp_path: Path) -> None:
    lines = [
        json.dumps({"url": f"https://news.example.org/po/{i}", "title": f"Title {i}", "text": "Body text " * 20})
        for i in range(3)
    ]
    source = tmp_path / "in.jsonl"
    source.write_text("\n".join([*lines, "{not json"]) + "\n", encoding="utf-8")
    code, out, err = invoke("--data-dir", str(settings.data_dir), "ingest", "--publish-only", str(source))
    assert code == 0, err
    assert f"published 3 articles to {settings.topic_raw} on embedded" in out
    assert "dead letters:  1" in out and "lines in:      4" in out
    bus = EmbeddedBus(settings.data_dir / "bus.sqlite3")
    try:
        assert len(list(bus.read_topic(settings.topic_raw))) == 3
        assert not list(bus.read_topic(settings.topic_clustered))  # no stage ran
        assert len(bus.dead_letters(settings.topic_raw)) == 1
    finally:
        bus.close()
    assert not (settings.data_dir / "store.sqlite3").exists()


@pytest.mark.parametrize(
    ("argv", "command"),
    [(["run"], "run"), (["ingest", "-"], "ingest"), (["run", "--follow"], "run"), (["demo", "--no-serve"], "demo")],
)
def test_one_process_commands_refuse_a_kafka_bus(argv: list[str], command: str, tmp_path: Path) -> None:
    """`run`/`ingest`/`demo` would join the deployment's groups with a story state of their own: refused,
    before the data directory is touched, naming the setting and what to run instead."""
    data = tmp_path / "d"
    code, _out, err = invoke("--data-dir", str(data), "--bus", "kafka://broker.invalid:9092", *argv)
    assert code == 2, err
    assert f"`{command}` runs every stage in this process: on the bus 'kafka://broker.invalid:9092'" in err
    assert "consumer groups (embed, index, index-stories, alert)" in err
    assert "setting bus: --bus, SEDNAYA_MONITOR_BUS" in err and "sednaya-monitor ingest --publish-only FILE" in err
    assert not data.exists()


def test_no_compose_service_runs_every_stage_in_one_process() -> None:
    """The compose file starts no `run` or full `ingest` on its Kafka bus (they refuse it), and a one-off
    command exec'd in a stage container has the Pushgateway to push its figures to."""
    import yaml

    compose = yaml.safe_load((Path(__file__).parents[1] / "docker-compose.yml").read_text(encoding="utf-8"))
    services = compose["services"]
    for name, service in services.items():
        command = [str(part) for part in service.get("command") or []]
        if str(service.get("image", "")).startswith("${SEDNAYA_IMAGE"):
            assert command[:1] != ["run"], name
            assert command[:1] != ["ingest"] or "--publish-only" in command, name
    assert "run-once" not in services
    env = services["crawl"]["environment"]
    assert env["SEDNAYA_MONITOR_PUSHGATEWAY"].endswith("pushgateway:9091}")


def test_third_party_lines_lose_their_traceback_and_repeats_are_counted() -> None:
    from sednaya_monitor.cli.logs import RepeatFilter

    flt = RepeatFilter(window_s=60)

    def record(name: str, at: float, *, exc: bool = False) -> logging.LogRecord:
        info = None
        if exc:
            try:
                raise ConnectionRefusedError(111, "Connection refused")
            except ConnectionRefusedError:
                info = sys.exc_info()
        rec = logging.LogRecord(name, logging.WARNING, __file__, 1, "node failed", None, info)
        rec.created = at
        return rec

    first = record("elastic_transport.node_pool", 1000.0, exc=True)
    assert flt.filter(first) and first.exc_info is None and "ConnectionRefusedError" in first.error  # type: ignore[attr-defined]
    held = [flt.filter(record("elastic_transport.node_pool", 1000.0 + i, exc=True)) for i in range(1, 30)]
    assert not any(held)
    later = record("elastic_transport.node_pool", 1061.0, exc=True)
    assert flt.filter(later) and later.repeated == 29  # type: ignore[attr-defined]
    ours = record("sednaya_monitor.x", 1000.0, exc=True)
    assert flt.filter(ours) and ours.exc_info is not None  # our first occurrence keeps its traceback
    again = record("sednaya_monitor.x", 1070.0, exc=True)
    assert flt.filter(again) and again.exc_info is None  # a repeat after the window: one line, no traceback


def test_an_alert_waiting_for_a_lost_article_is_delivered_once_it_is_redriven(
    settings: Settings, embedded_pipeline: tuple[EmbeddedBus, EmbeddedStore]
) -> None:
    """The issue's repair: the store lost an article the alert stage needs; the alert stage waits for it
    (nothing dead-lettered for lag, issue 17), ``redrive --missing`` writes it again, and the waiting
    event is delivered once."""
    from sednaya_monitor.topology import GROUP_ALERT
    from tests.alert_fixtures import make_event

    bus, store = embedded_pipeline
    articles = _clustered(2)
    _publish_clustered(bus, settings, articles)
    _index(bus, store, settings)
    lost = articles[1]
    code, _out, err = invoke("--data-dir", str(settings.data_dir), "watch", "add", "everything", "article")
    assert code == 0, err
    _delete_behind_the_service(settings.data_dir / "store.sqlite3", lost.id)
    event = make_event("created", lost, story_id="s-lost")
    bus.publish(settings.topic_story_events, event.story.id, event.to_bytes(), {H_SCHEMA: "1"})
    bus.flush()
    metrics = PrometheusMetrics()
    alert = make_alert_stage(settings.replace(alert_max_age_s=10 * 365 * 86400.0), store, metrics, bus=bus)
    worker = StageWorker(bus, settings.topic_story_events, GROUP_ALERT, alert, metrics=metrics, max_attempts=1)
    try:
        assert worker.run_once(0.0) == 1
        assert bus.dead_letters(settings.topic_story_events) == []  # waiting, not dead-lettered

        base = ["--data-dir", str(settings.data_dir)]
        code, _out, err = invoke(*base, "redrive", "--missing")
        assert code == 0 and f"re-published 1 to {settings.topic_clustered}" in err, err
        _index(bus, store, settings)
        alert.retry_waiting(force=True)
        assert alert.wait_idle(30.0)
        assert bus.dead_letters(settings.topic_story_events) == []
        assert metrics.registry.get_sample_value("sednaya_articles_total", {"stage": "alert", "status": "alerted"}) == 1
    finally:
        worker.close()
        alert.close()


def test_healthz_reason_names_the_worker_once() -> None:
    from sednaya_monitor.cli.commands_stages import HealthBoard
    from sednaya_monitor.metrics_server import Health

    health = Health()
    board = HealthBoard(health)
    board.reporter("index")(False, "index: store http://es:9200 unavailable")
    board.reporter("alert")(False, "store http://es:9200 unavailable")
    assert health.state.reason == "alert: store http://es:9200 unavailable; index: store http://es:9200 unavailable"


def _config(path: Path, overrides: dict[str, object]) -> Path:
    lines = [f"{key} = {json.dumps(value)}" for key, value in overrides.items() if isinstance(value, (str, int))]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def own_tansu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """A tansu of this test alone: a long-lived tansu stops settling groups late in a full run
    (tests/broker_fixtures.py, ``fresh_broker``), and this test joins, leaves and moves a group."""
    from tests.broker_fixtures import _broker

    yield from _broker("tansu", tmp_path_factory)


@pytest.mark.timeout(180)
def test_offsets_reset_on_tansu(own_tansu: Broker, data_dir: Path, tmp_path: Path) -> None:
    """``offsets reset``: a dry run shows current/new per partition and commits nothing; a live group is
    refused; a stopped group is moved to earliest, to an offset, to a time, to latest."""
    from datetime import UTC, datetime

    from stream.bus_kafka import KafkaBus

    tansu_broker = own_tansu
    overrides = kafka_test_overrides(tansu_broker)
    settings = load_settings(environ={}, overrides={**overrides, "data_dir": data_dir})
    base = ["--data-dir", str(data_dir), "--config", str(_config(tmp_path / "ops.toml", overrides))]
    bus = KafkaBus(kafka_config(settings))
    bus.ensure_topics(settings.topics)

    def publish(n: int) -> None:
        for article in _clustered(n):
            bus.publish(settings.topic_clustered, article.id, article.to_bytes())
            bus.flush()  # one batch per record

    def lag() -> int:
        return sum(r.lag for r in bus.group_lag([(settings.topic_clustered, GROUP_INDEX)]))

    def reset(*args: str) -> tuple[int, str, str]:
        return invoke(*base, "offsets", "reset", "--group", GROUP_INDEX, "--topic", "clustered", *args)

    try:
        publish(6)
        consumer = bus.consumer(settings.topic_clustered, GROUP_INDEX)
        taken: list[object] = []
        deadline = time.monotonic() + 60
        while len(taken) < 6 and time.monotonic() < deadline:
            taken += consumer.poll(16, 1.0)
        consumer.commit()
        assert len(taken) == 6 and lag() == 0

        code, out, err = reset("--to", "earliest", "--dry-run")
        assert code == 0, err
        rows = [line.split() for line in out.splitlines()[1:]]
        assert len(rows) == settings.kafka_partitions
        # current -> new; "-": a partition none of the six records went to has no committed offset (which
        # partitions they go to depends on their ids, hence on the tests that ran before)
        assert sum(int(r[1]) for r in rows if r[1] != "-") == 6 and all(r[2] == "0" for r in rows), out
        assert "6 records to process again, 0 skipped" in err and "dry run: nothing committed" in err
        assert lag() == 0  # nothing moved

        code, _out, err = reset("--to", "earliest")  # the group is alive
        assert code == 1 and "consumer group 'index' has" in err and "active member" in err, err
        assert lag() == 0
        consumer.close()  # the stage stops: its member leaves (at the latest after the session timeout)

        deadline = time.monotonic() + 30
        code, _out, err = reset("--to", "earliest")
        while code == 1 and "active member" in err and time.monotonic() < deadline:
            time.sleep(1)
            code, _out, err = reset("--to", "earliest")
        assert code == 0, err
        assert lag() == 6
        code, out, err = reset("--to", "offset:1")  # clamped into each partition's range
        assert code == 0, err
        nonempty = [r for r in (line.split() for line in out.splitlines()[1:]) if r[4] != "0"]
        assert lag() == 6 - len(nonempty)

        before = datetime.now(UTC)
        time.sleep(1.1)  # record timestamps are in milliseconds; a clear gap
        publish(3)
        code, _out, err = reset("--to", "time:" + before.isoformat())
        assert code == 0, err
        assert lag() == 3  # only the records after the time are ahead
        code, _out, err = reset("--to", "latest")
        assert code == 0 and "9 skipped" not in err, err
        assert lag() == 0

        code, _out, err = reset("--to", "yesterday")
        assert code == 2 and "--to 'yesterday': expected earliest, latest, offset:N or time:ISO-8601" in err, err
    finally:
        bus.close()


def test_offsets_reset_needs_the_kafka_bus(settings: Settings) -> None:
    EmbeddedBus(settings.data_dir / "bus.sqlite3").close()
    code, _out, err = invoke(
        "--data-dir", str(settings.data_dir), "offsets", "reset", "--group", "index", "--topic", "clustered",
        "--to", "earliest",
    )  # fmt: skip
    assert code == 2 and "offsets reset needs the Kafka bus (--bus kafka://host:port)" in err, err


def test_reset_target_forms_and_errors() -> None:
    from datetime import UTC, datetime

    from stream.offset_reset import ResetTargetError, clamp, parse_reset_target

    assert str(parse_reset_target("earliest")) == "earliest" and parse_reset_target(" latest ").kind == "latest"
    assert parse_reset_target("offset:145").offset == 145
    naive = parse_reset_target("time:2024-12-08T06:00:00")
    assert naive.at == datetime(2024, 12, 8, 6, tzinfo=UTC) and str(naive) == "time:2024-12-08T06:00:00Z"
    assert parse_reset_target("time:2024-12-08T08:00:00+02:00").at == naive.at
    for bad, says in (
        ("offset:-1", "'offset:-1': the offset must be a non-negative integer"),
        ("time:8 Dec", "'time:8 Dec': Invalid isoformat string"),
        ("begin", "'begin': expected earliest, latest, offset:N or time:ISO-8601"),
    ):
        with pytest.raises(ResetTargetError, match=says):
            parse_reset_target(bad)
    assert (clamp(1, 0, 0), clamp(1, 3, 9), clamp(12, 3, 9), clamp(5, 3, 9)) == (0, 3, 9, 5)


def test_watch_commands_take_the_store_and_refuse_a_local_one_beside_a_cluster(tmp_path: Path) -> None:
    code, _out, err = invoke(
        "--data-dir", str(tmp_path), "watch", "add", "w", "Sednaya", "--bus", "kafka://127.0.0.1:1",
    )  # fmt: skip
    assert code == 1 and "a deployment keeps its watchlists in its store; pass --store http(s)://" in err, err
    assert not (tmp_path / "watchlists.sqlite3").exists()  # nothing written beside the cluster
    code, out, err = invoke("--data-dir", str(tmp_path), "watch", "add", "w", "Sednaya", "--store", "embedded")
    assert code == 0 and "watchlist 'w' saved" in out, err
