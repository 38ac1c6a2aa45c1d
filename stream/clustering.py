"""Story assignment, the pure domain of clustering: (article, vector, anchors, candidates) -> decision.

No I/O and no clock: ``stream.story_state`` finds the candidate stories (those active within the
look-back window, plus dormant ones sharing specific anchors), this module decides.

Scoring a candidate story for an article:

- ``cos``: cosine of the article vector with the story's centroid in the article's language when the
  story has one, else with the overall centroid. With a multilingual model both are first *centred*:
  the mean vector of the recent articles (``center``, kept by ``stream.story_state``) is subtracted
  from the article vector and from the story's mean vector. Every article of a monitored topic shares
  that direction ("Syria", "prison", "Assad"); taking it away leaves what tells one event from another,
  the embedding-space twin of an IDF (docs/clustering.md: area under the same-story ROC 0.87 -> 0.92);
- ``shared``: the anchors both have, each weighted by its kind (``stream.anchors.ANCHOR_WEIGHTS``)
  times its rarity among recent articles (``rarity``: 1 for an anchor no other recent article has,
  about 0 for one most articles share, such as the topic's own names, "Assad" or "13,000");
- the date gate: an article with a publication date is not eligible to *join* an active story whose
  dated articles were all published more than ``date_gate_days`` away (undated articles pass: their
  time is unknown); a story further back in time is dormant and only a follow-up can reach it (below);
  on centred cosines a story with dated articles of the same days in *other* languages scores
  ``date_bonus`` more (:func:`date_bonus`), shared out when many stories are dated those days
  (:func:`date_share`);
- same language, read by the model (``model_languages``; ``*`` for a multilingual model, which also
  makes every language pair comparable): ``score = cos + anchor_weight * min(1, shared / ANCHOR_SATURATION)``,
  plus, on centred cosines, ``word_evidence_weight * words``: the TF-IDF cosine of the article's words with the
  story's recent articles in the article's language (``stream.word_evidence``; 0 for a story with none),
  and ``name_evidence_weight * names``: the TF-IDF cosine of the article's name keys (its names as consonant
  skeletons, which meet across scripts: ``stream.name_keys``) with those of the story's recent articles in
  *other* languages, the evidence across languages that words cannot give;
- otherwise (another language, or a language an English-only model does not read, where cosine
  says nothing: unrelated Arabic texts score ~0.9 with all-MiniLM-L6-v2) only anchors link: eligible
  when ``shared >= cross_lingual_min_anchors``, ``score = threshold * shared / cross_lingual_min_anchors``.

A candidate is not eligible when the article reports a kind of development (a denial, an arrest ...,
``stream.anchors.event_kinds``) that the story's first article did not, unless the two are near-identical
(``cos >= novelty_override``): a new development opens a new story even when it repeats old names
and figures. A dormant story (last seen before the window) is eligible only with at least
``follow_up_min_anchors`` of shared specific anchors: an anniversary piece re-telling it joins it as a
``follow_up`` instead of opening a story that alerts would fire on.

The best eligible score at or above ``threshold`` wins (ties: the older story); otherwise ``new``. With
centred cosines, a story whose articles are all in the article's language needs ``threshold +
same_language_margin`` (and two stories all in one language ``merge_threshold + same_language_merge_margin``
to merge): reports of one event in one language sit closer together in the model's space than its reports
in two languages (docs/clustering.md, "One language, a higher bar"), and the best candidate is the one
furthest above what it needs.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
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
    """Thresholds (defaults from ``Settings``; calibrated in docs/clustering.md).

    ``threshold`` applies to centred cosines (a ``center`` is known), ``warmup_threshold`` to raw
    cosines while too few articles were seen to know the topic's common direction.
    """

    threshold: float = 0.7
    warmup_threshold: float = 0.7
    anchor_weight: float = 0.0
    cross_lingual_min_anchors: float = 2.0
    follow_up_min_anchors: float = 1.0
    novelty_override: float = 0.95
    merge_threshold: float = 0.8
    warmup_merge_threshold: float = 0.8
    date_gate_days: float = 7.0
    date_bonus: float = 0.0
    # stories dated near an article (each weighted by the date bonus's fade) up to which the bonus is whole;
    # beyond, it is divided by their sum: a day many stories share says less (see :func:`date_share`; 0: whole)
    date_bonus_stories: float = 0.0
    related_threshold: float = 1.01  # above 1: no related stories
    related_warmup_threshold: float = 1.01  # raw cosine, while the centre is unknown
    related_date_bonus: float = 0.0  # lowers related_threshold for two dated articles the same day
    # original articles of the older story up to which related_date_bonus is whole; beyond, it is multiplied by
    # this number / theirs: the best of more articles is higher by chance (see :func:`related_needed`; 0: whole)
    related_date_bonus_articles: float = 0.0
    # a new story whose first article falls short of the related rule by less than this (centred cosine) is
    # *unconfirmed*: it nearly reports an older story; 0: off (see :func:`relate`)
    unconfirmed_margin: float = 0.0
    # added to ``threshold`` (``merge_threshold``) when the article and the story (both stories) are all in one
    # language: the model puts one event's reports in one language closer together than across languages, so
    # one threshold is too loose for the first or too strict for the second (centred cosines only; 0: off)
    same_language_margin: float = 0.0
    same_language_merge_margin: float = 0.0
    word_evidence_weight: float = 0.0
    # the name evidence across languages: the TF-IDF cosine of the article's name keys with those of the story's
    # articles in other languages (stream.name_keys), added to centred cosines times this weight (0: off)
    name_evidence_weight: float = 0.0
    model_languages: frozenset[str] = frozenset({"en"})


@dataclass(frozen=True, kw_only=True, slots=True)
class ArticleFeatures:
    """What clustering knows of an article: ``vector`` shape ``(dim,)``, L2-normalised.

    ``dated``: ``at`` is a publication date (False: the discovery time of an undated article).
    """

    id: str
    vector: NDArray[np.float32]
    anchors: frozenset[str]
    kinds: frozenset[str]
    lang: str
    at: datetime
    dated: bool = True


@dataclass(frozen=True, kw_only=True, slots=True)
class Candidate:
    """A story as clustering sees it. Centroids are L2-normalised, shape ``(dim,)``; ``mean`` is the
    plain mean of its article vectors (centred by :func:`assign`); ``dated_days`` the distinct
    publication days of its dated articles (empty: no dated article)."""

    story_id: str
    centroid: NDArray[np.float32]
    mean: NDArray[np.float32] | None = None
    lang_centroids: Mapping[str, NDArray[np.float32]] = field(default_factory=dict)
    anchors: frozenset[str] = frozenset()
    kinds: frozenset[str] = frozenset()
    languages: frozenset[str] = frozenset()
    first_seen: datetime
    last_seen: datetime
    dated_days: tuple[int, ...] = ()  # distinct publication days (date ordinals), sorted
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


@dataclass(frozen=True, kw_only=True, slots=True)
class Neighbour:
    """A recent original article of another story, by (centred) cosine with the article; ``day`` its
    publication day (date ordinal), None when undated; ``lang`` its language; ``originals`` how many of its
    story's recent original articles (through merges) time did not rule out: the article is the most similar
    of those."""

    story_id: str
    similarity: float
    day: int | None
    lang: str = UNDETERMINED_LANG
    originals: int = 1


Rarity = Callable[[str], float]  # anchor -> 0..1, how rare it is among recent articles
WordEvidence = Callable[[Candidate], float]  # candidate -> 0..1, the article's words shared with it (same language)


def _no_rarity(anchor: str) -> float:
    return 1.0


def shared_anchor_weight(
    a: frozenset[str], b: frozenset[str], *, specific_only: bool = False, rarity: Rarity | None = None
) -> float:
    """Weighted size of ``a & b`` (``specific_only``: dates, figures and entities only); each anchor
    weighs its kind's weight times its ``rarity`` (1 when no rarity is given)."""
    rare = rarity or _no_rarity
    total = 0.0
    for anchor in a & b:
        if specific_only and anchor_kind(anchor) not in {"date", "num", "ent"}:
            continue
        total += anchor_weight(anchor) * rare(anchor)
    return total


