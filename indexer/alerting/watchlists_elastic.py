"""Watchlists in the distributed search store: one document per watchlist in ``<es_prefix>-watchlists``.

Used when ``settings.store`` is an Elasticsearch URL, so that ``watch add`` on one host and the ``alert``
stage processes on others see the same watchlists. The document ``_id`` is the watchlist name; the
watchlist itself (``Watchlist.to_dict(with_secret=True)``) is kept unindexed under ``body``.
"""

from __future__ import annotations

import logging
from typing import Any

from elasticsearch import ApiError, ConflictError, Elasticsearch, NotFoundError, TransportError

from indexer.alerting.watchlists import Watchlist
from indexer.errors import StoreError, WatchlistError
from indexer.store_elastic import ElasticConfig, es_client_options
from stream.errors import UnavailableError

logger = logging.getLogger(__name__)

MAX_WATCHLISTS = 10_000  # one search page (index.max_result_window); a team keeps tens, not thousands
_MAPPINGS: dict[str, Any] = {
    "dynamic": False,
    "properties": {"name": {"type": "keyword"}, "body": {"type": "object", "enabled": False}},
}


class ElasticWatchlistRepository:
    """``WatchlistRepository`` on Elasticsearch 8. Writes refresh the index, so a listing right after an
    ``add`` shows it. Raises ``UnavailableError`` naming the server when it cannot be reached (the stage
    worker then keeps its batch and waits), ``StoreError`` when it refuses a request."""

    def __init__(self, config: ElasticConfig, *, client: Elasticsearch | None = None) -> None:
        self.url = config.store
        self.index = f"{config.es_prefix}-watchlists"
        self._own_client = client is None
        self.client = client or Elasticsearch(config.store, **es_client_options(config))
        self._ready = False

    def _ensure_index(self) -> None:
        if self._ready:
            return
        try:
            if not self.client.indices.exists(index=self.index):
                self.client.indices.create(index=self.index, mappings=_MAPPINGS)
        except ApiError as exc:
            if "resource_already_exists" not in str(exc):  # another process created it first
                raise StoreError(f"elasticsearch {self.url}: cannot create index {self.index!r}: {exc}") from exc
        except TransportError as exc:
            raise UnavailableError(f"elasticsearch {self.url}: {exc}") from exc
        self._ready = True

    def add(self, watchlist: Watchlist, *, replace: bool = False) -> None:
        self._ensure_index()
        doc = {"name": watchlist.name, "body": watchlist.to_dict(with_secret=True)}
        try:
            if replace:
                self.client.index(index=self.index, id=watchlist.name, document=doc, refresh=True)
            else:  # PUT /<index>/_create/<name>: 409 when the name exists
                self.client.create(index=self.index, id=watchlist.name, document=doc, refresh=True)
        except ConflictError as exc:
            raise WatchlistError(
                f"watchlist {watchlist.name!r} already exists (remove it first, or replace it)"
            ) from exc
        except ApiError as exc:
            raise StoreError(f"elasticsearch {self.url}: cannot save watchlist {watchlist.name!r}: {exc}") from exc
        except TransportError as exc:
            raise UnavailableError(
                f"elasticsearch {self.url}: cannot save watchlist {watchlist.name!r}: {exc}"
            ) from exc

    def get(self, name: str) -> Watchlist | None:
        self._ensure_index()
        try:
            found = self.client.get(index=self.index, id=name)
        except NotFoundError:
            return None
        except ApiError as exc:
            raise StoreError(f"elasticsearch {self.url}: cannot read watchlist {name!r}: {exc}") from exc
        except TransportError as exc:
            raise UnavailableError(f"elasticsearch {self.url}: cannot read watchlist {name!r}: {exc}") from exc
        return Watchlist.from_dict(found["_source"]["body"])

    def all(self) -> list[Watchlist]:
        self._ensure_index()
        try:
            result = self.client.search(index=self.index, size=MAX_WATCHLISTS, query={"match_all": {}})
        except ApiError as exc:
            raise StoreError(f"elasticsearch {self.url}: cannot list watchlists: {exc}") from exc
        except TransportError as exc:
            raise UnavailableError(f"elasticsearch {self.url}: cannot list watchlists: {exc}") from exc
        out: list[Watchlist] = []
        for hit in result["hits"]["hits"]:
            try:
                out.append(Watchlist.from_dict(hit["_source"]["body"]))
            except WatchlistError as exc:  # stored by an older version with other rules: skip, say so
                logger.warning("stored watchlist invalid, skipped", extra={"watchlist": hit["_id"], "error": str(exc)})
        return sorted(out, key=lambda w: w.name)

    def remove(self, name: str) -> bool:
        self._ensure_index()
        try:
            self.client.delete(index=self.index, id=name, refresh=True)
        except NotFoundError:
            return False
        except ApiError as exc:
            raise StoreError(f"elasticsearch {self.url}: cannot remove watchlist {name!r}: {exc}") from exc
        except TransportError as exc:
            raise UnavailableError(f"elasticsearch {self.url}: cannot remove watchlist {name!r}: {exc}") from exc
        return True

    def close(self) -> None:
        if self._own_client:
            self.client.close()
