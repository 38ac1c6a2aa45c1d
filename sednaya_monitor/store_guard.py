"""Tell "the store is down" from "this record failed" for the stages that write to the store.

A store adapter reports a failed write per document (``WriteFailure(transient=True)``) or raises
(``StoreError``, a transport error) whatever the cause: a document the store throttled, or a store that
is not there at all. The two need opposite treatment: a record that fails is retried a few times and
then dead-lettered so the stage goes on; a store that is down must not send the whole stream to the
dead-letter topic, the batch must wait uncommitted until the store is back (``stream.worker``
does that for ``UnavailableError`` and turns the process health red meanwhile).

:class:`StoreGuard` wraps a handler: when the handler raises, or returns a retryable error, it asks
the store a cheap question (``count_articles``); if that fails too, the store is down and the batch
raises ``UnavailableError`` naming the store and the error; otherwise the outcome is passed on.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from indexer.store import SearchStore
from stream.bus import Record
from stream.errors import UnavailableError
from stream.worker import Handler, is_permanent

logger = logging.getLogger(__name__)


class StoreGuard:
    """``stream.worker.Handler`` with the wrapped handler's name; see the module docstring.

    Args:
        inner: the stage (``IndexStage``, ``StoryIndexStage``, ``AlertStage``).
        store: the store ``inner`` writes to; probed with ``count_articles()`` after a failure.
        where: the store's address, for the ``UnavailableError`` message (``settings.store``).

    Raises (from :meth:`handle`):
        UnavailableError: the handler failed and the probe failed too (the store is unreachable).
    """

    def __init__(self, inner: Handler, store: SearchStore, where: str) -> None:
        self.inner = inner
        self.name = inner.name
        self.store = store
        self.where = where

    def handle(self, records: Sequence[Record]) -> Sequence[BaseException | None]:
        try:
            outcomes = self.inner.handle(records)
        except UnavailableError:
            raise
        except Exception as exc:
            self._probe(exc)
            raise
        retryable = next((o for o in outcomes if o is not None and not is_permanent(o)), None)
        if retryable is not None:
            self._probe(retryable)
        return outcomes

    def close(self) -> None:
        """Close the wrapped stage if it holds resources (the alert stage's delivery threads)."""
        close = getattr(self.inner, "close", None)
        if callable(close):
            close()

    def _probe(self, cause: BaseException) -> None:
        try:
            self.store.count_articles()
        except Exception as exc:  # noqa: BLE001  # any failure of the probe means the store is not usable now
            raise UnavailableError(
                f"store {self.where} unreachable ({type(exc).__name__}: {exc}); "
                f"stage {self.name!r} failed with {type(cause).__name__}: {cause}"
            ) from cause
        logger.debug("store answers; the failure is the record's", extra={"stage": self.name, "error": repr(cause)})
