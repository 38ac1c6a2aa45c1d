"""The alert stage: story events -> watchlist matches -> ledger -> delivery (group ``"alert"``).

For each record of ``settings.topic_story_events`` (a :class:`~stream.story.StoryEvent`):

1. ``indexer.alerts.screen`` drops merged events and backfill events.
2. For every watchlist, its query runs through the **same search translation as everything else**,
   restricted to one article: ``store.search(SearchRequest(query=wl.query, ids=(article_id,),
   lang=wl.lang, source=wl.source))``: the story's first article for ``created``, the joining article for
   ``updated`` (no percolator, so it works on both stores).
3. ``indexer.alerts.decide`` says instant / digest / skip. Instant alerts are written to the ledger with
   one ``pending`` delivery per target **before** anything is sent; digest entries are queued.
4. Deliveries run on a small thread pool, off the pipeline's thread: a slow or failing target delays
   nothing else. Each outcome is marked in the ledger and counted:
   ``sednaya_alerts_total{channel=webhook|email|atom, result=matched|sent|failed|retried}`` and
   ``sednaya_alert_latency_seconds{channel}`` (from the article's entry on the bus to delivery).

On construction the stage resumes deliveries left ``pending`` by a previous process. Digests are sent
by :meth:`AlertStage.send_digests`: a daemon thread of the stage calls it every ``DIGEST_CHECK_S``
(the digest entries live in this process's ledger, so the process that queues them sends them), and
``sednaya-monitor watch digest`` does it by hand or from cron in the embedded mode.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from datetime import datetime

from indexer.alerts import (
    build_alert,
    decide,
    group_digest,
    matched_terms,
    query_article_id,
    screen,
)
from indexer.delivery import Deliverer, split_target
from indexer.errors import ArticleNotIndexedError, DeliveryError, QuerySyntaxError
from indexer.ledger import AlertLedger, DeliveryKind, PendingDelivery
from indexer.store import SearchRequest, SearchStore
from indexer.watchlists import EVERY_SECONDS, Watchlist, WatchlistRepository, open_watchlists
from stream.article import Article, now_utc, utc
from stream.bus import Record
from stream.errors import ContractError
from stream.metrics import Metrics
from stream.settings import Settings
from stream.story import StoryEvent

logger = logging.getLogger(__name__)

STAGE = "alert"
DELIVERY_WORKERS = 8  # concurrent deliveries: a few hung targets (attempts x timeout each) leave room for others
ARTICLE_WAIT_S = 5.0  # distributed mode: the index stage may store the article just after the event arrives
ARTICLE_POLL_S = 0.1
DIGEST_CHECK_S = 60.0  # how often the stage looks for due digests (hourly is the finest period)
CLOSE_TIMEOUT_S = 60.0  # close() waits this long for deliveries in flight (the rest resume on next start)


class AlertStage:
    """``stream.worker.Handler`` of the alert stage. See the module docstring.

    Args:
        settings: ``data_dir`` (watchlists and ledger), ``public_url`` (links), delivery settings.
        store: the search store the index stage writes to (queries and first articles).
        metrics: counts alerts and latency.
        repository, ledger, deliverer: collaborators; by default ``open_watchlists(settings)`` (SQLite in
            ``data_dir``, or the Elasticsearch store), the ledger in ``data_dir`` and a
            ``Deliverer(settings)``. The stage closes only what it created.
        article_wait_s: how long to wait for the event's article to appear in the store before the
            record fails (and is retried by the worker). 0 in the one-process pipeline, where the index
            stage has always run first.
        digest_interval_s: period of the digest thread; None = no thread (``send_digests`` by hand).
    """

    name = STAGE

    def __init__(
        self,
        settings: Settings,
        store: SearchStore,
        metrics: Metrics,
        *,
        repository: WatchlistRepository | None = None,
        ledger: AlertLedger | None = None,
        deliverer: Deliverer | None = None,
        article_wait_s: float = ARTICLE_WAIT_S,
        digest_interval_s: float | None = DIGEST_CHECK_S,
    ) -> None:
        self.settings = settings
        self.store = store
        self.metrics = metrics
        self._own_repository = repository is None
        self._own_ledger = ledger is None
        self.repository: WatchlistRepository = repository if repository is not None else open_watchlists(settings)
        self.ledger = ledger if ledger is not None else AlertLedger.in_data_dir(settings.data_dir)
        self.deliverer = deliverer if deliverer is not None else Deliverer(settings, on_retry=self._count_retry)
        self.article_wait_s = article_wait_s
        self._executor = ThreadPoolExecutor(max_workers=DELIVERY_WORKERS, thread_name_prefix="alert-delivery")
        self._futures: set[Future[None]] = set()
        self._futures_lock = threading.Lock()
        self._closed = False
        self._stop = threading.Event()
        self._digest_thread: threading.Thread | None = None
        self.resume()
        if digest_interval_s is not None:
            self._digest_thread = threading.Thread(
                target=self._digest_loop, args=(digest_interval_s,), name="alert-digests", daemon=True
            )
            self._digest_thread.start()

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
                status = self.process(event, watchlists)
            except Exception as exc:  # noqa: BLE001  # one outcome per record: the worker retries/dead-letters it
                logger.warning(
                    "story event failed",
                    extra={"stage": STAGE, "story_id": event.story.id, "error": f"{type(exc).__name__}: {exc}"},
                )
                out.append(exc)
                continue
            self.metrics.articles.labels(stage=STAGE, status=status).inc()
            out.append(None)
        return out

    def process(self, event: StoryEvent, watchlists: Sequence[Watchlist] | None = None) -> str:
        """Decide and record ``event`` for every watchlist, then start its deliveries.

        Returns the stage status of the event: ``skipped`` (merged/backfill), ``alerted`` (at least one
        instant alert), ``queued`` (only digest entries) or ``no_match``.

        Raises:
            ArticleNotIndexedError: the event's article is not in the store (after ``article_wait_s``).
        """
        if watchlists is None:
            watchlists = self.repository.all()
        skipped = screen(event)
        if skipped is not None or not watchlists:
            return "skipped" if skipped is not None else "no_match"
        article_id = query_article_id(event)
        article = self._article(article_id, event)
        status = "no_match"
        for wl in watchlists:
            already = self.ledger.has_alert(wl.name, event.story.id)
            if event.kind == "created" and already:
                continue  # redelivered event: fired once already
            terms: tuple[str, ...] = ()
            if event.kind == "updated" and already:
                matched = True
            else:
                try:
                    matched, terms = self._match(wl, article_id)
                except QuerySyntaxError as exc:
                    logger.warning(
                        "watchlist query invalid", extra={"stage": STAGE, "watchlist": wl.name, "error": str(exc)}
                    )
                    continue
            verdict = decide(event, wl, matched=matched, already_alerted=already)
            if verdict.action == "skip":
                continue
            alert = build_alert(event, wl, article, matched_terms=terms, public_url=self.settings.public_url)
            if verdict.action == "instant":
                row = self.ledger.record_alert(alert, mode="instant", targets=wl.targets)
                if row is None:
                    continue
                status = "alerted"
                self._count_matched(wl)
                logger.info(
                    "alert",
                    extra={"stage": STAGE, "watchlist": wl.name, "story_id": event.story.id, "url": article.url},
                )
                for target in wl.targets:
                    self._submit(
                        PendingDelivery(kind="alert", ref_id=row, target=target, watchlist=wl.name, attempts=0)
                    )
            else:
                if event.kind == "created" and self.ledger.record_alert(alert, mode="digest", targets=()) is not None:
                    self._count_matched(wl)
                self.ledger.add_digest_item(alert)
                if status == "no_match":
                    status = "queued"
        return status

    def _article(self, article_id: str, event: StoryEvent) -> Article:
        deadline = time.monotonic() + self.article_wait_s
        while True:
            article = self.store.get_article(article_id)
            if article is not None:
                return article
            if time.monotonic() >= deadline:
                raise ArticleNotIndexedError(
                    f"story {event.story.id} ({event.kind}): article {article_id} is not in the store"
                )
            time.sleep(ARTICLE_POLL_S)

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
            channel, _ = split_target(target)
            self.metrics.alerts.labels(channel=channel, result="matched").inc()

    def _count_retry(self, channel: str, attempt: int, error: DeliveryError) -> None:
        self.metrics.alerts.labels(channel=channel, result="retried").inc()

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
        channel = item.target.partition(":")[0]
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
                    wl, group_digest(digest.entries), digest_id=digest.digest_id, period=period, target=item.target
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
        next start), then release what the stage created."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._digest_thread is not None:
            self._digest_thread.join(timeout_s)
        if not self.wait_idle(timeout_s):
            logger.warning("deliveries still in flight at close; they resume on next start", extra={"stage": STAGE})
        self._executor.shutdown(wait=False, cancel_futures=True)
        if self._own_ledger:
            self.ledger.close()
        if self._own_repository:
            self.repository.close()


def _day(value: datetime) -> str:
    return utc(value).strftime("%Y-%m-%d %H:%M UTC")
