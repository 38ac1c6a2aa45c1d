"""Feeds and sitemaps as sites serve them: the spiders' listing callbacks fed Scrapy responses built here
(no network), over a real crawl context (embedded bus, seen-store, counts)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import feedparser
import pytest
import scrapy
from scrapy.http import HtmlResponse, Request, Response, TextResponse, XmlResponse

from crawlers.crawl_context import CrawlContext
from crawlers.extraction import extract
from crawlers.spiders.base import BaseSpider
from crawlers.spiders.feeds import FeedSpider, entry_times
from crawlers.spiders.sitemaps import MAX_CHILD_SITEMAPS, MAX_SITEMAP_DEPTH, SitemapSpider, parse_sitemap
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


EDITED = datetime(2024, 12, 9, 7, 30, tzinfo=UTC)
STORY = (
    "<p>The State Department said on Monday that a building inside the Sednaya military prison compound had been"
    " converted into a crematorium, citing satellite images and accounts gathered from former detainees.</p>"
) * 3


def _story_page(head: str = "", shown: str = "") -> str:
    return (
        f'<html lang="en"><head><title>Crematorium claim</title>{head}</head><body><article>'
        f"<h1>US says Sednaya prison has a crematorium</h1>{shown}{STORY}</article></body></html>"
    )


def test_a_sitemap_s_lastmod_and_an_atom_updated_are_edit_times_not_publication_dates() -> None:
    sitemap = (
        '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"'
        ' xmlns:news="http://www.google.com/schemas/sitemap-news/0.9">'
        f"<url><loc>{SITE}/2017/05/15/crematorium.html</loc><lastmod>2024-12-09T07:30:00Z</lastmod></url>"
        f"<url><loc>{SITE}/a.html</loc><lastmod>2024-12-01</lastmod><news:news>"
        "<news:publication_date>2024-11-30T10:00:00Z</news:publication_date><news:title>A</news:title>"
        "</news:news></url></urlset>"
    ).encode()
    _, entries, _ = parse_sitemap(sitemap)
    assert [(e.published, e.modified) for e in entries] == [
        (None, EDITED),  # newest first, by publication else edit time
        (datetime(2024, 11, 30, 10, tzinfo=UTC), datetime(2024, 12, 1, tzinfo=UTC)),
    ]
    atom = (
        b'<feed xmlns="http://www.w3.org/2005/Atom"><title>t</title>'
        b"<entry><title>a</title><link href='http://a.test/1'/><published>2017-05-15T09:00:00Z</published>"
        b"<updated>2024-12-09T07:30:00Z</updated></entry>"
        b"<entry><title>b</title><link href='http://a.test/2'/><updated>2024-12-09T07:30:00Z</updated></entry></feed>"
    )
    assert [entry_times(e) for e in feedparser.parse(atom).entries] == [
        (datetime(2017, 5, 15, 9, tzinfo=UTC), EDITED),
        (None, EDITED),
    ]


@pytest.mark.parametrize(
    ("url", "shown", "expected"),
    [
        (f"{SITE}/2017/05/15/crematorium.html", "", (datetime(2017, 5, 15, tzinfo=UTC), "url")),
        (
            f"{SITE}/news/crematorium.html",
            '<p class="date">15 May 2017</p>',
            (datetime(2017, 5, 15, tzinfo=UTC), "meta"),
        ),
        (f"{SITE}/news/crematorium.html", "", (EDITED, "sitemap")),  # nothing better: the edit time
    ],
)
def test_an_edit_time_dates_a_page_only_when_its_url_and_its_page_say_nothing(
    url: str, shown: str, expected: tuple[datetime, str]
) -> None:
    found = extract(_story_page(shown=shown), url=url, hinted_modified=EDITED, hinted_date_source="sitemap")
    assert (found.published, found.date_source) == expected
    published = datetime(2017, 5, 16, tzinfo=UTC)  # a publication time from the listing still beats the URL
    found = extract(_story_page(), url=url, hinted_published=published, hinted_date_source="sitemap")
    assert (found.published, found.date_source) == (published, "sitemap")


def _rss(*items: str, encoding: str = "utf-8", declared: bool = True) -> bytes:
    head = f'<?xml version="1.0" encoding="{encoding}"?>' if declared else '<?xml version="1.0"?>'
    return (head + '<rss version="2.0"><channel><title>Daily</title>' + "".join(items) + "</channel></rss>").encode(
        encoding
    )


def _item(title: str, link: str | None, summary: str = "") -> str:
    at = "" if link is None else f"<link>{link}</link>"
    return f"<item><title>{title}</title>{at}<description>{summary}</description></item>"


def _feed_requests(context: CrawlContext, body: bytes, content_type: str = "application/rss+xml") -> list[Request]:
    spider = FeedSpider(context=context)
    request = listing(spider, f"{SITE}/feed.xml", "parse_feed")
    response = XmlResponse(url=request.url, body=body, headers={"Content-Type": content_type}, request=request)
    return requests_of(spider.parse_feed(response))


def test_a_feed_s_charset_from_the_http_header_is_used_when_its_xml_declares_none(context: CrawlContext) -> None:
    body = _rss(_item("سجن صيدنايا: شهادات المعتقلين", f"{SITE}/a.html"), encoding="windows-1256", declared=False)
    found = _feed_requests(context, body, "application/rss+xml; charset=windows-1256")
    assert [r.meta["hint_title"] for r in found] == ["سجن صيدنايا: شهادات المعتقلين"]


def test_a_link_s_words_are_read_by_the_prefilter_decoded(context: CrawlContext) -> None:
    slug = quote("سجن-صيدنايا-شهادات")  # the name only in the link, percent-encoded as feeds write it
    cyrillic = quote("сирия-массовое-захоронение-крематорий")  # a region word and a co-term, in Russian
    body = _rss(_item("Testimonies", f"{SITE}/news/{slug}"), _item("Report", f"{SITE}/world/{cyrillic}"))
    found = _feed_requests(context, body)
    assert len(found) == 2 and context.summary.prefiltered == 0
    assert context.summary.prefilter_kept == {"name": 1, "context": 1}


def test_a_feed_served_as_text_html_is_still_read_as_a_feed(context: CrawlContext) -> None:
    body = _rss(_item("Sednaya prison: what the detainees said", f"{SITE}/news/testimony.html"))
    found = _feed_requests(context, b"\xef\xbb\xbf" + body, "text/html; charset=utf-8")
    assert [r.url for r in found] == [f"{SITE}/news/testimony.html"]
    assert context.summary.fetches["daily"] == {"ok": 1}


def test_an_entry_without_a_usable_link_is_counted_and_the_rest_of_the_feed_is_read(context: CrawlContext) -> None:
    body = _rss(
        _item("Sednaya prison: the first entry", "http://[daily.example/broken"),
        _item("Sednaya prison: no link at all", None),
        _item("Sednaya prison: a good entry", f"{SITE}/good.html"),
    )
    found = _feed_requests(context, body)
    assert [r.url for r in found] == [f"{SITE}/good.html"]
    assert context.summary.links_skipped == {"bad_link": 1, "no_link": 1}


def test_a_link_longer_than_scrapy_takes_is_counted_not_dropped_in_silence(context: CrawlContext) -> None:
    from scrapy.settings import Settings as ScrapySettings

    from crawlers.scrapy_settings import scrapy_settings

    spider = FeedSpider(context=context)
    spider.settings = ScrapySettings(scrapy_settings(context.config))
    limit = spider.settings.getint("URLLENGTH_LIMIT")
    assert limit >= 8192  # a percent-encoded Arabic slug of a long headline passes 2083 characters
    assert spider.article_request(f"{SITE}/news/{quote('صيدنايا-' * 300)}", source="daily") is None
    assert context.summary.links_skipped == {"too_long": 1}
    assert spider.article_request(f"{SITE}/news/{quote('صيدنايا-' * 40)}", source="daily") is not None


def _read(request: Request, response: Response) -> list[object]:
    """What Scrapy does with a listing's answer: its callback, with the request's keyword arguments."""
    assert request.callback is not None
    return list(request.callback(response, **request.cb_kwargs))


def _page_answer(request: Request, status: int) -> Response:
    body = _story_page().encode() if status == 200 else b"busy"
    return HtmlResponse(url=request.url, body=body, status=status, request=request)


@pytest.mark.parametrize("article_status", [503, 200])
def test_a_listing_s_validators_are_kept_only_once_its_articles_ended_for_good(
    context: CrawlContext, article_status: int
) -> None:
    spider = FeedSpider(context=context)
    feed = f"{SITE}/feed.xml"
    request = listing(spider, feed, "parse_feed")
    body = _rss(_item("Sednaya prison: what the detainees said", f"{SITE}/news/testimony.html"))
    headers = {"Content-Type": "application/rss+xml", "ETag": '"v1"'}
    (article,) = requests_of(iter(_read(request, XmlResponse(url=feed, body=body, headers=headers, request=request))))
    assert context.seen.validators(feed) == (None, None)  # the article is still on its way
    list(spider.parse_article(_page_answer(article, article_status)))
    if article_status == 503:  # failed: next run reads the feed whole and asks for the article again
        assert context.seen.validators(feed) == (None, None)
        assert listing(spider, feed, "parse_feed").headers.get("If-None-Match") is None
    else:
        assert context.seen.validators(feed) == ('"v1"', None)
        assert listing(spider, feed, "parse_feed").headers.get("If-None-Match") == b'"v1"'


def test_a_redirected_listing_keeps_its_validators_under_the_address_asked_for(context: CrawlContext) -> None:
    spider = SitemapSpider(context=context)
    request = listing(spider, f"{SITE}/sitemap.xml", "parse_sitemap")
    moved = request.replace(url=f"{SITE}/sitemaps/news.xml")
    moved.meta["redirect_urls"] = [request.url]
    answer_ = XmlResponse(url=moved.url, body=URLSET_OFF_TOPIC, headers={"ETag": '"s1"'}, request=moved)
    assert _read(moved, answer_) == []  # its one entry is not fetched: nothing to wait for
    assert context.seen.validators(f"{SITE}/sitemap.xml") == ('"s1"', None)


URLSET_OFF_TOPIC = (
    b'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
    b"<url><loc>https://daily.example/sport/league-restarts-after-the-break</loc></url></urlset>"
)


def test_a_sitemap_index_is_read_whole_every_time(context: CrawlContext) -> None:
    """A 304 from an index would hide a child sitemap that changed while the index did not (a static index of
    a daily news sitemap), and the child whose article failed: an index keeps no validators."""
    spider = SitemapSpider(context=context)
    context.seen.save_validators(f"{SITE}/sitemap.xml", '"old"', None)  # kept by an earlier version
    request = listing(spider, f"{SITE}/sitemap.xml", "parse_sitemap")
    assert request.headers.get("If-None-Match") == b'"old"'
    found = _read(request, answer(request, index(f"{SITE}/sitemap-news.xml")))
    assert [r.url for r in requests_of(iter(found))] == [f"{SITE}/sitemap-news.xml"]
    assert context.seen.validators(f"{SITE}/sitemap.xml") == (None, None)
    assert listing(spider, f"{SITE}/sitemap.xml", "parse_sitemap").headers.get("If-None-Match") is None


def test_a_page_announcing_feeds_is_read_whole_every_time(context: CrawlContext) -> None:
    spider = FeedSpider(context=context)
    request = listing(spider, f"{SITE}/feed.xml", "parse_feed")
    moved = (
        b'<html><head><link rel="alternate" type="application/rss+xml" href="/rss/news.xml"></head><body>Moved</body>'
    )
    headers = {"Content-Type": "text/html", "ETag": '"p1"'}
    found = _read(request, HtmlResponse(url=request.url, body=moved, headers=headers, request=request))
    assert [r.url for r in requests_of(iter(found))] == [f"{SITE}/rss/news.xml"]
    assert listing(spider, f"{SITE}/feed.xml", "parse_feed").headers.get("If-None-Match") is None


def test_a_failed_article_is_asked_for_again_by_the_next_poll_of_a_follow_crawl(context: CrawlContext) -> None:
    spider = FeedSpider(context=context)
    body = _rss(_item("Sednaya prison: what the detainees said", f"{SITE}/news/testimony.html"))
    headers = {"Content-Type": "application/rss+xml", "ETag": '"v1"'}
    for poll in (1, 2):
        request = listing(spider, f"{SITE}/feed.xml", "parse_feed")
        found = requests_of(
            iter(_read(request, XmlResponse(url=request.url, body=body, headers=headers, request=request)))
        )
        assert [r.url for r in found] == [f"{SITE}/news/testimony.html"], f"poll {poll}"
        list(spider.parse_article(_page_answer(found[0], 503)))  # busy again
    assert context.seen.validators(f"{SITE}/feed.xml") == (None, None)


def test_an_error_page_answered_for_a_feed_is_not_a_success(context: CrawlContext) -> None:
    spider = FeedSpider(context=context)
    request = listing(spider, f"{SITE}/feed.xml", "parse_feed")
    soft_404 = b"<!doctype html><html><body><h1>Page not found</h1><a href='/'>Home</a></body></html>"
    _read(request, HtmlResponse(url=request.url, body=soft_404, headers={"Content-Type": "text/html"}, request=request))
    assert context.summary.fetches["daily"] == {"not_a_feed": 1}


def test_undated_children_of_a_sitemap_index_are_followed_newest_first_by_their_address(
    context: CrawlContext,
) -> None:
    spider = SitemapSpider(context=context)
    months = [f"{year}-{month:02d}" for year in (2022, 2023, 2024) for month in range(1, 13)]  # oldest first
    root = listing(spider, f"{SITE}/sitemap.xml", "parse_sitemap")
    followed = requests_of(spider.parse_sitemap(answer(root, index(*(f"{SITE}/sitemap-{m}.xml" for m in months)))))
    assert len(followed) == MAX_CHILD_SITEMAPS
    assert followed[0].url == f"{SITE}/sitemap-2024-12.xml" and f"{SITE}/sitemap-2022-01.xml" not in {
        r.url for r in followed
    }
    numbered = [f"{SITE}/post-sitemap{n or ''}.xml" for n in range(30)]  # a WordPress site: the last is newest
    followed = requests_of(spider.parse_sitemap(answer(root, index(*numbered))))
    assert followed[0].url == f"{SITE}/post-sitemap29.xml" and f"{SITE}/post-sitemap.xml" not in {
        r.url for r in followed
    }
    _, entries, _ = parse_sitemap(index(f"{SITE}/sitemap-2024-02-30.xml", f"{SITE}/sitemap-2023-12.xml").encode())
    assert [e.loc.rsplit("/", 1)[1] for e in entries] == ["sitemap-2024-02-30.xml", "sitemap-2023-12.xml"]


SECTION_PAGE = f"""<!doctype html><html><head><title>Syria - Daily Example</title>
<link rel="alternate" type="application/rss+xml" title="Syria" href="/syria/feed.xml">
<link rel="stylesheet" href="/style.css"></head><body>
<header><nav><a href="/2024/12/09/a-menu-link-to-sednaya-prison-coverage">Sednaya prison coverage</a></nav></header>
<main><h1>Syria</h1><ul>
<li><a href="/2024/12/10/families-search-sednaya-prison">Families search Sednaya prison for the missing</a></li>
<li><a href="/2024/12/11/guards-held-at-the-border"><img src="/guards.jpg" alt=""></a>
<a href="/2024/12/11/guards-held-at-the-border">Former Sednaya prison guards held at the border</a></li>
<li><a href="{SITE}/news/sednaya-prison-archive-opened-to-investigators.html">The archive is opened</a></li>
<li><a href="/story.php?id=48213" title="Sednaya prison guards detained">&#160;</a></li>
<li><a href="/sport/league-restarts-after-the-break">League restarts after the break</a></li>
<li><a href="/tag/sednaya-prison">Sednaya prison</a> <a href="/about">About</a></li>
<li><a href="https://elsewhere.example/2024/12/10/sednaya-prison-families">Sednaya prison families</a></li>
</ul></main><footer><a href="/2024/01/01/sednaya-prison-in-the-footer">Sednaya prison footer</a></footer>
</body></html>"""


def test_a_feed_that_answers_a_web_page_is_read_through_its_feeds_and_its_article_links(
    context: CrawlContext,
) -> None:
    spider = FeedSpider(context=context)
    request = listing(spider, f"{SITE}/feed.xml", "parse_feed")
    page = HtmlResponse(
        url=f"{SITE}/syria/", body=SECTION_PAGE.encode(), headers={"Content-Type": "text/html"}, request=request
    )
    found = requests_of(iter(_read(request, page)))
    assert [(r.url, r.meta["kind"]) for r in found] == [
        (f"{SITE}/syria/feed.xml", "listing"),  # the feed it announces
        (f"{SITE}/2024/12/10/families-search-sednaya-prison", "article"),
        (f"{SITE}/2024/12/11/guards-held-at-the-border", "article"),  # its picture's link has no text; the next has
        (f"{SITE}/news/sednaya-prison-archive-opened-to-investigators.html", "article"),  # its words name it
        (f"{SITE}/story.php?id=48213", "article"),  # the title attribute names it
    ]  # not the menu, the footer, a tag page, another site, or the league (the prefilter)
    assert context.summary.fetches["daily"]["html_page"] == 1
    assert context.summary.prefiltered == 1
    # the announced feed, answering a page again, is not asked for feeds a second time
    again = HtmlResponse(
        url=found[0].url, body=SECTION_PAGE.encode(), headers={"Content-Type": "text/html"}, request=found[0]
    )
    assert [r.meta["kind"] for r in requests_of(iter(_read(found[0], again)))] == []  # links claimed already


def test_a_source_the_registry_gives_only_a_home_page_is_read_from_it(settings: Settings, tmp_path: Path) -> None:
    registry = tmp_path / "sources.toml"
    registry.write_text(
        REGISTRY.replace(f'feeds = ["{SITE}/feed.xml"]\nsitemaps = ["{SITE}/sitemap.xml"]\n', "")
        + '\n[[source]]\nid = "reports"\nname = "R"\nhome = "https://reports.example/"\nlang = "en"\n'
        'country = "GB"\ntype = "other"\nsearch_only = "PDF reports, no feed"\n',
        encoding="utf-8",
    )
    bus = EmbeddedBus(settings.data_dir / "bus.sqlite3")
    context = CrawlContext(
        crawl_config(settings.replace(sources_file=registry)), bus, PrometheusMetrics(), raw=make_raw_store(settings)
    )
    try:
        spider = FeedSpider(context=context)
        assert [target for target, _ in spider.poll_targets()] == ["daily"]  # not the one that says why
        assert [r.url for r in spider.requests_for("daily")] == [f"{SITE}/"]
    finally:
        context.close()
        bus.close()
