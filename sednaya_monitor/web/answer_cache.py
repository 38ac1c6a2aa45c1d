"""Search answers kept while the store's data is unchanged: the same search twice costs one store call.

Analysts repeat searches (a shared link, the back button, the next tab, a page reloaded), and every
search page asks for the same filter options and often the same chart. :class:`AnswerCache` keeps the
answers of the store (a ``SearchResult``, the chart's counts, the search page rendered from them) by
request, in least-recently-used order,
for as long as the store's data version (``EmbeddedStore.data_version``: it changes with every commit
by any process) stays the one they were computed at; the first request that sees another version
empties it. The version is read before the store is asked, so an answer is never older than the
version it is kept under. A store without a data version (Elasticsearch) is never cached, and neither
is an answer over ``MAX_TEXT_CHARS`` of article text. Hits and misses are counted in
``sednaya_search_cache_total{result}``.

Answers are shared between requests: callers must not change them.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import TypeVar

from prometheus_client import CollectorRegistry, Counter

from indexer.store import SearchResult, SearchStore

T = TypeVar("T")
MAX_TEXT_CHARS = 1_000_000  # an answer holding more article text than this is not kept (a page of huge articles)


class AnswerCache:
    """Store answers by key, valid while the store's data version is unchanged; ``entries`` = 0 keeps none."""

    def __init__(self, store: SearchStore, entries: int, registry: CollectorRegistry | None = None) -> None:
        version = getattr(store, "data_version", None)
        self._version_of: Callable[[], object] | None = version if callable(version) and entries > 0 else None
        self.entries = entries
        self._lock = threading.Lock()
        self._answers: OrderedDict[Hashable, object] = OrderedDict()
        self._version: object = None
        self.hits = 0
        self.misses = 0
        self._counter = None if registry is None else _counter_on(registry)

    def get(self, key: Hashable, compute: Callable[[], T]) -> T:
        """The answer kept for ``key`` at the store's current data version, else ``compute()`` (kept)."""
        if self._version_of is None:
            return compute()
        version = self._version_of()
        with self._lock:
            if version != self._version:
                self._answers.clear()
                self._version = version
            found = self._answers.get(key, _MISSING)
            if found is not _MISSING:
                self._answers.move_to_end(key)
                self._count("hit")
                return found  # type: ignore[return-value]  # kept by this method under this key
            self._count("miss")
        answer = compute()
        if _text_chars(answer) <= MAX_TEXT_CHARS:
            with self._lock:
                if version == self._version:  # not emptied for a newer version meanwhile
                    self._answers[key] = answer
                    while len(self._answers) > self.entries:
                        self._answers.popitem(last=False)
        return answer

    def _count(self, result: str) -> None:
        if result == "hit":
            self.hits += 1
        else:
            self.misses += 1
        if self._counter is not None:
            self._counter.labels(result=result).inc()


_MISSING = object()
_counters: weakref.WeakKeyDictionary[CollectorRegistry, Counter] = weakref.WeakKeyDictionary()
_counters_lock = threading.Lock()


def _counter_on(registry: CollectorRegistry) -> Counter:
    """The hit/miss counter registered on ``registry`` (created once: a second app reuses it)."""
    with _counters_lock:
        found = _counters.get(registry)
        if found is None:
            found = Counter(
                "sednaya_search_cache",
                "Search answers of the page and API served from the answer cache (hit) or the store (miss).",
                ["result"],
                registry=registry,
            )
            _counters[registry] = found
        return found


def _text_chars(answer: object) -> int:
    if isinstance(answer, bytes | str):
        return len(answer)
    if not isinstance(answer, SearchResult):
        return 0
    return sum(len(h.article.text) + len(h.article.title) for h in answer.hits) + sum(
        len(g.best.article.text) for g in answer.groups
    )
