"""Persisted story state of the clustering stage (SQLite in the data directory).

What it keeps, so that a restart continues the same stories and a re-delivered article gets the
same answer (the bus is at-least-once):

- ``stories``: each story's counts, times, sources, languages, anchors, event kinds and its centroid
  as an (unnormalised) vector sum, overall and per language (``story_langs``);
- ``decisions``: article id -> story id, role, status, duplicate_of (first decision wins);
- ``signatures``: the MinHash of every original (non-duplicate) article, to rebuild the
  near-duplicate LSH index on start (only those within ``duplicate_window_days``);
- ``story_anchors`` + ``anchor_df``: an inverted index from specific anchors (dates, figures,
  entities) to stories, for finding a dormant story an anniversary piece re-tells;
- ``outbox``: the records a batch must publish, written in the same transaction as its decisions
  and deleted once the bus acknowledged them (nothing is lost between a commit and a crash);
- ``recent_articles``: the vectors of the last ``RECENT_ARTICLES`` originals with their story and
  publication day, for the related story of a new one (``stream.clustering.related_story``);
- ``held_events``: the story events of the warm-up the stage holds back until the centre is known
  (``stream.assign_stage``, "The warm-up hold");
- ``center`` (table ``vectors``): the running mean of recent article vectors that clustering centres
  cosines on, ``lang:<code>`` the running mean of each language's articles (the language offsets
  :meth:`StoryState.neutral` takes away), and ``anchor_seen``: how many recent articles carry each
  anchor (decayed counts), for the rarity of anchors; with the merge-pass counter in ``meta``,
  everything a decision depends on is durable, so a run killed anywhere and resumed decides as an uninterrupted one;
- the embedding model's name and dimension (``meta``): a state built with one model refuses another.

Candidate lookup is windowed: the stories whose ``[first_seen - W, last_seen + W]`` interval holds
the article's time (``W = cluster_window_days``), through an index on ``last_seen``, so the cost per
article follows the number of recent stories, not the corpus. Dormant stories come from the anchor
index, whose posting lists are bounded (anchors in more than ``MAX_ANCHOR_DF`` stories are not
specific and are not used for retrieval).

Writes happen inside one open transaction per batch: :meth:`StoryState.commit` makes them durable,
:meth:`StoryState.rollback` forgets them and the in-memory caches built on them.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import math
import sqlite3
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from stream import json_codec
from stream.anchors import SPECIFIC_KINDS, anchor_kind, anchor_weight
from stream.clustering import REACH_MIN_DISTANCE, UNDETERMINED_LANG, Candidate, Neighbour, Reach, WarmupRows
from stream.embedding import l2_normalise
from stream.errors import StoryStateError
from stream.near_duplicate import NearDuplicateIndex, signature_bytes, signature_from_bytes
from stream.story import Story
from stream.word_evidence import Terms, TermWindow

STATE_FILE = "stories.sqlite3"
SCHEMA_VERSION = 3  # 2: the dated range of each story; 3: the language and terms of recent articles
CENTER_WINDOW = 500  # articles the running mean vector is averaged over (an EMA of that span)
# Articles before the running mean is used to centre cosines (before: raw cosines, the warm-up). The mean of
# 20 articles of the tuning set is within cosine 0.95 of the mean of all 297 (5: 0.87). A shorter warm-up
# opens fewer stories at a fresh start (half A: 2.17 alerts per event at 20, 1.67 at 5, same B-cubed F1),
# but a centre of a few articles is noise: on the 11-article demo web it merged three developments of one
# week (docs/clustering.md).
CENTER_MIN_ARTICLES = 20
# ... and stories: a mean of articles that all report one event is that event, and centring on it would
# erase the very signal that holds its next reports together (a burst of one story at a fresh start).
CENTER_MIN_STORIES = 3
# Each language sits at its own offset in a multilingual model's space: on the tuning set a same-language pair
# of two events scores higher than one event in two languages far too often (area under the same-story ROC of
# centred cosines 0.925 with one centre, 0.954 with a centre per language). An article is compared after its
# language's offset (its language's running mean minus the overall one) is taken away; the offset is shrunk
# by n / (n + LANG_CENTER_PRIOR) while a language has few articles (docs/clustering.md).
LANG_CENTER_PRIOR = 5.0
RARITY_PRIOR = 20.0  # articles without the anchor assumed before any was seen: two early articles sharing
# a date do not make it common (2 of 2 -> rarity 0.65, 200 of 200 -> 0.02, 20 of 2000 -> 0.60)
RARITY_HALF_LIFE = 2000.0  # articles after which an anchor's count in the rarity table weighs half
MAX_DATED_DAYS = 366  # distinct publication days kept per story for the date gate
CONTENT_CANDIDATES = 12  # stories found by content alone (undated articles, undated stories)
CONTENT_STORIES = 20000  # live stories kept in the in-memory content index (the most recent ones)
LANG_BITS = 63  # languages the content index tells apart for the candidate bound (int64 masks, sign bit unused)
MAX_STORY_ANCHORS = 96  # anchors a story is matched by: its most frequent ones (bounds matching cost)
MAX_ANCHOR_DF = 200  # an anchor in more stories than this is not specific: not used to find dormant stories
DORMANT_POSTINGS = 32  # most recent stories read per anchor when looking for dormant stories
MAX_DORMANT_CANDIDATES = 8  # dormant stories scored per article (those sharing the most anchors)
# Story records kept in memory (LRU), the rest read back from SQLite (~55 us per miss: the row, then its candidate
# rebuilt). A cached story with its candidate is ~11-13 KB (512 dims, 28 anchors): 4096 is ~50 MB when full. 2048
# thrashed on a stream whose articles' windows together hold more live stories than that (an archive ingested out
# of date order; bench.distributed_load's dates cycle through a year): ~15 misses per article, ~0.9 ms.
CACHE_STORIES = 4096
MAX_SOURCES = 256  # distinct sources listed per story (the count stays exact)
ANCHOR_CACHE_MAX = 50_000  # anchor counts kept in memory; past it, the half seen longest ago is dropped
RECENT_ARTICLES = 5000  # original articles whose vectors are kept for related stories (single link)
RELATED_NEIGHBOURS = 8  # nearest recent articles of other stories a new story is compared with
NEIGHBOUR_ROWS = 64  # recent articles sorted first when looking for them (all are, when these hold too few stories)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS stories (
    id TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    first_seen REAL NOT NULL,
    last_seen REAL NOT NULL,
    article_count INTEGER NOT NULL,
    source_count INTEGER NOT NULL,
    first_article_id TEXT NOT NULL,
    sources TEXT NOT NULL,
    languages TEXT NOT NULL,
    anchors TEXT NOT NULL,
    kinds TEXT NOT NULL,
    vec_sum BLOB NOT NULL,
    vec_count INTEGER NOT NULL,
    merged_into TEXT,
    dated_first REAL,
    dated_last REAL,
    dated_days TEXT
);
CREATE INDEX IF NOT EXISTS stories_last_seen ON stories (last_seen);
CREATE TABLE IF NOT EXISTS story_langs (
    story_id TEXT NOT NULL, lang TEXT NOT NULL, vec_sum BLOB NOT NULL, vec_count INTEGER NOT NULL,
    PRIMARY KEY (story_id, lang)
);
CREATE TABLE IF NOT EXISTS decisions (
    article_id TEXT PRIMARY KEY,
    story_id TEXT NOT NULL,
    role TEXT NOT NULL,
    status TEXT NOT NULL,
    duplicate_of TEXT,
    at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS signatures (
    article_id TEXT PRIMARY KEY, sha TEXT NOT NULL, sig BLOB, at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS signatures_at ON signatures (at);
CREATE TABLE IF NOT EXISTS story_anchors (
    anchor TEXT NOT NULL, story_id TEXT NOT NULL, PRIMARY KEY (anchor, story_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS anchor_df (anchor TEXT PRIMARY KEY, df INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS vectors (name TEXT PRIMARY KEY, vec BLOB NOT NULL, n INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS anchor_seen (anchor TEXT PRIMARY KEY, count REAL NOT NULL, at_n INTEGER NOT NULL)
    WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS recent_articles (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, article_id TEXT NOT NULL UNIQUE, story_id TEXT NOT NULL, day INTEGER,
    vec BLOB NOT NULL, lang TEXT, terms TEXT
);
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL,
    headers TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS held_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, held_at REAL NOT NULL, story_id TEXT NOT NULL, value BLOB NOT NULL
);
"""


def story_id_for(first_article_id: str) -> str:
    """Deterministic story id from the first article's id (a replayed batch makes the same story)."""
    return hashlib.sha256(f"story:{first_article_id}".encode()).hexdigest()[:32]


def _ts(value: datetime) -> float:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


def _dt(value: float) -> datetime:
    return datetime.fromtimestamp(value, tz=UTC)


def _vec_bytes(vec: NDArray[np.float32]) -> bytes:
    return np.asarray(vec, dtype="<f4").tobytes()


