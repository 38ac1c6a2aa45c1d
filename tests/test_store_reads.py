"""The embedded store's read side: per-thread read connections, in-memory facet columns, ranked pages,
highlight spans.

Each shortcut is checked against the plain SQL (or the slow path) it replaces, on a real SQLite file:
facets and the chart against ``GROUP BY`` over the file, the ranked first page against the same query
forced through the filtered path, story groups against a brute-force grouping; and the columns must
follow writes made by this store, by another store on the same file, and by a story merge.
"""

from __future__ import annotations

import dataclasses
import json
import random
import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from indexer.documents import DAY_FACET_SIZE, FACET_SIZE
from indexer.facet_columns import FacetColumns
from indexer.highlight import _ORIGINAL_TOKEN, _spans
from indexer.names import NameGroups, expand
from indexer.query import Or, Phrase, Term, parse
from indexer.store import SearchRequest
from indexer.store_elastic import to_dsl
from indexer.store_embedded import _BM25_WEIGHTS, RANKED_READ, EmbeddedStore, Vocabulary, fts_query
from sednaya_monitor.settings import load_settings
from stream.article import Article
from stream.topic import load_topic
from stream.word_forms import form, query_forms, tokens
from tests.store_fixtures import make_article

LANGS = ["en", "fr", "de", "ar"]
SOURCES = [f"outlet-{i}" for i in range(25)]
EARLY = datetime(2000, 1, 1, tzinfo=UTC)  # a since filter every article passes: forces the SQL path


def corpus(n: int, seed: int = 3) -> list[Article]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        words = rng.choices(["prison", "families", "report", "court", "amnesty", "cells"], k=12)
        out.append(
            make_article(
                url=f"https://{rng.choice(SOURCES)}.example/{i}",
                source=rng.choice(SOURCES),
                lang=rng.choice(LANGS),
                title=" ".join(rng.choices(["court", "report", "prison"], k=3)),
                text=" ".join(words) + ".",
                published=datetime(2020, 1, 1, tzinfo=UTC) + timedelta(hours=7 * i),
                story_id=None if i % 7 == 0 else f"story-{i % 40:02d}",
                extra={"source_type": rng.choice(["wire", "ngo", "other"])},
            )
        )
    return out


def sql_facets(path: Path, ids: set[str]) -> dict[str, list[tuple[str, int]]]:
    """The facets as the store computed them in SQL before the in-memory columns."""
    conn = sqlite3.connect(path)
    conn.execute("CREATE TEMP TABLE chosen (id TEXT PRIMARY KEY)")
    conn.executemany("INSERT INTO chosen VALUES (?)", [(i,) for i in ids])
    out: dict[str, list[tuple[str, int]]] = {}
    for name, column in [("lang", "lang"), ("source", "source"), ("source_type", "source_type"), ("story", "story_id")]:
        out[name] = conn.execute(
            f"SELECT {column} AS k, COUNT(*) AS c FROM articles WHERE id IN (SELECT id FROM chosen) "
            f"AND {column} IS NOT NULL GROUP BY k ORDER BY c DESC, k ASC LIMIT ?",
            (FACET_SIZE,),
        ).fetchall()
    days = conn.execute(
        "SELECT day, COUNT(*) FROM articles WHERE id IN (SELECT id FROM chosen) GROUP BY day ORDER BY day DESC LIMIT ?",
        (DAY_FACET_SIZE,),
    ).fetchall()
    out["day"] = list(reversed(days))
    conn.close()
    return out


def all_ids(store: EmbeddedStore, request: SearchRequest) -> set[str]:
    result = store.search(dataclasses.replace(request, size=1000, facets=False))
    assert result.total <= 1000
    return {h.article.id for h in result.hits}


