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
* ``<es_prefix>-alert-merges``: ``absorbed -> survivor`` links (``merged`` story events, and a new story's
  ``related_story``: field ``kind``), one document per pair (``_id`` = ``<absorbed>><survivor>``; before
  round 2, session 15 the absorbed story id alone, so a later link replaced an earlier one: such documents
  are still read, as merges), written with ``refresh=wait_for`` so the next group look-up (a search by
  either story) sees it.

A claim found in the store (made by another process, or by this one before its data directory was lost)
is copied into the local ``alerts`` table without delivery rows, so local look-ups and the Atom feed see
it.

**Hand-over of a claim whose process died.** A claim is created ``claimed`` with the creating ledger's
``holder`` id (kept in its SQLite file) and the targets; once the local ``pending`` rows are written the
holder turns it ``queued`` with a conditional write (``if_seq_no``/``if_primary_term``). A process killed
between the two leaves its story event uncommitted, so the event comes again, to whichever process owns
the partition then: finding a ``claimed`` claim of another holder, it takes it over with the same kind of
conditional write (``queued``, itself as holder) and delivers. Of the two conditional writes exactly one
succeeds, so a holder that was only slow (not dead) loses and delivers nothing: still once. A process
restarted on its own directory checks its ``pending`` alert rows against the claims before resuming
them (``pending``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from elasticsearch import ApiError, ConflictError, Elasticsearch, NotFoundError, TransportError

from indexer.alerting.alerts import Alert
from indexer.alerting.ledger import AlertLedger, LedgerAlert, LinkKind, PendingDelivery, follow_links, merge_links
from indexer.errors import StoreError
from indexer.store_elastic import ElasticConfig, es_client_options
from stream.article import iso_utc, now_utc
from stream.errors import UnavailableError

logger = logging.getLogger(__name__)

MAX_GROUP = 1000  # stories in one merge group read per search (merges chain a handful, not thousands)
_CLAIM_MAPPINGS: dict[str, Any] = {
    "dynamic": False,
    "properties": {
        "watchlist": {"type": "keyword"},
        "story_id": {"type": "keyword"},
        "article_id": {"type": "keyword"},
        "mode": {"type": "keyword"},
        "state": {"type": "keyword"},  # claimed | queued
        "holder": {"type": "keyword"},
        "created_at": {"type": "date"},
        "payload": {"type": "object", "enabled": False},
        "targets": {"type": "object", "enabled": False},
    },
}
_MERGE_MAPPINGS: dict[str, Any] = {
    "dynamic": False,
    "properties": {
        "absorbed": {"type": "keyword"},
        "survivor": {"type": "keyword"},
        "kind": {"type": "keyword"},  # merged | related (absent in documents of older versions: merged)
        "at": {"type": "date"},
    },
}


def claim_id(watchlist: str, story_id: str) -> str:
    """The claim document's ``_id``: a hash of the pair (a watchlist name may hold any character)."""
    return hashlib.sha256(f"{watchlist}\n{story_id}".encode()).hexdigest()[:40]


class ElasticAlertLedger(AlertLedger):
    """:class:`AlertLedger` whose alert claims and merges live in Elasticsearch (module docstring).

    Raises ``UnavailableError`` naming the server when it cannot be reached (the stage keeps its batch
    and waits), ``StoreError`` when it refuses a request.
    """

    def __init__(self, path: Path, config: ElasticConfig, *, client: Elasticsearch | None = None) -> None:
        super().__init__(path)
        self.url = config.store
        self.claims = f"{config.es_prefix}-alert-claims"
        self.merges = f"{config.es_prefix}-alert-merges"
        self._own_client = client is None
        self.client = client or Elasticsearch(config.store, **es_client_options(config))
        self._ready = False
        with self._tx() as db:  # this ledger's holder id: survives restarts on the same data directory
            db.execute("CREATE TABLE IF NOT EXISTS claim_holder (id TEXT NOT NULL)")
            row = db.execute("SELECT id FROM claim_holder").fetchone()
            if row is None:
                row = (uuid.uuid4().hex,)
                db.execute("INSERT INTO claim_holder (id) VALUES (?)", row)
        self.holder = str(row[0])

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

    def record_merge(self, survivor: str, absorbed: Sequence[str], *, kind: LinkKind = "merged") -> int:
        self._ensure()
        added = super().record_merge(survivor, absorbed, kind=kind)
        now = iso_utc(now_utc())
        for story_id in absorbed:
            if story_id == survivor:
                continue
            if kind == "related" and any(to == survivor for to, _ in self._store_links(story_id)):
                continue  # known (a merge of the pair stays a merge)
            self._call(
                f"record {kind} link {story_id} -> {survivor}",
                self.client.index,
                index=self.merges,
                id=f"{story_id}>{survivor}",
                document={"absorbed": story_id, "survivor": survivor, "kind": kind, "at": now},
                refresh="wait_for",
            )
        return added

    def _store_links(self, story_id: str) -> list[tuple[str, str]]:
        """``(survivor, kind)`` of the links out of ``story_id`` in the store, merges first, oldest first."""
        result = self._call(
            f"read links of {story_id}",
            self.client.search,
            index=self.merges,
            size=MAX_GROUP,
            query={"term": {"absorbed": story_id}},
        )
        found = [
            (str(src.get("kind") or "merged"), str(src.get("at") or ""), str(src["survivor"]))
            for src in (hit["_source"] for hit in result["hits"]["hits"])
        ]
        return [(to, kind) for kind, _, to in sorted(found, key=lambda f: (f[0] == "related", f[1], f[2]))]

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
        """:meth:`AlertLedger.survivor` over the links every alert stage wrote to the store and this
        ledger's own."""
        self._ensure()

        def links(current: str) -> list[tuple[str, str]]:
            with self._lock:
                local = merge_links(self._db, current)
            merged = dict.fromkeys(self._store_links(current) + local)
            return sorted(merged, key=lambda link: link[1] == "related")  # stable: merges first

        return follow_links(links, story_id)

    # --- claims -------------------------------------------------------------------------------------

    def _claims_in_group(self, watchlist: str, group: set[str]) -> list[dict[str, Any]]:
        """The stored claims of ``watchlist`` on any story of ``group``, oldest first (each with its
        ``_seq_no`` and ``_primary_term``, for a conditional write)."""
        ids = [claim_id(watchlist, story_id) for story_id in sorted(group)]
        result = self._call(f"read claims of {watchlist!r}", self.client.mget, index=self.claims, ids=ids)
        found = [
            {**doc["_source"], "_seq_no": doc.get("_seq_no"), "_primary_term": doc.get("_primary_term")}
            for doc in result["docs"]
            if doc.get("found")
        ]
        return sorted(found, key=lambda d: (str(d.get("created_at", "")), str(d.get("story_id", ""))))

    def _queue(self, claim: dict[str, Any]) -> bool:
        """Turn ``claim`` ``queued`` with this ledger as holder, if no one wrote it since it was read."""
        doc = {k: v for k, v in claim.items() if not k.startswith("_")}
        doc.update(state="queued", holder=self.holder)
        try:
            self._call(
                f"queue alert {doc['watchlist']!r} on story {doc['story_id']}",
                self.client.index,
                index=self.claims,
                id=claim_id(doc["watchlist"], doc["story_id"]),
                document=doc,
                if_seq_no=claim["_seq_no"],
                if_primary_term=claim["_primary_term"],
                refresh="wait_for",
            )
        except ConflictError:
            return False
        return True

    def _has_local(self, watchlist: str, story_id: str) -> bool:
        with self._lock:
            row = self._db.execute(
                "SELECT 1 FROM alerts WHERE watchlist = ? AND story_id = ?", (watchlist, story_id)
            ).fetchone()
        return row is not None

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
                    claim.get("created_at") or iso_utc(now_utc()),
                ),
            )

    def alerted_article(self, watchlist: str, story_id: str) -> str | None:
        """The article of the watchlist's alert on the story's merge group, or None. None also for a claim
        in the store that is not settled: this ledger's own without its local rows (its process died
        between the claim and the rows, and restarted on its directory), or another holder's left
        ``claimed`` (its process may have died before queueing it). The caller then decides again, and
        :meth:`record_alert`, asked only when the decision delivers, writes the rows or takes the claim
        over; a decision that delivers nothing leaves the claim as it is, for the next event of the group.
        (Taking a claim over here, before the decision, lost the alert when the event in hand did not
        deliver: the claim was queued by a process with nothing to send, and every other process skipped.)"""
        local = super().alerted_article(watchlist, story_id)
        if local is not None:
            return local
        self._ensure()
        claims = self._claims_in_group(watchlist, self.story_group(story_id))
        if not claims:
            return None
        claim = claims[0]
        if claim.get("holder") == self.holder or claim.get("state") == "claimed":
            return None
        self._mirror(claim)
        return str(claim["article_id"])

    def record_alert(self, alert: Alert, *, mode: str, targets: Sequence[str]) -> int | None:
        """Claim the pair in the store (``op_type=create``), then write the local pending rows.

        When the story's merge group already has a claim: this ledger's own without local rows gets them
        (and is queued, if it was left ``claimed``); another holder's left ``claimed`` is taken over with a
        conditional write and its alert delivered from here; any other is copied locally and None returned
        (nothing to deliver). None also when another process's create won."""
        self._ensure()
        if super().alerted_article(alert.watchlist, alert.story_id) is not None:
            return None
        with self._lock:  # one decision at a time in this process: read the group's claims, then create
            existing = self._claims_in_group(alert.watchlist, self.story_group(alert.story_id))
            if existing:
                claim = existing[0]
                if claim.get("holder") == self.holder and not self._has_local(claim["watchlist"], claim["story_id"]):
                    return self._deliver_claim(claim, mode=mode, targets=targets)
                if claim.get("holder") != self.holder and claim.get("state") == "claimed" and self._queue(claim):
                    logger.warning(
                        "alert claim of a process that died before queueing it taken over",
                        extra={
                            "watchlist": alert.watchlist,
                            "story_id": claim["story_id"],
                            "previous_holder": claim.get("holder"),
                        },
                    )
                    return self._deliver_claim({**claim, "state": "queued"}, mode=mode, targets=targets)
                self._mirror(claim)
                return None
            created = self.claim(alert, mode=mode, targets=targets)
            if created is None:
                return None
            row = super().record_alert(alert, mode=mode, targets=targets)
            if row is not None and not self._queue(created):
                self._given_up(row, "taken over by another alert process before it was queued")
                return None
            return row

    def _deliver_claim(self, claim: dict[str, Any], *, mode: str, targets: Sequence[str]) -> int | None:
        """Write the local rows of ``claim`` (this ledger holds it: its own, or taken over): the alert it
        claimed, to the targets it names; queue it first if it is still ``claimed``."""
        if claim.get("state") == "claimed" and not self._queue(claim):
            return None  # another process took it over meanwhile: it delivers
        claimed, kind = Alert.from_dict(claim["payload"]), str(claim.get("mode") or mode)
        return super().record_alert(claimed, mode=kind, targets=claim.get("targets") or targets)

    def claim(self, alert: Alert, *, mode: str, targets: Sequence[str]) -> dict[str, Any] | None:
        """Create the ``claimed`` claim of ``alert`` (``PUT _create``); None when any process created it
        first. Returns the claim with its ``_seq_no``/``_primary_term``."""
        claim = {
            "watchlist": alert.watchlist,
            "story_id": alert.story_id,
            "article_id": alert.article_id,
            "mode": mode,
            "state": "claimed",
            "holder": self.holder,
            "created_at": iso_utc(now_utc()),
            "payload": alert.to_dict(),
            "targets": list(targets),
        }
        try:  # PUT /<claims>/_create/<id>: 409 when any process created it first
            made = self._call(
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
        return {**claim, "_seq_no": made["_seq_no"], "_primary_term": made["_primary_term"]}

    def _given_up(self, row: int, reason: str) -> None:
        with self._lock:
            targets = [
                str(r[0])
                for r in self._db.execute(
                    "SELECT target FROM deliveries WHERE kind = 'alert' AND ref_id = ? AND status = 'pending'", (row,)
                ).fetchall()
            ]
        for target in targets:
            self.mark("alert", row, target, "failed", attempts=0, error=reason)

    def pending(self) -> list[PendingDelivery]:
        """The pending deliveries to resume, each alert's checked against its claim first: queued by this
        ledger (or queued now, when it was left ``claimed``) goes on; held by another process (it took
        the claim over) is marked failed and left out."""
        out: list[PendingDelivery] = []
        checked: dict[int, bool] = {}
        for item in super().pending():
            if item.kind == "alert" and item.ref_id not in checked:
                checked[item.ref_id] = self._still_ours(item.ref_id)
            if item.kind != "alert" or checked[item.ref_id]:
                out.append(item)
        return out

    def _still_ours(self, row: int) -> bool:
        found = self.get_alert(row)
        if found is None:
            return False
        self._ensure()
        claims = self._claims_in_group(found.alert.watchlist, {found.alert.story_id})
        claim = claims[0] if claims else None
        ours = claim is not None and claim.get("holder") == self.holder
        if ours and claim is not None and (claim.get("state") == "queued" or self._queue(claim)):
            return True
        self._given_up(row, "delivered by another alert process")
        return False

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