def _vec(raw: bytes) -> NDArray[np.float32]:
    out: NDArray[np.float32] = np.frombuffer(raw, dtype="<f4").astype(np.float32)
    return out


def _running_mean(mean: NDArray[np.float32] | None, vector: NDArray[np.float32], n: int) -> NDArray[np.float32]:
    """The mean of ``n`` vectors from that of the ``n - 1`` before (an average over the last
    ``CENTER_WINDOW``, exponentially weighted, once ``n`` passes it)."""
    if mean is None:
        return np.array(vector, dtype=np.float32)
    out: NDArray[np.float32] = (mean + (vector - mean) / min(n, CENTER_WINDOW)).astype(np.float32)
    return out


def _unit(vec: NDArray[np.float32]) -> NDArray[np.float32]:
    row: NDArray[np.float32] = l2_normalise(vec.reshape(1, -1))[0]
    return row


@dataclass(slots=True)
class StoryRecord:
    """A story's mutable state while the stage works on it."""

    id: str
    title: str
    first_seen: datetime
    last_seen: datetime
    article_count: int
    source_count: int
    first_article_id: str
    sources: list[str]
    languages: list[str]
    anchors: Counter[str]
    kinds: frozenset[str]
    vec_sum: NDArray[np.float32]
    vec_count: int
    lang_sums: dict[str, tuple[NDArray[np.float32], int]] = field(default_factory=dict)
    merged_into: str | None = None
    dated_first: datetime | None = None  # publication dates of its dated articles (None: none dated)
    dated_last: datetime | None = None
    dated_days: list[int] = field(default_factory=list)  # distinct publication days (ordinals), sorted
    _candidate: Candidate | None = None  # None: the story changed since it was last built (to_candidate)
    _candidate_dormant: Candidate | None = None  # the same with dormant=True, built from _candidate
    _langs_changed: set[str] = field(default_factory=set)  # lang_sums to write at the next save
    _lang_units: dict[str, NDArray[np.float32]] = field(default_factory=dict)  # unit lang_sums, by language

    def mean(self) -> NDArray[np.float32]:
        """Plain mean of the article vectors (not normalised; clustering centres it). For a story of one vector
        it is ``vec_sum`` itself (dividing by 1 is exact), shared rather than copied: most stories have one
        article, and a cached story holds its mean in its candidate. Neither is ever changed in place
        (``add_article`` and ``merge`` assign a new sum)."""
        if self.vec_count <= 1 and self.vec_sum.dtype == np.float32:
            return self.vec_sum
        out: NDArray[np.float32] = (self.vec_sum / max(1, self.vec_count)).astype(np.float32)
        return out

    def add_date(self, at: datetime, *, dated: bool) -> None:
        """Widen the dated range with a publication date (an undated article's time is not one)."""
        if not dated:
            return
        self.dated_first = at if self.dated_first is None else min(self.dated_first, at)
        self.dated_last = at if self.dated_last is None else max(self.dated_last, at)
        day = at.toordinal()
        at_index = bisect.bisect_left(self.dated_days, day)
        if (at_index == len(self.dated_days) or self.dated_days[at_index] != day) and len(
            self.dated_days
        ) < MAX_DATED_DAYS:
            self.dated_days.insert(at_index, day)

    def centroid(self) -> NDArray[np.float32]:
        return _unit(self.vec_sum)

    def to_story(self, *, with_centroid: bool = False) -> Story:
        return Story(
            id=self.id,
            title=self.title,
            first_seen=self.first_seen,
            last_seen=self.last_seen,
            article_count=self.article_count,
            source_count=self.source_count,
            languages=tuple(self.languages),
            sources=tuple(self.sources),
            first_article_id=self.first_article_id,
            centroid=tuple(float(x) for x in self.centroid()) if with_centroid else None,
            merged_into=self.merged_into,
        )

    def _lang_centroids(self) -> dict[str, NDArray[np.float32]]:
        """Unit vector of each language's sum, recomputed only for the languages that changed."""
        for lang, (vec_sum, _) in self.lang_sums.items():
            if lang not in self._lang_units:
                self._lang_units[lang] = _unit(vec_sum)
        return {lang: self._lang_units[lang] for lang in self.lang_sums}

    def to_candidate(self, *, dormant: bool) -> Candidate:
        """The story as clustering sees it, built once per change of the story (``_candidate`` = None marks
        a change) and kept in both forms: a story is active for one article and found by content only
        (dormant) for the next one, and rebuilding it on every flip cost ~15 builds per article."""
        if self._candidate is None:
            self._candidate_dormant = None
            top = frozenset(a for a, _ in self.anchors.most_common(MAX_STORY_ANCHORS))
            self._candidate = Candidate(
                story_id=self.id,
                centroid=self.centroid(),
                mean=self.mean(),
                dated_days=tuple(self.dated_days),
                lang_centroids=self._lang_centroids(),
                anchors=top,
                kinds=self.kinds,
                languages=frozenset(self.languages),
                first_seen=self.first_seen,
                last_seen=self.last_seen,
                article_count=self.article_count,
                dormant=False,
            )
        if not dormant:
            return self._candidate
        if self._candidate_dormant is None:
            self._candidate_dormant = replace(self._candidate, dormant=True)
        return self._candidate_dormant


class _ContentIndex:
    """Story mean vectors in one matrix, for finding the stories closest to an article by content.

    Holds at most ``CONTENT_STORIES`` stories (the least recently updated leave first); one
    matrix-vector product per lookup."""

    def __init__(self) -> None:
        self._ids: list[str | None] = []
        self._rows: OrderedDict[str, int] = OrderedDict()
        self._free: list[int] = []
        self._matrix = np.zeros((0, 0), dtype=np.float32)
        self._norms = np.zeros(0, dtype=np.float64)  # each row's mean before it was made a unit vector
        # what the candidate bound reads of each story (stream.clustering.Reach): its languages, one bit each
        # (the last bit: any language past the others), and whether it has a dated article
        self._lang_bits: dict[str, int] = {}
        self._langs = np.zeros(0, dtype=np.int64)
        self._dated = np.zeros(0, dtype=bool)
        self._used = np.zeros(0, dtype=bool)  # rows holding a story (the others are free, zero)
        self._high = 0  # rows past this were never used: lookups leave them out (the buffer grows by doubling)

    def put(
        self, story_id: str, mean: NDArray[np.float32], languages: Iterable[str] = (), *, dated: bool = False
    ) -> None:
        row = self._rows.get(story_id)
        if row is None:
            if len(self._rows) >= CONTENT_STORIES:
                _, old_row = self._rows.popitem(last=False)
                self._ids[old_row] = None
                self._used[old_row] = False
                self._free.append(old_row)
            row = self._free.pop() if self._free else self._grow(mean.shape[0])
            self._ids[row] = story_id
            self._used[row] = True
            self._high = max(self._high, row + 1)
        self._rows[story_id] = row
        self._rows.move_to_end(story_id)
        self._matrix[row] = _unit(mean)
        self._norms[row] = math.sqrt(float(np.dot(mean, mean)))
        self._langs[row] = self._mask(languages)
        self._dated[row] = dated

    def _bit(self, lang: str) -> int:
        bit = self._lang_bits.get(lang)
        if bit is None:
            bit = min(len(self._lang_bits), LANG_BITS - 1)  # the last bit is shared by every later language
            self._lang_bits[lang] = bit
        return bit

    def _mask(self, languages: Iterable[str]) -> int:
        mask = 0
        for lang in languages:
            mask |= 1 << self._bit(lang)
        return mask

    def _grow(self, dim: int) -> int:
        n = self._matrix.shape[0]
        bigger = np.zeros((max(64, n * 2), dim), dtype=np.float32)
        if n:
            bigger[:n] = self._matrix
        self._matrix = bigger
        used = np.zeros(bigger.shape[0], dtype=bool)
        used[:n] = self._used
        self._used = used
        norms = np.zeros(bigger.shape[0], dtype=np.float64)
        norms[:n] = self._norms
        self._norms = norms
        langs = np.zeros(bigger.shape[0], dtype=np.int64)
        langs[:n] = self._langs
        self._langs = langs
        dated = np.zeros(bigger.shape[0], dtype=bool)
        dated[:n] = self._dated
        self._dated = dated
        self._ids.extend([None] * (bigger.shape[0] - n))
        self._free.extend(range(bigger.shape[0] - 1, n, -1))
        return n

    def drop(self, story_id: str) -> None:
        row = self._rows.pop(story_id, None)
        if row is not None:
            self._ids[row] = None
            self._matrix[row] = 0.0
            self._norms[row] = 0.0
            self._used[row] = False
            self._free.append(row)

    def out_of_reach(self, story_ids: Sequence[str], vector: NDArray[np.float32], reach: Reach) -> NDArray[np.bool_]:
        """Which of ``story_ids`` are out of ``reach`` of an article with ``vector`` (``stream.clustering.Reach``).
        Their cosines, centred on ``reach.center``, from ``mean = norm * unit``: ``(mean - c) . u = norm
        (unit . u) - c . u`` and ``|mean - c|^2 = norm^2 - 2 norm (unit . c) + |c|^2``, two matrix-vector
        products over those stories' rows instead of centring each mean. A story this index does not hold,
        or whose mean lies within ``REACH_MIN_DISTANCE`` of the centre, is never out."""
        rows = np.fromiter((self._rows.get(s, -1) for s in story_ids), dtype=np.intp, count=len(story_ids))
        out = np.zeros(len(story_ids), dtype=bool)
        held = np.flatnonzero(rows >= 0)
        if not held.size or self._matrix.shape[1] != vector.shape[0]:
            return out
        at = rows[held]
        units = self._matrix[at]
        norms = self._norms[at]
        center = np.asarray(reach.center, dtype=np.float32)
        unit = _unit(np.asarray(vector, dtype=np.float32) - center)
        along = (units @ unit).astype(np.float64)
        toward = (units @ center).astype(np.float64)
        square = norms * norms - 2.0 * norms * toward + float(np.dot(center, center))
        far = square >= REACH_MIN_DISTANCE * REACH_MIN_DISTANCE
        cos = (norms * along - float(np.dot(center, unit))) / np.sqrt(np.where(far, square, 1.0))
        langs = self._langs[at]
        bit = self._lang_bits.get(reach.lang)
        if bit is None:  # a language no story here has: in none of them, all in it for none
            has_lang = np.zeros(at.shape, dtype=bool)
            one_lang = has_lang
        elif bit == LANG_BITS - 1:  # shared by several languages: perhaps in it, never surely all in it
            has_lang = (langs & (1 << bit)) != 0
            one_lang = np.zeros(at.shape, dtype=bool)
        else:
            has_lang = (langs & (1 << bit)) != 0
            one_lang = langs == (1 << bit) if reach.lang != UNDETERMINED_LANG else np.zeros(at.shape, dtype=bool)
        ids = [story_ids[int(i)] for i in held] if reach.name_bounds is not None and reach.name_weight > 0 else ()
        out[held[far & reach.out(cos, has_lang, one_lang, self._dated[at], ids)]] = True
        return out

    def nearest(self, vector: NDArray[np.float32], k: int) -> list[str]:
        """The ``k`` stories closest to ``vector`` (a unit vector), closest first; ties keep row order."""
        return self.nearest_many(vector[None, :], k)[0]

    def nearest_many(self, vectors: NDArray[np.float32], k: int) -> list[list[str]]:
        """:meth:`nearest` for each row of ``vectors``, from one matrix product (a merge pass asks for the
        neighbours of every story that took an article since the last one)."""
        if not self._rows or self._matrix.shape[1] != vectors.shape[1]:
            return [[] for _ in range(vectors.shape[0])]
        # free rows rank last: the k best rows are the k best stories (free rows used to be ranked too)
        high = self._high
        all_sims = np.where(self._used[:high, None], self._matrix[:high] @ vectors.T, -np.inf)
        want = min(k, len(self._rows))
        n = all_sims.shape[0]
        found: list[list[str]] = []
        for sims in all_sims.T:
            cut = np.partition(sims, n - want)[n - want] if want < n else None
            if cut is not None and np.isfinite(cut):
                # the first ``want`` rows of a stable sort by similarity, without sorting them all: every
                # row at or above the want-th best value, in row order, stable-sorted (ties keep row order)
                rows = np.flatnonzero(sims >= cut)
                top = rows[np.argsort(-sims[rows], kind="stable")][:want]
            else:
                top = np.argsort(-sims, kind="stable")[:want]
            found.append([story_id for row in top if (story_id := self._ids[int(row)]) is not None][:k])
        return found


