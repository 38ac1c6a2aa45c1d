"""Atom 1.0 feed (RFC 4287) of a watchlist's recent alerts, served at ``/watchlists/<name>/atom.xml``.

One entry per alerted story: title = story title, ``link rel=alternate`` = the story on the search page,
``link rel=related`` = the first article, summary = first article title, source, language, publication
date and matched terms, ``updated`` = when the alert was recorded. Entry ids are stable tag URIs
(RFC 4151) so feed readers never show an alert twice.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from datetime import datetime
from urllib.parse import quote, urlsplit

from indexer.alerting.ledger import LedgerAlert
from indexer.alerting.watchlists import Watchlist
from stream.article import utc

ATOM_NS = "http://www.w3.org/2005/Atom"
FEED_AUTHOR = "Sednaya Monitor"
TAG_DATE = "2024"  # the date part of our tag: URIs (RFC 4151); fixed so ids never change
# Characters XML 1.0 forbids (C0 controls but tab/newline/CR, surrogates, U+FFFE/FFFF): dropped from text.
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def feed_path(name: str) -> str:
    """Path of a watchlist's feed under ``public_url``."""
    return f"/watchlists/{quote(name, safe='')}/atom.xml"


def render_atom(watchlist: Watchlist, alerts: Sequence[LedgerAlert], public_url: str) -> bytes:
    """The feed as UTF-8 XML bytes. ``alerts`` newest first (``AlertLedger.recent_alerts``)."""
    base = public_url.rstrip("/")
    authority = urlsplit(base).hostname or "localhost"
    ET.register_namespace("", ATOM_NS)
    feed = ET.Element(_q("feed"))
    _text(feed, "id", f"tag:{authority},{TAG_DATE}:watchlist/{quote(watchlist.name, safe='')}")
    _text(feed, "title", f"Sednaya Monitor: {watchlist.name}")
    _text(feed, "subtitle", f"New stories matching {watchlist.query}")
    updated = max((a.created_at for a in alerts), default=watchlist.created_at)
    _text(feed, "updated", _rfc3339(updated))
    author = ET.SubElement(feed, _q("author"))
    _text(author, "name", FEED_AUTHOR)
    ET.SubElement(feed, _q("link"), rel="self", type="application/atom+xml", href=base + feed_path(watchlist.name))
    ET.SubElement(
        feed, _q("link"), rel="alternate", type="text/html", href=f"{base}/watchlists/{quote(watchlist.name, safe='')}"
    )
    ET.SubElement(feed, _q("generator")).text = "sednaya-monitor"
    for item in alerts:
        alert = item.alert
        entry = ET.SubElement(feed, _q("entry"))
        _text(entry, "id", f"tag:{authority},{TAG_DATE}:alert/{quote(watchlist.name, safe='')}/{alert.story_id}")
        _text(entry, "title", alert.story_title)
        _text(entry, "updated", _rfc3339(item.created_at))
        if alert.published is not None:
            _text(entry, "published", _rfc3339(alert.published))
        ET.SubElement(entry, _q("link"), rel="alternate", type="text/html", href=alert.link)
        ET.SubElement(
            entry, _q("link"), rel="related", type="text/html", href=alert.url, title=_XML_INVALID.sub("", alert.title)
        )
        published = alert.published.date().isoformat() if alert.published else "date unknown"
        summary = (
            f"{alert.title} ({alert.source}, {alert.lang}, {published}). "
            f"Matched: {', '.join(alert.matched_terms) or '-'}"
        )
        _text(entry, "summary", summary)
        category = ET.SubElement(entry, _q("category"), term=alert.lang)
        category.set("label", f"language {alert.lang}")
    body: bytes = ET.tostring(feed, encoding="utf-8", xml_declaration=True)
    return body


def _q(tag: str) -> str:
    return f"{{{ATOM_NS}}}{tag}"


def _text(parent: ET.Element, tag: str, value: str) -> ET.Element:
    el = ET.SubElement(parent, _q(tag))
    el.text = _XML_INVALID.sub("", value)
    return el


def _rfc3339(value: datetime) -> str:
    return utc(value).isoformat(timespec="seconds").replace("+00:00", "Z")
