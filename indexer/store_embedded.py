"""The embedded search store: one SQLite file (WAL) with FTS5 for text and stored vectors.

Tables:

- ``articles``: one small row per article id (upserts keep the rowid): keyword columns for filters and
  facets (lang, source, source_type, story_id, day) and the sort time in epoch microseconds, so a scan
  of the filters never reads the documents.
- ``article_docs``: by the same rowid, the article JSON (without the embedding) and the embedding as
  a float32 blob.
- ``articles_fts``: FTS5 keyed by the articles rowid over the exact tokens of the title and text
  (``stream.word_forms.tokens``: case, Latin diacritics and Arabic variants folded, so ``صيدنايا`` finds
  ``صيدنايا`` and ``SAYDNAYA`` finds ``Saydnaya``), for phrases, and over their word forms
  (``title_stems``/``body_stems``, ``stream.word_forms.document_forms``: ``detaine`` for "detainees" in
  an English article), for words. Both are computed in Python, as for Elasticsearch (FTS5 only splits
  the space-joined tokens).
- ``stories``: story JSON, first/last seen, ``merged_into`` and the centroid (float32 blob).
- ``meta``: the embedding dimension fixed by the first vector written.

The query AST (``indexer.query``) becomes a boolean SQL expression whose text leaves are
``rowid IN (SELECT rowid FROM articles_fts WHERE articles_fts MATCH ?)`` (so NOT, OR and field
filters mix freely); relevance is BM25 over the OR of the positive terms (title weighted
``TITLE_WEIGHT``), ties broken by date (newest first), then id. A search reads one snapshot (one read
transaction): the count (``COUNT(*)``, over the FTS5 index alone when no filter applies), then the page
(SQLite keeps the best ``size`` rows while it scans, and only their documents are read). Facets, story
groups and the search page's chart count the matching rowids (one ``group_concat``) against the keyword
columns held in memory (``indexer.facet_columns``), read again whenever any connection has committed
(``PRAGMA data_version``).
One writer process and any number of readers may share the file (WAL, ``busy_timeout``, writes in
``BEGIN IMMEDIATE`` transactions). One ``EmbeddedStore`` may be shared by threads: writes go through
one connection behind a lock, reads through a connection per thread, so reads never wait for each
other or for a write.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from operator import itemgetter
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from indexer.documents import (
    day_of,
    epoch_micros,
    sort_time,
    source_type_of,
)
from indexer.errors import StoreError
from indexer.facet_columns import SELECT_SQL as COLUMNS_SQL
from indexer.facet_columns import FacetColumns, Rowids, StoryPage
from indexer.highlight import highlights, matched_terms
from indexer.names import NO_NAMES, NameGroups, expand
from indexer.query import And, FieldFilter, MatchAll, Node, Not, Or, Phrase, Term, parse, positive_leaves
from indexer.store import Hit, SearchRequest, SearchResult, StoryGroup, WriteFailure, sort_order
from stream.article import Article
from stream.sqlite_wal import connect_wal
from stream.story import Story
from stream.word_forms import FORMS_VERSION, document_forms, query_forms, tokens

logger = logging.getLogger(__name__)

TITLE_WEIGHT = 3.0  # BM25 weight of the title column against 1.0 for the text: a title hit is the topic
_BM25_WEIGHTS = (TITLE_WEIGHT, 1.0, TITLE_WEIGHT, 1.0)  # title, body, title_stems, body_stems
BUSY_TIMEOUT_MS = 30_000  # wait this long for the writer's lock before failing
ITER_CHUNK = 500  # rows per page when iterating every article (keeps the lock short)
MAX_SIZE = 1000  # largest page a search may ask for
RANKED_READ = 10  # rows read per row of a page ranked on the FTS5 index alone (equal scores are common)
LAYOUT = 3  # table layout version kept in ``meta``; layout 2 is upgraded in place, others are refused

_FTS_SCHEMA = """
CREATE VIRTUAL TABLE IF NOT EXISTS articles_fts USING fts5(
    title, body, title_stems, body_stems, tokenize = 'unicode61 remove_diacritics 0'
)
"""
_SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS articles (
    rowid INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    lang TEXT NOT NULL,
    source TEXT NOT NULL,
    source_type TEXT NOT NULL,
    story_id TEXT,
    duplicate_of TEXT,
    sort_ts INTEGER NOT NULL,
    day TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS article_docs (
    rowid INTEGER PRIMARY KEY,
    doc TEXT NOT NULL,
    embedding BLOB
);
CREATE INDEX IF NOT EXISTS articles_story ON articles(story_id, sort_ts);
CREATE INDEX IF NOT EXISTS articles_sort ON articles(sort_ts);
CREATE TABLE IF NOT EXISTS stories (
    id TEXT PRIMARY KEY,
    first_seen INTEGER NOT NULL,
    last_seen INTEGER NOT NULL,
    merged_into TEXT,
    doc TEXT NOT NULL,
    centroid BLOB
);
CREATE INDEX IF NOT EXISTS stories_last_seen ON stories(last_seen);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
    + _FTS_SCHEMA
    + ";"
)
# Whether a word form (a token) occurs in the word-form (exact) columns: the MATCH stops at its first row. A term
# only in the other columns is read to its end (0.5 ms for "detainees" at 50,000 articles); an absent one, 0.01 ms.
_HAS_TERM = "SELECT 1 FROM articles_fts WHERE articles_fts MATCH ? LIMIT 1"
_WORD_COLUMNS = "{title_stems body_stems}"
_EXACT_COLUMNS = "{title body}"

_FILTER_COLUMNS = {"lang": "a.lang", "source": "a.source", "story": "a.story_id"}
_FACET_COLUMNS = {"lang": "lang", "source": "source", "source_type": "source_type", "story": "story_id"}


def _fts_phrase(toks: Sequence[str]) -> str:
    return '"' + " ".join(toks) + '"'  # tokens are letters/digits only: no quote to escape


@dataclass(frozen=True, slots=True)
class Vocabulary:
    """What the index holds of a query: ``forms``, the word forms of its words found in the word-form
    columns (``title_stems``/``body_stems``), and ``tokens``, the tokens of its phrases found in the exact
    columns (``title``/``body``). A form found only in the exact columns (``detainees``: the English
    form is ``detaine``) can match no word, so it is left out of the MATCH like an absent one."""

    forms: frozenset[str]
    tokens: frozenset[str]


def fts_expression(leaf: Term | Phrase, lang: str | None = None, present: Vocabulary | None = None) -> str:
    """The FTS5 MATCH expression of one word or phrase (column filter by field).

    A phrase: its exact tokens, adjacent. A word: for each token, one of its query forms
    (``stream.word_forms.query_forms``, for ``lang`` or for every language of its script) among the
    article's word forms. ``present``: what the index holds, when known; forms outside ``present.forms``
    are left out (they can match nothing), which keeps a query of many name variants and forms small.
    Leaving them out changes no score: a phrase without a row adds exactly 0.0 to BM25's sum.
    """
    toks = tokens(leaf.text)
    title = leaf.field == "title"
    columns = "title" if title else "{title body}"
    if isinstance(leaf, Phrase):
        return f"{columns} : {_fts_phrase(toks)}"
    form_columns = "title_stems" if title else "{title_stems body_stems}"
    parts = []
    for tok in toks:
        forms = query_forms(tok, lang)
        if present is not None:
            forms = tuple(f for f in forms if f in present.forms) or forms[:1]  # none indexed: one that matches nothing
        parts.append(f"{form_columns} : (" + " OR ".join(_fts_phrase([f]) for f in forms) + ")")
    return "(" + " AND ".join(parts) + ")"


def _word_forms(leaf: Term, lang: str | None, present: Vocabulary | None) -> tuple[str, ...]:
    """The query forms of a one-token word, those the index holds when that is known (possibly none)."""
    (tok,) = tokens(leaf.text)
    forms = query_forms(tok, lang)
    return forms if present is None else tuple(f for f in forms if f in present.forms)


def _one_word_alternatives(
    items: Sequence[Node], lang: str | None, present: Vocabulary | None
) -> tuple[list[str], set[int]]:
    """OR-ed one-token words of one field (a name group's spellings: Sednaya, Sednaja, Saydnaya...) as one
    word-form match over the union of their forms, each form once: spellings that stem alike would
    otherwise each add the shared form's BM25 again and rank that spelling's articles higher. Returns the
    matches and the indexes of the ``items`` they stand for (fields with two or more such words)."""
    by_field: dict[str, dict[int, Term]] = {}
    for n, item in enumerate(items):
        if isinstance(item, Term) and len(tokens(item.text)) == 1:
            by_field.setdefault(item.field, {})[n] = item
    parts: list[str] = []
    folded: set[int] = set()
    for field, words in by_field.items():
        if len(words) < 2:
            continue
        forms = dict.fromkeys(f for w in words.values() for f in _word_forms(w, lang, present))
        if not forms:  # none indexed: one form that matches nothing
            first = next(iter(words.values()))
            forms = dict.fromkeys(query_forms(tokens(first.text)[0], lang)[:1])
        columns = "title_stems" if field == "title" else "{title_stems body_stems}"
        parts.append(f"({columns} : (" + " OR ".join(_fts_phrase([f]) for f in forms) + "))")
        folded.update(words)
    return parts, folded


def fts_query(node: Node, lang: str | None = None, present: Vocabulary | None = None) -> str | None:
    """One FTS5 MATCH expression for a text-only query (words, phrases, AND, OR, NOT under an AND with
    a positive part), or None when the query needs SQL (field filters, a NOT alone, everything)."""
    if isinstance(node, Term | Phrase):
        return fts_expression(node, lang, present)
    if isinstance(node, Or):
        words, folded = _one_word_alternatives(node.items, lang, present)
        parts = [fts_query(item, lang, present) for n, item in enumerate(node.items) if n not in folded]
        if any(p is None for p in parts):
            return None
        # alternatives that come out alike are asked once (each copy would add its BM25 again)
        merged = [*words, *(str(p) for p in parts)]
        return "(" + " OR ".join(dict.fromkeys(merged)) + ")"
    if isinstance(node, And):
        positive: list[str] = []
        negative: list[str] = []
        for item in node.items:
            part = fts_query(item.item if isinstance(item, Not) else item, lang, present)
            if part is None:
                return None
            (negative if isinstance(item, Not) else positive).append(part)
        if not positive:
            return None
        return "((" + " AND ".join(positive) + ")" + "".join(f" NOT {n}" for n in negative) + ")"
    return None


def split_for_fts(node: Node, lang: str | None = None, present: Vocabulary | None = None) -> tuple[str | None, Node]:
    """``(FTS5 expression, rest)``: the text part of the query as one MATCH (which also ranks), and
    what SQL must still check (``MatchAll()`` when nothing). ``(None, node)`` when no text part drives."""
    whole = fts_query(node, lang, present)
    if whole is not None:
        return whole, MatchAll()
    if not isinstance(node, And):
        return None, node
    text = [i for i in node.items if fts_query(i.item if isinstance(i, Not) else i, lang, present) is not None]
    rest = [i for i in node.items if i not in text]
    expression = fts_query(And(tuple(text)), lang, present) if text else None
    if expression is None:
        return None, node
    remaining: Node = MatchAll() if not rest else rest[0] if len(rest) == 1 else And(tuple(rest))
    return expression, remaining


def prune(node: Node, present: Vocabulary, lang: str | None = None) -> Node | None:
    """``node`` without the words and phrases the index cannot match (a token, or every form of it,
    absent from its vocabulary), simplified; None when nothing can match. Same answers, smaller MATCH."""
    if isinstance(node, Term):
        ok = all(any(f in present.forms for f in query_forms(tok, lang)) for tok in tokens(node.text))
        return node if ok else None
    if isinstance(node, Phrase):
        return node if all(tok in present.tokens for tok in tokens(node.text)) else None
    if isinstance(node, Not):
        inner = prune(node.item, present, lang)
        if inner is None:
            return MatchAll()
        return None if isinstance(inner, MatchAll) else Not(inner)
    if isinstance(node, And):
        kept: list[Node] = []
        for item in node.items:
            pruned = prune(item, present, lang)
            if pruned is None:
                return None
            if not isinstance(pruned, MatchAll):
                kept.append(pruned)
        return MatchAll() if not kept else kept[0] if len(kept) == 1 else And(tuple(kept))
    if isinstance(node, Or):
        alive = [p for p in (prune(item, present, lang) for item in node.items) if p is not None]
        if any(isinstance(p, MatchAll) for p in alive):
            return MatchAll()
        return None if not alive else alive[0] if len(alive) == 1 else Or(tuple(alive))
    return node


def _compile(node: Node, params: list[Any], lang: str | None = None, present: Vocabulary | None = None) -> str:
    """Boolean SQL over the ``articles a`` row for ``node``; appends bound values to ``params``."""
    if isinstance(node, MatchAll):
        return "1"
    if isinstance(node, Term | Phrase):
        params.append(fts_expression(node, lang, present))
        return "a.rowid IN (SELECT rowid FROM articles_fts WHERE articles_fts MATCH ?)"
    if isinstance(node, FieldFilter):
        params.append(node.value.lower() if node.field == "lang" else node.value)
        return f"{_FILTER_COLUMNS[node.field]} = ?"
    if isinstance(node, Not):
        return f"NOT ({_compile(node.item, params, lang, present)})"
    joiner = " AND " if isinstance(node, And) else " OR "
    return "(" + joiner.join(_compile(item, params, lang, present) for item in node.items) + ")"


_RANKED = "SELECT rowid AS rid, -bm25(articles_fts, ?, ?, ?, ?) AS score FROM articles_fts WHERE articles_fts MATCH ?"
_MATCHING = "SELECT rowid AS rid FROM articles_fts WHERE articles_fts MATCH ?"


def _rowids(conn: sqlite3.Connection, sql: str, params: Sequence[Any]) -> Rowids:
    """The rowids a ``SELECT group_concat(rowid) ...`` lists (one string: no Python object per row)."""
    joined = conn.execute(sql, params).fetchone()[0]
    if not joined:
        return np.zeros(0, dtype=np.int64)
    text = str(joined)
    rowids = np.fromstring(text, dtype=np.int64, sep=",")  # parsed in C: 0.6 ms for 50,000 rowids, not 4 ms
    if len(rowids) != text.count(",") + 1:  # pragma: no cover - group_concat of integers is always well formed
        raise StoreError(f"matching rowids could not be read: {text[:80]!r}")
    return rowids


def _matching_key(request: SearchRequest) -> SearchRequest:
    """What decides which rows a request matches (its query and filters; not sort, page or output)."""
    return dataclasses.replace(
        request,
        sort="relevance",
        size=0,
        search_after=None,
        facets=False,
        highlight=False,
        by_story=False,
        explain=True,
    )


def _request_filters(request: SearchRequest, params: list[Any]) -> list[str]:
    """SQL conditions on ``articles a`` for the request's filters; appends their values to ``params``."""
    where: list[str] = []
    for column, value in (
        ("a.lang", request.lang.lower() if request.lang else None),
        ("a.source", request.source),
        ("a.source_type", request.source_type),
        ("a.story_id", request.story),
    ):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    if request.since is not None:
        where.append("a.sort_ts >= ?")
        params.append(epoch_micros(request.since))
    if request.until is not None:
        where.append("a.sort_ts <= ?")
        params.append(epoch_micros(request.until))
    if request.ids is not None:
        where.append("a.id IN (SELECT value FROM json_each(?))")
        params.append(json.dumps(list(request.ids)))
    return where


@dataclass(frozen=True, slots=True)
class _Plan:
    """The SQL of one search's matching rows, for the four ways a search reads them.

    ``scored``/``score``: the rows with their relevance (BM25 of the text part, or of the OR of the
    positive words when no text part selects; 0 for a date sort that has a text part); ``plain``: the
    same rows without scoring (counts and rowids); ``text_only``: the FTS5 expression when it alone
    selects (no filter, no condition left for SQL), so counts need not visit the ``articles`` rows.
    """

    scored: str
    score: str
    plain: str
    where: str
    scored_params: list[Any]
    plain_params: list[Any]
    text_only: str | None

    @classmethod
    def of(cls, node: Node | None, request: SearchRequest, lang: str | None, present: Vocabulary) -> _Plan:
        """``node``: the query pruned to what the index can match (None: nothing can)."""
        if node is None:
            node = Not(MatchAll())
        leaves = positive_leaves(node)
        driving, rest = split_for_fts(node, lang, present)
        scored_source: list[Any] = []
        plain_source: list[Any] = []
        if driving is not None:
            # the text part is one FTS5 query that selects (and ranks); SQL checks filters on its rows
            plain = f"({_MATCHING}) s JOIN articles a ON a.rowid = s.rid"
            plain_source = [driving]
            if request.sort == "date":  # a date sort needs no score
                scored, scored_source, score = plain, [driving], "0.0"
            else:
                scored = f"({_RANKED}) s JOIN articles a ON a.rowid = s.rid"
                scored_source, score = [*_BM25_WEIGHTS, driving], "s.score"
        elif leaves:
            plain = "articles a"
            scored = f"articles a LEFT JOIN ({_RANKED}) s ON s.rid = a.rowid"
            scored_source = [*_BM25_WEIGHTS, " OR ".join(f"({fts_expression(leaf, lang, present)})" for leaf in leaves)]
            score = "COALESCE(s.score, 0.0)"
        else:
            plain = scored = "articles a"
            score = "0.0"
        where_params: list[Any] = []
        conditions = [_compile(rest, where_params, lang, present), *_request_filters(request, where_params)]
        return cls(
            scored=scored,
            score=score,
            plain=plain,
            where=" AND ".join(conditions),
            scored_params=[*scored_source, *where_params],
            plain_params=[*plain_source, *where_params],
            text_only=driving if conditions == ["1"] else None,
        )

    def count(self) -> tuple[str, list[Any]]:
        if self.text_only is not None:
            return "SELECT COUNT(*) FROM articles_fts WHERE articles_fts MATCH ?", [self.text_only]
        return f"SELECT COUNT(*) FROM {self.plain} WHERE {self.where}", self.plain_params

    def rowids(self) -> tuple[str, list[Any]]:
        if self.text_only is not None:
            return "SELECT group_concat(rowid) FROM articles_fts WHERE articles_fts MATCH ?", [self.text_only]
        return f"SELECT group_concat(a.rowid) FROM {self.plain} WHERE {self.where}", self.plain_params

    def page_rows(self) -> str:
        """``rid, id, score, sort_ts`` of every matching row (``scored_params``)."""
        return (
            f"SELECT a.rowid AS rid, a.id AS id, {self.score} AS score, a.sort_ts AS sort_ts "
            f"FROM {self.scored} WHERE {self.where}"
        )


_FTS_INSERT = "INSERT INTO articles_fts (rowid, title, body, title_stems, body_stems) VALUES (?, ?, ?, ?, ?)"


def _fts_row(article: Article) -> tuple[str, str, str, str]:
    """The indexed columns of an article: exact tokens and word forms of the title and the text."""
    title, text = tokens(article.title), tokens(article.text)
    lang = article.lang.lower()
    return (
        " ".join(title),
        " ".join(text),
        " ".join(document_forms(title, lang)),
        " ".join(document_forms(text, lang)),
    )


def _blob(vector: Sequence[float]) -> bytes:
    return np.asarray(vector, dtype=np.float32).tobytes()


def _vector(blob: bytes | None) -> tuple[float, ...] | None:
    if blob is None:
        return None
    return tuple(np.frombuffer(blob, dtype=np.float32).tolist())  # float32 -> float, in C


# A story write replaces the stored story only with a snapshot that is not older: article_count only grows in
# the story state (each article and each merge adds to it), so it orders one story's snapshots.
_NOT_OLDER = (
    "json_extract(excluded.doc, '$.article_count') >= COALESCE(json_extract(stories.doc, '$.article_count'), 0)"
)


class EmbeddedStore:
    """SQLite FTS5 + vectors at ``path`` (created with its parent directory on first use)."""

    def __init__(self, path: Path, *, names: NameGroups | None = None) -> None:
        """``names``: the topic's name groups a query word expands to (``indexer.names``); none by default."""
        self.path = Path(path)
        self.names = names or NO_NAMES
        self._lock = threading.RLock()  # the writer connection
        self._conn: sqlite3.Connection | None = None
        self._dims: int | None = None
        self._local = threading.local()  # this thread's read connection
        self._readers: list[tuple[threading.Thread, sqlite3.Connection]] = []
        self._generation = 0  # bumped by close(): read connections of an older generation are reopened
        self._columns_lock = threading.Lock()
        self._probe: sqlite3.Connection | None = None  # reads the data version and the facet columns
        self._columns: FacetColumns | None = None

    # --- connection ------------------------------------------------------------------------------

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                conn = connect_wal(self.path, timeout_s=BUSY_TIMEOUT_MS / 1000)  # serve's workers: at once
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
                conn.executescript(_SCHEMA)
            except sqlite3.Error as exc:
                raise StoreError(f"embedded store {self.path}: cannot open: {exc}") from exc
            self._check_layout(conn)
            self._conn = conn
            row = conn.execute("SELECT value FROM meta WHERE key = 'embedding_dims'").fetchone()
            self._dims = int(row[0]) if row else None
        return self._conn

    def _check_layout(self, conn: sqlite3.Connection) -> None:
        """Refuse a file written with another table layout (rather than fail later on a missing column); a text
        index written with other folding rules (``FORMS_VERSION``) is rebuilt."""
        row = conn.execute("SELECT value FROM meta WHERE key = 'layout'").fetchone()
        columns = {r[1] for r in conn.execute("PRAGMA table_info(articles)")}
        if row is not None and row[0] == "2" and "doc" not in columns:
            self._upgrade_from_2(conn)
            self._check_forms(conn)
            return
        if (row is not None and row[0] != str(LAYOUT)) or "doc" in columns:
            found = row[0] if row else "1"
            conn.close()
            raise StoreError(
                f"embedded store {self.path}: table layout {found}, this version reads layout {LAYOUT}; "
                "delete the file (or the data directory) and ingest again"
            )
        if row is None:
            conn.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('layout', ?)", (str(LAYOUT),))
        self._check_forms(conn)

    def _check_forms(self, conn: sqlite3.Connection) -> None:
        """Rebuild the text index when it was written with other folding or word-form rules than this
        version's (``stream.word_forms.FORMS_VERSION``): a query is folded by today's rules, and an article
        indexed by older ones would not be found by the words that changed."""
        row = conn.execute("SELECT value FROM meta WHERE key = 'forms'").fetchone()
        if row is not None and row[0] == str(FORMS_VERSION):
            return
        if conn.execute("SELECT 1 FROM article_docs LIMIT 1").fetchone() is not None:
            found = row[0] if row else "1"
            logger.info("embedded store: rebuilding the text index (word forms %s -> %s)", found, FORMS_VERSION)
            self._rebuild_text_index(conn)
        conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('forms', ?)", (str(FORMS_VERSION),))

    def _rebuild_text_index(self, conn: sqlite3.Connection) -> None:
        with _transaction(conn, "IMMEDIATE"):
            conn.execute("DROP TABLE IF EXISTS articles_fts")
            conn.execute(_FTS_SCHEMA)
            for rowid, doc in conn.execute("SELECT rowid, doc FROM article_docs").fetchall():
                conn.execute(_FTS_INSERT, (rowid, *_fts_row(Article.from_json(doc))))

    def _upgrade_from_2(self, conn: sqlite3.Connection) -> None:
        """Layout 2 (folded text, no stems) -> 3: rebuild the text index from the stored articles."""
        logger.info("embedded store: rebuilding the text index with word forms (layout 2 -> 3)")
        self._rebuild_text_index(conn)
        conn.execute("UPDATE meta SET value = ? WHERE key = 'layout'", (str(LAYOUT),))

    def ensure_ready(self) -> None:
        """Create the file and tables (idempotent)."""
        with self._lock:
            _ = self.conn

    def close(self) -> None:
        """Close the writer and every read connection (a later call opens them again)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            readers, self._readers = self._readers, []
            self._generation += 1
        with self._columns_lock:
            if self._probe is not None:
                readers.append((threading.current_thread(), self._probe))
            self._probe, self._columns = None, None
        for _thread, conn in readers:
            conn.close()

    def _open_reader(self) -> sqlite3.Connection:
        """A read connection on the file (its schema created or upgraded first by the writer connection)."""
        with self._lock:
            _ = self.conn
        try:
            conn = sqlite3.connect(
                self.path, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False, isolation_level=None
            )
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        except sqlite3.Error as exc:
            raise StoreError(f"embedded store {self.path}: cannot open a read connection: {exc}") from exc
        return conn

    def _reader(self) -> sqlite3.Connection:
        """This thread's read connection: reads never wait on each other nor on the writer's lock (WAL)."""
        local = self._local
        conn: sqlite3.Connection | None = getattr(local, "conn", None)
        if conn is not None and local.generation == self._generation:
            return conn
        conn = self._open_reader()
        with self._lock:
            gone = [c for t, c in self._readers if not t.is_alive()]  # threads that ended leave their connection
            self._readers = [(t, c) for t, c in self._readers if t.is_alive()]
            self._readers.append((threading.current_thread(), conn))
            local.conn, local.generation = conn, self._generation
        for old in gone:
            old.close()
        return conn

    def _facet_columns(self, force: bool = False) -> FacetColumns:
        """The keyword columns at the newest committed data (read again after any commit, by any process)."""
        with self._columns_lock:
            if self._probe is None:
                self._probe = self._open_reader()
            probe = self._probe
            version = probe.execute("PRAGMA data_version").fetchone()[0]
            cached = self._columns
            if force or cached is None or cached.version != version:
                with _transaction(probe, "DEFERRED"):
                    rows = probe.execute(COLUMNS_SQL).fetchall()
                    version = probe.execute("PRAGMA data_version").fetchone()[0]
                cached = self._columns = FacetColumns.of(rows, version)
            return cached

    def data_version(self) -> int:
        """A number that changes whenever any connection (this store's writer, another process) has
        committed since the last call saw it: callers may keep answers while it stays the same."""
        with self._columns_lock:
            if self._probe is None:
                self._probe = self._open_reader()
            version = int(self._probe.execute("PRAGMA data_version").fetchone()[0])
        return (self._generation << 32) | version  # a reopened probe counts from the start again

    def _columns_at(self, rowids: Rowids) -> tuple[FacetColumns, npt.NDArray[np.intp]]:
        """The facet columns and where the matching ``rowids`` are in them (read again if they are older)."""
        columns = self._facet_columns()
        found = columns.positions(rowids)
        if found is None:
            columns = self._facet_columns(force=True)
            found = columns.positions(rowids)
        if found is None:  # pragma: no cover - the columns are read after the search's snapshot
            raise StoreError(f"embedded store {self.path}: matching rows missing from the facet columns")
        return columns, found

    # --- writes ----------------------------------------------------------------------------------

    def _check(self, article: Article) -> str | None:
        """Why the store refuses ``article`` (the embedded analogue of a mapping rejection), or None."""
        if article.embedding is None:
            return None
        if not math.isfinite(sum(article.embedding)) and not all(math.isfinite(x) for x in article.embedding):
            return "embedding contains NaN or infinite values"  # (the sum is finite when every value is)
        if self._dims is not None and len(article.embedding) != self._dims:
            return f"embedding has {len(article.embedding)} dimensions, the store holds {self._dims}-dimension vectors"
        return None

    def write_articles(self, articles: Sequence[Article]) -> list[WriteFailure]:
        """Upsert by id in one transaction: writing an article again replaces it (one row per id).

        Returns a ``WriteFailure`` (permanent) for each article refused: an embedding with a
        dimension other than the store's, or with NaN/inf values; and a transient one for every
        article of the batch when SQLite fails (busy beyond ``BUSY_TIMEOUT_MS``, disk full).
        """
        failures: list[WriteFailure] = []
        with self._lock:
            conn = self.conn
            try:
                with _transaction(conn, "IMMEDIATE"):
                    row = conn.execute("SELECT value FROM meta WHERE key = 'embedding_dims'").fetchone()
                    self._dims = int(row[0]) if row else None
                    for article in articles:
                        reason = self._check(article)
                        if reason is not None:
                            failures.append(WriteFailure(article_id=article.id, reason=reason))
                            logger.warning(
                                "article refused by the store",
                                extra={"url": article.url, "stage": "index", "reason": reason},
                            )
                            continue
                        if article.embedding is not None and self._dims is None:
                            self._dims = len(article.embedding)
                            conn.execute(
                                "INSERT OR REPLACE INTO meta(key, value) VALUES ('embedding_dims', ?)",
                                (str(self._dims),),
                            )
                        self._write_one(conn, article)
            except sqlite3.Error as exc:
                self._dims = None  # re-read on next use: the transaction was rolled back
                logger.warning("store write failed", extra={"stage": "index", "reason": str(exc)})
                refused = {f.article_id for f in failures}
                return failures + [
                    WriteFailure(article_id=a.id, reason=f"sqlite: {exc}", transient=True)
                    for a in articles
                    if a.id not in refused
                ]
        return failures

    @staticmethod
    def _write_one(conn: sqlite3.Connection, article: Article) -> None:
        row = conn.execute(
            """
            INSERT INTO articles (id, lang, source, source_type, story_id, duplicate_of, sort_ts, day)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?)
            ON CONFLICT(id) DO UPDATE SET
                lang = excluded.lang, source = excluded.source, source_type = excluded.source_type,
                story_id = excluded.story_id, duplicate_of = excluded.duplicate_of, sort_ts = excluded.sort_ts,
                day = excluded.day
            RETURNING rowid
            """,
            (
                article.id,
                article.lang.lower(),
                article.source,
                source_type_of(article),
                article.story_id,
                article.duplicate_of,
                epoch_micros(sort_time(article)),
                day_of(article),
            ),
        ).fetchone()
        rowid = row[0]
        conn.execute(
            "INSERT OR REPLACE INTO article_docs (rowid, doc, embedding) VALUES (?, ?, ?)",
            (rowid, article.to_json(), None if article.embedding is None else _blob(article.embedding)),
        )
        conn.execute("DELETE FROM articles_fts WHERE rowid = ?", (rowid,))
        conn.execute(_FTS_INSERT, (rowid, *_fts_row(article)))

    def write_stories(self, stories: Sequence[Story]) -> None:
        """Upsert story documents (with their centroids) by id. A document replaces the stored one only when
        it is not older (``article_count`` at least the stored one's: it only grows in the story state), so a
        replayed or redriven old event leaves the newer story as it is. A story once merged away stays
        merged: a later document of it without ``merged_into`` (an event of the absorbed story that reaches
        the store after the merge: story events are keyed by story, so on Kafka the two sit in different
        partitions) updates its fields and keeps the survivor; an older document with ``merged_into`` sets
        only that.

        Raises:
            StoreError: SQLite failed (busy beyond ``BUSY_TIMEOUT_MS``, disk full); nothing was written.
        """
        with self._lock:
            conn = self.conn
            try:
                with _transaction(conn, "IMMEDIATE"):
                    conn.executemany(
                        f"""
                        INSERT INTO stories (id, first_seen, last_seen, merged_into, doc, centroid)
                        VALUES (?, ?, ?, ?, ?, ?)
                        ON CONFLICT(id) DO UPDATE SET
                            first_seen = CASE WHEN {_NOT_OLDER} THEN excluded.first_seen ELSE stories.first_seen END,
                            last_seen = CASE WHEN {_NOT_OLDER} THEN excluded.last_seen ELSE stories.last_seen END,
                            merged_into = COALESCE(excluded.merged_into, stories.merged_into),
                            doc = json_set(
                                CASE WHEN {_NOT_OLDER} THEN excluded.doc ELSE stories.doc END,
                                '$.merged_into', COALESCE(excluded.merged_into, stories.merged_into)
                            ),
                            centroid = CASE WHEN {_NOT_OLDER} THEN excluded.centroid ELSE stories.centroid END
                        """,
                        [
                            (
                                s.id,
                                epoch_micros(s.first_seen),
                                epoch_micros(s.last_seen),
                                s.merged_into,
                                json.dumps(s.to_dict(), ensure_ascii=False),
                                None if s.centroid is None else _blob(s.centroid),
                            )
                            for s in stories
                        ],
                    )
            except sqlite3.Error as exc:
                raise StoreError(f"embedded store {self.path}: writing {len(stories)} stories failed: {exc}") from exc

    def move_articles(self, from_story_ids: Sequence[str], to_story_id: str) -> int:
        """A story merge: the articles of ``from_story_ids`` now belong to ``to_story_id`` (row and document).

        Raises:
            StoreError: SQLite failed; nothing was moved.
        """
        sources = json.dumps([s for s in dict.fromkeys(from_story_ids) if s != to_story_id])
        with self._lock:
            conn = self.conn
            try:
                with _transaction(conn, "IMMEDIATE"):
                    conn.execute(
                        "UPDATE article_docs SET doc = json_set(doc, '$.story_id', ?) WHERE rowid IN "
                        "(SELECT rowid FROM articles WHERE story_id IN (SELECT value FROM json_each(?)))",
                        (to_story_id, sources),
                    )
                    moved = conn.execute(
                        "UPDATE articles SET story_id = ? WHERE story_id IN (SELECT value FROM json_each(?))",
                        (to_story_id, sources),
                    ).rowcount
            except sqlite3.Error as exc:
                raise StoreError(
                    f"embedded store {self.path}: moving the articles of stories {sources} "
                    f"to {to_story_id} failed: {exc}"
                ) from exc
        return int(moved)

    def merged_into(self, story_ids: Sequence[str]) -> dict[str, str]:
        """``merged_into`` of each of ``story_ids`` that was merged away (one query; the index stage's
        per-batch lookup before it writes articles)."""
        if not story_ids:
            return {}
        with self._lock:
            rows = self.conn.execute(
                "SELECT id, merged_into FROM stories WHERE id IN (SELECT value FROM json_each(?)) "
                "AND merged_into IS NOT NULL AND merged_into != ''",
                (json.dumps(list(story_ids)),),
            ).fetchall()
        return {str(r[0]): str(r[1]) for r in rows}

    # --- reads -----------------------------------------------------------------------------------

    @staticmethod
    def _article(doc: str, embedding: bytes | None = None) -> Article:
        article = Article.from_json(doc)
        return article if embedding is None else article.replace(embedding=_vector(embedding))

    @staticmethod
    def _story(doc: str, centroid: bytes | None) -> Story:
        data = json.loads(doc)
        data["centroid"] = None if centroid is None else np.frombuffer(centroid, dtype=np.float32).tolist()
        return Story.from_dict(data)

    def get_article(self, article_id: str) -> Article | None:
        """The stored article with its embedding (float32 precision), or None."""
        row = (
            self._reader()
            .execute(
                "SELECT d.doc, d.embedding FROM articles a JOIN article_docs d ON d.rowid = a.rowid WHERE a.id = ?",
                (article_id,),
            )
            .fetchone()
        )
        return None if row is None else self._article(row[0], row[1])

    def get_story(self, story_id: str) -> Story | None:
        row = self._reader().execute("SELECT doc, centroid FROM stories WHERE id = ?", (story_id,)).fetchone()
        return None if row is None else self._story(row[0], row[1])

    def list_stories(self, *, since: datetime | None = None, limit: int = 50) -> list[Story]:
        """Stories not merged away, newest ``last_seen`` first (then id), ``last_seen >= since``."""
        sql = "SELECT doc, centroid FROM stories WHERE merged_into IS NULL"
        params: list[Any] = []
        if since is not None:
            sql += " AND last_seen >= ?"
            params.append(epoch_micros(since))
        sql += " ORDER BY last_seen DESC, id ASC LIMIT ?"
        params.append(limit)
        rows = self._reader().execute(sql, params).fetchall()
        return [self._story(doc, centroid) for doc, centroid in rows]

    def story_articles(self, story_id: str) -> list[Article]:
        """Articles of the story, oldest first (publication or fetch time, then id)."""
        rows = (
            self._reader()
            .execute(
                "SELECT d.doc FROM articles a JOIN article_docs d ON d.rowid = a.rowid "
                "WHERE a.story_id = ? ORDER BY a.sort_ts ASC, a.id ASC",
                (story_id,),
            )
            .fetchall()
        )
        return [self._article(doc) for (doc,) in rows]

    def similar_stories(
        self, vector: Sequence[float], *, k: int = 10, since: datetime | None = None
    ) -> list[tuple[str, float]]:
        """Cosine of ``vector`` to the centroids of stories (not merged away, ``last_seen >= since``).

        Returns at most ``k`` ``(story_id, cosine)`` pairs, best first (ties by id).
        """
        sql = "SELECT id, centroid FROM stories WHERE merged_into IS NULL AND centroid IS NOT NULL"
        params: list[Any] = []
        if since is not None:
            sql += " AND last_seen >= ?"
            params.append(epoch_micros(since))
        rows = self._reader().execute(sql, params).fetchall()
        query = np.asarray(vector, dtype=np.float32)
        norm = float(np.linalg.norm(query))
        rows = [r for r in rows if len(r[1]) == query.nbytes]  # centroids of another model cannot compare
        if not rows or norm == 0.0 or k <= 0:
            return []
        ids = [r[0] for r in rows]
        matrix = np.stack([np.frombuffer(r[1], dtype=np.float32) for r in rows])
        norms = np.linalg.norm(matrix, axis=1)
        norms[norms == 0] = 1.0
        scores = matrix @ query / (norms * norm)
        ranked = sorted(zip(ids, (float(s) for s in scores), strict=True), key=lambda p: (-p[1], p[0]))
        return ranked[:k]

    def iter_articles(self) -> Iterator[Article]:
        """Every stored article in id order (pages of ``ITER_CHUNK``, each its own read)."""
        last = ""
        while True:
            rows = (
                self._reader()
                .execute(
                    "SELECT a.id, d.doc, d.embedding FROM articles a JOIN article_docs d ON d.rowid = a.rowid "
                    "WHERE a.id > ? ORDER BY a.id LIMIT ?",
                    (last, ITER_CHUNK),
                )
                .fetchall()
            )
            if not rows:
                return
            for _id, doc, embedding in rows:
                yield self._article(doc, embedding)
            last = rows[-1][0]

    def count_articles(self) -> int:
        return int(self._reader().execute("SELECT COUNT(*) FROM articles").fetchone()[0])

    # --- search ----------------------------------------------------------------------------------

    def search(self, request: SearchRequest) -> SearchResult:
        """Run ``request`` (see ``indexer.store.SearchRequest``).

        Raises:
            QuerySyntaxError: ``request.query`` is malformed (names the position and token).
            ValueError: ``request.search_after`` is not a cursor of this sort.
        """
        node, expanded = expand(parse(request.query), self.names)
        request = dataclasses.replace(request, sort=sort_order(request, node))
        leaves = positive_leaves(node)
        lang = request.lang.lower() if request.lang else None
        size = max(0, min(request.size, MAX_SIZE))
        order = "sort_ts DESC, id ASC" if request.sort == "date" else "score DESC, sort_ts DESC, id ASC"
        conn = self._reader()
        facets: dict[str, list[tuple[str, int]]] = {}
        lists_rows = request.by_story or request.facets  # reads every matching rowid: kept for the chart
        version = self.data_version() if lists_rows else None  # read before this search's snapshot begins
        matched: Rowids | None = None
        with _transaction(conn, "DEFERRED"):  # one snapshot for the vocabulary, count, facets and page
            present = self._present(conn, node, lang)
            plan = _Plan.of(prune(node, present, lang), request, lang, present)
            grouped = None
            first_groups = request.by_story and request.sort == "relevance" and request.search_after is None
            if first_groups and plan.text_only is not None:  # the first page of groups by relevance: the best rows
                grouped = self._ranked_groups(conn, plan.text_only, size)
            if grouped is not None:
                found, matched, columns, positions, pages = grouped
                total = len(matched)
                if request.facets:
                    facets = columns.facets(positions)
            elif request.by_story:
                # (rowid, score[, time]) of every matching row, its columns read by ``itemgetter`` in C (no Python
                # step per row); relevance needs no time
                if request.sort == "relevance" and plan.text_only is not None:  # from the FTS5 index alone
                    sql, params = f"SELECT rid, score FROM ({_RANKED})", [*_BM25_WEIGHTS, plan.text_only]
                elif request.sort == "relevance":
                    sql, params = (
                        f"SELECT a.rowid, {plan.score} FROM {plan.scored} WHERE {plan.where}",
                        plan.scored_params,
                    )
                else:
                    sql = f"SELECT a.rowid, {plan.score}, a.sort_ts FROM {plan.scored} WHERE {plan.where}"
                    params = plan.scored_params
                found = conn.execute(sql, params).fetchall()
                total = len(found)
                matched = np.fromiter(map(itemgetter(0), found), np.int64, total)
                columns, positions = self._columns_at(matched)
                if request.facets:
                    facets = columns.facets(positions)
                if request.sort == "date":
                    keys = np.fromiter(map(itemgetter(2), found), np.int64, total)
                else:
                    keys = np.fromiter(map(itemgetter(1), found), np.float64, total)
                pages = columns.story_groups(positions, keys, size, self._cursor(request))
            if request.by_story:
                best = [found[p.index] for p in pages]
                docs = dict(
                    conn.execute(
                        "SELECT rowid, doc FROM article_docs WHERE rowid IN (SELECT value FROM json_each(?))",
                        (json.dumps([row[0] for row in best]),),
                    ).fetchall()
                )
                rows = [(p.article_id, docs[row[0]], row[1], p.time) for p, row in zip(pages, best, strict=True)]
                groups_meta = [(p.story_id, p.article_count, p.languages) for p in pages]
                story_docs = self._stories_by_id(conn, [p.story_id for p in pages])
            else:
                if request.facets:
                    rowids = matched = _rowids(conn, *plan.rowids())
                    total = len(rowids)
                    columns, positions = self._columns_at(rowids)
                    facets = columns.facets(positions)
                else:
                    total = int(conn.execute(*plan.count()).fetchone()[0])
                found_page = None
                if plan.text_only is not None and request.sort == "relevance" and request.search_after is None:
                    found_page = self._ranked_page(conn, plan.text_only, size)
                if found_page is None:
                    cursor_sql, cursor_params = self._after(request)
                    # the page first (SQLite keeps the best ``size`` rows while it scans), then its documents:
                    # joining every hit's document before the LIMIT would read them all
                    found_page = conn.execute(
                        f"SELECT p.id, d.doc, p.score, p.sort_ts FROM (SELECT * FROM ({plan.page_rows()}) "
                        f"WHERE 1{cursor_sql} ORDER BY {order} LIMIT ?) p "
                        f"JOIN article_docs d ON d.rowid = p.rid ORDER BY {order.replace('id ASC', 'p.id ASC')}",
                        [*plan.scored_params, *cursor_params, size],
                    ).fetchall()
                rows = found_page
                groups_meta = []
                story_docs = {}
        if matched is not None and version is not None:
            self._local.last_match = (_matching_key(request), version, matched)
        hits = [self._hit(doc, float(sc), request, leaves) for _id, doc, sc, _ts in rows]
        next_after: tuple[str, ...] | None = None
        if rows and len(rows) == size:
            _id, _doc, score, time = rows[-1]
            next_after = (str(time), _id) if request.sort == "date" else (repr(float(score)), str(time), _id)
        groups: list[StoryGroup] = []
        if request.by_story:
            groups = [
                StoryGroup(story_id=sid, best=hit, article_count=count, languages=langs, story=story_docs.get(sid))
                for (sid, count, langs), hit in zip(groups_meta, hits, strict=True)
            ]
        return SearchResult(
            total=total, hits=hits, facets=facets, next_after=next_after, groups=groups, expanded=expanded
        )

    @staticmethod
    def _ranked_page(conn: sqlite3.Connection, expression: str, size: int) -> list[Any] | None:
        """The first page by relevance of a query the FTS5 index alone answers, without visiting the
        ``articles`` row of every match: the best ``RANKED_READ * size`` rowids by score, then the ids of those that
        can be on the page (ties broken by date, then id, as the full query). None when more rows tie with the last
        one of the page than were read (the caller runs the full query)."""
        if size == 0:
            return []
        read = max(RANKED_READ * size, 200)
        best = conn.execute(
            f"SELECT rid, score FROM ({_RANKED}) ORDER BY score DESC LIMIT ?", [*_BM25_WEIGHTS, expression, read]
        ).fetchall()
        if len(best) == read and best[size - 1][1] == best[-1][1]:
            return None  # the rows tied with the page's last one may go on beyond what was read
        if len(best) >= size:
            best = [r for r in best if r[1] >= best[size - 1][1]]  # every row that can be on the page
        scores = dict(best)
        rows = conn.execute(
            "SELECT a.rowid, a.id, a.sort_ts, d.doc FROM articles a JOIN article_docs d ON d.rowid = a.rowid "
            "WHERE a.rowid IN (SELECT value FROM json_each(?))",
            (json.dumps(list(scores)),),
        ).fetchall()
        ranked = sorted(rows, key=lambda r: (-scores[r[0]], -r[2], r[1]))[:size]
        return [(article_id, doc, scores[rid], sort_ts) for rid, article_id, sort_ts, doc in ranked]

    def _ranked_groups(
        self, conn: sqlite3.Connection, expression: str, size: int
    ) -> tuple[list[Any], Rowids, FacetColumns, npt.NDArray[np.intp], list[StoryPage]] | None:
        """The first page of story groups by relevance of a query the FTS5 index alone answers, ranking
        only the best rows: every matching rowid without a score (the total, counts, languages, facets),
        then the best ``RANKED_READ * size`` rows by score. Every row scoring above the lowest score read
        has been read, so each story with such a row has its best row among them, ties by date and id; when
        they give ``size`` stories, those are the page (a story without such a row comes after all of them).

        Returns ``(rows read, every matching rowid, columns, their positions, page)``; None when the rows
        read give fewer stories (the caller ranks every row).
        """
        if size == 0:
            return None
        matched = _rowids(conn, "SELECT group_concat(rowid) FROM articles_fts WHERE articles_fts MATCH ?", [expression])
        read = max(RANKED_READ * size, 200)
        best: list[Any] = conn.execute(
            f"SELECT rid, score FROM ({_RANKED}) ORDER BY score DESC LIMIT ?", [*_BM25_WEIGHTS, expression, read]
        ).fetchall()
        complete = len(best) < read  # every matching row was read
        if not complete:
            best = [r for r in best if r[1] > best[-1][1]]  # rows tied with the last one read may go on beyond it
        columns, positions = self._columns_at(matched)
        candidates = columns.positions(np.fromiter(map(itemgetter(0), best), np.int64, len(best)))
        if candidates is None:  # pragma: no cover - the rows read are among the matching rows
            return None
        keys = np.fromiter(map(itemgetter(1), best), np.float64, len(best))
        pages = columns.story_groups(candidates, keys, size, every=positions)
        if len(pages) < size and not complete:
            return None
        return best, matched, columns, positions, pages

    def _stories_by_id(self, conn: sqlite3.Connection, story_ids: Sequence[str]) -> dict[str, Story]:
        """The stored stories of ``story_ids`` (one query, in the search's snapshot)."""
        if not story_ids:
            return {}
        rows = conn.execute(
            "SELECT id, doc, centroid FROM stories WHERE id IN (SELECT value FROM json_each(?))",
            (json.dumps(list(story_ids)),),
        ).fetchall()
        return {str(sid): self._story(doc, centroid) for sid, doc, centroid in rows}

    @staticmethod
    def _present(conn: sqlite3.Connection, node: Node, lang: str | None) -> Vocabulary:
        """The query forms of the query's words found in the word-form columns, and the tokens of its
        phrases found in the exact columns (one MATCH per form, each stopping at its first row), in this
        snapshot."""
        forms: set[str] = set()
        toks: set[str] = set()

        def walk(n: Node) -> None:
            if isinstance(n, Term):
                forms.update(f for tok in tokens(n.text) for f in query_forms(tok, lang))
            elif isinstance(n, Phrase):
                toks.update(tokens(n.text))
            elif isinstance(n, And | Or):
                for item in n.items:
                    walk(item)
            elif isinstance(n, Not):
                walk(n.item)

        def held(columns: str, terms: set[str]) -> frozenset[str]:
            return frozenset(
                t for t in terms if conn.execute(_HAS_TERM, (f"{columns} : {_fts_phrase([t])}",)).fetchone() is not None
            )

        walk(node)
        return Vocabulary(forms=held(_WORD_COLUMNS, forms), tokens=held(_EXACT_COLUMNS, toks))

    def day_lang_counts(self, request: SearchRequest) -> list[tuple[str, str, int]]:
        """Articles matching ``request`` (query and filters) per ``(day, lang)``, in one read.

        Days are ``YYYY-MM-DD`` of the sort time, ascending. The search page draws its volume chart
        from this (one query, not one per language). Right after a search on this thread that listed
        its matching rows (story groups or facets) for the same query and filters, with nothing committed
        since, those rows are counted without reading the match again (the search page's search, then
        its chart).
        """
        last = getattr(self._local, "last_match", None)
        if last is not None and last[0] == _matching_key(request) and last[1] == self.data_version():
            rowids: Rowids = last[2]  # the rows this thread's last search matched, and nothing was committed since
        else:
            node, _ = expand(parse(request.query), self.names)
            lang = request.lang.lower() if request.lang else None
            conn = self._reader()
            with _transaction(conn, "DEFERRED"):
                present = self._present(conn, node, lang)
                rowids = _rowids(conn, *_Plan.of(prune(node, present, lang), request, lang, present).rowids())
        columns, positions = self._columns_at(rowids)
        return columns.day_lang_counts(positions)

    def merged_stories(self, story_id: str) -> list[Story]:
        """Stories merged into ``story_id`` (their ``merged_into``), oldest ``first_seen`` first."""
        rows = (
            self._reader()
            .execute(
                "SELECT doc, centroid FROM stories WHERE merged_into = ? ORDER BY first_seen ASC, id ASC", (story_id,)
            )
            .fetchall()
        )
        return [self._story(doc, centroid) for doc, centroid in rows]

    @staticmethod
    def _cursor(request: SearchRequest) -> tuple[float | int, int, str] | None:
        """``search_after`` as ``(key, time, id)``: a date sort's cursor is ``(time, id)`` (its key is the
        time), a relevance sort's ``(score, time, id)`` (ties break by date, newest first)."""
        if request.search_after is None:
            return None
        try:
            if request.sort == "date":
                raw_time, last_id = request.search_after
                return int(raw_time), int(raw_time), last_id
            raw_score, raw_time, last_id = request.search_after
            return float(raw_score), int(raw_time), last_id
        except ValueError as exc:
            raise ValueError(f"search_after {request.search_after!r} is not a cursor of a {request.sort} sort") from exc

    @classmethod
    def _after(cls, request: SearchRequest) -> tuple[str, list[Any]]:
        """SQL restricting rows to those after the ``search_after`` cursor (sort order)."""
        cursor = cls._cursor(request)
        if cursor is None:
            return "", []
        key, time, last_id = cursor
        if request.sort == "date":
            return " AND (sort_ts < ? OR (sort_ts = ? AND id > ?))", [time, time, last_id]
        return (
            " AND (score < ? OR (score = ? AND (sort_ts < ? OR (sort_ts = ? AND id > ?))))",
            [key, key, time, time, last_id],
        )

    @staticmethod
    def _hit(doc: str, score: float, request: SearchRequest, leaves: Sequence[Term | Phrase]) -> Hit:
        article = Article.from_json(doc)
        marked = highlights(article, leaves) if request.highlight else {}
        return Hit(
            article=article,
            score=score,
            highlights=marked,
            matched_terms=matched_terms(article, leaves) if request.explain or not marked else (),
        )


@contextlib.contextmanager
def _transaction(conn: sqlite3.Connection, mode: str) -> Iterator[None]:
    """``BEGIN <mode>`` ... ``COMMIT`` (``ROLLBACK`` when the block raises) on an autocommit connection."""
    conn.execute(f"BEGIN {mode}")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
