"""The story state mirrored to a compacted changelog topic (tansu on loopback): generic change capture,
replay into an empty data directory, and a standby on another directory taking over mid-stream."""

from __future__ import annotations

import base64
import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sednaya_monitor.prometheus_metrics import PrometheusMetrics
from sednaya_monitor.settings import Settings, load_settings
from sednaya_monitor.wiring import kafka_config, make_assign_stage
from stream.article import Article
from stream.bus_embedded import EmbeddedBus
from stream.changelog_kafka import H_WRITER, MARKER_PREFIX, KafkaChangelog
from stream.cluster_changelog import ChangelogClusterStage
from stream.embedding import Embedder
from stream.embedding_stage import H_ARTICLE_ID
from stream.errors import StoryStateError
from stream.state_changelog import Change, ChangeCapture, ChangelogStoryState
from stream.story import StoryEvent
from stream.story_state import STATE_FILE, StoredDecision, StoryState
from stream.worker import EndOfInputAware
from tests.broker_fixtures import Broker, kafka_test_overrides, unique_name
from tests.distributed_fixtures import fixture_articles
from tests.test_split_embed_stage import decisions, embedded_records, read_all


@pytest.fixture
def kafka_settings(tansu_broker: Broker, tmp_path: Path) -> Settings:
    overrides: dict[str, Any] = {
        **kafka_test_overrides(tansu_broker),
        "data_dir": tmp_path / "client",
        "topic_story_changelog": unique_name("changelog") + ".v1",
    }
    return load_settings(environ={}, overrides=overrides)


def dump(db: sqlite3.Connection) -> dict[str, list[tuple[Any, ...]]]:
    """Every captured table's rows (with rowid where there is one), in rowid/key order."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    for (name,) in db.execute(
        "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite%' AND name NOT LIKE '\\_%' "
        "ESCAPE '\\' ORDER BY name"
    ).fetchall():
        try:
            rows = db.execute(f'SELECT rowid, * FROM "{name}" ORDER BY rowid').fetchall()
        except sqlite3.OperationalError:  # WITHOUT ROWID
            rows = db.execute(f'SELECT * FROM "{name}" ORDER BY 1, 2').fetchall()
        out[name] = rows
    return out


def replay(changelog: KafkaChangelog, db: sqlite3.Connection) -> ChangeCapture:
    capture = ChangeCapture(db, where="replica")
    before = capture.max_seq()
    for record in changelog.read(0):
        capture.apply(record.change)
    capture.drop_notes_after(before)
    db.commit()
    return capture


def test_capture_is_generic_over_tables_and_columns(kafka_settings: Settings, tmp_path: Path) -> None:
    """Tables and columns added after the first open ride along; rowids, BLOBs, deletes, composite keys."""
    topic = kafka_settings.topic_story_changelog
    owner = sqlite3.connect(tmp_path / "owner.sqlite3")
    owner.executescript(
        "CREATE TABLE stories (id TEXT PRIMARY KEY, n INTEGER, vec BLOB);"
        "CREATE TABLE pairs (a TEXT, b TEXT, w REAL, PRIMARY KEY (a, b)) WITHOUT ROWID;"
        "CREATE TABLE queue (seq INTEGER PRIMARY KEY AUTOINCREMENT, body TEXT);"
    )
    log = KafkaChangelog(kafka_config(kafka_settings), topic)
    capture = ChangeCapture(owner, where="owner")

    def ship() -> None:
        owner.commit()
        changes, last = capture.pending()
        log.append(changes)
        capture.shipped(last)

    owner.executemany("INSERT INTO stories VALUES (?, ?, ?)", [("s2", 1, b"\x00\x01"), ("s1", 2, None)])
    owner.execute("INSERT INTO pairs VALUES ('x', 'y', 0.1)")
    owner.executemany("INSERT INTO queue (body) VALUES (?)", [("one",), ("two",), ("three",)])
    ship()
    owner.execute("UPDATE stories SET n = n + 10, vec = ? WHERE id = 's2'", (bytes(range(256)),))
    owner.execute("DELETE FROM queue WHERE seq <= 2")
    owner.execute("DELETE FROM stories WHERE id = 's1'")
    owner.execute("INSERT INTO stories VALUES ('s1', 7, NULL)")  # gone and back in one batch: present
    ship()
    # The schema grows (the lead's next version): a new table and a new column, then a reopen.
    owner.executescript("CREATE TABLE seen (k TEXT PRIMARY KEY, at REAL); ALTER TABLE stories ADD COLUMN title TEXT;")
    capture = ChangeCapture(owner, where="owner")
    owner.execute("INSERT INTO seen VALUES ('k1', 1.5)")
    owner.execute("UPDATE stories SET title = 'صيدنايا' WHERE id = 's2'")
    ship()

    replica = sqlite3.connect(tmp_path / "replica.sqlite3")
    replica.executescript(
        "CREATE TABLE stories (id TEXT PRIMARY KEY, n INTEGER, vec BLOB, title TEXT);"
        "CREATE TABLE pairs (a TEXT, b TEXT, w REAL, PRIMARY KEY (a, b)) WITHOUT ROWID;"
        "CREATE TABLE queue (seq INTEGER PRIMARY KEY AUTOINCREMENT, body TEXT);"
        "CREATE TABLE seen (k TEXT PRIMARY KEY, at REAL);"
    )
    replay(log, replica)
    assert dump(replica) == dump(owner)
    assert dump(replica)["queue"] == [(3, 3, "three")]

    older = sqlite3.connect(tmp_path / "older.sqlite3")  # a process of the previous version
    older.executescript("CREATE TABLE stories (id TEXT PRIMARY KEY, n INTEGER, vec BLOB);")
    with pytest.raises(StoryStateError, match="upgrade this process"):
        replay(log, older)
    log.close()


def cluster_stage(settings: Settings, embedder: Embedder, bus: EmbeddedBus, name: str) -> ChangelogClusterStage:
    """A cluster replica on its own data directory, its state mirrored to the settings' changelog."""
    own = settings.replace(data_dir=settings.data_dir.parent / name)
    state = ChangelogStoryState(
        own.data_dir / STATE_FILE, changelog=KafkaChangelog(kafka_config(own), own.topic_story_changelog)
    )
    return ChangelogClusterStage(make_assign_stage(own, PrometheusMetrics(), embedder=embedder, bus=bus, state=state))


