"""A real Prometheus scrapes a real crawl and a real pipeline run; counts and dashboard queries are read back.

Debian's ``prometheus`` binary runs on a loopback port with a 1-second scrape interval and the project's
recording and alert rules loaded. It scrapes two processes, each serving its registry through
:mod:`sednaya_monitor.metrics_server`, as the distributed stages do:

- job ``crawl``: a separate Python process crawling the fixture news web (the demo web with
  ``tests/sites`` over it, served by
  ``tests/crawl_fixtures.py``) with :func:`crawlers.run.crawl` into the embedded bus of a data directory;
- job ``run``: the one-process :class:`~sednaya_monitor.pipeline.Pipeline` (embed, index, alert with the
  real model and the embedded store) draining that bus, plus one undecodable record that must be
  dead-lettered, with two watchlists: one delivering to a loopback webhook, one to a receiver that is gone.

The test reads the series back through Prometheus' HTTP API and wants every count to match exactly,
checks which alert rules turned active on these figures, then evaluates every query of the Grafana
operator dashboard against this Prometheus and wants data.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import Metric

from indexer.alerting.watchlists import SqliteWatchlistRepository, Watchlist
from sednaya_monitor import __version__
from sednaya_monitor.metrics_server import MetricsServer
from sednaya_monitor.prometheus_metrics import PrometheusMetrics, set_build_info
from sednaya_monitor.settings import Settings, load_settings
from tests.alert_fixtures import WebhookReceiver, _handler_for
from tests.crawl_fixtures import FixtureWeb
from tests.ports import free_port

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "deploy" / "prometheus" / "rules"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "operator.json"
PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")
READY_S = 30.0  # Prometheus start-up on a loaded 2-core machine
SCRAPED_S = 30.0  # time for a few 1-second scrapes to see the final figures
# Grafana's interval variables, set to windows that hold several 1-second scrapes of this short run
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "1s", "$__range": "5m"}

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(PROMETHEUS is None, reason="prometheus (Debian package) is installed by scripts/setup.sh"),
]



@dataclass
class PrometheusServer:
    url: str
    log: Path

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Instant query; returns ``data.result`` (a list of ``{"metric": {...}, "value": [t, "v"]}``)."""
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        with urllib.request.urlopen(url, timeout=10) as resp:
            body = json.loads(resp.read())
        assert body["status"] == "success", (expr, body)
        assert body["data"]["resultType"] == "vector", (expr, body)
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def value(self, expr: str) -> float | None:
        result = self.query(expr)
        if not result:
            return None
        assert len(result) == 1, (expr, result)
        return float(result[0]["value"][1])

    def alerts(self) -> list[dict[str, Any]]:
        """Active alerts (pending and firing) with ``labels``, ``state`` and ``value``."""
        with urllib.request.urlopen(f"{self.url}/api/v1/alerts", timeout=10) as resp:
            alerts: list[dict[str, Any]] = json.loads(resp.read())["data"]["alerts"]
        return alerts

    def rules(self) -> list[dict[str, Any]]:
        with urllib.request.urlopen(f"{self.url}/api/v1/rules", timeout=10) as resp:
            groups: list[dict[str, Any]] = json.loads(resp.read())["data"]["groups"]
        return groups


def _start_prometheus(tmp: Path, targets: dict[str, int]) -> tuple[subprocess.Popen[bytes], PrometheusServer]:
    assert PROMETHEUS is not None
    port = free_port()
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(p) for p in sorted(RULES.glob("*.yml"))],
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": [f"127.0.0.1:{target}"]}]}
            for job, target in targets.items()
        ],
    }
    config_file = tmp / "prometheus.yml"
    config_file.write_text(json.dumps(config))  # JSON is YAML
    log = tmp / "prometheus.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={config_file}",
                f"--storage.tsdb.path={tmp / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--web.enable-lifecycle",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = PrometheusServer(url=f"http://127.0.0.1:{port}", log=log)
    deadline = time.monotonic() + READY_S
    while True:
        if proc.poll() is not None:
            pytest.fail(f"prometheus exited {proc.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(server.url + "/-/ready", timeout=2) as resp:
                if resp.status == 200:
                    return proc, server
        except OSError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"prometheus not ready after {READY_S}s:\n{log.read_text()}")
        time.sleep(0.2)


