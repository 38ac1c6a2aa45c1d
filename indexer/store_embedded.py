"""The embedded search store: one SQLite file (WAL) with FTS5 for text and stored vectors.

Tables:

- ``articles``: one small row per article id (upserts keep the rowid): keyword columns for filters and
  facets (lang, source, source_type, story_id, day) and the sort time in epoch microseconds, so a scan
  of the filters never reads the documents.
- ``article_docs``: by the same rowid, the article JSON (without the embedding) and the embedding as
  a float32 blob.
- ``articles_fts``: FTS5 keyed by the articles rowid over the exact tokens of the title and text
  (``indexer.query.tokens``: case, Latin diacritics and Arabic variants folded, so ``صيدنايا`` finds
  ``صيدنايا`` and ``SAYDNAYA`` finds ``Saydnaya``), for phrases, and over their word forms
  (``title_stems``/``body_stems``, ``indexer.analysis.document_forms``: ``detaine`` for "detainees" in
  an English article), for words. Both are computed in Python, as for Elasticsearch (FTS5 only splits
  the space-joined tokens).
- ``stories``: story JSON, first/last seen, ``merged_into`` and the centroid (float32 blob).
- ``meta``: the embedding dimension fixed by the first vector written.

The query AST (``indexer.query``) becomes a boolean SQL expression whose text leaves are
``rowid IN (SELECT rowid FROM articles_fts WHERE articles_fts MATCH ?)`` (so NOT, OR and field
filters mix freely); relevance is BM25 over the OR of the positive terms (title weighted
``TITLE_WEIGHT``), ties broken by id. A search evaluates the match once into a temporary table, and
counts, facets, groups and the page are read from it, in one read transaction (one snapshot).
One writer process and any number of readers may share the file (WAL, ``busy_timeout``, writes in
``BEGIN IMMEDIATE`` transactions); one ``EmbeddedStore`` may be shared by threads (a lock serialises
calls).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from collections.abc import Set as AbstractSet
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from indexer.analysis import document_forms, query_forms
from indexer.documents import (
    DAY_FACET_SIZE,
    FACET_SIZE,
    day_of,
    epoch_micros,
    sort_time,
    source_type_of,
)
from indexer.errors import StoreError
from indexer.highlight import highlights, matched_terms
from indexer.names import NO_NAMES, NameGroups, expand
from indexer.query import And, FieldFilter, MatchAll, Node, Not, Or, Phrase, Term, parse, positive_leaves, tokens
from indexer.store import FACETS, Hit, SearchRequest, SearchResult, StoryGroup, WriteFailure
from stream.article import Article
from stream.story import Story

logger = logging.getLogger(__name__)

TITLE_WEIGHT = 3.0  # BM25 weight of the title column against 1.0 for the text: a title hit is the topic
_BM25_WEIGHTS = (TITLE_WEIGHT, 1.0, TITLE_WEIGHT, 1.0)  # title, body, title_stems, body_stems
BUSY_TIMEOUT_MS = 30_000  # wait this long for the writer's lock before failing
ITER_CHUNK = 500  # rows per page when iterating every article (keeps the lock short)
MAX_SIZE = 1000  # largest page a search may ask for
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
_HITS = """
CREATE TEMP TABLE IF NOT EXISTS hits (
    rid INTEGER PRIMARY KEY, score REAL NOT NULL, sort_ts INTEGER NOT NULL, id TEXT NOT NULL,
    story_id TEXT, lang TEXT NOT NULL, source TEXT NOT NULL, source_type TEXT NOT NULL, day TEXT NOT NULL
)
"""

_VOCAB = "CREATE VIRTUAL TABLE IF NOT EXISTS temp.articles_vocab USING fts5vocab(main, articles_fts, 'row')"

_FILTER_COLUMNS = {"lang": "a.lang", "source": "a.source", "story": "a.story_id"}
_FACET_COLUMNS = {"lang": "lang", "source": "source", "source_type": "source_type", "story": "story_id"}


def _fts_phrase(toks: Sequence[str]) -> str:
    return '"' + " ".join(toks) + '"'  # tokens are letters/digits only: no quote to escape


def fts_expression(leaf: Term | Phrase, lang: str | None = None, present: AbstractSet[str] | None = None) -> str:
    """The FTS5 MATCH expression of one word or phrase (column filter by field).

    A phrase: its exact tokens, adjacent. A word: for each token, one of its query forms
    (``indexer.analysis.query_forms``, for ``lang`` or for every language of its script) among the
    article's word forms. ``present``: the tokens the index holds, when known; forms outside it are left
    out (they can match nothing), which keeps a query of many name variants and forms small.
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
            forms = tuple(f for f in forms if f in present) or forms[:1]  # none indexed: one that matches nothing
        parts.append(f"{form_columns} : (" + " OR ".join(_fts_phrase([f]) for f in forms) + ")")
    return "(" + " AND ".join(parts) + ")"


