"""The keyword columns of every stored article, held in memory as integer codes, for counting.

Facets and the search page's day-by-language chart count the matching articles per value of a keyword
column. Done in SQL, that means reading every matching row (a query matching 50,000 articles wrote 50,000
rows into a temporary table, then grouped it five times). Here the embedded store reads the columns once
per data version into arrays (``rowid`` sorted, and per column one code per row, codes numbered in the
values' sort order), and a count is a ``numpy.bincount`` over the codes of the matching rowids.

The answers are those of the SQL they replace: ``GROUP BY k ORDER BY COUNT(*) DESC, k ASC LIMIT n``
(``NULL`` left out), and for days the ``n`` most recent in date order. Python's string order is SQLite's
``BINARY`` order (UTF-8 bytes compare in code point order), so ties break the same way.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from indexer.documents import DAY_FACET_SIZE, FACET_SIZE

# facet name -> column of the ``articles`` table, in the order ``SELECT_SQL`` reads them
COLUMNS: dict[str, str] = {
    "lang": "lang",
    "source": "source",
    "source_type": "source_type",
    "story": "story_id",
    "day": "day",
}
SELECT_SQL = "SELECT rowid, " + ", ".join(COLUMNS.values()) + ", id, sort_ts FROM articles ORDER BY rowid"

Codes = npt.NDArray[np.int32]
Rowids = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class Column:
    """One keyword column: its distinct values (sorted; ``None`` is the code ``len(values)``) and a code per row."""

    values: tuple[str, ...]
    codes: Codes

    @classmethod
    def of(cls, cells: Sequence[str | None]) -> Column:
        values = tuple(sorted({c for c in cells if c is not None}))
        index: dict[str | None, int] = {v: i for i, v in enumerate(values)}
        index[None] = len(values)
        codes = np.fromiter((index[c] for c in cells), dtype=np.int32, count=len(cells))
        return cls(values=values, codes=codes)

    def counts(self, positions: npt.NDArray[np.intp]) -> npt.NDArray[np.int64]:
        """Rows per value (``NULL`` not counted) among the rows at ``positions``."""
        counted = np.bincount(self.codes[positions], minlength=len(self.values) + 1)
        return counted[: len(self.values)]


@dataclass(frozen=True, slots=True)
class StoryPage:
    """One story group of a page: its best row (``article_id``; ``index`` among the rows passed in; its sort
    time), how many rows of the story matched and their languages."""

    story_id: str
    article_id: str
    index: int
    article_count: int
    languages: tuple[str, ...]
    time: int  # the best row's sort time (epoch microseconds)


@dataclass(frozen=True, slots=True)
class FacetColumns:
    """The keyword columns of the articles at one data version (``version``: the caller's tag)."""

    version: object
    rowids: Rowids
    columns: dict[str, Column]
    ids: tuple[str, ...]  # the article ids, sorted
    id_rank: Codes  # per row: the place of its id in ``ids`` (id order without comparing strings)
    times: Rowids  # per row: its sort time (epoch microseconds), relevance ties break by it

    @classmethod
    def of(cls, rows: Iterable[Sequence[object]], version: object) -> FacetColumns:
        """From ``SELECT_SQL`` rows (rowid first, then the columns of ``COLUMNS`` in order, the id, the sort time)."""
        listed = list(rows)
        rowids = np.fromiter((int(r[0]) for r in listed), dtype=np.int64, count=len(listed))  # type: ignore[call-overload]
        columns = {
            name: Column.of([None if r[i + 1] is None else str(r[i + 1]) for r in listed])
            for i, name in enumerate(COLUMNS)
        }
        ids = [str(r[len(COLUMNS) + 1]) for r in listed]
        times = np.fromiter((int(r[len(COLUMNS) + 2]) for r in listed), dtype=np.int64, count=len(listed))  # type: ignore[call-overload]
        order = sorted(range(len(ids)), key=ids.__getitem__)
        id_rank = np.empty(len(ids), dtype=np.int32)
        id_rank[np.asarray(order, dtype=np.intp)] = np.arange(len(ids), dtype=np.int32)
        return cls(
            version=version,
            rowids=rowids,
            columns=columns,
            ids=tuple(ids[i] for i in order),
            id_rank=id_rank,
            times=times,
        )

    def positions(self, rowids: Rowids) -> npt.NDArray[np.intp] | None:
        """Where ``rowids`` are in the arrays; None when one of them is unknown (the arrays are older)."""
        if not len(rowids):
            return np.zeros(0, dtype=np.intp)
        found = np.searchsorted(self.rowids, rowids)
        if int(found.max()) >= len(self.rowids) or not np.array_equal(self.rowids[found], rowids):
            return None
        return found

    def facets(self, positions: npt.NDArray[np.intp]) -> dict[str, list[tuple[str, int]]]:
        """The facets of ``indexer.store.FACETS`` over the rows at ``positions``."""
        out: dict[str, list[tuple[str, int]]] = {}
        for name, column in self.columns.items():
            counts = column.counts(positions)
            present = np.flatnonzero(counts)
            if name == "day":  # the most recent DAY_FACET_SIZE days, oldest first
                kept = present[-DAY_FACET_SIZE:]
                out[name] = [(column.values[i], int(counts[i])) for i in kept]
                continue
            order = present[np.lexsort((present, -counts[present]))][:FACET_SIZE]  # count desc, value asc
            out[name] = [(column.values[i], int(counts[i])) for i in order]
        return out

    def story_groups(
        self,
        positions: npt.NDArray[np.intp],
        keys: npt.NDArray[np.float64] | npt.NDArray[np.int64],
        size: int,
        after: tuple[float | int, int, str] | None = None,
        every: npt.NDArray[np.intp] | None = None,
    ) -> list[StoryPage]:
        """The matching rows grouped by story: for each story, its best row (highest key, then newest, then
        smallest id), groups in the order of their best rows, after the cursor ``(key, time, id)``, at most
        ``size``.

        ``positions``: the matching rows; ``keys``: their sort keys (score or time), in the same order.
        ``every``: when ``positions`` holds only the rows that can be best rows (the caller has proven the
        page's groups are among them), the positions of every matching row, which the counts and languages
        are taken over. Rows without a story are left out.
        """
        story, lang = self.columns["story"], self.columns["lang"]
        codes = story.codes[positions]
        with_story = codes != len(story.values)
        codes, keys, where = codes[with_story], keys[with_story], positions[with_story]
        if not len(codes):
            return []
        ranks, times = self.id_rank[where], self.times[where]
        order = np.lexsort((ranks, -times, -keys, codes))  # per story: best key first, then newest, smallest id
        firsts = order[np.r_[True, codes[order][1:] != codes[order][:-1]]]
        best_keys, best_times, best_ranks = keys[firsts], times[firsts], ranks[firsts]
        if after is not None:
            key, time, last_id = after
            after_rank = bisect.bisect_right(self.ids, last_id)  # ids > the cursor's id have this rank or more
            later = (best_keys < key) | (
                (best_keys == key) & ((best_times < time) | ((best_times == time) & (best_ranks >= after_rank)))
            )
            firsts, best_keys, best_times, best_ranks = (
                firsts[later],
                best_keys[later],
                best_times[later],
                best_ranks[later],
            )
        page = firsts[np.lexsort((best_ranks, -best_times, -best_keys))][:size]
        indexes = np.flatnonzero(with_story)
        page_codes = codes[page]
        all_codes, all_where = codes, where
        if every is not None:
            all_codes = story.codes[every]
            all_where = every
        counts = np.bincount(all_codes, minlength=len(story.values) + 1)
        shown = np.isin(all_codes, page_codes)  # the rows of the page's stories, then their (story, language) pairs
        width = len(lang.values) + 1
        pairs = np.unique(all_codes[shown].astype(np.int64) * width + lang.codes[all_where[shown]])
        languages: dict[int, list[str]] = {}
        for pair in pairs.tolist():
            languages.setdefault(pair // width, []).append(lang.values[pair % width])
        out = []
        for i in page:
            langs = tuple(sorted(languages[int(codes[i])]))
            out.append(
                StoryPage(
                    story_id=story.values[codes[i]],
                    article_id=self.ids[ranks[i]],
                    index=int(indexes[i]),
                    article_count=int(counts[codes[i]]),
                    languages=langs,
                    time=int(times[i]),
                )
            )
        return out

    def day_lang_counts(self, positions: npt.NDArray[np.intp]) -> list[tuple[str, str, int]]:
        """``(day, lang, count)`` of the rows at ``positions``, by day then language."""
        day, lang = self.columns["day"], self.columns["lang"]
        width = len(lang.values) + 1
        pairs = day.codes[positions].astype(np.int64) * width + lang.codes[positions]
        counts = np.bincount(pairs, minlength=(len(day.values) + 1) * width)
        present = np.flatnonzero(counts)
        # whole arrays to Python ints at once (``tolist``), then plain indexing: no numpy scalar per row
        days, langs = np.divmod(present, width)
        day_values, lang_values = day.values, lang.values
        return [
            (day_values[d], lang_values[k], n)
            for d, k, n in zip(days.tolist(), langs.tolist(), counts[present].tolist(), strict=True)
        ]