def reference_decisions(
    settings: Settings, embedder: Embedder, articles: list[Article]
) -> dict[str, tuple[str | None, str | None, str | None]]:
    """What one plain assign stage decides for ``articles`` (story, role, duplicate_of by article id)."""
    reference = make_assign_stage(settings, PrometheusMetrics(), embedder=embedder)
    enriched, _events = reference.process(articles)
    reference.close()
    return {a.id: (a.story_id, a.story_role, a.duplicate_of) for a in enriched}


@pytest.fixture
def bus(kafka_settings: Settings, tmp_path: Path) -> Iterator[EmbeddedBus]:
    """Where the replicas read and publish (the input and output topics; not the state)."""
    bus = EmbeddedBus(tmp_path / "bus" / "bus.sqlite3")
    bus.ensure_topics(kafka_settings.topics)
    yield bus
    bus.close()


def test_a_standby_on_an_empty_directory_takes_over_mid_stream(
    kafka_settings: Settings, embedder: Embedder, bus: EmbeddedBus, tmp_path: Path
) -> None:
    articles: list[Article] = fixture_articles()
    expected = reference_decisions(kafka_settings.replace(data_dir=tmp_path / "one"), embedder, articles)

    records = embedded_records(kafka_settings, bus, embedder, articles)
    active = cluster_stage(kafka_settings, embedder, bus, "cluster-a")
    standby = cluster_stage(kafka_settings, embedder, bus, "cluster-b")  # built now, on its own empty directory
    assert active.handle(records[:3]) == [None] * 3
    # The active one dies (no close: nothing flushed at exit); the standby gets the partition and is
    # handed again what the dead one had not committed.
    assert standby.handle(records[1:]) == [None] * (len(records) - 1)
    assert standby.takeovers == 1 and standby.state.restored > 0
    got = decisions(bus, kafka_settings)
    assert {i: d[0] for i, d in got.items()} == {i: d[0] for i, d in expected.items()}
    assert got == expected

    # A third replica on another empty directory rebuilds exactly the standby's tables from the topic.
    third = cluster_stage(kafka_settings, embedder, bus, "cluster-c")
    assert dump(third.state._db) == dump(standby.state._db)
    # ... and answers a redelivery as the standby did, without deciding anything anew.
    assert third.handle(records[3:]) == [None] * (len(records) - 3)
    assert decisions(bus, kafka_settings) == expected
    for stage in (standby, third):
        stage.close()


