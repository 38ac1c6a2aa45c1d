"""Errors of the web layer. Each becomes an HTTP status; the message names the input at fault."""

from __future__ import annotations

from stream.errors import SednayaError


class HttpError(SednayaError):
    """A request the server refuses: ``status`` (4xx) and a message naming the parameter or path."""

    def __init__(self, status: int, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


class BadRequest(HttpError):
    """400: a parameter, cursor, query or body is malformed (the message names it)."""

    def __init__(self, message: str) -> None:
        super().__init__(400, message)


class NotFound(HttpError):
    """404: no route, story, article or watchlist under that name."""

    def __init__(self, message: str) -> None:
        super().__init__(404, message)
