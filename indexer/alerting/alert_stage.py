"""The alert stage: story events -> watchlist matches -> ledger -> delivery (group ``"alert"``).

For each record of the story-events topic (a :class:`~stream.story.StoryEvent`):

1. ``merged`` events are recorded in the ledger (``absorbed -> survivor``): from then on the merge
   group counts as one story for "has this watchlist alerted on it?". Backfill events stop here.
2. The event's article (the story's first article for ``created``, the joining article for
   ``updated``) is read from the store. **Not indexed yet** (the index stage lags or restarts): the
   event is parked in the ledger's ``waiting`` table and the record committed; a thread of the stage
   looks again with backoff (``WAIT_FIRST_S`` doubling to ``WAIT_MAX_S``, at once when another event
   went through), processes it when the article is there, in per-story order (later events of a story
   wait behind an earlier one). Meanwhile ``sednaya_alert_events_waiting`` counts them and the health
   (``attach_health``) is red, naming the oldest. Nothing is dead-lettered for lag: only an event that
   waited ``AlertConfig.alert_wait_max_s`` (default 7 days) is, and ``dlq replay`` puts it back to wait again.
3. For every watchlist, its query runs through the **same search translation as everything else**,
   restricted to that article: ``store.search(SearchRequest(query=wl.query, ids=(article_id,),
   lang=wl.lang, source=wl.source))`` (no percolator, so it works on both stores), and
   ``indexer.alerting.alerts.decide`` says instant / digest / skip: a watchlist fires once per story (merge
   group), on the first fresh matching article; see ``indexer.alerting.alerts``.
4. Instant alerts are written to the ledger with one ``pending`` delivery per target **before**
   anything is sent; digest entries are queued. Deliveries run on a small thread pool, off the
   pipeline's thread: a slow or failing target delays nothing else. Each outcome is marked in the ledger
   and counted: ``sednaya_alerts_total{channel=webhook|email|atom, result=matched|sent|failed|retried}``
   and ``sednaya_alert_latency_seconds{channel}`` (from the article's entry on the bus to delivery).

On construction the stage resumes deliveries left ``pending`` by a previous process (and the waiting
events). Digests are sent by :meth:`AlertStage.send_digests`: a daemon thread of the stage calls it
every ``DIGEST_CHECK_S`` (the digest entries live in this process's ledger, so the process that queues
them sends them), and ``sednaya-monitor watch digest`` does it by hand or from cron in the embedded mode.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from datetime import datetime

from indexer.alerting.alerts import (
    Alert,
    build_alert,
    decide,
    group_digest,
    is_fresh,
    matched_terms,
    query_article_id,
    related_story_of,
    screen,
    story_link,
)
from indexer.alerting.delivery import Deliverer, DeliveryConfig, target_channel
from indexer.alerting.ledger import AlertLedger, DeliveryKind, PendingDelivery, Waiting
from indexer.alerting.watchlists import EVERY_SECONDS, Watchlist, WatchlistRepository
from indexer.errors import ArticleNotIndexedError, DeliveryError, QuerySyntaxError
from indexer.store import SearchRequest, SearchStore
from stream.article import now_utc, utc
from stream.bus import Bus, Record
from stream.counted_records import CountedRecords
from stream.errors import ContractError
from stream.metrics import Metrics
from stream.story import StoryEvent

logger = logging.getLogger(__name__)

STAGE = "alert"
DELIVERY_WORKERS = 8  # concurrent deliveries: a few hung targets (attempts x timeout each) leave room for others
WAIT_FIRST_S = 0.2  # first look again for a waiting event's article (the index stage is usually just behind)
WAIT_MAX_S = 10.0  # longest pause between two look-ups of one waiting event (an index stage down for hours)
WAIT_TICK_S = 0.1  # how often the waiting thread checks for due look-ups
DIGEST_CHECK_S = 60.0  # how often the stage looks for due digests (hourly is the finest period)
CLOSE_TIMEOUT_S = 60.0  # close() waits this long for deliveries in flight (the rest resume on next start)

HealthCallback = Callable[[bool, str], None]  # (green, reason): stream.worker's health callback


@dataclass(frozen=True, kw_only=True, slots=True)
class AlertConfig:
    """The alert stage's knobs (the settings of the same names, documented beside their defaults in
    ``Settings``) and its deliveries'."""

    public_url: str  # base of the story links in alerts
    alert_max_age_s: float  # older articles never fire instant alerts (they go to the digest)
    alert_wait_max_s: float  # how long an event waits for its article to be indexed before the DLQ
    delivery: DeliveryConfig


