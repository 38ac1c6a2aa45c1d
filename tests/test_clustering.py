"""Story clustering: the pure decision, anchors, and the embed stage on the real model and a real bus.

The corpus (tests/story_corpus.py, our own words): the 15 May 2017 crematorium briefing and five
syndicated copies, the Syrian denial the next day, an anniversary piece a year later, a 2025 arrest,
a UN visit reported in English and Arabic, and unrelated news.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import cast

import numpy as np
import pytest
from numpy.typing import NDArray
from prometheus_client import CollectorRegistry

from sednaya_monitor.prometheus_metrics import PrometheusMetrics
from sednaya_monitor.settings import Settings
from sednaya_monitor.wiring import make_assign_stage
from stream.anchors import AnchorExtractor, event_kinds, parse_figure
from stream.article import Article
from stream.assign_stage import AssignStage
from stream.bus import H_ENTERED_AT, H_SCHEMA, Record
from stream.bus_embedded import EmbeddedBus
from stream.clustering import (
    REACH_MIN_DISTANCE,
    REACH_SLACK,
    UNDETERMINED_LANG,
    ArticleFeatures,
    Candidate,
    ClusterParams,
    Neighbour,
    Reach,
    Relation,
    assign,
    cosines,
    date_share,
    days_share,
    join_needed,
    merge_pairs,
    reach,
    relate,
    score_candidate,
    should_merge,
)
from stream.embedding import SentenceTransformerEmbedder
from stream.story import StoryEvent
from stream.story_state import STATE_FILE, StoryRecord, StoryState
from stream.topic import load_topic
from stream.worker import StageWorker
from tests import story_corpus as corpus
from tests.store_fixtures import make_article

T0 = datetime(2017, 5, 15, tzinfo=UTC)


def _unit(*xs: float) -> np.ndarray:
    v = np.array(xs, dtype=np.float32)
    return v / np.linalg.norm(v)


def _article(
    vector: np.ndarray,
    *,
    anchors: frozenset[str] = frozenset(),
    kinds: frozenset[str] = frozenset(),
    lang: str = "en",
) -> ArticleFeatures:
    return ArticleFeatures(id="a", vector=vector, anchors=anchors, kinds=kinds, lang=lang, at=T0)


def _story(
    story_id: str,
    centroid: np.ndarray,
    *,
    anchors: frozenset[str] = frozenset(),
    kinds: frozenset[str] = frozenset(),
    langs: frozenset[str] = frozenset({"en"}),
    dormant: bool = False,
) -> Candidate:
    return Candidate(
        story_id=story_id,
        centroid=centroid,
        anchors=anchors,
        kinds=kinds,
        languages=langs,
        first_seen=T0,
        last_seen=T0,
        dormant=dormant,
    )


# --- the pure decision ---------------------------------------------------------------------------

PARAMS = ClusterParams(threshold=0.55)


def test_no_candidate_opens_a_story() -> None:
    assert assign(_article(_unit(1, 0)), [], PARAMS).action == "new"


def test_the_most_similar_story_above_the_threshold_wins() -> None:
    cands = [_story("far", _unit(0, 1)), _story("near", _unit(1, 0.2)), _story("mid", _unit(1, 0.8))]
    decision = assign(_article(_unit(1, 0)), cands, PARAMS)
    assert (decision.action, decision.story_id) == ("join", "near")
    assert decision.similarity == pytest.approx(float(_unit(1, 0) @ _unit(1, 0.2)))


def test_below_the_threshold_opens_a_story() -> None:
    assert assign(_article(_unit(1, 0)), [_story("s", _unit(1, 2))], PARAMS).action == "new"  # cos 0.45


def test_a_new_kind_of_development_opens_a_story_despite_high_similarity() -> None:
    story = _story("briefing", _unit(1, 0.5))  # cos 0.89: the same names and figures
    denial = _article(_unit(1, 0), kinds=frozenset({"denial"}))
    decision = assign(denial, [story], PARAMS)
    assert decision.action == "new"
    same_kind = _story("denials", _unit(1, 0.6), kinds=frozenset({"denial"}))
    assert assign(denial, [story, same_kind], PARAMS).story_id == "denials"


def test_a_dormant_story_needs_shared_specific_anchors() -> None:
    old = _story("old", _unit(1, 0.1), anchors=frozenset({"date:2017-05-15", "name:jones"}), dormant=True)
    assert assign(_article(_unit(1, 0)), [old], PARAMS).action == "new"
    retelling = _article(_unit(1, 0), anchors=frozenset({"date:2017-05-15"}))
    decision = assign(retelling, [old], PARAMS)
    assert (decision.action, decision.story_id) == ("follow_up", "old")


def test_other_languages_link_through_anchors_only() -> None:
    story = _story("en", _unit(1, 0), anchors=frozenset({"date:2025-01-15", "num:112000", "ent:volker-turk"}))
    few = _article(_unit(1, 0), anchors=frozenset({"num:112000"}), lang="ar")
    assert assign(few, [story], PARAMS).action == "new"  # cosine alone never links Arabic to English
    many = _article(_unit(0, 1), anchors=frozenset({"num:112000", "date:2025-01-15"}), lang="ar")
    decision = assign(many, [story], PARAMS)
    assert (decision.action, decision.cross_lingual) == ("join", True)
    multilingual = ClusterParams(threshold=0.55, model_languages=frozenset({"*"}))
    assert assign(_article(_unit(1, 0), lang="ar"), [story], multilingual).action == "join"


def test_a_story_published_the_same_days_in_another_language_needs_less_similarity() -> None:
    # centred cosines (a multilingual model, the topic's centre known; here the origin) get the bonus
    params = ClusterParams(threshold=0.55, date_bonus=0.15, model_languages=frozenset({"*"}))
    centre = np.zeros(2, dtype=np.float32)
    french = replace(
        _story("s", _unit(1, 2), langs=frozenset({"fr"})), dated_days=(T0.toordinal(),), mean=_unit(1, 2)
    )  # cos 0.45 with the English article below
    story = french
    same_day = _article(_unit(1, 0))
    decision = assign(same_day, [story], params, center=centre)
    assert decision.action == "join"
    assert decision.score == pytest.approx(0.447 + 0.15, abs=1e-3)
    # the bonus falls linearly to 0 at date_gate_days + 1 (8) days: 2 days on it is 0.15 * 6 / 8
    two_days_on = replace(same_day, at=T0 + timedelta(days=2))
    assert assign(two_days_on, [story], params, center=centre).score == pytest.approx(0.447 + 0.1125, abs=1e-3)
    assert assign(replace(same_day, dated=False), [story], params, center=centre).action == "new"  # time unknown
    assert assign(replace(same_day, at=T0 + timedelta(days=6)), [story], params, center=centre).action == "new"
    assert assign(replace(same_day, at=T0 + timedelta(days=30)), [story], params, center=centre).action == "new"
    undated_story = replace(story, dated_days=())
    assert assign(same_day, [undated_story], params, center=centre).action == "new"  # no dated article to be near
    # raw cosines (warm-up: no centre yet) sit high for any two texts of one topic: no bonus there
    warm = ClusterParams(warmup_threshold=0.55, date_bonus=0.15, model_languages=frozenset({"*"}))
    assert assign(same_day, [story], warm).action == "new"
    # in one language the cosine and the words speak, and one language's news has many stories a day: a
    # story all in the article's language gets no bonus; one with the article's language and another does
    english = replace(french, languages=frozenset({"en"}))
    assert assign(same_day, [english], params, center=centre).action == "new"
    both = replace(french, languages=frozenset({"en", "fr"}))
    assert assign(same_day, [both], params, center=centre).score == pytest.approx(0.447 + 0.15, abs=1e-3)


def test_a_day_many_stories_share_adds_less() -> None:
    # A busy week of one place's news: several developments are dated the same days, so a shared day says
    # less about which of them an article reports. Up to date_bonus_stories stories (each counted by the
    # bonus's fade) the bonus is whole; beyond, it is divided by their sum.
    params = ClusterParams(threshold=0.55, date_bonus=0.15, date_bonus_stories=1.5, model_languages=frozenset({"*"}))
    centre = np.zeros(2, dtype=np.float32)
    day = T0.toordinal()
    french = replace(_story("fr", _unit(1, 2), langs=frozenset({"fr"})), dated_days=(day,), mean=_unit(1, 2))
    article = _article(_unit(1, 0))  # cos 0.447 with the French story: it needs the bonus to join
    assert date_share(day, [french], params) == 1.0
    decision = assign(article, [french], params, center=centre)
    assert decision.action == "join"
    assert decision.score == pytest.approx(0.447 + 0.15, abs=1e-3)

    # three other stories of the same day, in the article's own language and orthogonal to it: four in all
    rivals = [replace(_story(f"en{i}", _unit(0, 1)), dated_days=(day,), mean=_unit(0, 1)) for i in range(3)]
    assert date_share(day, [french, *rivals], params) == pytest.approx(1.5 / 4)
    decision = assign(article, [french, *rivals], params, center=centre)
    assert decision.action == "new"  # 0.447 + 0.15 * 0.375 < 0.55
    # the share is the article's day's: a rival dated four days away counts half (the fade at 4 of 8 days)
    far = [replace(r, dated_days=(day + 4,)) for r in rivals]
    assert date_share(day, [french, *far], params) == pytest.approx(1.5 / 2.5)
    # stories outside the window (dormant), undated ones and a setting of 0 do not share anything out
    dormant = [replace(r, dormant=True) for r in rivals]
    undated = [replace(r, dated_days=()) for r in rivals]
    for others in (dormant, undated):
        assert date_share(day, [french, *others], params) == 1.0
        assert assign(article, [french, *others], params, center=centre).action == "join"
    whole = replace(params, date_bonus_stories=0.0)
    assert date_share(day, [french, *rivals], whole) == 1.0
    assert assign(article, [french, *rivals], whole, center=centre).story_id == "fr"
    # an undated article gets no bonus at all, shared or not
    assert assign(replace(article, dated=False), [french, *rivals], params, center=centre).action == "new"


def test_stories_published_the_same_days_merge_at_a_lower_similarity() -> None:
    params = ClusterParams(merge_threshold=0.8, date_bonus=0.15, model_languages=frozenset({"*"}))
    centre = np.zeros(2, dtype=np.float32)
    a = replace(_story("a", _unit(1, 0), langs=frozenset({"ar"})), mean=_unit(1, 0))
    b = replace(_story("b", _unit(1, 0.9)), mean=_unit(1, 0.9))  # cos 0.74
    assert not should_merge(a, b, params, center=centre)
    day = T0.toordinal()
    a_dated, b_dated = replace(a, dated_days=(day,)), replace(b, dated_days=(day + 3,))
    assert should_merge(a_dated, b_dated, params, center=centre)
    assert not should_merge(a_dated, replace(b, dated_days=(day + 30,)), params, center=centre)
    assert not should_merge(a_dated, b_dated, params)  # raw (no centre): no bonus
    # a threshold above 1 turns merging off, even for identical stories that the bonus would lift past it
    same = replace(b_dated, centroid=a.centroid, mean=a.mean, dated_days=(day,))
    assert should_merge(a_dated, same, replace(params, merge_threshold=1.0), center=centre)  # 1.0 + 0.15 bonus
    assert not should_merge(a_dated, same, replace(params, merge_threshold=1.01), center=centre)
    # two stories all in one language: no bonus (nor with the one-language merge margin at 0)
    english = replace(b_dated, languages=frozenset({"en"}))
    assert not should_merge(replace(a_dated, languages=frozenset({"en"})), english, params, center=centre)


def test_a_story_all_in_the_articles_language_needs_the_one_language_margin_more() -> None:
    """One event's reports in one language sit closer together than across languages, so with centred
    cosines a story all in the article's language needs ``threshold + same_language_margin``; a story with
    another language (or none of the article's) needs the threshold; raw cosines (warm-up) get no margin."""
    params = ClusterParams(threshold=0.3, same_language_margin=0.15, model_languages=frozenset({"*"}))
    centre = np.zeros(2, dtype=np.float32)
    english = replace(_story("en", _unit(1, 2)), mean=_unit(1, 2))  # cos 0.447 with the article
    article = _article(_unit(1, 0))
    assert assign(article, [english], params, center=centre).action == "new"  # 0.447 < 0.3 + 0.15
    assert assign(article, [english], replace(params, same_language_margin=0.0), center=centre).action == "join"
    arabic = replace(english, story_id="ar", languages=frozenset({"ar"}))
    assert assign(article, [arabic], params, center=centre).action == "join"  # another language: 0.3
    mixed = replace(english, story_id="mixed", languages=frozenset({"en", "ar"}))
    assert assign(article, [mixed], params, center=centre).action == "join"
    undetermined = replace(article, lang="und")
    unknown_story = replace(english, languages=frozenset({"und"}))
    assert assign(undetermined, [unknown_story], params, center=centre).action == "join"
    # the best candidate is the one furthest above what it needs: 0.447 - 0.3 beats 0.49 - 0.45
    closer_english = replace(_story("en2", _unit(1, 1.78)), mean=_unit(1, 1.78))  # cos 0.490
    decision = assign(article, [closer_english, arabic], params, center=centre)
    assert decision.story_id == "ar"
    warm = ClusterParams(warmup_threshold=0.4, same_language_margin=0.15, model_languages=frozenset({"*"}))
    assert assign(article, [english], warm).action == "join"  # no centre: raw cosine, no margin


def test_two_stories_all_in_one_language_merge_at_the_one_language_margin_more() -> None:
    params = ClusterParams(merge_threshold=0.7, same_language_merge_margin=0.2, model_languages=frozenset({"*"}))
    centre = np.zeros(2, dtype=np.float32)
    a = replace(_story("a", _unit(1, 0)), mean=_unit(1, 0))
    b = replace(_story("b", _unit(1, 0.9)), mean=_unit(1, 0.9))  # cos 0.74
    assert not should_merge(a, b, params, center=centre)  # both English: needs 0.9
    assert should_merge(a, replace(b, languages=frozenset({"ar"})), params, center=centre)
    assert should_merge(a, replace(b, languages=frozenset({"en", "ar"})), params, center=centre)
    assert should_merge(a, b, replace(params, same_language_merge_margin=0.0), center=centre)


def test_a_merge_pass_over_many_stories_finds_exactly_the_pairs_the_rule_names() -> None:
    # merge_pairs decides for every pair at once where it can; the rule, pair by pair, is the reference:
    # centred cosine of the means + the date bonus (across languages only) >= the merge threshold (+ the
    # one-language margin for two stories all in one language), the same kinds where they share a language,
    # and no two dated stories further apart than the date gate.
    params = ClusterParams(
        merge_threshold=0.35,
        same_language_merge_margin=0.3,
        date_bonus=0.2,
        date_gate_days=7.0,
        model_languages=frozenset({"*"}),
    )
    rng = np.random.default_rng(5)
    base = rng.normal(size=8)
    centre = np.zeros(8, dtype=np.float32)
    day = T0.toordinal()
    languages = [frozenset({"en"}), frozenset({"ar"}), frozenset({"en", "fr"}), frozenset({UNDETERMINED_LANG})]
    stories = []
    for n in range(60):
        mean = (0.5 * base + rng.normal(size=8)).astype(np.float32)
        mean /= np.linalg.norm(mean)
        days = tuple(sorted({int(day + d) for d in rng.integers(0, 40, size=int(rng.integers(0, 4)))}))
        stories.append(
            replace(
                _story(
                    f"s{n}", mean, langs=languages[n % 4], kinds=frozenset({"trial"}) if n % 7 == 0 else frozenset()
                ),
                mean=mean,
                dated_days=days,
            )
        )

    def reference(a: Candidate, b: Candidate) -> float | None:
        if a.kinds != b.kinds and a.languages & b.languages:
            return None
        gaps = [abs(x - y) for x in a.dated_days for y in b.dated_days]
        if gaps and min(gaps) > params.date_gate_days:
            return None
        one = len(a.languages) == 1 and a.languages == b.languages and UNDETERMINED_LANG not in a.languages
        sim = float(np.dot(a.mean, b.mean))  # type: ignore[arg-type]
        if not one and gaps:
            sim += params.date_bonus * max(0.0, 1.0 - min(gaps) / (params.date_gate_days + 1.0))
        needed = params.merge_threshold + (params.same_language_merge_margin if one else 0.0)
        return sim if sim >= needed - 1e-6 else None

    expected = {
        (i, j)
        for i in range(len(stories))
        for j in range(i + 1, len(stories))
        if reference(stories[i], stories[j]) is not None
    }
    found = merge_pairs(stories, params, center=centre)
    assert set(found) == expected
    assert len(expected) > 10  # the draw holds pairs of every kind: some merge, most do not
    assert len(expected) < len(stories) * (len(stories) - 1) // 4


# every bonus and margin a candidate's bound adds up, multilingual (the bound tests below)
BOUNDED = ClusterParams(
    threshold=0.3,
    same_language_margin=0.25,
    anchor_weight=0.05,
    word_evidence_weight=0.3,
    name_evidence_weight=0.4,
    date_bonus=0.2,
    date_bonus_stories=1.5,
    model_languages=frozenset({"*"}),
)


def _at_cosine(cos: float) -> NDArray[np.float32]:
    """A unit vector at cosine ``cos`` from (1, 0)."""
    return np.array([cos, math.sqrt(1.0 - cos * cos)], dtype=np.float32)


def test_the_early_stop_keeps_ties_to_the_older_story_and_asks_word_evidence_that_can_win() -> None:
    # assign scores the most promising candidates first and stops when the best is out of the others' reach:
    # two stories alike in everything go to the older one whatever their order, and a story that only word
    # evidence can lift just past the best is still asked for it
    centre = np.zeros(2, dtype=np.float32)
    article = _article(_at_cosine(1.0))
    older = replace(_story("older", _at_cosine(0.6)), mean=_at_cosine(0.6), first_seen=T0 - timedelta(days=1))
    newer = replace(_story("newer", _at_cosine(0.6)), mean=_at_cosine(0.6))
    exact = replace(BOUNDED, anchor_weight=0.0)  # nothing to add: each one's bound is what it scores
    for order in ([older, newer], [newer, older]):
        assert assign(article, order, exact, center=centre).story_id == "older"
    # "far" has no word evidence and is 0.2 above what it needs; "lifted" only reaches 0.205 with all of its
    # word evidence (both have an article in the article's language and another, so they need the threshold)
    both = frozenset({"en", "fr"})
    far = replace(_story("far", _at_cosine(0.5), langs=both), mean=_at_cosine(0.5))
    lifted = replace(_story("lifted", _at_cosine(0.205), langs=both), mean=_at_cosine(0.205))
    evidence = {"far": 0.0, "lifted": 1.0}
    decision = assign(article, [far, lifted], BOUNDED, center=centre, words=lambda c: evidence[c.story_id])
    assert decision.story_id == "lifted"
    assert decision.score == pytest.approx(0.505, abs=1e-6)


def test_a_negative_weight_adds_nothing_to_a_candidates_bound() -> None:
    # settings refuse negative weights; built directly, a negative anchor weight still must not let the bound
    # skip (or stop before) a story that wins: "y" shares no anchor, "x" loses 0.1 for sharing two
    params = ClusterParams(threshold=0.3, anchor_weight=-0.1, model_languages=frozenset({"*"}))
    anchors = frozenset({"date:2017-05-15", "num:50"})
    x = replace(_story("x", _at_cosine(0.8), anchors=anchors), mean=_at_cosine(0.8))
    y = replace(_story("y", _at_cosine(0.75)), mean=_at_cosine(0.75))
    decision = assign(_article(_at_cosine(1.0), anchors=anchors), [x, y], params, center=np.zeros(2, dtype=np.float32))
    assert decision.story_id == "y"
    assert decision.score == pytest.approx(0.75, abs=1e-6)


def test_assign_skips_only_candidates_that_could_not_have_won() -> None:
    # assign skips a candidate when its cosine plus the most that story can add (anchors, word evidence for a
    # story in the article's language, name evidence and a date bonus across languages) stays below what it needs,
    # scores the rest most promising first and stops (or asks no evidence) once the best so far is out of reach;
    # scoring every candidate with everything it gets must choose the same story, on random articles and stories.
    params = BOUNDED
    rng = np.random.default_rng(11)
    centre = np.zeros(6, dtype=np.float32)
    languages = [frozenset({"en"}), frozenset({"ar"}), frozenset({"en", "fr"}), frozenset({"de", "ar"})]
    day = T0.toordinal()

    def unit() -> NDArray[np.float32]:
        v = rng.normal(size=6).astype(np.float32)
        return v / np.linalg.norm(v)

    decided = set()
    for trial in range(600):
        stories = []
        for n in range(int(rng.integers(1, 12))):
            mean = unit()
            days = tuple(sorted({int(day + d) for d in rng.integers(-9, 9, size=int(rng.integers(0, 3)))}))
            anchors = frozenset(f"date:2017-05-{d:02d}" for d in rng.integers(1, 6, size=int(rng.integers(0, 3))))
            story = _story(f"s{n}", mean, langs=languages[int(rng.integers(0, 4))], anchors=anchors)
            stories.append(replace(story, mean=mean, dated_days=days))
        article = replace(
            _article(unit(), anchors=frozenset({"date:2017-05-01", "date:2017-05-02"})),
            lang=["en", "ar", "fr"][trial % 3],
            dated=trial % 4 != 0,
        )
        evidence = {s.story_id: float(rng.uniform(0, 1)) for s in stories}
        # about half the stories hold none of the article's name keys: no name evidence, no bound; the others have
        # a bound at or above their evidence (a story may hold a key and still share nothing weighed: 0)
        name_evidence = {s.story_id: float(rng.uniform(0, 0.5)) if rng.uniform() < 0.5 else 0.0 for s in stories}
        name_bounds = {
            sid: min(1.0, v + float(rng.uniform(0, 0.3)))
            for sid, v in name_evidence.items()
            if v > 0 or rng.uniform() < 0.2
        }

        def words(cand: Candidate, evidence: dict[str, float] = evidence) -> float:
            return evidence[cand.story_id]

        def names(cand: Candidate, evidence: dict[str, float] = name_evidence) -> float:
            return evidence[cand.story_id]

        decision = assign(article, stories, params, center=centre, words=words, names=names, name_bounds=name_bounds)
        share = date_share(article.at.toordinal(), stories, params) if article.dated else 1.0
        best = None
        for cand in stories:
            in_lang = article.lang in cand.languages
            other_lang = bool(cand.languages - {article.lang})
            scored = score_candidate(
                article,
                cand,
                params,
                center=centre,
                words=evidence[cand.story_id] if in_lang else 0.0,
                names=name_evidence[cand.story_id] if other_lang else 0.0,
                share=share,
            )
            excess = scored.score - join_needed(article, cand, params, centre)
            if scored.eligible and excess >= 0 and (best is None or excess > best[0]):
                best = (excess, cand.story_id)
        assert decision.story_id == (None if best is None else best[1]), f"trial {trial}"
        decided.add(decision.action)
    assert decided == {"new", "join"}  # the draw holds both outcomes


def test_stories_out_of_reach_are_left_out_and_the_decision_stays(tmp_path: Path) -> None:
    # The store leaves out the active stories whose centred cosine plus all they could add stays below what they
    # need (Reach), computed at once from unit means and norms. On random story sets in a real store (its content
    # index built from the file, then kept up to date), assign must decide exactly as over every candidate, the
    # date bonus's share must still count the stories left out, and a story whose mean is near the centre (where
    # that arithmetic is too sensitive) is never left out.
    shared = replace(BOUNDED, threshold=0.5)
    whole = replace(shared, date_bonus_stories=0.0)  # the date bonus undivided: where its bound matters most
    rng = np.random.default_rng(23)
    dim = 24

    def unit() -> NDArray[np.float32]:
        v = rng.normal(size=dim).astype(np.float32)
        return v / np.linalg.norm(v)

    centre = (0.3 * unit()).astype(np.float32)
    state = StoryState(tmp_path / STATE_FILE, window_days=7)
    languages = ["en", "ar", "fr", UNDETERMINED_LANG]
    means: dict[str, NDArray[np.float32]] = {}

    def add_stories(n: int) -> None:
        for _ in range(n):
            # a tenth a month away (outside the window: found by content alone, dormant when dated)
            at = T0 + timedelta(hours=float(rng.uniform(-72, 72)) + (720.0 if rng.uniform() < 0.1 else 0.0))
            near_centre = rng.uniform() < 0.05
            vector = (centre + 0.01 * unit()).astype(np.float32) if near_centre else unit()
            if rng.uniform() < 0.1:  # about the distance from the centre below which nothing is left out
                vector = (centre + float(rng.uniform(0.19, 0.25)) * unit()).astype(np.float32)
            record = state.create(
                first_article_id=f"a{len(means)}",
                title="t",
                at=at,
                source="s",
                lang=languages[int(rng.integers(0, 4))],
                vector=vector,
                anchors=(),
                kinds=frozenset(),
                dated=bool(rng.uniform() < 0.6),
            )
            if rng.uniform() < 0.4:  # a second article, often in another language
                state.add_article(
                    record,
                    at=at + timedelta(hours=5),
                    source="s2",
                    lang=languages[int(rng.integers(0, 4))],
                    vector=unit() if not near_centre else vector,
                    dated=bool(rng.uniform() < 0.5),
                )
            means[record.id] = record.mean()

    add_stories(120)
    state.candidates(T0, frozenset(), vector=unit(), dated=True)  # the content index, read from the file
    add_stories(120)  # ... and these through the index as they are written
    left_out = kept_near_centre = 0
    actions = set()
    trials = 400
    for trial in range(trials):
        params = whole if trial % 2 else shared
        story_ids = list(means)
        target = means[story_ids[int(rng.integers(0, len(story_ids)))]]
        # near a story, at a random distance: often just about what it needs, where the bound matters
        vector = unit() if trial % 4 == 0 else (target + float(rng.uniform(0.3, 1.6)) * unit()).astype(np.float32)
        vector = vector / np.linalg.norm(vector)
        at = T0 + timedelta(hours=float(rng.uniform(-48, 48)))
        article = ArticleFeatures(
            id=f"x{trial}",
            vector=vector,
            anchors=frozenset(),
            kinds=frozenset(),
            lang=languages[trial % 4],
            at=at,
            dated=trial % 3 != 0,
        )
        evidence = {sid: float(rng.uniform(0, 1)) if rng.uniform() < 0.1 else 0.0 for sid in story_ids}
        name_evidence = {sid: float(rng.uniform(0, 1)) if rng.uniform() < 0.1 else 0.0 for sid in story_ids}
        name_bounds = {sid: min(1.0, v * 1.5) for sid, v in name_evidence.items() if v > 0}  # those holding its keys

        def words(cand: Candidate, evidence: dict[str, float] = evidence) -> float:
            return evidence[cand.story_id]

        def names(cand: Candidate, evidence: dict[str, float] = name_evidence) -> float:
            return evidence[cand.story_id]

        every = state.candidates(at, frozenset(), vector=vector, dated=article.dated)
        bound = reach(article, params, centre, words=True, name_bounds=name_bounds)
        assert bound is not None
        some = state.candidates(at, frozenset(), vector=vector, dated=article.dated, reach=bound)
        ids = [c.story_id for c in some]
        assert ids == [c.story_id for c in every if c.story_id in set(ids)]  # a subset, in the same order
        left_out += len(every) - len(some)
        near = [c.story_id for c in every if np.linalg.norm(means[c.story_id] - centre) < 0.1]
        assert set(near) <= set(ids)
        kept_near_centre += len(near)
        day = at.toordinal()
        assert days_share(day, state.active_days(at), params) == date_share(day, every, params)

        def share_of(d: int, at: datetime = at, params: ClusterParams = params) -> float:
            return days_share(d, state.active_days(at), params)

        full = assign(article, every, params, center=centre, words=words, names=names)
        part = assign(
            article, some, params, center=centre, words=words, names=names, name_bounds=name_bounds, share_of=share_of
        )
        assert (part.action, part.story_id) == (full.action, full.story_id), f"trial {trial}"
        assert part.score == pytest.approx(full.score, abs=1e-6)  # one matrix product fewer rows: last-bit rounding
        actions.add(full.action)
    assert actions == {"new", "join"}  # the draw holds both outcomes
    assert left_out > trials * 50 and kept_near_centre > 0  # most of the window is left out; the near ones are not
    state.close()


def test_a_story_is_out_of_reach_only_below_what_it_needs_by_more_than_the_slack(tmp_path: Path) -> None:
    # The store's cosines (unit means and norms) are not computed as assign's are: a story is left out only when
    # it lies below what it needs by more than REACH_SLACK, measured with assign's own cosine; a story whose mean
    # is near the centre is never left out.
    params = ClusterParams(threshold=0.5, model_languages=frozenset({"*"}))
    rng = np.random.default_rng(29)

    def unit() -> NDArray[np.float32]:
        v = rng.normal(size=24).astype(np.float32)
        return v / np.linalg.norm(v)

    centre = (0.4 * unit()).astype(np.float32)
    state = StoryState(tmp_path / STATE_FILE, window_days=7)
    records = []
    for n in range(40):
        vector = (centre + 0.05 * unit()).astype(np.float32) if n % 10 == 0 else unit()
        record = state.create(
            first_article_id=f"a{n}",
            title="t",
            at=T0,
            source="s",
            lang="en",
            vector=vector,
            anchors=(),
            kinds=frozenset(),
        )
        for extra in range(n % 3):  # means of one, two and three articles (near the centre: all near it)
            more = (centre + 0.05 * unit()).astype(np.float32) if n % 10 == 0 else unit()
            state.add_article(record, at=T0, source=f"s{extra}", lang="fr", vector=more)
        records.append(record)
    article = ArticleFeatures(
        id="x", vector=unit(), anchors=frozenset(), kinds=frozenset(), lang="tr", at=T0, dated=False
    )

    def bar(threshold: float) -> Reach:
        return Reach(
            center=centre,
            lang="tr",
            dated=False,
            threshold=threshold,
            anchor_weight=0.0,
            word_weight=0.0,
            name_weight=0.0,
            date_bonus=0.0,
            same_language_margin=0.0,
        )

    def kept(story_id: str, threshold: float) -> bool:
        found = state.candidates(T0, frozenset(), vector=article.vector, dated=False, reach=bar(threshold))
        return story_id in {c.story_id for c in found}

    near_centre = 0
    for record in records:
        cos = float(cosines(article, [record.to_candidate(dormant=False)], params, centre)[0])
        assert kept(record.id, cos + 0.9 * REACH_SLACK)
        if np.linalg.norm(record.mean() - centre) < REACH_MIN_DISTANCE:
            near_centre += 1
            assert kept(record.id, cos + 10.0)
        else:
            assert not kept(record.id, cos + 1.1 * REACH_SLACK)
    assert near_centre == 4
    state.close()


def test_past_the_languages_the_index_tells_apart_no_story_is_taken_for_all_in_the_articles(tmp_path: Path) -> None:
    # the content index keeps a story's languages as bits; the languages past the last bit share it, so a
    # story there may hold the article's language but is never surely all in it (no same-language margin)
    rng = np.random.default_rng(31)
    state = StoryState(tmp_path / STATE_FILE, window_days=7)
    state.candidates(T0, frozenset(), vector=np.ones(24, dtype=np.float32), dated=False)  # the index, empty: it
    # then takes the stories (and gives their languages bits) in the order they are written
    records = {}
    for n in range(66):  # 66 languages: the last four share the last bit
        v = rng.normal(size=24).astype(np.float32)
        records[n] = state.create(
            first_article_id=f"a{n}",
            title="t",
            at=T0,
            source="s",
            lang=f"l{n:02d}",
            vector=v / np.linalg.norm(v),
            anchors=(),
            kinds=frozenset(),
        )
    centre = np.zeros(24, dtype=np.float32)
    v = rng.normal(size=24).astype(np.float32)
    vector = v / np.linalg.norm(v)
    params = replace(BOUNDED, same_language_margin=0.5)
    for lang, story, margin in (("l03", 3, True), ("l64", 65, False), ("l64", 64, False)):
        article = ArticleFeatures(
            id="x", vector=vector, anchors=frozenset(), kinds=frozenset(), lang=lang, at=T0, dated=False
        )
        cos = float(cosines(article, [records[story].to_candidate(dormant=False)], params, centre)[0])
        # with no word evidence and no date: out of reach only if the margin is added
        bound = replace(cast(Reach, reach(article, params, centre, words=False)), threshold=cos + 0.5 * REACH_SLACK)
        found = {c.story_id for c in state.candidates(T0, frozenset(), vector=vector, dated=False, reach=bound)}
        assert (records[story].id not in found) == margin, (lang, story)
    state.close()


def test_a_new_story_close_to_an_article_of_another_is_related_unless_their_dates_are_apart() -> None:
    params = ClusterParams(related_threshold=0.3, model_languages=frozenset({"*"}))
    near = Neighbour(story_id="older", similarity=0.4, day=None)
    dated_near = Neighbour(story_id="dated", similarity=0.5, day=T0.toordinal() + 3)
    dated_apart = Neighbour(story_id="apart", similarity=0.6, day=T0.toordinal() - 30)
    far = Neighbour(story_id="far", similarity=0.2, day=None)
    undated = replace(_article(_unit(1, 0)), dated=False)
    assert relate(undated, [dated_apart, near, far], params).related == "apart"  # time unknown: closest wins
    dated = _article(_unit(1, 0))
    assert relate(dated, [dated_near, near, far], params).related == "dated"  # 3 days apart: within the gate
    # a month apart: time tells them apart, the next closest (undated) relates
    assert relate(dated, [dated_apart, near, far], params).related == "older"
    assert relate(dated, [dated_apart, far], params).related is None
    assert relate(undated, [far], params).related is None
    assert relate(undated, [near], ClusterParams(model_languages=frozenset({"*"}))).related is None  # off by default
    english = replace(params, model_languages=frozenset({"en"}))
    assert relate(undated, [near], english).related is None  # English-only


def test_related_stories_in_the_warm_up_and_with_dates_as_evidence() -> None:
    params = ClusterParams(related_threshold=0.3, related_warmup_threshold=0.6, model_languages=frozenset({"*"}))
    dated = _article(_unit(1, 0))
    raw = Neighbour(story_id="raw", similarity=0.55, day=None)
    assert relate(dated, [raw], params).related == "raw"  # centred cosine 0.55 >= 0.3
    assert relate(dated, [raw], params, centred=False).related is None  # raw cosine 0.55 < 0.6 (warm-up)
    assert relate(dated, [replace(raw, similarity=0.65)], params, centred=False).related == "raw"
    # Two dated articles: the same day lowers the bar by related_date_bonus, fading out at the gate.
    bonus = replace(params, related_date_bonus=0.1)
    same_day = Neighbour(story_id="same-day", similarity=0.22, day=T0.toordinal())
    week = Neighbour(story_id="week", similarity=0.22, day=T0.toordinal() + 6)
    assert relate(dated, [same_day], params).related is None
    assert relate(dated, [same_day], bonus).related == "same-day"  # 0.22 >= 0.3 - 0.1
    assert relate(dated, [week], bonus).related is None  # 0.22 < 0.3 - 0.1 * (1 - 6 / 8)
    assert relate(replace(dated, dated=False), [same_day], bonus).related is None  # undated: no date evidence
    assert relate(dated, [same_day], bonus, centred=False).related is None  # raw cosines get no bonus
    # a threshold above 1 turns the rule off: not lowered below 1 by the bonus, no near story either
    identical = replace(same_day, similarity=1.0)
    off = replace(bonus, related_threshold=1.01, unconfirmed_margin=0.1)
    assert relate(dated, [identical], replace(off, related_threshold=1.0)).related == "same-day"
    assert relate(dated, [identical], off) == Relation()
    assert relate(dated, [identical], replace(off, related_warmup_threshold=1.01), centred=False) == Relation()


def test_an_article_in_the_new_storys_language_needs_the_one_language_margin_more_to_relate() -> None:
    """One language's reports sit closer together and its news holds many stories a day: a neighbour in the
    article's language relates at ``related_threshold + same_language_margin`` and gets no date bonus; one in
    another language (or an undetermined one) relates at the threshold, lowered by the date bonus."""
    params = ClusterParams(
        related_threshold=0.3,
        same_language_margin=0.2,
        related_date_bonus=0.1,
        unconfirmed_margin=0.1,
        model_languages=frozenset({"*"}),
    )
    english = _article(_unit(1, 0))  # dated T0
    day = T0.toordinal()
    assert relate(english, [Neighbour(story_id="fr", similarity=0.35, day=None, lang="fr")], params).related == "fr"
    same = Neighbour(story_id="en", similarity=0.42, day=None, lang="en")
    assert relate(english, [same], params) == Relation(near="en")  # 0.08 short of 0.5: near, not related
    assert relate(english, [replace(same, similarity=0.5)], params).related == "en"
    # the same day: across languages 0.22 >= 0.3 - 0.1 relates; in one language 0.45 < 0.5 still does not
    assert relate(english, [Neighbour(story_id="ar", similarity=0.22, day=day, lang="ar")], params).related == "ar"
    assert relate(english, [replace(same, similarity=0.45, day=day)], params) == Relation(near="en")
    undetermined = replace(english, lang=UNDETERMINED_LANG)
    assert relate(undetermined, [replace(same, lang=UNDETERMINED_LANG)], params).related == "en"  # never one language
    assert relate(english, [same], params, centred=False).related is None  # raw: the warm-up threshold (off)


def test_a_new_story_that_falls_just_short_of_the_related_rule_is_near_the_older_one() -> None:
    """Within ``unconfirmed_margin`` below what the related rule needs, the best neighbour's story is
    *near* (an unconfirmed new story); further below, or related, or off, it is not."""
    params = ClusterParams(related_threshold=0.3, unconfirmed_margin=0.1, model_languages=frozenset({"*"}))
    undated = replace(_article(_unit(1, 0)), dated=False)
    short = Neighbour(story_id="short", similarity=0.25, day=None)  # 0.05 short
    shorter = Neighbour(story_id="shorter", similarity=0.22, day=None)  # 0.08 short
    far = Neighbour(story_id="far", similarity=0.15, day=None)  # 0.15 short
    related = Neighbour(story_id="related", similarity=0.31, day=None)
    assert relate(undated, [short, shorter, far], params) == Relation(near="short")
    assert relate(undated, [far, shorter], params) == Relation(near="shorter")  # the best margin, not the first
    assert relate(undated, [far], params) == Relation()
    assert relate(undated, [short, related], params) == Relation(related="related")  # related wins
    assert relate(undated, [short], replace(params, unconfirmed_margin=0.0)) == Relation()  # off
    assert relate(undated, [short], params, centred=False) == Relation()  # a raw cosine's shortfall says nothing
    # the related rule's date gate counts: a dated neighbour past it is never near, one within it is judged
    # with the same-day bonus (0.25 needs 0.3 - 0.1: related; 0.17 is 0.03 short of it: near)
    dated = _article(_unit(1, 0))
    apart = Neighbour(story_id="apart", similarity=0.29, day=T0.toordinal() - 30)
    assert relate(dated, [apart], params) == Relation()
    bonus = replace(params, related_date_bonus=0.1)
    same_day = Neighbour(story_id="same-day", similarity=0.17, day=T0.toordinal())
    assert relate(dated, [same_day], bonus) == Relation(near="same-day")
    assert relate(dated, [replace(same_day, similarity=0.25)], bonus) == Relation(related="same-day")


def test_converged_stories_merge_unless_their_developments_differ() -> None:
    a, b = _story("a", _unit(1, 0.1)), _story("b", _unit(1, 0.12))
    assert should_merge(a, b, PARAMS)
    assert not should_merge(a, _story("c", _unit(1, 0.12), kinds=frozenset({"arrest"})), PARAMS)
    assert not should_merge(a, _story("d", _unit(1, 1)), PARAMS)


# --- anchors ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def extractor() -> AnchorExtractor:
    return AnchorExtractor(load_topic(Settings().topic_file))


def test_figures_read_the_same_in_any_script(extractor: AnchorExtractor) -> None:
    for text in ("13,000 people", "١٣٬٠٠٠ شخص", "13 ألف معتقل", "13 000 people", "13 thousand"):
        assert "num:13000" in extractor.extract(text), text
    assert parse_figure("17,723") == 17723
    assert "num:2017" not in extractor.extract("in 2017")  # a bare year is not a figure


def test_dates_read_the_same_in_english_arabic_and_iso(extractor: AnchorExtractor) -> None:
    for text in ("on 15 May 2017", "on May 15, 2017", "في 15 أيار/مايو 2017", "2017-05-15", "le 15 mai 2017"):
        assert "date:2017-05-15" in extractor.extract(text), text


def test_entities_match_their_latin_and_arabic_spellings(extractor: AnchorExtractor) -> None:
    assert "ent:stuart-jones" in extractor.extract("Stuart Jones said")
    assert "ent:stuart-jones" in extractor.extract("وقال ستيوارت جونز")
    assert "ent:amnesty-international" in extractor.extract("وبحسب العفو الدولية")
    assert "ent:amnesty-international" in extractor.extract("وقالت والعفو الدولية")  # clitic و


def test_event_kinds_come_from_the_headline() -> None:
    assert event_kinds("Syria denies US claim", "") == {"denial"}
    assert event_kinds("سوريا تنفي اتهامات واشنطن", "") == {"denial"}
    assert event_kinds("Former commander arrested in Damascus", "") == {"arrest"}
    assert event_kinds("US says Syria built a crematorium", "") == frozenset()


# --- the stage on the real model ------------------------------------------------------------------


@pytest.fixture
def make_stage(settings: Settings, embedder: SentenceTransformerEmbedder) -> Iterator[Callable[..., AssignStage]]:
    made: list[AssignStage] = []

    def make(**kwargs: object) -> AssignStage:
        stage = make_assign_stage(settings, PrometheusMetrics(CollectorRegistry()), embedder=embedder, **kwargs)  # type: ignore[arg-type]
        made.append(stage)
        return stage

    yield make
    for stage in made:
        stage.close()


def _by_url(articles: list[Article]) -> dict[str, Article]:
    return {a.url: a for a in articles}


def test_copies_are_one_story_and_unrelated_news_another(make_stage: Callable[..., AssignStage]) -> None:
    stage = make_stage()
    original, copies, regatta = corpus.crematorium_original(), corpus.crematorium_copies(), corpus.unrelated_regatta()
    out, events = stage.process([original, *copies, regatta])
    first, *dups, other = out
    assert first.story_role == "first" and first.duplicate_of is None and first.story_id
    assert all(d.story_role == "duplicate" and d.duplicate_of == original.id for d in dups)
    assert {d.story_id for d in dups} == {first.story_id}
    assert other.story_id != first.story_id and other.story_role == "first"
    assert [e.kind for e in events].count("created") == 2
    assert all(len(a.embedding or ()) == 512 for a in out)
    assert stage.state.get(first.story_id).article_count == 6  # type: ignore[union-attr]


def test_novelty_anniversary_joins_the_old_story_new_developments_open_new_ones(
    make_stage: Callable[..., AssignStage],
) -> None:
    stage = make_stage()
    original = corpus.crematorium_original()
    out, _ = stage.process([original, *corpus.crematorium_copies(), corpus.syrian_denial()])
    story = out[0].story_id
    denial = out[-1]
    assert denial.story_role == "first" and denial.story_id != story  # repeats names and 13,000, still new
    out, events = stage.process([corpus.anniversary_piece()])
    assert out[0].story_id == story and out[0].story_role == "follow_up"
    assert [e.kind for e in events] == ["updated"]  # no `created`: no alert for a re-telling
    assert (
        cast(PrometheusMetrics, stage.metrics).registry.get_sample_value(
            "sednaya_articles_total", {"stage": "embed", "status": "follow_up"}
        )
        == 1
    )
    out, events = stage.process([corpus.commander_arrest()])
    assert out[0].story_role == "first" and out[0].story_id not in {story, denial.story_id}
    assert [e.kind for e in events] == ["created"]


def test_arabic_and_english_reports_of_one_event_are_one_story(make_stage: Callable[..., AssignStage]) -> None:
    batch = [corpus.turk_visit_en(), corpus.turk_visit_ar(), corpus.unrelated_arabic()]
    en, ar, bakery = make_stage().process(batch)[0]
    assert ar.story_id == en.story_id and ar.story_role == "follow_up"
    assert bakery.story_id != en.story_id and bakery.story_role == "first"


def test_an_english_only_sentence_transformers_model_links_languages_through_anchors(
    settings_factory: Callable[..., Settings], minilm: SentenceTransformerEmbedder, tmp_path: Path
) -> None:
    """The design card's library stays a real path: all-MiniLM-L6-v2 reads English only (model_languages
    auto -> en), so an Arabic report joins the English story through shared anchors, and not at all
    when the anchors cannot reach the minimum."""
    batch = [corpus.turk_visit_en(), corpus.turk_visit_ar(), corpus.unrelated_arabic()]
    for min_anchors, linked in ((2.0, True), (1000.0, False)):
        stage = make_assign_stage(
            settings_factory(
                model_name="all-MiniLM-L6-v2",
                cluster_threshold=0.7,
                cross_lingual_min_anchors=min_anchors,
                data_dir=tmp_path / str(min_anchors),
            ),
            PrometheusMetrics(CollectorRegistry()),
            embedder=minilm,
        )
        try:
            assert stage.params.model_languages == frozenset({"en"})
            en, ar, bakery = stage.process(batch)[0]
            assert (ar.story_id == en.story_id) is linked
            assert bakery.story_id != en.story_id
            assert en.embedding is not None and len(en.embedding) == 384
        finally:
            stage.close()


def test_where_only_anchors_link_languages_the_topics_name_and_a_common_entity_link_nothing(
    settings_factory: Callable[..., Settings], minilm: SentenceTransformerEmbedder, tmp_path: Path
) -> None:
    """all-MiniLM-L6-v2 reads English only, so an Arabic or a French report reaches an English story through
    shared anchors alone. With the bar below one name's or entity's weight (0.5, times its rarity: about 0.36
    for an anchor one recent article has): a report sharing only the prison's name (a name of the topic)
    links nothing, and one sharing only Assad links while Assad is rare in the window and not once most
    recent articles carry him."""
    day = datetime(2024, 12, 11, 14, tzinfo=UTC)
    english = make_article(
        url="https://policy.example/2024/12/11/sanctions",
        title="Lawmakers split over lifting sanctions",
        text=(
            "Members of parliament argued on Wednesday about easing sanctions now that Bashar al-Assad has left "
            "the country; opponents cited Sednaya as a reminder of what the security services did."
        ),
        published=day,
    )
    arabic = make_article(  # shares Assad only
        url="https://arts.example/ar/2024/12/11/maarid",
        lang="ar",
        title="معرض صور في برلين",
        text="افتتح معرض في برلين يعرض صور رجال نجوا من السجون، وقالت المصورة إن الأسد لا يُذكر في أي تعليق.",
        published=day,
    )
    french = make_article(  # shares the prison's name only
        url="https://arts.example/fr/2024/12/11/portraits",
        lang="fr",
        title="Portraits d'anciens détenus",
        text="Une galerie expose des portraits d'hommes qui ont survécu à Sednaya, chacun avec un objet gardé.",
        published=day,
    )
    for assad_common, assad_links in ((False, True), (True, False)):
        stage = make_assign_stage(
            settings_factory(
                model_name="all-MiniLM-L6-v2",
                cluster_threshold=0.7,
                cross_lingual_min_anchors=0.3,
                data_dir=tmp_path / str(assad_common),
            ),
            PrometheusMetrics(CollectorRegistry()),
            embedder=minilm,
        )
        try:
            assert "name:sednaya" in stage.anchors.extract(english.text) & stage.anchors.extract(french.text)
            if assad_common:  # thirty recent articles name him
                for i in range(30):
                    stage.state.observe(minilm.embed([f"report {i}"])[0], {"ent:bashar-al-assad"}, "en")
            en, ar, fr = stage.process([english, arabic, french])[0]
            assert (ar.story_id == en.story_id) is assad_links, assad_common
            assert fr.story_id != en.story_id and fr.story_role == "first"  # the topic's name is no evidence
        finally:
            stage.close()


def test_a_restart_continues_the_same_stories(settings: Settings, embedder: SentenceTransformerEmbedder) -> None:
    first_run = make_assign_stage(settings, PrometheusMetrics(CollectorRegistry()), embedder=embedder)
    (original,), _ = first_run.process([corpus.crematorium_original()])
    first_run.close()
    second_run = make_assign_stage(settings, PrometheusMetrics(CollectorRegistry()), embedder=embedder)
    try:
        copies, events = second_run.process([*corpus.crematorium_copies()[:2], corpus.anniversary_piece()])
        assert all(c.story_id == original.story_id for c in copies)
        assert [c.story_role for c in copies] == ["duplicate", "duplicate", "follow_up"]
        assert copies[0].duplicate_of == original.id
        assert "created" not in [e.kind for e in events]
    finally:
        second_run.close()


def test_a_reprocessed_article_gets_the_same_decision_and_no_new_event(make_stage: Callable[..., AssignStage]) -> None:
    stage = make_stage()
    batch = [corpus.crematorium_original(), corpus.crematorium_copies()[0], corpus.unrelated_regatta()]
    before, _ = stage.process(batch)
    count = stage.state.get(before[0].story_id).article_count  # type: ignore[arg-type,union-attr]
    again, events = stage.process(list(reversed(batch)))
    assert [(a.story_id, a.story_role, a.duplicate_of) for a in reversed(again)] == [
        (a.story_id, a.story_role, a.duplicate_of) for a in before
    ]
    assert events == []
    assert stage.state.get(before[0].story_id).article_count == count  # type: ignore[arg-type,union-attr]


def test_a_failed_batch_is_rolled_back_and_redone_the_same(
    settings: Settings, embedder: SentenceTransformerEmbedder
) -> None:
    class FailingOnce:
        """The real model, failing the second call (a transient error in the middle of a run)."""

        def __init__(self) -> None:
            self.calls = 0

        @property
        def dim(self) -> int:
            return embedder.dim

        def embed(self, texts: Sequence[str]) -> NDArray[np.float32]:
            self.calls += 1
            if self.calls == 2:
                raise RuntimeError("model worker crashed")
            return embedder.embed(texts)

    stage = make_assign_stage(settings, PrometheusMetrics(CollectorRegistry()), embedder=FailingOnce())
    try:
        stage.process([corpus.crematorium_original()])
        with pytest.raises(RuntimeError, match="crashed"):
            stage.process([corpus.crematorium_copies()[0]])
        (copy,), _ = stage.process([corpus.crematorium_copies()[0]])
        assert copy.story_role == "duplicate"
    finally:
        stage.close()


def test_converging_stories_are_merged_with_a_merged_event(
    settings_factory: Callable[..., Settings],
    embedder: SentenceTransformerEmbedder,
) -> None:
    # A high join threshold keeps two reports of one event apart; the merge pass then folds them.
    settings = settings_factory(
        cluster_threshold=0.99,
        cluster_warmup_threshold=0.99,
        anchor_weight=0.0,
        date_bonus=0.0,
        merge_threshold=0.6,
        merge_warmup_threshold=0.6,
        merge_every=1000,
    )
    stage = make_assign_stage(settings, PrometheusMetrics(CollectorRegistry()), embedder=embedder)
    try:
        out, _ = stage.process(
            [
                corpus.crematorium_original(),
                corpus.anniversary_piece().replace(
                    published=corpus.crematorium_original().published + timedelta(hours=3)  # type: ignore[operator]
                ),
            ]
        )
        assert out[0].story_id != out[1].story_id
        events = stage.merge_now(corpus.crematorium_original())
        assert [(e.kind, e.story.id, e.merged_ids) for e in events] == [("merged", out[0].story_id, (out[1].story_id,))]
        assert stage.state.resolve(out[1].story_id) == out[0].story_id  # type: ignore[arg-type]
        assert stage.state.get(out[0].story_id).article_count == 2  # type: ignore[union-attr]
    finally:
        stage.close()


@pytest.mark.timeout(120)
def test_the_stage_on_the_bus_publishes_articles_and_events_and_dead_letters_bad_records(
    settings: Settings,
    embedder: SentenceTransformerEmbedder,
) -> None:
    bus = EmbeddedBus(settings.data_dir / "bus.sqlite3")
    bus.ensure_topics(settings.topics)
    metrics = PrometheusMetrics(CollectorRegistry())
    stage = make_assign_stage(settings, metrics, embedder=embedder, bus=bus)
    try:
        entered = "2026-01-01T00:00:00Z"
        articles = [corpus.crematorium_original(), corpus.crematorium_copies()[0], corpus.unrelated_regatta()]
        for a in articles:
            bus.publish(settings.topic_raw, a.id, a.to_bytes(), {H_SCHEMA: "1", H_ENTERED_AT: entered})
        bus.publish(settings.topic_raw, "broken", b'{"schema": 1, "id": "broken"}', {H_SCHEMA: "1"})
        bus.flush()
        worker = StageWorker(bus, settings.topic_raw, "embed", stage, metrics=metrics)
        assert worker.run_once() == 4
        clustered = bus.consumer(settings.topic_clustered, "t").poll(10, 1.0)
        assert [r.key for r in clustered] == [a.id for a in articles]
        assert all(r.headers[H_ENTERED_AT] == entered and r.headers[H_SCHEMA] == "1" for r in clustered)
        decoded = [Article.from_json(r.value) for r in clustered]
        assert decoded[1].duplicate_of == articles[0].id and decoded[0].embedding is not None
        events = [StoryEvent.from_bytes(r.value) for r in bus.consumer(settings.topic_story_events, "t").poll(10, 1.0)]
        assert [e.kind for e in events] == ["created", "updated", "created"]
        assert all(e.entered_at is not None for e in events)
        dead = bus.dead_letters(settings.topic_raw)
        assert [d.key for d in dead] == ["broken"] and dead[0].error_class == "ContractError"
        assert "offset" in dead[0].reason
        value = metrics.registry.get_sample_value
        assert value("sednaya_articles_total", {"stage": "embed", "status": "first"}) == 2
        assert value("sednaya_articles_total", {"stage": "embed", "status": "duplicate"}) == 1
        assert value("sednaya_story_events_total", {"kind": "created"}) == 2
        assert stage.state.outbox() == []
    finally:
        stage.close()
        bus.close()


def test_state_lives_in_the_data_dir_and_finds_dormant_stories_by_anchor(tmp_path: Path) -> None:
    state = StoryState(tmp_path / STATE_FILE, window_days=7)
    try:
        vec = _unit(1, 0, 0)
        state.create(
            first_article_id="x",
            title="t",
            at=T0,
            source="s",
            lang="en",
            vector=vec,
            anchors=frozenset({"date:2017-05-15", "name:jones"}),
            kinds=frozenset(),
        )
        state.commit()
        a_year_later = T0 + timedelta(days=365)
        assert state.active_ids(a_year_later) == []
        assert [c.dormant for c in state.candidates(a_year_later, frozenset({"date:2017-05-15"}))] == [True]
        assert state.candidates(a_year_later, frozenset({"name:jones"})) == []  # names are not specific
        assert [c.dormant for c in state.candidates(T0 + timedelta(days=3), frozenset())] == [False]
    finally:
        state.close()


def test_an_article_that_arrives_embedded_keeps_its_vector(make_stage: Callable[..., AssignStage]) -> None:
    stage = make_stage()
    plain = corpus.unrelated_regatta()
    given = corpus.crematorium_original()
    vector = tuple(float(x) for x in stage.embedder.embed(["something else entirely"])[0])
    out, _ = stage.process([given.replace(embedding=vector), plain])
    assert np.allclose(out[0].embedding, vector, atol=1e-6)  # type: ignore[arg-type]
    assert out[1].embedding is not None and len(out[1].embedding) == 512
    assert not np.allclose(out[1].embedding, vector, atol=1e-3)


def test_a_new_story_close_to_an_undated_article_of_another_names_it_across_restarts(
    settings_factory: Callable[..., Settings], embedder: SentenceTransformerEmbedder
) -> None:
    """Vectors given (the model is not asked): a shared topic direction plus one direction per event."""
    rng = np.random.default_rng(5)
    words = [f"w{i}" for i in range(400)]
    topic = _unit(*rng.normal(size=512))

    def article(n: int, *parts: tuple[float, np.ndarray], dated: bool = False) -> Article:
        vec = 2 * topic + sum((w * d for w, d in parts), np.zeros(512))
        return make_article(
            url=f"https://news.example.org/related/{n}",
            text=" ".join(rng.choice(words, size=60)),
            published=T0 + timedelta(days=n) if dated else None,
            embedding=tuple(float(x) for x in vec / np.linalg.norm(vec)),
        )

    def direction() -> np.ndarray:
        return _unit(*rng.normal(size=512))

    settings = settings_factory(
        cluster_threshold=0.9, cluster_warmup_threshold=0.99, related_threshold=0.3, date_bonus=0.0
    )
    stage = make_assign_stage(settings, PrometheusMetrics(CollectorRegistry()), embedder=embedder)
    fillers = [article(i, (1.0, direction()), dated=True) for i in range(25)]  # the centre becomes known
    event_a = direction()
    first = article(100, (1.0, event_a))
    facet = article(101, (0.6, event_a), (0.8, direction()))  # centred cosine ~0.6 with ``first``
    other = article(102, (1.0, direction()))
    out, events = stage.process([*fillers, first, facet, other])
    created = {e.article_id: e for e in events if e.kind == "created"}
    assert len(created) == len(out)  # 0.9 joins nothing here: every article opens a story
    assert created[facet.id].extra == {"related_story": out[-3].story_id}
    assert created[other.id].extra == {}
    stage.close()
    stage = make_assign_stage(settings, PrometheusMetrics(CollectorRegistry()), embedder=embedder)  # a restart
    try:
        late = article(103, (0.6, event_a), (0.8, direction()))
        _, (event,) = stage.process([late])
        assert event.extra["related_story"] in {out[-3].story_id, out[-2].story_id}
    finally:
        stage.close()


class FlakyBus(EmbeddedBus):
    """The real embedded bus whose next ``flush`` fails once (a broker outage after the state commit)."""

    fail_next_flush = False

    def flush(self, timeout_s: float | None = None) -> None:
        if self.fail_next_flush:
            self.fail_next_flush = False
            raise ConnectionError("broker went away")
        super().flush(timeout_s)


@pytest.mark.timeout(120)
def test_records_committed_but_not_flushed_are_published_by_the_next_batch(
    settings: Settings, embedder: SentenceTransformerEmbedder
) -> None:
    bus = FlakyBus(settings.data_dir / "bus.sqlite3")
    bus.ensure_topics(settings.topics)
    stage = make_assign_stage(settings, PrometheusMetrics(CollectorRegistry()), embedder=embedder, bus=bus)
    try:
        original = corpus.crematorium_original()
        record = Record(topic=settings.topic_raw, key=original.id, value=original.to_bytes(), offset=0)
        bus.fail_next_flush = True
        with pytest.raises(ConnectionError):
            stage.handle([record])
        assert len(stage.state.outbox()) == 2  # the clustered article and its `created` event wait
        assert stage.handle([record]) == [None]  # re-delivered: same decision, the outbox goes out
        assert stage.state.outbox() == []
        events = [StoryEvent.from_bytes(r.value) for r in bus.consumer(settings.topic_story_events, "t").poll(10, 1.0)]
        # At least once: the bus may also still hold what the failed flush had queued.
        assert {e.kind for e in events} == {"created"} and len({e.story.id for e in events}) == 1
        clustered = bus.consumer(settings.topic_clustered, "t").poll(10, 1.0)
        assert {r.key for r in clustered} == {original.id}
    finally:
        stage.close()
        bus.close()


def test_thresholds_and_model_languages_come_from_the_settings(
    settings_factory: Callable[..., Settings], embedder: SentenceTransformerEmbedder
) -> None:
    settings = settings_factory(model_languages="en, de", cluster_threshold=0.66, cross_lingual_min_anchors=3.0)
    stage = make_assign_stage(settings, PrometheusMetrics(CollectorRegistry()), embedder=embedder)
    try:
        assert stage.params.model_languages == {"en", "de"}
        assert (stage.params.threshold, stage.params.cross_lingual_min_anchors) == (0.66, 3.0)
        assert (stage.state.path.name, stage.state.path.parent) == (STATE_FILE, settings.data_dir)
    finally:
        stage.close()


def test_the_same_day_bonus_of_the_related_rule_shrinks_for_big_older_stories() -> None:
    # The rule takes an older story's most similar article, and the best of many articles of another event
    # is high by chance: beyond related_date_bonus_articles originals the bonus is multiplied by that / theirs.
    params = ClusterParams(
        related_threshold=0.3,
        related_date_bonus=0.1,
        related_date_bonus_articles=2.0,
        model_languages=frozenset({"*"}),
    )
    dated = _article(_unit(1, 0))
    small = Neighbour(story_id="small", similarity=0.22, day=T0.toordinal(), lang="fr", originals=2)
    assert relate(dated, [small], params).related == "small"  # 0.22 >= 0.3 - 0.1
    big = replace(small, story_id="big", originals=40)
    assert relate(dated, [big], params).related is None  # 0.22 < 0.3 - 0.1 * 2 / 40
    assert relate(dated, [replace(big, similarity=0.296)], params).related == "big"  # 0.296 >= 0.295
    four = replace(small, story_id="four", originals=4)
    assert relate(dated, [replace(four, similarity=0.245)], params).related is None  # needs 0.3 - 0.05
    assert relate(dated, [replace(four, similarity=0.251)], params).related == "four"
    # with the setting at 0 the bonus is whole whatever the size; without a date there is none to shrink
    assert relate(dated, [big], replace(params, related_date_bonus_articles=0.0)).related == "big"
    assert relate(replace(dated, dated=False), [small], params).related is None


def test_related_neighbours_count_the_articles_of_their_story_that_competed(tmp_path: Path) -> None:
    # A neighbour is its story's most similar recent article; ``originals`` counts the story's recent original
    # articles that time does not rule out (the ones that article was the best of), through merges.
    state = StoryState(tmp_path / STATE_FILE, window_days=7)
    day = T0.toordinal()

    def story(first: str, vector: NDArray[np.float32]) -> StoryRecord:
        return state.create(
            first_article_id=first,
            title="t",
            at=T0,
            source="s",
            lang="fr",
            vector=vector,
            anchors=(),
            kinds=frozenset(),
        )

    big = story("b0", _unit(1, 0.2))
    for n in range(4):  # four recent originals the same week
        state.remember_article(f"b{n}", big.id, _unit(1, 0.2 + 0.01 * n), day - n)
    for n in range(3):  # three more a year before: the date gate rules them out for a dated article
        state.remember_article(f"old{n}", big.id, _unit(1, 0.3), day - 400)
    [neighbour] = state.neighbours(_unit(1, 0), day=day, gate_days=7.0)
    assert (neighbour.story_id, neighbour.originals) == (big.id, 4)
    [undated] = state.neighbours(_unit(1, 0), day=None, gate_days=7.0)  # an undated article: time rules out none
    assert undated.originals == 7
    # a story merged into it brings its recent articles along
    small = story("s0", _unit(1, 0.25))
    state.remember_article("s0", small.id, _unit(1, 0.25), day)
    state.remember_article("s1", small.id, _unit(1, 0.26), day)
    assert {n.story_id: n.originals for n in state.neighbours(_unit(1, 0), day=day, gate_days=7.0)} == {
        big.id: 4,
        small.id: 2,
    }
    state.merge(big, small)
    [merged] = state.neighbours(_unit(1, 0), day=day, gate_days=7.0)
    assert (merged.story_id, merged.originals) == (big.id, 6)
    state.close()
    # read back from the table (a restart): the merge is followed there too
    again = StoryState(tmp_path / STATE_FILE, window_days=7)
    [reread] = again.neighbours(_unit(1, 0), day=day, gate_days=7.0)
    assert (reread.story_id, reread.originals) == (big.id, 6)
    again.close()


def test_related_neighbours_leave_out_articles_time_rules_out_before_choosing_the_nearest(tmp_path: Path) -> None:
    """Eight places for the nearest recent articles: articles of other events dated years away must not
    fill them and hide the same week's report, which the related rule would judge."""
    state = StoryState(tmp_path / STATE_FILE, window_days=7)
    day = T0.toordinal()
    for n in range(10):  # very similar, but published a year or more before
        state.remember_article(f"old{n}", f"old-story-{n}", _unit(1, 0.01 * n), day - 400 - n)
    state.remember_article("same-week", "same-week-story", _unit(1, 0.6), day - 2)
    state.remember_article("undated", "undated-story", _unit(1, 0.7), None)
    vector = _unit(1, 0)
    everything = [n.story_id for n in state.neighbours(vector)]
    assert "same-week-story" not in everything and len(everything) == 8  # crowded out
    gated = [n.story_id for n in state.neighbours(vector, day=day, gate_days=7.0)]
    assert gated == ["same-week-story", "undated-story"]  # nothing dated beyond the gate, undated kept
    assert [n.story_id for n in state.neighbours(vector, day=None, gate_days=7.0)][:1] == ["old-story-0"]
    state.close()


def test_words_shared_with_a_storys_articles_in_the_same_language_add_to_the_centred_cosine() -> None:
    """``word_evidence_weight`` times the same-language word evidence (``stream.word_evidence``) is added to
    a candidate's centred cosine; it is asked only of stories with an article in the article's language, and
    not at all on raw cosines (warm-up) or with the weight at 0."""
    params = ClusterParams(
        threshold=0.3, same_language_margin=0.15, word_evidence_weight=0.2, model_languages=frozenset({"*"})
    )
    centre = np.zeros(2, dtype=np.float32)
    english = replace(_story("en", _unit(1, 2)), mean=_unit(1, 2))  # cos 0.447, needs 0.45
    twin = replace(english, story_id="en-twin")  # the same cosine, no words in common
    arabic = replace(english, story_id="ar", languages=frozenset({"ar"}))
    article = _article(_unit(1, 0))
    shared = {"en": 0.5, "en-twin": 0.0}
    asked: list[str] = []

    def words(cand: Candidate) -> float:
        asked.append(cand.story_id)
        return shared[cand.story_id]

    assert assign(article, [english], params, center=centre).action == "new"  # no evidence given
    decision = assign(article, [twin, english], params, center=centre, words=words)
    assert (decision.action, decision.story_id) == ("join", "en")  # 0.547 clears 0.45; the twin 0.447 does not
    assert decision.score == pytest.approx(0.447 + 0.1, abs=1e-3)
    assert assign(article, [arabic], params, center=centre, words=words).story_id == "ar"  # on its cosine
    assert "ar" not in asked  # a story with no article in English has no words to compare with
    assert assign(article, [twin], params, center=centre, words=words).action == "new"
    asked.clear()
    off = replace(params, word_evidence_weight=0.0)
    assert assign(article, [english], off, center=centre, words=words).action == "new" and not asked
    warm = replace(params, warmup_threshold=0.5)
    assert assign(article, [english], warm, words=words).action == "new" and not asked  # raw cosines


def test_names_shared_with_a_storys_articles_in_other_languages_add_to_the_centred_cosine() -> None:
    """``name_evidence_weight`` times the name evidence (``stream.name_keys`` through ``stream.word_evidence``)
    is added to a candidate's centred cosine; it is asked only of stories with an article in another language
    than the article's, and not at all on raw cosines (warm-up) or with the weight at 0."""
    params = ClusterParams(
        threshold=0.3, same_language_margin=0.15, name_evidence_weight=1.0, model_languages=frozenset({"*"})
    )
    centre = np.zeros(2, dtype=np.float32)
    arabic = replace(_story("ar", _unit(1, 3)), mean=_unit(1, 3), languages=frozenset({"ar"}))  # cos 0.316
    far = replace(arabic, story_id="far", mean=_unit(1, 5), centroid=_unit(1, 5))  # cos 0.196
    english = replace(arabic, story_id="en", languages=frozenset({"en"}))  # all in the article's language
    article = _article(_unit(1, 0), lang="en")
    shared = {"ar": 0.05, "far": 0.2, "en": 0.9}
    asked: list[str] = []

    def names(cand: Candidate) -> float:
        asked.append(cand.story_id)
        return shared[cand.story_id]

    decision = assign(article, [arabic, far], params, center=centre, names=names)
    # "far" shares more names: 0.196 + 0.2 = 0.396 beats 0.316 + 0.05 = 0.366
    assert decision.story_id == "far" and decision.score == pytest.approx(0.396, abs=1e-3)
    assert assign(article, [arabic, far], replace(params, name_evidence_weight=0.0), center=centre).story_id == "ar"
    asked.clear()
    assert assign(article, [english], params, center=centre, names=names).action == "new"  # needs 0.45
    assert "en" not in asked  # no article in another language: no names to compare with
    asked.clear()
    warm = replace(params, warmup_threshold=0.25)
    assert assign(article, [arabic, far], warm, names=names).story_id == "ar" and not asked  # raw cosines