def test_an_idle_standby_keeps_up_between_batches(
    kafka_settings: Settings, embedder: Embedder, bus: EmbeddedBus
) -> None:
    """A standby is handed no batch; its own thread reads the changelog's tail meanwhile."""
    records = embedded_records(kafka_settings, bus, embedder, fixture_articles()[:4])
    active = cluster_stage(kafka_settings, embedder, bus, "cluster-a")
    own = kafka_settings.replace(data_dir=kafka_settings.data_dir.parent / "cluster-b")
    log = KafkaChangelog(kafka_config(own), own.topic_story_changelog)
    state = ChangelogStoryState(own.data_dir / STATE_FILE, changelog=log)
    standby = ChangelogClusterStage(
        make_assign_stage(own, PrometheusMetrics(), embedder=embedder, bus=bus, state=state), standby_catch_up_s=0.2
    )
    assert active.handle(records) == [None] * len(records)
    want = dump(active.state._db)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # the standby's thread runs every 0.2 s; no batch is handed to it
        with standby._lock:
            got = dump(standby.state._db)
        if got == want:
            break
        time.sleep(0.1)
    assert got == want
    assert standby.restores >= 1 and standby.takeovers == 0
    assert standby.state.decision(records[-1].headers[H_ARTICLE_ID]) is not None
    standby.close()
    active.close()


def test_the_owner_does_not_read_its_own_appends_back(
    kafka_settings: Settings, embedder: Embedder, bus: EmbeddedBus
) -> None:
    """After each batch the owner's checkpoint is past its own records and their end marker, so its next
    catch-up fetches nothing (it used to read every batch's own records back, then skip them)."""
    records = embedded_records(kafka_settings, bus, embedder, fixture_articles()[:4])
    active = cluster_stage(kafka_settings, embedder, bus, "cluster-a")
    for batch in (records[:2], records[2:]):
        assert active.handle(batch) == [None] * len(batch)
        reader = KafkaChangelog(kafka_config(kafka_settings), kafka_settings.topic_story_changelog)
        logged = list(reader.read(0))
        reader.close()
        assert active.state.capture.checkpoint() == logged[-1].offset + 2  # the end marker follows the last change
    assert active.catch_up() == 0 and active.takeovers == 0
    active.close()


def test_a_copy_with_unshipped_writes_is_rebuilt_once_another_replica_appended(
    kafka_settings: Settings, embedder: Embedder, bus: EmbeddedBus
) -> None:
    """A process dies between its local commit and the append (its notes stay unshipped); another replica
    goes on; the first one restarted on its old directory must not ship its stale rows: it rebuilds."""
    articles = fixture_articles()
    records = embedded_records(kafka_settings, bus, embedder, articles)
    first = cluster_stage(kafka_settings, embedder, bus, "cluster-a")
    assert first.handle(records[:3]) == [None] * 3
    # The crash window: the next batch's decisions committed locally, never appended.
    decided = Article.from_json(records[3].value)
    first.state.record_decision(StoredDecision(decided.id, "s-stale", "first", "first", None), decided.fetched_at)
    StoryState.commit(first.state)  # the plain commit: what a SIGKILL before the append leaves
    assert first.state.capture.has_pending()
    first.state._db.close()  # killed: nothing shipped at exit

    second = cluster_stage(kafka_settings, embedder, bus, "cluster-b")
    assert second.handle(records[3:]) == [None] * (len(records) - 3)
    restarted = cluster_stage(kafka_settings, embedder, bus, "cluster-a")  # the old directory, a new process
    assert restarted.state.full_restores == 1
    assert restarted.state.decision(decided.id) == second.state.decision(decided.id)
    assert dump(restarted.state._db) == dump(second.state._db)
    for stage in (second, restarted):
        stage.close()


