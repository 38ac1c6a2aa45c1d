"""Stories across languages with the multilingual default model (fixtures: tests/multilingual_corpus.py).

Policy under test (docs/clustering.md): one event in any number of languages is one story; its first
article in a new language is an update, never a new story; an undated article is matched by content
whatever its discovery time and does not move the story's dated range; a merge moves every article of
the absorbed story to the survivor.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from sednaya_monitor.prometheus_metrics import PrometheusMetrics
from sednaya_monitor.settings import Settings
from sednaya_monitor.wiring import make_assign_stage
from stream.assign_stage import AssignStage
from stream.embedding_use import UniversalSentenceEncoder
from tests import multilingual_corpus as corpus

LANGS = ("en", "ar", "fr", "de", "tr", "ru")


def apart_then_merged(settings_factory: Callable[..., Settings], data_dir: Path, *, merge_every: int) -> Settings:
    """A join threshold nothing reaches keeps every report apart; the merge pass then folds them."""
    return settings_factory(
        cluster_threshold=0.99,
        cluster_warmup_threshold=0.99,
        date_bonus=0.0,
        merge_threshold=0.6,
        merge_warmup_threshold=0.6,
        merge_every=merge_every,
        data_dir=data_dir,
    )


@pytest.fixture
def stage(settings: Settings, embedder: UniversalSentenceEncoder) -> Iterator[AssignStage]:
    made = make_assign_stage(settings, PrometheusMetrics(CollectorRegistry()), embedder=embedder)
    yield made
    made.close()


def test_one_event_in_six_languages_is_one_story_created_once(stage: AssignStage) -> None:
    out, events = stage.process([corpus.cells(lang) for lang in LANGS])
    assert len({a.story_id for a in out}) == 1, [(a.lang, a.story_id) for a in out]
    assert [a.story_role for a in out] == ["first"] + ["follow_up"] * (len(LANGS) - 1)
    assert [e.kind for e in events] == ["created"] + ["updated"] * (len(LANGS) - 1)
    assert set(events[-1].story.languages) == set(LANGS)


def test_two_events_of_one_week_at_one_place_are_two_stories(stage: AssignStage) -> None:
    out, events = stage.process([*(corpus.cells(lang) for lang in LANGS), corpus.files("en"), corpus.files("fr")])
    cells, files = out[: len(LANGS)], out[len(LANGS) :]
    assert len({a.story_id for a in cells}) == 1
    assert len({a.story_id for a in files}) == 1
    assert files[0].story_id != cells[0].story_id
    assert [e.kind for e in events].count("created") == 2


def test_two_texts_sharing_only_the_prisons_name_and_assad_are_not_linked(stage: AssignStage) -> None:
    """The default model's behaviour (their cosine is low); the mechanism, names of the topic and common
    entities weighing nothing where anchors alone link, is tested on the anchors' path:
    tests/test_clustering.py::test_where_only_anchors_link_languages_the_topics_name_and_a_common_entity_link_nothing."""
    out, _ = stage.process([corpus.exhibition(), corpus.sanctions_debate()])
    assert out[0].story_id != out[1].story_id
    assert [a.story_role for a in out] == ["first", "first"]


def test_the_topic_names_are_no_evidence_and_shared_anchors_weigh_by_rarity(stage: AssignStage) -> None:
    text = "Sednaya Saydnaya صيدنايا prison, 9 December 2024, 1,200 detainees"
    anchors = stage.anchors.extract(text) - stage.topic_names
    assert not {a for a in anchors if a.startswith("name:s")}, anchors  # no name variant of the topic
    assert "num:1200" in anchors and "date:2024-12-09" in anchors
    # an anchor every recent article carries weighs less than one seen once
    for i in range(30):
        stage.state.observe(stage.embedder.embed([f"report {i}"])[0], {"ent:bashar-al-assad"})
    stage.state.observe(stage.embedder.embed(["one report"])[0], {"num:1200"})
    assert stage.state.rarity("ent:bashar-al-assad") < 0.2 < 0.7 < stage.state.rarity("num:1200")


def test_an_undated_article_joins_by_content_and_keeps_the_dated_range(stage: AssignStage) -> None:
    dated, _ = stage.process([corpus.cells("en"), corpus.cells("fr")])
    # discovered two years later, no publication date: matched by content, not by its discovery time
    late = datetime(2026, 12, 6, tzinfo=UTC)
    undated = corpus.cells("ar", dated=False).replace(discovered_at=late, fetched_at=late)
    out, events = stage.process([undated])
    assert out[0].story_id == dated[0].story_id and out[0].story_role == "follow_up"
    record = stage.state.get(dated[0].story_id)  # type: ignore[arg-type]
    assert record is not None and record.dated_last == corpus.cells("en").published
    assert events[0].kind == "updated"


def test_a_dated_article_of_another_week_does_not_join_an_active_story(
    settings_factory: Callable[..., Settings], embedder: UniversalSentenceEncoder, tmp_path: Path
) -> None:
    stage = make_assign_stage(
        settings_factory(date_gate_days=2.0, cluster_window_days=30, data_dir=tmp_path / "gate"),
        PrometheusMetrics(CollectorRegistry()),
        embedder=embedder,
    )
    try:
        later = corpus.cells("de").replace(published=datetime(2024, 12, 20, 10, tzinfo=UTC))
        out, _ = stage.process([corpus.cells("en"), later])
        assert out[0].story_id != out[1].story_id  # same text, eleven days apart: the gate keeps them apart
    finally:
        stage.close()


def test_a_merge_moves_the_absorbed_articles_to_the_survivor(
    settings_factory: Callable[..., Settings], embedder: UniversalSentenceEncoder, tmp_path: Path
) -> None:
    settings = apart_then_merged(settings_factory, tmp_path / "merge", merge_every=1000)
    stage = make_assign_stage(settings, PrometheusMetrics(CollectorRegistry()), embedder=embedder)
    try:
        out, _ = stage.process([corpus.cells("en"), corpus.cells("fr"), corpus.cells("de")])
        assert len({a.story_id for a in out}) == 3
        events = stage.merge_now(corpus.cells("de"))
        assert [e.kind for e in events] == ["merged"]
        survivor = events[0].story.id
        ids = {a.story_id for a in out}
        assert survivor == min(ids)  # type: ignore[type-var]  # one publication time: the tie goes to the lower story id
        assert set(events[0].merged_ids) == ids - {survivor}
        for article in out:  # a re-delivered article answers with the survivor
            decision = stage.state.decision(article.id)
            assert decision is not None and decision.story_id == survivor
        replayed, again = stage.process([corpus.cells("fr")])
        assert replayed[0].story_id == survivor and again == []
    finally:
        stage.close()


def test_a_merge_reaches_the_search_store(
    settings_factory: Callable[..., Settings], embedder: UniversalSentenceEncoder, tmp_path: Path
) -> None:
    from sednaya_monitor.pipeline import Pipeline

    settings = apart_then_merged(settings_factory, tmp_path / "pipe", merge_every=3)
    pipeline = Pipeline(settings, PrometheusMetrics(CollectorRegistry()), embedder=embedder)
    try:
        articles = [corpus.cells("en"), corpus.cells("fr"), corpus.cells("de")]
        pipeline.publish(articles)
        pipeline.drain()
        stored = [pipeline.store.get_article(a.id) for a in articles]
        story_ids = {a.story_id for a in stored if a is not None}
        assert len(story_ids) == 1, story_ids  # every article moved to the survivor in the store
        survivor = pipeline.store.get_story(story_ids.pop())  # type: ignore[arg-type]
        assert survivor is not None and survivor.merged_into is None
    finally:
        pipeline.close()


@pytest.mark.slow
def test_the_demo_shows_one_story_per_event_across_languages(tmp_path: Path) -> None:
    """The bundled demo web: the prison's opening (Arabic, then English) and the salt rooms filmed
    (Turkish, then Arabic) are one story each; the other nine reports are stories of their own."""
    import json
    import os

    from tests.crawl_fixtures import run_cli

    env = {k: v for k, v in os.environ.items() if not k.startswith("SEDNAYA_MONITOR_")}
    data = str(tmp_path / "data")
    done = run_cli(env, "--data-dir", data, "demo", "--no-serve", timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    exported = run_cli(env, "--data-dir", data, "export", "--format", "jsonl")
    assert exported.returncode == 0, exported.stderr[-3000:]
    rows = [json.loads(line) for line in exported.stdout.splitlines() if line.strip()]
    story = {row["url"].split("?")[0].rsplit("/", 1)[-1]: row["story_id"] for row in rows}
    assert story["liberation.html"] == story["sednaya-survivors.html"]
    assert story["salt-rooms.html"] == story["sednaya-cezaevi-tuz-odalari.html"]
    assert story["liberation.html"] != story["salt-rooms.html"]
    assert len(set(story.values())) == len(rows) - 2, sorted(story.items())


def test_a_fresh_start_on_one_narrow_topic_alerts_each_of_its_different_events(stage: AssignStage) -> None:
    """The first articles of a data directory come before the topic's centre is known (the warm-up, raw
    cosines). Three different developments of one prison, published the same day, are three new stories,
    none related to another: on one narrow topic, raw cosines of different events run high (0.634 for the
    crematorium report and the commander's arrest with USE-m3), so the default model's warm-up thresholds
    stay above them (docs/clustering.md)."""
    from tests import story_corpus

    day = datetime(2026, 3, 2, 6, tzinfo=UTC)
    reports = [story_corpus.crematorium_original(), story_corpus.commander_arrest(), story_corpus.turk_visit_ar()]
    articles = [a.replace(published=day.replace(hour=6 + i)) for i, a in enumerate(reports)]
    out, events = stage.process(articles)
    assert stage.state.center() is None  # still the warm-up
    assert len({a.story_id for a in out}) == 3
    assert [e.kind for e in events] == ["created"] * 3
    assert not any(e.extra.get("related_story") for e in events)
