"""The /metrics + /healthz server, the Pushgateway push, and the exposition checked by promtool."""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from sednaya_monitor.metrics_server import (
    PUSH_JOB,
    Health,
    MetricsBindError,
    MetricsServer,
    push_final,
    serve_metrics,
    serving_run,
)
from sednaya_monitor.prometheus_metrics import PrometheusMetrics, set_build_info
from sednaya_monitor.settings import Settings
from stream.errors import SednayaError
from tests.ports import free_port

PROMTOOL = shutil.which("promtool")
PUSHGATEWAY = shutil.which("prometheus-pushgateway")
READY_S = 20.0


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _filled_metrics() -> PrometheusMetrics:
    """Every metric with at least one sample, as a running pipeline would leave them."""
    m = PrometheusMetrics()
    set_build_info(m, version="0.1.0", model="all-MiniLM-L6-v2")
    m.articles.labels(stage="embed", status="embedded").inc(3)
    m.stage_seconds.labels(stage="embed").observe(0.02)
    m.bus_records.labels(topic="articles.raw.v1", op="consumed").inc(3)
    m.bus_lag.labels(topic="articles.raw.v1", group="embed", partition="0").set(2)
    m.dead_letters.labels(stage="index", reason="ContractError").inc()
    m.store_writes.labels(kind="article", result="ok").inc(2)
    m.store_write_seconds.labels(kind="article").observe(0.004)
    m.stories.labels(kind="created").inc()
    m.source_fetches.labels(source="example-news", outcome="ok").inc()
    m.source_last_success.labels(source="example-news").set(1_700_000_000)
    m.source_poll_interval.labels(source="example-news").set(900)
    m.source_articles.labels(source="example-news").inc(2)
    m.extraction.labels(reason="ok").inc(2)
    m.alerts.labels(channel="webhook", result="sent").inc()
    m.alert_latency.labels(channel="webhook").observe(1.5)
    return m


@pytest.fixture
def server() -> Iterator[MetricsServer]:
    with MetricsServer(_filled_metrics()) as srv:
        yield srv


@pytest.mark.timeout(30)
def test_metrics_endpoint_serves_the_registry(server: MetricsServer) -> None:
    status, body = _get(server.url + "/metrics")
    assert status == 200
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    assert families["sednaya_articles"].samples[0].value == 3.0
    info = families["sednaya_info"].samples[0]
    assert info.name == "sednaya_info"
    assert info.labels == {"version": "0.1.0", "model": "all-MiniLM-L6-v2"}
    assert families["sednaya_healthy"].samples[0].value == 1.0
    for name in (
        "sednaya_store_write_duration_seconds",
        "sednaya_source_poll_interval_seconds",
        "sednaya_source_articles",
    ):
        assert name in families, name


@pytest.mark.timeout(30)
def test_healthz_follows_the_health_state(server: MetricsServer) -> None:
    status, body = _get(server.url + "/healthz")
    assert (status, json.loads(body)) == (200, {"status": "green"})
    server.health.set_red("store http://127.0.0.1:9/: connection refused")
    status, body = _get(server.url + "/healthz")
    assert status == 503
    assert json.loads(body) == {"status": "red", "reason": "store http://127.0.0.1:9/: connection refused"}
    assert server.metrics.healthy._value.get() == 0.0
    server.health.set_green()
    assert _get(server.url + "/healthz")[0] == 200
    assert server.metrics.healthy._value.get() == 1.0


def test_red_needs_a_reason() -> None:
    with pytest.raises(ValueError, match="needs a reason"):
        Health().set_red("")


@pytest.mark.timeout(30)
def test_bind_error_names_the_address(server: MetricsServer) -> None:
    with pytest.raises(OSError, match=rf"cannot bind 127\.0\.0\.1:{server.port}"):
        MetricsServer(PrometheusMetrics(), port=server.port).start()


def test_serve_metrics_is_off_on_port_zero() -> None:
    assert serve_metrics(Settings(metrics_port=0), PrometheusMetrics()) is None


@pytest.mark.timeout(30)
def test_serve_metrics_binds_the_configured_port() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    srv = serve_metrics(Settings(metrics_port=port, metrics_host="127.0.0.1"), PrometheusMetrics())
    assert srv is not None
    try:
        assert srv.port == port
        assert _get(f"http://127.0.0.1:{port}/metrics")[0] == 200
    finally:
        srv.stop()


