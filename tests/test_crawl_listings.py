"""Feeds and sitemaps as sites serve them: the spiders' listing callbacks fed Scrapy responses built here
(no network), over a real crawl context (embedded bus, seen-store, counts)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import scrapy
from scrapy.http import Request, Response, TextResponse, XmlResponse

from crawlers.crawl_context import CrawlContext
from crawlers.spiders.base import BaseSpider
from crawlers.spiders.sitemaps import MAX_SITEMAP_DEPTH, SitemapSpider
from sednaya_monitor.prometheus_metrics import PrometheusMetrics
from sednaya_monitor.settings import Settings
from sednaya_monitor.wiring import crawl_config, make_raw_store
from stream.bus_embedded import EmbeddedBus

SITE = "https://daily.example"
REGISTRY = f"""
[[source]]
id = "daily"
name = "Daily Example"
home = "{SITE}/"
lang = "en"
country = "GB"
type = "other"
feeds = ["{SITE}/feed.xml"]
sitemaps = ["{SITE}/sitemap.xml"]
"""


@pytest.fixture
def context(settings: Settings, tmp_path: Path) -> Iterator[CrawlContext]:
    registry = tmp_path / "sources.toml"
    registry.write_text(REGISTRY, encoding="utf-8")
    settings = settings.replace(sources_file=registry)
    bus = EmbeddedBus(settings.data_dir / "bus.sqlite3")
    found = CrawlContext(crawl_config(settings), bus, PrometheusMetrics(), raw=make_raw_store(settings))
    yield found
    found.close()
    bus.close()


def answer(
    request: Request, body: bytes | str, *, cls: type[TextResponse] = XmlResponse, url: str | None = None
) -> Response:
    """The response a site gives to ``request`` (``url``: where a redirect ended)."""
    data = body.encode("utf-8") if isinstance(body, str) else body
    return cls(url=url or request.url, body=data, status=200, request=request)


def listing(spider: BaseSpider, url: str, callback_name: str, **meta: object) -> Request:
    """The request the spider makes for a listing at ``url`` (validators, meta and all)."""
    return spider.conditional_request(url, source="daily", callback=getattr(spider, callback_name), **meta)


def index(*children: str) -> str:
    items = "".join(f"<sitemap><loc>{c}</loc></sitemap>" for c in children)
    return (
        f'<?xml version="1.0"?><sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{items}</sitemapindex>'
    )


def requests_of(results: Iterator[object]) -> list[scrapy.Request]:
    return [r for r in results if isinstance(r, scrapy.Request)]


def test_a_sitemap_index_that_lists_itself_or_its_parent_is_not_asked_for_again(context: CrawlContext) -> None:
    spider = SitemapSpider(context=context)
    root = listing(spider, f"{SITE}/sitemap.xml", "parse_sitemap")
    children = requests_of(spider.parse_sitemap(answer(root, index(f"{SITE}/sitemap.xml", f"{SITE}/sitemap-2024.xml"))))
    assert [r.url for r in children] == [f"{SITE}/sitemap-2024.xml"]
    # the child is an index too, listing its parent (with www. and a trailing slash) and a month of its own
    grand = requests_of(
        spider.parse_sitemap(
            answer(children[0], index("https://www.daily.example/sitemap.xml/", f"{SITE}/sitemap-2024-12.xml"))
        )
    )
    assert [r.url for r in grand] == [f"{SITE}/sitemap-2024-12.xml"]
    # and the month lists an index again: below MAX_SITEMAP_DEPTH, nothing more is followed
    assert MAX_SITEMAP_DEPTH == 3
    assert requests_of(spider.parse_sitemap(answer(grand[0], index(f"{SITE}/sitemap-other.xml")))) == []
