"""``googlenews``: Google News RSS search, one query per name variant and language."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from urllib.parse import urlsplit

import feedparser
import scrapy
from scrapy.http import Response

from crawlers import google_news
from crawlers.spiders.base import BaseSpider, download_slot
from crawlers.spiders.feeds import entry_time, is_xml_error
from stream.canonical_url import id_for_url
from stream.errors import ContractError

SOURCE_ID = "google-news"  # metrics label of the search endpoint; articles are attributed to their outlet


class GoogleNewsSpider(BaseSpider):
    name = "googlenews"
    channel = "search"

    def poll_targets(self) -> Iterable[tuple[str, int]]:
        return [(SOURCE_ID, self.context.config.follow_interval_s)]

    def requests_for(self, target: str) -> Iterable[scrapy.Request]:
        for query in google_news.queries(self.context.config.google_news_url, self.context.topic.names_by_script):
            yield scrapy.Request(
                query.url,
                callback=self.parse_results,
                errback=self.on_error,
                dont_filter=True,
                meta={
                    "source": SOURCE_ID,
                    "kind": "listing",
                    "variant": query.variant,
                    "lang": query.lang,
                    "download_slot": download_slot(query.url),
                },
            )

    def on_listing_failed(self, source: str, outcome: str) -> None:
        self.context.degraded(source, outcome)

    def source_of_article(self, response: Response) -> str:
        host = urlsplit(response.url).hostname or ""
        if host == "news.google.com" and response.meta.get("outlet"):
            return str(response.meta["outlet"])
        return self.context.attribute(response.url)

    def _reject_opaque(self, link: str, outlet: str) -> None:
        """A Google News link whose id does not carry the publisher URL: it resolves only in JavaScript,
        so it is rejected without a fetch (and remembered, so the next poll skips it)."""
        try:
            _, canonical = id_for_url(link)
        except ContractError:
            return
        if self.context.claim(canonical):
            self._reject(canonical, "unresolved_redirect", link, outlet, "opaque Google News article id")

    def parse_results(self, response: Response) -> Iterator[scrapy.Request]:
        if not self.listing_ok(response):
            return
        parsed = feedparser.parse(response.body)
        if parsed.get("bozo") and is_xml_error(parsed.get("bozo_exception")) and not parsed.entries:
            self.context.fetch(SOURCE_ID, "malformed_xml", response.url)
            self.context.degraded(SOURCE_ID, f"malformed RSS for {response.meta['variant']!r}")
            return
        self.context.fetch(SOURCE_ID, "ok", response.url)
        for rank, entry in enumerate(parsed.entries):
            link = entry.get("link") or ""
            if not link:
                continue
            outlet_url = (entry.get("source") or {}).get("href") or link
            link = response.urljoin(link)
            if google_news.article_id(link) is not None:
                decoded = google_news.publisher_url(link)
                self.context.summary.google_news_links["decoded" if decoded else "opaque"] += 1
                if decoded is None:
                    self._reject_opaque(link, self.context.attribute(outlet_url))
                    continue
                link = decoded
            request = self.article_request(
                link,
                source=self.context.attribute(outlet_url),
                title=str(entry.get("title") or "") or None,
                published=entry_time(entry),
                date_source="feed",
                priority=-rank,
            )
            if request is not None:
                request.meta["outlet"] = self.context.attribute(outlet_url)
                yield request
