"""No loss across deaths: a stage SIGKILLed mid-batch, and a broker restarted while producing."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from sednaya_monitor.settings import Settings
from stream.errors import BusError
from tests.broker_fixtures import Broker, BusEnv, describe_group, unique_name

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parent.parent
RECORDS = 80
KILL_AFTER = 25  # deliveries seen before SIGKILL: inside the third batch of 10
WAIT_S = 120.0  # Kafka group joins plus the dead member's session timeout, on a busy machine
NOIDA_STUCK_S = 30.0  # several session timeouts: enough to tell noida's stuck group from a slow one


def write_config(settings: Settings, path: Path) -> Path:
    keys = ("bus", "data_dir", "topic_raw", "topic_clustered", "topic_story_events", "kafka_client_id")
    lines = [f"{k} = {json.dumps(str(getattr(settings, k)))}" for k in keys]
    for k in ("kafka_partitions", "kafka_session_timeout_ms", "kafka_max_poll_interval_ms"):
        lines.append(f"{k} = {getattr(settings, k)}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def start_worker(config: Path, topic: str, group: str, db: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.bus_worker_proc", str(config), topic, group, str(db), "--delay", "0.05"],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )


def count(db: Path, sql: str) -> int:
    if not db.exists():
        return 0
    conn = sqlite3.connect(db, timeout=30)
    try:
        return int(conn.execute(sql).fetchone()[0])
    except sqlite3.OperationalError:  # table not created yet
        return 0
    finally:
        conn.close()


class Stalled(Exception):
    """The worker made no progress in time."""


def wait_for(db: Path, sql: str, target: int, proc: subprocess.Popen[bytes], log: Path, wait_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + wait_s
    while count(db, sql) < target:
        if proc.poll() is not None:
            pytest.fail(f"worker exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
        if time.monotonic() > deadline:
            raise Stalled(f"{sql!r} stayed at {count(db, sql)} < {target} for {wait_s}s:\n{log.read_text()[-4000:]}")
        time.sleep(0.02)


def test_stage_killed_mid_batch_loses_nothing_and_stores_each_record_once(bus_env: BusEnv, tmp_path: Path) -> None:
    settings = bus_env.settings
    topic = settings.topic_raw
    group = unique_name("sink")
    bus = bus_env.make_bus()
    bus.ensure_topics([topic])
    ids = [f"a{i:03d}" for i in range(RECORDS)]
    for key in ids:
        bus.publish(topic, key, f"body of {key}".encode())
    bus.flush()
    config = write_config(settings, tmp_path / "worker.toml")
    noida = bus_env.kind == "noida"
    db = tmp_path / "sink.sqlite3"
    log = tmp_path / "worker.log"

    first = start_worker(config, topic, group, db, log)
    try:
        wait_for(db, "SELECT COUNT(*) FROM deliveries", KILL_AFTER, first, log)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    assert first.returncode == -signal.SIGKILL
    delivered_before = count(db, "SELECT COUNT(*) FROM deliveries")
    assert delivered_before < RECORDS, "killed before the end"

    second = start_worker(config, topic, group, db, log)
    try:
        wait_for(db, "SELECT COUNT(*) FROM articles", RECORDS, second, log, NOIDA_STUCK_S if noida else WAIT_S)
    except Stalled as exc:
        if not noida or count(db, "SELECT COUNT(*) FROM deliveries") > delivered_before:
            pytest.fail(str(exc))
        assert bus_env.broker is not None
        pytest.skip(
            "noida-db 0.2.2 did not drop the SIGKILLed group member (session timeout "
            f"{settings.kafka_session_timeout_ms} ms): after {NOIDA_STUCK_S:.0f} s the group is "
            f"{describe_group(bus_env.broker, group)} and the restarted worker got no partition"
        )
    finally:
        second.send_signal(signal.SIGTERM)  # graceful: finish the batch, commit, leave the group
        try:
            second.wait(30)
        except subprocess.TimeoutExpired:
            second.kill()
            second.wait(10)
    assert second.returncode == 0, log.read_text()[-4000:]

    conn = sqlite3.connect(db)
    stored = [row[0] for row in conn.execute("SELECT id FROM articles ORDER BY id")]
    deliveries = conn.execute("SELECT id, COUNT(*) FROM deliveries GROUP BY id HAVING COUNT(*) > 1").fetchall()
    conn.close()
    assert stored == ids, "each record exactly once downstream, none lost"
    assert deliveries, "the kill fell inside a batch: its uncommitted records were delivered again"

    # the graceful stop committed everything: the group has nothing left
    consumer = bus.consumer(topic, group)
    leftover = []
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline:
        leftover += consumer.poll(50, 0.5)
    consumer.close()
    assert leftover == [], [r.key for r in leftover]


@pytest.mark.parametrize("bus_env", ["tansu", "noida"], indirect=True)
def test_broker_restart_during_production_loses_no_acknowledged_record(bus_env: BusEnv) -> None:
    broker = bus_env.broker
    assert isinstance(broker, Broker)
    if not broker.keeps_data:
        pytest.skip(broker.no_restart_reason)
    topic = bus_env.settings.topic_raw
    bus = bus_env.make_bus()
    bus.ensure_topics([topic])
    acked: list[str] = []
    acked_at: dict[str, float] = {}
    failed: list[str] = []
    restarted = threading.Event()
    acked_after_restart: list[str] = []

    def produce() -> None:
        chunk: list[str] = []
        for i in range(300):
            key = f"r{i:03d}"
            bus.publish(topic, key, key.encode())
            chunk.append(key)
            if len(chunk) == 10:
                try:
                    bus.flush()
                except BusError:
                    failed.extend(chunk)
                else:
                    acked.extend(chunk)
                    acked_at.update(dict.fromkeys(chunk, time.monotonic()))
                    if restarted.is_set():
                        acked_after_restart.extend(chunk)
                chunk = []
                time.sleep(0.02)

    producer = threading.Thread(target=produce)
    producer.start()
    deadline = time.monotonic() + 30
    while len(acked) < 50 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert broker.proc is not None
    before = broker.proc.pid
    stopping_at = time.monotonic()
    broker.restart()  # SIGTERM to the broker's process group, then a new process on the same port and data
    assert broker.proc is not None and broker.proc.pid != before
    restarted.set()
    producer.join(180)
    assert not producer.is_alive()
    assert acked_after_restart, f"nothing acknowledged after the restart ({len(failed)} failed)"

    reader = bus_env.make_bus()
    consumer = reader.consumer(topic, unique_name("after-restart"))
    seen: set[str] = set()
    deadline = time.monotonic() + 60
    while not set(acked) <= seen and time.monotonic() < deadline:
        seen.update(r.key for r in consumer.poll(200, 0.5))
    consumer.close()
    missing = sorted(set(acked) - seen)
    # A stand-in's known gap: what it acknowledged just before its SIGTERM. Everything acknowledged earlier,
    # and everything after the restart, must still be there; only then is the gap the reason to skip.
    window = broker.loses_acked_before_stop_s
    in_gap = [key for key in missing if window and stopping_at - acked_at[key] <= window]
    lost = [key for key in missing if key not in in_gap]
    assert not lost, f"{len(lost)} acknowledged records lost across the restart: {lost[:10]}"
    if in_gap:
        pytest.skip(
            f"{broker.name}: {len(in_gap)} records acknowledged within {window:g} s before the SIGTERM were lost "
            f"({in_gap[:3]}...): {broker.loses_acked_reason}; the {len(acked) - len(in_gap)} other acknowledged "
            "records, before and after the restart, were all read back"
        )
