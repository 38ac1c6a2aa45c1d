"""The warm-up hold (stream.assign_stage, settings.warmup_hold_s): the story events of a fresh state's first
articles wait until the topic's centre is known, then go out with the warm-up's stories read again in the
centred space, so that one event first reported in two languages alerts once.

The vectors are built by hand (as in tests/test_language_offsets.py): each is an event direction plus a
language direction plus a little noise, so what the raw and the centred cosines say is known. With the
language directions at 0.8 of an event's, one event in two languages has a raw cosine of about 0.6 (below
the default model's warm-up join threshold, 0.7: two stories) and a centred one of about 0.45 (above its
related threshold, 0.25); two events in one language stay below it once centred.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from sednaya_monitor.pipeline import Pipeline
from sednaya_monitor.prometheus_metrics import PrometheusMetrics
from sednaya_monitor.settings import Settings
from sednaya_monitor.wiring import make_assign_stage
from stream.article import Article
from stream.assign_stage import AssignStage
from stream.bus_embedded import EmbeddedBus
from stream.clustering import MULTILINGUAL, UNDETERMINED_LANG, ClusterParams, WarmupRows, warmup_review
from stream.embedding_use import UniversalSentenceEncoder
from stream.errors import ContractError
from stream.story import StoryEvent
from stream.story_state import CENTER_MIN_ARTICLES
from stream.worker import StageWorker
from tests import story_corpus as corpus
from tests.vector_space import DIM, EVENTS, unit
from tests.vector_space import Space as VectorSpace

T0 = datetime(2025, 3, 1, tzinfo=UTC)
HOLD_S = 600.0


_unit = unit


def new_space() -> VectorSpace:  # language directions at 0.8 of an event's (module docstring)
    return VectorSpace(seed=11, lang_scale=0.8, noise=0.02)


class Clock:
    """Wall-clock seconds the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _article(n: int, lang: str, vector: np.ndarray) -> Article:
    return corpus.vector_article(n, lang, vector, start=T0)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def make(
    settings: Settings, embedder: UniversalSentenceEncoder, tmp_path: Path, clock: Clock
) -> Iterator[Callable[..., AssignStage]]:
    """Stages on one data directory with the default model's calibration and the hold on. The articles
    bring their vectors: the multilingual model is the stage's, never called."""
    made: list[AssignStage] = []

    def build(**overrides: object) -> AssignStage:
        chosen = settings.replace(**{"data_dir": tmp_path, "merge_every": 10_000, "warmup_hold_s": HOLD_S, **overrides})
        stage = make_assign_stage(chosen, PrometheusMetrics(CollectorRegistry()), embedder=embedder)
        stage.clock = clock
        made.append(stage)
        return stage

    yield build
    for stage in made:
        with contextlib.suppress(sqlite3.ProgrammingError):  # closed by the test already
            stage.state.close()


def _stream(space: VectorSpace) -> list[Article]:
    """Event 0 in xx then in yy, then events 1..7 in both languages: 16 articles, 9 stories' worth, and
    more of the same until the centre is known (20 articles of at least 3 stories)."""
    order = [(0, "xx"), (0, "yy")] + [(e, lang) for e in range(1, EVENTS) for lang in ("xx", "yy")]
    order += [(e, "xx") for e in range(1, 7)]
    return [_article(n, lang, space.vector(event, lang)) for n, (event, lang) in enumerate(order)]


def _created(events: list[StoryEvent]) -> dict[str, StoryEvent]:
    return {e.story.id: e for e in events if e.kind == "created"}


def test_the_warm_ups_events_wait_for_the_centre_then_one_event_in_two_languages_is_one_story_for_alerts(
    make: Callable[..., AssignStage],
) -> None:
    stage = make()
    articles = _stream(new_space())
    released: list[StoryEvent] = []
    stories: dict[str, str] = {}
    held = 0
    for article in articles:
        warm = stage.state.center() is None
        out, events = stage.process([article])
        stories[article.id] = out[0].story_id or ""
        assert out[0].story_id, "articles flow on while their events wait"
        if warm and stage.state.center() is None:
            assert events == [], "nothing goes out during the warm-up"
            held += 1
        elif warm:
            assert len(events) == held + 1, "at the end of the warm-up every held event goes out"
        released.extend(events)
    assert stage.state.center() is not None and held == CENTER_MIN_ARTICLES - 1  # the 20th ends the warm-up
    assert stage.state.held_events() == []
    assert all(e.extra.get("warm_up") == "held" for e in released[: held + 1])
    assert not any(e.extra.get("warm_up") for e in released[held + 1 :])
    # one event in two languages opened two stories on raw cosines: they stay two stories ...
    xx, yy = stories[articles[0].id], stories[articles[1].id]
    assert xx != yy
    created = _created(released)
    assert set(created) == set(stories.values()), "every story's created event went out"
    # ... and the second is related to the first: one story for alerting
    assert created[yy].extra.get("related_story") == xx
    # different events are not related to each other
    others = {s for a, s in stories.items() if a not in (articles[0].id, articles[1].id)}
    for story in others:
        assert "related_story" not in created[story].extra and "near_story" not in created[story].extra, story
    # the held events went out in the order they were held: a story's created before its updates
    seen: set[str] = set()
    for event in released:
        assert event.kind == "created" or event.story.id in seen
        seen.add(event.story.id)