# The crawl stage as its own process: serves its registry on a free port (printed first), crawls the
# fixture web once into the embedded bus, prints the summary as JSON, then keeps serving until stdin closes.
CRAWL_SCRIPT = """
import json, sys
from crawlers.run import crawl
from sednaya_monitor import __version__, wiring
from sednaya_monitor.metrics_server import MetricsServer
from sednaya_monitor.prometheus_metrics import PrometheusMetrics, set_build_info
from sednaya_monitor.settings import load_settings

settings = load_settings()
metrics = PrometheusMetrics()
set_build_info(metrics, version=__version__, model=settings.model_name, stage="crawl")
server = MetricsServer(metrics).start()
print(server.port, flush=True)
bus = wiring.make_bus(settings)
bus.ensure_topics(settings.topics)
summary = crawl(wiring.crawl_config(settings), bus, metrics, raw=wiring.make_raw_store(settings))
bus.flush()
bus.close()
print(json.dumps(summary.to_dict()), flush=True)
sys.stdin.read()
server.stop()
"""
CRAWL_TIMEOUT_S = 120  # one crawl of the fixture web takes ~10 s alone; the machine is shared


def _read_line(proc: subprocess.Popen[str], what: str, log: Path) -> str:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.wait(timeout=10)
        pytest.fail(f"crawl process exited {proc.returncode} before printing {what}:\n{log.read_text()[-4000:]}")
    return line.strip()


def _samples(metrics: PrometheusMetrics) -> Iterator[tuple[str, dict[str, str], float]]:
    """Every sample of the registry Prometheus should hold, without client-side ``_created`` stamps."""
    family: Metric
    for family in metrics.registry.collect():
        for sample in family.samples:
            if sample.name.endswith("_created"):
                continue
            yield sample.name, dict(sample.labels), float(sample.value)


def _selector(name: str, labels: dict[str, str], job: str) -> str:
    matchers = {**labels, "job": job}
    inner = ",".join(f"{k}={json.dumps(v)}" for k, v in sorted(matchers.items()))
    return f"{name}{{{inner}}}"


@dataclass
class Scraped:
    prometheus: PrometheusServer
    run_metrics: PrometheusMetrics
    crawl_summary: dict[str, Any]  # crawlers.crawl_context.CrawlSummary.to_dict() of the crawl process
    stories_in_store: int
    webhook_sent: int
    exposition: bytes  # /metrics of the pipeline process after the run