def reads_language(lang: str, params: ClusterParams) -> bool:
    """Whether the model's cosine can be trusted for texts in ``lang`` (``"*"``: a multilingual model)."""
    return MULTILINGUAL in params.model_languages or lang == UNDETERMINED_LANG or lang in params.model_languages


def _unit_rows(matrix: NDArray[np.float32]) -> NDArray[np.float32]:
    norms = np.linalg.norm(matrix, axis=-1, keepdims=True)
    out: NDArray[np.float32] = (matrix / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)
    return out


def _story_vector(cand: Candidate, lang: str, params: ClusterParams, centred: bool) -> NDArray[np.float32]:
    if MULTILINGUAL in params.model_languages:
        # One space for every language: the story's overall mean (centred) or centroid.
        if centred and cand.mean is not None:
            return cand.mean
        return cand.centroid
    return cand.lang_centroids.get(lang, cand.centroid)


def cosines(
    article: ArticleFeatures,
    candidates: Sequence[Candidate],
    params: ClusterParams,
    center: NDArray[np.float32] | None = None,
) -> NDArray[np.float32]:
    """Cosine of ``article`` with each candidate, centred on ``center`` when given (multilingual model)."""
    centred = center is not None and MULTILINGUAL in params.model_languages
    stories = np.stack([_story_vector(c, article.lang, params, centred) for c in candidates])
    if not centred:
        out: NDArray[np.float32] = stories @ article.vector
        return out
    assert center is not None
    vec = _unit_rows((article.vector - center)[None, :])[0]
    centred_cos: NDArray[np.float32] = _unit_rows(stories - center) @ vec
    return centred_cos


def date_gate(article: ArticleFeatures, cand: Candidate, params: ClusterParams) -> str | None:
    """Why ``cand`` is out of reach of ``article``'s publication date, or None: no dated article of the
    story was published within ``date_gate_days`` of it (a story that undated articles bridged across
    years keeps each of its dated days, not one wide range)."""
    if not article.dated or not cand.dated_days:
        return None
    if _near(article.at.toordinal(), cand.dated_days, params.date_gate_days):
        return None
    return f"published more than {params.date_gate_days:g} days from the story's dated articles"