def fts_query(node: Node, lang: str | None = None, present: AbstractSet[str] | None = None) -> str | None:
    """One FTS5 MATCH expression for a text-only query (words, phrases, AND, OR, NOT under an AND with
    a positive part), or None when the query needs SQL (field filters, a NOT alone, everything)."""
    if isinstance(node, Term | Phrase):
        return fts_expression(node, lang, present)
    if isinstance(node, Or):
        parts = [fts_query(item, lang, present) for item in node.items]
        return None if any(p is None for p in parts) else "(" + " OR ".join(str(p) for p in parts) + ")"
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


def split_for_fts(
    node: Node, lang: str | None = None, present: AbstractSet[str] | None = None
) -> tuple[str | None, Node]:
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


def prune(node: Node, present: AbstractSet[str], lang: str | None = None) -> Node | None:
    """``node`` without the words and phrases the index cannot match (a token, or every form of it,
    absent from its vocabulary), simplified; None when nothing can match. Same answers, smaller MATCH."""
    if isinstance(node, Term):
        ok = all(any(f in present for f in query_forms(tok, lang)) for tok in tokens(node.text))
        return node if ok else None
    if isinstance(node, Phrase):
        return node if all(tok in present for tok in tokens(node.text)) else None
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


def _compile(node: Node, params: list[Any], lang: str | None = None, present: AbstractSet[str] | None = None) -> str:
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
    return tuple(float(x) for x in np.frombuffer(blob, dtype=np.float32))


