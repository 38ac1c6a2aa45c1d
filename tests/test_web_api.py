"""The search page and JSON API over a real embedded store, through a real server on loopback."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import feedparser
import pytest
import requests
from openapi_spec_validator import validate

from indexer.alerting.alerts import Alert
from indexer.alerting.ledger import AlertLedger
from indexer.store import SearchRequest, SearchStore
from indexer.store_embedded import EmbeddedStore
from sednaya_monitor.pipeline import Pipeline
from sednaya_monitor.prometheus_metrics import PrometheusMetrics
from sednaya_monitor.settings import Settings, load_settings
from sednaya_monitor.web import RunningServer, make_server, serve_in_thread
from sednaya_monitor.wiring import elastic_config
from stream.article import Article
from stream.embedding import SentenceTransformerEmbedder
from stream.ingest import read_jsonl
from tests.store_fixtures import NoidaServer, elastic_settings
from tests.web_fixtures import API_TOKEN, HOSTILE_SOURCE, HOSTILE_TEXT, HOSTILE_TITLE, RAW_HTML, NewsWeb

TIMEOUT = 30  # seconds per HTTP request; the server answers in milliseconds, a loaded CI box slower
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}


def get(server: RunningServer, path: str, **kwargs: object) -> requests.Response:
    return requests.get(server.url + path, timeout=TIMEOUT, **kwargs)  # type: ignore[arg-type]


# --- operations ------------------------------------------------------------------------------------


def test_healthz_counts_the_stored_articles(web_server: RunningServer, web_news: NewsWeb) -> None:
    r = get(web_server, "/healthz")
    assert r.status_code == 200
    assert r.json() == {"status": "green", "articles": len(web_news.articles)}


def test_metrics_expose_the_registry_and_count_requests(web_server: RunningServer) -> None:
    get(web_server, "/?q=crematorium")
    get(web_server, "/stories/nope")
    text = get(web_server, "/metrics").text
    assert 'sednaya_http_requests_total{method="GET",route="page_search",status="200"} 1.0' in text
    assert 'sednaya_http_requests_total{method="GET",route="page_story",status="404"} 1.0' in text
    assert "sednaya_articles_total" in text  # the process registry (PrometheusMetrics)
    promtool = shutil.which("promtool")
    assert promtool is not None, "promtool comes with Debian's prometheus package"
    lint = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60, check=False
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr


def test_binds_loopback_by_default(web_settings: Settings, web_store: EmbeddedStore) -> None:
    server = make_server(web_settings, web_store, PrometheusMetrics(), port=0)
    try:
        assert server.server_address[0] == "127.0.0.1"
        assert web_settings.serve_host == "127.0.0.1"
    finally:
        server.server_close()


def test_concurrent_requests_and_head(web_server: RunningServer) -> None:
    paths = ["/", "/?q=Sednaya", "/stories", "/stories/story-crematorium", "/api/search?q=prison", "/timeline"] * 4
    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(lambda p: get(web_server, p).status_code, paths))
    assert statuses == [200] * len(paths)
    head = requests.head(web_server.url + "/stories/story-crematorium", timeout=TIMEOUT)
    assert head.status_code == 200
    assert head.content == b""
    assert int(head.headers["Content-Length"]) > 1000


def test_binding_beyond_loopback_warns(
    web_settings: Settings, web_store: EmbeddedStore, caplog: pytest.LogCaptureFixture
) -> None:
    server = make_server(web_settings, web_store, PrometheusMetrics(), host="0.0.0.0", port=0)
    server.server_close()
    assert "serving beyond loopback" in caplog.text


def test_two_servers_share_one_registry(web_settings: Settings, web_store: EmbeddedStore) -> None:
    metrics = PrometheusMetrics()
    with (
        serve_in_thread(web_settings, web_store, metrics, port=0) as a,
        serve_in_thread(web_settings, web_store, metrics, port=0) as b,
    ):
        assert get(a, "/healthz").status_code == 200
        assert get(b, "/healthz").status_code == 200
    sample = metrics.registry.get_sample_value(
        "sednaya_http_requests_total", {"route": "healthz", "method": "GET", "status": "200"}
    )
    assert sample == 2.0


# --- search API --------------------------------------------------------------------------------------


def test_api_search_flat_with_facets_and_highlights(web_server: RunningServer, web_news: NewsWeb) -> None:
    r = get(web_server, "/api/search", params={"q": "crematorium", "facets": "true"})
    assert r.status_code == 200
    body = r.json()
    assert body["view"] == "flat"
    ids = {h["article"]["id"] for h in body["hits"]}
    assert web_news.articles["wire"].id in ids
    assert web_news.articles["copy"].id in ids
    assert body["total"] == len(body["hits"]) == 3  # wire, copy, French (crématorium folds to crematorium)
    langs = {f["value"]: f["count"] for f in body["facets"]["lang"]}
    assert langs == {"en": 2, "fr": 1}
    assert any("<mark>" in frag for h in body["hits"] for frag in h["highlights"].get("text", []))
    assert "embedding" not in body["hits"][0]["article"]


@pytest.mark.parametrize("q", ["", "lang:en", "NOT crematorium"])
def test_api_and_page_show_a_search_without_words_newest_first(web_server: RunningServer, q: str) -> None:
    """The default sort is relevance; with no word to rank by it is the date order (it was id order)."""
    for view in ("flat", "stories"):
        by_default = get(web_server, "/api/search", params={"q": q, "view": view}).json()
        by_date = get(web_server, "/api/search", params={"q": q, "view": view, "sort": "date"}).json()
        key = "hits" if view == "flat" else "groups"
        assert len(by_default[key]) >= 2
        assert by_default[key] == by_date[key]
        if view == "flat":
            published = [h["article"]["published"] or h["article"]["fetched_at"] for h in by_default["hits"]]
            assert published == sorted(published, reverse=True)
    page = get(web_server, "/", params={"q": q}).text
    stories = [g["story_id"] for g in by_date["groups"]]
    shown = sorted(stories, key=lambda sid: page.index(f'<a href="/stories/{sid}">'))
    assert shown == stories


def test_api_search_by_story_groups_articles(web_server: RunningServer) -> None:
    body = get(web_server, "/api/search", params={"q": "Sednaya OR صيدنايا", "view": "stories"}).json()
    groups = {g["story_id"]: g for g in body["groups"]}
    assert set(groups) >= {"story-crematorium", "story-families", "story-report", "story-hostile"}
    crem = groups["story-crematorium"]
    assert crem["story"]["article_count"] == 4
    assert set(crem["languages"]) >= {"ar", "en"}
    assert body["hits"] == []


def test_api_search_arabic_matches_spelling_variants(web_server: RunningServer, web_news: NewsWeb) -> None:
    # the query uses Arabic yeh; the families article is spelled with Persian yeh (صیدنایا)
    body = get(web_server, "/api/search", params={"q": "صيدنايا", "lang": "ar"}).json()
    ids = {h["article"]["id"] for h in body["hits"]}
    assert ids == {web_news.articles["families_ar"].id, web_news.articles["arabic"].id}


def test_api_search_filters_by_source_type_and_dates(web_server: RunningServer, web_news: NewsWeb) -> None:
    body = get(web_server, "/api/search", params={"source_type": "wire"}).json()
    assert {h["article"]["source"] for h in body["hits"]} == {"wire-example"}
    body = get(web_server, "/api/search", params={"since": "2024-01-01", "until": "2024-12-09"}).json()
    assert {h["article"]["id"] for h in body["hits"]} == {
        web_news.articles["families_ar"].id,
        web_news.articles["families_en"].id,
    }


def test_api_search_pages_with_a_cursor(web_server: RunningServer, web_news: NewsWeb) -> None:
    seen: list[str] = []
    cursor: str | None = None
    for _ in range(10):
        params = {"sort": "date", "size": "4", **({"after": cursor} if cursor else {})}
        body = get(web_server, "/api/search", params=params).json()
        seen += [h["article"]["id"] for h in body["hits"]]
        cursor = body["next"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(a.id for a in web_news.articles.values())
    assert len(seen) == len(set(seen))


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({"q": "crematorium AND"}, "position 15"),
        ({"q": "(Sednaya"}, "position"),
        ({"size": "0"}, "parameter 'size'=0"),
        ({"size": "ten"}, "parameter 'size'='ten'"),
        ({"since": "yesterday"}, "parameter 'since'='yesterday'"),
        ({"since": "2024-02-01", "until": "2024-01-01"}, "'since' (2024-02-01) is after 'until'"),
        ({"after": "not-a-cursor"}, "parameter 'after'"),
        ({"after": "WyJ4Il0", "sort": "date"}, "parameter 'after'"),  # ["x"]: valid token, wrong shape
        ({"view": "table"}, "parameter 'view'='table'"),
        ({"q": "NOT " * 36 + "prison"}, "nested deeper than 20 levels"),  # was a 500 (SQLite's parser stack)
        ({"q": "x -(y OR " * 7 + "prison" + ")" * 7}, "nested deeper than 20 levels of AND/OR/NOT"),
    ],
)
def test_api_bad_requests_are_400_naming_the_input(
    web_server: RunningServer, params: dict[str, str], needle: str
) -> None:
    r = get(web_server, "/api/search", params=params)
    assert r.status_code == 400, r.text
    assert needle in r.json()["error"]


def test_bad_query_json_carries_the_position(web_server: RunningServer) -> None:
    body = get(web_server, "/api/search", params={"q": "crematorium AND"}).json()
    assert body["position"] == 15
    assert body["error"] == "query 'crematorium AND': expected a term after 'AND' at position 15 (end of query)"


# --- stories and articles API --------------------------------------------------------------------------


def test_api_stories_story_and_article(web_server: RunningServer, web_news: NewsWeb) -> None:
    stories = get(web_server, "/api/stories").json()["stories"]
    assert stories[0]["id"] == "story-families"  # newest last_seen first
    story = get(web_server, "/api/stories/story-crematorium").json()
    assert story["story"]["languages"] == ["ar", "en", "fr"]
    assert story["articles"][0]["id"] == web_news.articles["wire"].id  # oldest first
    wire = web_news.articles["wire"]
    article = get(web_server, f"/api/articles/{wire.id}").json()["article"]
    assert article["title"] == wire.title
    assert get(web_server, "/api/articles/ffff").status_code == 404
    missing = get(web_server, "/api/stories/no-such-story")
    assert missing.status_code == 404
    assert missing.json()["error"] == "no story 'no-such-story'"


def test_api_articles_lists_everything_newest_first_by_pages(web_server: RunningServer, web_news: NewsWeb) -> None:
    first = get(web_server, "/api/articles", params={"size": "5"}).json()
    assert first["total"] == len(web_news.articles)
    assert first["articles"][0]["id"] == web_news.articles["families_en"].id  # 2024-12-09 13:40, the newest
    rest = get(web_server, "/api/articles", params={"size": "5", "after": first["next"]}).json()
    ids = [a["id"] for a in first["articles"] + rest["articles"]]
    assert sorted(ids) == sorted(a.id for a in web_news.articles.values())
    only_ar = get(web_server, "/api/articles", params={"lang": "ar"}).json()["articles"]
    assert {a["lang"] for a in only_ar} == {"ar"}
    refused = get(web_server, "/api/articles", params={"q": "x"})
    assert refused.status_code == 400
    assert refused.json()["error"] == "parameter 'q' is not accepted here: use /api/search"


def test_chunked_bodies_are_refused_and_the_connection_closed(web_server: RunningServer) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"name": "x", '
        yield b'"query": "y"}'

    r = requests.post(web_server.url + "/api/watchlists", data=chunks(), headers=AUTH, timeout=TIMEOUT)
    assert r.status_code == 411
    assert r.headers["Connection"] == "close"


def test_oversized_body_is_413(web_server: RunningServer) -> None:
    r = requests.post(web_server.url + "/api/watchlists", data=b"x" * 70_000, headers=AUTH, timeout=TIMEOUT)
    assert r.status_code == 413
    assert "over the limit of 65536" in r.json()["error"]


def test_unknown_route_and_method(web_server: RunningServer) -> None:
    assert get(web_server, "/api/nothing").status_code == 404
    r = requests.put(web_server.url + "/api/search", timeout=TIMEOUT)
    assert r.status_code == 405
    assert "PUT" in r.json()["error"]


# --- pages -------------------------------------------------------------------------------------------


def test_search_page_groups_by_story_with_badges_and_snippet(web_server: RunningServer) -> None:
    r = get(web_server, "/", params={"q": "crematorium"})
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "text/html; charset=utf-8"
    assert "script-src" not in r.headers["Content-Security-Policy"]  # default-src 'none': no script runs
    page = r.text
    assert '<a href="/stories/story-crematorium">US says Syria built a crematorium at Sednaya prison</a>' in page
    assert '<span class="count">4 articles</span>' in page
    assert '<span class="sources">4 sources</span>' in page
    assert '<span class="badge badge-lang">ar</span>' in page
    assert "<mark>crematorium</mark>" in page or "<mark>crématorium</mark>" in page
    assert 'href="/?q=crematorium&amp;view=flat">Show flat results</a>' in page
    assert '<svg class="chart"' in page


def test_search_page_flat_and_arabic_is_right_to_left(web_server: RunningServer) -> None:
    page = get(web_server, "/", params={"q": "صيدنايا", "view": "flat"}).text
    assert '<section class="results results-flat">' in page
    assert '<article class="result hit" lang="ar" dir="rtl">' in page
    assert "عائلات المعتقلين تتوافد إلى سجن صیدنایا بحثا عن أبنائها" in page
    assert "<mark>صیدنایا</mark>" in page  # highlighted in its original spelling


def test_search_page_bad_query_is_400_with_the_message(web_server: RunningServer) -> None:
    r = get(web_server, "/", params={"q": "Sednaya AND (crematorium"})
    assert r.status_code == 400
    assert "at position" in r.text
    assert 'value="Sednaya AND (crematorium"' in r.text  # the form keeps what was typed


def test_hostile_article_renders_as_text_everywhere(web_server: RunningServer, web_news: NewsWeb) -> None:
    search = get(web_server, "/", params={"q": "markup"}).text
    story = get(web_server, "/stories/story-hostile").text
    flat = get(web_server, "/", params={"q": "markup", "view": "flat"}).text
    stories = get(web_server, "/stories").text
    for page in (search, story, flat, stories):
        assert "<script" not in page
        assert "<b>bold</b>" not in page
        assert "<img" not in page
        assert "javascript:" not in page  # the unsafe URL is shown as text, never as a link
        assert "&lt;script&gt;alert(&#x27;title&#x27;)&lt;/script&gt; Sednaya &lt;b&gt;bold&lt;/b&gt;" in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in search
    assert "&lt;i&gt;evil&quot;source&lt;/i&gt;" in search
    api = get(web_server, "/api/stories/story-hostile").json()
    assert api["articles"][0]["title"] == HOSTILE_TITLE
    assert api["articles"][0]["text"] == HOSTILE_TEXT
    assert api["articles"][0]["source"] == HOSTILE_SOURCE


def test_story_page_folds_duplicates_and_links_raw_copy(web_server: RunningServer, web_news: NewsWeb) -> None:
    page = get(web_server, "/stories/story-crematorium").text
    wire, copy = web_news.articles["wire"], web_news.articles["copy"]
    assert page.count('<li class="timeline-item"') == 3  # the copy is folded, not a timeline item
    details = page[page.index('<details class="dups">') : page.index("</details>")]
    assert copy.url in details
    assert "1 duplicate " in details
    assert f'<a href="/raw/{wire.content_sha256}">stored copy</a>' in page
    assert '<div class="title" lang="ar" dir="rtl">' in page
    assert '<th scope="row">quotidien</th>' in page
    raw = get(web_server, f"/raw/{wire.content_sha256}")
    assert raw.status_code == 200
    assert raw.content == RAW_HTML
    assert raw.headers["Content-Security-Policy"].startswith("sandbox")
    assert get(web_server, "/raw/" + "0" * 64).status_code == 404
    assert get(web_server, "/raw/..%2F..%2Fetc%2Fpasswd").status_code == 404


def test_stories_and_timeline_pages(web_server: RunningServer) -> None:
    stories = get(web_server, "/stories").text
    assert stories.index("story-families") < stories.index("story-crematorium")
    timeline = get(web_server, "/timeline").text
    assert "Articles per month by language" in timeline  # 2017..2024 is binned by month
    assert 'data-day="2017-05-01" data-lang="ar" data-count="1"' in timeline
    assert "New stories per month" in timeline
    english = get(web_server, "/timeline", params={"q": "Sednaya", "lang": "en"}).text
    assert 'data-lang="ar"' not in english
    assert 'data-day="2017-05-01" data-lang="en" data-count="2"' in english  # wire + its copy
    bad = get(web_server, "/timeline", params={"q": "NOT"})
    assert bad.status_code == 400
    assert "at position 3" in bad.text
    assert 'action="/timeline"' in bad.text


def test_missing_story_page_is_404(web_server: RunningServer) -> None:
    r = get(web_server, "/stories/%3Cscript%3E")
    assert r.status_code == 404
    assert "no story &#x27;&lt;script&gt;&#x27;" in r.text


# --- watchlists, alerts, Atom -----------------------------------------------------------------------------


def test_watchlist_writes_need_the_token(web_server: RunningServer) -> None:
    body = {"name": "sednaya", "query": "Sednaya OR صيدنايا", "webhooks": ["https://hooks.example.org/hook"]}
    url = web_server.url + "/api/watchlists"
    assert requests.post(url, json=body, timeout=TIMEOUT).status_code == 401
    wrong = requests.post(url, json=body, headers={"Authorization": "Bearer nope"}, timeout=TIMEOUT)
    assert wrong.status_code == 401
    assert wrong.json()["error"] == "the bearer token is not valid"
    created = requests.post(url, json=body, headers=AUTH, timeout=TIMEOUT)
    assert created.status_code == 201, created.text
    assert len(created.json()["watchlist"]["secret"]) == 64  # generated HMAC secret, shown once
    listed = get(web_server, "/api/watchlists").json()["watchlists"]
    assert [w["name"] for w in listed] == ["sednaya"]
    assert "secret" not in listed[0]
    assert requests.post(url, json=body, headers=AUTH, timeout=TIMEOUT).status_code == 409
    bad = requests.post(url, json={"name": "x y", "query": "a"}, headers=AUTH, timeout=TIMEOUT)
    assert bad.status_code == 400
    assert "watchlist name 'x y'" in bad.json()["error"]
    wrong_type = requests.post(
        url, json={"name": "t", "query": "a", "webhooks": "http://x"}, headers=AUTH, timeout=TIMEOUT
    )
    assert wrong_type.status_code == 400
    assert wrong_type.json()["error"] == "request body: field 'webhooks' must be a list of strings, got \"http://x\""
    bad_query = requests.post(url, json={"name": "broken", "query": "a AND"}, headers=AUTH, timeout=TIMEOUT)
    assert bad_query.status_code == 400
    assert "position" in bad_query.json()["error"]
    assert requests.delete(url + "/sednaya", timeout=TIMEOUT).status_code == 401
    assert requests.delete(url + "/sednaya", headers=AUTH, timeout=TIMEOUT).status_code == 204
    assert requests.delete(url + "/sednaya", headers=AUTH, timeout=TIMEOUT).status_code == 404


def test_watchlist_targets_masked_without_the_token_and_internal_targets_refused(web_server: RunningServer) -> None:
    url = web_server.url + "/api/watchlists"
    slack = "https://hooks.slack.com/services/T000/B000/very-secret-part"
    body = {"name": "desk", "query": "Sednaya", "webhooks": [slack], "emails": ["desk@example.org"], "slack": True}
    assert requests.post(url, json=body, headers=AUTH, timeout=TIMEOUT).status_code == 201
    for anonymous in (
        get(web_server, "/api/watchlists").json()["watchlists"][0],
        get(web_server, "/api/watchlists/desk").json()["watchlist"],
        requests.get(url + "/desk", headers={"Authorization": "Bearer nope"}, timeout=TIMEOUT).json()["watchlist"],
    ):
        assert anonymous["webhooks"] == ["https://hooks.slack.com/…"] and anonymous["emails"] == ["…@example.org"]
        assert anonymous["masked"] is True and "very-secret-part" not in json.dumps(anonymous)
    full = requests.get(url, headers=AUTH, timeout=TIMEOUT).json()["watchlists"][0]
    assert full["webhooks"] == [slack] and full["emails"] == ["desk@example.org"] and "secret" not in full
    for target in ("http://127.0.0.1:22/", "http://169.254.169.254/latest/meta-data/", "http://10.0.0.5/hook"):
        refused = requests.post(
            url, json={"name": "inside", "query": "Sednaya", "webhooks": [target]}, headers=AUTH, timeout=TIMEOUT
        )
        assert refused.status_code == 400, refused.text
        assert target in refused.json()["error"] and "alert_allow_private_targets" in refused.json()["error"]
    assert [w["name"] for w in get(web_server, "/api/watchlists").json()["watchlists"]] == ["desk"]


def test_writes_refused_when_no_token_is_set(data_dir: Path, web_store: EmbeddedStore) -> None:
    settings = load_settings(environ={}, overrides={"data_dir": data_dir})
    with serve_in_thread(settings, web_store, PrometheusMetrics(), port=0) as server:
        r = requests.post(
            server.url + "/api/watchlists",
            json={"name": "x", "query": "Sednaya"},
            headers={"Authorization": "Bearer "},
            timeout=TIMEOUT,
        )
    assert r.status_code == 403
    assert "set api_token" in r.json()["error"]


def test_watchlists_page_alerts_and_atom_feed(
    web_server: RunningServer, web_settings: Settings, web_news: NewsWeb
) -> None:
    created = requests.post(
        web_server.url + "/api/watchlists",
        json={"name": "crematorium", "query": "crematorium OR محرقة", "lang": "en"},
        headers=AUTH,
        timeout=TIMEOUT,
    )
    assert created.status_code == 201
    wire = web_news.articles["wire"]
    ledger = AlertLedger.in_data_dir(web_settings.data_dir)
    try:
        alert = Alert(
            watchlist="crematorium",
            story_id="story-crematorium",
            story_title="<b>US says</b> Syria built a crematorium",
            event_kind="created",
            article_id=wire.id,
            title=wire.title,
            source=wire.source,
            lang=wire.lang,
            url=wire.url,
            published=wire.published,
            matched_terms=("crematorium",),
            link=f"{web_settings.public_url}/stories/story-crematorium",
            at=datetime(2017, 5, 15, 16, 10, tzinfo=UTC),
        )
        assert ledger.record_alert(alert, mode="instant", targets=[]) is not None
    finally:
        ledger.close()
    page = get(web_server, "/watchlists").text
    assert '<a class="atom" href="/watchlists/crematorium/atom.xml"' in page
    assert "&lt;b&gt;US says&lt;/b&gt; Syria built a crematorium" in page
    assert '<span class="badge badge-filter">lang:en</span>' in page
    alerts = get(web_server, "/api/alerts", params={"watchlist": "crematorium"}).json()["alerts"]
    assert [a["story_id"] for a in alerts] == ["story-crematorium"]
    assert get(web_server, "/api/alerts").json()["alerts"] == alerts
    feed_response = get(web_server, "/watchlists/crematorium/atom.xml")
    assert feed_response.status_code == 200
    assert feed_response.headers["Content-Type"].startswith("application/atom+xml")
    feed = feedparser.parse(feed_response.content)
    assert not feed.bozo, feed.bozo_exception
    assert feed.version == "atom10"
    assert [e.title for e in feed.entries] == ["<b>US says</b> Syria built a crematorium"]
    assert get(web_server, "/watchlists/nope/atom.xml").status_code == 404
    alternate = next(link.href for link in feed.feed.links if link.rel == "alternate")
    assert alternate.endswith("/watchlists/crematorium")
    one = get(web_server, "/watchlists/crematorium")
    assert one.status_code == 200
    assert one.text.count('<li class="story-item watchlist"') == 1
    assert get(web_server, "/watchlists/nope").status_code == 404


# --- OpenAPI and fuzzing ------------------------------------------------------------------------------------


def test_openapi_document_validates(web_server: RunningServer) -> None:
    doc = get(web_server, "/api/openapi.json").json()
    validate(doc)
    assert set(doc["paths"]) == {
        "/api/search",
        "/api/stories",
        "/api/stories/{story_id}",
        "/api/articles",
        "/api/articles/{article_id}",
        "/api/watchlists",
        "/api/watchlists/{name}",
        "/api/alerts",
    }


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_schemathesis_finds_no_server_error(web_server: RunningServer, tmp_path: Path) -> None:
    """Fuzz every operation of the OpenAPI document against the live server (bounded examples).

    Beyond "no 5xx" the run checks that answers conform to the document (status codes, content
    types, response schemas), that invalid input is rejected and that writes need the token.
    """
    st = shutil.which("st") or shutil.which("schemathesis")
    assert st is not None, "schemathesis is a dev dependency"
    report = tmp_path / "report.json"
    proc = subprocess.run(  # fixed argv, loopback only
        [
            st,
            "run",
            f"{web_server.url}/api/openapi.json",
            "--url",
            web_server.url,
            "--checks",
            "all",  # no server error, and statuses, content types, bodies and auth as documented
            "--exclude-checks",
            "positive_data_acceptance",  # schema-valid watchlists can still fail Watchlist.validate (bad URL)
            "--max-examples",
            "25",
            "--seed",
            "11",
            "--workers",
            "1",
            "--request-timeout",
            "20",
            "--header",
            f"Authorization: Bearer {API_TOKEN}",
            "--generation-database",
            "none",
            "--report",
            "json",
            "--report-json-path",
            str(report),
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=170,
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    summary = json.loads(report.read_text(encoding="utf-8"))
    assert summary["operations"]["tested"] == 10  # every operation of the document was exercised
    assert summary["test_cases"]["generated"] >= 100
    assert summary["failures"] == [], summary["failures"]


# --- the serve command -------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_serve_command_answers_on_loopback(web_settings: Settings, web_store: EmbeddedStore) -> None:
    web_store.close()  # the command opens the store itself
    cmd = [
        sys.executable,
        "-c",
        "from sednaya_monitor.cli import main; main()",
        "--data-dir",
        str(web_settings.data_dir),
        "serve",
        "--port",
        "0",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fixed argv
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("serving on http://127.0.0.1:"), line + (proc.stderr.read() if proc.stderr else "")
        base = line.split()[2].rstrip("/")
        deadline = time.monotonic() + 30
        while True:
            try:
                health = requests.get(base + "/healthz", timeout=5)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert health.json()["status"] == "green"
        stories = requests.get(base + "/api/stories", timeout=TIMEOUT).json()["stories"]
        assert len(stories) == 4
        page = requests.get(base + "/stories/" + quote("story-families"), timeout=TIMEOUT).text
        assert 'dir="rtl"' in page
    finally:
        proc.terminate()
        proc.wait(timeout=20)


# --- through the real pipeline ------------------------------------------------------------------------------

FIXTURE_ARTICLES = Path(__file__).parent / "fixtures" / "articles"


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_pages_over_a_store_filled_by_the_pipeline(settings: Settings, embedder: SentenceTransformerEmbedder) -> None:
    """Fixture articles go through embed -> cluster -> index (real model); the page shows the result."""
    articles: list[Article] = []
    for name in ("crematorium.jsonl", "arabic.jsonl"):
        lines = (FIXTURE_ARTICLES / name).read_text(encoding="utf-8").splitlines()
        for item in read_jsonl(lines):
            assert isinstance(item, Article), item
            articles.append(item)
    pipeline = Pipeline(settings, embedder=embedder)
    try:
        pipeline.publish(articles)
        summary = pipeline.drain()
        assert summary.indexed == len(articles)
        with serve_in_thread(settings, pipeline.store, pipeline.metrics, port=0) as server:
            page = get(server, "/", params={"q": "crematorium"}).text
            assert page.count('<article class="result story-group">') == 1
            assert '<span class="count">6 articles</span>' in page
            story_id = get(server, "/api/search", params={"q": "crematorium", "view": "stories"}).json()["groups"][0][
                "story_id"
            ]
            story = get(server, f"/stories/{quote(story_id, safe='')}").text
            assert story.count('<li class="timeline-item"') == 1  # the wire original; its copies are folded
            assert "5 duplicates" in story
            arabic = get(server, "/", params={"q": "صيدنايا", "view": "flat"}).text
            assert '<article class="result hit" lang="ar" dir="rtl">' in arabic
            metrics = get(server, "/metrics").text
            assert f'sednaya_articles_total{{stage="index",status="indexed"}} {float(len(articles))}' in metrics
    finally:
        pipeline.close()


# --- on the Elasticsearch adapter -------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_pages_over_the_elasticsearch_adapter(
    settings_factory: Callable[..., Settings], elastic_store: SearchStore, web_news: NewsWeb
) -> None:
    """The same pages over the Elasticsearch 8 adapter (noida-db stand-in: no highlights, so the page makes its own)."""
    assert not elastic_store.write_articles(list(web_news.articles.values()))
    elastic_store.write_stories(list(web_news.stories.values()))
    settings = settings_factory(api_token=API_TOKEN)
    with serve_in_thread(settings, elastic_store, PrometheusMetrics(), port=0) as server:
        page = get(server, "/", params={"q": "crematorium"}).text
        assert '<a href="/stories/story-crematorium">' in page
        assert "<mark>" in page  # the fallback snippet marks the query term
        arabic = get(server, "/", params={"q": "صيدنايا", "view": "flat"}).text
        assert arabic.count('<article class="result hit" lang="ar" dir="rtl">') == 2
        story = get(server, "/stories/story-crematorium").text
        assert story.count('<li class="timeline-item"') == 3
        hostile = get(server, "/", params={"q": "markup"}).text
        assert "<script" not in hostile
        assert "&lt;script&gt;alert(&#x27;title&#x27;)&lt;/script&gt;" in hostile
        bad = get(server, "/api/search", params={"q": "a OR"})
        assert bad.status_code == 400
        assert bad.json()["position"] == 4


@pytest.mark.timeout(120)
def test_a_query_the_elasticsearch_server_refuses_is_400_not_500(
    settings_factory: Callable[..., Settings], noida_server: NoidaServer, tmp_path: Path, web_news: NewsWeb
) -> None:
    """A search the server refuses for its query (400: beyond one of its limits) is the user's input at fault:
    the API and the page answer 400 naming the query, as for a syntax error. The client wraps the real one
    and adds to each article search a clause the server does not know, so the refusal is the server's own."""
    from elasticsearch import Elasticsearch

    from indexer.errors import QueryRefusedError
    from indexer.store_elastic import ElasticStore

    class RefusedQueryClient(Elasticsearch):
        def search(self, *args: Any, **kwargs: Any) -> Any:
            if str(kwargs.get("index", "")).endswith("-articles") and "refuse" in json.dumps(kwargs.get("query")):
                kwargs["query"] = {"bool": {"must": [kwargs["query"], {"no_such_query": {}}]}}
            return super().search(*args, **kwargs)

    config = elastic_config(elastic_settings(noida_server.url, tmp_path))
    store = ElasticStore(config, refresh=True, client=RefusedQueryClient(noida_server.url))
    store.ensure_ready()
    try:
        assert not store.write_articles(list(web_news.articles.values()))
        with pytest.raises(QueryRefusedError, match="query 'refuse this' refused by the search store: "):
            store.search(SearchRequest(query="refuse this"))
        with serve_in_thread(settings_factory(), store, PrometheusMetrics(), port=0) as server:
            api = get(server, "/api/search", params={"q": "refuse this"})
            assert api.status_code == 400, api.text
            assert api.json()["error"].startswith("query 'refuse this' refused by the search store: ")
            page = get(server, "/", params={"q": "refuse this"})
            assert page.status_code == 400
            assert "refused by the search store" in page.text
            assert get(server, "/api/search", params={"q": "crematorium"}).status_code == 200
    finally:
        store.wipe()
        store.close()
