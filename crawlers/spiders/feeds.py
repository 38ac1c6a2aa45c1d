"""``feeds``: RSS 2.0, Atom and RDF feeds of the registry's sources (feedparser) and JSON Feeds
(``crawlers.json_feed``), newest entries first."""

from __future__ import annotations

import calendar
import logging
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

import feedparser
import scrapy
from scrapy.http import Response

from crawlers.errors import FeedError
from crawlers.extraction import decode_html, is_html, written_date
from crawlers.json_feed import is_json_feed, json_feed_entries
from crawlers.page_listing import alternate_feeds, article_links, parse_page
from crawlers.registry import UNDECLARED_SEARCH_ONLY, Source
from crawlers.spiders.base import BaseSpider

logger = logging.getLogger(__name__)

MAX_ENTRIES_PER_FEED = 200  # a feed longer than this is an archive dump; the newest are what matter


def entry_time(entry: Any, lang: str = "") -> datetime | None:
    """The entry's published (else updated) time as aware UTC, or None: what orders a feed's entries."""
    published, updated = entry_times(entry, lang)
    return published or updated


def entry_times(entry: Any, lang: str = "") -> tuple[datetime | None, datetime | None]:
    """``(published, updated)`` of the entry as aware UTC: ``published`` from its ``pubDate``/``published``
    (else ``created``), ``updated`` from its ``updated`` (an edit time: Atom requires it, and it may be
    years after the publication). A date feedparser could not read (a feed that writes dates in its own
    language: "السبت، 14 ديسمبر 2024", "14.12.2024 10:00") is read as people write dates
    (``crawlers.extraction.written_date``; ``lang``, the feed's language, orders a numeric day and month),
    at 00:00 UTC."""
    published = _time(entry, "published", lang) or _time(entry, "created", lang)
    return published, _time(entry, "updated", lang)


def _time(entry: Any, key: str, lang: str) -> datetime | None:
    value = _own(entry, f"{key}_parsed")
    if value:
        return datetime.fromtimestamp(calendar.timegm(value), UTC)
    text = _own(entry, key)
    return written_date(text, lang) if isinstance(text, str) else None


def _own(entry: Any, key: str) -> Any:
    """``entry[key]`` when the entry has it (a feedparser entry would otherwise answer ``updated`` with its
    ``published``, with a deprecation warning)."""
    return dict.get(entry, key) if isinstance(entry, dict) else entry.get(key)


def is_xml_error(exc: object) -> bool:
    """feedparser's ``bozo_exception`` says the XML itself is broken (not merely a charset override)."""
    return exc is not None and type(exc).__name__ in {"SAXParseException", "SAXException"}


class FeedSpider(BaseSpider):
    name = "feeds"
    channel = "feed"

    def poll_targets(self) -> Iterable[tuple[str, int]]:
        default = self.context.config.follow_interval_s
        return [(s.id, s.interval_s or default) for s in self.context.sources if s.feeds or _home_only(s)]

    def requests_for(self, target: str) -> Iterable[scrapy.Request]:
        source = next(s for s in self.context.sources if s.id == target)
        for url in source.feeds or (source.home,):  # a source the registry gives no feed or sitemap: its home page
            yield self.conditional_request(url, source=source.id, callback=self.parse_feed)

    def parse_feed(self, response: Response) -> Iterator[scrapy.Request]:
        if not self.listing_ok(response):
            return
        source_id: str = response.meta["source"]
        source = next(s for s in self.context.registry if s.id == source_id)
        content_type = (response.headers.get("Content-Type") or b"").decode("latin-1")
        if is_html(None, response.body[:512].removeprefix(b"\xef\xbb\xbf")):  # the body, not the type: some
            # servers send their RSS as text/html
            yield from self._read_page(response, source, content_type)
            return
        if is_json_feed(response.body, content_type):
            try:
                found: list[Any] = json_feed_entries(response.body, response.url)
            except FeedError as exc:
                logger.warning("feed not read", extra={"url": response.url, "source": source_id, "error": str(exc)})
                self.context.fetch(source_id, exc.outcome, response.url)
                return
            self.context.fetch(source_id, "ok", response.url)
        else:
            parsed = feedparser.parse(response.body, response_headers={"content-type": content_type})
            broken = bool(parsed.get("bozo")) and is_xml_error(parsed.get("bozo_exception"))
            if broken and not parsed.entries:
                self.context.fetch(source_id, "malformed_xml", response.url)
                return
            # Salvaged entries of a broken feed are still crawled; the fetch is counted as malformed.
            self.context.fetch(source_id, "malformed_xml" if broken else "ok", response.url)
            found = parsed.entries
        timed = sorted(  # each entry's times read once: the sort and the request's hints
            ((entry_times(e, source.lang), e) for e in found[: MAX_ENTRIES_PER_FEED * 2]),
            key=lambda pair: pair[0][0] or pair[0][1] or datetime.min.replace(tzinfo=UTC),
            reverse=True,
        )[:MAX_ENTRIES_PER_FEED]
        for rank, ((published, updated), entry) in enumerate(timed):
            url = self.entry_url(response, str(entry.get("link") or ""), source_id)
            if url is None:
                continue
            title = str(entry.get("title") or "")
            summary = str(entry.get("summary") or "")
            if not self.context.worth_fetching(source, f"{title}\n{summary}", url, response.url):
                continue
            request = self.article_request(
                url,
                source=source_id,
                title=title or None,
                published=published,
                modified=updated,
                date_source="feed",
                priority=-rank,
            )
            if request is not None:
                yield request

    def _read_page(self, response: Response, source: Source, content_type: str) -> Iterator[scrapy.Request]:
        """A "feed" that answers a web page (a feed moved, a section page, a home page): the feeds it announces
        are read as feeds (once: a page reached that way is not asked for its feeds again), and its article
        links are entries, their anchor text the headline the prefilter reads. Counted ``html_page``, or
        ``not_a_feed`` when it offers neither (an error page answered with 200: the source did not answer)."""
        tree = parse_page(decode_html(response.body, content_type)[1])
        if tree is None:
            self.context.fetch(source.id, "malformed_xml", response.url)
            return
        feeds = [] if response.meta.get("announced_by") else alternate_feeds(tree, response.url)
        links = article_links(tree, response.url, source.hosts)
        self.context.fetch(source.id, "html_page" if feeds or links else "not_a_feed", response.url)
        logger.info(
            "page read as a listing",
            extra={"url": response.url, "source": source.id, "feeds": feeds, "links": len(links)},
        )
        for url in feeds:
            yield self.conditional_request(url, source=source.id, callback=self.parse_feed, announced_by=response.url)
        for rank, link in enumerate(links):
            if not self.context.worth_fetching(source, link.text, link.url, response.url):
                continue
            request = self.article_request(link.url, source=source.id, title=link.text or None, priority=-rank)
            if request is not None:
                yield request


def _home_only(source: Source) -> bool:
    """The registry gives the source no feed, no sitemap and no reason why (``UNDECLARED_SEARCH_ONLY``): its
    home page is read as a listing (a source that says why it has none, ``search_only``, is left to search)."""
    return not source.feeds and not source.sitemaps and source.search_only == UNDECLARED_SEARCH_ONLY