def date_bonus(article: ArticleFeatures, cand: Candidate, params: ClusterParams, share: float = 1.0) -> float:
    """What ``article``'s publication date adds to its similarity with ``cand``: ``date_bonus`` when a dated
    article of the story was published the same day, falling linearly to 0 at ``date_gate_days + 1``
    days away (evidence of its own that the two report one event, not only no evidence against);
    0 when either has no date.

    Evidence across languages only: 0 for a story whose articles are all in the article's language (and
    :func:`merge_pairs` adds none to two stories all in one language). Across languages the model's cosine
    is weak (same-event pairs of the multilingual tuning set: median 0.28 across languages, 0.43 in one)
    and a report of the same days says much; in one language the cosine and the words say it, and one
    language's news has many stories a day (on the dated 2021 roundups a bonus for every pair folded the
    day's stories together, docs/clustering.md). ``share``: the part of the bonus those days are worth
    (:func:`date_share`)."""
    if not article.dated or not cand.dated_days or one_language(article.lang, cand.languages):
        return 0.0
    return share * _bonus(_gap(article.at.toordinal(), cand.dated_days), params)


def date_share(day: int, stories: Sequence[Candidate], params: ClusterParams) -> float:
    """The part of the date bonus a publication on ``day`` is worth among ``stories`` (the active stories
    around it): 1 while the stories dated near it, each counted by the bonus's fade (1 the same day,
    0 at ``date_gate_days + 1`` days), add up to at most ``date_bonus_stories``; beyond, that number
    divided by their sum. A date is evidence of one event in proportion to how few stories share it:
    on a topic whose events lie weeks apart an article's days hold about one story, its own, while in a
    busy week of one place's news (the days after a prison is opened) several developments share the
    same days, and a whole bonus for each joined different developments reported in two languages
    (docs/clustering.md, "Dates shared by many stories"). Dormant stories are not counted (they lie
    outside the window). ``date_bonus_stories`` 0: always 1."""
    return days_share(day, [story.dated_days for story in stories if not story.dormant], params)


def days_share(day: int, dated_days: Iterable[Sequence[int]], params: ClusterParams) -> float:
    """:func:`date_share` from the publication days of the active stories (each sorted; empty: none
    dated), in their order: what ``stream.story_state`` gives when it leaves stories out of the
    candidates (:class:`Reach`) that still count here."""
    if params.date_bonus_stories <= 0.0 or params.date_bonus <= 0.0:
        return 1.0  # nothing to share
    span = params.date_gate_days + 1.0
    near = 0.0
    for days in dated_days:
        if not days or days[0] - day >= span or day - days[-1] >= span:
            continue  # no dated article near (its dated range ends a fade's span away or more)
        near += max(0.0, 1.0 - _gap(day, days) / span)
    return 1.0 if near <= params.date_bonus_stories else params.date_bonus_stories / near


def _bonus(gap: float, params: ClusterParams) -> float:
    return params.date_bonus * max(0.0, 1.0 - gap / (params.date_gate_days + 1.0))


def _gap(day: int, days: Sequence[int]) -> float:
    """Days from ``day`` to the nearest of the sorted ``days`` (inf when empty)."""
    at = bisect.bisect_left(days, day)
    return min((abs(days[i] - day) for i in (at - 1, at) if 0 <= i < len(days)), default=float("inf"))


def _days_apart(days: Sequence[int], others: Sequence[int]) -> float:
    """Days between the nearest of two sorted day lists (inf when either is empty)."""
    if len(days) > len(others):
        days, others = others, days
    return min((_gap(day, others) for day in days), default=float("inf")) if others else float("inf")


def _near(day: int, days: Sequence[int], gate: float) -> bool:
    """Whether a day of the sorted ``days`` is within ``gate`` days of ``day``."""
    return _gap(day, days) <= gate


def score_candidate(
    article: ArticleFeatures,
    cand: Candidate,
    params: ClusterParams,
    *,
    center: NDArray[np.float32] | None = None,
    rarity: Rarity | None = None,
    cos: float | None = None,
    words: float = 0.0,
    names: float = 0.0,
    share: float = 1.0,
) -> Scored:
    """Score and eligibility of ``cand`` for ``article`` (see the module docstring); ``words``: the
    same-language word evidence (``stream.word_evidence``), weighed by ``word_evidence_weight`` on centred
    cosines, ``names`` the name evidence across languages, by ``name_evidence_weight``; ``share``: the part
    of the date bonus the article's days are worth (:func:`date_share`)."""
    same_lang = _same_language(article.lang, cand.languages)
    if cos is None:
        cos = float(cosines(article, [cand], params, center)[0])
    shared = shared_anchor_weight(article.anchors, cand.anchors, rarity=rarity)
    trusted = reads_language(article.lang, params) and (same_lang or MULTILINGUAL in params.model_languages)
    threshold = _threshold(params, center)
    if trusted:
        score = cos + params.anchor_weight * min(1.0, shared / ANCHOR_SATURATION)
        eligible, reason = True, "similar"
        if words > 0 and _centred(params, center):
            score += params.word_evidence_weight * words
        if names > 0 and _centred(params, center):
            score += params.name_evidence_weight * names
        bonus = date_bonus(article, cand, params, share) if _centred(params, center) else 0.0
        if bonus > 0:
            score += bonus
            reason = "similar, published the same days"
    else:
        # Another language, or one the model does not read: only the anchors link, and the score
        # reaches the threshold exactly at ``cross_lingual_min_anchors`` of shared anchors.
        score = threshold * min(MAX_ANCHOR_SCORE_RATIO, shared / params.cross_lingual_min_anchors)
        eligible = shared >= params.cross_lingual_min_anchors
        reason = "shared anchors" if eligible else "not read by the model, too few shared anchors"
    gated = None if cand.dormant else date_gate(article, cand, params)  # a dormant story is a follow-up's
    if eligible and gated is not None:
        eligible, reason = False, gated
    # Kind cues are word lists per language: a story with no article in this language may just lack
    # the words, so only a story read in the article's language can show a development is new.
    new_kinds = article.kinds - cand.kinds if article.lang in cand.languages else frozenset()
    if eligible and new_kinds and cos < params.novelty_override:
        eligible, reason = False, "new development: " + ",".join(sorted(new_kinds))
    if eligible and cand.dormant:
        specific = shared_anchor_weight(article.anchors, cand.anchors, specific_only=True, rarity=rarity)
        if specific < params.follow_up_min_anchors:
            eligible, reason = False, "dormant story, too few shared anchors"
        else:
            reason = "follow-up of a dormant story"
    return Scored(
        story_id=cand.story_id,
        score=score,
        similarity=cos,
        shared=shared,
        cross_lingual=not trusted or (MULTILINGUAL in params.model_languages and not same_lang),
        eligible=eligible,
        reason=reason,
    )


