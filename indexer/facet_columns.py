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
SELECT_SQL = "SELECT rowid, " + ", ".join(COLUMNS.values()) + " FROM articles ORDER BY rowid"

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
class FacetColumns:
    """The keyword columns of the articles at one data version (``version``: the caller's tag)."""

    version: object
    rowids: Rowids
    columns: dict[str, Column]

    @classmethod
    def of(cls, rows: Iterable[Sequence[object]], version: object) -> FacetColumns:
        """From ``SELECT_SQL`` rows (rowid first, then the columns of ``COLUMNS`` in order)."""
        listed = list(rows)
        rowids = np.fromiter((int(r[0]) for r in listed), dtype=np.int64, count=len(listed))  # type: ignore[call-overload]
        columns = {
            name: Column.of([None if r[i + 1] is None else str(r[i + 1]) for r in listed])
            for i, name in enumerate(COLUMNS)
        }
        return cls(version=version, rowids=rowids, columns=columns)

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

    def day_lang_counts(self, positions: npt.NDArray[np.intp]) -> list[tuple[str, str, int]]:
        """``(day, lang, count)`` of the rows at ``positions``, by day then language."""
        day, lang = self.columns["day"], self.columns["lang"]
        width = len(lang.values) + 1
        pairs = day.codes[positions].astype(np.int64) * width + lang.codes[positions]
        counts = np.bincount(pairs, minlength=(len(day.values) + 1) * width)
        return [
            (day.values[int(k) // width], lang.values[int(k) % width], int(counts[k])) for k in np.flatnonzero(counts)
        ]
