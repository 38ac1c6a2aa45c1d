"""Scrapy item pipeline -> Bus: each on-topic article is published once on ``CrawlConfig.topic_raw``.

Record: key = article id, value = the v1 JSON (``Article.to_bytes``), headers ``schema`` = "1" and
``entered_at`` = ISO 8601 UTC time of publication (alert latency is measured from it). Each record is
flushed before the article is marked seen, so a crash never loses an article (at worst the next run
publishes it again, and every later stage is idempotent by id). An article the bus refuses goes to the
crawl dead-letter file (``crawlers.dead_letter``) with the error, and is not marked seen; ``sednaya-monitor
dlq list`` lists that file and ``sednaya-monitor ingest FILE`` replays it.
"""

from __future__ import annotations

import logging
from typing import Any

from scrapy import Spider
from scrapy.crawler import Crawler

from crawlers.items import ArticleItem
from crawlers.spiders.base import BaseSpider
from stream.article import SCHEMA_VERSION, iso_utc, now_utc
from stream.bus import H_ENTERED_AT, H_SCHEMA

logger = logging.getLogger(__name__)


class BusPublishPipeline:
    """Built by Scrapy with :meth:`from_crawler`; the crawl context is the running spider's."""

    def __init__(self, crawler: Crawler | None = None) -> None:
        self.crawler = crawler

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> BusPublishPipeline:
        return cls(crawler)

    def process_item(self, item: Any, spider: Spider | None = None) -> Any:
        """Publish ``item`` (an :class:`ArticleItem`; other items pass through). ``spider`` defaults to the
        crawler's spider (Scrapy no longer passes it)."""
        if spider is None and self.crawler is not None:
            spider = self.crawler.spider
        if not isinstance(item, ArticleItem) or not isinstance(spider, BaseSpider):
            return item
        context = spider.context
        article = item.article
        if article.id in context.published_ids:  # two spiders of one crawl reached the same article
            context.article("duplicate")
            return item
        topic = context.config.topic_raw
        entered_at = iso_utc(now_utc())
        try:
            context.bus.publish(
                topic,
                article.id,
                article.to_bytes(),
                {H_SCHEMA: str(SCHEMA_VERSION), H_ENTERED_AT: entered_at},
            )
            context.bus.flush()
        except Exception as exc:  # noqa: BLE001  # any bus failure: the article must not be lost
            context.dead_letters.write(
                kind="article",
                url=article.url,
                source=article.source,
                reason=str(exc),
                error_class=type(exc).__name__,
                payload=article.to_dict(),
            )
            context.metrics.dead_letters.labels(stage="crawl", reason=type(exc).__name__).inc()
            context.article("dead_lettered")
            logger.error(
                "article dead-lettered: bus refused it",
                extra={"url": article.url, "source": article.source, "stage": "crawl", "error": str(exc)},
            )
            return item
        context.published_ids.add(article.id)
        context.seen.mark(article.canonical_url, article.id, "published")
        for alias in item.aliases:
            context.seen.mark(alias, article.id, "published")
        context.article("published")
        context.metrics.source_articles.labels(source=article.source).inc()  # per-source volume baseline
        logger.info(
            "article published",
            extra={"url": article.url, "source": article.source, "lang": article.lang, "stage": "crawl"},
        )
        return item
