"""``gdelt``: the GDELT DOC 2.0 API (ArtList), time-sliced so the 250-record cap never truncates.

Live runs ask for the last ``gdelt_lookback_hours`` (``CrawlConfig``); backfill runs (``backfill_since``) ask for
everything since then, and their articles carry ``backfill = true`` (never instant alerts).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta

import scrapy
from scrapy.http import Response

from crawlers import gdelt_api
from crawlers.errors import FeedError
from crawlers.spiders.base import BaseSpider, download_slot
from stream.article import now_utc

SOURCE_ID = "gdelt"  # metrics label of the API itself; articles are attributed to their outlet
URL_LIMIT = 2083  # the longest GDELT query URL asked (the web's old limit; the names are asked in groups)


class GdeltSpider(BaseSpider):
    name = "gdelt"
    channel = "search"

    def poll_targets(self) -> Iterable[tuple[str, int]]:
        return [(SOURCE_ID, self.context.config.follow_interval_s)]

    def requests_for(self, target: str) -> Iterable[scrapy.Request]:
        end = now_utc()
        config = self.context.config
        start = self.context.backfill_since or end - timedelta(hours=config.gdelt_lookback_hours)
        settings = getattr(self, "settings", None)  # set when the crawler made the spider
        limit = min(settings.getint("URLLENGTH_LIMIT", URL_LIMIT), URL_LIMIT) if settings is not None else URL_LIMIT
        names = self.context.topic.names + self.context.topic.strong
        for query in gdelt_api.build_queries(names, config.gdelt_api_url, limit):
            yield self._slice_request(start, end, query)

    def _slice_request(self, start: datetime, end: datetime, query: str) -> scrapy.Request:
        url = gdelt_api.build_url(self.context.config.gdelt_api_url, query, start, end)
        meta = {"source": SOURCE_ID, "kind": "listing", "slice": (start, end), "query": query}
        return scrapy.Request(
            url,
            callback=self.parse_artlist,
            errback=self.on_error,
            dont_filter=True,
            meta={**meta, "download_slot": download_slot(url)},
        )

    def on_listing_failed(self, source: str, outcome: str) -> None:
        self.context.degraded(source, outcome)

    def source_of_article(self, response: Response) -> str:
        return self.context.attribute(response.url)

    def parse_artlist(self, response: Response) -> Iterator[scrapy.Request]:
        start, end = response.meta["slice"]
        try:
            articles, repaired = gdelt_api.parse_artlist(response.url, response.status, response.body)
        except FeedError as exc:
            outcome = "degraded" if exc.outcome == "degraded" else exc.outcome
            self.context.fetch(SOURCE_ID, outcome, response.url)
            self.context.degraded(SOURCE_ID, exc.detail or exc.outcome)
            if exc.outcome == "malformed_json":
                self.context.dead_letters.write(
                    kind="search_response",
                    url=response.url,
                    source=SOURCE_ID,
                    reason=exc.detail,
                    error_class="FeedError",
                    payload=response.text if hasattr(response, "text") else "",
                )
            return
        self.context.fetch(SOURCE_ID, "ok", response.url)
        if repaired:
            self.logger.info("GDELT JSON repaired", extra={"url": response.url})
        if len(articles) >= gdelt_api.GDELT_MAX_RECORDS:
            halves = gdelt_api.split(start, end)
            if halves is not None:
                for half_start, half_end in halves:
                    yield self._slice_request(half_start, half_end, response.meta["query"])
                return
            self.context.degraded(SOURCE_ID, f"250 results in one 15-minute slice from {start.isoformat()}")
        for rank, item in enumerate(articles):
            request = self.article_request(
                item.url,
                source=self.context.attribute(item.url),
                title=item.title or None,
                published=None,
                date_source=None,
                priority=-rank,
            )
            if request is not None:
                yield request
