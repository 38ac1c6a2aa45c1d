"""What the story state keeps in memory, bounded or left out where the model does not need it: the cache of
anchor counts behind rarity (it used to keep every anchor ever seen, which grows for as long as a stage
runs; bounding it changes no rarity), and per-language story vectors, which only an English-only model
reads."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from sednaya_monitor.prometheus_metrics import PrometheusMetrics
from sednaya_monitor.settings import Settings
from sednaya_monitor.wiring import make_assign_stage
from stream import story_state
from stream.clustering import UNDETERMINED_LANG
from stream.embedding_use import UniversalSentenceEncoder
from stream.story_state import StoryState
from tests.story_corpus import vector_article
from tests.vector_space import Space

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


@pytest.mark.parametrize(("model_languages", "per_language"), [("auto", False), ("en", True)])
def test_per_language_story_vectors_are_kept_only_for_a_model_that_reads_languages_apart(
    settings: Settings, embedder: UniversalSentenceEncoder, tmp_path: Path, model_languages: str, per_language: bool
) -> None:
    """The default model is multilingual (``auto`` reads it): stories are compared by their means, so no
    per-language sums are kept or written; an English-only reading keeps them (it compares within a language)."""
    chosen = settings.replace(data_dir=tmp_path, model_languages=model_languages)
    stage = make_assign_stage(chosen, PrometheusMetrics(CollectorRegistry()), embedder=embedder)
    space = Space(seed=2, lang_scale=0.8, noise=0.1)
    langs = ["xx", "yy", "xx", "yy", "yy", "xx"] * 2
    articles = [vector_article(n, lang, space.vector(n % 3, lang)) for n, lang in enumerate(langs)]
    out, _ = stage.process(articles)
    assert stage.state.per_language is per_language
    rows = stage.state._db.execute("SELECT COUNT(*) FROM story_langs").fetchone()[0]
    assert (rows > 0) is per_language
    for story_id in {a.story_id for a in out if a.story_id}:
        record = stage.state.get(story_id)
        assert record is not None and bool(record.lang_sums) is per_language
    stage.close()


def test_recent_articles_keep_their_days_and_languages_through_growth_and_trims() -> None:
    """The date gate of ``neighbours`` reads the days from an array kept beside the vectors (NaN: undated);
    through the buffer's growth and the trims it must say what the list of days says."""
    rng = np.random.default_rng(5)
    rows = [
        (
            i,
            f"a{i}",
            f"s{i}",
            None if i % 3 else 739_000 + i,
            rng.standard_normal(8).astype(np.float32).tobytes(),
            None if i % 2 else "fr",  # a row of schema 1 or 2 has no language
        )
        for i in range(5)
    ]
    recent = story_state._RecentArticles(rows, lambda story: story)  # no story merged
    # what was added, kept apart from the structure under test: (article, day, language) in order
    added: list[tuple[str, int | None, str | None]] = [(r[1], r[3], r[5]) for r in rows]
    for i in range(5, story_state.RECENT_ARTICLES + story_state.RECENT_ARTICLES // 5):
        day = None if i % 4 == 0 else 739_000 + (i % 97)
        lang = "de" if i % 2 else "ar"
        recent.add(i, f"a{i}", f"s{i}", day, rng.standard_normal(8).astype(np.float32), lang)
        added.append((f"a{i}", day, lang))
        if i % 1500 == 0 or i == story_state.RECENT_ARTICLES + story_state.RECENT_ARTICLES // 10 + 1:
            kept = added[-len(recent.articles) :]  # the newest rows survive a trim
            assert list(recent.articles) == [a for a, _, _ in kept]
            assert recent.day_values(-1.0).tolist() == [-1.0 if d is None else float(d) for _, d, _ in kept]
            assert list(recent.langs) == [lang or UNDETERMINED_LANG for _, _, lang in kept]  # none: undetermined
            assert len(recent.langs) == len(recent.stories)  # the languages are trimmed with the rest
            every = np.ones(len(recent.stories), dtype=bool)
            newest, oldest = recent.stories[-1], recent.stories[0]
            assert (recent.count(newest, every), recent.count(oldest, every)) == (1, 1)  # one article each
            if len(recent.stories) < len(added):
                assert recent.count("s0", every) == 0  # trimmed away with its row
    assert len(recent.days) < story_state.RECENT_ARTICLES + story_state.RECENT_ARTICLES // 10 + 1  # trimmed
    assert [recent.langs[k] for k in (-2, -1)] == [
        "de" if int(recent.articles[k][1:]) % 2 else "ar" for k in (-2, -1)
    ]  # each row keeps its own language
    assert recent.day_values(7.0).tolist() == [7.0 if d is None else float(d) for d in recent.days]
