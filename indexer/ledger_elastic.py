"""The alert ledger's "once per (watchlist, story)" in Elasticsearch: no shared file between alert stages.

With a distributed store (``settings.store`` an Elasticsearch URL) the alert stage keeps its working rows
(pending deliveries, digests, events waiting for their article) in its own SQLite file as before, and the
two facts that must hold across hosts and restarts from an empty data directory live in the store:

* ``<es_prefix>-alert-claims``: one document per alert, ``_id`` derived from (watchlist, story id)
  (:func:`claim_id`), created with ``PUT /<index>/_create/<id>`` (``op_type=create``): the server answers
  409 to every create after the first, so of two alert stages that decide the same pair at once (or one
  that restarted from an empty directory) exactly one gets to deliver. Before creating, the ledger reads
  the claims of the story's whole merge group (``mget``, a real-time read), as the SQLite ledger checks the
  group: a story merged with an alerted one never alerts a second time.
* ``<es_prefix>-alert-merges``: ``absorbed -> survivor`` from ``merged`` story events (``_id`` = absorbed
  story id), written with ``refresh=wait_for`` so the next group look-up (a search by survivor) sees it.

A claim found in the store (made by another process, or by this one before its data directory was lost)
is copied into the local ``alerts`` table without delivery rows, so local look-ups and the Atom feed see
it. The claim is written before the local pending rows: a process killed in between leaves a claim that
no one delivers (at most once, never twice); the window is one local SQLite transaction.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from elasticsearch import ApiError, ConflictError, Elasticsearch, NotFoundError, TransportError

from indexer.alerts import Alert
from indexer.errors import StoreError
from indexer.ledger import AlertLedger, LedgerAlert, _iso
from indexer.store_elastic import es_client_options
from stream.article import now_utc
from stream.errors import UnavailableError
from stream.settings import Settings

logger = logging.getLogger(__name__)

MAX_GROUP = 1000  # stories in one merge group read per search (merges chain a handful, not thousands)
_CLAIM_MAPPINGS: dict[str, Any] = {
    "dynamic": False,
    "properties": {
        "watchlist": {"type": "keyword"},
        "story_id": {"type": "keyword"},
        "article_id": {"type": "keyword"},
        "mode": {"type": "keyword"},
        "created_at": {"type": "date"},
        "payload": {"type": "object", "enabled": False},
    },
}
_MERGE_MAPPINGS: dict[str, Any] = {
    "dynamic": False,
    "properties": {"absorbed": {"type": "keyword"}, "survivor": {"type": "keyword"}, "at": {"type": "date"}},
}


def claim_id(watchlist: str, story_id: str) -> str:
    """The claim document's ``_id``: a hash of the pair (a watchlist name may hold any character)."""
    return hashlib.sha256(f"{watchlist}\n{story_id}".encode()).hexdigest()[:40]


