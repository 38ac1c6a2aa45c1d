"""Fetch outcome labels (bounded values of ``sednaya_source_fetches_total{outcome}``; the full list is in
docs/crawling.md). Spiders add ``malformed_xml``, ``malformed_json``, ``degraded`` and ``bad_encoding``
after parsing."""

from __future__ import annotations

from scrapy.exceptions import (
    CannotResolveHostError,
    DownloadCancelledError,
    DownloadConnectionRefusedError,
    DownloadFailedError,
    DownloadTimeoutError,
    IgnoreRequest,
    ResponseDataLossError,
)
from twisted.internet import error as twisted_error
from twisted.python.failure import Failure


def outcome_for_status(status: int) -> str:
    """``ok`` for 2xx, ``not_modified`` for 304, ``http_403``/``http_404``/``http_429``, else
    ``http_4xx``/``http_5xx``."""
    if 200 <= status < 300:
        return "ok"
    if status == 304:
        return "not_modified"
    if status in (403, 404, 429):
        return f"http_{status}"
    if 400 <= status < 500:
        return "http_4xx"
    if status >= 500:
        return "http_5xx"
    return "error"


def outcome_for_failure(failure: Failure) -> str:
    """Label for a failed request (errback ``failure``)."""
    error = failure.value
    if isinstance(error, IgnoreRequest):
        message = str(error).lower()
        if "robots.txt" in message:
            return "robots_disallowed"
        if "redirect" in message:
            return "redirect_loop"
        return "error"
    if isinstance(error, (DownloadTimeoutError, twisted_error.TimeoutError, twisted_error.TCPTimedOutError)):
        return "timeout"
    if isinstance(error, (CannotResolveHostError, twisted_error.DNSLookupError)):
        return "dns"
    if isinstance(error, DownloadCancelledError):
        return "too_large"
    if isinstance(
        error,
        (
            DownloadConnectionRefusedError,
            DownloadFailedError,
            ResponseDataLossError,
            twisted_error.ConnectionRefusedError,
            twisted_error.ConnectionLost,
            twisted_error.ConnectionDone,
        ),
    ):
        return "connection"
    return "error"
