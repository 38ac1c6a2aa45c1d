"""The spiders against the fixture news web (the demo web with tests/sites over it) on loopback,
through ``sednaya-monitor crawl``.

Run 1 crawls everything (feeds, sitemaps, GDELT and Google News stand-ins); the assertions read the
embedded bus, the crawl summary and the server's request log. Run 2 (same data directory, one new
article on the web) must publish only the new article and fetch no handled article again.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from crawlers.seen import SeenStore
from sednaya_monitor.settings import Settings
from stream.article import Article, parse_time
from stream.bus import H_ENTERED_AT, H_SCHEMA, Record
from stream.bus_embedded import EmbeddedBus
from stream.canonical_url import id_for_url
from tests.crawl_fixtures import TEST_SETTINGS, FixtureWeb, crawl_json, run_cli

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

# (site, path, lang, source, channel(s), date_source) of every on-topic article of run 1
EXPECTED = [
    ("en", "/2024/12/09/sednaya-survivors.html", "en", "levant-ledger", "feed|sitemap", "jsonld"),  # in both
    ("en", "/2024/12/10/white-helmets-search.html", "en", "levant-ledger", "feed", "meta"),
    ("en", "/2017/05/15/crematorium-claim.html", "en", "levant-ledger", "sitemap", "sitemap"),
    ("en", "/2024/12/11/families-search.html", "en", "levant-ledger", "search", "jsonld"),
    ("ar", "/news/2024/12/08/liberation.html", "ar", "sawt-al-sham", "feed", "meta"),
    ("ar", "/news/salt-rooms.html", "ar", "sawt-al-sham", "feed", "feed"),
    ("ar", "/news/2024/02/07/anniversary.html", "ar", "sawt-al-sham", "feed", "url"),
    ("fr", "/articles/abattoir-humain.html", "fr", "courrier-levant", "feed|search", "meta"),  # feed and GDELT
    ("fr", "/articles/visite-onu.html", "fr", "courrier-levant", "feed", "jsonld"),
    ("de", "/politik/sednaja-prozess.html", "de", "nahost-rundschau", "feed", "jsonld"),
    ("tr", "/dunya/sednaya-cezaevi-tuz-odalari.html", "tr", "dogu-haber", "feed", "meta"),
    ("tr", "/dunya/sednaya-idam-arsivi.html", "tr", "dogu-haber", "search", "meta"),
    # a multilingual wire: the Syria desk fetched whole, a short brief, a headline without the name
    # (region + event words), an Arabic piece naming Deir ez-Zor (دير is also "monastery")
    ("wire", "/en/syria/2024/12/12/vigil-at-the-gates.html", "en", "levant-wire", "feed", "meta"),
    ("wire", "/en/world/2024/12/12/sednaya-cells-mapped.html", "en", "levant-wire", "feed", "meta"),
    ("wire", "/en/briefs/2024/12/13/guards-detained.html", "en", "levant-wire", "feed", "meta"),
    ("wire", "/fr/monde/2024/12/13/charniers-damas.html", "fr", "levant-wire", "feed", "meta"),
    ("wire", "/ar/akhbar/2024/12/12/naql-dayr-alzour.html", "ar", "levant-wire", "feed", "meta"),
    # the wire story syndicated: three more copies (folded later by the embed stage's near-duplicates)
    ("en", "/2024/12/12/sednaya-cells-mapped.html", "en", "levant-ledger", "feed", "meta"),
    ("gazette", "/2024/12/12/cells-beneath-sednaya.html", "en", "harbour-gazette", "sitemap", "meta"),
    ("wp", "/?p=4830", "en", "qalam-notes", "feed", "meta"),
    # short articles on a WordPress ?p= template and a legacy news.php?id= page in windows-1256
    ("wp", "/?p=4821", "en", "qalam-notes", "feed", "meta"),  # hAtom <time class="published">
    ("wp", "/?p=4840", "en", "qalam-notes", "feed", "meta"),  # the name only in a block the precise pass drops
    ("legacy", "/news.php?id=1187", "ar", "al-manara", "feed", "feed"),
    # prefilter on, headline without the name: region word + co-term or event word
    ("de", "/politik/krematorium-vorwurf.html", "de", "nahost-rundschau", "feed", "meta"),
    ("tr", "/dunya/sam-toplu-mezar.html", "tr", "dogu-haber", "feed", "meta"),
    # reached only through a Google News link whose id carries the publisher URL
    ("gazette", "/2024/12/15/archive-digitised.html", "en", "harbour-gazette", "search", "meta"),
]
REJECTED = {  # (site, path) -> reason
    ("en", "/travel/saidnaya-monastery-weekend.html"): "off_topic",
    ("en", "/sport/derby-report.html"): "off_topic",
    ("en", "/world/"): "listing_page",
    ("en", "/briefs/sednaya-brief.html"): "too_short",
    ("en", "/docs/report.pdf"): "not_html",
    ("ar", "/news/bad-encoding.html"): "bad_encoding",
    ("gazette", "/travel/saidnaya-feast-pilgrims.html"): "off_topic",  # the town's feast, the prison in passing
    ("fr", "/articles/pelerinage-saidnaya.html"): "off_topic",  # pilgrimage to the convent
    ("tr", "/dunya/adra-cezaevi.html"): "off_topic",  # another prison; Sednaya named once
    ("wire", "/en/world/2024/12/14/aleppo-prisoners-freed.html"): "off_topic",  # kept by the prefilter, not on topic
}
PREFILTERED = [  # feed/sitemap entries the prefilter does not fetch
    ("wire", "/en/world/2024/12/14/syria-league-restart.html"),  # a region word alone
    ("fr", "/articles/football-reprise.html"),
    ("gazette", "/2024/12/11/long-road-home.html"),  # on topic, but its entry says nothing: the known cost
]
NEW_ARTICLE = ("tr", "/dunya/yeni-tanik.html")


@dataclass
class Run:
    summary: dict[str, Any]
    records: list[Record]
    started: float
    ended: float


def read_raw(data_dir: Path) -> list[Record]:
    bus = EmbeddedBus(data_dir / "bus.sqlite3")
    try:
        consumer = bus.consumer(Settings().topic_raw, f"test-{time.monotonic_ns()}")
        records: list[Record] = []
        while batch := consumer.poll(500, 0.2):
            records.extend(batch)
        return records
    finally:
        bus.close()


@pytest.fixture(scope="module")
def data_dir_crawl(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("crawl-data")


@pytest.fixture(scope="module")
def run1(fixture_web: FixtureWeb, data_dir_crawl: Path) -> Run:
    started = time.monotonic()
    summary = crawl_json(fixture_web.env(data_dir_crawl))
    return Run(summary, read_raw(data_dir_crawl), started, time.monotonic())


@pytest.fixture(scope="module")
def run2(run1: Run, fixture_web: FixtureWeb, data_dir_crawl: Path) -> Run:
    fixture_web.next_run()
    started = time.monotonic()
    summary = crawl_json(fixture_web.env(data_dir_crawl))
    return Run(summary, read_raw(data_dir_crawl), started, time.monotonic())


def test_each_relevant_article_is_published_exactly_once(run1: Run, fixture_web: FixtureWeb) -> None:
    keys = Counter(r.key for r in run1.records)
    assert all(n == 1 for n in keys.values()), f"published more than once: {keys.most_common(3)}"
    by_id = {r.key: r for r in run1.records}
    for site, path, lang, source, channel, date_source in EXPECTED:
        ident, canonical = id_for_url(fixture_web.url(site, path))
        assert ident in by_id, f"{site}{path} not published"
        record = by_id[ident]
        article = Article.from_json(record.value)
        assert record.headers[H_SCHEMA] == "1"
        parse_time(record.headers[H_ENTERED_AT])
        assert (article.canonical_url, article.lang, article.source, article.date_source) == (
            canonical,
            lang,
            source,
            date_source,
        ), f"{site}{path}"
        assert article.channel in channel.split("|"), f"{site}{path}: channel {article.channel}"
        assert article.relevance is not None and article.relevance.score >= 0.5
        assert article.backfill is False
        assert article.extra["source_type"] in {"other", "syrian-independent", "public-broadcaster", "wire"}
        assert article.extra["source_country"] in {"GB", "SY", "FR", "DE", "TR", "LB", "CY", "JO"}, f"{site}{path}"
    assert len(keys) == len(EXPECTED)
    assert run1.summary["published"] == len(EXPECTED)


def test_tracking_params_amp_and_canonical_collapse_to_one_article(run1: Run, fixture_web: FixtureWeb) -> None:
    survivors = id_for_url(fixture_web.url("en", "/2024/12/09/sednaya-survivors.html"))[0]
    amp = id_for_url(fixture_web.url("en", "/2024/12/10/white-helmets-search.html"))[0]
    by_id = {r.key: Article.from_json(r.value) for r in run1.records}
    assert "/amp/" in by_id[amp].url  # fetched through the feed's AMP link ...
    assert "/amp/" not in by_id[amp].canonical_url  # ... stored under the article's canonical URL
    hits = fixture_web.server.hits_for("en", "/2024/12/09/sednaya-survivors.html")
    assert len([h for h in hits if h.at <= run1.ended]) == 1, "feed duplicates and the sitemap entry fetched once"
    assert by_id[survivors].published == parse_time("2024-12-09T07:30:00Z")


def test_broken_cases_are_counted_outcomes_per_source(run1: Run) -> None:
    fetches = run1.summary["fetches"]
    ledger = fetches["levant-ledger"]
    for outcome in ("http_403", "http_429", "http_5xx", "timeout", "redirect_loop", "too_large", "robots_disallowed"):
        assert ledger.get(outcome) == 1, f"levant-ledger {outcome}: {ledger}"
    assert fetches["blocked-outlet"] == {"http_403": 1}
    assert fetches["vanished-outlet"] == {"dns": 1}
    assert fetches["dogu-haber"]["malformed_xml"] == 1  # feed-broken.xml
    assert fetches["sawt-al-sham"]["bad_encoding"] == 1  # the cp1256 page served as UTF-8
    assert fetches["gdelt"]["malformed_json"] == 1
    assert fetches["google-news"]["http_429"] == 1
    assert set(run1.summary["degraded"]) == {"gdelt", "google-news"}
    assert run1.summary["articles"]["failed"] == 7


def test_rejections_are_counted_with_reason_and_remembered(
    run1: Run, fixture_web: FixtureWeb, data_dir_crawl: Path
) -> None:
    expected = Counter(REJECTED.values())
    extraction = run1.summary["extraction"]
    assert {k: extraction.get(k) for k in expected} == dict(expected)
    assert extraction["ok"] == len(EXPECTED)
    with SeenStore(data_dir_crawl) as seen:
        for (site, path), reason in REJECTED.items():
            canonical = id_for_url(fixture_web.url(site, path))[1]
            assert seen.status(canonical) == f"rejected:{reason}", f"{site}{path}"


def test_prefilter_fetches_by_name_region_and_section_and_skips_the_rest(run1: Run, fixture_web: FixtureWeb) -> None:
    for site, path in PREFILTERED:
        assert not [h for h in fixture_web.server.hits_for(site, path) if h.at <= run1.ended], f"{site}{path} fetched"
    assert run1.summary["prefiltered"] == len(PREFILTERED)
    kept = run1.summary["prefilter_kept"]
    # region + co-term/event: charniers, Krematorium, toplu mezar, the WordPress registers note (Damascus +
    # detainees in its summary), Adra (off topic), Aleppo (off topic)
    assert kept["context"] == 6, kept
    assert kept["section"] == 1, kept  # the wire's Syria desk: a headline naming nothing
    assert kept["name"] >= 10 and kept["whole_source"] >= 10, kept


def test_google_news_links_are_decoded_or_rejected_without_a_fetch(run1: Run, data_dir_crawl: Path) -> None:
    from tests.crawl_fixtures import OPAQUE_GOOGLE_NEWS_LINK

    assert run1.summary["google_news_links"] == {"decoded": 1, "opaque": 1}
    assert run1.summary["extraction"]["unresolved_redirect"] == 1
    with SeenStore(data_dir_crawl) as seen:
        canonical = id_for_url(OPAQUE_GOOGLE_NEWS_LINK + "?oc=5")[1]
        assert seen.status(canonical) == "rejected:unresolved_redirect"


def test_gdelt_windows_are_split_until_under_the_cap(run1: Run, fixture_web: FixtureWeb) -> None:
    calls = [h for h in fixture_web.server.hits_for("gdelt", "/api/") if h.at <= run1.ended]
    assert len(calls) == 7  # 24 h -> 2 x 12 h -> 4 x 6 h
    assert not fixture_web.server.hits_for("gdelt", "/never/"), "articles of a capped answer must not be fetched"


def test_unrepairable_search_answer_is_dead_lettered(run1: Run, data_dir_crawl: Path) -> None:
    lines = (data_dir_crawl / "crawl" / "dead-letters.jsonl").read_text(encoding="utf-8").splitlines()
    letters = [json.loads(line) for line in lines]
    assert [(d["kind"], d["source"]) for d in letters] == [("search_response", "gdelt")]
    assert "cut off" in letters[0]["payload"]


def test_robots_crawl_delay_is_honoured(run1: Run, fixture_web: FixtureWeb) -> None:
    hits = [h for h in fixture_web.server.hits_for("en") if h.at <= run1.ended]
    assert len([h for h in hits if h.path == "/robots.txt"]) == 1, "one robots.txt fetch per host and crawl"
    times = sorted(h.at for h in hits if h.path != "/robots.txt")
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert len(gaps) > 10
    # Scrapy spaces dispatches by the delay; arrival times jitter by a few tens of milliseconds.
    assert sum(gaps) / len(gaps) >= 0.25 * 0.95, f"mean gap {sum(gaps) / len(gaps):.3f}s"
    assert min(gaps) >= 0.1, f"two requests to the Crawl-delay site {min(gaps):.3f}s apart"


def test_raw_html_is_kept_by_content_hash(run1: Run, data_dir_crawl: Path) -> None:
    for record in run1.records:
        article = Article.from_json(record.value)
        path = data_dir_crawl / "raw" / article.content_sha256[:2] / f"{article.content_sha256}.html.gz"
        assert path.exists(), article.url


def test_second_run_fetches_only_what_is_new(run2: Run, run1: Run, fixture_web: FixtureWeb) -> None:
    assert run2.summary["published"] == 1
    keys = Counter(r.key for r in run2.records)
    assert len(keys) == len(EXPECTED) + 1 and set(keys.values()) == {1}
    new_id = id_for_url(fixture_web.url(*NEW_ARTICLE))[0]
    assert new_id in keys
    handled = {(site, path) for site, path, *_ in EXPECTED} | set(REJECTED)
    refetched = [
        (h.site, h.path)
        for site in {site for site, *_ in EXPECTED}
        for h in fixture_web.server.hits_for(site)
        if h.at >= run2.started and ((site, h.path) in handled or (site, h.path.split("?")[0]) in handled)
    ]
    assert refetched == [], f"handled articles fetched again: {refetched}"
    assert run2.summary["fetches"]["levant-ledger"].get("not_modified", 0) >= 1  # conditional GET of the sitemap
    # a feed whose articles all ended for good is asked with its validators ...
    feed_hits = [h for h in fixture_web.server.hits_for("fr", "/feed.atom") if h.at >= run2.started]
    assert feed_hits and "If-None-Match" in feed_hits[0].headers
    # ... one that led to articles that failed (503, timeout, 429...) is read whole, and they are asked again
    feed_hits = [h for h in fixture_web.server.hits_for("en", "/feed.rss") if h.at >= run2.started]
    assert feed_hits and "If-None-Match" not in feed_hits[0].headers
    assert run2.summary["articles"].get("failed", 0) >= 1


@pytest.mark.timeout(60)
def test_follow_polls_each_source_again_until_interrupted(fixture_web: FixtureWeb, tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from sednaya_monitor.cli import main; main()",
            "crawl",
            "--follow",
            "--json",
            "--spider",
            "feeds",
            "--source",
            "nahost-rundschau",
        ],
        env=fixture_web.env(tmp_path / "data"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    started = time.monotonic()
    try:
        deadline = started + 40
        while time.monotonic() < deadline:
            if len([h for h in fixture_web.server.hits_for("de", "/feed.rdf") if h.at >= started]) >= 2:
                break
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.2)
        else:
            pytest.fail("the feed was not polled twice in --follow mode")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-3000:]
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["published"] == 2  # sednaja-prozess.html and krematorium-vorwurf.html
    assert summary["fetches"]["nahost-rundschau"].get("not_modified", 0) >= 1


def test_backfill_runs_gdelt_only_and_marks_articles(fixture_web: FixtureWeb, tmp_path: Path) -> None:
    since = (datetime.now(UTC) - timedelta(hours=24)).strftime("%Y-%m-%dT%H:%M:%SZ")
    summary = crawl_json(fixture_web.env(tmp_path / "data"), "--backfill-since", since)
    assert set(summary["fetches"]) <= {"gdelt", "dogu-haber", "courrier-levant"}, "no feed or sitemap in a backfill"
    articles = [Article.from_json(r.value) for r in read_raw(tmp_path / "data")]
    assert sorted(a.source for a in articles) == ["courrier-levant", "dogu-haber"]
    assert all(a.backfill and a.channel == "search" for a in articles)


def test_scrapy_list_and_crawl_work_from_the_repository(fixture_web: FixtureWeb, tmp_path: Path) -> None:
    repo = Path(__file__).resolve().parent.parent
    env = fixture_web.env(tmp_path / "data")
    listed = subprocess.run(["scrapy", "list"], cwd=repo, env=env, capture_output=True, text=True, timeout=60)
    assert listed.stdout.split() == ["feeds", "gdelt", "googlenews", "monitor", "sitemaps"], listed.stderr[-2000:]
    done = subprocess.run(
        ["scrapy", "crawl", "feeds", "-a", "sources=nahost-rundschau"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    articles = [Article.from_json(r.value) for r in read_raw(tmp_path / "data")]
    assert sorted((a.source, a.lang, a.date_source) for a in articles) == [
        ("nahost-rundschau", "de", "jsonld"),
        ("nahost-rundschau", "de", "meta"),
    ]


def test_sources_check_and_list_report_health(fixture_web: FixtureWeb, tmp_path: Path) -> None:
    env = fixture_web.env(tmp_path / "data")
    done = run_cli(env, "sources", "check", "--json")
    assert done.returncode == 0, done.stderr[-2000:]
    checks = [json.loads(line) for line in done.stdout.splitlines()]
    by_url = {c["url"]: c for c in checks}
    wire = [fixture_web.url("wire", f"/{lang}/feed.rss") for lang in ("en", "fr", "ar")]
    assert all(by_url[u]["outcome"] == "ok" and by_url[u]["verified"] for u in wire), [by_url[u] for u in wire]
    assert by_url[fixture_web.url("en", "/feed.rss")]["outcome"] == "stale"  # answers, newest entry from 2024
    assert by_url[fixture_web.url("tr", "/feed-broken.xml")]["outcome"] == "malformed_xml"
    assert by_url[fixture_web.url("gazette", "/news-sitemap.xml")]["outcome"] == "ok"
    assert by_url[fixture_web.url("gazette", "/news-sitemap.xml")]["entries"] == 3
    outcomes = {(c["source"], c["outcome"]) for c in checks}
    assert {("blocked-outlet", "http_403"), ("vanished-outlet", "dns"), ("detainee-watch", "search_only")} <= outcomes
    listed = run_cli(env, "sources", "list", "--json")
    rows = {r["id"]: r for r in map(json.loads, listed.stdout.splitlines())}
    assert rows["blocked-outlet"]["last_outcome"] == "http_403" and rows["blocked-outlet"]["last_success"] is None
    assert rows["levant-ledger"]["last_success"] is not None  # it answered ...
    assert rows["levant-ledger"]["last_verified"] is None  # ... but never with recent entries
    assert rows["levant-wire"]["last_verified"] is not None
    assert rows["levant-wire"]["langs"] == ["en", "fr", "ar"] and rows["levant-wire"]["lang"] == "en"
    assert rows["detainee-watch"]["search_only"].startswith("publishes reports")
    assert len(rows) == 12
    # sources_check_max_age_days decides what "recent" is: a century makes the 2024 feed verified
    lenient = fixture_web.env(tmp_path / "data", SOURCES_CHECK_MAX_AGE_DAYS="36500")
    again = run_cli(lenient, "sources", "check", "--json", "--source", "levant-ledger")
    assert by_url_of(again.stdout)[fixture_web.url("en", "/feed.rss")]["outcome"] == "ok"
    rows = {r["id"]: r for r in map(json.loads, run_cli(env, "sources", "list", "--json").stdout.splitlines())}
    assert rows["levant-ledger"]["last_verified"] is not None


def by_url_of(stdout: str) -> dict[str, Any]:
    return {c["url"]: c for c in map(json.loads, stdout.splitlines())}


def test_the_shipped_demo_web_crawls(tmp_path: Path) -> None:
    from crawlers.site_server import DEMO_CANONICAL, SiteServer
    from sednaya_monitor.cli.commands_crawl import DEMO_DIR, demo_registry

    with SiteServer(DEMO_DIR / "sites", canonical=DEMO_CANONICAL) as web:
        registry = tmp_path / "sources.toml"
        registry.write_text(
            demo_registry(DEMO_DIR / "sources.toml.tmpl", {s: web.url(s) for s in web.sites}), encoding="utf-8"
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("SEDNAYA_MONITOR_")}
        settings = {**TEST_SETTINGS, "DATA_DIR": str(tmp_path / "data"), "SOURCES_FILE": str(registry)}
        env.update({f"SEDNAYA_MONITOR_{k}": v for k, v in settings.items()})
        env["SEDNAYA_MONITOR_DISCOVERY"] = "false"
        summary = crawl_json(env)
    assert summary["published"] == 11
    assert summary["extraction"] == {"ok": 11, "off_topic": 2, "listing_page": 1}
    articles = [Article.from_json(r.value) for r in read_raw(tmp_path / "data")]
    assert set(Counter(a.lang for a in articles)) == {"ar", "en", "fr", "de", "tr"}
    # the demo pages' canonical links name stable hosts, whatever port this run served them on
    hosts = {urlsplit(a.canonical_url).hostname for a in articles}
    assert hosts == {f"{s}.demo.sednaya-monitor.invalid" for s in ("ar", "en", "fr", "de", "tr")}


def test_sources_check_fails_when_nothing_answers(fixture_web: FixtureWeb, tmp_path: Path) -> None:
    done = run_cli(fixture_web.env(tmp_path / "data"), "sources", "check", "--source", "vanished-outlet")
    assert done.returncode == 1
    assert "none of the 1 feed/sitemap URLs answered" in done.stderr
    assert "vanished-outlet" in done.stdout and "dns" in done.stdout