class ElasticAlertLedger(AlertLedger):
    """:class:`AlertLedger` whose alert claims and merges live in Elasticsearch (module docstring).

    Raises ``UnavailableError`` naming the server when it cannot be reached (the stage keeps its batch
    and waits), ``StoreError`` when it refuses a request.
    """

    def __init__(self, path: Path, settings: Settings, *, client: Elasticsearch | None = None) -> None:
        super().__init__(path)
        self.url = settings.store
        self.claims = f"{settings.es_prefix}-alert-claims"
        self.merges = f"{settings.es_prefix}-alert-merges"
        self._own_client = client is None
        self.client = client or Elasticsearch(settings.store, **es_client_options(settings))
        self._ready = False

    @classmethod
    def for_settings(cls, settings: Settings) -> ElasticAlertLedger:
        return cls(Path(settings.data_dir) / "alerts.sqlite3", settings)

    def _call(self, what: str, fn: Any, /, **kwargs: Any) -> Any:
        try:
            return fn(**kwargs)
        except (ConflictError, NotFoundError):
            raise
        except ApiError as exc:
            raise StoreError(f"elasticsearch {self.url}: {what}: {exc}") from exc
        except TransportError as exc:
            raise UnavailableError(f"elasticsearch {self.url}: {what}: {exc}") from exc

    def _ensure(self) -> None:
        if self._ready:
            return
        for index, mappings in ((self.claims, _CLAIM_MAPPINGS), (self.merges, _MERGE_MAPPINGS)):
            try:
                if not self._call(f"index {index!r}", self.client.indices.exists, index=index):
                    self._call(f"create index {index!r}", self.client.indices.create, index=index, mappings=mappings)
            except StoreError as exc:
                if "resource_already_exists" not in str(exc):  # another process created it first
                    raise
        self._ready = True

    # --- merge groups -------------------------------------------------------------------------------

    def record_merge(self, survivor: str, absorbed: Sequence[str]) -> int:
        self._ensure()
        added = super().record_merge(survivor, absorbed)
        now = _iso(now_utc())
        for story_id in absorbed:
            if story_id == survivor:
                continue
            self._call(
                f"record merge {story_id} -> {survivor}",
                self.client.index,
                index=self.merges,
                id=story_id,
                document={"absorbed": story_id, "survivor": survivor, "at": now},
                refresh="wait_for",
            )
        return added

    def _neighbours(self, frontier: Iterable[str]) -> set[str]:
        ids = sorted(set(frontier))
        result = self._call(
            "read merges",
            self.client.search,
            index=self.merges,
            size=MAX_GROUP,
            query={"bool": {"should": [{"terms": {"absorbed": ids}}, {"terms": {"survivor": ids}}]}},
        )
        out: set[str] = set()
        for hit in result["hits"]["hits"]:
            out.add(str(hit["_source"]["absorbed"]))
            out.add(str(hit["_source"]["survivor"]))
        return out

    def story_group(self, story_id: str) -> set[str]:
        """The merge group as the store knows it (every alert stage's merges) plus this ledger's own."""
        self._ensure()
        seen = super().story_group(story_id)
        frontier = set(seen)
        while frontier:
            found = self._neighbours(frontier) - seen
            seen |= found
            frontier = found
        return seen

    def survivor(self, story_id: str) -> str:
        self._ensure()
        current, seen = story_id, {story_id}
        while True:
            try:
                found = self._call(f"read merge of {current}", self.client.get, index=self.merges, id=current)
            except NotFoundError:
                return super().survivor(current) if current == story_id else current
            nxt = str(found["_source"]["survivor"])
            if nxt in seen:
                return current
            current = nxt
            seen.add(current)

    # --- claims -------------------------------------------------------------------------------------

    def _claims_in_group(self, watchlist: str, group: set[str]) -> list[dict[str, Any]]:
        """The stored claims of ``watchlist`` on any story of ``group``, oldest first."""
        ids = [claim_id(watchlist, story_id) for story_id in sorted(group)]
        result = self._call(f"read claims of {watchlist!r}", self.client.mget, index=self.claims, ids=ids)
        found = [doc["_source"] for doc in result["docs"] if doc.get("found")]
        return sorted(found, key=lambda d: (str(d.get("created_at", "")), str(d.get("story_id", ""))))

    def _mirror(self, claim: dict[str, Any]) -> None:
        """Copy a claim made elsewhere into the local table (no delivery rows: it is not ours to send)."""
        with self._tx() as db:
            db.execute(
                "INSERT OR IGNORE INTO alerts(watchlist, story_id, mode, payload, created_at) VALUES (?, ?, ?, ?, ?)",
                (
                    claim["watchlist"],
                    claim["story_id"],
                    claim.get("mode", "instant"),
                    json.dumps(claim["payload"], ensure_ascii=False),
                    claim.get("created_at") or _iso(now_utc()),
                ),
            )

    def alerted_article(self, watchlist: str, story_id: str) -> str | None:
        local = super().alerted_article(watchlist, story_id)
        if local is not None:
            return local
        self._ensure()
        claims = self._claims_in_group(watchlist, self.story_group(story_id))
        if not claims:
            return None
        self._mirror(claims[0])
        return str(claims[0]["article_id"])

    def record_alert(self, alert: Alert, *, mode: str, targets: Sequence[str]) -> int | None:
        """Claim the pair in the store (``op_type=create``), then write the local pending rows.

        Returns None (nothing to deliver) when the watchlist already has a claim on the story's merge
        group, here or in the store, or when another process's create won."""
        self._ensure()
        if super().alerted_article(alert.watchlist, alert.story_id) is not None:
            return None
        with self._lock:  # one decision at a time in this process: read the group's claims, then create
            existing = self._claims_in_group(alert.watchlist, self.story_group(alert.story_id))
            if existing:
                self._mirror(existing[0])
                return None
            claim = {
                "watchlist": alert.watchlist,
                "story_id": alert.story_id,
                "article_id": alert.article_id,
                "mode": mode,
                "created_at": _iso(now_utc()),
                "payload": alert.to_dict(),
            }
            try:  # PUT /<claims>/_create/<id>: 409 when any process created it first
                self._call(
                    f"claim alert {alert.watchlist!r} on story {alert.story_id}",
                    self.client.create,
                    index=self.claims,
                    id=claim_id(alert.watchlist, alert.story_id),
                    document=claim,
                    refresh="wait_for",
                )
            except ConflictError:
                logger.info(
                    "alert already claimed by another process",
                    extra={"watchlist": alert.watchlist, "story_id": alert.story_id},
                )
                won = self._claims_in_group(alert.watchlist, {alert.story_id})
                if won:
                    self._mirror(won[0])
                return None
            return super().record_alert(alert, mode=mode, targets=targets)

    # --- reading (watch list, Atom feeds, the alert pages of any serve replica) ----------------------

    def count_alerts(self, watchlist: str | None = None) -> int:
        """Alerts recorded in the store (every process's), for one watchlist or all."""
        self._ensure()
        query: dict[str, Any] = {"match_all": {}} if watchlist is None else {"term": {"watchlist": watchlist}}
        found = self._call("count claims", self.client.count, index=self.claims, query=query)
        return int(found["count"])

    def recent_alerts(self, watchlist: str, *, limit: int = 50) -> list[LedgerAlert]:
        """The watchlist's newest alerts as the store has them (copied into the local table, where this
        process's delivery statuses are), newest first."""
        self._ensure()
        found = self._call(
            f"read recent claims of {watchlist!r}",
            self.client.search,
            index=self.claims,
            size=limit,
            query={"term": {"watchlist": watchlist}},
            sort=[{"created_at": {"order": "desc"}}],
        )
        for hit in found["hits"]["hits"]:
            self._mirror(hit["_source"])
        mine = super().recent_alerts(watchlist, limit=max(limit, 1) * 4)
        return sorted(mine, key=lambda a: (a.created_at, a.id), reverse=True)[:limit]

    def close(self) -> None:
        super().close()
        if self._own_client:
            self.client.close()
