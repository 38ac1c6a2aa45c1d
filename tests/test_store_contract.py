"""One contract suite over both SearchStore adapters: the same documents and queries, the same answers.

``contract_store`` (tests/store_fixtures.py) runs each test on the embedded store and on the
Elasticsearch adapter against the noida-db stand-in on loopback. Where the stand-in lacks real
Elasticsearch behaviour the test skips on the stand-in only, saying which.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from indexer.errors import QuerySyntaxError
from indexer.names import NameGroups, expand
from indexer.query import And, FieldFilter, MatchAll, Node, Not, Or, Phrase, Term, parse, to_query
from indexer.store import SearchRequest, SearchResult, SearchStore
from indexer.store_embedded import EmbeddedStore
from sednaya_monitor.wiring import elastic_config
from stream.article import Article
from stream.story import Story
from stream.topic import load_topic
from stream.word_forms import document_forms, query_forms, tokens
from tests.store_fixtures import NoidaServer, elastic_settings, make_article

pytestmark = pytest.mark.timeout(120)


def _at(day: str, hour: int = 12) -> datetime:
    return datetime.fromisoformat(day).replace(hour=hour, tzinfo=UTC)


# The corpus, written for these tests: key -> article. Stories S1..S4; several languages and scripts.
CORPUS: dict[str, Article] = {
    "en1": make_article(
        url="https://wire-a.example/2017/05/crematorium",
        source="wire-a",
        extra={"source_type": "wire"},
        lang="en",
        story_id="S1",
        story_role="first",
        published=_at("2017-05-15", 10),
        title="Officials describe a crematorium at Sednaya prison",
        text="A government briefing said a building at the Sednaya military prison near Damascus "
        "had been converted into a crematorium.",
    ),
    "en2": make_article(
        url="https://paper-b.example/world/crematorium-sednaya",
        source="paper-b",
        extra={"source_type": "public-broadcaster"},
        lang="en",
        story_id="S1",
        story_role="duplicate",
        published=_at("2017-05-15", 14),
        title="Crematorium at Sednaya prison described by officials",
        text="Officials said a building at the military prison of Sednaya had been turned into a crematorium.",
    ),
    "ar1": make_article(
        url="https://ar-news.example/2017/05/16/mahraqa",
        source="ar-news",
        extra={"source_type": "public-broadcaster"},
        lang="ar",
        story_id="S1",
        story_role="follow_up",
        published=_at("2017-05-16", 9),
        title="محرقة في سجن صيدنايا",
        text="قالت الحكومة الأمريكية إن مبنى في سجن صيدنايا العسكري تحول إلى محرقة.",
    ),
    "ar2": make_article(
        url="https://enab.example/2017/02/executions",
        source="enab",
        extra={"source_type": "syrian-independent"},
        lang="ar",
        story_id="S2",
        story_role="first",
        published=_at("2017-02-07", 8),
        title="تقرير عن الإِعدامات في صيـدنايا",
        text="منظمة العفو الدولية تنشر تقريرا عن الإعدام الجماعي في سجن صيـدنايا قرب دمشق.",
    ),
    "fr1": make_article(
        url="https://journal-fr.example/monde/saydnaya",
        source="journal-fr",
        extra={"source_type": "public-broadcaster"},
        lang="fr",
        story_id="S2",
        story_role="follow_up",
        published=_at("2017-02-07", 12),
        title="Amnesty dénonce les exécutions à Saydnaya",
        text="Un rapport d'Amnesty International décrit des pendaisons de masse à la prison de Saydnaya.",
    ),
    "de1": make_article(
        url="https://zeitung-de.example/ausland/saidnaya",
        source="zeitung-de",
        extra={"source_type": "public-broadcaster"},
        lang="de",
        story_id="S2",
        story_role="follow_up",
        published=_at("2017-02-08", 7),
        title="Bericht über Hinrichtungen in Saidnaya",
        text="Amnesty International berichtet über Massenhinrichtungen im Gefängnis Saidnaya bei Damaskus.",
    ),
    "tr1": make_article(
        url="https://haber-tr.example/sednaya-kapilar",
        source="haber-tr",
        extra={"source_type": "other"},
        lang="tr",
        story_id="S3",
        story_role="first",
        published=_at("2024-12-09", 6),
        title="Sednaya hapishanesinin kapıları açıldı",
        text="Muhalif güçler Şam yakınlarındaki Sednaya cezaevinin kapılarını açtı.",
    ),
    "en3": make_article(
        url="https://wire-a.example/2024/12/doors-opened",
        source="wire-a",
        extra={"source_type": "wire"},
        lang="en",
        story_id="S3",
        story_role="follow_up",
        published=_at("2024-12-09", 11),
        title="Crowds search Sednaya prison after its doors opened",
        text="Families searched the cells of Sednaya for missing relatives after the prison doors were opened.",
    ),
    "fa1": make_article(
        url="https://fa-news.example/2024/12/zendan",
        source="fa-news",
        lang="fa",
        story_id="S3",
        story_role="follow_up",
        published=_at("2024-12-10", 9),
        title="زندان صیدنایا",
        text="خانواده ها در زندان صیدنایا به دنبال عزیزان خود گشتند.",
    ),
    "en4": make_article(
        url="https://paper-b.example/weather/damascus",
        source="paper-b",
        extra={"source_type": "public-broadcaster"},
        lang="en",
        story_id="S4",
        story_role="first",
        published=None,
        fetched_at=_at("2019-03-01", 5),
        title="Weather in Damascus",
        text="Rain and cold weather are expected in Damascus this week, forecasters said.",
    ),
}
KEY_OF = {a.id: k for k, a in CORPUS.items()}


def keys(result: SearchResult) -> set[str]:
    return {KEY_OF[h.article.id] for h in result.hits}


def ordered(result: SearchResult) -> list[str]:
    return [KEY_OF[h.article.id] for h in result.hits]


def on_stand_in(store: SearchStore) -> bool:
    return not isinstance(store, EmbeddedStore)


@pytest.fixture
def loaded(contract_store: SearchStore) -> SearchStore:
    assert contract_store.write_articles(list(CORPUS.values())) == []
    return contract_store


def q(store: SearchStore, query: str = "", **kw: object) -> SearchResult:
    return store.search(SearchRequest(query=query, size=kw.pop("size", 50), **kw))  # type: ignore[arg-type]


# --- query language ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("crematorium AND Sednaya", {"en1", "en2"}),
        ("crematorium Sednaya", {"en1", "en2"}),
        ("crematorium OR Amnesty", {"en1", "en2", "fr1", "de1"}),
        ("Sednaya NOT crematorium", {"tr1", "en3"}),
        ("NOT (Sednaya OR Saydnaya OR Saidnaya OR صيدنايا)", {"en4"}),
        ("(Saydnaya OR Saidnaya) AND amnesty", {"fr1", "de1"}),
        ("damascus", {"en1", "en4"}),
        ("DAMASCUS", {"en1", "en4"}),
        ("executions", {"fr1"}),  # "exécutions": Latin diacritics folded
        ("Gefangnis", {"de1"}),  # "Gefängnis"
        ("cezaevinin", {"tr1"}),
        ("Sednaya-prison", {"en1", "en2", "en3"}),  # a hyphenated word: both tokens, anywhere
    ],
)
def test_boolean_queries(loaded: SearchStore, query: str, expected: set[str]) -> None:
    assert keys(q(loaded, query)) == expected


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ('"Sednaya prison"', {"en1", "en2", "en3"}),
        ('"prison Sednaya"', set()),
        ('"military prison"', {"en1", "en2"}),
        ('"sednaya military prison"', {"en1"}),
        ('"سجن صيدنايا"', {"ar1", "ar2"}),
        ('"Amnesty International" Damaskus', {"de1"}),
    ],
)
def test_phrases(loaded: SearchStore, query: str, expected: set[str]) -> None:
    assert keys(q(loaded, query)) == expected


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("lang:ar", {"ar1", "ar2"}),
        ("lang:AR", {"ar1", "ar2"}),
        ("lang:en crematorium", {"en1", "en2"}),
        ("source:wire-a", {"en1", "en3"}),
        ("source:wire-a AND Damascus", {"en1"}),
        ("title:crematorium", {"en1", "en2"}),
        ("title:damascus", {"en4"}),
        ('title:"sednaya prison"', {"en1", "en2", "en3"}),
        ("story:S2", {"ar2", "fr1", "de1"}),
        ("story:S2 NOT lang:ar", {"fr1", "de1"}),
        ("lang:fr OR lang:de", {"fr1", "de1"}),
    ],
)
def test_field_filters_in_the_query(loaded: SearchStore, query: str, expected: set[str]) -> None:
    assert keys(q(loaded, query)) == expected


def test_request_filters(loaded: SearchStore) -> None:
    assert keys(q(loaded, lang="de")) == {"de1"}
    assert keys(q(loaded, source="paper-b")) == {"en2", "en4"}
    assert keys(q(loaded, source_type="wire")) == {"en1", "en3"}
    assert keys(q(loaded, source_type="unknown")) == {"fa1"}
    assert keys(q(loaded, story="S3")) == {"tr1", "en3", "fa1"}
    since, until = _at("2017-05-01", 0), _at("2019-12-31", 0)
    assert keys(q(loaded, since=since, until=until)) == {"en1", "en2", "ar1", "en4"}  # en4: fetched_at
    assert keys(q(loaded, "Sednaya", since=_at("2024-01-01", 0))) == {"tr1", "en3"}
    ids = (CORPUS["fr1"].id, CORPUS["tr1"].id, "0" * 32)
    assert keys(q(loaded, ids=ids)) == {"fr1", "tr1"}
    assert keys(q(loaded, "amnesty", ids=ids)) == {"fr1"}
    assert q(loaded, "crematorium", lang="ar").total == 0


# --- Arabic normalisation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("صيدنايا", {"ar1", "ar2", "fa1"}),  # fa1 spells it with Persian yeh, ar2 with tatweel
        ("صیدنایا", {"ar1", "ar2", "fa1"}),  # Persian yeh in the query
        ("صيـــدنايا", {"ar1", "ar2", "fa1"}),  # tatweel in the query
        ("الامريكية", {"ar1"}),  # the text has alef with hamza above
        ("محرقه", {"ar1"}),  # the text has ta marbuta
        ("الاعدامات", {"ar2"}),  # the title has alef with hamza below and a kasra
        ("الإعدامات", {"ar2"}),
    ],
)
def test_arabic_normalisation(loaded: SearchStore, query: str, expected: set[str]) -> None:
    assert keys(q(loaded, query)) == expected


# --- any query: both stores agree with a reference evaluation ---------------------------------------

_VOCAB = ["sednaya", "prison", "crematorium", "amnesty", "damascus", "military", "weather", "international"]
_VOCAB += ["Saydnaya", "صيدنايا", "صیدنایا", "سجن", "officials", "doors", "execution", "opened", "محرقه", "kapı"]


def _reference(node: Node, article: Article) -> bool:
    """What a query means, evaluated directly on the article's folded tokens and their word forms.

    A phrase: its tokens adjacent in one field. A word: for each token, one of its query forms (as
    written, or reduced in each language of its script) among the article's word forms in the field(s)
    (its tokens reduced in the article's language): ``stream.word_forms``.
    """
    if isinstance(node, MatchAll):
        return True
    if isinstance(node, Term | Phrase):
        fields = [tokens(article.title)] if node.field == "title" else [tokens(article.title), tokens(article.text)]
        toks = tokens(node.text)
        if isinstance(node, Phrase):
            n = len(toks)
            return any(f[i : i + n] == toks for f in fields for i in range(len(f) - n + 1))
        forms = {s for f in fields for s in document_forms(f, article.lang)}
        return all(forms.intersection(query_forms(t)) for t in toks)
    if isinstance(node, FieldFilter):
        value = {"lang": article.lang, "source": article.source, "story": article.story_id}[node.field]
        return value == (node.value.lower() if node.field == "lang" else node.value)
    if isinstance(node, Not):
        return not _reference(node.item, article)
    if isinstance(node, And):
        return all(_reference(item, article) for item in node.items)
    assert isinstance(node, Or)
    return any(_reference(item, article) for item in node.items)


def _queries() -> st.SearchStrategy[Node]:
    leaves: st.SearchStrategy[Node] = st.one_of(
        st.builds(Term, st.sampled_from(_VOCAB), st.sampled_from(["any", "any", "title"])),
        st.builds(
            Phrase,
            st.lists(st.sampled_from(_VOCAB), min_size=2, max_size=2).map(" ".join)
            | st.sampled_from(["sednaya prison", "military prison", "سجن صيدنايا", "amnesty international"]),
            st.sampled_from(["any", "title"]),
        ),
        st.builds(FieldFilter, st.just("lang"), st.sampled_from(["en", "ar", "fr", "fa"])),
        st.builds(FieldFilter, st.just("source"), st.sampled_from(["wire-a", "paper-b", "enab"])),
        st.builds(FieldFilter, st.just("story"), st.sampled_from(["S1", "S2", "S3", "S4"])),
    )
    return st.recursive(
        leaves,
        lambda kids: st.one_of(
            st.builds(Not, kids),
            st.lists(kids, min_size=2, max_size=3).map(lambda xs: And(tuple(xs))),
            st.lists(kids, min_size=2, max_size=3).map(lambda xs: Or(tuple(xs))),
        ),
        max_leaves=6,
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(node=_queries())
def test_any_query_gives_the_reference_answer(loaded: SearchStore, node: Node) -> None:
    query = to_query(node)
    expected = {k for k, a in CORPUS.items() if _reference(parse(query), a)}
    assert keys(q(loaded, query)) == expected, query


# --- sort and pagination ----------------------------------------------------------------------------

DATE_ORDER = ["fa1", "en3", "tr1", "en4", "ar1", "en2", "en1", "de1", "fr1", "ar2"]


def test_sort_by_date_newest_first(loaded: SearchStore) -> None:
    result = q(loaded, sort="date")
    assert result.total == len(CORPUS)
    assert ordered(result) == DATE_ORDER


@pytest.mark.parametrize("query", ["", "lang:en", "NOT damascus", "-source:wire-a -lang:fa", "story:S2 OR story:S4"])
def test_relevance_without_words_is_newest_first(loaded: SearchStore, query: str) -> None:
    """Nothing to rank by (no word or phrase: everything, filters, NOT alone): every match scores alike, so
    the relevance order is the date order, newest first, flat, by story and page by page (it was id order)."""
    expected = [k for k in DATE_ORDER if _reference(parse(query), CORPUS[k])]
    assert len(expected) >= 4
    assert ordered(q(loaded, query)) == expected
    assert [k for page in _pages(loaded, SearchRequest(query=query, size=2)) for k in page] == expected
    groups = q(loaded, query, by_story=True).groups
    firsts = list(dict.fromkeys(str(CORPUS[k].story_id) for k in expected))
    assert [g.story_id for g in groups] == firsts
    assert [KEY_OF[g.best.article.id] for g in groups] == [
        next(k for k in expected if CORPUS[k].story_id == story) for story in firsts
    ]
    paged = _group_pages(loaded, SearchRequest(query=query, size=2, by_story=True))
    assert [g for page in paged for g in page] == firsts


def test_relevance_ties_break_by_date_newest_first(contract_store: SearchStore) -> None:
    """Reposts of one text score alike: the newest comes first (then the smallest id), flat, by story and
    page by page; a better match still comes before them, however old."""
    reposts = [
        make_article(
            url=f"https://reposts.example/{day}",
            story_id=f"R{day}",
            title="Vigil at the gates",
            text="Families held a vigil at the gates.",
            published=_at(f"2024-12-{day:02d}"),
        )
        for day in (3, 9, 1, 7, 5)
    ]
    twin = dataclasses.replace(reposts[1], id="0" * 32, url="https://reposts.example/twin", story_id="R9b")
    better = make_article(
        url="https://reposts.example/vigil",
        story_id="RV",
        title="Vigil, vigil at the gates",
        text="A vigil at the gates, the third vigil.",
        published=_at("2017-01-01"),
    )
    assert contract_store.write_articles([*reposts, twin, better]) == []
    newest_first = sorted(reposts, key=lambda a: a.published or a.fetched_at, reverse=True)
    expected = [better.id, twin.id, *(a.id for a in newest_first)]  # the twin: same time as the 9th, smaller id
    flat = contract_store.search(SearchRequest(query="vigil gates", size=20))
    assert [h.article.id for h in flat.hits] == expected
    paged: list[str] = []
    request = SearchRequest(query="vigil gates", size=2)
    for _ in range(10):
        result = contract_store.search(request)
        paged += [h.article.id for h in result.hits]
        if result.next_after is None:
            break
        request = dataclasses.replace(request, search_after=result.next_after)
    assert paged == expected
    stories = {a.id: a.story_id for a in [*reposts, twin, better]}
    grouped = _group_pages(contract_store, SearchRequest(query="vigil gates", size=2, by_story=True))
    assert [g for page in grouped for g in page] == [stories[i] for i in expected]


def _group_pages(store: SearchStore, request: SearchRequest) -> list[list[str]]:
    pages: list[list[str]] = []
    for _ in range(20):
        result = store.search(request)
        if not result.groups:
            break
        pages.append([g.story_id for g in result.groups])
        if result.next_after is None:
            break
        request = dataclasses.replace(request, search_after=result.next_after)
    return pages


def test_sort_by_relevance_puts_the_title_hit_first(loaded: SearchStore) -> None:
    result = q(loaded, "damascus")
    assert ordered(result)[0] == "en4"
    scores = [h.score for h in result.hits]
    assert scores == sorted(scores, reverse=True)


def _pages(store: SearchStore, request: SearchRequest) -> list[list[str]]:
    pages: list[list[str]] = []
    for _ in range(20):
        result = store.search(request)
        if not result.hits:
            break
        pages.append(ordered(result))
        if result.next_after is None:
            break
        request = dataclasses.replace(request, search_after=result.next_after)
    return pages


@pytest.mark.parametrize("sort", ["date", "relevance"])
@pytest.mark.parametrize("query", ["", "Sednaya OR Saydnaya OR صيدنايا OR damascus"])
def test_search_after_pages_through_everything_once(loaded: SearchStore, sort: str, query: str) -> None:
    full = ordered(q(loaded, query, sort=sort))
    pages = _pages(loaded, SearchRequest(query=query, sort="date" if sort == "date" else "relevance", size=3))
    assert all(len(p) <= 3 for p in pages)
    assert [k for p in pages for k in p] == full
    if sort == "date" and query == "":
        assert full == DATE_ORDER


# --- facets, by story, highlights ---------------------------------------------------------------------


def test_facets_count_the_whole_match(loaded: SearchStore) -> None:
    result = q(loaded, "Sednaya OR Saydnaya OR Saidnaya OR صيدنايا", facets=True, size=1)
    assert result.total == 9
    assert result.facets["lang"] == [("en", 3), ("ar", 2), ("de", 1), ("fa", 1), ("fr", 1), ("tr", 1)]
    assert result.facets["story"] == [("S1", 3), ("S2", 3), ("S3", 3)]
    assert result.facets["source_type"] == [
        ("public-broadcaster", 4),
        ("wire", 2),
        ("other", 1),
        ("syrian-independent", 1),
        ("unknown", 1),
    ]
    assert result.facets["source"][0] == ("wire-a", 2)
    assert dict(result.facets["source"]) == {
        "wire-a": 2,
        "paper-b": 1,
        "ar-news": 1,
        "enab": 1,
        "journal-fr": 1,
        "zeitung-de": 1,
        "haber-tr": 1,
        "fa-news": 1,
    }
    assert result.facets["day"] == [
        ("2017-02-07", 2),
        ("2017-02-08", 1),
        ("2017-05-15", 2),
        ("2017-05-16", 1),
        ("2024-12-09", 2),
        ("2024-12-10", 1),
    ]


def test_by_story_groups_one_line_per_story(loaded: SearchStore) -> None:
    result = q(loaded, "Sednaya OR Saydnaya OR صيدنايا OR damascus", by_story=True, sort="date")
    groups = [(g.story_id, g.article_count, g.languages, KEY_OF[g.best.article.id]) for g in result.groups]
    assert groups == [
        ("S3", 3, ("en", "fa", "tr"), "fa1"),
        ("S4", 1, ("en",), "en4"),
        ("S1", 3, ("ar", "en"), "ar1"),
        ("S2", 2, ("ar", "fr"), "fr1"),
    ]
    assert result.total == 9
    first_page = q(loaded, "Sednaya OR Saydnaya OR صيدنايا OR damascus", by_story=True, sort="date", size=2)
    assert [g.story_id for g in first_page.groups] == ["S3", "S4"]
    rest = loaded.search(
        SearchRequest(
            query="Sednaya OR Saydnaya OR صيدنايا OR damascus",
            by_story=True,
            sort="date",
            size=2,
            search_after=first_page.next_after,
        )
    )
    assert [g.story_id for g in rest.groups] == ["S1", "S2"]


def test_by_story_by_relevance_follows_the_flat_ranking(loaded: SearchStore) -> None:
    query = "Sednaya OR Saydnaya OR صيدنايا OR damascus"
    flat = q(loaded, query).hits
    first_per_story: dict[str, str] = {}
    for hit in flat:
        first_per_story.setdefault(str(hit.article.story_id), hit.article.id)
    groups = q(loaded, query, by_story=True).groups
    assert [(g.story_id, g.best.article.id) for g in groups] == list(first_per_story.items())
    assert [g.best.score for g in groups] == sorted((g.best.score for g in groups), reverse=True)


@pytest.mark.parametrize("sort", ["date", "relevance"])
def test_by_story_reaches_every_story_however_many(contract_store: SearchStore, sort: str) -> None:
    """More stories than an aggregation's bucket size (it was 1000, ordered by article count): the story
    of one article that is the newest and best match still comes first, and the pages reach every story
    once, in the order of their best hits (ties: the smallest id), as on the embedded store."""
    digests = [
        make_article(
            url=f"https://digest.example/{i}/{copy}",
            story_id=f"D{i:04d}",
            title=f"Morning digest {i}",
            text="The harbour was mentioned once among many other words of this long regional digest.",
            published=_at("2024-11-30"),
        )
        for i in range(1001)
        for copy in range(2)
    ]
    scoop = make_article(
        url="https://digest.example/scoop",
        story_id="SCOOP",
        title="Harbour scoop: the harbour reopens",
        text="harbour harbour",
        published=_at("2024-12-01"),
    )
    assert contract_store.write_articles([*digests, scoop]) == []
    first_id = {f"D{i:04d}": min(digests[2 * i].id, digests[2 * i + 1].id) for i in range(1001)}
    expected = ["SCOOP", *sorted(first_id, key=first_id.__getitem__)]
    first = q(contract_store, "harbour", by_story=True, sort=sort, size=3)
    assert first.total == 2003
    assert [(g.story_id, g.article_count) for g in first.groups] == [("SCOOP", 1), (expected[1], 2), (expected[2], 2)]
    assert first.groups[0].best.article.id == scoop.id
    paged = _group_pages(contract_store, SearchRequest(query="harbour", by_story=True, sort=sort, size=300))  # type: ignore[arg-type]
    assert [len(page) for page in paged] == [300, 300, 300, 102]
    assert [g for page in paged for g in page] == expected


def test_by_story_attaches_the_story_document(loaded: SearchStore) -> None:
    loaded.write_stories([_story("S2", last_seen=_at("2017-02-08", 7), languages=("ar", "de", "fr"))])
    result = q(loaded, "amnesty", by_story=True)
    assert [(g.story_id, g.article_count) for g in result.groups] == [("S2", 2)]
    assert result.groups[0].story is not None
    assert result.groups[0].story.title == "Story S2"


def test_matched_terms_say_why(loaded: SearchStore) -> None:
    result = q(loaded, 'crematorium OR "military prison" OR hoax NOT weather')
    by_key = {KEY_OF[h.article.id]: h.matched_terms for h in result.hits}
    assert by_key == {"en1": ("crematorium", "military prison"), "en2": ("crematorium", "military prison")}


def test_explain_false_leaves_matched_terms_to_hits_without_highlights(loaded: SearchStore) -> None:
    """``explain=False`` (the search page): the same hits, scores and highlights; "why it matched" only for
    hits without a highlight (with none asked, every hit), as with ``explain``."""
    query = 'crematorium OR "military prison" OR hoax NOT weather'
    full = q(loaded, query, highlight=True)
    lean = q(loaded, query, highlight=True, explain=False)
    assert len(full.hits) == 2
    assert all(h.highlights and h.matched_terms for h in full.hits)
    assert [(h.article.id, h.score, h.highlights) for h in lean.hits] == [
        (h.article.id, h.score, h.highlights) for h in full.hits
    ]
    assert [h.matched_terms for h in lean.hits] == [(), ()]
    plain = q(loaded, query, explain=False)  # no highlights asked: every hit says why it matched
    assert [h.matched_terms for h in plain.hits] == [h.matched_terms for h in full.hits]


def test_highlights_mark_terms_in_the_original_text(contract_store: SearchStore) -> None:
    article = make_article(
        title="Report on Saydnaya & the <b>prison</b>",
        text="Before. " * 40 + "The report on Saydnaya was published. " + "After. " * 40,
    )
    contract_store.write_articles([article])
    hit = q(contract_store, "saydnaya", highlight=True).hits[0]
    (fragment,) = hit.highlights["text"]
    assert "The report on <mark>Saydnaya</mark> was published." in fragment
    assert len(fragment) < len(article.text)
    assert q(contract_store, "saydnaya").hits[0].highlights == {}
    (title,) = hit.highlights["title"]
    assert title.startswith("Report on <mark>Saydnaya</mark>")
    assert title == "Report on <mark>Saydnaya</mark> &amp; the &lt;b&gt;prison&lt;/b&gt;"


def test_highlights_follow_arabic_normalisation(loaded: SearchStore) -> None:
    # both stores compute highlights in Python (indexer.highlight), so the stand-in runs this too
    hit = q(loaded, "صیدنایا", highlight=True, lang="ar", sort="date").hits[0]
    assert hit.highlights["title"] == ["محرقة في سجن <mark>صيدنايا</mark>"]


# --- word forms (stream.word_forms): the same stems on both stores ------------------------------------

# Written for these tests, one or two forms of a word per article, in six languages and four scripts.
MORPH: dict[str, Article] = {
    "m_en1": make_article(
        url="https://morph.example/en/1",
        lang="en",
        title="Survivors return to the cells",
        text="Two survivors walked through the cells where they had been held for years.",
    ),
    "m_en2": make_article(
        url="https://morph.example/en/2",
        lang="en",
        title="A family waits for news",
        text="The family of one detainee waited outside the court for a whole day.",
    ),
    "m_en3": make_article(
        url="https://morph.example/en/3",
        lang="en",
        title="Guards moved people overnight",
        text="Guards moved the detainees to another building before dawn.",
    ),
    "m_fr1": make_article(
        url="https://morph.example/fr/1",
        lang="fr",
        title="Les survivants témoignent",
        text="Trois survivants racontent leur détention devant les juges.",
    ),
    "m_fr2": make_article(
        url="https://morph.example/fr/2",
        lang="fr",
        title="Un survivant se souvient",
        text="Un survivant décrit une exécution dans la cour.",
    ),
    "m_de1": make_article(
        url="https://morph.example/de/1",
        lang="de",
        title="Häftlinge in der Nacht verlegt",
        text="Die Häftlinge wurden in ein anderes Gebäude gebracht.",
    ),
    "m_de2": make_article(
        url="https://morph.example/de/2",
        lang="de",
        title="Ein früherer Häftling erzählt",
        text="Er beschreibt die Zellen und den Hof.",
    ),
    "m_tr1": make_article(
        url="https://morph.example/tr/1",
        lang="tr",
        title="Tutuklular bekliyor",
        text="Aileler kapının önünde haber bekledi.",
    ),
    "m_tr2": make_article(
        url="https://morph.example/tr/2",
        lang="tr",
        title="Eski bir tutuklu konuştu",
        text="Koşulları gazetecilere anlattı.",
    ),
    "m_ru1": make_article(
        url="https://morph.example/ru/1",
        lang="ru",
        title="Ворота тюрьмы открыты",
        text="Семьи ждали у ворот до самого утра.",
    ),
    "m_ru2": make_article(
        url="https://morph.example/ru/2",
        lang="ru",
        title="Тюрьма опустела",
        text="За одну ночь здание опустело.",
    ),
    "m_ar1": make_article(
        url="https://morph.example/ar/1",
        lang="ar",
        title="شهادات من السجن",
        text="روى رجل ما رآه خلال سنوات طويلة.",
    ),
    "m_ar2": make_article(
        url="https://morph.example/ar/2",
        lang="ar",
        title="عائلات تنتظر عند البوابة",
        text="انتظرت العائلات طويلا والسجن مغلق.",
    ),
    "m_ar3": make_article(
        url="https://morph.example/ar/3",
        lang="ar",
        title="رحيل بعد سنوات",
        text="توفي بسجن قرب العاصمة بعد سنوات من الغياب.",
    ),
}
MORPH_KEY = {a.id: k for k, a in MORPH.items()}


@pytest.fixture
def morph(contract_store: SearchStore) -> SearchStore:
    assert contract_store.write_articles(list(MORPH.values())) == []
    return contract_store


def mkeys(result: SearchResult) -> set[str]:
    return {MORPH_KEY[h.article.id] for h in result.hits}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        # singular finds the plural; without a language the word is analysed for every Latin-script
        # language, and the French form of "survivor" is that of "survivants" (cognates)
        ("survivor", {"m_en1", "m_fr1", "m_fr2"}),
        ("survivors", {"m_en1", "m_fr1", "m_fr2"}),
        ("detainee", {"m_en2", "m_en3"}),
        ("detainees", {"m_en2", "m_en3"}),
        ("survivant", {"m_fr1", "m_fr2"}),
        ("survivants", {"m_fr1", "m_fr2"}),
        ("Häftling", {"m_de1", "m_de2"}),
        ("haftlinge", {"m_de1", "m_de2"}),  # folded as well
        ("tutuklu", {"m_tr1", "m_tr2"}),
        ("tutuklular", {"m_tr1", "m_tr2"}),
        ("тюрьма", {"m_ru1", "m_ru2"}),
        ("тюрьмы", {"m_ru1", "m_ru2"}),
        ("سجن", {"m_ar1", "m_ar2", "m_ar3"}),  # the article, the conjunction + article, the preposition
        ("السجن", {"m_ar1", "m_ar2", "m_ar3"}),
        ("والسجن", {"m_ar1", "m_ar2", "m_ar3"}),
        ("بسجن", {"m_ar1", "m_ar2", "m_ar3"}),
        ("title:detainees", set()),
        ("title:survivor", {"m_en1", "m_fr1", "m_fr2"}),
        ("title:haftlinge", {"m_de1", "m_de2"}),
    ],
)
def test_a_word_finds_its_forms(morph: SearchStore, query: str, expected: set[str]) -> None:
    assert mkeys(q(morph, query)) == expected


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ('"survivors"', {"m_en1"}),
        ('"survivor"', set()),  # a quoted word is exact: no word forms
        ("exact:survivor", set()),
        ("exact:survivors", {"m_en1"}),
        ('"detainees to another"', {"m_en3"}),
        ('"detainee to another"', set()),
        ('"السجن"', {"m_ar1"}),
        ('"بسجن"', {"m_ar3"}),
    ],
)
def test_phrases_stay_exact(morph: SearchStore, query: str, expected: set[str]) -> None:
    assert mkeys(q(morph, query)) == expected


def test_the_language_filter_picks_the_analysis(morph: SearchStore) -> None:
    assert mkeys(q(morph, "survivor", lang="en")) == {"m_en1"}
    assert mkeys(q(morph, "detainees", lang="en")) == {"m_en2", "m_en3"}
    assert mkeys(q(morph, "survivants", lang="en")) == set()
    assert mkeys(q(morph, "survivants", lang="fr")) == {"m_fr1", "m_fr2"}
    assert mkeys(q(morph, "tutuklular", lang="de")) == set()
    assert mkeys(q(morph, "tutuklular", lang="tr")) == {"m_tr1", "m_tr2"}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("detainee -family", {"m_en3"}),
        ("detainee NOT family", {"m_en3"}),
        ("detainees -(family OR court)", {"m_en3"}),
        ('survivant -"une exécution"', {"m_fr1"}),
        ("-detainee lang:en", {"m_en1"}),
        ("NOT survivors lang:en", {"m_en2", "m_en3"}),  # NOT drops every form, on both stores
        ("سجن -بسجن", set()),  # NOT of a word is NOT of its forms too
        ('سجن -"بسجن"', {"m_ar1", "m_ar2"}),
    ],
)
def test_minus_and_not_exclude_on_both_stores(morph: SearchStore, query: str, expected: set[str]) -> None:
    assert mkeys(q(morph, query)) == expected


def test_highlights_and_matched_terms_follow_word_forms(morph: SearchStore) -> None:
    hit = q(morph, "survivor", highlight=True).hits[0]
    assert hit.matched_terms == ("survivor",)
    assert hit.highlights["title"] == ["<mark>Survivors</mark> return to the cells"]
    (arabic,) = q(morph, "السجن", lang="ar", highlight=True, sort="date").hits[:1] or [None]  # type: ignore[list-item]
    assert arabic is not None
    assert any("<mark>" in f for f in (*arabic.highlights.get("title", []), *arabic.highlights.get("text", [])))


# --- name variants from the topic file (indexer.names) -----------------------------------------------

# A topic file written for these tests: the place and a person in several spellings and scripts.
NAMED_TOPIC = """
id = "test-topic"
title = "Test topic"
[names]
latin = ["Sednaya", "Saydnaya", "Sednaïa", "Sednaja"]
arabic = ["صيدنايا"]
cyrillic = ["Седная"]
[coterms]
en = ["prison"]
[anchors]
people = [["Volker Türk", "Фолькер Тюрк", "فولكر تورك"]]
places = [["Damascus", "Damas", "Damaskus", "دمشق"]]
"""

NAMED: dict[str, Article] = {
    "n_en": make_article(
        url="https://names.example/en",
        lang="en",
        title="Sednaya survivors speak",
        text="Three former prisoners of Sednaya spoke in Berlin.",
    ),
    "n_en2": make_article(
        url="https://names.example/en2",
        lang="en",
        title="Saydnaya report",
        text="A new report counts the dead of Saydnaya prison.",
    ),
    "n_fr": make_article(
        url="https://names.example/fr",
        lang="fr",
        title="Sednaïa, la prison des disparus",
        text="Des familles cherchent encore leurs proches à Damas.",
    ),
    "n_de": make_article(
        url="https://names.example/de",
        lang="de",
        title="Das Gefängnis Sednaja",
        text="Überlebende berichten über die Zellen in Damaskus.",
    ),
    "n_ar": make_article(
        url="https://names.example/ar",
        lang="ar",
        title="ذكرى صيدنايا",
        text="تجمع الأهالي في دمشق لإحياء الذكرى.",
    ),
    "n_ru": make_article(
        url="https://names.example/ru",
        lang="ru",
        title="Седная: год спустя",
        text="Бывшие заключенные вернулись к воротам.",
    ),
    "n_mon": make_article(
        url="https://names.example/monastery",
        lang="en",
        title="Pilgrims at Saydnaya",
        text="Pilgrims climbed to the old monastery above the town of Saydnaya.",
    ),
    "n_turk": make_article(
        url="https://names.example/turk",
        lang="en",
        title="UN rights chief speaks",
        text="Volker Türk called for access to every detention site.",
    ),
    "n_turk_ar": make_article(
        url="https://names.example/turk-ar",
        lang="ar",
        title="المفوض السامي",
        text="دعا فولكر تورك إلى فتح السجون.",
    ),
    "n_other": make_article(
        url="https://names.example/other",
        lang="en",
        title="Weather",
        text="Rain is expected in the north this week.",
    ),
}
NAMED_KEY = {a.id: k for k, a in NAMED.items()}
PLACE = {"n_en", "n_en2", "n_fr", "n_de", "n_ar", "n_ru", "n_mon"}


@pytest.fixture(params=["embedded", "elastic"])
def named_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SearchStore]:
    """A store of each kind that expands names from NAMED_TOPIC, loaded with NAMED."""
    topic_file = tmp_path / "topic.toml"
    topic_file.write_text(NAMED_TOPIC, encoding="utf-8")
    names = NameGroups.from_topic(load_topic(topic_file))
    store: SearchStore
    if request.param == "embedded":
        store = EmbeddedStore(tmp_path / "named.sqlite3", names=names)
    else:
        from indexer.store_elastic import ElasticStore

        server: NoidaServer = request.getfixturevalue("noida_server")
        store = ElasticStore(elastic_config(elastic_settings(server.url, tmp_path)), refresh=True, names=names)
    store.ensure_ready()
    assert store.write_articles(list(NAMED.values())) == []
    yield store
    if not isinstance(store, EmbeddedStore):
        store.wipe()
    store.close()


def nkeys(result: SearchResult) -> set[str]:
    return {NAMED_KEY[h.article.id] for h in result.hits}


@pytest.mark.parametrize("spelling", ["Sednaya", "SAYDNAYA", "sednaia", "Sednaja", "صيدنايا", "Седная"])
def test_any_spelling_of_a_name_finds_every_spelling(named_store: SearchStore, spelling: str) -> None:
    result = q(named_store, spelling)
    assert nkeys(result) == PLACE
    ((typed, added),) = result.expanded.items()
    assert typed == spelling
    assert len(added) == 5  # the six spellings of the group, less the one typed
    assert "صيدنايا" in added or spelling == "صيدنايا"


def test_expansion_is_reported_in_the_order_of_the_topic_file(named_store: SearchStore) -> None:
    assert q(named_store, "Sednaya").expanded == {"Sednaya": ("Saydnaya", "Sednaïa", "Sednaja", "صيدنايا", "Седная")}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ('"Sednaya"', {"n_en"}),  # quoted: this spelling only
        ("exact:Sednaya", {"n_en"}),
        ("exact:Saydnaya", {"n_en2", "n_mon"}),
    ],
)
def test_quotes_and_exact_turn_expansion_off(named_store: SearchStore, query: str, expected: set[str]) -> None:
    result = q(named_store, query)
    assert nkeys(result) == expected
    assert result.expanded == {}


def test_minus_excludes_from_an_expanded_name(named_store: SearchStore) -> None:
    assert nkeys(q(named_store, "Sednaya -monastery")) == PLACE - {"n_mon"}
    assert nkeys(q(named_store, "Sednaya NOT pilgrims")) == PLACE - {"n_mon"}
    assert nkeys(q(named_store, "-Sednaya")) == set(NAMED) - PLACE  # NOT of every spelling


def test_a_name_of_several_words_and_other_groups(named_store: SearchStore) -> None:
    result = q(named_store, "Volker Türk")
    assert nkeys(result) == {"n_turk", "n_turk_ar"}
    assert result.expanded == {"Volker Türk": ("Фолькер Тюрк", "فولكر تورك")}
    assert nkeys(q(named_store, "فولكر تورك")) == {"n_turk", "n_turk_ar"}
    # a place group of [anchors] expands as well, and combines with the subject's names
    assert nkeys(q(named_store, "Damascus Sednaya")) == {"n_fr", "n_de", "n_ar"}
    assert nkeys(q(named_store, "title:Sednaya")) == PLACE  # every article names the place in its title


def test_expanded_names_keep_their_word_forms_and_matched_terms(named_store: SearchStore) -> None:
    hits = {NAMED_KEY[h.article.id]: h for h in q(named_store, "Sednaya survivor", highlight=True).hits}
    assert set(hits) == {"n_en"}
    assert hits["n_en"].matched_terms == ("Sednaya", "survivor")
    assert hits["n_en"].highlights["title"] == ["<mark>Sednaya</mark> <mark>survivors</mark> speak"]
    ar = q(named_store, "Sednaya", lang="ar", highlight=True).hits[0]
    assert ar.matched_terms == ("صيدنايا",)  # why it matched: the variant found


def _deepest(nest: Callable[[str], str], inner: str) -> str:
    """``inner`` nested by ``nest`` as deep as the parser accepts."""
    query = inner
    while True:
        try:
            parse(nest(query))
        except QuerySyntaxError:
            return query
        query = nest(query)


def _query_depth(query: dict[str, Any]) -> int:
    """How deep Elasticsearch counts ``query`` nested (every query object, leaves included)."""
    ((kind, body),) = query.items()
    inner: list[dict[str, Any]] = []
    if kind == "bool":
        inner = [c for clause in ("must", "should", "must_not", "filter") for c in body.get(clause, [])]
    elif kind == "constant_score":
        inner = [body["filter"]]
    return 1 + max(map(_query_depth, inner), default=0)


ES_MAX_NESTED_DEPTH = 30  # Elasticsearch 8's default indices.query.bool.max_nested_depth


@pytest.mark.parametrize(
    "nest",
    [
        lambda inner: f"NOT (weather OR {inner})",
        lambda inner: f"rain OR Damascus ({inner})",
        lambda inner: f"Sednaya -(monastery OR {inner})",
        lambda inner: f"NOT NOT ({inner})",
    ],
    ids=["NOT (x OR ...)", "x OR y (...)", "x -(y OR ...)", "NOT NOT"],
)
def test_the_deepest_query_the_parser_accepts_runs_on_both_stores(
    named_store: SearchStore, nest: Callable[[str], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever the parser accepts runs (SQLite's parser stack overflowed at 36 nested NOTs), with names
    expanded around the deepest words, and what Elasticsearch is sent nests no deeper than real
    Elasticsearch 8 allows (the stand-in does not enforce that limit: the depth is measured instead)."""
    query = _deepest(nest, 'Volker Türk title:Sednaja "rights chief" lang:en')
    sent: list[dict[str, Any]] = []
    if on_stand_in(named_store):
        real = named_store._search  # type: ignore[attr-defined]

        def recording(index: str, **body: Any) -> dict[str, Any]:
            sent.append(body)
            return real(index, **body)

        monkeypatch.setattr(named_store, "_search", recording)
    names = named_store.names  # type: ignore[attr-defined]
    expanded, _ = expand(parse(query), names)
    expected = {k for k, a in NAMED.items() if _reference(expanded, a)}
    assert nkeys(q(named_store, query)) == expected, query
    q(named_store, query, facets=True, by_story=True, sort="date")
    named_store.day_lang_counts(SearchRequest(query=query))  # type: ignore[attr-defined]
    for body in sent:
        assert _query_depth(body["query"]) <= ES_MAX_NESTED_DEPTH, query


def test_a_store_without_name_groups_does_not_expand(contract_store: SearchStore) -> None:
    assert contract_store.write_articles([NAMED["n_en"], NAMED["n_en2"]]) == []
    result = q(contract_store, "Sednaya")
    assert {NAMED_KEY[h.article.id] for h in result.hits} == {"n_en"}
    assert result.expanded == {}


# --- story merges ------------------------------------------------------------------------------------


def test_move_articles_of_merged_stories(loaded: SearchStore) -> None:
    moved = loaded.move_articles(["S2", "S3"], "S1")
    assert moved == 6
    assert keys(q(loaded, story="S1")) == {"en1", "en2", "ar1", "ar2", "fr1", "de1", "tr1", "en3", "fa1"}
    assert q(loaded, story="S2").total == 0
    assert keys(q(loaded, "story:S1 amnesty")) == {"fr1", "de1"}
    assert loaded.get_article(CORPUS["fr1"].id).story_id == "S1"  # type: ignore[union-attr]
    assert {a.id for a in loaded.story_articles("S1")} >= {CORPUS["tr1"].id, CORPUS["de1"].id}
    assert loaded.move_articles(["S2", "S3"], "S1") == 0  # idempotent
    assert loaded.move_articles(["S1"], "S1") == 0
    assert loaded.count_articles() == len(CORPUS)


# --- writes -----------------------------------------------------------------------------------------


def test_writes_are_idempotent_by_id(loaded: SearchStore) -> None:
    assert loaded.count_articles() == len(CORPUS)
    assert loaded.write_articles(list(CORPUS.values())) == []
    assert loaded.write_articles([CORPUS["en1"], CORPUS["en1"]]) == []
    assert loaded.count_articles() == len(CORPUS)
    assert q(loaded).total == len(CORPUS)
    edited = CORPUS["en4"].replace(title="Snow in Damascus", story_id="S9")
    assert loaded.write_articles([edited]) == []
    assert loaded.count_articles() == len(CORPUS)
    assert keys(q(loaded, "weather")) == {"en4"}  # still in the text
    assert keys(q(loaded, "title:weather")) == set()
    assert keys(q(loaded, "title:snow")) == {"en4"}
    assert keys(q(loaded, story="S9")) == {"en4"}
    stored = loaded.get_article(edited.id)
    assert stored is not None
    assert stored.title == "Snow in Damascus"


def test_get_iter_count(loaded: SearchStore) -> None:
    assert loaded.get_article("f" * 32) is None
    assert loaded.get_article(CORPUS["ar2"].id) == CORPUS["ar2"]
    listed = list(loaded.iter_articles())
    assert [a.id for a in listed] == sorted(a.id for a in CORPUS.values())
    assert {a.id: a for a in listed} == {a.id: a for a in CORPUS.values()}


def test_embeddings_are_stored(contract_store: SearchStore) -> None:
    vector = tuple(float(x) for x in np.linspace(-1, 1, 384, dtype=np.float32))
    article = make_article(embedding=vector)
    assert contract_store.write_articles([article]) == []
    stored = contract_store.get_article(article.id)
    assert stored is not None
    assert stored.embedding is not None
    assert np.allclose(stored.embedding, vector, atol=1e-6)
    assert q(contract_store).hits[0].article.embedding is None  # search hits leave the vector out


def test_a_refused_article_is_returned_with_the_reason(contract_store: SearchStore) -> None:
    if on_stand_in(contract_store):
        pytest.skip(
            "the stand-in does not enforce strict mappings or dense_vector dims "
            "(the adapter's mapping of item errors is tested below)"
        )
    good = make_article(embedding=tuple([0.1] * 384))
    bad = make_article(embedding=(0.1, 0.2, 0.3))
    failures = contract_store.write_articles([good, bad])
    assert [(f.article_id, f.transient) for f in failures] == [(bad.id, False)]
    assert "3 dimensions" in failures[0].reason
    assert contract_store.get_article(good.id) is not None
    assert contract_store.get_article(bad.id) is None


def test_non_finite_embedding_is_refused(contract_store: SearchStore) -> None:
    bad = make_article(embedding=(float("nan"),) * 384)
    failures = contract_store.write_articles([bad])
    assert [(f.article_id, f.transient) for f in failures] == [(bad.id, False)]
    assert "NaN" in failures[0].reason
    assert contract_store.count_articles() == 0


@pytest.mark.parametrize(
    ("query", "position", "token"),
    [("Sednaya AND", 11, ""), ("(crematorium OR", 15, ""), ('"mass graves', 0, '"mass graves'), ("a b)", 3, ")")],
)
def test_malformed_query_names_the_position(loaded: SearchStore, query: str, position: int, token: str) -> None:
    with pytest.raises(QuerySyntaxError) as info:
        q(loaded, query)
    assert (info.value.position, info.value.token) == (position, token)
    assert f"position {position}" in str(info.value)


# --- stories ----------------------------------------------------------------------------------------


def _unit(seed: int) -> np.ndarray:
    vec = np.random.default_rng(seed).normal(size=384).astype(np.float32)
    return vec / np.linalg.norm(vec)


def _story(
    story_id: str,
    *,
    last_seen: datetime,
    centroid: np.ndarray | None = None,
    languages: Sequence[str] = ("en",),
    merged_into: str | None = None,
) -> Story:
    return Story(
        id=story_id,
        title=f"Story {story_id}",
        first_seen=last_seen - timedelta(days=1),
        last_seen=last_seen,
        article_count=2,
        source_count=2,
        languages=tuple(languages),
        sources=("wire-a", "paper-b"),
        first_article_id="a" * 32,
        centroid=None if centroid is None else tuple(float(x) for x in centroid),
        merged_into=merged_into,
    )


def test_stories_list_get_and_upsert(contract_store: SearchStore) -> None:
    stories = [
        _story("S1", last_seen=_at("2017-05-16")),
        _story("S2", last_seen=_at("2017-02-08")),
        _story("S3", last_seen=_at("2024-12-10")),
        _story("S4", last_seen=_at("2019-03-01"), merged_into="S1"),
    ]
    contract_store.write_stories(stories)
    assert [s.id for s in contract_store.list_stories()] == ["S3", "S1", "S2"]
    assert [s.id for s in contract_store.list_stories(limit=1)] == ["S3"]
    assert [s.id for s in contract_store.list_stories(since=_at("2017-03-01"))] == ["S3", "S1"]
    updated = _story("S2", last_seen=_at("2025-01-01"), languages=("ar", "fr"))
    contract_store.write_stories([updated])
    assert [s.id for s in contract_store.list_stories()] == ["S2", "S3", "S1"]
    got = contract_store.get_story("S2")
    assert got is not None
    assert (got.languages, got.last_seen) == (("ar", "fr"), _at("2025-01-01"))
    merged = contract_store.get_story("S4")
    assert merged is not None
    assert merged.merged_into == "S1"
    assert contract_store.get_story("nope") is None


def test_merged_into_answers_for_many_stories_at_once(contract_store: SearchStore) -> None:
    contract_store.write_stories(
        [
            _story("S1", last_seen=_at("2017-05-16")),
            _story("S4", last_seen=_at("2019-03-01"), merged_into="S1"),
            _story("S5", last_seen=_at("2019-04-01"), merged_into="S4"),
        ]
    )
    assert contract_store.merged_into(["S1", "S4", "S5", "nope"]) == {"S4": "S1", "S5": "S4"}
    assert contract_store.merged_into([]) == {}


def test_story_articles_oldest_first(loaded: SearchStore) -> None:
    assert [KEY_OF[a.id] for a in loaded.story_articles("S1")] == ["en1", "en2", "ar1"]
    assert [KEY_OF[a.id] for a in loaded.story_articles("S2")] == ["ar2", "fr1", "de1"]
    assert loaded.story_articles("S404") == []


def test_similar_stories_by_centroid(contract_store: SearchStore) -> None:
    a, b, c = _unit(1), _unit(2), _unit(3)
    near_a = a + 0.2 * _unit(4)
    contract_store.write_stories(
        [
            _story("A", last_seen=_at("2024-12-10"), centroid=a),
            _story("B", last_seen=_at("2024-12-01"), centroid=b),
            _story("C", last_seen=_at("2017-01-01"), centroid=c),
            _story("M", last_seen=_at("2024-12-10"), centroid=near_a, merged_into="A"),
            _story("N", last_seen=_at("2024-12-10")),  # no centroid yet
        ]
    )
    found = contract_store.similar_stories(list(near_a), k=3)
    assert [sid for sid, _ in found] == ["A", "B", "C"] or [sid for sid, _ in found] == ["A", "C", "B"]
    assert found[0][1] == pytest.approx(float(near_a @ a / np.linalg.norm(near_a)), abs=1e-4)
    assert [sid for sid, _ in contract_store.similar_stories(list(near_a), k=1)] == ["A"]
    recent = contract_store.similar_stories(list(c), k=5, since=_at("2024-01-01"))
    assert {sid for sid, _ in recent} == {"A", "B"}
    assert contract_store.similar_stories(list(c), k=5)[0][0] == "C"


# --- Elasticsearch adapter specifics (not parametrised) ----------------------------------------------


def test_bulk_item_errors_become_write_failures_with_the_reason() -> None:
    from indexer.store_elastic import item_failure

    # the shape Elasticsearch 8 gives a strict-mapping rejection in a bulk response item
    rejected = {
        "index": {
            "_index": "sednaya-articles-000001",
            "_id": "a" * 32,
            "status": 400,
            "error": {
                "type": "document_parsing_exception",
                "reason": "[1:812] object mapping for [extra] tried to parse field [x] as object, but found a "
                "concrete value",
                "caused_by": {"type": "illegal_argument_exception", "reason": "failed to parse field [extra.x]"},
            },
        }
    }
    failure = item_failure(rejected)
    assert (failure.article_id, failure.transient) == ("a" * 32, False)
    assert failure.reason.startswith("status 400: document_parsing_exception: [1:812] object mapping for [extra]")
    assert "caused by illegal_argument_exception: failed to parse field [extra.x]" in failure.reason
    busy = {"index": {"_id": "b" * 32, "status": 429, "error": {"type": "es_rejected_execution_exception"}}}
    assert item_failure(busy).transient
    unreachable = {"index": {"_id": "c" * 32, "status": "N/A", "error": "ConnectionError(connection reset)"}}
    assert item_failure(unreachable).transient


def _failing_client(url: str, failures: int) -> Any:
    """The real client whose first ``failures`` bulk calls fail at the transport level."""
    from elastic_transport import ConnectionError as TransportConnectionError
    from elasticsearch import Elasticsearch

    class FailingBulkClient(Elasticsearch):
        remaining: ClassVar[list[int]] = [failures]  # shared by the copies client.options() makes

        def bulk(self, *args: Any, **kwargs: Any) -> Any:
            if self.remaining[0] > 0:
                self.remaining[0] -= 1
                raise TransportConnectionError("connection reset by the test")
            return super().bulk(*args, **kwargs)

    return FailingBulkClient(url)


@pytest.mark.parametrize(("failures", "written"), [(1, True), (10, False)])
def test_transient_bulk_failures_are_retried(
    noida_server: NoidaServer, tmp_path: Path, failures: int, written: bool
) -> None:
    from indexer.store_elastic import BULK_ATTEMPTS, ElasticStore

    store = ElasticStore(
        elastic_config(elastic_settings(noida_server.url, tmp_path)),
        refresh=True,
        client=_failing_client(noida_server.url, failures),
    )
    store.ensure_ready()
    try:
        articles = [CORPUS["en1"], CORPUS["ar1"]]
        result = store.write_articles(articles)
        if written:
            assert result == []
            assert store.count_articles() == 2
        else:
            assert sorted((f.article_id, f.transient) for f in result) == sorted((a.id, True) for a in articles)
            assert "connection reset by the test" in result[0].reason
            assert store.count_articles() == 0
            assert failures > BULK_ATTEMPTS
    finally:
        store.wipe()
        store.close()


def test_templates_and_alias_come_from_the_deploy_files(noida_server: NoidaServer, tmp_path: Path) -> None:
    from indexer.store_elastic import ES_FILES, ElasticStore

    settings = elastic_settings(noida_server.url, tmp_path).replace(es_snapshot_repository="backups")
    store = ElasticStore(elastic_config(settings), refresh=True)
    store.ensure_ready()  # the stand-in has no ILM/SLM API: logged, the indices still work
    store.ensure_ready()  # idempotent
    try:
        es, p = store.client, settings.es_prefix
        file_body = json.loads((ES_FILES / "component_templates" / "sednaya-articles-mappings.json").read_text())
        installed = store.installed_template("component", f"{p}-articles-mappings")
        assert installed is not None
        mappings = installed["template"]["mappings"]
        assert mappings == file_body["template"]["mappings"]
        assert mappings["dynamic"] == "strict"
        assert mappings["properties"]["embedding"] == {
            "type": "dense_vector",
            "dims": 512,
            "index": True,
            "similarity": "cosine",
        }
        template = store.installed_template("index", f"{p}-articles")
        assert template is not None
        assert template["index_patterns"] == [f"{p}-articles-*"]
        assert template["composed_of"] == [f"{p}-analysis", f"{p}-articles-mappings"]
        assert template["version"] == 1
        aliases = es.indices.get_alias(name=f"{p}-articles").body
        assert aliases == {f"{p}-articles-000001": {"aliases": {f"{p}-articles": {"is_write_index": True}}}}
        analysis = json.loads((ES_FILES / "component_templates" / "sednaya-analysis.json").read_text())
        arabic = analysis["template"]["settings"]["analysis"]["analyzer"]["sednaya_arabic"]
        assert arabic["char_filter"] == ["sednaya_persian_arabic"]
        assert "arabic_normalization" in arabic["filter"]
    finally:
        store.wipe()
        store.close()


def test_an_older_template_is_upgraded_and_a_newer_one_kept(noida_server: NoidaServer, tmp_path: Path) -> None:
    from indexer.store_elastic import ElasticStore

    settings = elastic_settings(noida_server.url, tmp_path)
    store = ElasticStore(elastic_config(settings))
    es, p = store.client, settings.es_prefix
    try:
        es.indices.put_index_template(name=f"{p}-articles", index_patterns=[f"{p}-articles-*"], version=0)
        es.indices.put_index_template(name=f"{p}-stories", index_patterns=[f"{p}-stories*"], version=99)
        store.ensure_ready()
        articles = store.installed_template("index", f"{p}-articles")
        stories = store.installed_template("index", f"{p}-stories")
        assert articles is not None
        assert stories is not None
        assert articles["version"] == 1
        assert articles["composed_of"] == [f"{p}-analysis", f"{p}-articles-mappings"]
        assert stories["version"] == 99
    finally:
        store.wipe()
        store.close()


@pytest.mark.parametrize(
    "query", ['crematorium AND (Sednaya OR "military prison") NOT lang:ar', "title:x source:y story:z", ""]
)
def test_elastic_dsl_is_built_without_query_string(query: str) -> None:
    from indexer.query import parse
    from indexer.store_elastic import to_dsl

    dsl = json.dumps(to_dsl(parse(query)))
    assert "query_string" not in dsl
    assert "simple_query_string" not in dsl


# --- embedded store specifics ------------------------------------------------------------------------

_WRITER = """
import sys
from pathlib import Path
from indexer.store_embedded import EmbeddedStore
from tests.store_fixtures import make_article
store = EmbeddedStore(Path(sys.argv[1]))
for batch in range(20):
    articles = [make_article(url=f"https://w.example/{batch}/{i}", text=f"writer batch {batch}") for i in range(25)]
    failures = store.write_articles(articles)
    assert failures == [], failures
store.close()
"""


@pytest.mark.timeout(120)
def test_embedded_store_one_writer_process_and_readers(tmp_path: Path) -> None:
    import subprocess
    import sys

    path = tmp_path / "store.sqlite3"
    reader = EmbeddedStore(path)
    reader.ensure_ready()
    writer = subprocess.Popen([sys.executable, "-c", _WRITER, str(path)], cwd=Path(__file__).resolve().parent.parent)
    seen: list[int] = []
    while writer.poll() is None:
        seen.append(reader.count_articles())  # a reader never fails (nor blocks) while the writer writes
        assert q(reader, "writer").total >= seen[-1]
    assert writer.returncode == 0
    assert reader.count_articles() == 500
    assert q(reader, '"writer batch 19"').total == 25
    assert seen == sorted(seen)
    reader.close()


def test_stages_starting_together_all_get_a_ready_store(noida_server: NoidaServer, tmp_path: Path) -> None:
    import threading

    from indexer.store_elastic import ElasticStore

    settings = elastic_settings(noida_server.url, tmp_path)
    stores = [ElasticStore(elastic_config(settings)) for _ in range(6)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(stores))

    def start(store: ElasticStore) -> None:
        barrier.wait()
        try:
            store.ensure_ready()
        except BaseException as exc:  # noqa: BLE001  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    try:
        assert errors == []
        assert stores[0].write_articles([CORPUS["en1"]]) == []
    finally:
        stores[0].wipe()
        for s in stores:
            s.close()


def test_a_refused_article_is_dead_lettered_with_the_reason(tmp_path: Path) -> None:
    """The index stage over the real embedded bus: the store's refusal ends in the dead-letter table."""
    from indexer.index_stage import IndexStage
    from sednaya_monitor.prometheus_metrics import PrometheusMetrics
    from stream.bus_embedded import EmbeddedBus
    from stream.worker import StageWorker

    bus = EmbeddedBus(tmp_path / "bus.sqlite3")
    store = EmbeddedStore(tmp_path / "store.sqlite3")
    bus.ensure_topics(["clustered"])
    good = make_article(embedding=tuple([0.5] * 384))
    bad = make_article(embedding=(0.5, 0.5))
    for article in (good, bad):
        bus.publish("clustered", article.id, article.to_bytes(with_embedding=True))
    bus.flush()
    worker = StageWorker(bus, "clustered", "index", IndexStage(store, PrometheusMetrics()), metrics=PrometheusMetrics())
    while worker.run_once(0.1):
        pass
    assert store.get_article(good.id) is not None
    assert store.get_article(bad.id) is None
    (dead,) = bus.dead_letters("clustered")
    assert dead.key == bad.id
    assert dead.stage == "index"
    assert "embedding has 2 dimensions, the store holds 384-dimension vectors" in dead.reason
    assert bad.url in dead.reason
    store.close()
    bus.close()


def test_the_index_stage_writes_an_article_under_the_story_that_absorbed_its_own(contract_store: SearchStore) -> None:
    """Story S5 was folded into S4, S4 into S1: the article assigned to S5 is stored under S1 (both stores)."""
    from indexer.index_stage import IndexStage
    from sednaya_monitor.prometheus_metrics import PrometheusMetrics
    from stream.bus import Record

    contract_store.write_stories(
        [
            _story("S1", last_seen=_at("2017-05-16")),
            _story("S4", last_seen=_at("2019-03-01"), merged_into="S1"),
            _story("S5", last_seen=_at("2019-04-01"), merged_into="S4"),
            _story("S6", last_seen=_at("2019-04-01")),
        ]
    )
    moved, kept = make_article().replace(story_id="S5"), make_article().replace(story_id="S6")
    records = [Record(topic="clustered", key=a.id, value=a.to_bytes(), offset=i) for i, a in enumerate((moved, kept))]
    assert IndexStage(contract_store, PrometheusMetrics()).handle(records) == [None, None]
    stored_moved, stored_kept = contract_store.get_article(moved.id), contract_store.get_article(kept.id)
    assert stored_moved is not None and stored_moved.story_id == "S1"
    assert stored_kept is not None and stored_kept.story_id == "S6"


@pytest.mark.parametrize(
    ("folder", "api"),
    [
        ("component_templates", "cluster.put_component_template"),
        ("index_templates", "indices.put_index_template"),
        ("ilm", "ilm.put_lifecycle"),
        ("slm", "slm.put_lifecycle"),
    ],
)
def test_deploy_files_use_only_fields_of_the_elasticsearch_8_apis(folder: str, api: str) -> None:
    """The official client's signatures list each API's body fields (``_meta`` is ``meta`` there)."""
    import inspect

    from elasticsearch import Elasticsearch

    from indexer.store_elastic import ES_FILES

    namespace, method = api.split(".")
    client = Elasticsearch("http://127.0.0.1:9")  # never contacted
    accepted = set(inspect.signature(getattr(getattr(client, namespace), method)).parameters)
    files = sorted((f for f in (ES_FILES / folder).iterdir() if f.name.endswith(".json")), key=lambda f: f.name)
    assert files
    for path in files:
        body = json.loads(path.read_text(encoding="utf-8"))
        fields = {"meta" if k == "_meta" else k for k in body}
        assert fields <= accepted, f"{path.name}: {sorted(fields - accepted)} not accepted by {api}"
    client.close()


def _roll_over(store: Any) -> str:
    """Force a rollover of the article alias; returns the new write index.

    ``indices.rollover`` on Elasticsearch. The stand-in has no rollover API ("no handler found"), so
    there the same end state is made by hand: a new generation created with the articles mappings and
    the alias's write flag moved to it (what a rollover does), which is what the writes depend on.
    """
    from elasticsearch import ApiError

    es = store.client
    try:
        body = es.indices.rollover(alias=store.articles_alias).body
        return str(body["new_index"])
    except ApiError as exc:
        if "no handler found" not in str(exc):
            raise
    new = f"{store.prefix}-articles-000002"
    mappings, index_settings = store._mappings_and_settings("articles")
    es.indices.create(index=new, mappings=mappings, settings=index_settings)
    es.indices.update_aliases(
        actions=[
            {"add": {"index": store.first_index, "alias": store.articles_alias, "is_write_index": False}},
            {"add": {"index": new, "alias": store.articles_alias, "is_write_index": True}},
        ]
    )
    return new


def test_rewriting_an_article_after_a_rollover_keeps_one_copy(noida_server: NoidaServer, tmp_path: Path) -> None:
    from indexer.store_elastic import ElasticStore

    store = ElasticStore(elastic_config(elastic_settings(noida_server.url, tmp_path)), refresh=True)
    store.ensure_ready()
    try:
        old = make_article(url="https://roll.example/old", text="first version", story_id="R1")
        assert store.write_articles([old]) == []
        new_index = _roll_over(store)
        assert new_index != store.first_index
        fresh = make_article(url="https://roll.example/new", text="after the rollover", story_id="R2")
        assert store.write_articles([old.replace(text="second version"), fresh]) == []

        def copies(article_id: str) -> list[tuple[str, str]]:
            hits = store.client.search(
                index=store.backing_pattern, query={"ids": {"values": [article_id]}}, size=10
            ).body["hits"]["hits"]
            return [(h["_index"], h["_source"]["text"]) for h in hits]

        assert copies(old.id) == [(store.first_index, "second version")]  # replaced where it was
        assert copies(fresh.id) == [(new_index, "after the rollover")]  # new ids go to the write index
        # a story merge reaches the articles of every generation
        assert store.move_articles(["R1", "R2"], "R0") == 2
        moved = store.client.search(index=store.backing_pattern, query={"term": {"story_id": "R0"}}, size=10).body[
            "hits"
        ]["hits"]
        assert sorted(h["_index"] for h in moved) == sorted([store.first_index, new_index])
    finally:
        store.wipe()
        store.close()


def test_an_embedded_store_of_layout_2_is_upgraded_in_place(tmp_path: Path) -> None:
    """A file written before word forms (layout 2: folded text, no stem columns) is re-indexed on open."""
    import sqlite3

    path = tmp_path / "store.sqlite3"
    store = EmbeddedStore(path)
    assert store.write_articles([MORPH["m_en1"], MORPH["m_ar2"]]) == []
    store.close()
    conn = sqlite3.connect(path)  # make it what layout 2 wrote
    conn.executescript(
        "DROP TABLE articles_fts;"
        "CREATE VIRTUAL TABLE articles_fts USING fts5(title, body, tokenize = 'unicode61 remove_diacritics 0');"
        "INSERT INTO articles_fts (rowid, title, body) SELECT rowid, 'x', 'y' FROM articles;"
        "UPDATE meta SET value = '2' WHERE key = 'layout';"
    )
    conn.close()
    reopened = EmbeddedStore(path)
    try:
        assert mkeys(q(reopened, "survivor")) == {"m_en1"}
        assert mkeys(q(reopened, "بسجن")) == {"m_ar2"}
        assert reopened.count_articles() == 2
    finally:
        reopened.close()


@pytest.mark.parametrize("sort", ["date", "relevance"])
def test_by_story_breaks_ties_by_id(contract_store: SearchStore, sort: str) -> None:
    """Copies with the same text and time tie on score and date: the group shows the smallest id."""
    copies = [
        make_article(url=f"https://copies.example/{i}", story_id="T1", title="Copies of one wire", text="Same words.")
        for i in range(4)
    ]
    other = make_article(url="https://copies.example/other", story_id="T2", title="Another wire", text="Same words.")
    assert contract_store.write_articles([*copies, other]) == []
    result = q(contract_store, "same words", by_story=True, sort=sort)
    best = {g.story_id: (g.best.article.id, g.article_count) for g in result.groups}
    assert best == {"T1": (min(a.id for a in copies), 4), "T2": (other.id, 1)}


def test_an_article_index_from_before_word_forms_gets_the_stem_fields(
    noida_server: NoidaServer, tmp_path: Path
) -> None:
    """An index created with the version-1 mappings (no stem fields) is given them at start-up."""
    import copy

    from indexer.store_elastic import ElasticStore

    store = ElasticStore(elastic_config(elastic_settings(noida_server.url, tmp_path)), refresh=True)
    try:
        mappings, index_settings = store._mappings_and_settings("articles")
        old = copy.deepcopy(mappings)
        del old["properties"]["title_stems"], old["properties"]["text_stems"]
        store.client.indices.create(
            index=store.first_index,
            mappings=old,
            settings=index_settings,
            aliases={store.articles_alias: {"is_write_index": True}},
        )
        store.ensure_ready()
        found = store.client.indices.get_mapping(index=store.first_index).body[store.first_index]["mappings"]
        assert found["properties"]["text_stems"] == mappings["properties"]["text_stems"]
        assert store.write_articles([MORPH["m_en3"]]) == []
        assert mkeys(q(store, "detainee")) == {"m_en3"}
    finally:
        store.wipe()
        store.close()


def _assert_day_lang_counts_match_the_facets(store: SearchStore, request: SearchRequest) -> None:
    """``day_lang_counts`` (the search page's chart, one call) equals a day facet per language, and counts
    every article the search finds."""
    expected = []
    result = store.search(dataclasses.replace(request, facets=True, size=1))
    for lang, _n in result.facets["lang"]:
        per_lang = store.search(dataclasses.replace(request, lang=lang, facets=True, size=1))
        expected += [(day, lang, n) for day, n in per_lang.facets["day"]]
    counts = store.day_lang_counts(request)  # type: ignore[attr-defined]
    assert counts == sorted(expected), request
    assert sum(n for _day, _lang, n in counts) == result.total, request


def test_day_lang_counts_match_the_day_facet_of_each_language(loaded: SearchStore) -> None:
    for query in ("", "Sednaya OR صيدنايا", "prison", "NOT prison"):
        _assert_day_lang_counts_match_the_facets(loaded, SearchRequest(query=query))
    since = loaded.day_lang_counts(SearchRequest(since=_at("2024-01-01")))  # type: ignore[attr-defined]
    assert since and all(day >= "2024-01-01" for day, _lang, _n in since)


def test_merged_stories_of_a_story(contract_store: SearchStore) -> None:
    contract_store.write_stories(
        [
            _story("S1", last_seen=_at("2017-05-16")),
            _story("S4", last_seen=_at("2019-03-01"), merged_into="S1"),
            _story("S5", last_seen=_at("2019-04-01"), merged_into="S1"),
            _story("S6", last_seen=_at("2019-04-01"), merged_into="S2"),
        ]
    )
    merged = contract_store.merged_stories("S1")  # type: ignore[attr-defined]
    assert sorted(s.id for s in merged) == ["S4", "S5"]
    assert contract_store.merged_stories("S4") == []  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("query", "lang"), [("Sednaya", None), ("Damascus", "de"), ("Volker Türk", None), ("NOT Sednaya", "en")]
)
def test_day_lang_counts_expand_names_as_the_search_does(
    named_store: SearchStore, query: str, lang: str | None
) -> None:
    """The chart counts what the search finds: every spelling of a name, in the language asked for."""
    _assert_day_lang_counts_match_the_facets(named_store, SearchRequest(query=query, lang=lang))
    if query == "Sednaya":
        counted = named_store.day_lang_counts(SearchRequest(query=query))  # type: ignore[attr-defined]
        assert {lang: n for _day, lang, n in counted} == {"ar": 1, "de": 1, "en": 3, "fr": 1, "ru": 1}