def _centred(params: ClusterParams, center: NDArray[np.float32] | None) -> bool:
    """Whether cosines are centred (a multilingual model and a known centre): the space ``date_bonus``
    and ``threshold`` are measured in; raw cosines (warm-up, an English-only model) get no date bonus."""
    return center is not None and MULTILINGUAL in params.model_languages


def _threshold(params: ClusterParams, center: NDArray[np.float32] | None) -> float:
    if MULTILINGUAL in params.model_languages and center is None:
        return params.warmup_threshold
    return params.threshold


BOUND_SLACK = 1e-9  # more than the rounding of a bound's sum: a story within it of the best is scored
REACH_SLACK = 5e-3  # below what a story needs by more than this: out of reach (Reach's rounding is < 2e-3)
REACH_MIN_DISTANCE = 0.2  # nearer the centre than this, a story's centred cosine is too sensitive to be bounded


@dataclass(frozen=True, slots=True)
class Reach:
    """The per-candidate bound of :func:`assign` for one article, for many stories at once: a story is out
    of reach when its centred cosine plus all it could add (anchors; word evidence if it has an article in
    the article's language; name evidence and, if both are dated, a date bonus if it is not all in the
    article's language) falls short of the least it needs (the threshold; with ``same_language_margin`` more
    for a story all in the article's language) by more than ``REACH_SLACK``. :func:`assign` skips such a story
    unscored, so ``stream.story_state`` does not even build it as a candidate: in a busy window hundreds of stories are
    active around an article, nearly all of them far, and building and scoring each one set the cost of an
    article. The store computes their cosines at once from unit means and norms (float32 matrix-vector
    products), not as :func:`cosines` does: the two differ by rounding, for unit article vectors and means of
    unit vectors (the embedders' output) at most ~2e-6 as measured and under 2e-3 by a float32 worst-case
    bound, for a story whose mean lies at least ``REACH_MIN_DISTANCE`` from the centre (nearer ones are always
    kept), so the decision is the same (``tests/test_clustering.py`` checks it on random story sets)."""

    center: NDArray[np.float32]
    lang: str
    dated: bool
    threshold: float
    anchor_weight: float
    word_weight: float  # 0 when no word evidence is weighed for this article
    name_weight: float  # 0 when no name evidence is weighed for this article
    date_bonus: float
    same_language_margin: float
    # an upper bound of the name evidence of each story that holds one of the article's name keys (any other
    # story's is 0: stream.word_evidence.TermWindow.name_bounds); None: up to 1 for any
    name_bounds: Mapping[str, float] | None = None

    def out(
        self,
        cos: NDArray[np.float64],
        has_lang: NDArray[np.bool_],
        one_lang: NDArray[np.bool_],
        dated: NDArray[np.bool_],
        story_ids: Sequence[str] = (),
    ) -> NDArray[np.bool_]:
        """Which stories are out of reach, from their centred cosines, whether each has an article in the
        article's language, is all in it (a determined language), and has a dated article; ``story_ids``,
        their ids, give each one's bound of name evidence (when ``name_bounds`` is known)."""
        most = self.anchor_weight + np.where(has_lang, self.word_weight, 0.0)
        if self.name_weight > 0:  # names only from a story's other languages, at most its bound
            names = np.ones(cos.shape[0])
            if self.name_bounds is not None:
                bounds = self.name_bounds
                names = np.fromiter((bounds.get(s, 0.0) for s in story_ids), dtype=np.float64, count=cos.shape[0])
            most = most + np.where(one_lang, 0.0, self.name_weight * names)
        if self.dated:
            most = most + np.where(dated & ~one_lang, self.date_bonus, 0.0)
        needed = self.threshold + np.where(one_lang, self.same_language_margin, 0.0)
        out: NDArray[np.bool_] = cos + most < needed - REACH_SLACK
        return out


