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
  and deleted once the bus acknowledged them (nothing is lost between a commit and a crash).

Candidate lookup is windowed: the stories whose ``[first_seen - W, last_seen + W]`` interval holds
the article's time (``W = cluster_window_days``), through an index on ``last_seen``, so the cost per
article follows the number of recent stories, not the corpus. Dormant stories come from the anchor
index, whose posting lists are bounded (anchors in more than ``MAX_ANCHOR_DF`` stories are not
specific and are not used for retrieval).

Writes happen inside one open transaction per batch: :meth:`StoryState.commit` makes them durable,
:meth:`StoryState.rollback` forgets them and the in-memory caches built on them.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections import Counter, OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from stream.anchors import SPECIFIC_KINDS, anchor_kind, anchor_weight
from stream.clustering import Candidate
from stream.embedding import l2_normalise
from stream.errors import StoryStateError
from stream.near_duplicate import NearDuplicateIndex, signature_bytes, signature_from_bytes
from stream.story import Story

STATE_FILE = "stories.sqlite3"
SCHEMA_VERSION = 1
MAX_STORY_ANCHORS = 96  # anchors a story is matched by: its most frequent ones (bounds matching cost)
MAX_ANCHOR_DF = 200  # an anchor in more stories than this is not specific: not used to find dormant stories
DORMANT_POSTINGS = 32  # most recent stories read per anchor when looking for dormant stories
MAX_DORMANT_CANDIDATES = 8  # dormant stories scored per article (those sharing the most anchors)
CACHE_STORIES = 4096  # story records kept in memory (LRU); the rest are read back from SQLite
MAX_SOURCES = 256  # distinct sources listed per story (the count stays exact)

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
    merged_into TEXT
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
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL,
    headers TEXT NOT NULL
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
    _candidate: Candidate | None = None

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

    def to_candidate(self, *, dormant: bool) -> Candidate:
        if self._candidate is None or self._candidate.dormant != dormant:
            top = frozenset(a for a, _ in self.anchors.most_common(MAX_STORY_ANCHORS))
            self._candidate = Candidate(
                story_id=self.id,
                centroid=self.centroid(),
                lang_centroids={lang: _unit(s) for lang, (s, _) in self.lang_sums.items()},
                anchors=top,
                kinds=self.kinds,
                languages=frozenset(self.languages),
                first_seen=self.first_seen,
                last_seen=self.last_seen,
                article_count=self.article_count,
                dormant=dormant,
            )
        return self._candidate


