"""``monitor``: every spider of a crawl inside one Scrapy crawler.

Each crawler has its own downloader, so spiders run as separate crawlers would each keep their own
per-host delay and fetch robots.txt on their own: two of them could hit one site at twice the polite
rate. This spider runs the others (``feeds``, ``sitemaps``, ``gdelt``, ``googlenews``) as children of
one crawler, so one downloader slot per host paces all of them. ``crawlers.run.crawl`` uses it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import scrapy

from crawlers.crawl_context import CrawlContext
from crawlers.errors import CrawlError
from crawlers.spiders.base import BaseSpider
from crawlers.spiders.feeds import FeedSpider
from crawlers.spiders.gdelt import GdeltSpider
from crawlers.spiders.googlenews import GoogleNewsSpider
from crawlers.spiders.sitemaps import SitemapSpider

CHILDREN: dict[str, type[BaseSpider]] = {
    cls.name: cls for cls in (FeedSpider, SitemapSpider, GdeltSpider, GoogleNewsSpider)
}
LIST_SPIDERS = ("feeds", "sitemaps")  # registry sources
SEARCH_SPIDERS = ("gdelt", "googlenews")  # discovery: off with the discovery setting false


def default_children(discovery: bool, *, backfill: bool) -> tuple[str, ...]:
    """List spiders always (GDELT alone in a backfill), search spiders when discovery is on."""
    if backfill:
        return ("gdelt",) if discovery else ()
    return LIST_SPIDERS + (SEARCH_SPIDERS if discovery else ())


class MonitorSpider(BaseSpider):
    """Spider argument ``spiders``: comma-separated children (default: :func:`default_children`)."""

    name = "monitor"

    def __init__(
        self,
        *args: Any,
        context: CrawlContext | None = None,
        follow: bool | str = False,
        sources: str | None = None,
        spiders: str | Sequence[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, context=context, follow=follow, sources=sources, **kwargs)
        if spiders is None:
            names: Sequence[str] = default_children(self.context.config.discovery, backfill=self.context.backfill)
        elif isinstance(spiders, str):
            names = [n for n in spiders.split(",") if n]
        else:
            names = list(spiders)
        unknown = [n for n in names if n not in CHILDREN]
        if unknown:
            raise CrawlError(f"unknown spider(s) {unknown} (known: {sorted(CHILDREN)})")
        self.children = [CHILDREN[n](context=self.context, follow=self.follow) for n in names]

    def _due_requests(self) -> Iterator[scrapy.Request]:
        for child in self.children:
            yield from child._due_requests()
