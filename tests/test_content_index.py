"""The story state's in-memory content index (stories by mean vector): lookups equal a brute-force ranking
of the stories it holds, through growth, eviction of the least recently updated and removal, one query or
many at a time."""

from __future__ import annotations

import numpy as np
import pytest

from stream import story_state
from stream.story_state import _ContentIndex

DIM = 16


def _unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v)).astype(np.float32)


def _reference(held: dict[str, np.ndarray], order: list[str], query: np.ndarray, k: int) -> list[str]:
    """The k most similar stories; ties: the story that took its row first (rows are reused in that order
    only when nothing was freed, so the queries below avoid ties)."""
    ranked = sorted(order, key=lambda sid: -float(held[sid] @ query))
    return ranked[:k]


def test_lookups_rank_the_held_stories_like_brute_force(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(story_state, "CONTENT_STORIES", 100)
    rng = np.random.default_rng(4)
    index = _ContentIndex()
    held: dict[str, np.ndarray] = {}
    order: list[str] = []  # least recently updated first
    for i in range(260):  # grows past 64 and 128 rows, then evicts
        sid = f"s{i}"
        mean = rng.normal(size=DIM).astype(np.float32)
        index.put(sid, mean)
        held[sid] = _unit(mean)
        order.append(sid)
        if len(order) > 100:
            del held[order.pop(0)]
        if i % 7 == 3:  # an update moves a story to the most recent end
            again = order[len(order) // 2]
            mean = rng.normal(size=DIM).astype(np.float32)
            index.put(again, mean)
            held[again] = _unit(mean)
            order.remove(again)
            order.append(again)
        if i % 11 == 5:
            gone = order.pop(len(order) // 3)
            index.drop(gone)
            del held[gone]
    queries = np.stack([_unit(rng.normal(size=DIM)) for _ in range(25)])
    many = index.nearest_many(queries, 12)
    for query, found in zip(queries, many, strict=True):
        assert found == _reference(held, order, query, 12)
        assert index.nearest(query, 12) == found
    assert index.nearest(queries[0], 1000) == _reference(held, order, queries[0], 1000)  # more than it holds


def test_an_empty_index_or_another_dimension_finds_nothing() -> None:
    index = _ContentIndex()
    query = _unit(np.ones(DIM))
    assert index.nearest(query, 5) == []
    index.put("a", np.ones(DIM, dtype=np.float32))
    index.drop("a")
    assert index.nearest(query, 5) == []
    index.put("b", np.ones(DIM, dtype=np.float32))
    assert index.nearest_many(np.ones((2, DIM + 1), dtype=np.float32), 5) == [[], []]
    assert index.nearest(query, 5) == ["b"]