def test_without_the_hold_the_second_language_opens_a_story_alerted_on_its_own(
    make: Callable[..., AssignStage],
) -> None:
    stage = make(warmup_hold_s=0.0)
    articles = _stream(new_space())
    out, events = stage.process(articles[:2])
    assert [e.kind for e in events] == ["created", "created"]  # out at once, in the warm-up
    assert out[0].story_id != out[1].story_id
    assert "related_story" not in events[1].extra  # raw cosines relate nothing (related warm-up off)


def test_held_events_survive_a_restart_and_go_out_at_the_end_of_the_input(
    make: Callable[..., AssignStage],
) -> None:
    articles = _stream(new_space())
    first = make()
    out, events = first.process(articles[:5])
    assert events == [] and len(first.state.held_events()) == 5
    first.state.close()
    second = make()  # a new process on the same data directory
    assert len(second.state.held_events()) == 5
    released = second.end_of_input()
    assert [e.article_id for e in released] == [a.id for a in articles[:5]]
    assert {e.story.id for e in released} == {a.story_id for a in out}
    assert second.state.held_events() == []
    assert second.end_of_input() == []  # once


def test_a_story_merged_during_the_hold_goes_out_related_to_its_survivor(make: Callable[..., AssignStage]) -> None:
    """Its created event goes out before the merged event: the alert stage must already count the two as
    one story, whatever the warm-up review says of the survivor (here: nothing, the centre is unknown)."""
    stage = make()
    space = new_space()
    articles = [_article(n, "xx", space.vector(event, "xx")) for n, event in enumerate((1, 2, 3))]
    out, events = stage.process(articles)
    assert events == [] and len({a.story_id for a in out}) == 3
    older, younger = (stage.state.get(a.story_id or "") for a in out[:2])
    assert older is not None and younger is not None
    stage.state.merge(older, younger)  # as a merge pass during the warm-up would
    stage.state.commit()
    released = _created(stage.end_of_input())
    assert released[younger.id].extra.get("related_story") == older.id
    assert "related_story" not in released[older.id].extra
    assert "related_story" not in released[out[2].story_id or ""].extra


def test_the_time_limit_releases_what_is_held(make: Callable[..., AssignStage], clock: Clock) -> None:
    stage = make()
    articles = _stream(new_space())
    stage.process(articles[:3])
    clock.now += HOLD_S - 1
    assert stage.on_idle() == []
    clock.now += 2
    released = stage.on_idle()
    assert [e.article_id for e in released] == [a.id for a in articles[:3]]
    assert all("related_story" not in e.extra for e in released)  # the centre is still unknown
    _, events = stage.process(articles[3:4])
    assert events == []  # still the warm-up: the next events are held again


def test_a_failed_batch_holds_nothing(make: Callable[..., AssignStage]) -> None:
    stage = make()
    articles = _stream(new_space())
    broken = _article(99, "xx", new_space().vector(3, "xx")[: DIM - 1])  # a vector of the wrong length
    with pytest.raises(ContractError):
        stage.process([articles[0], broken])
    assert stage.state.held_events() == []
    assert stage.state.decision(articles[0].id) is None


