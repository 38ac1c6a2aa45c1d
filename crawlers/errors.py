"""Exceptions of the ``crawlers`` package. Each message names the input that caused it."""

from __future__ import annotations

from stream.errors import SednayaError


class CrawlError(SednayaError):
    """Base class of crawling errors."""


class RegistryError(CrawlError, ValueError):
    """The source registry is missing or malformed (the message names the file, the source and the key)."""


class RawStoreError(CrawlError):
    """The raw-copy storage refused a request, or its setting is malformed (the message names the
    store URL, the endpoint and the object key)."""


class ExtractionError(CrawlError):
    """A page could not become an article. ``reason`` is the counted label (``too_short``, ``not_html``...)."""

    def __init__(self, url: str, reason: str, detail: str = "") -> None:
        self.url = url
        self.reason = reason
        self.detail = detail
        super().__init__(f"{url}: {reason}" + (f" ({detail})" if detail else ""))


class FeedError(CrawlError):
    """A feed, sitemap or search response could not be parsed (the message names the URL)."""

    def __init__(self, url: str, outcome: str, detail: str = "") -> None:
        self.url = url
        self.outcome = outcome
        self.detail = detail
        super().__init__(f"{url}: {outcome}" + (f" ({detail})" if detail else ""))
