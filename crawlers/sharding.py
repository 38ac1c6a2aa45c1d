"""Sources split across crawl processes by a stable hash of their id (``crawl_shard_index`` of
``crawl_shard_count``).

Each crawl process polls its share of the registry and keeps its own crawl state (seen URLs,
conditional-GET validators) in its own data directory: the validators belong to its sources, and the
articles of a source are found by the process that polls it. The hash is SHA-256 of the source id, not
Python's ``hash`` (salted per process), so every process, on every host and every start, agrees on the
split; adding a source moves no other source. Changing ``crawl_shard_count`` moves sources between
processes: the new owner of a source starts with no validators for it (one unconditional fetch per
feed) and with its own seen-URL list (articles it meets again are published again, and the pipeline
keeps them once: every effect is keyed by the article id).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from crawlers.registry import Source


def shard_of(source_id: str, count: int) -> int:
    """The shard (0 .. ``count`` - 1) that polls ``source_id``."""
    if count < 1:
        raise ValueError(f"shard count {count!r} for source {source_id!r}: must be at least 1")
    digest = hashlib.sha256(source_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % count


def shard(sources: Sequence[Source], index: int, count: int) -> list[Source]:
    """The sources of shard ``index`` of ``count``, in registry order (all of them when ``count`` is 1)."""
    if not 0 <= index < count:
        raise ValueError(f"shard index {index!r} of {count!r} shards: must be 0 .. {count - 1}")
    return [s for s in sources if shard_of(s.id, count) == index]
