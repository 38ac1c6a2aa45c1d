"""Web fixtures: a store filled with a small multilingual news web, and ``serve`` on a loopback port.

The articles are written in our own words. Four stories:

- ``crematorium`` (May 2017, en/ar/fr): a wire original, a syndicated English copy folded under it
  (``duplicate_of``), Arabic and French follow-ups. The original has a raw stored copy under
  ``data_dir/raw/`` (``crawlers.raw_store``; with a script in it, to check the sandbox).
- ``families`` (Dec 2024, ar/en): Arabic original spelled with Persian yeh (صیدنایا) and an English follow-up.
- ``report`` (Feb 2017, en/de).
- ``hostile`` (en): title, text and source full of HTML and script, and a ``javascript:`` URL;
  every page must show it as text.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from crawlers.raw_store import RawStore
from indexer.store_embedded import EmbeddedStore
from sednaya_monitor.prometheus_metrics import PrometheusMetrics
from sednaya_monitor.settings import Settings, load_settings
from sednaya_monitor.web import RunningServer, serve_in_thread
from stream.article import Article
from stream.story import Story
from tests.store_fixtures import make_article

API_TOKEN = "test-token-7f3a"  # the bearer token of the write endpoints in these tests
HOSTILE_TITLE = "<script>alert('title')</script> Sednaya <b>bold</b> & report"
HOSTILE_TEXT = 'Body <script>alert("body")</script> about Sednaya with <img src=x onerror=alert(1)> markup.'
HOSTILE_SOURCE = '<i>evil"source</i>'
RAW_HTML = b"<html><body><h1>Stored original</h1><script>document.title='pwned'</script></body></html>"


def _t(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def _article(story: str, role: str, **fields: object) -> Article:
    return make_article(story_id=story, story_role=role, **fields)


def _story(story_id: str, articles: list[Article], title: str) -> Story:
    times = [a.published or a.fetched_at for a in articles]
    return Story(
        id=story_id,
        title=title,
        first_seen=min(times),
        last_seen=max(times),
        article_count=len(articles),
        source_count=len({a.source for a in articles}),
        languages=tuple(sorted({a.lang for a in articles})),
        sources=tuple(sorted({a.source for a in articles})),
        first_article_id=articles[0].id,
    )


@dataclass(frozen=True)
class NewsWeb:
    articles: dict[str, Article]  # by short name
    stories: dict[str, Story]  # by short name


def news_web() -> NewsWeb:
    crem = "story-crematorium"
    wire = _article(
        crem,
        "first",
        url="https://wire.example/world/2017/05/15/us-syria-crematorium-sednaya",
        source="wire-example",
        lang="en",
        title="US says Syria built a crematorium at Sednaya prison",
        text=(
            "The State Department said on Monday that a building in the Sednaya military prison complex north "
            "of Damascus was modified into a crematorium, and that officials believe it is used to dispose of "
            "the bodies of detainees killed there. Satellite photographs were shown to reporters."
        ),
        published=_t("2017-05-15T16:05:00"),
        extra={"source_type": "wire"},
    )
    copy = _article(
        crem,
        "duplicate",
        url="https://daily-one.example/news/us-syria-sednaya-crematorium",
        source="daily-one",
        lang="en",
        title="US says Syria built a crematorium at Sednaya prison",
        text=wire.text + " Reporting by our wire partner.",
        published=_t("2017-05-15T18:30:00"),
        duplicate_of=wire.id,
        extra={"source_type": "other"},
    )
    arabic = _article(
        crem,
        "follow_up",
        url="https://arabic-news.example/2017/05/16/crematorium",
        source="arabic-news",
        lang="ar",
        title="واشنطن تتهم دمشق ببناء محرقة في سجن صيدنايا",
        text=(
            "قالت وزارة الخارجية الأمريكية إن الحكومة السورية أقامت محرقة داخل مجمع سجن صيدنايا العسكري "
            "قرب دمشق للتخلص من جثث المعتقلين، وعرضت صورا ملتقطة بالأقمار الصناعية للمبنى."
        ),
        published=_t("2017-05-16T07:00:00"),
        extra={"source_type": "pan-arab"},
    )
    french = _article(
        crem,
        "follow_up",
        url="https://quotidien.example/monde/2017/05/16/saydnaya-crematorium",
        source="quotidien",
        lang="fr",
        title="Washington accuse Damas d'avoir construit un crématorium à Saydnaya",
        text=(
            "Le département d'État affirme qu'un bâtiment de la prison de Saydnaya a été transformé en "
            "crématorium pour faire disparaître les corps des détenus exécutés."
        ),
        published=_t("2017-05-16T09:15:00"),
        extra={"source_type": "public-broadcaster"},
    )
    fam = "story-families"
    families_ar = _article(
        fam,
        "first",
        url="https://arabic-news.example/syria/2024/12/09/sednaya-families",
        source="arabic-news",
        lang="ar",
        title="عائلات المعتقلين تتوافد إلى سجن صیدنایا بحثا عن أبنائها",
        text=(
            "توافدت مئات العائلات إلى سجن صیدنایا شمال دمشق بعد فتح أبوابه، وبحث الأهالي في الزنازين "
            "والسجلات عن أي أثر لأقاربهم المفقودين منذ سنوات."
        ),
        published=_t("2024-12-09T10:00:00"),
        extra={"source_type": "pan-arab"},
    )
    families_en = _article(
        fam,
        "follow_up",
        url="https://wire.example/world/2024/12/09/families-search-sednaya",
        source="wire-example",
        lang="en",
        title="Families search Sednaya prison for missing relatives",
        text=(
            "Hundreds of families walked through the cells and archives of Sednaya prison on Monday, looking "
            "for any trace of relatives who disappeared years ago."
        ),
        published=_t("2024-12-09T13:40:00"),
        extra={"source_type": "wire"},
    )
    rep = "story-report"
    report_en = _article(
        rep,
        "first",
        url="https://rights.example/2017/02/07/human-slaughterhouse",
        source="rights-watchers",
        lang="en",
        title="Report describes mass hangings at Sednaya, calling it a human slaughterhouse",
        text=(
            "A human rights report estimates that thousands of detainees were hanged at Sednaya prison in "
            "secret between 2011 and 2015, based on interviews with former guards and detainees."
        ),
        published=_t("2017-02-07T06:00:00"),
        extra={"source_type": "ngo"},
    )
    report_de = _article(
        rep,
        "follow_up",
        url="https://zeitung.example/2017/02/07/saidnaya-bericht",
        source="zeitung",
        lang="de",
        title="Bericht über Massenhinrichtungen im Gefängnis Saidnaya",
        text="Ein Bericht schätzt, dass im Gefängnis Saidnaya tausende Häftlinge heimlich gehängt wurden.",
        published=_t("2017-02-07T11:00:00"),
        extra={"source_type": "public-broadcaster"},
    )
    hostile = _article(
        "story-hostile",
        "first",
        url="https://hostile.example/2017/03/01/markup",
        source=HOSTILE_SOURCE,
        lang="en",
        title=HOSTILE_TITLE,
        text=HOSTILE_TEXT,
        published=_t("2017-03-01T12:00:00"),
    ).replace(url="javascript:alert('url')")
    articles = {
        "wire": wire,
        "copy": copy,
        "arabic": arabic,
        "french": french,
        "families_ar": families_ar,
        "families_en": families_en,
        "report_en": report_en,
        "report_de": report_de,
        "hostile": hostile,
    }
    stories = {
        "crematorium": _story(crem, [wire, copy, arabic, french], wire.title),
        "families": _story(fam, [families_ar, families_en], families_ar.title),
        "report": _story(rep, [report_en, report_de], report_en.title),
        "hostile": _story("story-hostile", [hostile], HOSTILE_TITLE),
    }
    return NewsWeb(articles=articles, stories=stories)


@pytest.fixture
def web_news() -> NewsWeb:
    return news_web()


@pytest.fixture
def web_settings(data_dir: Path) -> Settings:
    """Embedded settings with a write token."""
    return load_settings(environ={}, overrides={"data_dir": data_dir, "api_token": API_TOKEN})


@pytest.fixture
def web_store(web_settings: Settings, web_news: NewsWeb) -> Iterator[EmbeddedStore]:
    """The news web in an embedded store, and the wire original's page kept by the raw store."""
    store = EmbeddedStore(web_settings.data_dir / "store.sqlite3")
    store.ensure_ready()
    failures = store.write_articles(list(web_news.articles.values()))
    assert not failures, failures
    store.write_stories(list(web_news.stories.values()))
    RawStore(web_settings.data_dir).put(web_news.articles["wire"].content_sha256, RAW_HTML)
    yield store
    store.close()


@pytest.fixture
def web_server(web_settings: Settings, web_store: EmbeddedStore) -> Iterator[RunningServer]:
    """``serve`` on a free loopback port over ``web_store``, stopped after the test."""
    with serve_in_thread(web_settings, web_store, PrometheusMetrics(), port=0) as running:
        yield running