def test_a_commit_cut_short_by_a_crash_is_never_applied_half(kafka_settings: Settings) -> None:
    """Records of an append whose end marker never came (the writer died mid-append) are left out of
    every read; the next writer's complete commits are read, and a cut-off tail is left out too."""
    topic = kafka_settings.topic_story_changelog + "-cut"
    dead = KafkaChangelog(kafka_config(kafka_settings), topic)
    alive = KafkaChangelog(kafka_config(kafka_settings), topic)
    dead.append([Change(key='["stories", "s1"]', value=b'{"id": "s1"}')])  # complete: marker follows
    # a cut append: the dead writer's records reach the log, its marker does not
    producer = dead._producer_client()
    for key in ('["stories", "s2"]', '["decisions", "a2"]'):
        producer.send(topic, key=key.encode(), value=b"{}", headers=[(H_WRITER, dead.writer.encode())], partition=0)
    producer.flush()
    alive.append([Change(key='["stories", "s3"]', value=b'{"id": "s3"}')])
    keys = [logged.change.key for logged in alive.read(0)]
    assert keys == ['["stories", "s1"]', '["stories", "s3"]']
    producer.send(topic, key=b'["stories", "s4"]', value=b"{}", headers=[(H_WRITER, dead.writer.encode())], partition=0)
    producer.flush()
    assert [logged.change.key for logged in alive.read(0)][-1] == '["stories", "s3"]'
    dead.close()
    alive.close()


def test_warm_up_events_held_by_a_dead_owner_are_released_by_the_replica_that_takes_over(
    kafka_settings: Settings, embedder: Embedder, bus: EmbeddedBus
) -> None:
    """The warm-up hold (stream.assign_stage) keeps its events in the state: the changelog carries them, and
    the replica that takes over releases them when their time limit passes, on an idle poll."""
    assert kafka_settings.warmup_hold_s > 0  # as shipped
    records = embedded_records(kafka_settings, bus, embedder, fixture_articles()[:4])
    active = cluster_stage(kafka_settings, embedder, bus, "cluster-a")
    assert active.handle(records) == [None] * len(records)
    assert len(active.state.held_events()) == len(records)  # a fresh state: the warm-up
    assert read_all(bus, kafka_settings.topic_story_events) == []
    assert len(read_all(bus, kafka_settings.topic_clustered)) == len(records)  # the articles went on
    # the active one dies; a standby on another directory owns the input now, an hour later
    standby = cluster_stage(kafka_settings, embedder, bus, "cluster-b")
    standby.stage.clock = lambda: time.time() + 3600.0
    standby.on_idle()
    assert standby.state.held_events() == []
    events = [StoryEvent.from_bytes(r.value) for r in read_all(bus, kafka_settings.topic_story_events)]
    assert [e.article_id for e in events] == [r.headers[H_ARTICLE_ID] for r in records]
    assert all(e.extra.get("warm_up") == "held" for e in events)
    standby.close()


def test_the_end_of_a_finite_run_releases_held_events_through_the_changelog_stage(
    kafka_settings: Settings, embedder: Embedder, bus: EmbeddedBus
) -> None:
    """``Pipeline.drain`` tells every ``EndOfInputAware`` stage that its input ended: the changelog-backed
    assigner is one, and releases what the warm-up holds, on a current state, without waiting for the limit."""
    records = embedded_records(kafka_settings, bus, embedder, fixture_articles()[:3])
    stage = cluster_stage(kafka_settings, embedder, bus, "cluster-a")
    assert isinstance(stage, EndOfInputAware)
    assert stage.handle(records) == [None] * len(records)
    assert stage.on_idle() == []  # within the time limit: still held
    assert len(stage.state.held_events()) == len(records)
    released = stage.end_of_input()
    assert [e.article_id for e in released] == [r.headers[H_ARTICLE_ID] for r in records]
    assert stage.state.held_events() == []
    published = [StoryEvent.from_bytes(r.value) for r in read_all(bus, kafka_settings.topic_story_events)]
    assert [e.article_id for e in published] == [e.article_id for e in released]
    assert stage.end_of_input() == []  # nothing twice
    stage.close()


def test_an_idle_poll_reads_the_changelog_only_when_held_events_are_due(
    kafka_settings: Settings, embedder: Embedder, bus: EmbeddedBus
) -> None:
    """The worker calls ``on_idle`` on every empty poll: with nothing held, or nothing held past the warm-up
    hold's limit, it answers from the local copy without asking the broker; past the limit it catches up first."""
    records = embedded_records(kafka_settings, bus, embedder, fixture_articles()[:4])
    stage = cluster_stage(kafka_settings, embedder, bus, "cluster-a")
    reads: list[int] = []
    real_read = stage.state.changelog.read

    def counted_read(start: int) -> Iterator[Any]:
        reads.append(start)
        return real_read(start)

    stage.state.changelog.read = counted_read  # type: ignore[method-assign]
    assert stage.on_idle() == [] and reads == []  # nothing held
    assert stage.handle(records) == [None] * len(records)
    assert len(stage.state.held_events()) == len(records)  # a fresh state: the warm-up
    reads.clear()
    assert stage.on_idle() == [] and reads == []  # held, within the limit
    stage.stage.clock = lambda: time.time() + 3600.0
    released = stage.on_idle()
    assert reads and isinstance(released, list) and len(released) == len(records)
    assert stage.state.held_events() == [] and stage.state.held_count() == 0
    stage.close()


