"""The watchlist repositories, one suite over both: SQLite in the data directory and Elasticsearch
(the noida-db stand-in), picked by ``make_watchlists`` from the settings as in production."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from indexer.alerting.watchlists import (
    SqliteWatchlistRepository,
    Watchlist,
    WatchlistRepository,
    require,
)
from indexer.alerting.watchlists_elastic import ElasticWatchlistRepository
from indexer.errors import WatchlistError
from sednaya_monitor.wiring import make_watchlists
from tests.store_fixtures import NoidaServer, elastic_settings


@pytest.fixture(params=["sqlite", "elastic"])
def repo(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[WatchlistRepository]:
    if request.param == "sqlite":
        from sednaya_monitor.settings import load_settings

        settings = load_settings(environ={}, overrides={"data_dir": tmp_path / "data"})
    else:
        server: NoidaServer = request.getfixturevalue("noida_server")
        settings = elastic_settings(server.url, tmp_path)
    repository = make_watchlists(settings)
    expected = SqliteWatchlistRepository if request.param == "sqlite" else ElasticWatchlistRepository
    assert isinstance(repository, expected)
    yield repository
    for wl in repository.all():
        repository.remove(wl.name)
    repository.close()


@pytest.mark.timeout(120)
def test_repository_contract(repo: WatchlistRepository) -> None:
    first = Watchlist(
        name="sednaya", query="Sednaya OR صيدنايا", webhooks=("http://127.0.0.1:9/h",), secret="s", slack=True
    )
    second = Watchlist(name="arabic", query="صيدنايا", lang="ar", emails=("a@test.example",), mode="digest")
    assert repo.all() == []
    repo.add(first)
    repo.add(second)
    with pytest.raises(WatchlistError, match="watchlist 'sednaya' already exists"):
        repo.add(first)
    assert repo.get("sednaya") == first
    assert repo.get("missing") is None
    assert [w.name for w in repo.all()] == ["arabic", "sednaya"]
    changed = Watchlist(name="sednaya", query="Saydnaya", created_at=first.created_at)
    repo.add(changed, replace=True)
    assert repo.get("sednaya") == changed
    assert repo.remove("sednaya") is True
    assert repo.remove("sednaya") is False
    with pytest.raises(WatchlistError, match="no watchlist named 'sednaya' \\(known: arabic\\)"):
        require(repo, "sednaya")


def test_unreachable_elasticsearch_is_unavailable_naming_the_server(tmp_path: Path) -> None:
    from stream.errors import UnavailableError
    from tests.ports import free_port

    url = f"http://127.0.0.1:{free_port()}"  # nothing listens
    repository = make_watchlists(elastic_settings(url, tmp_path))
    with pytest.raises(UnavailableError, match=f"elasticsearch {url}"):
        repository.all()
    repository.close()