def reach(
    article: ArticleFeatures,
    params: ClusterParams,
    center: NDArray[np.float32] | None,
    *,
    words: bool,
    name_bounds: Mapping[str, float] | None = None,
) -> Reach | None:
    """The :class:`Reach` of ``article``'s candidates (``words``: its terms are known, so the word and name
    evidence are weighed for it as their weights say), or None
    when :func:`assign` may choose a story whatever its cosine: before the centre is known (raw cosines),
    or with a model that does not read every language (its cosine is not trusted across languages).
    ``name_bounds``: an upper bound of each story's name evidence (a story not in it has none; None: up to 1).
    Negative weights count as nothing, a negative margin as none: the bound only widens."""
    if not _centred(params, center):
        return None
    assert center is not None
    return Reach(
        center=center,
        lang=article.lang,
        dated=article.dated,
        threshold=_threshold(params, center),
        anchor_weight=max(0.0, params.anchor_weight),
        word_weight=max(0.0, params.word_evidence_weight) if words else 0.0,
        name_weight=max(0.0, params.name_evidence_weight) if words else 0.0,
        date_bonus=max(0.0, params.date_bonus),
        same_language_margin=max(0.0, params.same_language_margin),
        name_bounds=name_bounds,
    )


def single_language(languages: frozenset[str]) -> str | None:
    """The one determined language of ``languages`` (a story's), None when it has several or none."""
    if len(languages) != 1:
        return None
    (lang,) = languages
    return None if lang == UNDETERMINED_LANG else lang


def one_language(lang: str, languages: frozenset[str]) -> bool:
    """Whether ``languages`` (a story's) is exactly ``lang``, a determined language."""
    return single_language(languages) == lang


def join_needed(
    article: ArticleFeatures, cand: Candidate, params: ClusterParams, center: NDArray[np.float32] | None
) -> float:
    """The score ``article`` needs to join ``cand``: the threshold, raised by ``same_language_margin`` for a
    story all in the article's language when cosines are centred."""
    needed = _threshold(params, center)
    if _centred(params, center) and one_language(article.lang, cand.languages):
        needed += params.same_language_margin
    return needed


def assign(
    article: ArticleFeatures,
    candidates: Sequence[Candidate],
    params: ClusterParams,
    *,
    center: NDArray[np.float32] | None = None,
    rarity: Rarity | None = None,
    words: WordEvidence | None = None,
    names: WordEvidence | None = None,
    name_bounds: Mapping[str, float] | None = None,
    share_of: Callable[[int], float] | None = None,
) -> Decision:
    """The story ``article`` belongs to among ``candidates``, or ``new``.

    Cosines are computed in one matrix product; candidates the model reads whose cosine cannot reach
    what they need even with all that story can add (anchors, word evidence, name evidence up to its bound, a
    date bonus) are skipped without further scoring. The others are scored most promising first (by that
    most), and scoring stops once the best so far lies further above what it needs than the next one could:
    the best is the same in any order (ties go to the older story), so the decision is too, with fewer stories
    scored and less evidence asked.
    ``words`` gives the same-language word evidence of a candidate (asked only of candidates with an
    article in the article's language, on centred cosines, when ``word_evidence_weight`` is set), ``names`` the
    name evidence across languages (asked only of candidates with an article in another language, when
    ``name_evidence_weight`` is set, and with ``name_bounds``, an upper bound of each story's name evidence, only
    where that bound can decide; a story not in it has none).
    ``share_of`` gives the :func:`date_share` of a day among all the active stories when ``candidates``
    leaves some out (:class:`Reach`); by default it is counted over ``candidates``.
    """
    if not candidates:
        return Decision(action="new", story_id=None, score=0.0, similarity=0.0, reason="no candidate story")
    all_cos = cosines(article, candidates, params, center)
    centred = _centred(params, center)
    share: float | None = None  # of the date bonus (date_share), counted when a candidate could get one
    weight = params.word_evidence_weight if words is not None and centred else 0.0
    name_weight = params.name_evidence_weight if names is not None and centred else 0.0
    reads = reads_language(article.lang, params)
    multilingual = MULTILINGUAL in params.model_languages
    best: tuple[float, Scored, Candidate] | None = None
    threshold = _threshold(params, center)  # the least any story needs
    # each part of what a story can add at most (a negative weight adds nothing: its bound is 0)
    anchors_most, words_most, dates_most = max(0.0, params.anchor_weight), max(0.0, weight), max(0.0, params.date_bonus)
    names_most = max(0.0, name_weight)
    # (the most it can be above what it needs, its place, the story, its cosine, what it needs, a date bonus?,
    # the most its name evidence can add)
    open_: list[tuple[float, int, Candidate, float, float, bool, float]] = []
    for place, (cand, cos) in enumerate(zip(candidates, all_cos, strict=True)):
        trusted = reads and (multilingual or _same_language(article.lang, cand.languages))
        # what this story can add at most: word evidence only with an article in the article's language, a date
        # bonus only for a dated article and a story dated in another language (centred cosines both)
        dates = centred and article.dated and bool(cand.dated_days) and not one_language(article.lang, cand.languages)
        most = anchors_most + (words_most if article.lang in cand.languages else 0.0)
        name_most = names_most * _name_bound(article, cand, name_bounds)
        most += name_most
        most += dates_most if dates else 0.0
        if trusted and cos + most < threshold:
            continue  # trusted cosine, too low to reach the threshold even with all this story can add
        needed = join_needed(article, cand, params, center)
        if trusted and cos + most < needed:
            continue  # nor what this story needs
        open_.append(
            (float(cos) + most - needed if trusted else math.inf, place, cand, float(cos), needed, dates, name_most)
        )
    # The most promising first: once the best so far is further above what it needs than a story could be, that
    # story cannot win, nor can any after it (a story the model does not read is not bounded: it comes first).
    open_.sort(key=lambda item: (-item[0], item[1]))
    for bound, _, cand, cos, needed, dates, name_most in open_:
        if best is not None and bound < best[0] - BOUND_SLACK:
            break
        if share is None and dates:
            day = article.at.toordinal()  # the first candidate it can matter for
            share = share_of(day) if share_of is not None else date_share(day, candidates, params)
        scored = score_candidate(
            article, cand, params, center=center, rarity=rarity, cos=cos, share=1.0 if share is None else share
        )
        if not scored.eligible:
            continue
        # the evidence this story can get: words from its articles in the article's language, names from others
        ask_words = weight > 0 and words is not None and article.lang in cand.languages
        ask_names = name_most > 0
        # the most the evidence could put it above what it needs
        lifted = scored.score + (weight if ask_words else 0.0) + name_most - needed
        if (ask_words or ask_names) and lifted >= 0.0 and (best is None or lifted >= best[0] - BOUND_SLACK):
            # asked only where it can decide (the costly part: a pass over the story's words)
            found = words(cand) if ask_words and words is not None else 0.0
            shared_names = names(cand) if ask_names and names is not None else 0.0
            if found > 0 or shared_names > 0:
                scored = score_candidate(
                    article,
                    cand,
                    params,
                    center=center,
                    rarity=rarity,
                    cos=cos,
                    words=found,
                    names=shared_names,
                    share=1.0 if share is None else share,
                )
        if scored.score < needed:
            continue
        excess = scored.score - needed
        if best is None or _better(excess, cand, best[0], best[2]):
            best = (excess, scored, cand)
    if best is None:
        return Decision(action="new", story_id=None, score=0.0, similarity=0.0, reason="no story above threshold")
    _, scored, cand = best
    return Decision(
        action="follow_up" if cand.dormant else "join",
        story_id=cand.story_id,
        score=scored.score,
        similarity=scored.similarity,
        reason=scored.reason,
        cross_lingual=scored.cross_lingual,
    )


