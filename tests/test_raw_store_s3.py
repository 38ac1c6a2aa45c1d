"""Raw copies in S3-compatible storage (moto in server mode on loopback): kept by one process, served by
a ``serve`` whose data directory is empty."""

from __future__ import annotations

import gzip
import hashlib
import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from crawlers.errors import RawStoreError
from crawlers.raw_store import RawStore
from crawlers.raw_store_s3 import S3RawStore, parse_raw_url
from indexer.store_embedded import EmbeddedStore
from sednaya_monitor.prometheus_metrics import PrometheusMetrics
from sednaya_monitor.settings import Settings, load_settings
from sednaya_monitor.web import serve_in_thread
from sednaya_monitor.wiring import make_raw_store
from stream.errors import SettingsError, UnavailableError
from tests.s3_fixtures import (
    S3Server,
    s3_server,  # noqa: F401  # the fixture, for this module only (see conftest)
)
from tests.store_fixtures import make_article

PAGE = "<html><head><meta charset=utf-8><title>صيدنايا</title></head><body><p>Sednaya report</p></body></html>".encode()
_buckets = itertools.count(1)


def _sha(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


@pytest.fixture
def s3_settings(s3_server: S3Server, tmp_path: Path) -> Settings:  # noqa: F811  # the imported fixture
    overrides = {"data_dir": tmp_path / "crawl", **s3_server.settings_overrides(f"raw-{next(_buckets)}")}
    return load_settings(environ={}, overrides=overrides)


def test_round_trip_in_the_bucket_and_nothing_on_disk(s3_settings: Settings) -> None:
    raw = make_raw_store(s3_settings)
    assert isinstance(raw, S3RawStore)
    sha = _sha(PAGE)
    assert raw.get(sha) is None and not raw.has(sha)
    key = raw.put(sha, PAGE)
    assert key == f"raw/{sha[:2]}/{sha}.html.gz"
    assert raw.get(sha) == PAGE and raw.has(sha)
    stored = raw.client.get_object(Bucket=raw.bucket, Key=key)["Body"].read()
    assert gzip.decompress(stored) == PAGE  # gzip at rest, as on disk
    raw.put(sha, b"<html>a later copy with the same text</html>")
    assert raw.get(sha) == PAGE  # the first copy is kept, as on disk
    assert not (s3_settings.data_dir / "raw").exists()


def test_the_embedded_default_keeps_the_data_directory(tmp_path: Path) -> None:
    raw = make_raw_store(load_settings(environ={}, overrides={"data_dir": tmp_path}))
    assert isinstance(raw, RawStore)
    sha = _sha(PAGE)
    raw.put(sha, PAGE)
    assert raw.has(sha) and (tmp_path / "raw" / sha[:2] / f"{sha}.html.gz").is_file()


def test_bad_settings_and_unreachable_storage_name_the_input(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="raw_store"):
        load_settings(environ={}, overrides={"raw_store": "file:///tmp/raw"})
    with pytest.raises(RawStoreError, match="s3://bucket"):
        parse_raw_url("s3:///no-bucket")
    assert parse_raw_url("s3://b/some/prefix/") == ("b", "some/prefix/")
    from tests.ports import free_port

    dead = f"http://127.0.0.1:{free_port()}"
    settings = load_settings(
        environ={},
        overrides={"data_dir": tmp_path, "raw_store": "s3://b", "s3_endpoint_url": dead, "s3_access_key_id": "k",
                   "s3_secret_access_key": "s"},
    )
    with pytest.raises(UnavailableError, match=dead.replace(".", r"\.")):
        make_raw_store(settings).put(_sha(PAGE), PAGE)


@pytest.fixture
def empty_serve(s3_settings: Settings, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A crawl process (one data dir) keeps the page; ``serve`` runs on another, empty, data dir."""
    crawl_raw = make_raw_store(s3_settings)
    article = make_article(url="https://wire.example/raw", title="Sednaya report", text="Sednaya report text.")
    crawl_raw.put(article.content_sha256, PAGE)
    serve_settings = s3_settings.replace(data_dir=tmp_path / "serve")
    store = EmbeddedStore(tmp_path / "serve-store" / "store.sqlite3")  # the shared search store
    store.ensure_ready()
    assert store.write_articles([article]) == []
    with serve_in_thread(serve_settings, store, PrometheusMetrics(), port=0) as running:
        yield running.url, article.content_sha256
    store.close()
    assert not (serve_settings.data_dir / "raw").exists()


def test_serve_with_an_empty_data_directory_shows_the_raw_copy(empty_serve: tuple[str, str]) -> None:
    url, sha = empty_serve
    response = requests.get(f"{url}/raw/{sha}", timeout=10)
    assert response.status_code == 200
    assert response.content == PAGE
    assert response.headers["Content-Security-Policy"].startswith("sandbox")
    assert requests.get(f"{url}/raw/{'0' * 64}", timeout=10).status_code == 404