class EmbeddedStore:
    """SQLite FTS5 + vectors at ``path`` (created with its parent directory on first use)."""

    def __init__(self, path: Path, *, names: NameGroups | None = None) -> None:
        """``names``: the topic's name groups a query word expands to (``indexer.names``); none by default."""
        self.path = Path(path)
        self.names = names or NO_NAMES
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._dims: int | None = None

    # --- connection ------------------------------------------------------------------------------

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                conn = sqlite3.connect(
                    self.path, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False, isolation_level=None
                )
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
                conn.executescript(_SCHEMA)
                conn.execute(_HITS)
                conn.execute(_VOCAB)
            except sqlite3.Error as exc:
                raise StoreError(f"embedded store {self.path}: cannot open: {exc}") from exc
            self._check_layout(conn)
            self._conn = conn
            row = conn.execute("SELECT value FROM meta WHERE key = 'embedding_dims'").fetchone()
            self._dims = int(row[0]) if row else None
        return self._conn

    def _check_layout(self, conn: sqlite3.Connection) -> None:
        """Refuse a file written with another table layout (rather than fail later on a missing column)."""
        row = conn.execute("SELECT value FROM meta WHERE key = 'layout'").fetchone()
        columns = {r[1] for r in conn.execute("PRAGMA table_info(articles)")}
        if row is not None and row[0] == "2" and "doc" not in columns:
            self._upgrade_from_2(conn)
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

    def _upgrade_from_2(self, conn: sqlite3.Connection) -> None:
        """Layout 2 (folded text, no stems) -> 3: rebuild the text index from the stored articles."""
        logger.info("embedded store: rebuilding the text index with word forms (layout 2 -> 3)")
        with _transaction(conn, "IMMEDIATE"):
            conn.execute("DROP TABLE IF EXISTS articles_fts")
            conn.execute(_FTS_SCHEMA)
            for rowid, doc in conn.execute("SELECT rowid, doc FROM article_docs").fetchall():
                conn.execute(_FTS_INSERT, (rowid, *_fts_row(Article.from_json(doc))))
            conn.execute("UPDATE meta SET value = ? WHERE key = 'layout'", (str(LAYOUT),))

    def ensure_ready(self) -> None:
        """Create the file and tables (idempotent)."""
        with self._lock:
            _ = self.conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

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
        """Upsert story documents (with their centroids) by id.

        Raises:
            StoreError: SQLite failed (busy beyond ``BUSY_TIMEOUT_MS``, disk full); nothing was written.
        """
        with self._lock:
            conn = self.conn
            try:
                with _transaction(conn, "IMMEDIATE"):
                    conn.executemany(
                        """
                        INSERT INTO stories (id, first_seen, last_seen, merged_into, doc, centroid)
                        VALUES (?, ?, ?, ?, ?, ?)
                        ON CONFLICT(id) DO UPDATE SET first_seen = excluded.first_seen,
                            last_seen = excluded.last_seen, merged_into = excluded.merged_into,
                            doc = excluded.doc, centroid = excluded.centroid
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
        data["centroid"] = None if centroid is None else list(np.frombuffer(centroid, dtype=np.float32))
        return Story.from_dict(data)

    def get_article(self, article_id: str) -> Article | None:
        """The stored article with its embedding (float32 precision), or None."""
        with self._lock:
            row = self.conn.execute(
                "SELECT d.doc, d.embedding FROM articles a JOIN article_docs d ON d.rowid = a.rowid WHERE a.id = ?",
                (article_id,),
            ).fetchone()
        return None if row is None else self._article(row[0], row[1])

    def get_story(self, story_id: str) -> Story | None:
        with self._lock:
            row = self.conn.execute("SELECT doc, centroid FROM stories WHERE id = ?", (story_id,)).fetchone()
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
        with self._lock:
            rows = self.conn.execute(sql, params).fetchall()
        return [self._story(doc, centroid) for doc, centroid in rows]

    def story_articles(self, story_id: str) -> list[Article]:
        """Articles of the story, oldest first (publication or fetch time, then id)."""
        with self._lock:
            rows = self.conn.execute(
                "SELECT d.doc FROM articles a JOIN article_docs d ON d.rowid = a.rowid "
                "WHERE a.story_id = ? ORDER BY a.sort_ts ASC, a.id ASC",
                (story_id,),
            ).fetchall()
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
        with self._lock:
            rows = self.conn.execute(sql, params).fetchall()
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
        """Every stored article in id order (pages of ``ITER_CHUNK``; the lock is not held between pages)."""
        last = ""
        while True:
            with self._lock:
                rows = self.conn.execute(
                    "SELECT a.id, d.doc, d.embedding FROM articles a JOIN article_docs d ON d.rowid = a.rowid "
                    "WHERE a.id > ? ORDER BY a.id LIMIT ?",
                    (last, ITER_CHUNK),
                ).fetchall()
            if not rows:
                return
            for _id, doc, embedding in rows:
                yield self._article(doc, embedding)
            last = rows[-1][0]

    def count_articles(self) -> int:
        with self._lock:
            return int(self.conn.execute("SELECT COUNT(*) FROM articles").fetchone()[0])

    # --- search ----------------------------------------------------------------------------------

    def search(self, request: SearchRequest) -> SearchResult:
        """Run ``request`` (see ``indexer.store.SearchRequest``).

        Raises:
            QuerySyntaxError: ``request.query`` is malformed (names the position and token).
            ValueError: ``request.search_after`` is not a cursor of this sort.
        """
        node, expanded = expand(parse(request.query), self.names)
        leaves = positive_leaves(node)
        lang = request.lang.lower() if request.lang else None
        size = max(0, min(request.size, MAX_SIZE))
        if request.sort == "date":
            order, key_column = "sort_ts DESC, id ASC", "sort_ts"
        else:
            order, key_column = "score DESC, id ASC", "score"
        with self._lock:
            conn = self.conn
            with _transaction(conn, "DEFERRED"):  # one snapshot for the vocabulary, count, facets and page
                present = self._present(conn, node, lang)
                fill, params = self._fill(prune(node, present, lang), request, lang, present)
                # temp.hits is empty here: emptied at the end of every search, or rolled back with it
                conn.execute(fill, params)
                total = int(conn.execute("SELECT COUNT(*) FROM temp.hits").fetchone()[0])
                facets = self._facets(conn) if request.facets else {}
                if request.by_story:
                    rows, groups_meta = self._story_rows(conn, order, key_column, request, size)
                else:
                    cursor_sql, cursor_params = self._after(request, key_column)
                    # the page first, then its documents: joining every hit's document before the
                    # LIMIT would read them all
                    rows = conn.execute(
                        "SELECT h.id, d.doc, h.score, h.sort_ts FROM (SELECT rid, id, score, sort_ts FROM temp.hits "
                        f"WHERE 1{cursor_sql} ORDER BY {order} LIMIT ?) h "
                        f"JOIN article_docs d ON d.rowid = h.rid ORDER BY {order.replace('id ASC', 'h.id ASC')}",
                        [*cursor_params, size],
                    ).fetchall()
                    groups_meta = []
                conn.execute("DELETE FROM temp.hits")
        hits = [self._hit(doc, float(sc), request, leaves) for _id, doc, sc, _ts in rows]
        next_after: tuple[str, ...] | None = None
        if rows and len(rows) == size:
            last = rows[-1]
            key = str(last[3]) if request.sort == "date" else repr(float(last[2]))
            next_after = (key, last[0])
        groups: list[StoryGroup] = []
        if request.by_story:
            stories = {sid: self.get_story(sid) for sid, _c, _l in groups_meta}
            groups = [
                StoryGroup(story_id=sid, best=hit, article_count=count, languages=langs, story=stories[sid])
                for (sid, count, langs), hit in zip(groups_meta, hits, strict=True)
            ]
        return SearchResult(
            total=total, hits=hits, facets=facets, next_after=next_after, groups=groups, expanded=expanded
        )

    @staticmethod
    def _present(conn: sqlite3.Connection, node: Node, lang: str | None) -> frozenset[str]:
        """The query forms of the query's words, and the tokens of its phrases, that the index holds
        (``fts5vocab``), in this snapshot."""
        wanted: set[str] = set()

        def walk(n: Node) -> None:
            if isinstance(n, Term):
                wanted.update(f for tok in tokens(n.text) for f in query_forms(tok, lang))
            elif isinstance(n, Phrase):
                wanted.update(tokens(n.text))
            elif isinstance(n, And | Or):
                for item in n.items:
                    walk(item)
            elif isinstance(n, Not):
                walk(n.item)

        walk(node)
        return frozenset(
            f for f in wanted if conn.execute("SELECT 1 FROM temp.articles_vocab WHERE term = ?", (f,)).fetchone()
        )

    def _fill(
        self, node: Node | None, request: SearchRequest, lang: str | None, present: AbstractSet[str]
    ) -> tuple[str, list[Any]]:
        """The INSERT of the matching rows (with their scores) into ``temp.hits``, and its parameters.

        ``node``: the query pruned to what the index can match (None: nothing can).
        """
        if node is None:
            node = Not(MatchAll())
        leaves = positive_leaves(node)
        params: list[Any] = []
        driving, rest = split_for_fts(node, lang, present)
        ranked = (
            "SELECT rowid AS rid, -bm25(articles_fts, ?, ?, ?, ?) AS score FROM articles_fts WHERE articles_fts MATCH ?"
        )
        if driving is not None and request.sort == "date":
            # the text part is one FTS5 query that selects; a date sort needs no score
            matching = "SELECT rowid AS rid FROM articles_fts WHERE articles_fts MATCH ?"
            source = f"({matching}) s JOIN articles a ON a.rowid = s.rid"
            params.append(driving)
            score = "0.0"
        elif driving is not None:
            # the text part is one FTS5 query that selects and ranks; SQL checks filters on its rows
            source = f"({ranked}) s JOIN articles a ON a.rowid = s.rid"
            params += [*_BM25_WEIGHTS, driving]
            score = "s.score"
        elif leaves:
            source = f"articles a LEFT JOIN ({ranked}) s ON s.rid = a.rowid"
            params += [*_BM25_WEIGHTS, " OR ".join(f"({fts_expression(leaf, lang, present)})" for leaf in leaves)]
            score = "COALESCE(s.score, 0.0)"
        else:
            source, score = "articles a", "0.0"
        where = [_compile(rest, params, lang, present), *self._filters(request, params)]
        fill = (
            "INSERT INTO temp.hits (rid, score, sort_ts, id, story_id, lang, source, source_type, day) "
            f"SELECT a.rowid, {score}, a.sort_ts, a.id, a.story_id, a.lang, a.source, a.source_type, a.day "
            f"FROM {source} WHERE " + " AND ".join(where)
        )
        return fill, params

    def day_lang_counts(self, request: SearchRequest) -> list[tuple[str, str, int]]:
        """Articles matching ``request`` (query and filters) per ``(day, lang)``, in one read.

        Days are ``YYYY-MM-DD`` of the sort time, ascending. The search page draws its volume chart
        from this (one query, not one per language).
        """
        node, _ = expand(parse(request.query), self.names)
        lang = request.lang.lower() if request.lang else None
        with self._lock:
            conn = self.conn
            with _transaction(conn, "DEFERRED"):
                present = self._present(conn, node, lang)
                fill, params = self._fill(prune(node, present, lang), request, lang, present)
                conn.execute("DELETE FROM temp.hits")
                conn.execute(fill, params)
                rows = conn.execute(
                    "SELECT day, lang, COUNT(*) FROM temp.hits GROUP BY day, lang ORDER BY day, lang"
                ).fetchall()
                conn.execute("DELETE FROM temp.hits")
        return [(str(day), str(lang), int(count)) for day, lang, count in rows]

    def merged_stories(self, story_id: str) -> list[Story]:
        """Stories merged into ``story_id`` (their ``merged_into``), oldest ``first_seen`` first."""
        with self._lock:
            rows = self.conn.execute(
                "SELECT doc, centroid FROM stories WHERE merged_into = ? ORDER BY first_seen ASC, id ASC", (story_id,)
            ).fetchall()
        return [self._story(doc, centroid) for doc, centroid in rows]

    @staticmethod
    def _filters(request: SearchRequest, params: list[Any]) -> list[str]:
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

    @staticmethod
    def _after(request: SearchRequest, key_column: str) -> tuple[str, list[Any]]:
        """SQL restricting ``temp.hits`` rows to those after the ``search_after`` cursor (sort order)."""
        if request.search_after is None:
            return "", []
        try:
            raw_key, last_id = request.search_after
            key: float | int = int(raw_key) if request.sort == "date" else float(raw_key)
        except ValueError as exc:
            raise ValueError(f"search_after {request.search_after!r} is not a cursor of a {request.sort} sort") from exc
        return f" AND ({key_column} < ? OR ({key_column} = ? AND id > ?))", [key, key, last_id]

    @staticmethod
    def _facets(conn: sqlite3.Connection) -> dict[str, list[tuple[str, int]]]:
        out: dict[str, list[tuple[str, int]]] = {}
        for name in FACETS:
            if name == "day":
                rows = conn.execute(
                    "SELECT day, COUNT(*) FROM temp.hits GROUP BY day ORDER BY day DESC LIMIT ?", (DAY_FACET_SIZE,)
                ).fetchall()
                out[name] = [(str(k), int(c)) for k, c in reversed(rows)]
                continue
            column = _FACET_COLUMNS[name]
            rows = conn.execute(
                f"SELECT {column} AS k, COUNT(*) AS c FROM temp.hits WHERE {column} IS NOT NULL "
                "GROUP BY k ORDER BY c DESC, k ASC LIMIT ?",
                (FACET_SIZE,),
            ).fetchall()
            out[name] = [(str(k), int(c)) for k, c in rows]
        return out

    def _story_rows(
        self, conn: sqlite3.Connection, order: str, key_column: str, request: SearchRequest, size: int
    ) -> tuple[list[Any], list[tuple[str, int, tuple[str, ...]]]]:
        """The best hit of each matching story (groups in the sort order of their best hits)."""
        cursor_sql, cursor_params = self._after(request, key_column)
        # per story: the best key, then the smallest id among the rows with it (SQLite gives the bare
        # column rid from the row of the MIN), then the page of stories, then their documents; an index
        # made for this query (and dropped after it) makes both lookups seeks
        conn.execute("DROP INDEX IF EXISTS temp.hits_story")
        conn.execute(f"CREATE INDEX temp.hits_story ON hits(story_id, {key_column}, id)")
        rows = conn.execute(
            f"WITH g AS (SELECT story_id, MAX({key_column}) AS best, COUNT(*) AS cnt FROM temp.hits "
            "WHERE story_id IS NOT NULL GROUP BY story_id), "
            f"b AS (SELECT h.story_id, MIN(h.id) AS id, h.rid, g.best AS {key_column}, g.cnt FROM g "
            f"JOIN temp.hits h ON h.story_id = g.story_id AND h.{key_column} = g.best GROUP BY h.story_id), "
            f"p AS (SELECT * FROM b WHERE 1{cursor_sql} ORDER BY {order} LIMIT ?) "
            "SELECT p.id, d.doc, h.score, h.sort_ts, p.story_id, p.cnt FROM p "
            "JOIN temp.hits h ON h.rid = p.rid JOIN article_docs d ON d.rowid = p.rid "
            f"ORDER BY {order.replace(key_column, 'p.' + key_column).replace('id ASC', 'p.id ASC')}",
            [*cursor_params, size],
        ).fetchall()
        story_ids = [r[4] for r in rows]
        langs: dict[str, list[str]] = {}
        if story_ids:
            for sid, lang in conn.execute(
                "SELECT DISTINCT story_id, lang FROM temp.hits WHERE story_id IN (SELECT value FROM json_each(?))",
                (json.dumps(story_ids),),
            ):
                langs.setdefault(sid, []).append(lang)
        conn.execute("DROP INDEX temp.hits_story")  # other searches fill the table faster without it
        meta = [(r[4], int(r[5]), tuple(sorted(langs.get(r[4], [])))) for r in rows]
        return [r[:4] for r in rows], meta

    @staticmethod
    def _hit(doc: str, score: float, request: SearchRequest, leaves: Sequence[Term | Phrase]) -> Hit:
        article = Article.from_json(doc)
        return Hit(
            article=article,
            score=score,
            highlights=highlights(article, leaves) if request.highlight else {},
            matched_terms=matched_terms(article, leaves),
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