def _name_bound(article: ArticleFeatures, cand: Candidate, bounds: Mapping[str, float] | None) -> float:
    """The most ``cand``'s name evidence can be for ``article``: 0 for a story with no article in another
    language, else its bound in ``bounds`` (0 when not there; None: 1)."""
    if not _other_language(article.lang, cand.languages):
        return 0.0
    return 1.0 if bounds is None else bounds.get(cand.story_id, 0.0)


def _other_language(lang: str, languages: frozenset[str]) -> bool:
    """Whether a story of ``languages`` has an article in a language other than ``lang``."""
    return bool(languages) and not languages <= {lang}


def _same_language(lang: str, languages: frozenset[str]) -> bool:
    return lang == UNDETERMINED_LANG or not languages or lang in languages or languages == {UNDETERMINED_LANG}


def _better(a: float, ca: Candidate, b: float, cb: Candidate) -> bool:
    """Whether ``ca``, ``a`` above what it needs, beats ``cb``, ``b`` above (ties: the older story)."""
    if a != b:
        return a > b
    return (ca.first_seen, ca.story_id) < (cb.first_seen, cb.story_id)


def _merge_vectors(
    stories: Sequence[Candidate], params: ClusterParams, center: NDArray[np.float32] | None
) -> tuple[NDArray[np.float32], float]:
    if center is not None and MULTILINGUAL in params.model_languages and all(s.mean is not None for s in stories):
        means = np.stack([s.mean for s in stories if s.mean is not None])
        return _unit_rows(means - center), params.merge_threshold
    limit = params.warmup_merge_threshold if MULTILINGUAL in params.model_languages else params.merge_threshold
    return np.stack([s.centroid for s in stories]), limit


def merge_pairs(
    stories: Sequence[Candidate], params: ClusterParams, *, center: NDArray[np.float32] | None = None
) -> list[tuple[int, int]]:
    """Index pairs ``(i, j)``, ``i < j``, of ``stories`` that should merge, most similar first: their
    (centred) centroids at least the merge threshold apart (plus ``same_language_merge_margin`` for two
    centred stories all in one language), the same kinds of development (when they
    share a language: kind cues are per-language word lists), and
    publication dates within the date gate of each other.

    One matrix product over the centroids, so a pass over a few hundred active stories stays cheap.
    """
    if len(stories) < 2:
        return []
    cents, limit = _merge_vectors(stories, params, center)
    if limit > 1.0:
        return []  # above 1: merging off, whatever the date bonus would add
    # the date bonus and the one-language margin are quantities of the centred space (raw cosines of one
    # topic all sit high)
    centred = _centred(params, center) and all(s.mean is not None for s in stories)
    bonus = params.date_bonus if centred else 0.0
    sims = np.triu(cents @ cents.T, k=1)
    # both stories all in one (the same, determined) language: a higher bar and no date bonus. Read per story
    # once, then for every pair at once: a pass over a few hundred stories has tens of thousands of pairs
    # within reach of a bonus, and only the pairs that can still merge are looked at one by one.
    index: dict[str, int] = {}
    langs = [single_language(s.languages) if centred else None for s in stories]
    codes = np.array([-1 if lang is None else index.setdefault(lang, len(index)) for lang in langs], dtype=np.int64)
    one = (codes[:, None] == codes[None, :]) & (codes[:, None] != -1)
    needed = np.where(one, limit + params.same_language_merge_margin, limit)
    most = np.where(one, 0.0, bonus)  # the most the date bonus can add
    rows, cols = np.nonzero(np.triu(sims + most >= needed, k=1))
    found: list[tuple[float, int, int]] = []
    for i, j in zip(rows.tolist(), cols.tolist(), strict=True):
        a, b = stories[i], stories[j]
        if a.story_id == b.story_id or (a.kinds != b.kinds and a.languages & b.languages):
            continue
        # days apart of their nearest dated articles (inf when either has none): both dated and further apart
        # than the date gate, they are not the same event (computed once for the gate and the bonus)
        gap = _days_apart(a.dated_days, b.dated_days)
        if a.dated_days and b.dated_days and gap > params.date_gate_days:
            continue
        # the date bonus is evidence across languages only (see :func:`date_bonus`), and whole here: at a merge
        # pass the stories dated near a story are mostly its event's other languages, not yet merged, which
        # :func:`date_share` would count as rivals (sharing it here too cost the dated tuning records F1)
        sim = float(sims[i, j]) + (_bonus(gap, params) if most[i, j] else 0.0)
        if sim >= needed[i, j]:
            found.append((sim, i, j))
    found.sort(key=lambda f: -f[0])  # stable: equal similarities keep index order
    return [(i, j) for _, i, j in found]


