"""The multilingual bench's stream orders: every order keeps the dated records in date order and places the
undated ones elsewhere, so the spread over orders measures where undated reports come, nothing else."""

import hashlib
from typing import Any

from bench.multilingual_stories import Spread, stream


def _records() -> list[dict[str, Any]]:
    dated = [{"url": f"https://dated.example/{i}", "published": f"2024-12-{10 + i:02d}"} for i in range(8)]
    undated = [{"url": f"https://undated.example/{i}", "published": ""} for i in range(16)]
    return dated + undated


def test_every_order_keeps_the_dated_records_in_date_order_and_moves_the_undated_ones() -> None:
    records = _records()
    orders = [stream(records, seed=seed) for seed in ("", "order1", "order2")]
    for order in orders:
        assert sorted(r["url"] for r in order) == sorted(r["url"] for r in records)
        days = [r["published"] for r in order if r["published"]]
        assert days == sorted(days)
    places = [tuple(i for i, r in enumerate(order) if not r["published"]) for order in orders]
    assert len(set(places)) == 3  # the undated records sit elsewhere in each order
    # the README's order is the default: the records by the SHA-1 of their URL, the dated ones then by date
    readme = sorted(records, key=lambda r: hashlib.sha1(r["url"].encode()).hexdigest())
    dated = iter(sorted((r for r in records if r["published"]), key=lambda r: r["published"]))
    assert stream(records) == orders[0] == [r if not r["published"] else next(dated) for r in readme]


def test_spread_row_shows_the_mean_the_range_and_the_worst_order() -> None:
    spread = Spread(f1=[0.8, 0.9], hit=[15, 13], events=15, per_event=[1.2, 1.6])
    row = spread.row("defaults", "all")
    assert "**0.850** ± 0.071" in row and "0.800 – 0.900" in row
    assert "| 14.00 (13) / 15 | 1.40 | 1.60 |" in row
