"""JSON Feed (https://jsonfeed.org, versions 1 and 1.1): a feed written in JSON instead of RSS/Atom, which
feedparser does not read. Its items become entries shaped like feedparser's (``link``, ``title``,
``summary``, ``published_parsed``/``updated_parsed`` as UTC ``struct_time``), so the feed spider handles
both the same way."""

from __future__ import annotations

import json
from typing import Any

from w3lib.html import replace_tags

from crawlers.errors import FeedError
from crawlers.extraction import parse_date

JSON_TYPES = frozenset({"application/feed+json", "application/json"})
VERSION_PREFIX = "https://jsonfeed.org/version/"


def is_json_feed(body: bytes, content_type: str | None) -> bool:
    """Whether a feed response is JSON: its content type says so, or its body opens an object."""
    kind = (content_type or "").split(";", 1)[0].strip().lower()
    return kind in JSON_TYPES or body.lstrip()[:1] == b"{"


def json_feed_entries(body: bytes, url: str) -> list[dict[str, Any]]:
    """The items of the JSON Feed ``body`` (served at ``url``) as entries; an item without a link is left out.

    Raises:
        FeedError: ``malformed_json`` when the body is not JSON, or not a JSON Feed (no version, no items).
    """
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise FeedError(url, "malformed_json", f"not JSON: {exc}") from exc
    if not isinstance(doc, dict) or not str(doc.get("version", "")).startswith(VERSION_PREFIX):
        raise FeedError(url, "malformed_json", f"not a JSON Feed (no version {VERSION_PREFIX}...)")
    items = doc.get("items")
    if not isinstance(items, list):
        raise FeedError(url, "malformed_json", "a JSON Feed without an items list")
    entries: list[dict[str, Any]] = []
    for item in items:
        if not isinstance(item, dict):
            continue
        link = _text(item.get("url")) or _text(item.get("external_url"))
        if not link:
            continue
        entry: dict[str, Any] = {
            "link": link,
            "title": _text(item.get("title")),
            "summary": _text(item.get("summary"))
            or _text(item.get("content_text"))
            or replace_tags(_text(item.get("content_html")), " ").strip(),
        }
        for field, key in (("date_published", "published_parsed"), ("date_modified", "updated_parsed")):
            when = parse_date(_text(item.get(field)))
            if when is not None:
                entry[key] = when.utctimetuple()
        entries.append(entry)
    return entries


def _text(value: object) -> str:
    return value.strip() if isinstance(value, str) else ""