def test_facets_and_chart_equal_group_by_over_the_file(embedded_store: EmbeddedStore) -> None:
    embedded_store.write_articles(corpus(600))
    for query in ["", "prison", "prison -court", "lang:fr OR amnesty", '"court report"']:
        request = SearchRequest(query=query, facets=True)
        result = embedded_store.search(request)
        ids = all_ids(embedded_store, request)
        assert result.total == len(ids)
        assert {k: [tuple(x) for x in v] for k, v in result.facets.items()} == sql_facets(embedded_store.path, ids)
        conn = sqlite3.connect(embedded_store.path)
        expected = conn.execute(
            "SELECT day, lang, COUNT(*) FROM articles WHERE id IN (SELECT value FROM json_each(?)) "
            "GROUP BY day, lang ORDER BY day, lang",
            (json.dumps(sorted(ids)),),
        ).fetchall()
        conn.close()
        assert embedded_store.day_lang_counts(SearchRequest(query=query)) == expected


def test_facets_follow_writes_from_this_store_another_store_and_merges(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite3"
    store = EmbeddedStore(path)
    store.write_articles(corpus(50))
    before = dict(store.search(SearchRequest(facets=True)).facets["lang"])
    assert "tr" not in before
    store.write_articles([make_article(lang="tr", text="Cezaevi raporu yayımlandı.")])  # this store's writer
    assert dict(store.search(SearchRequest(facets=True)).facets["lang"])["tr"] == 1
    other = EmbeddedStore(path)  # another writer on the same file (another process would be the same)
    other.write_articles([make_article(lang="tr", text="Aileler cezaevi önünde bekledi.")])
    other.close()
    assert dict(store.search(SearchRequest(facets=True)).facets["lang"])["tr"] == 2
    assert store.day_lang_counts(SearchRequest(lang="tr"))[0][1:] == ("tr", 2)
    moved = store.move_articles(["story-01", "story-02"], "story-03")
    stories = dict(store.search(SearchRequest(facets=True)).facets["story"])
    assert moved > 0 and "story-01" not in stories and stories["story-03"] >= moved
    store.close()


def test_chart_after_a_search_counts_the_searched_rows_until_a_commit(tmp_path: Path) -> None:
    # the search page searches (story groups), then draws the chart of the same query on the same thread
    path = tmp_path / "store.sqlite3"
    store = EmbeddedStore(path)
    store.write_articles(corpus(300))
    grouped = SearchRequest(query="prison OR amnesty", by_story=True, size=5, highlight=True)
    fresh = EmbeddedStore(path)  # never searched: reads the match for its chart
    expected = fresh.day_lang_counts(grouped)
    assert sum(n for *_, n in expected) == store.search(grouped).total
    assert store.day_lang_counts(dataclasses.replace(grouped, sort="date", size=1)) == expected
    other = SearchRequest(query="court")
    assert store.day_lang_counts(other) == fresh.day_lang_counts(other)  # another query's rows are not reused
    faceted = SearchRequest(query="court", lang="en", facets=True)
    store.search(faceted)
    assert store.day_lang_counts(faceted) == fresh.day_lang_counts(faceted)
    store.search(grouped)
    writer = EmbeddedStore(path)  # a commit by another connection after the search: the chart sees it
    writer.write_articles([make_article(lang="tr", text="Amnesty prison report.", published=EARLY)])
    writer.close()
    after = store.day_lang_counts(grouped)
    assert after == fresh.day_lang_counts(grouped) and ("2000-01-01", "tr", 1) in after
    store.search(grouped)
    store.write_articles([make_article(lang="tr", text="Amnesty prison report.", published=EARLY)])  # its own writer
    assert ("2000-01-01", "tr", 2) in store.day_lang_counts(grouped)
    for s in (store, fresh):
        s.close()


def test_a_word_rewritten_away_is_no_longer_in_the_vocabulary(embedded_store: EmbeddedStore) -> None:
    # the vocabulary check stops at a term's first occurrence: it must not find one an upsert removed
    first = make_article(text="The zzqx report on the prison.", url="https://outlet.example/zzqx")
    embedded_store.write_articles([first])
    for i in range(20):  # more index segments after the word's
        embedded_store.write_articles([make_article(text=f"Prison report {i}.", url=f"https://outlet.example/{i}")])
    assert embedded_store.search(SearchRequest(query="zzqx")).total == 1
    embedded_store.write_articles([dataclasses.replace(first, text="The report on the prison.")])
    prison = embedded_store.search(SearchRequest(query="prison", size=50))
    assert embedded_store.search(SearchRequest(query="zzqx")).total == 0
    for query in ["zzqx OR prison", "prison -zzqx", "prison NOT (zzqx AND report)"]:
        result = embedded_store.search(SearchRequest(query=query, size=50))
        assert [h.article.id for h in result.hits] == [h.article.id for h in prison.hits], query


def test_forms_left_out_of_the_match_change_no_id_and_no_score(tmp_path: Path) -> None:
    # the MATCH keeps only the forms the index holds in the columns they are searched in ("detainees" is an
    # exact token of English texts, their word form is "detaine"): every score must equal BM25 over the
    # whole expression, nothing left out, ties by id
    names = NameGroups.from_topic(load_topic(load_settings(environ={}).topic_file))
    store = EmbeddedStore(tmp_path / "store.sqlite3", names=names)
    rng = random.Random(5)
    words = {
        "en": ["detainees", "prison", "Sednaya", "Saydnaya", "released", "families", "torture", "court"],
        "fr": ["détenus", "prison", "Saydnaya", "Sednaïa", "libérés", "familles", "torture", "tribunal"],
        "ar": ["صيدنايا", "سجن", "والسجن", "المعتقلين", "تعذيب"],
    }
    articles = []
    for i in range(300):
        lang = rng.choice(["en", "en", "fr", "ar"])
        title = " ".join(rng.choices(words[lang][:3], k=3))  # the other words only in texts
        text = " ".join(rng.choices(words[lang], k=rng.randint(3, 30))) + "."
        articles.append(make_article(url=f"https://outlet.example/{i}", lang=lang, title=title, text=text))
    store.write_articles(articles)
    conn = sqlite3.connect(store.path)
    id_of = dict(conn.execute("SELECT rowid, id FROM articles").fetchall())
    queries = ["detainees", "Sednaya", "Sednaya -torture", '"detainees" OR released', "detainee AND NOT court"]
    queries += ['Saydnaya "prison court"', "title:detainees", "families OR zzzq", "سجن", "détenus -tribunal"]
    with conn:
        for query in queries:
            whole = fts_query(expand(parse(query), names)[0])
            assert whole is not None, query
            rows = conn.execute(
                "SELECT rowid, -bm25(articles_fts, ?, ?, ?, ?) AS s FROM articles_fts WHERE articles_fts MATCH ?",
                [*_BM25_WEIGHTS, whole],
            ).fetchall()
            expected = sorted(((id_of[r], s) for r, s in rows), key=lambda p: (-p[1], p[0]))
            for request in (SearchRequest(query=query, size=1000), SearchRequest(query=query, size=7)):
                found = store.search(request)
                assert found.total == len(expected), query
                assert [(h.article.id, h.score) for h in found.hits] == expected[: request.size], query
    assert "detainees" not in store._present(store._reader(), parse("detainees"), None).forms
    conn.close()
    store.close()


def test_first_ranked_page_equals_the_filtered_path_with_ties(embedded_store: EmbeddedStore) -> None:
    # identical texts score the same: the page is decided by id, within and beyond the rows read
    same = [make_article(text="Amnesty report on the prison cells.", title="Same") for _ in range(12)]
    more = [make_article(text="Amnesty report.", title="Other") for _ in range(RANKED_READ * 5 + 30)]
    embedded_store.write_articles(same + more + corpus(200))
    for size in (1, 5, 20):
        for query in ["amnesty", "cells OR amnesty", "amnesty -court"]:
            fast = embedded_store.search(SearchRequest(query=query, size=size))
            slow = embedded_store.search(SearchRequest(query=query, size=size, since=EARLY))
            assert [(h.article.id, h.score) for h in fast.hits] == [(h.article.id, h.score) for h in slow.hits]
            assert fast.total == slow.total and fast.next_after == slow.next_after
            after = embedded_store.search(SearchRequest(query=query, size=size, search_after=fast.next_after))
            ranked = [h.article.id for h in embedded_store.search(SearchRequest(query=query, size=2 * size)).hits]
            assert [h.article.id for h in fast.hits + after.hits] == ranked


def test_story_groups_equal_a_brute_force_grouping(embedded_store: EmbeddedStore) -> None:
    embedded_store.write_articles(corpus(400))
    # from the FTS5 index alone, and through the SQL path (a filter every article passes)
    sorts: list[tuple[Literal["relevance", "date"], datetime | None]] = [
        ("relevance", None),
        ("date", None),
        ("relevance", EARLY),
        ("date", EARLY),
    ]
    for sort, since in sorts:
        request = SearchRequest(query="prison OR amnesty", by_story=True, sort=sort, size=7, since=since)
        every = embedded_store.search(SearchRequest(query="prison OR amnesty", sort=sort, size=1000))
        best: dict[str, tuple[object, object, str]] = {}
        members: dict[str, list[Article]] = {}
        for hit in every.hits:
            sid = hit.article.story_id
            if sid is None:
                continue
            members.setdefault(sid, []).append(hit.article)
            key = hit.score if sort == "relevance" else hit.article.published
            if sid not in best:
                best[sid] = (key, hit.article.published, hit.article.id)  # hits come best first
        expected = sorted(best, key=lambda s: best[s][2])  # ties by date (newest first), then id
        expected.sort(key=lambda s: best[s][1], reverse=True)  # type: ignore[arg-type,return-value]
        expected.sort(key=lambda s: best[s][0], reverse=True)  # type: ignore[arg-type,return-value]
        seen: list[str] = []
        while True:
            result = embedded_store.search(request)
            for group in result.groups:
                assert group.best.article.id == best[group.story_id][2]
                assert group.article_count == len(members[group.story_id])
                assert group.languages == tuple(sorted({a.lang for a in members[group.story_id]}))
            seen += [g.story_id for g in result.groups]
            if result.next_after is None:
                break
            request = dataclasses.replace(request, search_after=result.next_after)
        assert seen == expected


def test_first_page_of_story_groups_equals_the_sql_path_with_ties(embedded_store: EmbeddedStore) -> None:
    # the first page of groups ranks only the best rows: equal scores beyond the rows read (identical texts in
    # a few stories) must send it to the full ranking, and counts and languages cover every matching row
    tied = [
        make_article(
            text="Crematorium report on the prison cells.", title="Same", lang=LANGS[i % 4], story_id=f"tie-{i % 3}"
        )
        for i in range(RANKED_READ * 60)
    ]
    # largest ids first (SQLite keeps the first rowids of a tie): the rows read are not those with the smallest ids
    embedded_store.write_articles(sorted(tied, key=lambda a: a.id, reverse=True) + corpus(400))
    for query in ["crematorium", "crematorium OR amnesty", "amnesty", "prison OR court", "cells -families", "report"]:
        for size in (1, 5, 20, 60):
            for facets in (False, True):
                fast = embedded_store.search(SearchRequest(query=query, by_story=True, size=size, facets=facets))
                slow = embedded_store.search(
                    SearchRequest(query=query, by_story=True, size=size, facets=facets, since=EARLY)
                )
                shape = [
                    (g.story_id, g.best.article.id, g.best.score, g.article_count, g.languages) for g in fast.groups
                ]
                assert shape == [
                    (g.story_id, g.best.article.id, g.best.score, g.article_count, g.languages) for g in slow.groups
                ], (query, size)
                assert (fast.total, fast.next_after, fast.facets) == (slow.total, slow.next_after, slow.facets)


def test_reads_run_beside_a_write_transaction_and_on_threads(embedded_store: EmbeddedStore) -> None:
    embedded_store.write_articles(corpus(300))
    expected = embedded_store.search(SearchRequest(query="prison", facets=True, by_story=True))
    holder = sqlite3.connect(embedded_store.path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        results = []

        def read() -> None:
            for _ in range(5):
                results.append(embedded_store.search(SearchRequest(query="prison", facets=True, by_story=True)))

        threads = [threading.Thread(target=read) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert len(results) == 20
        assert all(r.facets == expected.facets and r.total == expected.total for r in results)
        assert all([g.story_id for g in r.groups] == [g.story_id for g in expected.groups] for r in results)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    embedded_store.close()  # a closed store opens its connections again on the next call
    assert embedded_store.search(SearchRequest(query="prison")).total == expected.total


def test_facet_columns_find_unknown_rowids() -> None:
    rows = [
        (1, "en", "a", "wire", "s1", "2020-01-01", "x1", 1_577_880_000_000_000),
        (5, "ar", "b", "ngo", None, "2020-01-02", "x0", 1_577_966_400_000_000),
    ]
    columns = FacetColumns.of(rows, version=1)
    assert columns.positions(np.array([5, 1])) is not None
    assert columns.positions(np.array([2])) is None  # a row the columns do not know: read them again
    assert columns.positions(np.array([9])) is None
    assert columns.ids == ("x0", "x1") and list(columns.id_rank) == [1, 0]


@given(
    st.lists(
        st.sampled_from(
            ["prison", "Prisons", "imprisoned", "صيدنايا", "وصيدنايا", "Sednaïa", "x", "-", " ", ", ", "\u0651"]
        ),
        max_size=30,
    ).map("".join)
)
def test_highlight_spans_are_the_marked_words_of_the_text(text: str) -> None:
    # the spans of the words a term marks, as a scan of every word of the text finds them
    wanted, forms = frozenset({"صيدنايا"}), frozenset(query_forms("prison"))
    expected = [
        m.span()
        for m in _ORIGINAL_TOKEN.finditer(text)
        if any(t in wanted or form(t, "en") in forms for t in tokens(m.group(0)))
    ]
    assert _spans(text, wanted, forms, "en") == expected


def test_alternatives_that_analyse_alike_count_once(embedded_store: EmbeddedStore) -> None:
    # A name group's spellings can reach the index as one form (the vocabulary check keeps only the forms
    # present): counted once, an article with that form scores as one with any other single spelling, and
    # the Elasticsearch translation asks once too.
    spellings = Or((Term("Sednaja"), Term("Sednaia"), Term("Sednaya")))
    for held in ({"sedna"}, {"sedna", "sednaya", "sednai"}):  # one shared form; forms that overlap in part
        expression = fts_query(spellings, None, Vocabulary(forms=frozenset(held), tokens=frozenset()))
        assert expression is not None, held
        assert all(expression.count(f'"{form}"') == 1 for form in held), expression
    dsl = json.dumps(to_dsl(spellings))
    assert dsl.count("sedna ") + dsl.count('sedna"') == 1, dsl
    assert len(to_dsl(Or((Phrase("prison cells"), Phrase("prison cells"), Term("cells"))))["bool"]["should"]) == 2
    embedded_store.write_articles(
        [
            make_article(url="https://a.example/1", title="Report", text="Sednaya prison"),
            make_article(url="https://a.example/2", title="Report", text="cells prison"),
        ]
    )
    twice = embedded_store.search(SearchRequest(query="prison OR prison"))
    once = embedded_store.search(SearchRequest(query="prison"))
    assert [(h.article.id, h.score) for h in twice.hits] == [(h.article.id, h.score) for h in once.hits]
