"""Property tests of the crawl parsers: on any input they return or raise their own documented error."""

from __future__ import annotations

import base64

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from crawlers import gdelt_api, google_news
from crawlers.errors import ExtractionError, FeedError
from crawlers.extraction import date_from_url, extract, parse_date
from crawlers.relevance import RelevanceFilter
from crawlers.source_check import read_listing
from crawlers.spiders.sitemaps import parse_sitemap
from sednaya_monitor.settings import Settings
from stream.near_duplicate import syndication_text
from stream.topic import load_topic

RELEVANCE = RelevanceFilter(load_topic(Settings().topic_file))
html_like = st.one_of(
    st.text(max_size=400),
    st.builds(
        lambda title, body: f"<html><head><title>{title}</title></head><body><p>{body}</p></body></html>",
        st.text(max_size=60),
        st.text(max_size=600),
    ),
)


@given(st.text(max_size=80))
def test_parse_date_returns_aware_utc_or_none(value: str) -> None:
    parsed = parse_date(value)
    assert parsed is None or parsed.utcoffset() is not None


@given(st.text(max_size=120))
def test_date_from_url_never_raises(path: str) -> None:
    date_from_url("https://x.test/" + path)


@given(st.binary(max_size=600))
def test_parse_sitemap_raises_only_feed_error(body: bytes) -> None:
    try:
        parse_sitemap(body)
    except FeedError as exc:
        assert exc.outcome == "malformed_xml"


@given(st.integers(min_value=100, max_value=599), st.binary(max_size=400))
def test_parse_artlist_raises_only_feed_error(status: int, body: bytes) -> None:
    try:
        articles, _ = gdelt_api.parse_artlist("https://api.test/doc", status, body)
    except FeedError as exc:
        assert exc.outcome in {"degraded", "malformed_json"}
    else:
        assert status < 400 and all(a.url for a in articles)


@pytest.mark.timeout(120)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(html_like)
def test_extract_raises_only_extraction_error(html: str) -> None:
    try:
        result = extract(html, url="https://x.test/a/b")
    except ExtractionError as exc:
        assert exc.reason in {"not_html", "bad_encoding", "listing_page", "too_short"}
    else:
        assert len(result.text) >= 300


@given(st.text(max_size=300), st.text(max_size=300))
def test_relevance_score_is_in_unit_interval(title: str, text: str) -> None:
    result = RELEVANCE.score(title, text)
    assert 0.0 <= result.score <= 1.0
    assert (result.score == 0.0) or result.terms


wire_like = st.lists(
    st.one_of(
        st.text(max_size=80),
        st.sampled_from(["DAMASCUS (Reuters) - ", "(AFP) ", "By Jane Doe", "Read more: x", "— AFP", "اقرأ أيضا"]),
    ),
    max_size=8,
).map("\n".join)


@given(wire_like)
def test_syndication_text_is_idempotent(text: str) -> None:
    once = syndication_text(text)
    assert syndication_text(once) == once, f"{text!r} -> {once!r}"


JSON_FEED = '{"version": "https://jsonfeed.org/version/1", "items": [%s]}'


@given(st.text(max_size=300))
@example("{")
@example(JSON_FEED % '{"url": "x", "date_published": "9999-12-31T23:59:59-23:59"}')  # past datetime's range
@example(JSON_FEED % '{"url": "x", "date_published": "31.02.2024"}, 7')
def test_prefilter_and_listing_reader_never_raise_other_errors(text: str) -> None:
    assert RELEVANCE.prefilter(text) in {None, "name", "context"}
    try:
        read_listing(text.encode("utf-8"), max_bytes=10_000)
    except FeedError as exc:
        assert exc.outcome in {"malformed_xml", "malformed_json", "too_large"}  # JSON: a JSON Feed or not


@given(st.binary(max_size=200))
def test_google_news_decoding_never_raises(raw: bytes) -> None:
    ident = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    url = google_news.publisher_url(f"https://news.google.com/rss/articles/{ident}")
    assert url is None or url.startswith(("http://", "https://"))