def should_merge(
    a: Candidate, b: Candidate, params: ClusterParams, *, center: NDArray[np.float32] | None = None
) -> bool:
    """Two stories converged (see :func:`merge_pairs`)."""
    return bool(merge_pairs([a, b], params, center=center))


@dataclass(frozen=True, slots=True)
class Relation:
    """What a new story's first article is to the older stories around it (:func:`relate`).

    ``related``: the older story it probably reports too (one story for alerting), else None. ``near``:
    when nothing is related, the older story it *nearly* relates to (its best neighbour falls short of the
    related rule by less than ``unconfirmed_margin``): the new story may be a new event or one more
    facet or language of that one, and the alert stage waits for a second report before it alerts
    (docs/alerts.md, "Unconfirmed stories")."""

    related: str | None = None
    near: str | None = None


def relate(
    article: ArticleFeatures, neighbours: Sequence[Neighbour], params: ClusterParams, *, centred: bool = True
) -> Relation:
    """The :class:`Relation` of a new story's first article to its ``neighbours`` (recent original articles
    of older stories, most similar first).

    Story assignment compares an article with story *means*, strictly, so that one story does not
    swallow neighbouring events; the cost is that one event's coverage can open two or three stories
    (facets, languages), each of which would fire an instant alert. A new story whose first article
    is at least ``related_threshold`` (centred cosine) from one recent original article of an older
    story is *related* to it: the alert stage counts the two as one story (docs/alerts.md).

    Time rules as it does for joining: an article and a neighbour both dated relate only when published
    within ``date_gate_days`` of each other, and then their dates are evidence too: the threshold is
    lowered by ``related_date_bonus`` for the same day, falling linearly to nothing at
    ``date_gate_days + 1`` days (the shape of ``date_bonus``, which moves stories; this one only
    alerts). ``centred`` False: the similarities are raw cosines (the warm-up), held to
    ``related_warmup_threshold`` with no date bonus and no *near* story (a raw cosine's shortfall
    means nothing). Only with a multilingual model: an English-only model's cosine says nothing across
    languages.
    """
    threshold = params.related_threshold if centred else params.related_warmup_threshold
    if MULTILINGUAL not in params.model_languages or not neighbours or threshold > 1.0:
        return Relation()  # above 1: off, whatever the date bonus would lower it by
    day = article.at.toordinal() if article.dated else None
    days = np.array([n.day if n.day is not None else 0 for n in neighbours], dtype=np.float64)
    dated = np.array([n.day is not None for n in neighbours])
    same = _in_language(article.lang, [n.lang for n in neighbours])
    originals = np.array([n.originals for n in neighbours], dtype=np.float64)
    needed = related_needed(
        threshold, day, days, dated, params, centred=centred, same_language=same, originals=originals
    )
    margins = np.array([n.similarity for n in neighbours], dtype=np.float64) - needed
    hits = np.flatnonzero(margins >= 0.0)
    if hits.size:
        return Relation(related=neighbours[int(hits[0])].story_id)
    best = int(np.argmax(margins))
    if centred and params.unconfirmed_margin > 0.0 and margins[best] >= -params.unconfirmed_margin:
        return Relation(near=neighbours[best].story_id)
    return Relation()


