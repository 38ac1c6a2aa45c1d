"""What every spider shares: the crawl context, per-source polling (once or ``--follow``), conditional
GET, fetch-outcome counting and the article callback (extraction -> relevance -> ``ArticleItem``)."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Generator, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import scrapy
from scrapy import signals
from scrapy.crawler import Crawler
from scrapy.exceptions import DontCloseSpider
from scrapy.http import Response, TextResponse
from twisted.python.failure import Failure

from crawlers.crawl_context import CrawlContext
from crawlers.errors import ExtractionError, RawStoreError
from crawlers.extraction import decode_html, extract
from crawlers.fetch_outcome import outcome_for_failure, outcome_for_status
from crawlers.items import ArticleItem
from stream.article import Article, Channel, DateSource, now_utc
from stream.canonical_url import id_for_url
from stream.errors import ContractError, UnavailableError

logger = logging.getLogger(__name__)

EXTRA_LANG_HINT = "lang_hint"  # Article.extra keys set here
EXTRA_SOURCE_TYPE = "source_type"  # = indexer.documents.SOURCE_TYPE_KEY (crawlers must not import indexer)
EXTRA_SOURCE_COUNTRY = "source_country"  # = indexer.documents.SOURCE_COUNTRY_KEY
ALL_ERROR_STATUSES = [304, *range(400, 600)]  # handled by our callbacks so each one is a counted outcome
PERMANENT_REJECTIONS = frozenset(
    {"not_html", "listing_page", "too_short", "off_topic", "bad_encoding", "duplicate", "unresolved_redirect"}
)


LASTING_FAILURES = frozenset({"robots_disallowed", "too_large"})  # what a next run would meet again: the
# listing that led to them keeps its validators (other failures make it be read whole next run)


@dataclass
class _Listing:
    """A feed or sitemap read in this crawl whose validators wait for its articles: they are stored only once
    every article it led to ended for good, so a 304 next time never hides an article that failed."""

    etag: str | None
    modified: str | None
    outstanding: int = 0  # article requests it led to that have not ended
    parsed: bool = False  # its callback has yielded everything
    failed: bool = False  # an article it led to failed (HTTP error, timeout...): it is read whole next time
    # it leads to other listings (a sitemap index, a page announcing feeds): read whole every time, since a
    # 304 would hide a child that changed while it did not
    parent_of_listings: bool = False


class BaseSpider(scrapy.Spider):
    """Base of the project's spiders. Spider arguments (``scrapy crawl NAME -a ...``): ``sources``
    (comma-separated registry ids), ``follow`` (``1`` to keep polling each source on its interval)."""

    channel: Channel = "feed"
    handle_httpstatus_list = ALL_ERROR_STATUSES

    def __init__(
        self,
        *args: Any,
        context: CrawlContext | None = None,
        follow: bool | str = False,
        sources: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        ids = [s for s in sources.split(",") if s] if isinstance(sources, str) and sources else None
        self._owns_context = context is None
        self.context = context if context is not None else CrawlContext.standalone(ids)
        self.follow = follow is True or str(follow).lower() in {"1", "true", "yes"}
        self._next_due: dict[str, float] = {}
        self._listings: dict[str, _Listing] = {}  # listing URL -> what its validators wait for

    @classmethod
    def from_crawler(cls, crawler: Crawler, *args: Any, **kwargs: Any) -> BaseSpider:
        spider: BaseSpider = super().from_crawler(crawler, *args, **kwargs)
        crawler.signals.connect(spider._on_idle, signal=signals.spider_idle)
        crawler.signals.connect(spider._on_closed, signal=signals.spider_closed)
        return spider

    # --- polling ------------------------------------------------------------------------------------
    def poll_targets(self) -> Iterable[tuple[str, int]]:
        """``(target id, interval in seconds)`` of what this spider polls (registry sources by default)."""
        default = self.context.config.follow_interval_s
        return [(s.id, s.interval_s or default) for s in self.context.sources]

    def requests_for(self, target: str) -> Iterable[scrapy.Request]:
        """The requests of one poll of ``target``."""
        raise NotImplementedError

    def _due_requests(self) -> Iterator[scrapy.Request]:
        now = time.monotonic()
        for target, interval in self.poll_targets():
            if self._next_due.get(target, 0.0) <= now:
                self._next_due[target] = now + interval
                yield from self.requests_for(target)

    async def start(self) -> AsyncIterator[Any]:
        for request in self._due_requests():
            yield request

    def _on_idle(self, spider: scrapy.Spider) -> None:
        if spider is not self or not self.follow:
            return
        for request in self._due_requests():
            self.crawler.engine.crawl(request)
        raise DontCloseSpider

    def _on_closed(self, spider: scrapy.Spider, reason: str) -> None:
        if spider is self and self._owns_context:
            summary = self.context.close()
            for line in summary.lines():
                logger.info(line)

    # --- helpers for listing requests (feeds, sitemaps, search) ---------------------------------------
    def conditional_request(self, url: str, *, source: str, callback: Any, **meta: Any) -> scrapy.Request:
        """GET ``url`` with the stored ``ETag``/``Last-Modified`` validators (304 = nothing new); ``callback``
        (a method of the spider) reads the answer, and the article requests it yields are followed to their
        end before the answer's validators are stored (:class:`_Listing`)."""
        etag, modified = self.context.seen.validators(url)
        headers = {}
        if etag:
            headers["If-None-Match"] = etag
        if modified:
            headers["If-Modified-Since"] = modified
        return scrapy.Request(
            url,
            callback=self._read_listing,
            cb_kwargs={"parse": callback.__name__},
            errback=self.on_error,
            headers=headers,
            dont_filter=True,
            meta={"source": source, "kind": "listing", "download_slot": download_slot(url), **meta},
        )

    def _read_listing(self, response: Response, parse: str) -> Iterator[Any]:
        key = listing_url(response)
        for item in getattr(self, parse)(response):
            state = self._listings.get(key)
            if state is not None and isinstance(item, scrapy.Request):
                if item.meta.get("kind") == "article":
                    item.meta["listing"] = key
                    state.outstanding += 1
                elif item.meta.get("kind") == "listing":
                    state.parent_of_listings = True
            yield item
        if key in self._listings:
            self._listings[key].parsed = True
            self._settle(key)

    def _article_ended(self, meta: dict[str, Any], *, failed: bool) -> None:
        """One article request led to by a listing ended; ``failed``: it will be tried again next run."""
        key = meta.get("listing")
        state = self._listings.get(key) if isinstance(key, str) else None
        if failed and isinstance(meta.get("link_canonical"), str):
            self.context.release(meta["link_canonical"])  # a later poll of its listing asks for it again
        if state is None:
            return
        state.outstanding -= 1
        state.failed = state.failed or failed
        self._settle(key)  # type: ignore[arg-type]  # a str when state was found

    def _settle(self, key: str) -> None:
        state = self._listings[key]
        if state.parsed and state.outstanding <= 0:
            del self._listings[key]
            if state.parent_of_listings:
                self.context.seen.forget_validators(key)
            elif not state.failed:
                self.context.seen.save_validators(key, state.etag, state.modified)

    def listing_ok(self, response: Response) -> bool:
        """Count the listing fetch's HTTP outcome unless it is 2xx (then the caller counts after parsing);
        keep its validators until its articles have ended. True when the body should be parsed."""
        source = response.meta["source"]
        outcome = outcome_for_status(response.status)
        if outcome != "ok":
            self.context.fetch(source, outcome, response.url)
            self.on_listing_failed(source, outcome)
            return False
        etag, modified = _header(response, b"ETag"), _header(response, b"Last-Modified")
        state = self._listings.setdefault(listing_url(response), _Listing(etag, modified))
        state.etag, state.modified, state.parsed = etag, modified, False
        return True

    def on_listing_failed(self, source: str, outcome: str) -> None:
        """Hook: search spiders mark themselves degraded."""

    def on_error(self, failure: Failure) -> None:
        request = failure.request  # type: ignore[attr-defined]  # set by Scrapy on errback failures
        source = request.meta.get("source", "unknown")
        outcome = outcome_for_failure(failure)
        self.context.fetch(source, outcome, request.url)
        if request.meta.get("kind") == "article":
            self.context.article("failed")
            self._article_ended(request.meta, failed=outcome not in LASTING_FAILURES)
        else:
            self.on_listing_failed(source, outcome)

    # --- articles -----------------------------------------------------------------------------------
    def article_request(
        self,
        url: str,
        *,
        source: str,
        title: str | None = None,
        published: datetime | None = None,
        date_source: DateSource | None = None,
        priority: int = 0,
        modified: datetime | None = None,
    ) -> scrapy.Request | None:
        """A request for the article at ``url``, or None when it was already handled (or is not http, or too
        long: counted). ``published``/``modified``: the publication and last-edit times the listing gives
        (``date_source``)."""
        try:
            _, canonical = id_for_url(url)
        except ContractError:
            self.context.link_skipped("bad_link", url, source)
            return None
        settings = getattr(self, "settings", None)  # set when the crawler made the spider
        if settings is not None and len(url) > settings.getint("URLLENGTH_LIMIT"):
            self.context.link_skipped("too_long", url, source)  # Scrapy would drop it without a word
            return None
        if not self.context.claim(canonical):
            return None
        return scrapy.Request(
            url,
            callback=self.parse_article,
            errback=self.on_error,
            priority=priority,
            dont_filter=True,  # de-duplicated by canonical URL above; Scrapy's filter would also swallow redirect loops
            meta={
                "source": source,
                "kind": "article",
                "download_slot": download_slot(url),
                "link_canonical": canonical,
                "hint_title": title,
                "hint_published": published,
                "hint_modified": modified,
                "hint_date_source": date_source,
                "discovered_at": now_utc(),
            },
        )

    def entry_url(self, response: Response, link: str, source: str) -> str | None:
        """The absolute URL of a listing entry's ``link``, or None (counted) when it has none or it is not
        a URL: one bad entry must not end the reading of the listing."""
        if not link.strip():
            self.context.link_skipped("no_link", response.url, source)
            return None
        try:
            return response.urljoin(link.strip())
        except ValueError:  # "http://[a.test/..."
            self.context.link_skipped("bad_link", link, source)
            return None

    def source_of_article(self, response: Response) -> str:
        """The source an article is attributed to (search spiders attribute by the final URL)."""
        return str(response.meta["source"])

    def _reject(self, canonical: str, reason: str, url: str, source: str, detail: str = "") -> None:
        self.context.extraction(reason)
        self.context.article("duplicate" if reason == "duplicate" else "rejected")
        if reason in PERMANENT_REJECTIONS:
            self.context.seen.mark(canonical, id_for_url(canonical)[0], f"rejected:{reason}")
        logger.info(
            "article rejected",
            extra={"url": url, "source": source, "reason": reason, "detail": detail, "stage": "crawl"},
        )

    def parse_article(self, response: Response) -> Iterator[ArticleItem]:
        meta = response.meta
        link_canonical: str = meta["link_canonical"]
        source = self.source_of_article(response)
        outcome = outcome_for_status(response.status)
        if outcome != "ok":
            self.context.fetch(source, outcome, response.url)
            self.context.article("failed")
            self._article_ended(meta, failed=True)
            return
        rejected = yield from self._article(response, source, link_canonical)
        self._article_ended(meta, failed=rejected is not None and rejected not in PERMANENT_REJECTIONS)
        # A page that cannot be decoded is a fetch outcome of its source too (the answer was unusable).
        self.context.fetch(source, "bad_encoding" if rejected == "bad_encoding" else "ok", response.url)

    def _article(
        self, response: Response, source: str, link_canonical: str
    ) -> Generator[ArticleItem, None, str | None]:
        """Extraction -> relevance -> item; returns the rejection reason (None when an item was yielded)."""
        meta = response.meta
        if urlsplit(response.url).hostname == "news.google.com":
            self._reject(link_canonical, "unresolved_redirect", response.url, source)
            return None
        content_type = _header(response, b"Content-Type")
        if not isinstance(response, TextResponse):
            self._reject(link_canonical, "not_html", response.url, source, f"content type {content_type!r}")
            return None
        try:
            page = extract(
                decode_html(response.body, content_type)[1],
                url=response.url,
                content_type=content_type,
                hinted_published=meta.get("hint_published"),
                hinted_date_source=meta.get("hint_date_source"),
                hinted_modified=meta.get("hint_modified"),
                hinted_title=meta.get("hint_title"),
            )
        except ExtractionError as exc:
            self._reject(link_canonical, exc.reason, response.url, source, exc.detail)
            return exc.reason
        except Exception as exc:  # a parser bug on one page must not stop the crawl; counted, logged, retried
            logger.exception("extraction failed", extra={"url": response.url, "source": source, "stage": "crawl"})
            self._reject(link_canonical, "extraction_failed", response.url, source, f"{type(exc).__name__}: {exc}")
            return "extraction_failed"
        try:
            ident, canonical = id_for_url(page.canonical or response.url)
        except ContractError:
            ident, canonical = id_for_url(link_canonical)
        aliases = tuple({link_canonical, id_for_url(response.url)[1]} - {canonical})
        if canonical != link_canonical and not self.context.claim(canonical):
            self._reject(link_canonical, "duplicate", response.url, source, f"same article as {canonical}")
            return None
        relevance = self.context.relevance.score(page.title, page.text)
        if not self.context.relevance.is_relevant(relevance):
            self.context.seen.mark(canonical, ident, "rejected:off_topic")
            self._reject(link_canonical, "off_topic", response.url, source, f"score {relevance.score}")
            return None
        try:
            self.context.raw.put(page.content_sha256, response.body)
        except (UnavailableError, RawStoreError) as exc:  # the copy is a convenience: the article goes on
            logger.warning("raw copy not kept", extra={"url": response.url, "source": source, "error": str(exc)})
        self.context.extraction("ok")
        extra: dict[str, str] = {}
        if page.lang_hint:
            extra[EXTRA_LANG_HINT] = page.lang_hint  # the page's own <html lang>: a hint, not the truth
        source_type = self.context.source_type(source)
        if source_type:
            extra[EXTRA_SOURCE_TYPE] = source_type  # read by indexer/documents.py (facet)
        country = self.context.source_country(source)
        if country:
            extra[EXTRA_SOURCE_COUNTRY] = country  # read by indexer/documents.py (Kibana's map joins on it)
        article = Article(
            id=ident,
            url=response.url,
            canonical_url=canonical,
            source=source,
            channel=self.channel,
            backfill=self.context.backfill,
            lang=page.lang,
            title=page.title,
            text=page.text,
            authors=page.authors,
            published=page.published,
            date_source=page.date_source,
            discovered_at=meta["discovered_at"],
            fetched_at=now_utc(),
            content_sha256=page.content_sha256,
            relevance=relevance,
            extra=extra,
        )
        yield ArticleItem(article=article, aliases=aliases)
        return None


def download_slot(url: str) -> str:
    """Download-slot key of ``url``: ``host[:port]``. Scrapy keys slots by host alone; with the port,
    sites sharing an address (the loopback fixture web) are paced separately, as distinct hosts are."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    return f"{host}:{parts.port}" if parts.port else host


def listing_url(response: Response) -> str:
    """The URL a listing was asked for (before any redirect): where its validators are kept."""
    redirects = response.meta.get("redirect_urls")
    if redirects:
        return str(redirects[0])
    return response.request.url if response.request is not None else response.url


def _header(response: Response, name: bytes) -> str | None:
    value = response.headers.get(name)
    return None if value is None else value.decode("latin-1")
