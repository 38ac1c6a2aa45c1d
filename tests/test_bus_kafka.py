"""What only the Kafka adapter has: partitioned topics, refused deliveries, rebalances, lag metrics."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import pytest

from sednaya_monitor.prometheus_metrics import PrometheusMetrics
from sednaya_monitor.settings import Settings
from sednaya_monitor.wiring import kafka_config
from stream.bus import Record
from stream.bus_kafka import KafkaBus, KafkaGroupConsumer
from stream.errors import BusError
from stream.worker import StageWorker
from tests.broker_fixtures import Broker, describe_group, kafka_test_overrides, unique_name

pytestmark = [pytest.mark.timeout(180)]

logger = logging.getLogger(__name__)

TOO_BIG = 2 * 1024 * 1024  # over kafka-python's default max_request_size (1 MiB): refused before sending


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
@pytest.mark.timeout(300)  # up to three 40 s attempts at the rebalance on tansu (below)
def test_rebalance_never_hands_a_committed_record_to_the_new_owner(broker: Broker, settings_factory: object) -> None:
    """A holds uncommitted records when B joins: A's next commit covers only partitions A kept."""
    bus, settings = make_bus(broker, settings_factory)
    topic = settings.topic_raw
    group = unique_name("rebalance")
    try:
        bus.ensure_topics([topic])
        ids = [f"id{i:03d}" for i in range(90)]
        for key in ids:
            bus.publish(topic, key, key.encode())
        bus.flush()
        a = bus.consumer(topic, group)
        first: list[Record] = []
        deadline = time.monotonic() + 30
        while not first and time.monotonic() < deadline:
            first = a.poll(12, 0.5)  # in hand, not committed
        assert first
        a_pending = list(first)
        b_got: list[Record] = []
        # tansu 0.6 now and then never completes a two-member rebalance: the members rejoin generation 1 over
        # and over and the follower never gets its assignment (about one run in five here, seen in CI). The
        # property is about A's commit after a completed rebalance, so a second member that is stuck leaves
        # and a fresh one joins, at most twice.
        joined = False
        for attempt in range(3 if broker.name == "tansu" else 1):
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
            logger.warning("group %s did not rebalance in 40 s, attempt %d (%s)", group, attempt + 1, state)
        if not joined:
            a.close()
            if broker.name == "noida":
                pytest.skip(f"noida-db 0.2.2 never completes the rebalance when a second member joins ({state})")
            pytest.fail(f"group {group} did not rebalance in 40 s, {attempt + 1} times ({state})")
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
        a.close()
        b.close()
        if broker.name == "noida" and refused:
            pytest.skip(f"noida-db 0.2.2 keeps rebalancing a two-member group ({refused} commits refused)")
        assert {r.key for r in in_hand_kept + a_after + b_got} == set(ids), "nothing lost"
        committed_by_a = {(r.partition, r.offset) for r in a_after}
        handed_to_b = {(r.partition, r.offset) for r in b_got}
        assert not committed_by_a & handed_to_b, "a record A committed was processed again by B"
        revoked_in_hand = {(r.partition, r.offset) for r in a_pending if r.partition in moved}
        assert revoked_in_hand <= handed_to_b, "A's uncommitted records of moved partitions go to B"
    finally:
        bus.close()
