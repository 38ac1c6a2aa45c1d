"""The web's answer cache over a real embedded store: repeated searches cost one store call, and any
commit (this store's, or another process's on the same file) makes the next search ask the store again."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from prometheus_client import CollectorRegistry

from indexer.store import SearchRequest, SearchResult
from indexer.store_embedded import EmbeddedStore
from sednaya_monitor.web.answer_cache import MAX_TEXT_CHARS, AnswerCache
from tests.store_fixtures import make_article


class Counting(EmbeddedStore):
    calls: ClassVar[int] = 0

    def search(self, request: SearchRequest) -> SearchResult:
        Counting.calls += 1
        return super().search(request)


def test_answers_are_kept_until_any_commit(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite3"
    store = Counting(path)
    store.write_articles([make_article(text="Families waited outside the prison.") for _ in range(3)])
    registry = CollectorRegistry()
    cache = AnswerCache(store, 8, registry)
    request = SearchRequest(query="prison")
    Counting.calls = 0

    def ask() -> int:
        return cache.get(("search", request), lambda: store.search(request)).total

    assert [ask(), ask(), ask()] == [3, 3, 3]
    assert Counting.calls == 1 and (cache.hits, cache.misses) == (2, 1)
    store.write_articles([make_article(text="A report on the prison.")])  # this store's writer commits
    assert ask() == 4 and Counting.calls == 2
    other = EmbeddedStore(path)  # another writer on the file (as the index stage in its own process)
    other.write_articles([make_article(text="Prison survivors spoke.")])
    other.close()
    assert ask() == 5 and Counting.calls == 3
    assert ask() == 5 and Counting.calls == 3
    assert registry.get_sample_value("sednaya_search_cache_total", {"result": "hit"}) == 3
    store.close()


def test_least_recently_used_answers_leave_first_and_zero_keeps_none(tmp_path: Path) -> None:
    store = Counting(tmp_path / "store.sqlite3")
    store.write_articles([make_article(text=f"word{i} prison") for i in range(4)])
    cache = AnswerCache(store, 2)
    Counting.calls = 0
    for word in ["word0", "word1", "word0", "word2", "word0", "word1"]:  # word1 left when word2 came
        request = SearchRequest(query=word)
        cache.get(request, lambda request=request: store.search(request))  # type: ignore[misc]
    assert Counting.calls == 4
    off = AnswerCache(store, 0)
    for _ in range(2):
        off.get("same", lambda: store.search(SearchRequest(query="prison")))
    assert Counting.calls == 6 and off.hits == 0
    huge = make_article(text="prison " * (MAX_TEXT_CHARS // 7 + 1))
    store.write_articles([huge])
    for _ in range(2):  # an answer holding that much text is not kept
        cache.get("huge", lambda: store.search(SearchRequest(query="prison", size=10)))
    assert Counting.calls == 8
    store.close()