@pytest.mark.skipif(PROMTOOL is None, reason="promtool (Debian package prometheus) is installed by scripts/setup.sh")
@pytest.mark.timeout(60)
def test_promtool_check_metrics_accepts_the_exposition(server: MetricsServer) -> None:
    _, body = _get(server.url + "/metrics")
    assert PROMTOOL is not None
    done = subprocess.run([PROMTOOL, "check", "metrics"], input=body, capture_output=True, timeout=30, check=False)
    assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()
    # promtool lints too (naming, help text); a lint problem is printed even with exit code 0
    assert done.stdout.decode().strip() == "" and done.stderr.decode().strip() == "", done.stderr.decode()


class _Gateway(BaseHTTPRequestHandler):
    """Records each request the way a Pushgateway receives it (method, path, body)."""

    received: list[tuple[str, str, bytes]]

    def do_PUT(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        self.received.append(("PUT", self.path, self.rfile.read(length)))
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.mark.timeout(30)
def test_push_final_puts_the_registry_to_the_pushgateway() -> None:
    received: list[tuple[str, str, bytes]] = []
    handler = type("Gateway", (_Gateway,), {"received": received})
    gateway = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=gateway.serve_forever, daemon=True)
    thread.start()
    try:
        settings = Settings(pushgateway=f"127.0.0.1:{gateway.server_address[1]}")
        assert push_final(settings, _filled_metrics()) is True
    finally:
        gateway.shutdown()
        gateway.server_close()
    assert len(received) == 1
    method, path, body = received[0]
    assert (method, path) == ("PUT", f"/metrics/job/{PUSH_JOB}")
    assert b'sednaya_articles_total{stage="embed",status="embedded"} 3.0' in body


def test_push_final_is_off_without_a_pushgateway() -> None:
    assert push_final(Settings(), _filled_metrics()) is False


