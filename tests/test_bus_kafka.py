"""What only the Kafka adapter has: partitioned topics, refused deliveries, rebalances, lag metrics."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

import numpy as np
import pytest

from sednaya_monitor.prometheus_metrics import PrometheusMetrics
from sednaya_monitor.settings import Settings
from sednaya_monitor.wiring import kafka_config
from stream.bus import DLQ_REASON_MAX_BYTES, H_SCHEMA, H_VALUE_DROPPED, Record, UndeliveredError
from stream.bus_kafka import KafkaBus, KafkaGroupConsumer
from stream.errors import BusError
from stream.worker import PermanentError, StageWorker
from tests.broker_fixtures import Broker, describe_group, kafka_test_overrides, unique_name

pytestmark = [pytest.mark.timeout(180)]

logger = logging.getLogger(__name__)

TOO_BIG = 2 * 1024 * 1024  # over kafka-python's default max_request_size (1 MiB): refused before sending
MAX_REQUEST_BYTES = 1024 * 1024  # kafka-python's default max_request_size, the producer's record size limit


@pytest.fixture(params=["tansu", "noida"])
def broker(request: pytest.FixtureRequest) -> Broker:
    found = request.getfixturevalue(f"{request.param}_broker")
    assert isinstance(found, Broker)
    return found


def make_bus(
    broker: Broker, settings_factory: object, metrics: PrometheusMetrics | None = None
) -> tuple[KafkaBus, Settings]:
    settings = settings_factory(**kafka_test_overrides(broker))  # type: ignore[operator]
    return KafkaBus(kafka_config(settings), metrics=metrics), settings


def committed_partitions(broker: Broker, group: str, topic: str) -> set[int]:
    """Partitions of ``topic`` with an offset committed by ``group``, read by an admin client."""
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        offsets = admin.list_group_offsets(group).get(group, {})
    finally:
        admin.close()
    return {tp.partition for tp, meta in offsets.items() if tp.topic == topic and meta.offset >= 0}


def test_topics_and_dead_letter_twins_are_created_with_the_configured_partitions(
    broker: Broker, settings_factory: object
) -> None:
    bus, settings = make_bus(broker, settings_factory)
    try:
        s = settings
        assert bus.partitions(s.topic_raw) == 0
        bus.ensure_topics(s.topics)
        bus.ensure_topics(s.topics)  # idempotent
        for topic in s.topics:
            assert bus.partitions(topic) == 3, topic
            assert bus.partitions(s.dlq(topic)) == 3, s.dlq(topic)
    finally:
        bus.close()


def test_a_refused_record_surfaces_in_flush_is_counted_and_the_rest_is_delivered(
    broker: Broker, settings_factory: object
) -> None:
    metrics = PrometheusMetrics()
    bus, settings = make_bus(broker, settings_factory, metrics)
    topic = settings.topic_raw
    try:
        bus.ensure_topics([topic])
        bus.publish(topic, "fine-1", b"ok")
        bus.publish(topic, "huge", b"x" * TOO_BIG)
        bus.publish(topic, "fine-2", b"ok")
        with pytest.raises(
            BusError, match=r"1 records not delivered: topic '.*raw.v1' key 'huge'.*MessageSizeTooLarge"
        ):
            bus.flush()
        assert bus.delivery_failures == 1
        assert (
            metrics.registry.get_sample_value("sednaya_bus_records_total", {"topic": topic, "op": "delivery_failed"})
            == 1
        )
        assert metrics.registry.get_sample_value("sednaya_bus_records_total", {"topic": topic, "op": "produced"}) == 2
        bus.flush()  # reported once, not again
        consumer = bus.consumer(topic, unique_name("refused"))
        got: list[Record] = []
        deadline = time.monotonic() + 30
        while len(got) < 2 and time.monotonic() < deadline:
            got += consumer.poll(10, 0.5)
        consumer.close()
        assert sorted(r.key for r in got) == ["fine-1", "fine-2"]
    finally:
        bus.close()


def test_worker_exports_consumer_lag_per_partition(broker: Broker, settings_factory: object) -> None:
    bus, settings = make_bus(broker, settings_factory)
    topic = settings.topic_raw
    group = unique_name("lag")
    metrics = PrometheusMetrics()

    class Slow:
        name = "lagcheck"

        def handle(self, records: Sequence[Record]) -> list[BaseException | None]:
            return [None] * len(records)

    try:
        bus.ensure_topics([topic])
        for i in range(30):
            bus.publish(topic, f"k{i}", b"v")
            if broker.name == "tansu":
                # tansu 0.6 answers ListOffsets(latest) with the base offset of the last batch + 1; with one
                # record per batch that is the true end offset, so the adapter's lag arithmetic is checked
                bus.flush()
        bus.flush()
        worker = StageWorker(bus, topic, group, Slow(), metrics=metrics, batch_size=5)
        deadline = time.monotonic() + 30
        while worker.run_once(0.5) == 0 and time.monotonic() < deadline:
            pass
        lags = {
            p: metrics.registry.get_sample_value(
                "sednaya_bus_consumer_lag_records", {"topic": topic, "group": group, "partition": str(p)}
            )
            for p in range(3)
        }
        assert sum(v or 0 for v in lags.values()) == 25, lags  # 5 processed and committed of 30
        while worker.run_once(0.5):
            pass
        lags = {
            p: metrics.registry.get_sample_value(
                "sednaya_bus_consumer_lag_records", {"topic": topic, "group": group, "partition": str(p)}
            )
            for p in range(3)
        }
        assert all(v == 0 for v in lags.values()), lags
        worker.close()
    finally:
        bus.close()


@pytest.mark.isolated
@pytest.mark.timeout(600)  # up to two groups of three 40 s attempts at the rebalance on tansu (below)
def test_rebalance_never_hands_a_committed_record_to_the_new_owner(broker: Broker, settings_factory: object) -> None:
    """A holds uncommitted records when B joins: A's next commit covers only partitions A kept."""
    bus, settings = make_bus(broker, settings_factory)
    topic = settings.topic_raw
    try:
        bus.ensure_topics([topic])
        ids = [f"id{i:03d}" for i in range(90)]
        for key in ids:
            bus.publish(topic, key, key.encode())
        bus.flush()
        # tansu 0.6 now and then never completes a two-member rebalance: the members rejoin generation 1 over
        # and over and the follower never gets its assignment (about one run in five here, seen in CI; once a
        # group is stuck, a fresh second member often meets the same). The property is about A's commit after a
        # completed rebalance, so a second member that is stuck leaves and a fresh one joins, at most twice, and
        # then the whole scenario starts again in a new group, once.
        joined = False
        tries = 3 if broker.name == "tansu" else 1
        for scenario in range(2 if broker.name == "tansu" else 1):
            group = unique_name("rebalance")
            a = bus.consumer(topic, group)
            first: list[Record] = []
            deadline = time.monotonic() + 30
            while not first and time.monotonic() < deadline:
                first = a.poll(12, 0.5)  # in hand, not committed
            assert first
            a_pending = list(first)
            b_got: list[Record] = []
            for attempt in range(tries):
                b = bus.consumer(topic, group)
                deadline = time.monotonic() + 40
                while time.monotonic() < deadline and not (a.assignment() and b.assignment()):
                    a_pending += a.poll(3, 0.2)  # the rebalance runs inside poll; revoked partitions are forgotten
                    b_got += b.poll(3, 0.2)
                if a.assignment() and b.assignment():
                    joined = True
                    break
                state = describe_group(broker, group)
                b.close()  # what it received uncommitted goes to the members that stay: not counted as B's
                b_got = []
                logger.warning(
                    "group %s did not rebalance in 40 s, attempt %d of group %d (%s)",
                    group,
                    attempt + 1,
                    scenario + 1,
                    state,
                )
            if joined:
                break
            a.close()
        if not joined:
            if broker.name == "noida":
                pytest.skip(f"noida-db 0.2.2 never completes the rebalance when a second member joins ({state})")
            pytest.fail(f"no group rebalanced in 40 s, {tries} times in each of {scenario + 1} groups ({state})")
        a.commit()  # the commit A makes after its batch: must not claim partitions that moved to B
        moved = set(b.assignment())
        kept = set(a.assignment())
        # records in A's hand from partitions A kept were processed by A; its later commits cover them
        in_hand_kept = [r for r in a_pending if r.partition in kept]
        committed_now = committed_partitions(broker, group, topic)
        assert not committed_now & moved, f"A committed partitions {committed_now & moved} that B now owns"
        assert isinstance(a, KafkaGroupConsumer) and isinstance(b, KafkaGroupConsumer)
        a_after: list[Record] = []
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            batch = a.poll(20, 0.2)
            a_after += batch
            a.commit()
            got = b.poll(20, 0.2)
            b_got += got
            b.commit()
            if not batch and not got and len({r.key for r in in_hand_kept + a_after + b_got}) == len(ids):
                break
        refused = a.refused_commits + b.refused_commits
        settled = sorted(a.assignment()) + sorted(b.assignment())
        a.close()
        b.close()
        if broker.name == "noida" and refused:
            pytest.skip(f"noida-db 0.2.2 keeps rebalancing a two-member group ({refused} commits refused)")
        missing = sorted(set(ids) - {r.key for r in in_hand_kept + a_after + b_got})
        if missing and sorted(settled) != list(range(bus.partitions(topic))):
            # the tansu quirk above, met after the join: a member still waits for its partitions after 40 s
            state = describe_group(broker, group)
            pytest.skip(f"{broker.name}: the group never settled again (assigned {settled}; {state}); {missing}")
        where = {r.key: r.partition for r in a_pending + a_after + b_got}
        assert not missing, (
            f"lost {missing} (partitions {sorted({where.get(k) for k in missing}, key=str)}); kept {sorted(kept)}, "
            f"moved {sorted(moved)}, A in hand from {sorted({r.partition for r in a_pending})}, A after from "
            f"{sorted({r.partition for r in a_after})}, B from {sorted({r.partition for r in b_got})}, "
            f"refused commits {refused}"
        )
        committed_by_a = {(r.partition, r.offset) for r in a_after}
        handed_to_b = {(r.partition, r.offset) for r in b_got}
        assert not committed_by_a & handed_to_b, "a record A committed was processed again by B"
        revoked_in_hand = {(r.partition, r.offset) for r in a_pending if r.partition in moved}
        assert revoked_in_hand <= handed_to_b, "A's uncommitted records of moved partitions go to B"
    finally:
        bus.close()