class AlertStage:
    """``stream.worker.Handler`` of the alert stage. See the module docstring.

    Args:
        config: ``public_url`` (links), ``alert_max_age_s``, ``alert_wait_max_s``, delivery config.
        store: the search store the index stage writes to (articles and queries).
        metrics: counts alerts, latency and waiting events.
        repository, ledger: the watchlists and the alert ledger (built by ``sednaya_monitor.wiring``:
            SQLite in the data directory, or on the Elasticsearch store); closed with the stage when
            ``owns_stores``.
        deliverer: by default a ``Deliverer(config.delivery)`` whose retries the stage counts.
        bus: where an event that waited ``alert_wait_max_s`` for its article is dead-lettered; None =
            it keeps waiting.
        digest_interval_s: period of the digest thread; None = no thread (``send_digests`` by hand).
        wait_interval_s: period of the waiting thread; None = no thread (``retry_waiting`` by hand).
    """

    name = STAGE

    def __init__(
        self,
        config: AlertConfig,
        store: SearchStore,
        metrics: Metrics,
        *,
        repository: WatchlistRepository,
        ledger: AlertLedger,
        owns_stores: bool = False,
        deliverer: Deliverer | None = None,
        bus: Bus | None = None,
        digest_interval_s: float | None = DIGEST_CHECK_S,
        wait_interval_s: float | None = WAIT_TICK_S,
    ) -> None:
        self.config = config
        self.store = store
        self.metrics = metrics
        self.bus = bus
        self._owns_stores = owns_stores
        self.repository = repository
        self.ledger = ledger
        self.deliverer = deliverer if deliverer is not None else Deliverer(config.delivery, on_retry=self._count_retry)
        self._executor = ThreadPoolExecutor(max_workers=DELIVERY_WORKERS, thread_name_prefix="alert-delivery")
        self._futures: set[Future[None]] = set()
        self._futures_lock = threading.Lock()
        self._process_lock = threading.RLock()  # the pipeline thread and the waiting thread decide in turn
        self._on_health: HealthCallback | None = None
        self._health_reason: str | None = None  # last reported ("" = green)
        self._wake = threading.Event()
        self._counted = CountedRecords()
        self._closed = False
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.resume()
        self._report_waiting()
        if digest_interval_s is not None:
            self._start(self._digest_loop, digest_interval_s, "alert-digests")
        if wait_interval_s is not None:
            self._start(self._wait_loop, wait_interval_s, "alert-waiting")

    def _start(self, loop: Callable[[float], None], interval_s: float, name: str) -> None:
        thread = threading.Thread(target=loop, args=(interval_s,), name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def attach_health(self, callback: HealthCallback) -> None:
        """Report the waiting events on ``callback`` (red naming the oldest while any wait, else green)."""
        self._on_health = callback
        self._health_reason = None
        self._report_waiting()

    # --- Handler ----------------------------------------------------------------------------------

    def handle(self, records: Sequence[Record]) -> list[BaseException | None]:
        watchlists = self.repository.all()  # per batch: new watchlists apply without a restart
        out: list[BaseException | None] = []
        for record in records:
            try:
                event = StoryEvent.from_bytes(record.value)
            except ContractError as exc:
                out.append(exc)
                continue
            try:
                with self._process_lock:
                    if event.kind != "merged" and self.ledger.is_waiting(event.story.id):
                        self._record_link(event)  # the group is whole while the event waits
                        status = self._park(record, event, query_article_id(event), behind=True)
                    else:
                        try:
                            status = self.process(event, watchlists)
                        except ArticleNotIndexedError:
                            status = self._park(record, event, query_article_id(event), behind=False)
            except Exception as exc:  # noqa: BLE001  # one outcome per record: the worker retries/dead-letters it
                logger.warning(
                    "story event failed",
                    extra={"stage": STAGE, "story_id": event.story.id, "error": f"{type(exc).__name__}: {exc}"},
                )
                out.append(exc)
                continue
            counted = self._counted.first_time(record)  # not again when the batch is redone (store down)
            if counted:
                self.metrics.alert_events.labels(kind=event.kind).inc()  # taken (decided or parked), once
            if status != "waiting":
                if event.kind != "merged" and counted:  # one article per created/updated event; a merge is none
                    self.metrics.articles.labels(stage=STAGE, status=status).inc()
                self._wake.set()  # the index stage moved: waiting events may be ready too
            out.append(None)
        self._report_waiting()
        return out

    def process(self, event: StoryEvent, watchlists: Sequence[Watchlist] | None = None) -> str:
        """Decide and record ``event`` for every watchlist, then start its deliveries.

        Returns the stage status of the event: ``merged`` (merge recorded: no article, counted only in
        ``sednaya_alert_story_events_total``), or the status of its article in ``sednaya_articles_total``:
        ``skipped`` (backfill), ``alerted`` (at least one instant alert), ``queued`` (only digest
        entries) or ``no_match``.

        Raises:
            ArticleNotIndexedError: the event's article is not in the store (yet).
        """
        if event.kind == "merged":
            added = self.ledger.record_merge(event.story.id, event.merged_ids)
            logger.info(
                "stories merged",
                extra={"stage": STAGE, "story_id": event.story.id, "merged": list(event.merged_ids), "new": added},
            )
            return "merged"
        self._record_link(event)  # before anything else: a backfill, no watchlist yet, an article not indexed yet
        if watchlists is None:
            watchlists = self.repository.all()
        if screen(event) is not None:
            return "skipped"
        if not watchlists:
            return "no_match"
        article_id = query_article_id(event)
        article = self.store.get_article(article_id)
        if article is None:
            raise ArticleNotIndexedError(
                f"story {event.story.id} ({event.kind}): article {article_id} is not in the store"
            )
        fresh = is_fresh(article, event.story, now=now_utc(), max_age_s=self.config.alert_max_age_s)
        status = "no_match"
        for wl in watchlists:
            alerted = self.ledger.alerted_article(wl.name, event.story.id)
            if alerted == article.id:
                continue  # a redelivery of the event that fired: once
            terms: tuple[str, ...] = ()
            try:
                matched, terms = self._match(wl, article_id)
            except QuerySyntaxError as exc:
                logger.warning(
                    "watchlist query invalid", extra={"stage": STAGE, "watchlist": wl.name, "error": str(exc)}
                )
                continue
            verdict = decide(event, wl, matched=matched, already_alerted=alerted is not None, fresh=fresh)
            if verdict.action == "skip":
                continue
            alert = build_alert(
                event, wl, article, matched_terms=terms, public_url=self.config.public_url, role=verdict.role
            )
            if verdict.action == "instant":
                row = self.ledger.record_alert(alert, mode="instant", targets=wl.targets)
                if row is None:
                    continue
                status = "alerted"
                self._count_matched(wl)
                logger.info(
                    "alert",
                    extra={
                        "stage": STAGE,
                        "watchlist": wl.name,
                        "story_id": event.story.id,
                        "url": article.url,
                        "lang": article.lang,
                        "source": article.source,
                    },
                )
                for target in wl.targets:
                    self._submit(
                        PendingDelivery(kind="alert", ref_id=row, target=target, watchlist=wl.name, attempts=0)
                    )
                continue
            if verdict.role == "new" and self.ledger.record_alert(alert, mode="digest", targets=()) is not None:
                self._count_matched(wl)
            self.ledger.add_digest_item(alert)
            if status == "no_match":
                status = "queued"
        return status

    def _match(self, wl: Watchlist, article_id: str) -> tuple[bool, tuple[str, ...]]:
        result = self.store.search(
            SearchRequest(query=wl.query, ids=(article_id,), lang=wl.lang, source=wl.source, size=1, highlight=True)
        )
        if not result.hits:
            return False, ()
        hit = result.hits[0]
        return True, matched_terms(hit.matched_terms, hit.highlights, wl.query)

    def _count_matched(self, wl: Watchlist) -> None:
        self.metrics.alerts.labels(channel="atom", result="matched").inc()
        for target in wl.targets:
            self.metrics.alerts.labels(channel=target_channel(target), result="matched").inc()

    def _count_retry(self, channel: str, attempt: int, error: DeliveryError) -> None:
        self.metrics.alerts.labels(channel=channel, result="retried").inc()

    # --- events waiting for their article ----------------------------------------------------------

    def _record_link(self, event: StoryEvent) -> None:
        """A new story the clustering stage found probably about an older one (``related_story``) joins the
        older story's merge group: one story for alerting. Recorded whatever else becomes of the event (a
        backfill, no watchlist yet, an article not indexed yet, an event waiting behind another), so that a
        later event of either story finds the group whole; recording it again changes nothing."""
        related = related_story_of(event)
        if related is not None:
            self.ledger.record_merge(related, (event.story.id,), kind="related")

    def _park(self, record: Record, event: StoryEvent, article_id: str, *, behind: bool) -> str:
        self.ledger.park(record, story_id=event.story.id, article_id=article_id, next_try=time.time() + WAIT_FIRST_S)
        logger.info(
            "story event waits for its article",
            extra={
                "stage": STAGE,
                "story_id": event.story.id,
                "article_id": article_id,
                "reason": "an earlier event of the story waits" if behind else "article not indexed yet",
            },
        )
        return "waiting"

    def retry_waiting(self, *, force: bool = False) -> int:
        """Look again for the articles of waiting events that are due (all when ``force``), oldest first
        and in per-story order; process those whose article is there. Returns how many went through."""
        done = 0
        with self._process_lock:
            now = time.time()
            waiting = self.ledger.waiting(due_at=None if force else now)
            if not waiting:
                return 0
            watchlists = self.repository.all()
            blocked: set[str] = set()
            for item in waiting:
                if item.story_id in blocked:
                    continue
                if self._try_waiting(item, watchlists, now):
                    done += 1
                else:
                    blocked.add(item.story_id)
            if done and not force:  # the index stage moved: look at the rest now, not at their next try
                for item in self.ledger.waiting():
                    if item.story_id not in blocked and self._try_waiting(item, watchlists, now):
                        done += 1
                    else:
                        blocked.add(item.story_id)
        self._report_waiting()
        return done

    def _try_waiting(self, item: Waiting, watchlists: Sequence[Watchlist], now: float) -> bool:
        """Process one waiting event if its article is there; else back off (or give up after the limit)."""
        try:
            event = StoryEvent.from_bytes(item.record.value)
            status = self.process(event, watchlists)
        except ArticleNotIndexedError as exc:
            waited = (now_utc() - utc(item.since)).total_seconds()
            if waited >= self.config.alert_wait_max_s and self.bus is not None:
                self._give_up(item, f"{exc} after waiting {waited:.0f} s (alert_wait_max_s)")
                return True
            self.ledger.reschedule(item.id, next_try=now + min(WAIT_FIRST_S * 2 ** (item.tries + 1), WAIT_MAX_S))
            return False
        except Exception as exc:  # noqa: BLE001  # the store hiccuped: look again later, say so
            logger.warning(
                "waiting story event failed, retried later",
                extra={"stage": STAGE, "story_id": item.story_id, "error": f"{type(exc).__name__}: {exc}"},
            )
            self.ledger.reschedule(item.id, next_try=now + WAIT_MAX_S)
            return False
        self.ledger.unpark(item.id)
        self.metrics.articles.labels(stage=STAGE, status=status).inc()
        logger.info(
            "waiting story event processed",
            extra={"stage": STAGE, "story_id": item.story_id, "article_id": item.article_id, "status": status},
        )
        return True

    def _give_up(self, item: Waiting, reason: str) -> None:
        assert self.bus is not None
        self.bus.dead_letter(
            item.record, stage=STAGE, error_class="ArticleNotIndexedError", reason=reason, attempts=item.tries + 1
        )
        self.bus.flush()
        self.ledger.unpark(item.id)
        self.metrics.dead_letters.labels(stage=STAGE, reason="ArticleNotIndexedError").inc()
        self.metrics.articles.labels(stage=STAGE, status="dead_lettered").inc()
        logger.warning("story event dead-lettered", extra={"stage": STAGE, "story_id": item.story_id, "error": reason})

    def _report_waiting(self) -> None:
        count, oldest = self.ledger.waiting_summary()
        self.metrics.alert_waiting.set(count)
        reason = ""
        if oldest is not None:
            since = utc(oldest.since).isoformat(timespec="seconds").replace("+00:00", "Z")
            reason = (
                f"{count} story event(s) wait for their article to be indexed (index stage behind?); "
                f"oldest: article {oldest.article_id} of story {oldest.story_id}, waiting since {since}"
            )
        if self._on_health is None or reason == self._health_reason:
            return
        self._health_reason = reason
        self._on_health(not reason, reason)

    def _wait_loop(self, interval_s: float) -> None:
        while not self._stop.is_set():
            woken = self._wake.wait(interval_s)
            if self._stop.is_set():
                return
            self._wake.clear()
            try:
                self.retry_waiting(force=woken)
            except Exception as exc:  # noqa: BLE001  # a ledger or store hiccup: try again next tick
                logger.warning("waiting check failed", extra={"stage": STAGE, "error": f"{type(exc).__name__}: {exc}"})

    # --- digests ----------------------------------------------------------------------------------

    def send_digests(self, now: datetime | None = None, *, force: bool = False) -> int:
        """Open and start sending the digest of every watchlist whose period (``every``) has passed since
        its last digest (or its creation) and that has queued entries; ``force`` ignores the period.
        Returns how many digests were opened."""
        now = utc(now) if now is not None else now_utc()
        opened = 0
        for wl in self.repository.all():
            last = self.ledger.last_digest_end(wl.name) or wl.created_at
            if not force and (now - utc(last)).total_seconds() < EVERY_SECONDS[wl.every]:
                continue
            digest = self.ledger.open_digest(wl.name, period_start=last, period_end=now, targets=wl.targets)
            if digest is None:
                continue
            opened += 1
            logger.info("digest", extra={"stage": STAGE, "watchlist": wl.name, "entries": len(digest.entries)})
            for target in wl.targets:
                self._submit(
                    PendingDelivery(kind="digest", ref_id=digest.id, target=target, watchlist=wl.name, attempts=0)
                )
        return opened

    def _digest_loop(self, interval_s: float) -> None:
        while not self._stop.wait(interval_s):
            try:
                self.send_digests()
            except Exception as exc:  # noqa: BLE001  # a store or ledger hiccup: try again next period
                logger.warning("digest check failed", extra={"stage": STAGE, "error": f"{type(exc).__name__}: {exc}"})

    # --- delivery ---------------------------------------------------------------------------------

    def resume(self) -> int:
        """Start every delivery left ``pending`` (by a crash or a shutdown); returns how many."""
        pending = self.ledger.pending()
        for item in pending:
            logger.info("resuming delivery", extra={"stage": STAGE, "watchlist": item.watchlist, "target": item.target})
            self._submit(item)
        return len(pending)

    def _submit(self, item: PendingDelivery) -> None:
        future = self._executor.submit(self._deliver, item)
        with self._futures_lock:
            self._futures.add(future)
        future.add_done_callback(self._forget)

    def _forget(self, future: Future[None]) -> None:
        with self._futures_lock:
            self._futures.discard(future)

    def _deliver(self, item: PendingDelivery) -> None:
        channel = target_channel(item.target)
        kind: DeliveryKind = item.kind
        try:
            wl = self.repository.get(item.watchlist)
            if wl is None:
                raise DeliveryError(item.target, f"watchlist {item.watchlist!r} was removed", transient=False)
            entered_at: datetime | None = None
            if kind == "alert":
                found = self.ledger.get_alert(item.ref_id)
                if found is None:
                    raise DeliveryError(item.target, f"alert {item.ref_id} is not in the ledger", transient=False)
                entered_at = found.alert.entered_at
                attempts = self.deliverer.send_alert(wl, found.alert, alert_id=found.alert_id, target=item.target)
            else:
                digest = self.ledger.get_digest(item.ref_id)
                if digest is None:
                    raise DeliveryError(item.target, f"digest {item.ref_id} is not in the ledger", transient=False)
                period = f"{_day(digest.period_start)} to {_day(digest.period_end)}"
                attempts = self.deliverer.send_digest(
                    wl,
                    group_digest(self._digest_entries(wl.name, digest.entries)),
                    digest_id=digest.digest_id,
                    period=period,
                    target=item.target,
                )
        except Exception as exc:  # noqa: BLE001  # a failing target is recorded and counted, never raised
            attempts = exc.attempts if isinstance(exc, DeliveryError) else 1
            self.ledger.mark(kind, item.ref_id, item.target, "failed", attempts=attempts, error=str(exc))
            self.metrics.alerts.labels(channel=channel, result="failed").inc()
            logger.warning(
                "alert delivery failed",
                extra={"stage": STAGE, "watchlist": item.watchlist, "target": item.target, "error": str(exc)},
            )
            return
        self.ledger.mark(kind, item.ref_id, item.target, "sent", attempts=attempts)
        self.metrics.alerts.labels(channel=channel, result="sent").inc()
        if entered_at is not None:
            latency = (now_utc() - utc(entered_at)).total_seconds()
            self.metrics.alert_latency.labels(channel=channel).observe(max(0.0, latency))

    def _digest_entries(self, watchlist: str, entries: Sequence[Alert]) -> list[Alert]:
        """Digest entries as they stand when the digest is sent: the story of each replaced by its merge
        survivor (one event, one digest story), and an unconfirmed story's first report a follow-up once
        the watchlist has been alerted on the story (its second report came: it is no longer unconfirmed)."""
        out: list[Alert] = []
        for entry in entries:
            survivor = self.ledger.survivor(entry.story_id)
            current = entry
            if survivor != entry.story_id:
                current = replace(current, story_id=survivor, link=story_link(self.config.public_url, survivor))
            if entry.role == "unconfirmed" and self.ledger.has_alert(watchlist, survivor):
                current = replace(current, role="follow_up")
            out.append(current)
        return out

    def wait_idle(self, timeout_s: float | None = None) -> bool:
        """Wait until no delivery is in flight; True if idle before ``timeout_s``."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            with self._futures_lock:
                futures = set(self._futures)
            if not futures:
                return True
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            wait(futures, timeout=remaining)

    def close(self, timeout_s: float = CLOSE_TIMEOUT_S) -> None:
        """Wait up to ``timeout_s`` for deliveries in flight (the rest stay ``pending`` and resume on the
        next start), then close the repository and the ledger when the stage owns them."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout_s)
        if not self.wait_idle(timeout_s):
            logger.warning("deliveries still in flight at close; they resume on next start", extra={"stage": STAGE})
        self._executor.shutdown(wait=False, cancel_futures=True)
        if self._owns_stores:
            self.ledger.close()
            self.repository.close()


def _day(value: datetime) -> str:
    return utc(value).strftime("%Y-%m-%d %H:%M UTC")
