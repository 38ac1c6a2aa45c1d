"""The anchor counts behind rarity live in the story state's table; the in-memory cache of them is bounded
(it used to keep every anchor ever seen, which grows for as long as a stage runs), and bounding it changes
no rarity."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from stream import story_state
from stream.story_state import StoryState

DIM = 8


def _stream(state: StoryState, seed: int) -> list[str]:
    """300 articles, each with a few common anchors and a few of a long tail, committed in batches of 10."""
    rng = random.Random(seed)
    vector = np.ones(DIM, dtype=np.float32) / np.sqrt(DIM)
    seen: list[str] = []
    for i in range(300):
        anchors = [f"ent:common-{rng.randint(0, 4)}", f"num:{rng.randint(100, 100_000)}", f"date:2024-12-{i % 28 + 1}"]
        state.observe(vector, anchors, "en")
        seen.extend(anchors)
        if i % 10 == 9:
            state.commit()
    state.commit()
    return seen


def test_a_bounded_anchor_cache_gives_the_same_rarity_and_stays_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    unbounded = StoryState(tmp_path / "unbounded.sqlite3")
    anchors = _stream(unbounded, seed=3)
    expected = {a: unbounded.rarity(a) for a in anchors}
    assert len(unbounded._anchor_seen) > 200  # the long tail is in memory without a bound
    unbounded.close()

    monkeypatch.setattr(story_state, "ANCHOR_CACHE_MAX", 40)
    bounded = StoryState(tmp_path / "bounded.sqlite3")
    assert _stream(bounded, seed=3) == anchors
    assert len(bounded._anchor_seen) <= 40 + 3 * 10  # the bound, plus at most one batch's new anchors
    assert {a: bounded.rarity(a) for a in anchors} == expected
    bounded.close()
