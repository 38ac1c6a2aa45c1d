"""One contract for every ``Bus``: the embedded SQLite log, Kafka on tansu, Kafka on noida-db.

Each test runs three times (``bus_env`` is parametrised) on fresh topics and groups.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from sednaya_monitor.prometheus_metrics import PrometheusMetrics
from stream.article import Article
from stream.bus import (
    H_ATTEMPTS,
    H_DEAD_LETTERED_AT,
    H_ERROR_CLASS,
    H_ERROR_MESSAGE,
    H_ORIGINAL_OFFSET,
    H_ORIGINAL_PARTITION,
    H_ORIGINAL_TOPIC,
    H_SCHEMA,
    H_STAGE,
    Consumer,
    DeadLetter,
    Record,
)
from stream.errors import BusError
from stream.worker import StageWorker
from tests.broker_fixtures import BusEnv, describe_group, unique_name

logger = logging.getLogger(__name__)

pytestmark = [pytest.mark.timeout(180)]

POLL_S = 0.5  # one poll slice; Kafka group joins take a few seconds, so loops run to a deadline
DEADLINE_S = 60.0  # generous: two cores shared with every other test
JOIN_S = 45.0  # two members get partitions in ~5-10 s on tansu (3 s initial rebalance delay); more on a loaded machine


def drain(
    consumer: Consumer, expected: int, *, commit: bool = True, batch_size: int = 50, deadline_s: float = DEADLINE_S
) -> list[Record]:
    """Poll until ``expected`` records arrived (or the deadline); commit after each batch if asked."""
    got: list[Record] = []
    deadline = time.monotonic() + deadline_s
    while len(got) < expected and time.monotonic() < deadline:
        batch = consumer.poll(min(batch_size, expected - len(got)), POLL_S)
        got.extend(batch)
        if batch and commit:
            consumer.commit()
    return got


def settle(consumer: Consumer, quiet_s: float = 2.0) -> list[Record]:
    """Whatever else arrives within ``quiet_s`` (to prove nothing more is delivered)."""
    extra: list[Record] = []
    deadline = time.monotonic() + quiet_s
    while time.monotonic() < deadline:
        extra.extend(consumer.poll(50, 0.2))
    return extra


class Recorder:
    """A stage that stores what it saw and fails the keys it is told to."""

    name = "contract"

    def __init__(self, fail_keys: Sequence[str] = (), decode: bool = False) -> None:
        self.fail_keys = set(fail_keys)
        self.decode = decode
        self.seen: list[str] = []
        self.calls: dict[str, int] = {}

    def handle(self, records: Sequence[Record]) -> list[BaseException | None]:
        out: list[BaseException | None] = []
        for record in records:
            self.calls[record.key] = self.calls.get(record.key, 0) + 1
            try:
                if self.decode:
                    Article.from_json(record.value)
                if record.key in self.fail_keys:
                    raise ValueError(f"record {record.key!r}: refused by the test stage")
            except Exception as exc:  # noqa: BLE001  # the worker decides retry or dead letter
                out.append(exc)
                continue
            self.seen.append(record.key)
            out.append(None)
        return out


def run_worker(worker: StageWorker, until: int, handler: Recorder, deadline_s: float = DEADLINE_S) -> None:
    deadline = time.monotonic() + deadline_s
    while len(set(handler.seen)) < until and time.monotonic() < deadline:
        worker.run_once(POLL_S)
    # one more round so dead letters of the last batch are flushed and committed
    worker.run_once(POLL_S)


def article_bytes(article_id: str, schema: int = 1) -> bytes:
    now = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
    article = Article(
        id=article_id,
        url=f"https://news.example.org/{article_id}",
        canonical_url=f"https://news.example.org/{article_id}",
        source="news.example.org",
        channel="feed",
        backfill=False,
        lang="en",
        title=f"Test article {article_id}",
        text="A short paragraph written for the bus contract tests.",
        authors=(),
        published=now,
        date_source="feed",
        discovered_at=now,
        fetched_at=now,
        content_sha256="0" * 64,
        relevance=None,
    )
    data = article.to_dict()
    data["schema"] = schema
    return json.dumps(data).encode("utf-8")


# --- ordering -------------------------------------------------------------------------------------


def test_records_of_one_key_keep_their_order(bus_env: BusEnv) -> None:
    bus = bus_env.make_bus()
    topic = bus_env.settings.topic_raw
    bus.ensure_topics([topic])
    keys = [f"article-{k}" for k in range(6)]
    for seq in range(15):
        for key in keys:
            bus.publish(topic, key, f"{key}#{seq}".encode(), {H_SCHEMA: "1"})
    bus.flush()

    consumer = bus.consumer(topic, unique_name("order"))
    got = drain(consumer, 90)
    consumer.close()

    assert len(got) == 90, f"{bus_env.kind}: {len(got)} of 90 records arrived"
    for key in keys:
        mine = [r for r in got if r.key == key]
        assert [r.value.decode() for r in mine] == [f"{key}#{s}" for s in range(15)], key
        assert len({r.partition for r in mine}) == 1, f"{key} spread over partitions"
        assert all(r.headers[H_SCHEMA] == "1" for r in mine)


# --- at-least-once --------------------------------------------------------------------------------


def test_uncommitted_records_are_redelivered_and_committed_ones_are_not(bus_env: BusEnv) -> None:
    bus = bus_env.make_bus()
    topic = bus_env.settings.topic_raw
    bus.ensure_topics([topic])
    for i in range(20):
        bus.publish(topic, f"k{i:02d}", f"v{i}".encode())
    bus.flush()
    group = unique_name("redeliver")

    first = bus.consumer(topic, group)
    committed = drain(first, 8, batch_size=8, commit=False)
    first.commit()
    uncommitted = drain(first, 20 - len(committed), commit=False)
    assert len(committed) + len(uncommitted) == 20
    first.close()  # leaves the group without committing the second part

    second = bus.consumer(topic, group)
    again = drain(second, len(uncommitted))
    again += settle(second)
    second.close()
    assert sorted(r.key for r in again) == sorted(r.key for r in uncommitted)
    assert not {r.key for r in again} & {r.key for r in committed}


def test_lag_counts_uncommitted_records(bus_env: BusEnv) -> None:
    bus = bus_env.make_bus()
    topic = bus_env.settings.topic_raw
    bus.ensure_topics([topic])
    for i in range(12):
        bus.publish(topic, f"k{i}", b"x")
    bus.flush()
    consumer = bus.consumer(topic, unique_name("lag"))
    got = drain(consumer, 12, commit=False)
    assert len(got) == 12
    assert sum(consumer.lag().values()) == 12
    consumer.commit()
    assert sum(consumer.lag().values()) == 0
    consumer.close()


# --- consumer groups ------------------------------------------------------------------------------


@pytest.mark.isolated
@pytest.mark.fresh_broker
@pytest.mark.timeout(300)  # up to three attempts at the rebalance on tansu (below)
def test_two_members_of_a_group_split_the_partitions(bus_env: BusEnv) -> None:
    if bus_env.kind == "embedded":
        pytest.skip("embedded bus: one partition per topic, one member per group by design (DESIGN.md)")
    assert bus_env.broker is not None
    bus = bus_env.make_bus()
    topic = bus_env.settings.topic_raw
    bus.ensure_topics([topic])
    from stream.bus_kafka import KafkaGroupConsumer

    # tansu 0.6 now and then never completes a two-member rebalance (the members rejoin generation 1 over and
    # over; seen in CI, as in tests/test_bus_kafka.py), and a fresh second member did not always unstick it
    # (three attempts failed once in CI): a stuck group is left for a new one with two new members, at most
    # three attempts. The group holds no records yet, so nothing else changes.
    joined = False
    a: KafkaGroupConsumer
    b: KafkaGroupConsumer
    attempts = 3 if bus_env.kind == "tansu" else 1
    for attempt in range(attempts):
        group = unique_name("split")
        first, second = bus.consumer(topic, group), bus.consumer(topic, group)
        assert isinstance(first, KafkaGroupConsumer) and isinstance(second, KafkaGroupConsumer)
        a, b = first, second
        deadline = time.monotonic() + JOIN_S
        while time.monotonic() < deadline and not (a.assignment() and b.assignment()):
            assert a.poll(10, 0.2) == [] and b.poll(10, 0.2) == []
        if a.assignment() and b.assignment():
            joined = True
            break
        state = describe_group(bus_env.broker, group)
        logger.warning("group %s did not split in %.0f s, attempt %d (%s)", group, JOIN_S, attempt + 1, state)
        if attempt < attempts - 1:
            a.close()
            b.close()
    if not joined:
        held = f"partitions a={a.assignment()} b={b.assignment()}"
        a.close()
        b.close()
        if bus_env.kind == "noida":
            pytest.skip(
                f"noida-db 0.2.2 never completes the rebalance when a second member joins "
                f"(after {JOIN_S:.0f} s: {state}, {held})"
            )
        pytest.fail(f"{bus_env.kind}: group {group} did not split in {JOIN_S:.0f} s, {attempts} times ({state})")
    assert set(a.assignment()).isdisjoint(b.assignment())
    assert sorted(a.assignment() + b.assignment()) == [0, 1, 2]

    ids = [f"id{i:03d}" for i in range(60)]
    for key in ids:
        bus.publish(topic, key, key.encode())
    bus.flush()
    got_a: list[Record] = []
    got_b: list[Record] = []
    deadline = time.monotonic() + DEADLINE_S
    while len(got_a) + len(got_b) < len(ids) and time.monotonic() < deadline:
        for consumer, sink in ((a, got_a), (b, got_b)):
            batch = consumer.poll(20, 0.2)
            sink.extend(batch)
            consumer.commit()
    got_a += settle(a, 1.0)
    got_b += settle(b, 1.0)
    a.close()
    b.close()
    refused = a.refused_commits + b.refused_commits
    if bus_env.kind == "noida" and refused:
        pytest.skip(
            "noida-db 0.2.2 starts a new group generation at every heartbeat while two members are joined, "
            f"so the group never settles: {refused} commits were refused (IllegalGeneration) and their "
            "records redelivered"
        )
    assert refused == 0, f"{bus_env.kind}: {refused} commits refused by a rebalance in a stable group"
    assert got_a and got_b, "both members must get records"
    assert sorted(r.key for r in got_a + got_b) == ids, "every record exactly once across the group"
    assert {r.partition for r in got_a}.isdisjoint({r.partition for r in got_b})


def test_after_a_member_leaves_the_other_takes_over_from_the_committed_offset(bus_env: BusEnv) -> None:
    bus = bus_env.make_bus()
    topic = bus_env.settings.topic_raw
    bus.ensure_topics([topic])
    ids = [f"id{i:03d}" for i in range(30)]
    for key in ids:
        bus.publish(topic, key, key.encode())
    bus.flush()
    group = unique_name("takeover")
    first = bus.consumer(topic, group)
    done = drain(first, 10, batch_size=5)  # commits as it goes
    held = drain(first, 5, batch_size=5, commit=False)  # processed, never committed
    assert len(done) == 10 and len(held) == 5
    first.close()
    second = bus.consumer(topic, group)
    rest = drain(second, len(ids) - len(done))
    rest += settle(second, 1.0)
    second.close()
    assert sorted(r.key for r in done + rest) == ids, "nothing lost, nothing committed delivered twice"
    assert {r.key for r in held} <= {r.key for r in rest}, "uncommitted records go to the next member"


# --- dead letters ---------------------------------------------------------------------------------


def test_poison_record_is_dead_lettered_with_headers_and_the_stage_goes_on(bus_env: BusEnv) -> None:
    bus = bus_env.make_bus()
    settings = bus_env.settings
    topic = settings.topic_raw
    bus.ensure_topics([topic])
    ids = [f"id{i:02d}" for i in range(10)]
    for key in [*ids[:4], "poison", *ids[4:]]:
        bus.publish(topic, key, key.encode(), {H_SCHEMA: "1"})
    bus.flush()
    handler = Recorder(fail_keys=["poison"])
    metrics = PrometheusMetrics()
    worker = StageWorker(bus, topic, unique_name("stage"), handler, metrics=metrics, max_attempts=3, batch_size=4)
    run_worker(worker, len(ids), handler)
    worker.close()

    assert sorted(set(handler.seen)) == ids, "records after the poison one are processed"
    assert handler.calls["poison"] == 3, "retried up to max_attempts"
    letters = _wait_letters(bus_env, topic, 1)
    assert len(letters) == 1
    letter = letters[0]
    assert (letter.key, letter.value, letter.topic) == ("poison", b"poison", topic)
    assert (letter.stage, letter.error_class, letter.attempts) == ("contract", "ValueError", 3)
    assert letter.reason == "record 'poison': refused by the test stage"
    h = letter.headers
    assert h[H_STAGE] == "contract" and h[H_ERROR_CLASS] == "ValueError" and h[H_ATTEMPTS] == "3"
    assert h[H_ERROR_MESSAGE] == letter.reason and h[H_ORIGINAL_TOPIC] == topic
    assert h[H_ORIGINAL_PARTITION] == str(letter.partition) and h[H_ORIGINAL_OFFSET] == str(letter.offset)
    assert h[H_SCHEMA] == "1", "the record's own headers travel with it"
    assert abs((datetime.fromisoformat(h[H_DEAD_LETTERED_AT]) - datetime.now(UTC)).total_seconds()) < 120
    assert (
        metrics.registry.get_sample_value("sednaya_dead_letters_total", {"stage": "contract", "reason": "ValueError"})
        == 1.0
    )


def test_unknown_future_schema_is_dead_lettered_with_a_clear_reason(bus_env: BusEnv) -> None:
    bus = bus_env.make_bus()
    topic = bus_env.settings.topic_raw
    bus.ensure_topics([topic])
    bus.publish(topic, "a-current", article_bytes("a-current"), {H_SCHEMA: "1"})
    bus.publish(topic, "a-future", article_bytes("a-future", schema=99), {H_SCHEMA: "99"})
    bus.publish(topic, "a-after", article_bytes("a-after"), {H_SCHEMA: "1"})
    bus.flush()
    handler = Recorder(decode=True)
    worker = StageWorker(bus, topic, unique_name("schema"), handler, metrics=PrometheusMetrics(), max_attempts=3)
    run_worker(worker, 2, handler)
    worker.close()
    assert sorted(handler.seen) == ["a-after", "a-current"]
    assert handler.calls["a-future"] == 1, "a contract error is not retried"
    (letter,) = _wait_letters(bus_env, topic, 1)
    assert letter.key == "a-future" and letter.error_class == "UnsupportedSchemaError" and letter.attempts == 1
    assert "schema 99 is not supported" in letter.reason and "a-future" in letter.reason


def test_dead_letters_replay_by_id_and_all(bus_env: BusEnv) -> None:
    bus = bus_env.make_bus()
    topic = bus_env.settings.topic_raw
    bus.ensure_topics([topic])
    for key in ("bad-1", "bad-2", "bad-3"):
        bus.publish(topic, key, key.encode(), {"note": key})
    bus.flush()
    consumer = bus.consumer(topic, unique_name("dlq"))
    records = drain(consumer, 3)
    consumer.close()
    for record in records:
        bus.dead_letter(record, stage="contract", error_class="ValueError", reason=f"{record.key} broke", attempts=2)
    bus.flush()
    letters = _wait_letters(bus_env, topic, 3)
    assert sorted(d.key for d in letters) == ["bad-1", "bad-2", "bad-3"]
    by_key = {d.key: d for d in letters}

    with pytest.raises(BusError, match="not found"):
        bus.replay(topic, ["no-such-letter"])
    assert bus.replay(topic, [by_key["bad-2"].id]) == 1
    assert sorted(d.key for d in bus.dead_letters(topic)) == ["bad-1", "bad-3"]
    with pytest.raises(BusError, match="already replayed"):
        bus.replay(topic, [by_key["bad-2"].id])
    assert bus.replay(topic) == 2
    assert bus.dead_letters(topic) == []
    assert bus.replay(topic) == 0

    # the replayed records are back on the topic, without the dead-letter headers
    fresh = bus.consumer(topic, unique_name("after-replay"))
    again = drain(fresh, 6)
    again += settle(fresh, 1.0)
    fresh.close()
    keys = sorted(r.key for r in again)
    assert keys == ["bad-1", "bad-1", "bad-2", "bad-2", "bad-3", "bad-3"], keys
    for record in again:
        assert record.headers.get("note") == record.key
        assert not any(name.startswith("dlq.") for name in record.headers)

    # a second bus (another process, same storage) sees the same replay progress
    other = bus_env.make_bus()
    assert other.dead_letters(topic) == []


def test_dlq_cli_lists_and_replays(bus_env: BusEnv, tmp_path: Path) -> None:
    import sednaya_monitor.cli.commands_dlq  # noqa: F401  # registers `dlq` on the group
    from sednaya_monitor.cli import cli

    bus = bus_env.make_bus()
    settings = bus_env.settings
    topic = settings.topic_clustered
    bus.ensure_topics([topic])
    bus.publish(topic, "cli-1", b"one")
    bus.publish(topic, "cli-2", b"two")
    bus.flush()
    consumer = bus.consumer(topic, unique_name("cli"))
    records = drain(consumer, 2)
    consumer.close()
    for record in records:
        bus.dead_letter(
            record, stage="index", error_class="StoreError", reason=f"{record.key}: store said no", attempts=3
        )
    bus.flush()
    _wait_letters(bus_env, topic, 2)
    bus.close()
    bus_env.opened.remove(bus)

    config = tmp_path / "bus.toml"
    lines = [
        f'{name} = "{getattr(settings, name)}"'
        for name in ("bus", "topic_raw", "topic_clustered", "topic_story_events")
    ]
    lines.append(f"kafka_client_id = {json.dumps(settings.kafka_client_id)}")
    config.write_text("\n".join(lines) + "\n", encoding="utf-8")
    base = ["--data-dir", str(settings.data_dir), "--config", str(config)]
    runner = CliRunner()

    listed = runner.invoke(cli, [*base, "dlq", "list", "--topic", topic, "--json"], catch_exceptions=False)
    assert listed.exit_code == 0, listed.output
    rows = [json.loads(line) for line in listed.stdout.splitlines() if line.strip()]
    assert sorted(r["key"] for r in rows) == ["cli-1", "cli-2"]
    assert {r["stage"] for r in rows} == {"index"} and {r["error_class"] for r in rows} == {"StoreError"}
    assert {r["attempts"] for r in rows} == {3} and {r["topic"] for r in rows} == {topic}
    first_id = next(r["id"] for r in rows if r["key"] == "cli-1")

    text = runner.invoke(cli, [*base, "dlq", "list"], catch_exceptions=False)
    assert text.exit_code == 0 and "cli-2" in text.stdout and "store said no" in text.stdout

    one = runner.invoke(cli, [*base, "dlq", "replay", "--topic", topic, "--id", first_id], catch_exceptions=False)
    assert one.exit_code == 0 and "replayed 1" in one.stdout, one.output
    rest = runner.invoke(cli, [*base, "dlq", "replay", "--topic", topic], catch_exceptions=False)
    assert rest.exit_code == 0 and "replayed 1" in rest.stdout, rest.output
    empty = runner.invoke(cli, [*base, "dlq", "list", "--topic", topic, "--json"], catch_exceptions=False)
    assert empty.exit_code == 0 and empty.stdout.strip() == ""


def _wait_letters(bus_env: BusEnv, topic: str, expected: int) -> list[DeadLetter]:
    """Dead letters of ``topic`` once ``expected`` are visible (Kafka: a fresh read of the dlq topic)."""
    bus = bus_env.opened[0]
    deadline = time.monotonic() + 20
    letters = bus.dead_letters(topic)
    while len(letters) < expected and time.monotonic() < deadline:
        time.sleep(0.2)
        letters = bus.dead_letters(topic)
    return letters
