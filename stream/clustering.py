"""Story assignment, the pure domain of clustering: (article, vector, anchors, candidates) -> decision.

No I/O and no clock: ``stream.story_state`` finds the candidate stories (those active within the
look-back window, plus dormant ones sharing specific anchors), this module decides.

Scoring a candidate story for an article:

- ``cos``: cosine of the article vector with the story's centroid in the article's language when the
  story has one, else with the overall centroid;
- ``shared``: the weighted anchors both have (``stream.anchors.ANCHOR_WEIGHTS``);
- same language, read by the model (``model_languages``; ``*`` for a multilingual model, which also
  makes every language pair comparable): ``score = cos + anchor_weight * min(1, shared / ANCHOR_SATURATION)``;
- otherwise (another language, or a language an English-only model does not read, where cosine
  says nothing: unrelated Arabic texts score ~0.9 with all-MiniLM-L6-v2) only anchors link: eligible
  when ``shared >= cross_lingual_min_anchors``, ``score = threshold * shared / cross_lingual_min_anchors``.

A candidate is not eligible when the article reports a kind of development (a denial, an arrest ...,
``stream.anchors.event_kinds``) that the story's first article did not, unless the two are near-identical
(``cos >= novelty_override``): a new development opens a new story even when it repeats old names
and figures. A dormant story (last seen before the window) is eligible only with at least
``follow_up_min_anchors`` of shared specific anchors: an anniversary piece re-telling it joins it as a
``follow_up`` instead of opening a story that alerts would fire on.

The best eligible score at or above ``threshold`` wins (ties: the older story); otherwise ``new``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from stream.anchors import anchor_kind, anchor_weight

ANCHOR_SATURATION = 2.0  # shared anchor weight at which the anchor bonus is full (a date and a figure)
UNDETERMINED_LANG = "und"  # an undetermined language is treated as the story's own
MULTILINGUAL = "*"  # in model_languages: the model embeds every language into one space
MAX_ANCHOR_SCORE_RATIO = 1.5  # anchor-only scores stop growing at 1.5x the minimum shared weight

Action = Literal["new", "join", "follow_up"]


@dataclass(frozen=True, kw_only=True, slots=True)
class ClusterParams:
    """Thresholds (defaults from ``Settings``; calibrated in docs/clustering.md)."""

    threshold: float = 0.7
    anchor_weight: float = 0.0
    cross_lingual_min_anchors: float = 2.0
    follow_up_min_anchors: float = 1.0
    novelty_override: float = 0.95
    merge_threshold: float = 0.8
    model_languages: frozenset[str] = frozenset({"en"})


@dataclass(frozen=True, kw_only=True, slots=True)
class ArticleFeatures:
    """What clustering knows of an article: ``vector`` shape ``(dim,)``, L2-normalised."""

    id: str
    vector: NDArray[np.float32]
    anchors: frozenset[str]
    kinds: frozenset[str]
    lang: str
    at: datetime


@dataclass(frozen=True, kw_only=True, slots=True)
class Candidate:
    """A story as clustering sees it. Centroids are L2-normalised, shape ``(dim,)``."""

    story_id: str
    centroid: NDArray[np.float32]
    lang_centroids: Mapping[str, NDArray[np.float32]] = field(default_factory=dict)
    anchors: frozenset[str] = frozenset()
    kinds: frozenset[str] = frozenset()
    languages: frozenset[str] = frozenset()
    first_seen: datetime
    last_seen: datetime
    article_count: int = 1
    dormant: bool = False  # last seen before the look-back window (found by its anchors)


@dataclass(frozen=True, kw_only=True, slots=True)
class Scored:
    story_id: str
    score: float
    similarity: float
    shared: float
    cross_lingual: bool
    eligible: bool
    reason: str


@dataclass(frozen=True, kw_only=True, slots=True)
class Decision:
    """``new`` (open a story), ``join`` (an active story) or ``follow_up`` (a dormant story)."""

    action: Action
    story_id: str | None
    score: float
    similarity: float
    reason: str
    cross_lingual: bool = False


def shared_anchor_weight(a: frozenset[str], b: frozenset[str], *, specific_only: bool = False) -> float:
    """Weighted size of ``a & b`` (``specific_only``: dates, figures and entities only)."""
    total = 0.0
    for anchor in a & b:
        if specific_only and anchor_kind(anchor) not in {"date", "num", "ent"}:
            continue
        total += anchor_weight(anchor)
    return total


def reads_language(lang: str, params: ClusterParams) -> bool:
    """Whether the model's cosine can be trusted for texts in ``lang`` (``"*"``: a multilingual model)."""
    return MULTILINGUAL in params.model_languages or lang == UNDETERMINED_LANG or lang in params.model_languages


