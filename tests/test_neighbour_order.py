"""The related-story neighbours read the recent articles largest similarity first, ties in row order, sorting only
the first rows (``story_state._descending``): the order must be that of a full stable sort, however far the
caller reads, ties at the cut and ruled-out (-inf) rows included."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from stream.story_state import _descending


def _cases() -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    out = [
        rng.standard_normal(500).astype(np.float32),
        np.round(rng.standard_normal(500), 1).astype(np.float32),  # many ties, some at any cut
        np.full(100, 0.5, dtype=np.float32),  # all tied
        np.zeros(0, dtype=np.float32),
        np.array([0.3], dtype=np.float32),
    ]
    gated = rng.standard_normal(300).astype(np.float32)
    gated[rng.random(300) < 0.7] = -np.inf  # the date gate rules most rows out
    out.append(gated)
    with_nan = rng.standard_normal(50).astype(np.float32)
    with_nan[3] = np.nan
    out.append(with_nan)
    return out


@pytest.mark.parametrize("values", _cases())
@pytest.mark.parametrize("first", [1, 8, 64, 1000])
def test_same_order_as_a_full_stable_sort(values: np.ndarray, first: int) -> None:
    full = np.argsort(-values, kind="stable").tolist()
    assert list(_descending(values, first)) == full  # read to the end: past the partitioned rows too
    for stop in (1, first, first + 3):
        assert list(itertools.islice(_descending(values, first), stop)) == full[:stop]
