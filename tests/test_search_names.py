"""Name variants and word forms through the product's wiring: the CLI ``search``, ``watch test`` and the
JSON API / search page, with the stores ``wiring.make_store`` builds from the topic file in the repository
(``stream/topics/sednaya.toml``)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner, Result

from sednaya_monitor import wiring
from sednaya_monitor.cli import _register, cli
from sednaya_monitor.prometheus_metrics import PrometheusMetrics
from sednaya_monitor.settings import load_settings
from sednaya_monitor.web import RunningServer, serve_in_thread
from tests.store_fixtures import make_article

# Written for these tests: the prison under three spellings, the town's monastery, and another subject.
ARTICLES = [
    make_article(
        url="https://a.example/1",
        story_id="s1",
        lang="en",
        title="Sednaya survivors testify",
        text="They spoke in court.",
    ),
    make_article(
        url="https://a.example/2",
        story_id="s2",
        lang="en",
        title="Inside Saydnaya",
        text="Detainees describe the cells.",
    ),
    make_article(
        url="https://a.example/3", story_id="s3", lang="ar", title="ناجون من صيدنايا", text="شهادات جديدة عن السجن."
    ),
    make_article(
        url="https://a.example/4",
        story_id="s4",
        lang="en",
        title="Saidnaya monastery",
        text="Pilgrims visit the monastery.",
    ),
    make_article(
        url="https://a.example/5", story_id="s5", lang="en", title="Harbour regatta", text="Results of the race."
    ),
]


@pytest.fixture
def loaded_dir(data_dir: Path) -> Path:
    store = wiring.make_store(load_settings(environ={}, overrides={"data_dir": data_dir}))
    store.ensure_ready()
    assert store.write_articles(ARTICLES) == []
    store.close()
    return data_dir


def _run(data_dir: Path, *args: str) -> Result:
    _register()
    return CliRunner().invoke(cli, ["--data-dir", str(data_dir), *args], catch_exceptions=False)


def test_cli_search_says_what_else_it_searched(loaded_dir: Path) -> None:
    found = json.loads(_run(loaded_dir, "search", "Sednaya", "--json").output)
    assert {h["url"] for h in found["hits"]} == {f"https://a.example/{i}" for i in (1, 2, 3, 4)}
    added = found["expanded"]["Sednaya"]
    assert {"Saydnaya", "Saidnaya", "صيدنايا", "Седная"} <= set(added)
    text = _run(loaded_dir, "search", "Sednaya -monastery").output
    assert text.startswith("3 matching articles\nalso searched: Saydnaya, ")
    assert "(variants of 'Sednaya')" in text
    exact = _run(loaded_dir, "search", '"Sednaya"').output
    assert exact.startswith("1 matching articles\n") and "also searched" not in exact
    forms = json.loads(_run(loaded_dir, "search", "detainee", "--lang", "en", "--json").output)
    assert [h["url"] for h in forms["hits"]] == ["https://a.example/2"] and forms["expanded"] == {}


def test_a_watchlist_query_expands_the_same_way(loaded_dir: Path) -> None:
    assert _run(loaded_dir, "watch", "add", "w", "صيدنايا -monastery").exit_code == 0
    out = json.loads(_run(loaded_dir, "watch", "test", "w", "--json").output)
    assert out["total_articles"] == 3
    by_title = {s["best"]["title"]: s["matched_terms"] for s in out["stories"]}
    assert set(by_title) == {"Sednaya survivors testify", "Inside Saydnaya", "ناجون من صيدنايا"}
    assert by_title["Inside Saydnaya"] == ["Saydnaya"]  # why it matched: the spelling found


@pytest.fixture
def named_server(loaded_dir: Path) -> Iterator[RunningServer]:
    settings = load_settings(environ={}, overrides={"data_dir": loaded_dir})
    store = wiring.make_store(settings)
    with serve_in_thread(settings, store, PrometheusMetrics(), port=0) as running:
        yield running
    store.close()


def test_api_and_page_report_the_expansion(named_server: RunningServer) -> None:
    body = requests.get(f"{named_server.url}/api/search", params={"q": "Saydnaya", "view": "flat"}, timeout=30).json()
    assert body["total"] == 4
    assert body["expanded"]["Saydnaya"][0] == "Sednaya"
    assert "صيدنايا" in body["expanded"]["Saydnaya"]
    none = requests.get(f"{named_server.url}/api/search", params={"q": "exact:Saydnaya"}, timeout=30).json()
    assert none["expanded"] == {} and none["total"] == 1
    page = requests.get(f"{named_server.url}/", params={"q": "Saydnaya"}, timeout=30).text
    assert "also searched: <span" in page and "Sednaya, " in page and "(variants of Saydnaya)" in page
