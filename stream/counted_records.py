"""Which records a stage has counted lately, so that each is counted once.

A stage counts every record it takes under one status (``sednaya_articles_total``: consumed = the sum over
the statuses, docs/runbook.md). When the store turns out to be down after part of a batch was handled,
``sednaya_monitor.store_guard.StoreGuard`` makes the worker hand the whole batch again, uncommitted; the
records handled the first time must not be counted a second time (nor under a second status: the alert
stage decides a redelivered event differently). A record is known by ``(topic, partition, offset, key)``:
the key too, so that a topic whose offsets start again (a broker restarted empty, as the memory-engine
stand-in does) is not taken for the old records.
"""

from __future__ import annotations

from collections import OrderedDict

from stream.bus import Record

REMEMBERED = 65_536  # records remembered (far more than a batch; a redone batch comes at once)


class CountedRecords:
    """The last ``size`` records counted, oldest forgotten first."""

    def __init__(self, size: int = REMEMBERED) -> None:
        self._size = size
        self._seen: OrderedDict[tuple[str, int, int, str], None] = OrderedDict()

    def first_time(self, record: Record) -> bool:
        """True the first time ``record`` is asked about (count it now), False after."""
        key = (record.topic, record.partition, record.offset, record.key)
        if key in self._seen:
            return False
        self._seen[key] = None
        if len(self._seen) > self._size:
            self._seen.popitem(last=False)
        return True