@pytest.mark.timeout(30)
def test_push_final_unreachable_gateway_warns_and_returns_false(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert push_final(Settings(pushgateway=f"127.0.0.1:{port}"), _filled_metrics()) is False
    assert any(r.getMessage() == "pushgateway push failed" for r in caplog.records)


@pytest.fixture
def pushgateway(tmp_path: Path) -> Iterator[str]:
    """Debian's Pushgateway on a free loopback port; yields ``host:port``."""
    if PUSHGATEWAY is None:
        pytest.skip("prometheus-pushgateway (Debian package) is installed by scripts/setup.sh")
    port = free_port()
    log = tmp_path / "pushgateway.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [PUSHGATEWAY, f"--web.listen-address=127.0.0.1:{port}", f"--persistence.file={tmp_path / 'push.data'}"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + READY_S
        while _ready(f"http://127.0.0.1:{port}/-/ready") is False:
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, f"pushgateway not ready:\n{log.read_text()}"
            time.sleep(0.1)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _pushed(gateway: str, name: str) -> list[tuple[dict[str, str], float]]:
    status, body = _get(f"http://{gateway}/metrics")
    assert status == 200
    return [
        (dict(s.labels), s.value)
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
        if s.name == name
    ]


@pytest.mark.timeout(60)
def test_push_final_reaches_a_real_pushgateway(pushgateway: str) -> None:
    assert push_final(Settings(pushgateway=pushgateway), _filled_metrics()) is True
    assert _pushed(pushgateway, "sednaya_articles_total") == [
        ({"job": PUSH_JOB, "instance": "", "stage": "embed", "status": "embedded"}, 3.0)
    ]


@pytest.mark.timeout(60)
def test_serving_run_serves_while_running_and_pushes_at_the_end_even_on_failure(pushgateway: str) -> None:
    port = free_port()
    settings = Settings(metrics_port=port, pushgateway=pushgateway)
    metrics = PrometheusMetrics()
    with pytest.raises(RuntimeError, match="store went away"), serving_run(settings, metrics) as server:
        assert server is not None and server.port == port
        metrics.articles.labels(stage="index", status="indexed").inc(2)
        status, body = _get(f"http://127.0.0.1:{port}/metrics")
        assert status == 200 and b'sednaya_articles_total{stage="index",status="indexed"} 2.0' in body
        metrics.articles.labels(stage="index", status="dead_lettered").inc()
        raise RuntimeError("store went away")
    assert sorted(_pushed(pushgateway, "sednaya_articles_total"), key=lambda s: s[0]["status"]) == [
        ({"job": PUSH_JOB, "instance": "", "stage": "index", "status": "dead_lettered"}, 1.0),
        ({"job": PUSH_JOB, "instance": "", "stage": "index", "status": "indexed"}, 2.0),
    ]
    with pytest.raises(OSError):  # stopped with the block
        _get(f"http://127.0.0.1:{port}/metrics")


def test_serving_run_with_metrics_off_yields_none() -> None:
    with serving_run(Settings(), PrometheusMetrics()) as server:
        assert server is None


def _ready(url: str) -> bool:
    try:
        return _get(url)[0] == 200
    except OSError:
        return False


@pytest.mark.timeout(30)
def test_a_one_off_command_goes_on_without_metrics_when_the_port_is_held(
    server: MetricsServer, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(metrics_port=server.port)
    with (
        caplog.at_level(logging.WARNING, logger="sednaya_monitor.metrics_server"),
        serving_run(settings, PrometheusMetrics(), one_off=True) as taken,
    ):
        assert taken is None
    (record,) = caplog.records
    assert record.getMessage() == (
        f"metrics not served, the command goes on without them: metrics server cannot bind 127.0.0.1:{server.port}: "
        "Address already in use (setting metrics_port: SEDNAYA_MONITOR_METRICS_PORT or --metrics-port; 0 = not served)"
    )
    assert _get(f"{server.url}/healthz")[0] == 200  # the holder keeps serving


@pytest.mark.timeout(30)
def test_a_long_running_process_stops_when_the_port_is_held(server: MetricsServer) -> None:
    held = rf"cannot bind 127\.0\.0\.1:{server.port}: .*setting metrics_port"
    settings = Settings(metrics_port=server.port)
    with pytest.raises(MetricsBindError, match=held), serving_run(settings, PrometheusMetrics()):
        pytest.fail("the block must not run without its metrics server")
    assert issubclass(MetricsBindError, SednayaError)  # `main` prints it as one line, exit 1


@pytest.mark.timeout(120)
def test_crawl_in_a_stage_container_with_the_stage_port_held(server: MetricsServer, tmp_path: Path) -> None:
    """`docker-compose exec crawl sednaya-monitor crawl`: the image's SEDNAYA_MONITOR_METRICS_PORT is the
    stage's. A one-off crawl warns once and crawls; `crawl --follow` stops with one line, no traceback."""
    closed = free_port()
    registry = tmp_path / "sources.toml"
    registry.write_text(
        f'[[source]]\nid = "wing-news"\nname = "Wing News"\nhome = "http://127.0.0.1:{closed}/"\nlang = "en"\n'
        f'country = "GB"\ntype = "other"\nfeeds = ["http://127.0.0.1:{closed}/feed.xml"]\nsitemaps = []\n'
        "verified = true\n",
        encoding="utf-8",
    )
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SEDNAYA_MONITOR_")},
        "SEDNAYA_MONITOR_METRICS_PORT": str(server.port),
        "SEDNAYA_MONITOR_SOURCES_FILE": str(registry),
        "SEDNAYA_MONITOR_DISCOVERY": "false",
        "SEDNAYA_MONITOR_CRAWL_RETRY_TIMES": "0",
    }
    command = [sys.executable, "-c", "from sednaya_monitor.cli import main; main()", "--data-dir", str(tmp_path / "d")]
    once = subprocess.run([*command, "crawl"], env=env, capture_output=True, text=True, timeout=100, check=False)
    assert once.returncode == 0, once.stderr
    assert "crawl: 0 article(s) published" in once.stdout and "wing-news: connection=1" in once.stdout
    warned = [line for line in once.stderr.splitlines() if "metrics not served" in line]
    assert len(warned) == 1 and f"cannot bind 127.0.0.1:{server.port}" in warned[0], once.stderr
    follow = subprocess.run(
        [*command, "crawl", "--follow"], env=env, capture_output=True, text=True, timeout=100, check=False
    )
    assert follow.returncode == 1 and "Traceback" not in follow.stderr, follow.stderr
    assert follow.stderr.strip().splitlines()[-1] == (
        f"Error: metrics server cannot bind 127.0.0.1:{server.port}: Address already in use "
        "(setting metrics_port: SEDNAYA_MONITOR_METRICS_PORT or --metrics-port; 0 = not served)"
    )
