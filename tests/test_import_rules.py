"""The rooms and who may import whom (docs/architecture.md), checked on the source with ``ast``.

- domain modules (the contract, relevance, clustering, story state, alert decisions, the stages) import
  no Kafka, Elasticsearch, Scrapy or Prometheus client: only adapters do; they count through the
  metrics port ``stream.metrics.Metrics``, whose Prometheus implementation lives in the application
  package (``sednaya_monitor/prometheus_metrics.py``);
- ``crawlers`` (the Scrapy room) imports no Kafka, Elasticsearch or Prometheus client either;
- ``crawlers`` never imports the application package (``sednaya_monitor``);
- ``stream`` and ``indexer`` never import ``sednaya_monitor`` either;
- the application ``Settings`` and their loader live in ``sednaya_monitor/settings.py``, and no module of
  the lower rooms reads them: each component gets a config object of its own from the composition root.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DRIVERS = ("kafka", "elasticsearch", "elastic_transport", "scrapy", "twisted", "prometheus_client")
# Adapters: the only modules of stream/ and indexer/ that may talk to a driver.
ADAPTERS = {
    "stream/bus_kafka.py",
    "indexer/store_elastic.py",
    "indexer/alerting/watchlists_elastic.py",
    "indexer/alerting/ledger_elastic.py",
    "stream/changelog_kafka.py",
}


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", ["stream", "indexer"])
def test_domain_modules_import_no_driver(package: str) -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(m for m in imports(path) if m.split(".")[0] in DRIVERS)
        for path in modules(package)
        if str(path.relative_to(ROOT)) not in ADAPTERS
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_crawlers_import_no_driver_but_scrapy() -> None:
    allowed = {"scrapy", "twisted"}
    offenders = {
        str(path.relative_to(ROOT)): sorted(
            m for m in imports(path) if m.split(".")[0] in DRIVERS and m.split(".")[0] not in allowed
        )
        for path in modules("crawlers")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_metrics_port_has_one_implementation_in_the_application_package() -> None:
    assert "prometheus_client" not in imports(ROOT / "stream" / "metrics.py")
    assert "prometheus_client" in imports(ROOT / "sednaya_monitor" / "prometheus_metrics.py")


@pytest.mark.parametrize("package", ["crawlers", "stream", "indexer"])
def test_lower_rooms_never_import_the_application_package(package: str) -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(m for m in imports(path) if m.split(".")[0] == "sednaya_monitor")
        for path in modules(package)
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_store_side_of_indexer_never_imports_alerting() -> None:
    """``indexer/alerting/`` sits on the store; the store, search and index stage know nothing of it."""
    offenders = {
        str(path.relative_to(ROOT)): sorted(m for m in imports(path) if m.startswith("indexer.alerting"))
        for path in modules("indexer")
        if "alerting" not in path.relative_to(ROOT).parts
    }
    assert {k: v for k, v in offenders.items() if v} == {}


# The application's settings live in the application package; every component of the lower rooms
# receives a config object of its own (a frozen dataclass of the knobs it uses), built from the
# settings by sednaya_monitor.wiring (docs/architecture.md, "Settings and config objects").
SETTINGS_MODULE = "sednaya_monitor/settings.py"


def test_the_settings_and_their_loader_live_in_the_application_package() -> None:
    assert (ROOT / SETTINGS_MODULE).is_file()
    defined = {
        str(path.relative_to(ROOT))
        for package in ("crawlers", "stream", "indexer", "sednaya_monitor")
        for path in modules(package)
        if any(
            isinstance(node, ast.ClassDef | ast.FunctionDef) and node.name in {"Settings", "load_settings"}
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        )
    }
    assert defined == {SETTINGS_MODULE}


@pytest.mark.parametrize("package", ["crawlers", "stream", "indexer"])
def test_lower_rooms_never_read_the_application_settings(package: str) -> None:
    """No module of ``package`` imports a settings module (``sednaya_monitor.settings``, or one left in
    the room) nor names ``Settings`` or ``load_settings`` in an import."""
    offenders: dict[str, list[str]] = {}
    for path in modules(package):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        found = sorted(m for m in imports(path) if m.split(".")[-1] == "settings")
        found += sorted(
            f"{node.module}.{alias.name}"
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom)
            for alias in node.names
            if alias.name in {"Settings", "load_settings"}
        )
        if found:
            offenders[str(path.relative_to(ROOT))] = found
    assert offenders == {}


def test_the_rule_sees_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import kafka\nfrom sednaya_monitor.wiring import make_bus\n", encoding="utf-8")
    assert imports(bad) == {"kafka", "sednaya_monitor.wiring"}
