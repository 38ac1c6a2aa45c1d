"""Crawl building blocks without the network: registry, GDELT slicing/repair, Google News queries,
seen store, raw store, fetch outcomes, and the bus pipeline (published once; dead-lettered on failure)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest
from scrapy.exceptions import IgnoreRequest
from twisted.python.failure import Failure

from crawlers import gdelt_api, google_news
from crawlers.crawl_context import CrawlContext
from crawlers.errors import FeedError, RegistryError
from crawlers.fetch_outcome import outcome_for_failure, outcome_for_status
from crawlers.items import ArticleItem
from crawlers.pipelines import BusPublishPipeline
from crawlers.raw_store import RawStore
from crawlers.registry import (
    DEFAULT_REGISTRY,
    SOURCE_TYPES,
    UNDECLARED_SEARCH_ONLY,
    load_registry,
    parse_registry,
    source_for_url,
)
from crawlers.seen import SeenStore
from crawlers.spiders.feeds import FeedSpider
from crawlers.spiders.sitemaps import gunzip, parse_sitemap
from sednaya_monitor.prometheus_metrics import PrometheusMetrics
from sednaya_monitor.settings import Settings
from sednaya_monitor.wiring import crawl_config, make_raw_store
from stream.article import Article, Relevance, now_utc
from stream.bus import H_ENTERED_AT, H_SCHEMA
from stream.bus_embedded import EmbeddedBus
from stream.canonical_url import id_for_url
from stream.errors import BusError
from stream.topic import load_topic

# --- registry --------------------------------------------------------------------------------------


def test_default_registry_has_40_outlets_in_five_languages_marked_unverified() -> None:
    sources = load_registry(DEFAULT_REGISTRY)
    assert len(sources) >= 40
    assert {s.lang for s in sources} >= {"ar", "en", "fr", "de", "tr"}
    assert {s.type for s in sources} >= SOURCE_TYPES - {"fact-checker", "other"}
    assert not any(s.verified for s in sources), "nothing could be checked from this machine"
    assert sum(1 for s in sources if s.feeds or s.sitemaps) >= 40
    no_listing = [s for s in sources if not s.feeds and not s.sitemaps]
    assert no_listing and all(s.search_only for s in no_listing), "a source without feeds says why"
    assert {s.id for s in no_listing} >= {"amnesty", "hrw", "snhr", "white-helmets", "ohchr", "state-dept"}
    assert all(s.lang == s.langs[0] for s in sources)


_BASE = '[[source]]\nid = "a"\nname = "A"\nhome = "https://a.test/"\ncountry = "GB"\ntype = "wire"\n'


def test_registry_langs_main_language_first_and_lang_still_accepted() -> None:
    feeds = 'feeds = ["https://a.test/en.rss", "https://a.test/fr.rss", "https://a.test/ar.rss"]\n'
    (wire,) = parse_registry(_BASE + 'langs = ["en", "FR", "ar"]\n' + feeds)
    assert (wire.lang, wire.langs) == ("en", ("en", "fr", "ar"))
    (both,) = parse_registry(_BASE + 'lang = "en"\nlangs = ["en", "ar"]\n' + feeds)
    assert both.langs == ("en", "ar")
    (single,) = parse_registry(_BASE + 'lang = "ar"\n' + feeds)
    assert (single.lang, single.langs) == ("ar", ("ar",))


def test_registry_topic_sections_and_search_only() -> None:
    (source,) = parse_registry(
        _BASE + 'lang = "en"\nfeeds = ["https://a.test/all.rss"]\ntopic_sections = ["https://a.test/syria/"]\n'
    )
    assert source.in_topic_section("https://a.test/syria/2024/x.html")
    assert source.in_topic_section("https://a.test/other/x.html", "https://a.test/syria/feed.rss")
    assert not source.in_topic_section("https://a.test/sport/x.html", "https://a.test/all.rss")
    (ngo,) = parse_registry(_BASE + 'lang = "en"\nsearch_only = "no feed; GDELT finds its reports"\n')
    assert ngo.search_only == "no feed; GDELT finds its reports" and not ngo.feeds


def test_a_source_without_feeds_or_mark_is_search_only_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="crawlers.registry"):
        (bare,) = parse_registry(_BASE + 'lang = "en"\n', "reg.toml")
    assert bare.search_only == UNDECLARED_SEARCH_ONLY  # one undeclared source does not stop the others
    record = next(r for r in caplog.records if r.name == "crawlers.registry")
    assert record.source == "a" and record.registry == "reg.toml"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("x = 1", "no [[source]] table"),
        ('[[source]]\nid = "a"', "key 'type' is required"),
        ('[[source]]\nid = "a"\ntype = "blog"', "type 'blog' is not one of"),
        ('[[source]]\nid = "a"\ntype = "wire"\nlang = "english"', "lang 'english' must be an ISO 639-1 code"),
        ('[[source]]\nid = "a"\ntype = "wire"\nlangs = "en"', "langs 'en' must be a non-empty list"),
        ('[[source]]\nid = "a"\ntype = "wire"\nlangs = ["en", "xyz"]', "lang 'xyz' must be an ISO 639-1 code"),
        ('[[source]]\nid = "a"\ntype = "wire"\nlang = "fr"\nlangs = ["en", "fr"]', "is not the first of langs"),
        (
            (
                '[[source]]\nid = "a"\nname = "A"\nhome = "https://a.test/"\nlang = "en"\ncountry = "GB"\n'
                'type = "ngo"\nsearch_only = "x"\nfeeds = ["https://a.test/f"]'
            ),
            "search_only is set but the source lists feeds",
        ),
        (
            (
                '[[source]]\nid = "a"\nname = "A"\nhome = "https://a.test/"\nlang = "en"\ncountry = "GB"\n'
                'type = "ngo"\nsearch_only = true'
            ),
            "search_only True must be the reason",
        ),
        (
            '[[source]]\nid = "a"\nname = "A"\nhome = "ftp://a"\nlang = "en"\ncountry = "GB"\ntype = "wire"',
            "'ftp://a' is not an absolute http(s) URL",
        ),
    ],
)
def test_registry_errors_name_the_source_and_key(text: str, message: str) -> None:
    with pytest.raises(RegistryError) as info:
        parse_registry(text, "reg.toml")
    assert message in str(info.value) and "reg.toml" in str(info.value)


def test_attribution_by_host_and_port() -> None:
    sources = parse_registry(
        '[[source]]\nid = "a"\nname = "A"\nhome = "http://127.0.0.1:8001/"\nlang = "en"\ncountry = "GB"\n'
        'type = "wire"\nsearch_only = "test"\n[[source]]\nid = "bbc"\nname = "BBC"\nhome = "https://www.bbc.co.uk/news"\n'
        'lang = "en"\ncountry = "GB"\ntype = "public-broadcaster"\nfeeds = ["https://feeds.bbci.co.uk/news/rss.xml"]\n'
    )
    assert source_for_url(sources, "http://127.0.0.1:8001/x") == "a"
    assert source_for_url(sources, "http://127.0.0.1:8002/x") == "127.0.0.1:8002"
    assert source_for_url(sources, "https://feeds.bbc.co.uk/a") == "bbc"


# --- GDELT and Google News ----------------------------------------------------------------------------


def test_gdelt_query_and_url() -> None:
    assert gdelt_api.build_query(["Sednaya", "Saydnaya", "Sednaya"]) == '("Sednaya" OR "Saydnaya")'
    start = datetime(2024, 12, 8, tzinfo=UTC)
    url = gdelt_api.build_url("https://api.test/doc", '"Sednaya"', start, start + timedelta(hours=1))
    assert "mode=ArtList" in url and "maxrecords=250" in url
    assert "startdatetime=20241208000000" in url and "enddatetime=20241208010000" in url


def test_gdelt_names_are_asked_in_groups_whose_urls_scrapy_sends() -> None:
    """Scrapy drops a request longer than URLLENGTH_LIMIT (2083) without a word: the topic's names are
    asked in as few groups as keep each URL within the limit, and every name is asked."""
    from urllib.parse import parse_qs, urlsplit

    from stream.topic import load_topic

    topic = load_topic(Path(__file__).resolve().parent.parent / "stream" / "topics" / "sednaya.toml")
    names = [*topic.names, *topic.strong, *(f"Сайеднайя{i}" for i in range(40))]  # a topic with many more
    start = datetime(2024, 12, 8, tzinfo=UTC)
    queries = gdelt_api.build_queries(names, "https://api.gdeltproject.org/api/v2/doc/doc", 2083)
    assert len(queries) > 1
    urls = [gdelt_api.build_url("https://api.gdeltproject.org/api/v2/doc/doc", q, start, start) for q in queries]
    assert all(len(u) <= 2083 for u in urls)
    asked = {t for u in urls for t in parse_qs(urlsplit(u).query)["query"][0].strip("()").split(" OR ")}
    assert asked == {f'"{n}"' for n in names if len(n) >= gdelt_api.MIN_TERM_CHARS}
    two = gdelt_api.build_queries(["Sednaya", "Saydnaya"], "https://api.test/doc", 2083)
    assert two == ['("Sednaya" OR "Saydnaya")']


def test_gdelt_split_stops_at_fifteen_minutes() -> None:
    start = datetime(2024, 12, 8, tzinfo=UTC)
    halves = gdelt_api.split(start, start + timedelta(hours=1))
    assert halves == [
        (start, start + timedelta(minutes=30)),
        (start + timedelta(minutes=30), start + timedelta(hours=1)),
    ]
    assert gdelt_api.split(start, start + gdelt_api.MIN_SLICE) is None


def test_gdelt_repairs_what_it_can_and_says_degraded_never_zero() -> None:
    repaired, was = gdelt_api.parse_artlist(
        "u", 200, b'{"articles": [{"url": "http://a.test/1", "title": "it\\\'s\tok", "seendate": "20241208T100000Z"},]}'
    )
    assert was and repaired[0].url == "http://a.test/1" and repaired[0].seen == datetime(2024, 12, 8, 10, tzinfo=UTC)
    assert gdelt_api.parse_artlist("u", 200, b"{}") == ([], False)  # GDELT's real "no match"
    for status, body, outcome in [
        (429, b"", "degraded"),
        (200, b"Please limit requests to one every 5 seconds", "degraded"),
        (503, b"<html>down</html>", "degraded"),
        (200, b'{"articles": [{"url": "http://a', "malformed_json"),
    ]:
        with pytest.raises(FeedError) as info:
            gdelt_api.parse_artlist("https://api.test/doc?q", status, body)
        assert info.value.outcome == outcome and "https://api.test/doc?q" in str(info.value)


def test_google_news_queries_cover_each_variant_and_language() -> None:
    topic = load_topic(Settings().topic_file)
    queries = google_news.queries("https://news.test/rss/search", topic.names_by_script)
    assert len(queries) == 4 * len(topic.names_by_script["latin"]) + len(topic.names_by_script["arabic"])
    ar = [q for q in queries if q.lang == "ar"]
    assert {q.variant for q in ar} == set(topic.names_by_script["arabic"])
    assert any(q.url.endswith("hl=de&gl=DE&ceid=DE:de") and q.variant == "Sednaya" for q in queries)


# --- sitemaps ----------------------------------------------------------------------------------------


def test_sitemap_entries_newest_first_and_broken_xml_recovered() -> None:
    body = (
        b'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9" '
        b'xmlns:news="http://www.google.com/schemas/sitemap-news/0.9">'
        b"<url><loc>http://a.test/old</loc><lastmod>2017-01-01</lastmod></url>"
        b"<url><loc>http://a.test/new</loc><news:news><news:publication_date>2024-12-08T10:00:00Z"
        b"</news:publication_date><news:title>Sednaya</news:title></news:news></url></urlset>"
    )
    kind, entries, repaired = parse_sitemap(body)
    assert (kind, [e.loc for e in entries], repaired) == ("urlset", ["http://a.test/new", "http://a.test/old"], False)
    assert entries[0].title == "Sednaya"
    kind, entries, repaired = parse_sitemap(body.replace(b"</urlset>", b""))
    assert repaired and len(entries) == 2
    with pytest.raises(FeedError) as info:
        parse_sitemap(b"<html><body>not a sitemap</body></html>")
    assert info.value.outcome == "malformed_xml"


def test_gunzip_is_bounded() -> None:
    import gzip

    assert gunzip(gzip.compress(b"x" * 100), 1000) == b"x" * 100
    with pytest.raises(FeedError) as info:
        gunzip(gzip.compress(b"x" * 5000), 1000)
    assert info.value.outcome == "too_large"
    with pytest.raises(FeedError):
        gunzip(b"\x1f\x8bnot gzip", 1000)


# --- outcomes ----------------------------------------------------------------------------------------


def test_outcome_labels() -> None:
    assert [outcome_for_status(s) for s in (200, 304, 403, 404, 429, 410, 503)] == [
        "ok",
        "not_modified",
        "http_403",
        "http_404",
        "http_429",
        "http_4xx",
        "http_5xx",
    ]
    assert outcome_for_failure(Failure(IgnoreRequest("Forbidden by robots.txt"))) == "robots_disallowed"
    assert outcome_for_failure(Failure(IgnoreRequest("max redirections reached"))) == "redirect_loop"


# --- state -------------------------------------------------------------------------------------------


def test_seen_store_persists_across_instances(tmp_path: Path) -> None:
    with SeenStore(tmp_path) as seen:
        seen.mark("https://a.test/1", "id1", "published")
        seen.mark("https://a.test/1", "id1", "rejected:too_short")  # first mark wins
        seen.save_validators("https://a.test/feed", '"e1"', "Mon, 09 Dec 2024 08:00:00 GMT")
        seen.record_fetch("a", "ok", success=True)
        seen.record_fetch("a", "http_403", success=False)
    with SeenStore(tmp_path) as seen:
        assert seen.is_seen("https://a.test/1") and seen.status("https://a.test/1") == "published"
        assert not seen.is_seen("https://a.test/2")
        assert seen.validators("https://a.test/feed") == ('"e1"', "Mon, 09 Dec 2024 08:00:00 GMT")
        health = seen.health()["a"]
        assert health.last_outcome == "http_403" and health.last_success is not None


def test_raw_store_round_trip(tmp_path: Path) -> None:
    raw = RawStore(tmp_path)
    path = raw.put("ab" + "0" * 62, b"<html>x</html>")
    assert path.parent.name == "ab" and raw.get("ab" + "0" * 62) == b"<html>x</html>"
    assert raw.get("cd" + "0" * 62) is None


# --- pipeline ----------------------------------------------------------------------------------------


def make_article(url: str) -> Article:
    ident, canonical = id_for_url(url)
    now = now_utc()
    return Article(
        id=ident,
        url=url,
        canonical_url=canonical,
        source="test",
        channel="feed",
        backfill=False,
        lang="en",
        title="Sednaya",
        text="Sednaya prison " * 40,
        authors=(),
        published=None,
        date_source="none",
        discovered_at=now,
        fetched_at=now,
        content_sha256="0" * 64,
        relevance=Relevance(score=1.0, terms=("Sednaya",)),
    )


class RefusingBus(EmbeddedBus):
    """The real embedded bus whose flush fails (a broker that refuses writes)."""

    def flush(self, timeout_s: float | None = None) -> None:
        raise BusError("broker refused the write (test)")


def _spider(settings: Settings, bus: EmbeddedBus, registry: Path) -> FeedSpider:
    registry.write_text(
        '[[source]]\nid = "test"\nname = "T"\nhome = "http://a.test/"\nlang = "en"\ncountry = "GB"\ntype = "other"\n'
        'feeds = ["http://a.test/feed.rss"]\n',
        encoding="utf-8",
    )
    settings = settings.replace(sources_file=registry)
    context = CrawlContext(crawl_config(settings), bus, PrometheusMetrics(), raw=make_raw_store(settings))
    return FeedSpider(context=context)


def test_pipeline_publishes_once_with_headers_and_marks_seen(settings: Settings, tmp_path: Path) -> None:
    bus = EmbeddedBus(settings.data_dir / "bus.sqlite3")
    spider = _spider(settings, bus, tmp_path / "reg.toml")
    article = make_article("https://a.test/news/1?utm_source=x")
    pipeline = BusPublishPipeline()
    pipeline.process_item(ArticleItem(article=article, aliases=("https://a.test/amp/news/1",)), spider)
    pipeline.process_item(ArticleItem(article=article), spider)
    records = bus.consumer(settings.topic_raw, "t").poll(10, 0.5)
    assert [r.key for r in records] == [article.id]
    assert records[0].headers[H_SCHEMA] == "1" and H_ENTERED_AT in records[0].headers
    assert Article.from_json(records[0].value) == article
    assert spider.context.summary.articles == {"published": 1, "duplicate": 1}
    assert spider.context.seen.is_seen(article.canonical_url) and spider.context.seen.is_seen(
        "https://a.test/amp/news/1"
    )
    spider.context.close()
    bus.close()


def test_pipeline_dead_letters_what_the_bus_refuses(settings: Settings, tmp_path: Path) -> None:
    bus = RefusingBus(settings.data_dir / "bus.sqlite3")
    spider = _spider(settings, bus, tmp_path / "reg.toml")
    article = make_article("https://a.test/news/2")
    BusPublishPipeline().process_item(ArticleItem(article=article), spider)
    letters = spider.context.dead_letters.read()
    assert len(letters) == 1
    letter: Mapping[str, object] = letters[0]
    assert (letter["kind"], letter["url"], letter["error_class"]) == ("article", article.url, "BusError")
    assert "refused" in str(letter["reason"])
    assert Article.from_dict(letter["payload"]) == article  # replayable with `ingest`
    assert spider.context.summary.articles == {"dead_lettered": 1}
    assert not spider.context.seen.is_seen(article.canonical_url), "a dead-lettered article is retried next run"
    value = cast(PrometheusMetrics, spider.context.metrics).registry.get_sample_value(
        "sednaya_articles_total", {"stage": "crawl", "status": "dead_lettered"}
    )
    assert value == 1.0
    assert (
        json.loads((settings.data_dir / "crawl" / "dead-letters.jsonl").read_text(encoding="utf-8"))["stage"] == "crawl"
    )
    spider.context.close()
    bus.close()


# --- politeness settings and metrics ----------------------------------------------------------------


def test_scrapy_settings_carry_politeness_and_the_cache_toggle(settings_factory: Any) -> None:
    from crawlers.scrapy_settings import scrapy_settings

    settings = settings_factory(user_agent="SednayaMonitor/9", contact_url="https://example.org/contact")
    conf = scrapy_settings(crawl_config(settings))
    assert conf["USER_AGENT"] == "SednayaMonitor/9 (+https://example.org/contact)"
    assert conf["ROBOTSTXT_OBEY"] is True and conf["AUTOTHROTTLE_ENABLED"] is True
    assert conf["CONCURRENT_REQUESTS_PER_DOMAIN"] == settings.crawl_concurrency_per_domain
    assert conf["HTTPCACHE_ENABLED"] is False
    assert conf["DOWNLOAD_SLOTS"]["api.gdeltproject.org"] == {"concurrency": 1, "delay": 5.0}
    cached = scrapy_settings(crawl_config(settings_factory(crawl_http_cache=True)))
    assert cached["HTTPCACHE_ENABLED"] is True
    assert cached["HTTPCACHE_DIR"].startswith(str(settings.data_dir.resolve()))


def test_fetch_outcomes_and_extraction_reasons_are_counted(settings: Settings, tmp_path: Path) -> None:
    bus = EmbeddedBus(settings.data_dir / "bus.sqlite3")
    spider = _spider(settings, bus, tmp_path / "reg.toml")
    context = spider.context
    context.fetch("test", "ok", "https://a.test/feed")
    context.fetch("test", "http_403", "https://a.test/x")
    context.extraction("too_short")
    registry = cast(PrometheusMetrics, context.metrics).registry
    assert registry.get_sample_value("sednaya_source_fetches_total", {"source": "test", "outcome": "ok"}) == 1.0
    assert registry.get_sample_value("sednaya_source_fetches_total", {"source": "test", "outcome": "http_403"}) == 1.0
    assert registry.get_sample_value("sednaya_extraction_total", {"reason": "too_short"}) == 1.0
    last = registry.get_sample_value("sednaya_source_last_success_timestamp_seconds", {"source": "test"})
    assert last is not None and last > 0
    assert context.seen.health()["test"].last_outcome == "http_403"
    context.close()
    bus.close()


def test_attribution_prefers_the_source_whose_home_path_matches() -> None:
    sources = load_registry(DEFAULT_REGISTRY)
    assert source_for_url(sources, "https://www.france24.com/ar/20241208-x") == "france24-ar"
    assert source_for_url(sources, "https://www.france24.com/fr/moyen-orient/x") == "france24-fr"
    assert source_for_url(sources, "https://www.dw.com/de/syrien/a-1") == "dw-de"
    assert source_for_url(sources, "https://www.amnesty.org/en/latest/news/2017/02/x") == "amnesty"


# --- Google News article links --------------------------------------------------------------------------


def test_google_news_old_ids_carry_the_publisher_url() -> None:
    from tests.crawl_fixtures import OPAQUE_GOOGLE_NEWS_LINK, google_news_link

    url = "https://www.example.org/world/2024/12/12/" + "long-slug-" * 20 + ".html"  # > 127 bytes: 2-byte length
    link = google_news_link(url) + "?oc=5"
    assert google_news.article_id(link) is not None and google_news.article_id(link).startswith("CBMi")  # type: ignore[union-attr]
    assert google_news.publisher_url(link) == url
    assert google_news.publisher_url(link.replace("/rss/articles/", "/articles/")) == url
    assert google_news.publisher_url(OPAQUE_GOOGLE_NEWS_LINK) is None  # newer ids: JavaScript only
    assert google_news.article_id(OPAQUE_GOOGLE_NEWS_LINK) is not None
    assert google_news.publisher_url("https://news.google.com/rss/articles/!!notbase64!!") is None
    assert google_news.article_id("https://www.example.org/rss/articles/CBMi") is None  # not Google News
    assert google_news.publisher_url("https://news.google.com/search?q=x") is None


# --- sources check verdicts ---------------------------------------------------------------------------


def test_source_check_reads_feeds_and_sitemaps_and_judges_recency() -> None:
    import gzip
    from datetime import UTC, datetime, timedelta

    from crawlers.source_check import read_listing, verdict

    now = datetime(2026, 12, 6, tzinfo=UTC)
    week = timedelta(days=14)
    rss = (
        b'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>'
        b"<item><title>a</title><link>http://a.test/1</link><pubDate>Fri, 04 Dec 2026 10:00:00 GMT</pubDate></item>"
        b"<item><title>b</title><link>http://a.test/2</link><pubDate>Mon, 09 Dec 2024 10:00:00 GMT</pubDate></item>"
        b"</channel></rss>"
    )
    listing = read_listing(rss, max_bytes=10_000)
    assert (listing.kind, listing.entries, listing.newest) == ("feed", 2, datetime(2026, 12, 4, 10, tzinfo=UTC))
    assert verdict(listing, now=now, max_age=week) == "ok"
    assert verdict(listing, now=now + timedelta(days=30), max_age=week) == "stale"
    sitemap = (
        b'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"><url><loc>http://a.test/x</loc>'
        b"<lastmod>2026-12-05</lastmod></url></urlset>"
    )
    listing = read_listing(gzip.compress(sitemap), max_bytes=10_000)
    assert (listing.kind, listing.entries) == ("urlset", 1) and verdict(listing, now=now, max_age=week) == "ok"
    empty = read_listing(b'<rss version="2.0"><channel><title>t</title></channel></rss>', max_bytes=10_000)
    assert verdict(empty, now=now, max_age=week) == "empty"
    undated = read_listing(rss.replace(b"<pubDate>", b"<x>").replace(b"</pubDate>", b"</x>"), max_bytes=10_000)
    assert verdict(undated, now=now, max_age=week) == "undated"
    for body in (b"<html><body>Service unavailable</body></html>", rss[:-30]):
        with pytest.raises(FeedError) as info:
            read_listing(body, max_bytes=10_000)
        assert info.value.outcome == "malformed_xml"


def test_a_feed_date_in_the_feed_s_own_language_is_read_as_people_write_it() -> None:
    import feedparser

    from crawlers.spiders.feeds import entry_time

    rss = (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>t</title>'
        "<item><title>a</title><link>http://a.test/1</link><pubDate>السبت، 14 ديسمبر 2024 - 10:00</pubDate></item>"
        "<item><title>b</title><link>http://a.test/2</link><pubDate>14.12.2024 10:00</pubDate></item>"
        "<item><title>c</title><link>http://a.test/3</link><pubDate>05/06/2024</pubDate></item>"
        "<item><title>d</title><link>http://a.test/4</link><pubDate>Sat, 14 Dec 2024 10:00:00 +0100</pubDate></item>"
        "</channel></rss>"
    ).encode()
    entries = feedparser.parse(rss).entries
    assert [e.get("published_parsed") is None for e in entries] == [True, True, True, False]  # feedparser's own
    midnight = datetime(2024, 12, 14, tzinfo=UTC)
    assert [entry_time(e, "ar") for e in entries] == [midnight, midnight, datetime(2024, 6, 5, tzinfo=UTC),
                                                      datetime(2024, 12, 14, 9, tzinfo=UTC)]  # fmt: skip
    assert entry_time(entries[2], "en") is None  # 5 June or 6 May: English leaves it open
