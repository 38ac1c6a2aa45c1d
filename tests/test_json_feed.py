"""JSON Feeds (crawlers.json_feed): read like RSS/Atom by the feed spider, refused with a counted outcome
when they are not one."""

from __future__ import annotations

import calendar
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pytest
import scrapy
from scrapy.http import TextResponse

from crawlers.crawl_context import CrawlContext
from crawlers.errors import FeedError
from crawlers.json_feed import is_json_feed, json_feed_entries
from crawlers.source_check import read_listing
from crawlers.spiders.feeds import FeedSpider, entry_time
from sednaya_monitor.prometheus_metrics import PrometheusMetrics
from sednaya_monitor.settings import Settings
from sednaya_monitor.wiring import crawl_config, make_raw_store
from stream.bus_embedded import EmbeddedBus

FEED_URL = "http://a.test/feed.json"
# Written for these tests: a small outlet's JSON Feed, newest item last, one item without any link.
FEED: dict[str, Any] = {
    "version": "https://jsonfeed.org/version/1.1",
    "title": "Harbour notes",
    "items": [
        {
            "id": "1",
            "url": "http://a.test/2024/12/12/sednaya-cells.html",
            "title": "Search for hidden cells under Sednaya prison ends",
            "content_html": "<p>Rescue teams said no <b>hidden</b> cells were found.</p>",
            "date_published": "2024-12-12T18:30:00+02:00",
        },
        {"id": "2", "title": "A note without a link", "content_text": "Nothing to fetch."},
        {
            "id": "3",
            "external_url": "http://b.test/sednaya-archive",
            "title": "Sednaya prison registers to be digitised",
            "summary": "Volunteers copy the prison's registers.",
            "date_published": "2024-12-15T09:00:00Z",
            "date_modified": "2024-12-16T10:00:00Z",
        },
    ],
}


def _body(doc: object) -> bytes:
    return json.dumps(doc).encode()


def test_items_become_entries_with_their_links_texts_and_utc_times() -> None:
    entries = json_feed_entries(_body(FEED), FEED_URL)
    assert [e["link"] for e in entries] == [
        "http://a.test/2024/12/12/sednaya-cells.html",
        "http://b.test/sednaya-archive",  # external_url when the item has no url of its own
    ]
    assert entries[0]["summary"] == "Rescue teams said no  hidden  cells were found."
    assert entries[1]["summary"] == "Volunteers copy the prison's registers."
    assert entry_time(entries[0]) == datetime(2024, 12, 12, 16, 30, tzinfo=UTC)
    assert calendar.timegm(entries[1]["updated_parsed"]) == datetime(2024, 12, 16, 10, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"{not json", "not JSON"),
        (_body({"items": []}), "not a JSON Feed"),  # no version
        (_body({"version": "https://jsonfeed.org/version/1", "items": {}}), "items list"),
        (_body(["https://jsonfeed.org/version/1"]), "not a JSON Feed"),
    ],
)
def test_what_is_not_a_json_feed_is_refused_as_malformed_json(body: bytes, why: str) -> None:
    with pytest.raises(FeedError) as info:
        json_feed_entries(body, FEED_URL)
    assert info.value.outcome == "malformed_json" and why in str(info.value) and FEED_URL in str(info.value)


def test_a_feed_is_json_by_its_content_type_or_its_first_character() -> None:
    assert is_json_feed(b"{}", None)
    assert is_json_feed(b"  \n{}", "text/plain")
    assert is_json_feed(b"", "application/feed+json; charset=utf-8")
    assert not is_json_feed(b'<?xml version="1.0"?><rss/>', "application/rss+xml")


def _spider(settings: Settings, bus: EmbeddedBus, registry: Path) -> FeedSpider:
    registry.write_text(
        '[[source]]\nid = "notes"\nname = "N"\nhome = "http://a.test/"\nlang = "en"\ncountry = "GB"\n'
        f'type = "other"\nfeeds = ["{FEED_URL}"]\n',
        encoding="utf-8",
    )
    settings = settings.replace(sources_file=registry)
    context = CrawlContext(crawl_config(settings), bus, PrometheusMetrics(), raw=make_raw_store(settings))
    return FeedSpider(context=context)


def _response(body: bytes, content_type: str) -> TextResponse:
    request = scrapy.Request(FEED_URL, meta={"source": "notes"})
    return TextResponse(url=FEED_URL, body=body, headers={"Content-Type": content_type}, request=request)


def _fetches(spider: FeedSpider, outcome: str) -> float:
    registry = cast(PrometheusMetrics, spider.context.metrics).registry
    value = registry.get_sample_value("sednaya_source_fetches_total", {"source": "notes", "outcome": outcome})
    return value or 0.0


def test_the_feed_spider_follows_a_json_feed_s_items_newest_first(settings: Settings, tmp_path: Path) -> None:
    bus = EmbeddedBus(settings.data_dir / "bus.sqlite3")
    spider = _spider(settings, bus, tmp_path / "reg.toml")
    try:
        requests = list(spider.parse_feed(_response(_body(FEED), "application/feed+json")))
        assert [r.url for r in requests] == [
            "http://b.test/sednaya-archive",
            "http://a.test/2024/12/12/sednaya-cells.html",
        ]
        assert requests[1].meta["hint_published"] == datetime(2024, 12, 12, 16, 30, tzinfo=UTC)
        assert requests[1].meta["hint_date_source"] == "feed"
        assert _fetches(spider, "ok") == 1.0
        assert list(spider.parse_feed(_response(b'{"version": 2}', "application/json"))) == []
        assert _fetches(spider, "malformed_json") == 1.0
    finally:
        spider.context.close()
        bus.close()


def test_sources_check_reads_a_json_feed_and_its_newest_item() -> None:
    listing = read_listing(_body(FEED), max_bytes=100_000)
    assert (listing.kind, listing.entries, listing.newest) == ("feed", 2, datetime(2024, 12, 15, 9, tzinfo=UTC))
    with pytest.raises(FeedError) as info:
        read_listing(b'{"feed": "no"}', max_bytes=100_000)
    assert info.value.outcome == "malformed_json"