@pytest.fixture(scope="module")
def scraped(tmp_path_factory: pytest.TempPathFactory, fixture_web: FixtureWeb) -> Iterator[Scraped]:
    from sednaya_monitor.pipeline import Pipeline  # imports the model stack: only when the test runs

    tmp = tmp_path_factory.mktemp("prometheus-e2e")
    data_dir = tmp / "data"
    settings: Settings = load_settings(
        environ={},
        overrides={
            "data_dir": data_dir,
            "webhook_backoff_s": 0.05,
            "alert_allow_private_targets": True,  # the receivers listen on 127.0.0.1
            "alert_max_age_s": 30 * 365 * 86400.0,  # the fixture web's articles are not from this week
        },
    )

    # the webhook receiver of tests/alert_fixtures.py, started by hand for this module-scoped fixture
    receiver = WebhookReceiver()
    hook_server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(receiver))
    hook_server.daemon_threads = True
    receiver.url = f"http://127.0.0.1:{hook_server.server_address[1]}/hook"
    threading.Thread(target=hook_server.serve_forever, daemon=True).start()

    data_dir.mkdir(parents=True)
    crawl_log = tmp / "crawl.log"
    with crawl_log.open("w") as log:
        crawler = subprocess.Popen(
            [sys.executable, "-c", CRAWL_SCRIPT],
            env=fixture_web.env(data_dir),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
    run_metrics = PrometheusMetrics()
    set_build_info(run_metrics, version=__version__, model=settings.model_name)
    run_server = MetricsServer(run_metrics).start()
    pipeline = None
    proc = None
    try:
        crawl_port = int(_read_line(crawler, "its metrics port", crawl_log))
        proc, prometheus = _start_prometheus(tmp, {"run": run_server.port, "crawl": crawl_port})
        crawl_summary: dict[str, Any] = json.loads(_read_line(crawler, "its summary", crawl_log))
        repo = SqliteWatchlistRepository.in_data_dir(data_dir)
        repo.add(Watchlist(name="sednaya", query="Sednaya", webhooks=(receiver.url,)))
        # a second watchlist whose receiver is gone: every delivery fails after its retries
        repo.add(Watchlist(name="sednaya-gone", query="Sednaya", webhooks=(f"http://127.0.0.1:{free_port()}/gone",)))
        repo.close()
        pipeline = Pipeline(settings, run_metrics)
        # one record no stage can read: the embed stage must dead-letter it
        pipeline.bus.publish(settings.topic_raw, "not-an-article", b"{this is not json", {})
        pipeline.bus.flush()
        pipeline.drain()
        stories = len(pipeline.store.list_stories(limit=1000))

        def webhook(result: str) -> float:
            labels = {"channel": "webhook", "result": result}
            return run_metrics.registry.get_sample_value("sednaya_alerts_total", labels) or 0.0

        # deliveries run on the alert stage's threads: wait until every matched alert was delivered,
        # then until Prometheus scraped the final figures
        deadline = time.monotonic() + SCRAPED_S
        while webhook("matched") == 0 or webhook("sent") + webhook("failed") < webhook("matched"):
            if time.monotonic() > deadline:
                outcomes = {
                    status: run_metrics.registry.get_sample_value(
                        "sednaya_articles_total", {"stage": "alert", "status": status}
                    )
                    for status in ("alerted", "queued", "no_match", "skipped", "dead_lettered")
                }
                pytest.fail(
                    f"webhook alerts: matched {webhook('matched')}, sent {webhook('sent')}, failed "
                    f"{webhook('failed')} after {SCRAPED_S}s; alert stage outcomes {outcomes}"
                )
            time.sleep(0.1)
        sent = int(webhook("sent"))
        assert sent == len(receiver.delivered) == webhook("failed") >= 1
        expected = [(*sample, "run") for sample in _samples(run_metrics)]
        expected += [
            ("sednaya_articles_total", {"stage": "crawl", "status": status}, float(count), "crawl")
            for status, count in crawl_summary["articles"].items()
        ]
        while True:
            missing = [
                (name, labels, value)
                for name, labels, value, job in expected
                if prometheus.value(_selector(name, labels, job)) != value
            ]
            if not missing:
                break
            if time.monotonic() > deadline:
                pytest.fail(f"Prometheus does not hold the final figures after {SCRAPED_S}s: {missing[:5]}")
            time.sleep(0.5)
        time.sleep(3)  # a few more scrapes and rule evaluations for the rate() windows of the dashboard
        with urllib.request.urlopen(run_server.url + "/metrics", timeout=10) as resp:
            exposition = resp.read()
        yield Scraped(prometheus, run_metrics, crawl_summary, stories, sent, exposition)
    finally:
        if pipeline is not None:
            pipeline.close()
        for child in (crawler, proc):
            if child is None:
                continue
            if child is crawler and crawler.stdin is not None:
                crawler.stdin.close()  # the crawl process stops serving and exits
            else:
                child.terminate()
            try:
                child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait(timeout=5)
        run_server.stop()
        hook_server.shutdown()
        hook_server.server_close()


@pytest.mark.timeout(600)
def test_counts_read_back_from_prometheus_match_the_run_exactly(scraped: Scraped) -> None:
    prom, crawled = scraped.prometheus, scraped.crawl_summary
    n = crawled["published"]
    assert n >= 5, crawled  # the fixture web holds on-topic articles in five languages
    assert prom.value('up{job="crawl"}') == prom.value('up{job="run"}') == 1.0
    # the crawl process: every article once with its outcome, every fetch and extraction outcome
    assert prom.value('sednaya_articles_total{job="crawl",stage="crawl",status="published"}') == n
    for status, count in crawled["articles"].items():
        assert prom.value(f'sednaya_articles_total{{job="crawl",stage="crawl",status="{status}"}}') == count
    for reason, count in crawled["extraction"].items():
        assert prom.value(f'sednaya_extraction_total{{job="crawl",reason="{reason}"}}') == count
    for source, outcomes in crawled["fetches"].items():
        for outcome, count in outcomes.items():
            expr = f'sednaya_source_fetches_total{{job="crawl",source="{source}",outcome="{outcome}"}}'
            assert prom.value(expr) == count, expr
    # the pipeline: each crawled article once per stage, the undecodable record included
    assert prom.value('sum(sednaya_articles_total{job="run",stage="embed"})') == n + 1
    assert prom.value('sednaya_articles_total{job="run",stage="embed",status="dead_lettered"}') == 1.0
    assert prom.value('sednaya_articles_total{job="run",stage="index",status="indexed"}') == n
    assert prom.value('sum(sednaya_dead_letters_total{job="run"})') == 1.0
    assert prom.value('sednaya_dead_letters_total{job="run",stage="embed"}') == 1.0
    assert prom.value('sednaya_bus_records_total{job="run",topic="articles.raw.v1",op="consumed"}') == n + 1
    assert prom.value('sednaya_store_writes_total{job="run",kind="article",result="ok"}') == n
    created = prom.value('sednaya_story_events_total{job="run",kind="created"}')
    assert created == scraped.stories_in_store and created is not None and created >= 1
    assert prom.value('sednaya_alerts_total{job="run",channel="webhook",result="sent"}') == scraped.webhook_sent
    info = prom.query('sednaya_info{job="run"}')
    assert [(r["metric"]["version"], r["metric"]["model"]) for r in info] == [(__version__, "use-multilingual-v3")]
    # and every other sample of the pipeline's registry, exactly
    for name, labels, value in _samples(scraped.run_metrics):
        assert prom.value(_selector(name, labels, "run")) == value, (name, labels)


@pytest.mark.timeout(120)
def test_recording_and_alert_rules_load_in_a_real_prometheus(scraped: Scraped) -> None:
    groups = {g["name"]: g for g in scraped.prometheus.rules()}
    assert set(groups) == {"sednaya-recording", "sednaya-alerts"}
    for group in groups.values():
        for rule in group["rules"]:
            assert rule["health"] == "ok", rule
    # a recording rule computed from the scraped figures
    assert scraped.prometheus.query("stage_status:sednaya_articles:rate5m"), "recording rule has no data"


@pytest.mark.timeout(120)
def test_alert_rules_evaluate_on_the_scraped_figures(scraped: Scraped) -> None:
    """The failed deliveries make SednayaAlertDeliveryFailing pending (its `for` is 5 minutes); the run
    indexed articles and is healthy, so the ingest, health and target alerts stay quiet."""
    deadline = time.monotonic() + SCRAPED_S
    while True:
        active = scraped.prometheus.alerts()
        failing = [a for a in active if a["labels"]["alertname"] == "SednayaAlertDeliveryFailing"]
        if failing or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert [(a["labels"]["channel"], a["labels"]["severity"], a["state"]) for a in failing] == [
        ("webhook", "critical", "pending")
    ], active
    quiet = {"SednayaNoArticlesIngested", "SednayaProcessUnhealthy", "SednayaTargetDown", "SednayaStoreWriteErrors"}
    assert not [a for a in active if a["labels"]["alertname"] in quiet], active


@pytest.mark.skipif(PROMTOOL is None, reason="promtool (Debian package prometheus) is installed by scripts/setup.sh")
@pytest.mark.timeout(60)
def test_promtool_check_metrics_accepts_the_pipeline_exposition(scraped: Scraped) -> None:
    assert PROMTOOL is not None
    done = subprocess.run(
        [PROMTOOL, "check", "metrics"], input=scraped.exposition, capture_output=True, timeout=30, check=False
    )
    lint = (done.stdout + done.stderr).decode().strip()
    assert done.returncode == 0 and lint == "", lint


def _panel_queries() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return [(p["title"], t["expr"]) for p in dashboard["panels"] for t in p.get("targets", [])]


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("title", "expr"), _panel_queries(), ids=[f"{t}:{e[:40]}" for t, e in _panel_queries()])
def test_every_grafana_panel_query_returns_data(scraped: Scraped, title: str, expr: str) -> None:
    unobserved = scraped.run_metrics.registry.get_sample_value(
        "sednaya_store_write_duration_seconds_count", {"kind": "article"}
    )
    if "sednaya_store_write_duration_seconds" in expr and unobserved is None:
        pytest.skip("indexer/index_stage.py does not time its store writes yet (metrics.store_write_seconds)")
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    result = scraped.prometheus.query(expr)
    assert result, f"panel {title!r}: {expr} returned no series"
