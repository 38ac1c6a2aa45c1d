"""Language offsets of a multilingual model's space (stream.story_state.StoryState.neutral), and related
stories in the warm-up.

A multilingual model puts each language at an offset of its own: two articles in one language about two
events can score higher than one event reported in two languages. The state keeps a running mean per
language and matches an article without its language's offset. The vectors here are built by hand so
that the offset is known: each is an event direction plus a language direction plus noise.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from sednaya_monitor.prometheus_metrics import PrometheusMetrics
from sednaya_monitor.settings import Settings
from sednaya_monitor.wiring import make_assign_stage
from stream.article import Article
from stream.assign_stage import AssignStage
from stream.embedding_use import UniversalSentenceEncoder
from stream.story_state import StoryState
from tests.story_corpus import vector_article
from tests.vector_space import DIM, EVENTS, unit
from tests.vector_space import Space as VectorSpace

T0 = datetime(2025, 3, 1, tzinfo=UTC)
RNG_SEED = 7


_unit = unit


def new_space() -> VectorSpace:  # the strong language directions these tests are about
    return VectorSpace(seed=RNG_SEED, lang_scale=1.2, noise=0.05)


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(_unit(a), _unit(b)))


def _fill(state: StoryState, space: VectorSpace, per_event: int = 4) -> None:
    for _ in range(per_event):
        for event in range(EVENTS):
            for lang in ("xx", "yy"):
                state.observe(space.vector(event, lang), [], lang)


def test_an_article_is_matched_without_its_languages_offset(tmp_path: Path) -> None:
    space = new_space()
    state = StoryState(tmp_path / "state.sqlite3")
    try:
        _fill(state, space)
        same_event_xx, same_event_yy = space.vector(0, "xx"), space.vector(0, "yy")
        other_event_xx = space.vector(1, "xx")
        assert state.center() is None  # observe() opens no story: the centre is not announced, only kept
        raw_center = state._center  # the running mean, known from the first article
        assert raw_center is not None

        def centred(v: np.ndarray, lang: str) -> np.ndarray:
            return _unit(state.neutral(v, lang) - raw_center)

        # One centre: the shared language wins over the shared event.
        assert _cos(same_event_xx - raw_center, other_event_xx - raw_center) > _cos(
            same_event_xx - raw_center, same_event_yy - raw_center
        )
        # Offsets taken away: the event wins.
        across = _cos(centred(same_event_xx, "xx"), centred(same_event_yy, "yy"))
        within = _cos(centred(same_event_xx, "xx"), centred(other_event_xx, "xx"))
        assert across > 0.6 > 0.2 > within
        # An undetermined or unseen language has no offset to take away.
        v = space.vector(2, "xx")
        assert np.array_equal(state.neutral(v, "und"), v)
        assert np.array_equal(state.neutral(v, "zz"), v)
    finally:
        state.close()


def test_the_language_means_are_durable_and_an_uncommitted_batch_leaves_them(tmp_path: Path) -> None:
    space = new_space()
    path = tmp_path / "state.sqlite3"
    probe = space.vector(3, "yy")
    state = StoryState(path)
    try:
        _fill(state, space)
        state.commit()
        before = state.neutral(probe, "yy")
        for _ in range(30):  # a batch that never commits moves the mean ...
            state.observe(space.vector(5, "yy"), [], "yy")
        assert not np.allclose(state.neutral(probe, "yy"), before)
        state.rollback()  # ... and is forgotten with it
        assert np.allclose(state.neutral(probe, "yy"), before)
    finally:
        state.close()
    reopened = StoryState(path)
    try:
        assert np.allclose(reopened.neutral(probe, "yy"), before)  # a restart matches as before
    finally:
        reopened.close()


def test_a_language_with_few_articles_gets_a_shrunk_offset(tmp_path: Path) -> None:
    space = new_space()
    state = StoryState(tmp_path / "state.sqlite3")
    try:
        for event in range(EVENTS):  # many "xx" articles set the centre
            for _ in range(3):
                state.observe(space.vector(event, "xx"), [], "xx")
        state.observe(space.vector(0, "yy"), [], "yy")  # one "yy" article: its mean is mostly one event
        v = space.vector(0, "yy")
        moved = float(np.linalg.norm(state.neutral(v, "yy") - v))
        for event in range(EVENTS):
            for _ in range(3):
                state.observe(space.vector(event, "yy"), [], "yy")
        assert float(np.linalg.norm(state.neutral(v, "yy") - v)) > 2 * moved  # the full offset once known
    finally:
        state.close()


@pytest.fixture
def stage(settings: Settings, embedder: UniversalSentenceEncoder, tmp_path: Path) -> Iterator[AssignStage]:
    # The articles bring their vectors: the multilingual model is the stage's, never called.
    made = make_assign_stage(
        settings.replace(data_dir=tmp_path, cluster_warmup_threshold=0.99, merge_every=10_000),
        PrometheusMetrics(CollectorRegistry()),
        embedder=embedder,
    )
    yield made
    made.close()


def _article(n: int, lang: str, vector: np.ndarray) -> Article:
    return vector_article(n, lang, vector, start=T0)


def test_the_stage_puts_one_event_in_two_languages_in_one_story(stage: AssignStage) -> None:
    space = new_space()
    history = [
        _article(i, ("xx", "yy")[i % 2], space.vector(1 + (i // 2) % (EVENTS - 1), ("xx", "yy")[i % 2]))
        for i in range(60)
    ]  # events 1..7 in both languages: the centre and each language's mean
    stage.process(history)
    first, second = _article(100, "xx", space.vector(0, "xx")), _article(101, "yy", space.vector(0, "yy"))
    out, events = stage.process([first, second])
    assert out[0].story_id == out[1].story_id  # event 0 in its second language joins, no new story
    assert [e.kind for e in events] == ["created", "updated"]


def test_in_the_warm_up_a_story_close_to_another_is_related_by_raw_cosine(
    settings: Settings, embedder: UniversalSentenceEncoder, tmp_path: Path
) -> None:
    rng = np.random.default_rng(RNG_SEED)
    first = _unit(rng.normal(size=DIM))
    other = _unit(rng.normal(size=DIM))
    facet = _unit(first + 0.9 * other)  # raw cosine with the first about 0.74: below the join, above 0.55
    for warmup, expected in ((0.55, True), (1.01, False)):
        made = make_assign_stage(
            settings.replace(
                data_dir=tmp_path / str(warmup), cluster_warmup_threshold=0.99, related_warmup_threshold=warmup
            ),
            PrometheusMetrics(CollectorRegistry()),
            embedder=embedder,
        )
        try:
            out, events = made.process([_article(1, "xx", first), _article(2, "yy", facet)])
            assert made.state.center() is None  # still the warm-up
            assert [e.kind for e in events] == ["created", "created"]
            related = events[1].extra.get("related_story")
            assert (related == out[0].story_id) is expected
        finally:
            made.close()
