"""Exceptions of the ``indexer`` package. Each message names the input that caused it."""

from __future__ import annotations

from stream.errors import SednayaError


class QuerySyntaxError(SednayaError, ValueError):
    """A search query does not follow the query language (DESIGN.md).

    ``position`` is the 0-based character offset of the offending token in ``query`` and ``token``
    its text (``""`` at the end of the query). The message names both, e.g.
    ``query 'a AND': expected a term after 'AND' at position 5 (end of query)``.
    """

    def __init__(self, query: str, position: int, token: str, problem: str) -> None:
        self.query = query
        self.position = position
        self.token = token
        self.problem = problem
        where = f"at position {position} ({'end of query' if not token else repr(token)})"
        super().__init__(f"query {query!r}: {problem} {where}")


class StoreError(SednayaError):
    """The search store could not be reached or refused an operation as a whole (not per document)."""


class QueryRefusedError(StoreError):
    """The search store refused a search for its query (Elasticsearch answered 400: a query beyond one of the
    server's limits), not because it failed: the caller's input is at fault, like a ``QuerySyntaxError``.
    The message names the query and the server's reason."""

    def __init__(self, query: str, reason: str) -> None:
        self.query = query
        self.reason = reason
        super().__init__(f"query {query!r} refused by the search store: {reason}")


class WatchlistError(SednayaError, ValueError):
    """A watchlist is invalid or unknown (the message names the watchlist and the field)."""


class DeliveryError(SednayaError):
    """An alert could not be delivered to one target (the message names the target and the cause).

    ``transient`` is true for failures worth retrying (connection refused, timeouts, HTTP 5xx/429);
    ``attempts`` is how many tries were made in all.
    """

    def __init__(self, target: str, problem: str, *, transient: bool = True, attempts: int = 1) -> None:
        self.target = target
        self.problem = problem
        self.transient = transient
        self.attempts = attempts
        super().__init__(f"{target}: {problem}")


class ArticleNotIndexedError(SednayaError):
    """A story event names an article the store does not hold yet: the alert stage parks the event and
    looks again with backoff (dead-lettered only after ``settings.alert_wait_max_s``)."""