def related_needed(
    threshold: float,
    day: int | None,
    days: NDArray[np.float64],
    dated: NDArray[np.bool_],
    params: ClusterParams,
    *,
    centred: bool,
    same_language: NDArray[np.bool_] | None = None,
    originals: NDArray[np.float64] | None = None,
) -> NDArray[np.float64]:
    """The cosine an article published on ``day`` (None: undated) needs to relate to each of the articles
    published on ``days`` (``dated[i]`` False: undated, ``days[i]`` ignored): ``inf`` where both are dated
    more than ``date_gate_days`` apart. For centred cosines, an article in the same determined language
    (``same_language[i]``) needs ``same_language_margin`` more, as for joining (one language's reports sit
    closer together, and one language's news holds many stories: on the 2021 AllSides roundups the rule
    without it took the alert of three new stories in four); an article in another language needs less by
    ``related_date_bonus`` when both are dated, by the full bonus the same day and fading out at
    ``date_gate_days + 1`` days (dates are evidence across languages, as :func:`date_bonus`).

    The similarity is that of the older story's *most* similar article, and the best of n articles of a
    different event rises with n: on the multilingual tuning set (centred cosines, other languages) its
    median is −0.02 for one article and 0.11 for sixteen, and the share at or above a same-day bar of 0.15
    grows 6 % → 33 %, while the bonus adds less and less for the same event (the best of sixteen of its
    articles reaches 0.25 in 94 % of cases without it). So with ``originals[i]`` (the original articles of
    each older story) above ``related_date_bonus_articles``, the bonus is multiplied by that number /
    ``originals[i]`` (docs/clustering.md, "The related rule and big stories"): the older story's recent
    original articles that the date gate lets compete, of which the neighbour is the best. The one rule of
    :func:`relate` and :func:`warmup_review`; the warm-up review passes no counts (its stories are a few
    articles each) and keeps the bonus whole."""
    needed = np.full(days.shape, threshold, dtype=np.float64)
    same = np.zeros(days.shape, dtype=bool) if same_language is None else same_language
    if centred:
        needed = np.where(same, threshold + params.same_language_margin, needed)
    if day is None:
        return needed
    gap = np.abs(days - day)
    if centred:
        fade = np.clip(1.0 - gap / (params.date_gate_days + 1.0), 0.0, None)
        bonus = np.full(days.shape, params.related_date_bonus, dtype=np.float64)
        if originals is not None and params.related_date_bonus_articles > 0.0:
            bonus = bonus * np.minimum(1.0, params.related_date_bonus_articles / np.maximum(originals, 1.0))
        needed = np.where(dated & ~same, threshold - bonus * fade, needed)
    return np.where(dated & (gap > params.date_gate_days), np.inf, needed)


def _in_language(lang: str, langs: Sequence[str] | NDArray[np.str_]) -> NDArray[np.bool_]:
    """Which of ``langs`` is ``lang``, a determined language (all False for an undetermined one)."""
    if lang == UNDETERMINED_LANG:
        return np.zeros(len(langs), dtype=bool)
    same: NDArray[np.bool_] = np.asarray(langs) == lang
    return same


@dataclass(frozen=True, slots=True)
class WarmupRows:
    """The warm-up's original articles, oldest first, as :func:`warmup_review` reads them: each one's
    story, its centred vector (unit rows), publication day (None: undated) and language."""

    stories: list[str]
    vectors: NDArray[np.float32]
    days: list[int | None]
    langs: list[str]


@dataclass(frozen=True, slots=True)
class WarmupReview:
    """What :func:`warmup_review` found: ``links`` ``{story: the oldest story of its group}`` for every
    warm-up story that links to an older one, ``near`` ``{story: the older story it nearly relates to}``
    for a story that links to none and whose first article nearly relates (:class:`Relation`)."""

    links: dict[str, str]
    near: dict[str, str]


def warmup_review(rows: WarmupRows, params: ClusterParams) -> WarmupReview:
    """Which stories of the warm-up are probably about one event, judged once the centre is known.

    During the warm-up stories are opened on raw cosines, where two reports of one event in two languages
    and two events of one topic look alike, so one event's first reports open several stories. When the
    warm-up ends the stage reads them again (``rows``, :class:`WarmupRows`). Two articles of different
    stories link under the rule of :func:`relate` (``related_threshold``, the one-language margin, the date
    gate and ``related_date_bonus``: :func:`related_needed`), and links chain (single link); a
    story that links to none is *near* the older story its first article falls short of by less than
    ``unconfirmed_margin``, as a new story after the warm-up is.

    Empty when related stories are off or the model is English-only.
    """
    stories, vectors, days = rows.stories, rows.vectors, rows.days
    langs = np.array(rows.langs)
    if MULTILINGUAL not in params.model_languages or params.related_threshold > 1.0 or len(stories) < 2:
        return WarmupReview(links={}, near={})
    first_row = {story: row for row, story in reversed(list(enumerate(stories)))}
    story_of = np.array([first_row[s] for s in stories])  # each row's story, by the story's first row
    dated = np.array([d is not None for d in days])
    day = np.array([d if d is not None else 0 for d in days], dtype=np.float64)
    root: dict[int, int] = {}
    nearest: dict[int, int] = {}  # a story's first row -> the first row of the story it nearly relates to

    def find(story: int) -> int:
        while root.get(story, story) != story:
            story = root[story]
        return story

    # row by row against the rows before it (memory linear in the rows: a long warm-up may hold thousands)
    for a in range(1, len(stories)):
        sims = vectors[:a] @ vectors[a]
        same = _in_language(str(langs[a]), langs[:a])
        needed = related_needed(
            params.related_threshold,
            int(day[a]) if dated[a] else None,
            day[:a],
            dated[:a],
            params,
            centred=True,
            same_language=same,
        )
        other = story_of[:a] != story_of[a]
        margins = np.where(other, sims - needed, -np.inf)
        for b in np.flatnonzero(margins >= 0.0).tolist():
            ra, rb = find(int(story_of[a])), find(int(story_of[b]))
            if ra != rb:
                root[max(ra, rb)] = min(ra, rb)  # the story seen first is the group's
        best = int(np.argmax(margins))
        if story_of[a] == a and params.unconfirmed_margin > 0.0 and -params.unconfirmed_margin <= margins[best] < 0.0:
            nearest[a] = int(story_of[best])
    links = {stories[row]: stories[find(row)] for row in first_row.values() if find(row) != row}
    near = {stories[a]: stories[find(b)] for a, b in nearest.items() if find(a) == a and find(b) != a}
    return WarmupReview(links=links, near=near)