def test_a_thread_flush_reports_only_the_records_that_thread_sent(broker: Broker, settings_factory: object) -> None:
    """Stage threads of one process share the bus (index and index-stories workers): B's flush must not
    take A's failure (B would retry its batch, and A, flushing clean, would commit a lost record)."""
    bus, settings = make_bus(broker, settings_factory)
    topic = settings.topic_raw
    a_sent, b_flushed = threading.Event(), threading.Event()
    outcome: dict[str, BaseException | None] = {}

    def thread_a() -> None:
        bus.publish(topic, "too-big", b"x" * TOO_BIG)
        a_sent.set()
        b_flushed.wait(60)
        try:
            bus.flush()
            outcome["a"] = None
        except BusError as exc:
            outcome["a"] = exc

    def thread_b() -> None:
        a_sent.wait(60)
        bus.publish(topic, "fine", b"ok")
        try:
            bus.flush()
            outcome["b"] = None
        except BusError as exc:
            outcome["b"] = exc
        finally:
            b_flushed.set()

    try:
        bus.ensure_topics([topic])
        threads = [threading.Thread(target=thread_a), threading.Thread(target=thread_b)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(90)
        assert outcome["b"] is None
        failed = outcome["a"]
        assert isinstance(failed, UndeliveredError), failed
        assert [(f.topic, f.key, f.value_bytes, f.too_large) for f in failed.failures] == [
            (topic, "too-big", TOO_BIG, True)
        ]
        assert "MessageSizeTooLarge" in failed.failures[0].error
        consumer = bus.consumer(topic, unique_name("threads"))
        got: list[Record] = []
        deadline = time.monotonic() + 30
        while not got and time.monotonic() < deadline:
            got += consumer.poll(10, 0.5)
        consumer.close()
        assert [r.key for r in got] == ["fine"]
    finally:
        bus.close()


class _Refuses:
    """A stage that refuses every record for good, quoting ``quote`` bytes of it (as a decoder error may)."""

    name = "refuses"

    def __init__(self, quote: int) -> None:
        self.quote = quote

    def handle(self, records: Sequence[Record]) -> list[BaseException | None]:
        return [PermanentError(f"not an article: {r.value[: self.quote]!r}") for r in records]


def _largest_value_that_fits(key: str) -> int:
    """A value size whose record (key, no headers) is 64 bytes under kafka-python's max_request_size."""
    from kafka.record.default_records import DefaultRecordBatchBuilder

    overhead = DefaultRecordBatchBuilder.estimate_size_in_bytes(key.encode(), b"", [])
    return MAX_REQUEST_BYTES - overhead - 64


def _run_until_taken(worker: StageWorker) -> int:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        taken = worker.run_once(0.5)
        if taken:
            return taken
    return 0


def test_a_dead_letter_too_large_for_the_broker_goes_without_its_value(
    broker: Broker, settings_factory: object
) -> None:
    """A record just under the size limit fits its topic but not its dead-letter copy (the dlq.* headers):
    the letter is kept without the value, naming where the record is, the batch is committed and the stage
    goes on (it crashed, and crashed again on the same record after each restart)."""
    metrics = PrometheusMetrics()
    bus, settings = make_bus(broker, settings_factory, metrics)
    topic = settings.topic_raw
    size = _largest_value_that_fits("big")
    try:
        bus.ensure_topics([topic])
        bus.publish(topic, "big", b"{" * size)
        bus.flush()
        worker = StageWorker(bus, topic, unique_name("refuses"), _Refuses(quote=size), metrics=metrics)
        assert _run_until_taken(worker) == 1
        assert sum(worker.consumer.lag().values()) == 0  # committed
        worker.close()
        counted = metrics.registry.get_sample_value(
            "sednaya_dead_letters_total", {"stage": "refuses", "reason": "PermanentError"}
        )
        assert counted == 1
        [letter] = bus.dead_letters(topic)
        assert letter.value == b""
        assert letter.key == "big" and letter.topic == topic and letter.stage == "refuses"
        assert letter.partition >= 0 and letter.offset == 0
        assert f"({size} bytes) was refused" in letter.headers[H_VALUE_DROPPED]
        assert "MessageSizeTooLarge" in letter.headers[H_VALUE_DROPPED]
        assert letter.reason.startswith("not an article: b'{{{") and len(letter.reason.encode()) <= DLQ_REASON_MAX_BYTES
        with pytest.raises(BusError, match=r"kept without their record \(too large\)"):
            bus.replay(topic, [letter.id])
        assert bus.replay(topic) == 0  # nothing to republish: an empty value would only fail again
    finally:
        bus.close()


def test_a_long_error_message_is_cut_so_the_letter_keeps_its_record(broker: Broker, settings_factory: object) -> None:
    metrics = PrometheusMetrics()
    bus, settings = make_bus(broker, settings_factory, metrics)
    topic = settings.topic_raw
    value = b"{" * 600_000
    try:
        bus.ensure_topics([topic])
        bus.publish(topic, "k", value)
        bus.flush()
        worker = StageWorker(bus, topic, unique_name("refuses"), _Refuses(quote=len(value)), metrics=metrics)
        assert _run_until_taken(worker) == 1  # the error quotes 600 KB: with the record, over the limit
        worker.close()
        [letter] = bus.dead_letters(topic)
        assert letter.value == value and H_VALUE_DROPPED not in letter.headers
        assert len(letter.reason.encode()) <= DLQ_REASON_MAX_BYTES and letter.reason.endswith("...")
    finally:
        bus.close()


class _VectorsOnly:
    """Articles bring their vectors (the split embed stage's); the model is never asked."""

    multilingual = True
    dim = 8

    def embed(self, texts: Sequence[str]) -> object:
        raise AssertionError(f"the model was asked for {len(texts)} vectors")


def test_an_outbox_record_the_broker_refuses_as_too_large_is_dead_lettered_not_retried_forever(
    broker: Broker, settings_factory: object
) -> None:
    """The story stage commits its decisions with their records (the outbox) before publishing them. One the
    broker refuses for its size (a clustered copy that outgrew the limit) blocked every later batch."""
    from sednaya_monitor.wiring import make_assign_stage
    from tests.store_fixtures import make_article

    metrics = PrometheusMetrics()
    bus, settings = make_bus(broker, settings_factory, metrics)
    stage = make_assign_stage(settings, metrics, embedder=_VectorsOnly(), bus=bus)  # type: ignore[arg-type]
    refused = "a" * 32
    try:
        bus.ensure_topics(settings.topics)
        stage.state.outbox_add(settings.topic_clustered, refused, b"{" * TOO_BIG, {H_SCHEMA: "1"})
        stage.state.commit()  # a batch decided and committed; its clustered copy not yet published
        rng = np.random.default_rng(7)
        articles = []
        for i in range(3):
            vector = rng.normal(size=8)
            article = make_article(title=f"Report {i}").replace(
                embedding=tuple(float(x) for x in vector / np.linalg.norm(vector))
            )
            articles.append(article)
            bus.publish(settings.topic_raw, article.id, article.to_bytes(with_embedding=True), {H_SCHEMA: "1"})
        bus.flush()
        worker = StageWorker(bus, settings.topic_raw, unique_name("embed"), stage, metrics=metrics, batch_size=1)
        deadline = time.monotonic() + 60
        taken = 0
        while taken < 3 and time.monotonic() < deadline:
            taken += worker.run_once(0.5)
        assert taken == 3
        worker.close()
        assert stage.state.outbox() == []
        assert (
            metrics.registry.get_sample_value(
                "sednaya_dead_letters_total", {"stage": "embed", "reason": "MessageSizeTooLargeError"}
            )
            == 1
        )
        assert bus.dead_letters(settings.topic_raw) == []  # the articles themselves went through
        clustered = {r.key for r in bus.read_topic(settings.topic_clustered)}
        assert clustered == {a.id for a in articles}
        [letter] = bus.dead_letters(settings.topic_clustered)
        assert (letter.key, letter.value, letter.stage, letter.offset) == (refused, b"", "embed", -1)
        assert f"record of {TOO_BIG} bytes refused by the bus" in letter.reason
        assert "MessageSizeTooLarge" in letter.headers[H_VALUE_DROPPED]
    finally:
        stage.close()
        bus.close()


def test_a_stopping_process_does_not_wait_on_a_dead_broker_for_its_records(
    settings_factory: object, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The broker dies with a batch's output in flight: the worker's flush would wait up to the delivery
    timeout (120 s), past any grace period. ``interrupt`` (the stage's SIGTERM) ends that wait within a slice
    with ``UnavailableError``, so the worker leaves the batch uncommitted for the next member; ``close`` then
    does not wait for what is still in flight. With a broker that answers, an interrupted flush still delivers.
    (The commit of a batch in hand waits the same way, through ``stream.interruptible``: tests/test_interruptible.py;
    on a dead coordinator kafka-python soon drops the partitions as lost, which leaves nothing to commit.)"""
    from stream.bus_kafka import FLUSH_SLICE_S, PRODUCER_DELIVERY_TIMEOUT_MS
    from stream.errors import UnavailableError
    from tests.broker_fixtures import make_tansu

    own = make_tansu(tmp_path_factory.mktemp("tansu-dies"))
    own.workdir.mkdir(parents=True, exist_ok=True)
    own.start()
    try:
        bus, settings = make_bus(own, settings_factory)
        bus.publish(settings.topic_raw, "k0", b"delivered")
        bus.flush()
        # A broker that answers: after the interrupt the batch in hand is still flushed (and then committed).
        live, _ = make_bus(own, settings_factory)
        live.interrupt()
        live.publish(settings.topic_raw, "k2", b"flushed although the process is stopping")
        live.flush()
        assert live.delivery_failures == 0
        live.close()
    finally:
        own.stop()
    raised: list[BaseException] = []

    def flush() -> None:  # a flush waits for the records of its own thread
        bus.publish(settings.topic_raw, "k1", b"in flight when the broker is gone")
        try:
            bus.flush()
        except BaseException as exc:  # noqa: BLE001  # what the flush ended with is the assertion
            raised.append(exc)

    waiter = threading.Thread(target=flush)
    waiter.start()
    waiter.join(2.0)
    assert waiter.is_alive(), f"the flush should still wait on the dead broker: {raised}"
    started = time.monotonic()
    bus.interrupt()
    waiter.join(FLUSH_SLICE_S + 5)
    assert not waiter.is_alive()
    assert len(raised) == 1 and isinstance(raised[0], UnavailableError), raised
    assert "1 records not acknowledged: the process is stopping" in str(raised[0])
    bus.close()  # logs the record in flight and does not wait for it: no raise, no delivery timeout
    assert time.monotonic() - started < FLUSH_SLICE_S + 10 < PRODUCER_DELIVERY_TIMEOUT_MS / 1000