def logged_keys(settings: Settings) -> list[tuple[str, bytes | None]]:
    """Every record of the settings' changelog (end markers included), as (key, value), in order."""
    reader = KafkaChangelog(kafka_config(settings), settings.topic_story_changelog)
    out = [(logged.change.key, logged.change.value) for logged in reader._read_raw(0)]
    reader.close()
    return out


def test_the_outbox_stays_local_and_each_batch_is_one_append(
    kafka_settings: Settings, embedder: Embedder, bus: EmbeddedBus
) -> None:
    """The outbox (the clustered articles with their vectors, the story events) is published from the owner's
    disk and never travels in the changelog: no outbox row nor its tombstone, one append (one end marker) per
    batch; a replica rebuilt from the changelog still holds every table but the outbox, which is empty."""
    records = embedded_records(kafka_settings, bus, embedder, fixture_articles())
    active = cluster_stage(kafka_settings, embedder, bus, "cluster-a")
    markers: list[int] = []
    for batch in (records[:2], records[2:4], records[4:]):
        assert active.handle(batch) == [None] * len(batch)
        markers.append(sum(key.startswith(MARKER_PREFIX) for key, _ in logged_keys(kafka_settings)))
    assert markers[1] - markers[0] == 1 and markers[2] - markers[1] == 1  # the first: the model's name too
    assert not [key for key, _ in logged_keys(kafka_settings) if key.startswith('["outbox"')]
    assert len(read_all(bus, kafka_settings.topic_clustered)) == len(records)
    replica = cluster_stage(kafka_settings, embedder, bus, "cluster-b")
    assert dump(replica.state._db) == dump(active.state._db)
    assert dump(replica.state._db)["outbox"] == []
    for stage in (active, replica):
        stage.close()


def test_a_batch_not_yet_published_is_not_in_the_changelog_and_is_redone_by_the_next_owner(
    kafka_settings: Settings, embedder: Embedder, bus: EmbeddedBus, tmp_path: Path
) -> None:
    """The crash window between the local commit and the publish: the changelog holds nothing of the batch
    (nothing is shipped while the outbox holds a row); the next owner decides it again, the same way, and
    publishes it once; the dead owner restarted on its old directory drops its unpublished outbox."""
    articles = fixture_articles()
    expected = reference_decisions(kafka_settings.replace(data_dir=tmp_path / "one"), embedder, articles)

    records = embedded_records(kafka_settings, bus, embedder, articles)
    first = cluster_stage(kafka_settings, embedder, bus, "cluster-a")
    assert first.handle(records[:3]) == [None] * 3
    logged_before = logged_keys(kafka_settings)
    # The next batch decided and committed locally, then the process dies before publishing its outbox.
    first.stage.publish_outbox = lambda: 0  # type: ignore[method-assign]  # the crash: the publish never runs
    assert first.handle(records[3:]) == [None] * (len(records) - 3)
    assert first.state.outbox() and first.state.capture.has_pending()
    assert logged_keys(kafka_settings) == logged_before  # nothing of the unpublished batch travelled
    first.state._db.close()  # killed: nothing shipped at exit

    second = cluster_stage(kafka_settings, embedder, bus, "cluster-b")
    assert second.handle(records[3:]) == [None] * (len(records) - 3)
    assert decisions(bus, kafka_settings) == expected
    clustered = [r.key for r in read_all(bus, kafka_settings.topic_clustered)]
    assert sorted(clustered) == sorted(expected)  # each article published once
    restarted = cluster_stage(kafka_settings, embedder, bus, "cluster-a")  # the old directory, a new process
    assert restarted.state.full_restores == 1
    assert restarted.state.outbox() == []  # the dead owner's unpublished records: redone by the second owner
    assert dump(restarted.state._db) == dump(second.state._db)
    for stage in (second, restarted):
        stage.close()