def test_warmup_links_follow_the_related_rule() -> None:
    params = ClusterParams(
        related_threshold=0.25, related_date_bonus=0.05, date_gate_days=7.0, model_languages=frozenset({MULTILINGUAL})
    )
    u = np.linalg.qr(np.random.default_rng(3).normal(size=(DIM, DIM)))[0].astype(np.float32)
    a, c = u[0], u[3]
    b = _unit(u[0] + 0.8 * u[1])  # 0.78 with a
    e = _unit(u[1] + 0.3 * u[2])  # 0.60 with b, 0 with a
    rows = np.stack([a, c, b, e, a])
    days: list[int | None] = [100, 100, 101, None, 200]
    links = warmup_review(_rows(["A", "C", "B", "E", "D"], rows, days), params).links
    # B relates to A; E to B and through it to A (undated: no date gate); C to nothing; D is A's twin but
    # published 100 days later: past the date gate
    assert links == {"B": "A", "E": "A"}
    pair = _rows(["A", "B"], rows[[0, 2]], [100, 100])
    assert warmup_review(pair, replace(params, related_threshold=1.01)).links == {}
    english = replace(params, model_languages=frozenset({"en"}))
    assert warmup_review(pair, english).links == {}
    # two articles in one language need the one-language margin more (0.78 < 0.25 + 0.6), and get no date bonus
    one_language = replace(pair, langs=["fr", "fr"])
    assert warmup_review(one_language, replace(params, same_language_margin=0.6)).links == {}
    assert warmup_review(replace(pair, langs=["fr", "de"]), replace(params, same_language_margin=0.6)).links == {
        "B": "A"
    }


def test_warmup_review_finds_the_stories_that_only_nearly_relate() -> None:
    """A warm-up story that links to none is *near* the group of the older story its first article falls
    short of by less than ``unconfirmed_margin``; a story that links through a later article is not."""
    params = ClusterParams(related_threshold=0.25, unconfirmed_margin=0.1, model_languages=frozenset({MULTILINGUAL}))
    u = np.linalg.qr(np.random.default_rng(5).normal(size=(DIM, DIM)))[0].astype(np.float32)
    a = u[0]
    b = _unit(u[0] + 0.8 * u[1])  # 0.78 with a: B links to A
    n = _unit(0.3 * u[1] + u[2])  # 0.18 with b, 0 with a: 0.07 short of b, near B's group (A)
    m = _unit(0.2 * u[0] + u[3])  # 0.2 with a: near, but M's second article links it to A
    m2 = _unit(u[0] + 0.5 * u[3])
    f = u[4]  # nothing
    rows = np.stack([a, b, n, m, f, m2])
    review = warmup_review(_rows(["A", "B", "N", "M", "F", "M"], rows, [None] * 6), params)
    assert review.links == {"B": "A", "M": "A"}
    assert review.near == {"N": "A"}
    off = replace(params, unconfirmed_margin=0.0)
    assert warmup_review(_rows(["A", "B", "N", "M", "F", "M"], rows, [None] * 6), off).near == {}


def _rows(stories: list[str], vectors: np.ndarray, days: list[int | None]) -> WarmupRows:
    """Warm-up rows of articles in undetermined languages (no one-language margin between them)."""
    return WarmupRows(stories=stories, vectors=vectors, days=days, langs=[UNDETERMINED_LANG] * len(stories))


def test_an_ingest_with_the_hold_as_shipped_loses_no_story_event(settings: Settings, tmp_path: Path) -> None:
    """The one-process pipeline drains: the end of its input releases what the warm-up held."""
    shipped = settings.replace(data_dir=tmp_path / "run", warmup_hold_s=Settings().warmup_hold_s)
    assert shipped.warmup_hold_s > 0
    metrics = PrometheusMetrics(CollectorRegistry())
    pipeline = Pipeline(shipped, metrics)
    try:
        articles = [corpus.crematorium_original(), corpus.commander_arrest(), corpus.unrelated_regatta()]
        pipeline.publish(articles)
        pipeline.drain()
        created = metrics.registry.get_sample_value("sednaya_story_events_total", {"kind": "created"})
        assert created == 3
        assert pipeline.stage(AssignStage).state.held_events() == []
    finally:
        pipeline.close()