def score_candidate(article: ArticleFeatures, cand: Candidate, params: ClusterParams) -> Scored:
    """Score and eligibility of ``cand`` for ``article`` (see the module docstring)."""
    same_lang = _same_language(article.lang, cand.languages)
    centroid = cand.lang_centroids.get(article.lang, cand.centroid)
    cos = float(np.dot(article.vector, centroid))
    shared = shared_anchor_weight(article.anchors, cand.anchors)
    trusted = reads_language(article.lang, params) and (same_lang or MULTILINGUAL in params.model_languages)
    if trusted:
        score = cos + params.anchor_weight * min(1.0, shared / ANCHOR_SATURATION)
        eligible, reason = True, "similar"
    else:
        # Another language, or one the model does not read: only the anchors link, and the score
        # reaches the threshold exactly at ``cross_lingual_min_anchors`` of shared anchors.
        score = params.threshold * min(MAX_ANCHOR_SCORE_RATIO, shared / params.cross_lingual_min_anchors)
        eligible = shared >= params.cross_lingual_min_anchors
        reason = "shared anchors" if eligible else "not read by the model, too few shared anchors"
    new_kinds = article.kinds - cand.kinds
    if eligible and new_kinds and cos < params.novelty_override:
        eligible, reason = False, "new development: " + ",".join(sorted(new_kinds))
    if eligible and cand.dormant:
        specific = shared_anchor_weight(article.anchors, cand.anchors, specific_only=True)
        if specific < params.follow_up_min_anchors:
            eligible, reason = False, "dormant story, too few shared anchors"
        else:
            reason = "follow-up of a dormant story"
    return Scored(
        story_id=cand.story_id,
        score=score,
        similarity=cos,
        shared=shared,
        cross_lingual=not trusted,
        eligible=eligible,
        reason=reason,
    )


def assign(article: ArticleFeatures, candidates: Sequence[Candidate], params: ClusterParams) -> Decision:
    """The story ``article`` belongs to among ``candidates``, or ``new``.

    Cosines are computed in one matrix product; candidates the model reads whose cosine cannot reach
    the threshold even with the full anchor bonus are skipped without further scoring.
    """
    if not candidates:
        return Decision(action="new", story_id=None, score=0.0, similarity=0.0, reason="no candidate story")
    cents = np.stack([c.lang_centroids.get(article.lang, c.centroid) for c in candidates])
    cosines = cents @ article.vector
    floor = params.threshold - params.anchor_weight
    reads = reads_language(article.lang, params)
    multilingual = MULTILINGUAL in params.model_languages
    best: tuple[Scored, Candidate] | None = None
    for cand, cos in zip(candidates, cosines, strict=True):
        if cos < floor and reads and (multilingual or _same_language(article.lang, cand.languages)):
            continue  # trusted cosine, too low: cannot reach the threshold
        scored = score_candidate(article, cand, params)
        if not scored.eligible or scored.score < params.threshold:
            continue
        if best is None or _better(scored, cand, best[0], best[1]):
            best = (scored, cand)
    if best is None:
        return Decision(action="new", story_id=None, score=0.0, similarity=0.0, reason="no story above threshold")
    scored, cand = best
    return Decision(
        action="follow_up" if cand.dormant else "join",
        story_id=cand.story_id,
        score=scored.score,
        similarity=scored.similarity,
        reason=scored.reason,
        cross_lingual=scored.cross_lingual,
    )


def _same_language(lang: str, languages: frozenset[str]) -> bool:
    return lang == UNDETERMINED_LANG or not languages or lang in languages or languages == {UNDETERMINED_LANG}


def _better(a: Scored, ca: Candidate, b: Scored, cb: Candidate) -> bool:
    if a.score != b.score:
        return a.score > b.score
    return (ca.first_seen, ca.story_id) < (cb.first_seen, cb.story_id)


def merge_pairs(stories: Sequence[Candidate], params: ClusterParams) -> list[tuple[int, int]]:
    """Index pairs ``(i, j)``, ``i < j``, of ``stories`` that :func:`should_merge`, most similar first.

    One matrix product over the centroids, so a pass over a few hundred active stories stays cheap.
    """
    if len(stories) < 2:
        return []
    cents = np.stack([s.centroid for s in stories])
    sims = np.triu(cents @ cents.T, k=1)
    rows, cols = np.nonzero(sims >= params.merge_threshold)
    order = np.argsort(-sims[rows, cols], kind="stable")
    return [
        (int(rows[k]), int(cols[k]))
        for k in order
        if should_merge(stories[int(rows[k])], stories[int(cols[k])], params)
    ]


def should_merge(a: Candidate, b: Candidate, params: ClusterParams) -> bool:
    """Two stories converged: centroids at least ``merge_threshold`` apart and the same kinds of development."""
    if a.story_id == b.story_id or a.kinds != b.kinds:
        return False
    return float(np.dot(a.centroid, b.centroid)) >= params.merge_threshold