def test_outbox_rows_of_an_older_changelog_are_published_then_tombstoned(
    kafka_settings: Settings, embedder: Embedder, bus: EmbeddedBus
) -> None:
    """A changelog written by a version that shipped the outbox: a row its owner never published is applied
    to the new owner's local outbox, published by it, and tombstoned in the changelog (compaction drops it)."""
    article = fixture_articles()[0]
    older = KafkaChangelog(kafka_config(kafka_settings), kafka_settings.topic_story_changelog)
    value = article.to_bytes()
    row = {
        "seq": 7,
        "topic": kafka_settings.topic_clustered,
        "key": article.id,
        "value": {"$b64": base64.b64encode(value).decode("ascii")},
        "headers": '{"schema": "1"}',
    }
    older.append([Change(key='["outbox", 7]', value=json.dumps(row).encode())])
    older.close()

    stage = cluster_stage(kafka_settings, embedder, bus, "cluster-a")
    assert [r.seq for r in stage.state.outbox()] == [7]
    assert stage.handle([]) == []
    published = read_all(bus, kafka_settings.topic_clustered)
    assert [(r.key, r.value, r.headers.get("schema")) for r in published] == [(article.id, value, "1")]
    assert stage.state.outbox() == []
    assert [v for k, v in logged_keys(kafka_settings) if k == '["outbox", 7]'][-1] is None  # the tombstone
    stage.close()
    again = cluster_stage(kafka_settings, embedder, bus, "cluster-b")  # a replay from the start: nothing left
    assert again.state.outbox() == []
    again.close()


def test_a_stop_is_not_held_up_by_a_catch_up_waiting_on_a_dead_broker(
    embedder: Embedder, bus: EmbeddedBus, tmp_path: Path
) -> None:
    """With the broker gone, asking the changelog's end offset waits for kafka-python's request timeout
    (30 s), and the standby's catch-up holds the state's lock meanwhile. A stopping process interrupts it:
    the read ends with ``UnavailableError`` naming the topic, the idle poll does not queue behind the lock,
    and ``close`` returns within a slice instead of after the timeout (a SIGTERM outlasted a 20 s grace)."""
    from stream.errors import UnavailableError
    from stream.interruptible import WAIT_SLICE_S
    from tests.broker_fixtures import make_tansu

    broker = make_tansu(tmp_path / "tansu")
    broker.workdir.mkdir(parents=True)
    broker.start()
    try:
        overrides = {**kafka_test_overrides(broker), "data_dir": tmp_path / "client", "topic_story_changelog": "c.v1"}
        settings = load_settings(environ={}, overrides=overrides)
        records = embedded_records(settings, bus, embedder, fixture_articles()[:2])
        own = settings.replace(data_dir=tmp_path / "standby")
        state = ChangelogStoryState(
            own.data_dir / STATE_FILE, changelog=KafkaChangelog(kafka_config(own), own.topic_story_changelog)
        )
        standby = ChangelogClusterStage(
            make_assign_stage(own, PrometheusMetrics(), embedder=embedder, bus=bus, state=state),
            standby_catch_up_s=0.05,
        )
        assert standby.handle(records) == [None] * len(records)
        # A broker that answers: after an interrupt the changelog still appends and reads (the batch in hand
        # of a graceful stop is finished, not abandoned).
        live = KafkaChangelog(kafka_config(own), "c2.v1")
        live.interrupt()
        live.append([Change(key='["stories", "a"]', value=b"1")])
        assert [r.change for r in live.read(0)] == [Change(key='["stories", "a"]', value=b"1")]
        live.close()
    finally:
        broker.stop()
    deadline = time.monotonic() + 10
    seen_held = False
    while not seen_held and time.monotonic() < deadline:
        seen_held = standby._lock.locked()  # the standby's next catch-up, which now waits on the dead broker
        time.sleep(0.01)
    assert seen_held
    started = time.monotonic()
    assert standby.on_idle() == []  # does not wait for the lock
    assert time.monotonic() - started < 1.0
    standby.interrupt()
    with pytest.raises(UnavailableError, match=r"changelog 'c\.v1'.*stopping"):
        state.changelog.read(0).__next__()
    standby.close()
    took = time.monotonic() - started
    assert took < WAIT_SLICE_S + 5 < 30, took  # 30 s: kafka-python's request timeout, what it waited before