@dataclass(frozen=True, slots=True)
class StoredDecision:
    article_id: str
    story_id: str
    role: str  # first | duplicate | follow_up
    status: str  # first | duplicate | follow_up | clustered
    duplicate_of: str | None


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
            elif row[0] != str(SCHEMA_VERSION):
                raise StoryStateError(f"story state {str(self.path)!r}: schema {row[0]} is not supported")
        except sqlite3.Error as exc:
            raise StoryStateError(f"story state {str(self.path)!r} cannot be opened: {exc}") from exc
        self._cache: OrderedDict[str, StoryRecord] = OrderedDict()
        self.duplicates = self._load_duplicates()

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
        from datasketch import MinHash

        mh = signature if isinstance(signature, MinHash) else None
        self.duplicates.add(article_id, sha, mh, at)
        self._db.execute(
            "INSERT OR IGNORE INTO signatures (article_id, sha, sig, at) VALUES (?, ?, ?, ?)",
            (article_id, sha or "", None if mh is None else signature_bytes(mh), _ts(at)),  # "": not hashable
        )

    # --- decisions ---------------------------------------------------------------------------------

    def decision(self, article_id: str) -> StoredDecision | None:
        row = self._db.execute(
            "SELECT article_id, story_id, role, status, duplicate_of FROM decisions WHERE article_id = ?",
            (article_id,),
        ).fetchone()
        return None if row is None else StoredDecision(*row)

    def record_decision(self, decision: StoredDecision, at: datetime) -> None:
        self._db.execute(
            "INSERT OR IGNORE INTO decisions (article_id, story_id, role, status, duplicate_of, at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (decision.article_id, decision.story_id, decision.role, decision.status, decision.duplicate_of, _ts(at)),
        )

    def decision_count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM decisions").fetchone()[0])

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
            "languages, anchors, kinds, vec_sum, vec_count, merged_into FROM stories WHERE id = ?",
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
            sources=json.loads(row[7]),
            languages=json.loads(row[8]),
            anchors=Counter(json.loads(row[9])),
            kinds=frozenset(json.loads(row[10])),
            vec_sum=_vec(row[11]),
            vec_count=row[12],
            merged_into=row[13],
        )
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
    ) -> StoryRecord:
        """A new story made of one article (``vector`` shape ``(dim,)``)."""
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
            lang_sums={lang: (np.array(vector, dtype=np.float32), 1)},
        )
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
    ) -> None:
        """Count an article in ``record``; ``vector=None`` (a duplicate) leaves the centroid as it is."""
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
            record.vec_sum = record.vec_sum + vector
            record.vec_count += 1
            lang_sum, lang_count = record.lang_sums.get(lang, (np.zeros_like(vector), 0))
            record.lang_sums[lang] = (lang_sum + vector, lang_count + 1)
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
        new = [a for a in absorbed.anchors if a not in survivor.anchors]
        survivor.anchors.update(absorbed.anchors)
        self._index_anchors(survivor.id, new)
        absorbed.merged_into = survivor.id
        survivor._candidate = None
        absorbed._candidate = None
        self.save(survivor)
        self.save(absorbed)

    def save(self, record: StoryRecord) -> None:
        self._db.execute(
            "INSERT INTO stories (id, title, first_seen, last_seen, article_count, source_count, first_article_id, "
            "sources, languages, anchors, kinds, vec_sum, vec_count, merged_into) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT(id) DO UPDATE SET title=excluded.title, first_seen=excluded.first_seen, "
            "last_seen=excluded.last_seen, article_count=excluded.article_count, "
            "source_count=excluded.source_count, sources=excluded.sources, languages=excluded.languages, "
            "anchors=excluded.anchors, kinds=excluded.kinds, vec_sum=excluded.vec_sum, "
            "vec_count=excluded.vec_count, merged_into=excluded.merged_into",
            (
                record.id,
                record.title,
                _ts(record.first_seen),
                _ts(record.last_seen),
                record.article_count,
                record.source_count,
                record.first_article_id,
                json.dumps(record.sources, ensure_ascii=False),
                json.dumps(record.languages),
                json.dumps(dict(record.anchors), ensure_ascii=False),
                json.dumps(sorted(record.kinds)),
                _vec_bytes(record.vec_sum),
                record.vec_count,
                record.merged_into,
            ),
        )
        self._db.executemany(
            "INSERT INTO story_langs (story_id, lang, vec_sum, vec_count) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(story_id, lang) DO UPDATE SET vec_sum=excluded.vec_sum, vec_count=excluded.vec_count",
            [(record.id, lang, _vec_bytes(vec), n) for lang, (vec, n) in record.lang_sums.items()],
        )

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
        return [
            row[0]
            for row in self._db.execute(
                "SELECT id FROM stories WHERE last_seen >= ? AND first_seen <= ? AND merged_into IS NULL",
                (t - w, t + w),
            )
        ]

    def candidates(self, at: datetime, anchors: frozenset[str]) -> list[Candidate]:
        """Active stories around ``at`` plus the dormant stories sharing the most specific anchors."""
        out: list[Candidate] = []
        active = set()
        for story_id in self.active_ids(at):
            record = self.get(story_id)
            if record is not None:
                active.add(story_id)
                out.append(record.to_candidate(dormant=False))
        for story_id in self._dormant_ids(at, anchors, exclude=active):
            record = self.get(story_id)
            if record is not None and record.merged_into is None:
                out.append(record.to_candidate(dormant=True))
        return out

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

    def live_stories(self, at: datetime) -> list[StoryRecord]:
        """Records of the active (windowed, unmerged) stories around ``at``."""
        out = []
        for story_id in self.active_ids(at):
            record = self.get(story_id)
            if record is not None:
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
        self._db.execute(
            "INSERT INTO outbox (topic, key, value, headers) VALUES (?, ?, ?, ?)",
            (topic, key, value, json.dumps(dict(headers))),
        )

    def outbox(self) -> list[OutboxRecord]:
        return [
            OutboxRecord(seq=row[0], topic=row[1], key=row[2], value=row[3], headers=json.loads(row[4]))
            for row in self._db.execute("SELECT seq, topic, key, value, headers FROM outbox ORDER BY seq")
        ]

    def outbox_done(self, up_to_seq: int) -> None:
        """Forget outbox records up to ``up_to_seq`` (the bus acknowledged them) and commit."""
        self._db.execute("DELETE FROM outbox WHERE seq <= ?", (up_to_seq,))
        self._db.commit()

    # --- transactions ------------------------------------------------------------------------------

    def commit(self) -> None:
        try:
            self._db.commit()
        except sqlite3.Error as exc:
            raise StoryStateError(f"story state {str(self.path)!r}: commit failed: {exc}") from exc

    def rollback(self) -> None:
        """Undo the open batch and rebuild the caches from what was committed."""
        self._db.rollback()
        self._cache.clear()
        self.duplicates = self._load_duplicates()

    def close(self) -> None:
        try:
            self._db.commit()
        finally:
            self._db.close()