def test_the_stage_worker_releases_at_the_time_limit_when_its_input_is_quiet(
    make: Callable[..., AssignStage], clock: Clock, tmp_path: Path
) -> None:
    """In a stage process nothing may come after the warm-up's last article: an empty poll checks the limit."""
    bus = EmbeddedBus(tmp_path / "bus.sqlite3")
    stage = make()
    stage.bus = bus
    settings = stage.config
    bus.ensure_topics([settings.topic_raw, settings.topic_clustered, settings.topic_story_events])
    worker = StageWorker(bus, settings.topic_raw, "embed", stage, metrics=PrometheusMetrics(CollectorRegistry()))
    for article in _stream(new_space())[:3]:
        bus.publish(settings.topic_raw, article.id, article.to_bytes(with_embedding=True))
    bus.flush()
    assert worker.run_once(0.0) == 3
    story_events = bus.consumer(settings.topic_story_events, "reader")
    assert story_events.poll(10, 0.0) == []  # held
    assert worker.run_once(0.0) == 0  # quiet input, limit not reached
    assert story_events.poll(10, 0.0) == []
    held = stage.metrics.registry.get_sample_value("sednaya_story_events_held")  # type: ignore[attr-defined]
    assert held == 3
    clock.now += HOLD_S
    assert worker.run_once(0.0) == 0  # quiet input, limit reached: released
    assert stage.metrics.registry.get_sample_value("sednaya_story_events_held") == 0  # type: ignore[attr-defined]
    got = [StoryEvent.from_bytes(r.value) for r in story_events.poll(10, 0.0)]
    assert [e.kind for e in got] == ["created"] * 3
    story_events.close()
    worker.close()
    bus.close()


def test_on_one_narrow_topic_the_review_relates_only_reports_of_one_event(
    settings: Settings, embedder: UniversalSentenceEncoder, tmp_path: Path
) -> None:
    """The project's own Sednaya fixtures, real model, publication order, the hold as shipped: the warm-up
    ends within them, and its review (centred cosines on one narrow topic) never relates the archive work
    of the same week and place to the search for cells, nor texts that share only the prison's name and
    "Assad" to either: the safety side of tests above (it fails when the review relates everything)."""
    from tests import multilingual_corpus as mc
    from tests.distributed_fixtures import fixture_articles

    langs = ("en", "ar", "fr", "de", "tr", "ru")
    cells = [mc.cells(lang) for lang in langs]
    files = [mc.files(lang) for lang in ("en", "fr")]
    apart = [mc.exhibition(), mc.sanctions_debate()]
    others = [corpus.crematorium_original(), *corpus.crematorium_copies(), corpus.syrian_denial()]
    others += [corpus.anniversary_piece(), corpus.commander_arrest(), corpus.turk_visit_en(), corpus.turk_visit_ar()]
    others += [corpus.unrelated_regatta(), corpus.unrelated_arabic(), *fixture_articles()]
    unique = {a.id: a for a in [*cells, *files, *apart, *others]}
    articles = sorted(unique.values(), key=lambda a: (a.published or a.discovered_at, a.id))
    shipped = settings.replace(data_dir=tmp_path, warmup_hold_s=Settings().warmup_hold_s)
    stage = make_assign_stage(shipped, PrometheusMetrics(CollectorRegistry()), embedder=embedder)
    try:
        out, events = stage.process(articles)
        events += stage.end_of_input()
        assert stage.state.center() is not None  # the warm-up ended within the stream
        story = {a.id: a.story_id for a in out}
        created = _created(events)
        assert any(e.extra.get("warm_up") == "held" for e in created.values())

        def group(story_id: str) -> str:
            return created[story_id].extra.get("related_story") or story_id

        cells_group = {group(story[a.id] or "") for a in cells}
        assert len(cells_group) == 1, "one event in six languages: one story for alerting"
        files_group = {group(story[a.id] or "") for a in files}
        assert files_group.isdisjoint(cells_group), "another event of the same week and place"
        for article in apart:
            assert group(story[article.id] or "") not in cells_group | files_group, article.title
    finally:
        stage.close()


def test_the_held_count_and_the_oldest_time_follow_the_table(make: Callable[..., AssignStage], clock: Clock) -> None:
    """The stage asks both before and after every batch: they are kept in memory, and stay equal to the
    table through holds, a failed batch, a restart and a release."""

    def check(stage: AssignStage, count: int, oldest: float | None) -> None:
        held = stage.state.held_events()
        assert len(held) == count and (min(h.held_at for h in held) if held else None) == oldest
        assert (stage.state.held_count(), stage.state.oldest_held_at()) == (count, oldest)

    articles = _stream(new_space())
    first = make()
    check(first, 0, None)
    start = clock.now
    first.process(articles[:3])
    check(first, 3, start)
    clock.now += 5
    first.process(articles[3:4])
    check(first, 4, start)
    broken = _article(99, "xx", new_space().vector(3, "xx")[: DIM - 1])  # a vector of the wrong length
    with pytest.raises(ContractError):
        first.process([articles[4], broken])  # held one, then failed: rolled back
    check(first, 4, start)
    first.state.close()
    second = make()  # a new process on the same data directory
    check(second, 4, start)
    assert len(second.end_of_input()) == 4
    check(second, 0, None)
