"""Search-store fixtures: an article factory, the embedded store, and a real Elasticsearch-API server.

- ``make_article(**overrides)``: a valid :class:`Article` (id derived from the url) for any test.
- ``embedded_store``: an :class:`EmbeddedStore` in the test's temporary directory.
- ``noida_server`` (session): ``noida-db start --only elasticsearch`` on a free loopback port,
  ready when ``GET /`` answers, stopped at the end; its log is printed when it fails to start.
- ``elastic_store``: an :class:`ElasticStore` on that server with a fresh index prefix per test,
  its indices, aliases and templates deleted afterwards.
- ``contract_store`` (parametrised ``embedded`` / ``elastic``): the contract suite runs once per adapter.
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from indexer.store import SearchStore
from indexer.store_embedded import EmbeddedStore
from sednaya_monitor.settings import Settings, load_settings
from sednaya_monitor.wiring import elastic_config
from stream.article import Article
from stream.canonical_url import id_for_url
from stream.text import content_hash
from tests.ports import free_port

NOIDA_START_TIMEOUT_S = 30.0  # the binary starts in well under a second; a loaded CI box is slower
_counter = itertools.count(1)


def make_article(**overrides: Any) -> Article:
    """A valid article; any field may be overridden. The id follows ``url`` unless ``id`` is given."""
    n = next(_counter)
    url = overrides.pop("url", f"https://news.example.org/2017/05/article-{n}")
    ident, canonical = id_for_url(url)
    text = overrides.get("text", f"Generated article number {n} about the monitoring of detention reports.")
    fields: dict[str, Any] = {
        "id": ident,
        "url": url,
        "canonical_url": canonical,
        "source": "example-news",
        "channel": "import",
        "backfill": False,
        "lang": "en",
        "title": f"Article {n}",
        "text": text,
        "authors": (),
        "published": datetime(2017, 5, 15, 12, 0, tzinfo=UTC),
        "date_source": "meta",
        "discovered_at": datetime(2017, 5, 16, 8, 0, tzinfo=UTC),
        "fetched_at": datetime(2017, 5, 16, 8, 0, tzinfo=UTC),
        "content_sha256": content_hash(text),
        "relevance": None,
    }
    fields.update(overrides)
    return Article(**fields)



def stop_process_group(proc: subprocess.Popen[bytes], timeout_s: float = 10.0) -> None:
    """SIGTERM the process group of ``proc`` (the console script and the server binary it runs), then
    SIGKILL what is left after ``timeout_s``."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            proc.poll()
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                proc.wait()
                return
            time.sleep(0.05)
    proc.wait()


@dataclass(frozen=True)
class NoidaServer:
    url: str
    data_dir: Path
    log: Path


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/", timeout=2) as response:  # loopback http only
            return bool(response.status == 200)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


@pytest.fixture(scope="session")
def noida_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NoidaServer]:
    """A real Elasticsearch-8-API server (the noida-db stand-in) on a free loopback port."""
    binary = shutil.which("noida-db")
    if binary is None:
        pytest.fail("noida-db is not installed (pip install -e '.[dev]')")
    root = tmp_path_factory.mktemp("noida")
    port = free_port()
    log = root / "noida.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(  # fixed argv, no shell
            [
                binary,
                "start",
                "--only",
                "elasticsearch",
                "--elasticsearch-port",
                str(port),
                "--data-dir",
                str(root / "data"),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # the console script runs the binary as a child: stop the whole group
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + NOIDA_START_TIMEOUT_S
    while not _ready(url):
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_process_group(proc)
            pytest.fail(f"noida-db did not start on {url}:\n{log.read_text(errors='replace')}")
        time.sleep(0.1)
    try:
        yield NoidaServer(url=url, data_dir=root / "data", log=log)
    finally:
        stop_process_group(proc)


@pytest.fixture
def embedded_store(tmp_path: Path) -> Iterator[EmbeddedStore]:
    store = EmbeddedStore(tmp_path / "store.sqlite3")
    store.ensure_ready()
    yield store
    store.close()


_prefixes = itertools.count(1)


def elastic_settings(url: str, tmp_path: Path) -> Settings:
    """Settings pointing at ``url`` with an index prefix no other test uses."""
    return load_settings(
        environ={}, overrides={"data_dir": tmp_path, "store": url, "es_prefix": f"t{next(_prefixes)}-sednaya"}
    )


@pytest.fixture
def elastic_store(noida_server: NoidaServer, tmp_path: Path) -> Iterator[SearchStore]:
    from indexer.store_elastic import ElasticStore

    store = ElasticStore(elastic_config(elastic_settings(noida_server.url, tmp_path)), refresh=True)
    store.ensure_ready()
    yield store
    store.wipe()
    store.close()


@pytest.fixture(params=["embedded", "elastic"])
def contract_store(request: pytest.FixtureRequest) -> SearchStore:
    """Each contract test runs on both adapters."""
    name = "embedded_store" if request.param == "embedded" else "elastic_store"
    result: SearchStore = request.getfixturevalue(name)
    return result
