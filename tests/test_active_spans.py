"""The story state's active stories come from in-memory spans: the same ids in the same order as the SQL range
scan they replace (``last_seen`` then rowid), through new stories, updates, merges, compaction and a rollback."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from stream.story_state import StoryRecord, StoryState, _ts

DIM = 8
START = datetime(2024, 1, 1, tzinfo=UTC)


def _scan(state: StoryState, at: datetime) -> list[str]:
    """What ``active_ids`` answered before: the SQL range scan over the ``last_seen`` index."""
    t, w = _ts(at), state.window.total_seconds()
    return [
        row[0]
        for row in state._db.execute(
            "SELECT id FROM stories WHERE last_seen >= ? AND first_seen <= ? AND merged_into IS NULL",
            (t - w, t + w),
        )
    ]


def _check(state: StoryState, rng: random.Random) -> None:
    for _ in range(25):
        at = START + timedelta(hours=rng.randrange(0, 24 * 60))
        assert state.active_ids(at) == _scan(state, at)


def test_active_ids_equal_the_sql_scan(tmp_path: Path) -> None:
    rng = random.Random(7)
    vectors = np.random.default_rng(7)
    state = StoryState(tmp_path / "stories.sqlite3", window_days=3)
    records: list[StoryRecord] = []
    for i in range(400):
        # whole days only: many stories share a last_seen, so the rowid order of ties is exercised
        at = START + timedelta(days=rng.randrange(0, 60))
        vector = vectors.normal(size=DIM).astype(np.float32)
        if records and rng.random() < 0.4:
            record = rng.choice([r for r in records if r.merged_into is None])
            state.add_article(record, at=at, source="s", lang="en", vector=vector)
        else:
            records.append(
                state.create(
                    first_article_id=f"a{i}",
                    title="t",
                    at=at,
                    source="s",
                    lang="en",
                    vector=vector,
                    anchors=(),
                    kinds=frozenset(),
                )
            )
        live = [r for r in records if r.merged_into is None]
        if len(live) > 2 and rng.random() < 0.15:  # merges drop stories (and past half of them, compact)
            older, younger = sorted(rng.sample(live, 2), key=lambda r: r.first_seen)
            state.merge(older, younger)
        if i % 50 == 0:
            _check(state, rng)
            state.commit()
    _check(state, rng)
    live = [r for r in records if r.merged_into is None]
    while len(live) > 20:  # merge most of them away: the spans compact (dead rows past the live ones)
        older, younger = sorted(rng.sample(live, 2), key=lambda r: r.first_seen)
        state.merge(older, younger)
        live.remove(younger)
    assert state._spans is not None and len(state._spans._ids) < len(records)  # it compacted: rows dropped
    _check(state, rng)
    state.commit()
    state.rollback()  # nothing open: rebuilt from the table, rowids read back
    _check(state, rng)
    state.close()
