"""What ``sources check`` makes of one feed or sitemap answer (pure functions, no I/O).

A URL is *verified* when it answers with a parseable document (RSS/Atom/RDF through feedparser, a JSON
Feed through :mod:`crawlers.json_feed`, a sitemap or sitemap index through
:func:`crawlers.spiders.sitemaps.parse_sitemap`, gzip or not) whose newest entry is at most ``max_age``
old. Otherwise the outcome says why: ``malformed_xml`` (not a feed or sitemap: an HTML error page, broken
XML with nothing to recover), ``malformed_json`` (JSON that is no JSON Feed), ``too_large``, ``empty`` (no
entry), ``undated`` (entries without any date, so recency cannot be told) or ``stale`` (the newest entry
is older than ``max_age``: a feed the outlet stopped updating).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import feedparser

from crawlers.errors import FeedError
from crawlers.json_feed import is_json_feed, json_feed_entries
from crawlers.spiders.feeds import entry_time, is_xml_error
from crawlers.spiders.sitemaps import GZIP_MAGIC, gunzip, parse_sitemap

VERIFIED = "ok"


@dataclass(frozen=True, slots=True)
class Listing:
    """A parsed feed or sitemap: ``kind`` (``feed``, ``urlset``, ``sitemapindex``), entry count and the
    newest entry's time (None when no entry is dated)."""

    kind: str
    entries: int
    newest: datetime | None


def _looks_like_sitemap(body: bytes) -> bool:
    head = body[:2048].lower()
    return b"<urlset" in head or b"<sitemapindex" in head


def read_listing(body: bytes, *, max_bytes: int) -> Listing:
    """Parse a feed or sitemap answer.

    Raises:
        FeedError: ``malformed_xml`` when it is neither a feed nor a sitemap, ``malformed_json`` for JSON that
            is no JSON Feed, ``too_large`` when its gzip body inflates beyond ``max_bytes``.
    """
    if body[:2] == GZIP_MAGIC:
        body = gunzip(body, max_bytes)
    if is_json_feed(body, None):
        items = json_feed_entries(body, "<listing>")
        stamps = [t for t in (entry_time(e) for e in items) if t is not None]
        return Listing("feed", len(items), max(stamps) if stamps else None)
    if _looks_like_sitemap(body):
        kind, entries, _ = parse_sitemap(body)
        dated = [t for t in (e.published or e.modified for e in entries) if t is not None]  # fresh by either
        return Listing(kind, len(entries), max(dated) if dated else None)
    parsed = feedparser.parse(body)
    version = str(parsed.get("version") or "")
    if parsed.get("bozo") and is_xml_error(parsed.get("bozo_exception")):
        # The crawl salvages what it can of a broken feed, but a broken feed is not a verified one.
        detail = f"broken XML ({parsed.get('bozo_exception')}), {len(parsed.entries)} entries salvaged"
        raise FeedError("<listing>", "malformed_xml", detail)
    if not version:
        raise FeedError("<listing>", "malformed_xml", "neither a feed (RSS, Atom, RDF) nor a sitemap")
    times = [t for t in (entry_time(e) for e in parsed.entries) if t is not None]
    return Listing("feed", len(parsed.entries), max(times) if times else None)


def verdict(listing: Listing, *, now: datetime | None = None, max_age: timedelta) -> str:
    """``ok`` (verified), ``empty``, ``undated`` or ``stale`` for a parsed listing."""
    if listing.entries == 0:
        return "empty"
    if listing.newest is None:
        return "undated"
    if (now or datetime.now(UTC)) - listing.newest > max_age:
        return "stale"
    return VERIFIED