class _RecentArticles:
    """The last ``RECENT_ARTICLES`` original articles (vectors, stories, days) in one matrix.

    The vectors live in a buffer with spare rows (doubled when full): adding one is a row copy, not a copy
    of the whole matrix (at 5,000 articles that was 10 MB copied per article)."""

    def __init__(
        self, rows: list[tuple[int, str, str, int | None, bytes, str | None]], resolve: Callable[[str], str]
    ) -> None:
        self.seqs = [r[0] for r in rows]
        self.articles = [r[1] for r in rows]
        self.stories = [r[2] for r in rows]
        self.days: list[int | None] = [r[3] for r in rows]
        self.langs = [r[5] or UNDETERMINED_LANG for r in rows]  # a row of schema 1 or 2 has none
        self._buf = np.stack([_vec(r[4]) for r in rows]) if rows else np.zeros((0, 0), dtype=np.float32)
        self._sq = np.einsum("ij,ij->i", self._buf, self._buf)  # squared norms of the rows, same buffer layout
        # the days as floats (NaN: undated), same buffer layout: the date gate reads them without a Python loop
        self._days = np.array([math.nan if d is None else d for d in self.days], dtype=np.float64)
        # each row's story (through merges) as a number, same buffer layout: how many of a story's articles are
        # among the recent ones is counted without a Python loop (relabelled when stories merge)
        self._code: dict[str, int] = {}
        live = {story: resolve(story) for story in dict.fromkeys(self.stories)}
        self._codes = np.array([self._code_of(live[story]) for story in self.stories], dtype=np.int64)
        self._n = len(rows)

    def _code_of(self, story_id: str) -> int:
        return self._code.setdefault(story_id, len(self._code))

    def count(self, story_id: str, rows: NDArray[np.bool_]) -> int:
        """How many of the rows marked in ``rows`` (one flag per row) are articles of the live story
        ``story_id`` (its own and those of the stories merged into it)."""
        code = self._code.get(story_id)
        return 0 if code is None else int(np.count_nonzero(rows & (self._codes[: self._n] == code)))

    def relabel(self, absorbed: str, survivor: str) -> None:
        """``absorbed`` was merged into ``survivor``: its rows count for the survivor from now on."""
        code = self._code.pop(absorbed, None)
        if code is None:
            return
        if survivor not in self._code:
            self._code[survivor] = code  # the survivor had no recent article: its rows keep the number
            return
        codes = self._codes[: self._n]
        codes[codes == code] = self._code[survivor]

    @property
    def matrix(self) -> NDArray[np.float32]:
        """One row per recent article, oldest first (a view of the buffer)."""
        return self._buf[: self._n]

    def day_values(self, undated: float) -> NDArray[np.float64]:
        """Each row's publication day as a float, ``undated`` for an undated article."""
        days = self._days[: self._n]
        out: NDArray[np.float64] = np.where(np.isnan(days), undated, days)
        return out

    def centred_cosines(self, vector: NDArray[np.float32], center: NDArray[np.float32]) -> NDArray[np.float32]:
        """Cosine of ``vector - center`` with each row minus ``center``, without building the centred matrix
        (two matrix-vector products: ``|m - c|^2 = |m|^2 - 2 m.c + |c|^2``; it was a 10 MB copy per call)."""
        matrix = self.matrix
        unit = _unit(np.asarray(vector, dtype=np.float32) - center)
        sq = self._sq[: self._n] - 2.0 * (matrix @ center) + float(center @ center)
        out: NDArray[np.float32] = ((matrix @ unit - float(center @ unit)) / np.sqrt(np.maximum(sq, 1e-24))).astype(
            np.float32, copy=False
        )
        return out

    def add(
        self, seq: int, article_id: str, story_id: str, day: int | None, vector: NDArray[np.float32], lang: str
    ) -> None:
        row = np.asarray(vector, dtype=np.float32)
        if self._n == 0 and self._buf.shape[1:] != row.shape:
            self._buf = np.zeros((0, row.shape[0]), dtype=np.float32)
        if self._n == self._buf.shape[0]:
            rows = min(max(64, 2 * self._n), RECENT_ARTICLES + RECENT_ARTICLES // 10 + 1)  # the most it holds
            bigger = np.empty((rows, self._buf.shape[1]), dtype=np.float32)
            bigger[: self._n] = self._buf[: self._n]
            self._buf = bigger
            sq = np.empty(rows, dtype=np.float32)
            sq[: self._n] = self._sq[: self._n]
            self._sq = sq
            days = np.empty(rows, dtype=np.float64)
            days[: self._n] = self._days[: self._n]
            self._days = days
            codes = np.empty(rows, dtype=np.int64)
            codes[: self._n] = self._codes[: self._n]
            self._codes = codes
        self._buf[self._n] = row
        self._sq[self._n] = row @ row
        self._days[self._n] = math.nan if day is None else day
        self._codes[self._n] = self._code_of(story_id)
        self._n += 1
        self.seqs.append(seq)
        self.articles.append(article_id)
        self.stories.append(story_id)
        self.days.append(day)
        self.langs.append(lang)
        if len(self.seqs) > RECENT_ARTICLES + RECENT_ARTICLES // 10:  # trim in steps, not per article
            cut = len(self.seqs) - RECENT_ARTICLES
            del self.seqs[:cut], self.articles[:cut], self.stories[:cut], self.days[:cut], self.langs[:cut]
            self._buf[: self._n - cut] = self._buf[cut : self._n].copy()
            self._sq[: self._n - cut] = self._sq[cut : self._n].copy()
            self._days[: self._n - cut] = self._days[cut : self._n].copy()
            self._codes[: self._n - cut] = self._codes[cut : self._n].copy()
            self._n -= cut


class _ActiveSpans:
    """The ``[first_seen, last_seen]`` span of every live story in arrays, for :meth:`StoryState.active_ids`
    without a SQL range scan per article (it read ~300 rows per article from the ``last_seen`` index).

    Answers in the order of that scan, ``last_seen`` then ``rowid``: ``seq`` stands for the rowid (read
    from the table when built, then one past the largest for each new story, as SQLite allocates them),
    so candidates, and any tie among them, come in the same order as before."""

    def __init__(self, rows: list[tuple[int, str, float, float]]) -> None:
        self._next_seq = 0
        self._fill(rows)

    def _fill(self, rows: list[tuple[int, str, float, float]]) -> None:
        self._ids: list[str] = []
        self._at: dict[str, int] = {}
        size = max(64, 2 * len(rows))
        self._first = np.full(size, np.inf)
        self._last = np.full(size, -np.inf)
        self._seq = np.zeros(size, dtype=np.int64)
        self._dead = 0
        for seq, story_id, first, last in sorted(rows):
            self._append(story_id, first, last, seq)

    def _append(self, story_id: str, first: float, last: float, seq: int) -> None:
        n = len(self._ids)
        if n == self._first.shape[0]:
            self._first = np.concatenate([self._first, np.full(n, np.inf)])
            self._last = np.concatenate([self._last, np.full(n, -np.inf)])
            self._seq = np.concatenate([self._seq, np.zeros(n, dtype=np.int64)])
        self._ids.append(story_id)
        self._at[story_id] = n
        self._first[n], self._last[n], self._seq[n] = first, last, seq
        self._next_seq = max(self._next_seq, seq + 1)

    def put(self, story_id: str, first: float, last: float) -> None:
        row = self._at.get(story_id)
        if row is None:
            self._append(story_id, first, last, self._next_seq)
        else:
            self._first[row], self._last[row] = first, last

    def drop(self, story_id: str) -> None:
        row = self._at.pop(story_id, None)
        if row is None:
            return
        self._first[row], self._last[row] = np.inf, -np.inf  # matches no window
        self._dead += 1
        if self._dead > len(self._at):  # mostly merged-away rows: compact, keeping the order
            keep = sorted(self._at.values())
            rows = [(int(self._seq[r]), self._ids[r], float(self._first[r]), float(self._last[r])) for r in keep]
            self._fill(rows)

    def overlapping(self, low: float, high: float) -> list[str]:
        """Ids of the stories with ``last >= low`` and ``first <= high``, by ``last`` then ``seq``."""
        n = len(self._ids)
        rows = np.flatnonzero((self._last[:n] >= low) & (self._first[:n] <= high))
        rows = rows[np.lexsort((self._seq[rows], self._last[rows]))]
        ids = self._ids
        return [ids[r] for r in rows.tolist()]


def _descending(values: NDArray[np.float32], first: int) -> Iterator[int]:
    """The row indices of ``values`` in the order of ``np.argsort(-values, kind="stable")`` (largest first, ties
    in row order), sorting only the ``first`` largest (and their ties) unless the caller reads past them: one
    partition instead of a full sort when, as for related-story neighbours, a few rows are enough."""
    n = values.shape[0]
    if first >= n or np.isnan(values).any():
        yield from np.argsort(-values, kind="stable").tolist()
        return
    cut = np.partition(values, n - first)[n - first]
    # every row at or above the first-th largest value (ties included) comes first in the full order, in the
    # order a stable sort gives them: the full order's prefix
    rows = np.flatnonzero(values >= cut)
    yield from rows[np.argsort(-values[rows], kind="stable")].tolist()
    yield from np.argsort(-values, kind="stable")[rows.shape[0] :].tolist()


@dataclass(frozen=True, slots=True)
class Evidence:
    """What an article's words and names say about the candidate stories (``stream.word_evidence``): the
    same-language word evidence, the name evidence across languages, and an upper bound of the name evidence of
    each story that holds one of its name keys (any other story's is 0)."""

    words: Callable[[Candidate], float]
    names: Callable[[Candidate], float]
    name_bounds: Mapping[str, float]


@dataclass(frozen=True, slots=True)
class StoredDecision:
    article_id: str
    story_id: str
    role: str  # first | duplicate | follow_up
    status: str  # first | duplicate | follow_up | clustered
    duplicate_of: str | None


@dataclass(frozen=True, slots=True)
class HeldEvent:
    """A story event of the warm-up kept back (``held_events``): ``value`` is the event as it will be
    published, ``held_at`` the wall-clock time (Unix seconds) it was held."""

    seq: int
    held_at: float
    story_id: str
    value: bytes


@dataclass(frozen=True, slots=True)
class OutboxRecord:
    seq: int
    topic: str
    key: str
    value: bytes
    headers: dict[str, str]


class StoryState:
    """Stories, decisions, duplicate signatures and the outbox in ``<data_dir>/stories.sqlite3``.

    Args:
        path: the SQLite file.
        window_days: look-back window of candidate stories (``settings.cluster_window_days``).
        duplicate_threshold, duplicate_window_days: for the near-duplicate index rebuilt from storage.

    Raises:
        StoryStateError: the file cannot be opened or was written by an unknown schema version.
    """

    def __init__(
        self,
        path: Path,
        *,
        window_days: int = 7,
        duplicate_threshold: float = 0.8,
        duplicate_window_days: int = 30,
    ) -> None:
        self.path = Path(path)
        self.window = timedelta(days=window_days)
        self.duplicate_threshold = duplicate_threshold
        self.duplicate_window_days = duplicate_window_days
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, isolation_level="DEFERRED", check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
            row = self._db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
            if row is None:
                self._db.execute("INSERT INTO meta (key, value) VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
                self._db.commit()
            elif row[0] in {"1", "2"}:
                if row[0] == "1":  # v1 -> v2: the dated range of each story (NULL: unknown, as undated)
                    self._db.execute("ALTER TABLE stories ADD COLUMN dated_first REAL")
                    self._db.execute("ALTER TABLE stories ADD COLUMN dated_last REAL")
                    self._db.execute("ALTER TABLE stories ADD COLUMN dated_days TEXT")
                # v2 -> v3: the language and terms of recent articles (NULL: none, outside the word evidence)
                self._db.execute("ALTER TABLE recent_articles ADD COLUMN lang TEXT")
                self._db.execute("ALTER TABLE recent_articles ADD COLUMN terms TEXT")
                self._db.execute("UPDATE meta SET value = ? WHERE key = 'schema'", (str(SCHEMA_VERSION),))
                self._db.commit()
            elif row[0] != str(SCHEMA_VERSION):
                raise StoryStateError(f"story state {str(self.path)!r}: schema {row[0]} is not supported")
        except sqlite3.Error as exc:
            raise StoryStateError(f"story state {str(self.path)!r} cannot be opened: {exc}") from exc
        self._cache: OrderedDict[str, StoryRecord] = OrderedDict()
        # Per-language vector sums of each story (``story_langs``) serve an English-only model, which trusts
        # cosine within one language only; a multilingual model compares story means, so the stage turns
        # them off: less memory per cached story, one query less per story read, fewer changelog rows.
        self.per_language = True
        # Writes no read of the open batch needs from SQLite, held until commit (one executemany each):
        self._new_decisions: dict[str, tuple[StoredDecision, float]] = {}  # read back by decision()
        self._new_signatures: list[tuple[str, str, bytes | None, float]] = []
        self._new_outbox: list[tuple[str, str, bytes, str]] = []
        self._new_anchor_seen: dict[str, tuple[float, int]] = {}  # the last count of each anchor wins
        self.duplicates = self._load_duplicates()
        self._load_volatile()

    def _load_volatile(self) -> None:
        """(Re)read what the in-memory decision helpers hold from what was committed."""
        self._center: NDArray[np.float32] | None = None
        self._center_n = 0
        row = self._db.execute("SELECT vec, n FROM vectors WHERE name = 'center'").fetchone()
        if row is not None:
            self._center, self._center_n = _vec(row[0]), int(row[1])
        self._lang_means: dict[str, tuple[NDArray[np.float32], int]] = {
            str(name)[5:]: (_vec(vec), int(n))
            for name, vec, n in self._db.execute("SELECT name, vec, n FROM vectors WHERE name LIKE 'lang:%'")
        }
        self._langs_seen: set[str] = set()  # language means to write at commit
        self._seen_n = int(self._meta("articles_seen", "0"))
        self._centred = self._meta("centred", "0") == "1"
        self._since_merge = int(self._meta("since_merge", "0"))
        self._touched: list[str] = json.loads(self._meta("touched", "[]"))
        self._anchor_seen: dict[str, tuple[float, int]] = {}
        self._content: _ContentIndex | None = None
        self._spans: _ActiveSpans | None = None
        self._recent: _RecentArticles | None = None
        self._words: TermWindow | None = None
        self._held_n = 0  # held events (held_events rows), kept in step by hold_event/drop_held
        self._held_oldest: float | None = None  # MIN(held_at) of them
        self._count_held()

    def _meta(self, key: str, default: str) -> str:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return default if row is None else str(row[0])

    def _set_meta(self, key: str, value: str) -> None:
        self._db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    # --- the model ---------------------------------------------------------------------------------

    def check_model(self, name: str, dim: int) -> None:
        """Record the embedding model on first use; refuse another one over stored vectors.

        Raises:
            StoryStateError: the state holds vectors of another model or dimension (the message says
                how to start afresh or re-embed).
        """
        known = self._meta("model", "")
        if not known:
            self._set_meta("model", f"{name}|{dim}")
            self.commit()
            return
        old_name, _, old_dim = known.rpartition("|")
        if (old_name, old_dim) != (name, str(dim)) and self.story_count(live_only=False):
            raise StoryStateError(
                f"story state {str(self.path)!r} holds vectors of model {old_name!r} (dim {old_dim}); the settings "
                f"ask for {name!r} (dim {dim}). Set model_name back to {old_name!r}, or start a new data directory "
                "and re-ingest (`sednaya-monitor export` then `ingest`), which re-embeds every article."
            )
        if (old_name, old_dim) != (name, str(dim)):
            self._set_meta("model", f"{name}|{dim}")
            self.commit()

    # --- the centre of the topic and the rarity of anchors ------------------------------------------

    def center(self) -> NDArray[np.float32] | None:
        """Running mean of recent article vectors, or None during the warm-up: until it averages at least
        ``CENTER_MIN_ARTICLES`` articles of at least ``CENTER_MIN_STORIES`` stories (then it stays known)."""
        if self._center is None:
            return None
        if not self._centred:
            if self._center_n < CENTER_MIN_ARTICLES or self.story_count(live_only=False) < CENTER_MIN_STORIES:
                return None
            self._centred = True  # durable with the batch (commit)
        return self._center

    def neutral(self, vector: NDArray[np.float32], lang: str) -> NDArray[np.float32]:
        """``vector`` with its language's offset taken away (unit length): the vector a multilingual model's
        article is matched by. The offset is the language's running mean minus the overall one, shrunk
        towards nothing while the language has few articles (``LANG_CENTER_PRIOR``); an undetermined
        language or a language not seen yet has none."""
        known = self._lang_means.get(lang)
        if known is None or self._center is None or lang == UNDETERMINED_LANG:
            return vector
        mean, n = known
        offset = (n / (n + LANG_CENTER_PRIOR)) * (mean - self._center)
        return _unit(np.asarray(vector, dtype=np.float32) - offset)

    def observe(self, vector: NDArray[np.float32], anchors: Iterable[str], lang: str = UNDETERMINED_LANG) -> None:
        """Count an original article (after its decision; its model vector, not :meth:`neutral`'s) in the
        centre, its language's mean and the anchor counts."""
        self._center_n += 1
        self._center = _running_mean(self._center, vector, self._center_n)
        if lang != UNDETERMINED_LANG:
            mean, n = self._lang_means.get(lang, (None, 0))
            self._lang_means[lang] = (_running_mean(mean, vector, n + 1), n + 1)
            self._langs_seen.add(lang)
        self._seen_n += 1
        for anchor in set(anchors):
            count = self._decayed(anchor) + 1.0
            self._anchor_seen[anchor] = (count, self._seen_n)
            self._new_anchor_seen[anchor] = (count, self._seen_n)

    def _decayed(self, anchor: str) -> float:
        entry = self._anchor_seen.get(anchor)
        if entry is None:
            row = self._db.execute("SELECT count, at_n FROM anchor_seen WHERE anchor = ?", (anchor,)).fetchone()
            entry = (0.0, self._seen_n) if row is None else (float(row[0]), int(row[1]))
            self._anchor_seen[anchor] = entry
        count, at_n = entry
        return float(count * 0.5 ** ((self._seen_n - at_n) / RARITY_HALF_LIFE))

    def rarity(self, anchor: str) -> float:
        """1 for an anchor no recent article has, falling towards 0 for one that every recent article has:
        ``1 - log(1 + df) / log(1 + N + RARITY_PRIOR)`` over decayed counts (``RARITY_HALF_LIFE``)."""
        seen = RARITY_HALF_LIFE / math.log(2) * (1.0 - 0.5 ** (self._seen_n / RARITY_HALF_LIFE))
        df = min(self._decayed(anchor), seen)
        return max(0.0, 1.0 - math.log1p(df) / math.log1p(seen + RARITY_PRIOR))

    @property
    def since_merge(self) -> int:
        """Originals clustered since the last merge pass (durable with the batch)."""
        return self._since_merge

    @since_merge.setter
    def since_merge(self, value: int) -> None:
        self._since_merge = value

    # --- near-duplicates ---------------------------------------------------------------------------

    def _load_duplicates(self) -> NearDuplicateIndex:
        index = NearDuplicateIndex(self.duplicate_threshold, window_days=self.duplicate_window_days)
        # Replayed in arrival order (rowid), through the same add/prune as the live index, so a restarted
        # stage holds exactly the roots the live one held (an out-of-order old root included).
        for article_id, sha, sig, at in self._db.execute(
            "SELECT article_id, sha, sig, at FROM signatures ORDER BY rowid"
        ):
            index.add(article_id, sha or None, None if sig is None else signature_from_bytes(sig), _dt(at))
        return index

    def add_original(self, article_id: str, sha: str | None, signature: object, at: datetime) -> None:
        """Record an original (first copy) for near-duplicate matching; ``signature`` is a MinHash or None."""
        from stream.minhash import MinHash

        mh = signature if isinstance(signature, MinHash) else None
        self.duplicates.add(article_id, sha, mh, at)
        # "": not hashable; INSERT OR IGNORE at commit, in this order (the index is rebuilt in rowid order)
        self._new_signatures.append((article_id, sha or "", None if mh is None else signature_bytes(mh), _ts(at)))

    # --- recent articles, for the related story of a new one -----------------------------------------

    def _recent_articles(self) -> _RecentArticles:
        if self._recent is None:
            rows = self._db.execute(
                "SELECT seq, article_id, story_id, day, vec, lang FROM recent_articles ORDER BY seq DESC LIMIT ?",
                (RECENT_ARTICLES,),
            ).fetchall()
            self._recent = _RecentArticles(rows[::-1], self.resolve)
        return self._recent

    def remember_article(
        self,
        article_id: str,
        story_id: str,
        vector: NDArray[np.float32],
        day: int | None,
        *,
        lang: str = UNDETERMINED_LANG,
        terms: Terms | None = None,
    ) -> None:
        """Keep an original article's vector, story and publication day (None: undated) among the recent;
        with its ``terms`` (``stream.word_evidence.article_terms``), it also counts in the word evidence."""
        recent = self._recent_articles()
        # the window is read back from the table when first needed: without terms and before that, no need
        words = self._word_window() if terms is not None or self._words is not None else None
        cur = self._db.execute(
            "INSERT OR IGNORE INTO recent_articles (article_id, story_id, day, vec, lang, terms) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (
                article_id,
                story_id,
                day,
                _vec_bytes(np.asarray(vector, dtype=np.float32)),
                lang,
                None if terms is None else json_codec.dumps_text(dict(terms)),
            ),
        )
        if not cur.rowcount:
            return
        seq = int(cur.lastrowid or 0)
        recent.add(seq, article_id, story_id, day, vector, lang)
        if words is not None:
            words.add(story_id, lang, terms)
        if seq % (RECENT_ARTICLES // 10) == 0:
            self._db.execute("DELETE FROM recent_articles WHERE seq <= ?", (seq - RECENT_ARTICLES,))

    def _word_window(self) -> TermWindow:
        """The word evidence's window: the terms of the last ``RECENT_ARTICLES`` recent articles (those
        remembered without terms hold their places), read back in order, so a restarted or replaying
        process counts what the live one did (the table keeps at least that many rows)."""
        if self._words is None:
            rows = self._db.execute(
                "SELECT story_id, lang, terms FROM recent_articles ORDER BY seq DESC LIMIT ?", (RECENT_ARTICLES,)
            ).fetchall()
            self._words = TermWindow(RECENT_ARTICLES, self.resolve)
            for story_id, lang, terms in reversed(rows):
                known = None if terms is None else json_codec.loads_any(terms)
                self._words.add(story_id, lang or UNDETERMINED_LANG, known)
        return self._words

    def evidence(self, terms: Terms, lang: str) -> Evidence:
        """The same-language word evidence and the name evidence across languages (``stream.name_keys``) of an
        article with ``terms`` (its words and name keys) in ``lang`` against a candidate story, weighed against
        the window as it stands."""
        words = self._word_window()
        article = words.vector(terms, lang)
        return Evidence(
            words=lambda cand: words.similarity(article, cand.story_id),
            names=lambda cand: words.name_similarity(article, cand.story_id),
            name_bounds=words.name_bounds(article),
        )

    def neighbours(
        self, vector: NDArray[np.float32], *, exclude: str = "", day: int | None = None, gate_days: float = math.inf
    ) -> list[Neighbour]:
        """The recent original articles most similar to ``vector`` (centred cosine; raw cosine while the
        centre is unknown, the warm-up), at most one per story (its most similar article), stories
        resolved through merges, ``exclude`` left out. For an article published on ``day`` (None: undated),
        articles dated more than ``gate_days`` from it are left out *before* the nearest are chosen (the
        date gate of ``stream.clustering.related_needed``): on a topic that spans years, articles of other
        events that time already rules out would otherwise fill the few places and hide the same week's."""
        center = self.center()
        recent = self._recent_articles()
        if recent.matrix.size == 0 or recent.matrix.shape[1] != vector.shape[0]:
            return []
        if center is None:
            sims = recent.matrix @ _unit(np.asarray(vector, dtype=np.float32))  # rows are unit vectors
        else:
            sims = recent.centred_cosines(vector, center)
        if day is not None and math.isfinite(gate_days):
            days = recent.day_values(float(day))  # an undated article is never ruled out by time
            sims = np.where(np.abs(days - day) > gate_days, -np.inf, sims)
        out: list[Neighbour] = []
        seen = {exclude}
        competing = sims > -np.inf  # the rows time does not rule out: a story's best is the best of these
        for row in _descending(sims, NEIGHBOUR_ROWS):
            if sims[row] == -np.inf:
                break  # the rest are ruled out by time
            story_id = self.resolve(recent.stories[int(row)])
            if story_id in seen:
                continue
            seen.add(story_id)
            out.append(
                Neighbour(
                    story_id=story_id,
                    similarity=float(sims[row]),
                    day=recent.days[int(row)],
                    lang=recent.langs[int(row)],
                    originals=max(1, recent.count(story_id, competing)),
                )
            )
            if len(out) >= RELATED_NEIGHBOURS:
                break
        return out

    def warmup_rows(self, story_ids: Iterable[str]) -> WarmupRows:
        """The recent original articles of ``story_ids`` (resolved through merges), oldest first: their
        stories, their vectors centred on the now known centre (unit rows), their publication days
        (None: undated) and languages, for :func:`stream.clustering.warmup_review`. Empty while the centre
        is unknown."""
        center = self.center()
        wanted = {self.resolve(s) for s in story_ids}
        recent = self._recent_articles()
        rows = [i for i, story in enumerate(recent.stories) if self.resolve(story) in wanted]
        if center is None or not rows or recent.matrix.shape[1] != center.shape[0]:
            return WarmupRows(stories=[], vectors=np.zeros((0, 0), dtype=np.float32), days=[], langs=[])
        diffs = recent.matrix[rows] - center
        vectors = (diffs / np.maximum(np.linalg.norm(diffs, axis=1, keepdims=True), 1e-12)).astype(np.float32)
        return WarmupRows(
            stories=[self.resolve(recent.stories[i]) for i in rows],
            vectors=vectors,
            days=[recent.days[i] for i in rows],
            langs=[recent.langs[i] for i in rows],
        )

    # --- story events held during the warm-up ----------------------------------------------------------

    def hold_event(self, story_id: str, value: bytes, held_at: float) -> None:
        """Keep a story event back, with the batch (written in its transaction, durable with it)."""
        self._db.execute(
            "INSERT INTO held_events (held_at, story_id, value) VALUES (?, ?, ?)", (held_at, story_id, value)
        )
        self._held_n += 1
        self._held_oldest = held_at if self._held_oldest is None else min(self._held_oldest, held_at)

    def held_events(self) -> list[HeldEvent]:
        """The events held back, in the order they were held."""
        rows = self._db.execute("SELECT seq, held_at, story_id, value FROM held_events ORDER BY seq").fetchall()
        return [HeldEvent(seq=int(r[0]), held_at=float(r[1]), story_id=str(r[2]), value=bytes(r[3])) for r in rows]

    def _count_held(self) -> None:
        """Read how many events are held and the oldest one's time from the table (at a (re)load and after a
        release); :meth:`hold_event` keeps both up to date in between, so the stage asks each batch for free."""
        count, oldest = self._db.execute("SELECT COUNT(*), MIN(held_at) FROM held_events").fetchone()
        self._held_n = int(count)
        self._held_oldest = None if oldest is None else float(oldest)

    def held_count(self) -> int:
        """How many story events are held back (the open batch's included)."""
        return self._held_n

    def oldest_held_at(self) -> float | None:
        """When the oldest held event was held (None: nothing is held; the open batch's included)."""
        return self._held_oldest

    def drop_held(self, up_to_seq: int) -> None:
        """Forget the held events up to ``up_to_seq`` (released: they are in the outbox), with the batch."""
        self._db.execute("DELETE FROM held_events WHERE seq <= ?", (up_to_seq,))
        self._count_held()

    # --- decisions ---------------------------------------------------------------------------------

    def decision(self, article_id: str) -> StoredDecision | None:
        pending = self._new_decisions.get(article_id)
        if pending is not None:
            return pending[0]
        row = self._db.execute(
            "SELECT article_id, story_id, role, status, duplicate_of FROM decisions WHERE article_id = ?",
            (article_id,),
        ).fetchone()
        return None if row is None else StoredDecision(*row)

    def record_decision(self, decision: StoredDecision, at: datetime) -> None:
        """Remember ``decision`` (written at commit; the first decision of an article wins)."""
        if decision.article_id not in self._new_decisions:  # callers ask decision() first: none is stored
            self._new_decisions[decision.article_id] = (decision, _ts(at))

    # --- stories -----------------------------------------------------------------------------------

    def resolve(self, story_id: str) -> str:
        """Follow ``merged_into`` to the story that absorbed ``story_id`` (itself when live)."""
        seen: set[str] = set()
        current = story_id
        while current not in seen:
            seen.add(current)
            record = self.get(current)
            if record is None or record.merged_into is None:
                return current
            current = record.merged_into
        return current

    def get(self, story_id: str) -> StoryRecord | None:
        record = self._cache.get(story_id)
        if record is not None:
            self._cache.move_to_end(story_id)
            return record
        row = self._db.execute(
            "SELECT id, title, first_seen, last_seen, article_count, source_count, first_article_id, sources, "
            "languages, anchors, kinds, vec_sum, vec_count, merged_into, dated_first, dated_last, dated_days "
            "FROM stories WHERE id = ?",
            (story_id,),
        ).fetchone()
        if row is None:
            return None
        record = StoryRecord(
            id=row[0],
            title=row[1],
            first_seen=_dt(row[2]),
            last_seen=_dt(row[3]),
            article_count=row[4],
            source_count=row[5],
            first_article_id=row[6],
            sources=json_codec.loads_any(row[7]),
            languages=json_codec.loads_any(row[8]),
            anchors=Counter(json_codec.loads_any(row[9])),
            kinds=frozenset(json_codec.loads_any(row[10])),
            vec_sum=_vec(row[11]),
            vec_count=row[12],
            merged_into=row[13],
            dated_first=None if row[14] is None else _dt(row[14]),
            dated_last=None if row[15] is None else _dt(row[15]),
            dated_days=json_codec.loads_any(row[16]) if row[16] else [],
        )
        if self.per_language:
            for lang, raw, count in self._db.execute(
                "SELECT lang, vec_sum, vec_count FROM story_langs WHERE story_id = ?", (story_id,)
            ):
                record.lang_sums[lang] = (_vec(raw), count)
        self._remember(record)
        return record

    def _remember(self, record: StoryRecord) -> None:
        self._cache[record.id] = record
        self._cache.move_to_end(record.id)
        while len(self._cache) > CACHE_STORIES:
            self._cache.popitem(last=False)

    def create(
        self,
        *,
        first_article_id: str,
        title: str,
        at: datetime,
        source: str,
        lang: str,
        vector: NDArray[np.float32],
        anchors: Iterable[str],
        kinds: frozenset[str],
        dated: bool = True,
    ) -> StoryRecord:
        """A new story made of one article (``vector`` shape ``(dim,)``; ``dated``: ``at`` is a
        publication date, not the discovery time of an undated article)."""
        record = StoryRecord(
            id=story_id_for(first_article_id),
            title=title,
            first_seen=at,
            last_seen=at,
            article_count=1,
            source_count=1,
            first_article_id=first_article_id,
            sources=[source],
            languages=[lang],
            anchors=Counter(anchors),
            kinds=kinds,
            vec_sum=np.array(vector, dtype=np.float32),
            vec_count=1,
            lang_sums={lang: (np.array(vector, dtype=np.float32), 1)} if self.per_language else {},
            _langs_changed={lang} if self.per_language else set(),
        )
        record.add_date(at, dated=dated)
        self._touch(record.id)
        self._index_anchors(record.id, record.anchors)
        self._remember(record)
        self.save(record)
        return record

    def add_article(
        self,
        record: StoryRecord,
        *,
        at: datetime,
        source: str,
        lang: str,
        vector: NDArray[np.float32] | None,
        anchors: Iterable[str] = (),
        dated: bool = True,
    ) -> None:
        """Count an article in ``record``; ``vector=None`` (a duplicate) leaves the centroid as it is."""
        record.add_date(at, dated=dated)
        record.article_count += 1
        record.first_seen = min(record.first_seen, at)
        record.last_seen = max(record.last_seen, at)
        if source not in record.sources:
            record.source_count += 1
            if len(record.sources) < MAX_SOURCES:
                record.sources.append(source)
        if lang not in record.languages:
            record.languages.append(lang)
        if vector is not None:
            self._touch(record.id)
            record.vec_sum = record.vec_sum + vector
            record.vec_count += 1
            if self.per_language:
                lang_sum, lang_count = record.lang_sums.get(lang, (np.zeros_like(vector), 0))
                record.lang_sums[lang] = (lang_sum + vector, lang_count + 1)
                record._langs_changed.add(lang)
                record._lang_units.pop(lang, None)
            new = [a for a in anchors if a not in record.anchors]
            record.anchors.update(anchors)
            self._index_anchors(record.id, new)
        record._candidate = None
        self.save(record)

    def merge(self, survivor: StoryRecord, absorbed: StoryRecord) -> None:
        """Fold ``absorbed`` into ``survivor`` (counts, centroids, anchors); ``absorbed.merged_into`` is set."""
        survivor.article_count += absorbed.article_count
        survivor.first_seen = min(survivor.first_seen, absorbed.first_seen)
        survivor.last_seen = max(survivor.last_seen, absorbed.last_seen)
        for source in absorbed.sources:
            if source not in survivor.sources:
                survivor.source_count += 1
                if len(survivor.sources) < MAX_SOURCES:
                    survivor.sources.append(source)
        for lang in absorbed.languages:
            if lang not in survivor.languages:
                survivor.languages.append(lang)
        survivor.vec_sum = survivor.vec_sum + absorbed.vec_sum
        survivor.vec_count += absorbed.vec_count
        for lang, (vec, count) in absorbed.lang_sums.items():
            mine, n = survivor.lang_sums.get(lang, (np.zeros_like(vec), 0))
            survivor.lang_sums[lang] = (mine + vec, n + count)
            survivor._langs_changed.add(lang)
            survivor._lang_units.pop(lang, None)
        new = [a for a in absorbed.anchors if a not in survivor.anchors]
        survivor.anchors.update(absorbed.anchors)
        self._index_anchors(survivor.id, new)
        if absorbed.dated_first is not None and absorbed.dated_last is not None:
            survivor.add_date(absorbed.dated_first, dated=True)
            survivor.add_date(absorbed.dated_last, dated=True)
            for day in absorbed.dated_days:
                survivor.add_date(datetime.fromordinal(day).replace(tzinfo=UTC), dated=True)
        absorbed.merged_into = survivor.id
        if self._words is not None:
            self._words.merge(absorbed.id, survivor.id)
        if self._recent is not None:
            self._recent.relabel(absorbed.id, survivor.id)
        # Every article of the absorbed story now answers with the survivor (a replay included).
        self._write_decisions()
        self._db.execute("UPDATE decisions SET story_id = ? WHERE story_id = ?", (survivor.id, absorbed.id))
        survivor._candidate = None
        absorbed._candidate = None
        self.save(survivor)
        self.save(absorbed)

    def save(self, record: StoryRecord) -> None:
        self._db.execute(
            "INSERT INTO stories (id, title, first_seen, last_seen, article_count, source_count, first_article_id, "
            "sources, languages, anchors, kinds, vec_sum, vec_count, merged_into, dated_first, dated_last, dated_days) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT(id) DO UPDATE SET title=excluded.title, first_seen=excluded.first_seen, "
            "last_seen=excluded.last_seen, article_count=excluded.article_count, "
            "source_count=excluded.source_count, sources=excluded.sources, languages=excluded.languages, "
            "anchors=excluded.anchors, kinds=excluded.kinds, vec_sum=excluded.vec_sum, "
            "vec_count=excluded.vec_count, merged_into=excluded.merged_into, dated_first=excluded.dated_first, "
            "dated_last=excluded.dated_last, dated_days=excluded.dated_days",
            (
                record.id,
                record.title,
                _ts(record.first_seen),
                _ts(record.last_seen),
                record.article_count,
                record.source_count,
                record.first_article_id,
                json_codec.dumps_text(record.sources),
                json_codec.dumps_text(record.languages),
                json_codec.dumps_text(dict(record.anchors)),
                json_codec.dumps_text(sorted(record.kinds)),
                _vec_bytes(record.vec_sum),
                record.vec_count,
                record.merged_into,
                None if record.dated_first is None else _ts(record.dated_first),
                None if record.dated_last is None else _ts(record.dated_last),
                json_codec.dumps_text(record.dated_days),
            ),
        )
        self._content_update(record)
        if record._langs_changed:
            self._db.executemany(
                "INSERT INTO story_langs (story_id, lang, vec_sum, vec_count) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(story_id, lang) DO UPDATE SET vec_sum=excluded.vec_sum, vec_count=excluded.vec_count",
                [
                    (record.id, lang, _vec_bytes(record.lang_sums[lang][0]), record.lang_sums[lang][1])
                    for lang in sorted(record._langs_changed)
                ],
            )
            record._langs_changed.clear()

    def _index_anchors(self, story_id: str, anchors: Iterable[str]) -> None:
        specific = [a for a in anchors if anchor_kind(a) in SPECIFIC_KINDS]
        if not specific:
            return
        for anchor in specific:
            cur = self._db.execute(
                "INSERT OR IGNORE INTO story_anchors (anchor, story_id) VALUES (?, ?)", (anchor, story_id)
            )
            if cur.rowcount:
                self._db.execute(
                    "INSERT INTO anchor_df (anchor, df) VALUES (?, 1) ON CONFLICT(anchor) DO UPDATE SET df = df + 1",
                    (anchor,),
                )

    # --- candidates --------------------------------------------------------------------------------

    def active_ids(self, at: datetime) -> list[str]:
        """Live stories whose ``[first_seen - W, last_seen + W]`` holds ``at``."""
        t = _ts(at)
        w = self.window.total_seconds()
        return self._active_spans().overlapping(t - w, t + w)

    def _active_spans(self) -> _ActiveSpans:
        if self._spans is None:
            self._spans = _ActiveSpans(
                self._db.execute(
                    "SELECT rowid, id, first_seen, last_seen FROM stories WHERE merged_into IS NULL"
                ).fetchall()
            )
        return self._spans

    def candidates(
        self,
        at: datetime,
        anchors: frozenset[str],
        *,
        vector: NDArray[np.float32] | None = None,
        dated: bool = True,
        reach: Reach | None = None,
    ) -> list[Candidate]:
        """Active stories around ``at``, the ``CONTENT_CANDIDATES`` stories closest to ``vector`` whatever
        their time (an undated article's time is only its discovery; the date gate of
        ``stream.clustering`` keeps a dated article away from stories dated elsewhere), and the
        dormant stories sharing the most specific anchors.

        With ``reach`` (and ``vector``), the active stories out of its reach are left out:
        ``stream.clustering.assign`` would skip them unscored (``stream.clustering.Reach``). In a
        busy window, hundreds of stories are active around an article and nearly all of them are far;
        building and scoring each one set the cost of an article. They still count in the date bonus's
        share (:meth:`active_days`)."""
        out: list[Candidate] = []
        active = set()
        ids = self.active_ids(at)
        far = None if reach is None or vector is None else self._content_index().out_of_reach(ids, vector, reach)
        for i, story_id in enumerate(ids):
            if far is not None and far[i]:
                active.add(story_id)  # not a candidate by content or by anchors either, as before
                continue
            record = self.get(story_id)
            if record is not None:
                active.add(story_id)
                out.append(record.to_candidate(dormant=False))
        if vector is not None:
            for story_id in self._content_index().nearest(vector, CONTENT_CANDIDATES):
                if story_id in active:
                    continue  # already a candidate
                record = self.get(story_id)
                if record is not None and record.merged_into is None:
                    active.add(story_id)
                    # A story dated outside a dated article's window is dormant (a follow-up needs shared
                    # specific anchors); with an undated article or an undated story, time says nothing.
                    out.append(record.to_candidate(dormant=dated and bool(record.dated_days)))
        for story_id in self._dormant_ids(at, anchors, exclude=active):
            record = self.get(story_id)
            if record is not None and record.merged_into is None:
                out.append(record.to_candidate(dormant=True))
        return out

    def active_days(self, at: datetime) -> list[list[int]]:
        """The publication days (sorted; empty: none dated) of each active story around ``at``, in the
        order of :meth:`candidates`: what ``stream.clustering.days_share`` counts."""
        return [record.dated_days for story_id in self.active_ids(at) if (record := self.get(story_id)) is not None]

    def _dormant_ids(self, at: datetime, anchors: frozenset[str], exclude: set[str]) -> list[str]:
        specific = [a for a in anchors if anchor_kind(a) in SPECIFIC_KINDS]
        if not specific:
            return []
        marks = ",".join("?" * len(specific))
        usable = {
            row[0]
            for row in self._db.execute(
                f"SELECT anchor FROM anchor_df WHERE anchor IN ({marks}) AND df <= ?", (*specific, MAX_ANCHOR_DF)
            )
        }
        t = _ts(at)
        w = self.window.total_seconds()
        shared: dict[str, float] = {}
        for anchor in usable:
            for (story_id,) in self._db.execute(
                "SELECT sa.story_id FROM story_anchors sa JOIN stories s ON s.id = sa.story_id "
                "WHERE sa.anchor = ? AND s.merged_into IS NULL AND (s.last_seen < ? OR s.first_seen > ?) "
                "ORDER BY s.last_seen DESC LIMIT ?",
                (anchor, t - w, t + w, DORMANT_POSTINGS),
            ):
                if story_id not in exclude:
                    shared[story_id] = shared.get(story_id, 0.0) + anchor_weight(anchor)
        ranked = sorted(shared.items(), key=lambda kv: (-kv[1], kv[0]))
        return [story_id for story_id, _ in ranked[:MAX_DORMANT_CANDIDATES]]

    def _content_index(self) -> _ContentIndex:
        if self._content is None:
            index = _ContentIndex()
            rows = self._db.execute(
                "SELECT id, vec_sum, vec_count, languages, dated_days FROM stories WHERE merged_into IS NULL "
                "ORDER BY last_seen DESC, id LIMIT ?",
                (CONTENT_STORIES,),
            ).fetchall()
            for story_id, raw, count, languages, days in reversed(rows):
                dated = bool(json_codec.loads_any(days)) if days else False
                index.put(story_id, _vec(raw) / max(1, count), json_codec.loads_any(languages), dated=dated)
            self._content = index
        return self._content

    def _content_update(self, record: StoryRecord) -> None:
        if self._spans is not None:
            if record.merged_into is not None:
                self._spans.drop(record.id)
            else:
                self._spans.put(record.id, _ts(record.first_seen), _ts(record.last_seen))
        if self._content is None:
            return
        if record.merged_into is not None:
            self._content.drop(record.id)
        else:
            self._content.put(record.id, record.mean(), record.languages, dated=bool(record.dated_days))

    def _touch(self, story_id: str) -> None:
        if story_id not in self._touched:
            self._touched.append(story_id)

    def merge_candidates(self, at: datetime) -> list[StoryRecord]:
        """The stories a merge pass compares: the active ones around ``at``, the stories that took an
        original since the last pass, and the ``CONTENT_CANDIDATES`` closest by content to each of
        those (whatever their time: an undated story and a dated one of one event meet here).
        Forgets the touched list (durably, with the batch)."""
        ids = dict.fromkeys(self.active_ids(at))
        touched = [(sid, r) for sid in self._touched if (r := self.get(sid)) is not None and r.merged_into is None]
        if touched:
            means = np.stack([_unit(r.mean()) for _, r in touched])
            nearest = self._content_index().nearest_many(means, CONTENT_CANDIDATES)
            for (story_id, _), near in zip(touched, nearest, strict=True):
                ids[story_id] = None
                ids.update(dict.fromkeys(near))
        self._touched = []
        out = []
        for story_id in ids:
            record = self.get(story_id)
            if record is not None and record.merged_into is None:
                out.append(record)
        return out

    def stories(self) -> Iterator[Story]:
        """Every live story, newest first (for tools and tests)."""
        ids = [row[0] for row in self._db.execute("SELECT id FROM stories ORDER BY last_seen DESC")]
        for story_id in ids:
            record = self.get(story_id)
            if record is not None:
                yield record.to_story()

    def story_count(self, *, live_only: bool = True) -> int:
        where = " WHERE merged_into IS NULL" if live_only else ""
        return int(self._db.execute(f"SELECT COUNT(*) FROM stories{where}").fetchone()[0])

    # --- outbox ------------------------------------------------------------------------------------

    def outbox_add(self, topic: str, key: str, value: bytes, headers: Mapping[str, str]) -> None:
        """Queue a record to publish (written with the batch at commit)."""
        self._new_outbox.append((topic, key, value, json_codec.dumps_text(dict(headers))))

    def outbox(self) -> list[OutboxRecord]:
        self._write_pending()
        return [
            OutboxRecord(seq=row[0], topic=row[1], key=row[2], value=row[3], headers=json_codec.loads_any(row[4]))
            for row in self._db.execute("SELECT seq, topic, key, value, headers FROM outbox ORDER BY seq")
        ]

    def outbox_done(self, up_to_seq: int) -> None:
        """Forget outbox records up to ``up_to_seq`` (the bus acknowledged them) and commit."""
        self._db.execute("DELETE FROM outbox WHERE seq <= ?", (up_to_seq,))
        self._db.commit()

    # --- transactions ------------------------------------------------------------------------------

    def _write_decisions(self) -> None:
        if self._new_decisions:
            self._db.executemany(
                "INSERT OR IGNORE INTO decisions (article_id, story_id, role, status, duplicate_of, at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (d.article_id, d.story_id, d.role, d.status, d.duplicate_of, at)
                    for d, at in self._new_decisions.values()
                ],
            )
            self._new_decisions = {}

    def _write_pending(self) -> None:
        """Write what the batch held back (decisions, signatures, outbox, anchor counts), in the open
        transaction."""
        self._write_decisions()
        if self._new_signatures:
            self._db.executemany(
                "INSERT OR IGNORE INTO signatures (article_id, sha, sig, at) VALUES (?, ?, ?, ?)", self._new_signatures
            )
            self._new_signatures = []
        if self._new_outbox:
            self._db.executemany(
                "INSERT INTO outbox (topic, key, value, headers) VALUES (?, ?, ?, ?)", self._new_outbox
            )
            self._new_outbox = []
        if self._new_anchor_seen:
            self._db.executemany(
                "INSERT INTO anchor_seen (anchor, count, at_n) VALUES (?, ?, ?) "
                "ON CONFLICT(anchor) DO UPDATE SET count = excluded.count, at_n = excluded.at_n",
                [(anchor, count, at_n) for anchor, (count, at_n) in self._new_anchor_seen.items()],
            )
            self._new_anchor_seen = {}
        if len(self._anchor_seen) > ANCHOR_CACHE_MAX:
            # Everything in the cache is written now: keep the anchors seen most recently, re-read the others
            # from the table when they come back (the cache grew with every anchor ever seen before).
            keep = sorted(self._anchor_seen.items(), key=lambda item: item[1][1])[-ANCHOR_CACHE_MAX // 2 :]
            self._anchor_seen = dict(keep)

    def _forget_pending(self) -> None:
        self._new_decisions = {}
        self._new_signatures = []
        self._new_outbox = []
        self._new_anchor_seen = {}

    def commit(self) -> None:
        try:
            self._write_pending()
            if self._center is not None:
                self._db.execute(
                    "INSERT INTO vectors (name, vec, n) VALUES ('center', ?, ?) "
                    "ON CONFLICT(name) DO UPDATE SET vec = excluded.vec, n = excluded.n",
                    (_vec_bytes(self._center), self._center_n),
                )
            self._db.executemany(
                "INSERT INTO vectors (name, vec, n) VALUES (?, ?, ?) "
                "ON CONFLICT(name) DO UPDATE SET vec = excluded.vec, n = excluded.n",
                [
                    (f"lang:{lang}", _vec_bytes(self._lang_means[lang][0]), self._lang_means[lang][1])
                    for lang in sorted(self._langs_seen)
                ],
            )
            self._langs_seen = set()
            self._set_meta("articles_seen", str(self._seen_n))
            self._set_meta("centred", "1" if self._centred else "0")
            self._set_meta("since_merge", str(self._since_merge))
            self._set_meta("touched", json.dumps(self._touched))
            self._db.commit()
        except sqlite3.Error as exc:
            raise StoryStateError(f"story state {str(self.path)!r}: commit failed: {exc}") from exc

    def rollback(self) -> None:
        """Undo the open batch and rebuild the caches from what was committed."""
        self._forget_pending()
        self._db.rollback()
        self._cache.clear()
        self.duplicates = self._load_duplicates()
        self._load_volatile()

    def close(self) -> None:
        try:
            self._write_pending()
            self._db.commit()
        finally:
            self._db.close()
