"""Google News RSS search: one query per name variant and language (TOPIC.md, "any" row).

``https://news.google.com/rss/search?q="<variant>"&hl=<hl>&gl=<gl>&ceid=<gl>:<lang>``. Latin-script
variants are asked in the Latin-script languages, Arabic variants in Arabic. The item's ``<source
url=...>`` names the outlet.

Item links point to ``news.google.com/rss/articles/<id>``. :func:`publisher_url` reads the publisher's
URL out of the id where the id carries it: the older ids (``CBMi...``) are URL-safe base64 of a small
protobuf message whose field 4 is the article URL (field 26 its AMP URL). Newer ids (the message holds
an opaque ``AU_yqL...`` token instead) resolve only through JavaScript and a signed internal call on
Google's side; we do not work around that, so such a link is rejected as ``unresolved_redirect`` without
being fetched. Any other link is fetched and its HTTP redirects followed.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

# language -> (hl, gl): interface language and country edition asked for.
EDITIONS: Mapping[str, tuple[str, str]] = {
    "en": ("en-US", "US"),
    "ar": ("ar", "EG"),
    "fr": ("fr", "FR"),
    "de": ("de", "DE"),
    "tr": ("tr", "TR"),
}
SCRIPT_LANGUAGES: Mapping[str, tuple[str, ...]] = {"latin": ("en", "fr", "de", "tr"), "arabic": ("ar",)}


@dataclass(frozen=True, slots=True)
class SearchQuery:
    variant: str
    lang: str
    url: str


def queries(base: str, names_by_script: Mapping[str, Sequence[str]]) -> list[SearchQuery]:
    """Every (variant, language) query for the scripts in ``SCRIPT_LANGUAGES``."""
    out = []
    for script, langs in SCRIPT_LANGUAGES.items():
        for variant in names_by_script.get(script, ()):
            for lang in langs:
                hl, gl = EDITIONS[lang]
                q = quote(f'"{variant}"', safe="")
                out.append(SearchQuery(variant, lang, f"{base}?q={q}&hl={hl}&gl={gl}&ceid={gl}:{lang}"))
    return out


GOOGLE_NEWS_HOST = "news.google.com"
ARTICLE_PATH_MARKERS = ("/articles/", "/read/")  # /rss/articles/<id>, /articles/<id>, /read/<id>
URL_FIELD = 4  # protobuf field holding the publisher URL in the old ids
AMP_URL_FIELD = 26  # ... and its AMP URL (used when field 4 is missing)
OPAQUE_PREFIX = "AU_yqL"  # newer ids: a token resolved only by Google's JavaScript


def article_id(link: str) -> str | None:
    """The article id of a Google News article link (``https://news.google.com/rss/articles/<id>?oc=5``),
    or None when ``link`` is not one."""
    parts = urlsplit(link)
    if (parts.hostname or "").lower() != GOOGLE_NEWS_HOST:
        return None
    for marker in ARTICLE_PATH_MARKERS:
        if marker in parts.path:
            ident = parts.path.split(marker, 1)[1].split("/")[0]
            return ident or None
    return None


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _fields(data: bytes) -> dict[int, bytes]:
    """Length-delimited fields of a protobuf message (first occurrence of each); varints skipped.

    Raises:
        ValueError: the bytes are not a protobuf message of varint and length-delimited fields.
    """
    out: dict[int, bytes] = {}
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            _, pos = _varint(data, pos)
        elif wire == 2:
            size, pos = _varint(data, pos)
            if pos + size > len(data):
                raise ValueError("field runs past the end")
            out.setdefault(number, data[pos : pos + size])
            pos += size
        else:
            raise ValueError(f"unexpected wire type {wire}")
    return out


def publisher_url(link: str) -> str | None:
    """The publisher's article URL carried in a Google News article link, or None when the link is not
    a Google News article link or its id does not carry the URL (the newer opaque ids)."""
    ident = article_id(link)
    if ident is None or ident.startswith(OPAQUE_PREFIX):
        return None
    try:
        raw = base64.urlsafe_b64decode(ident + "=" * (-len(ident) % 4))
        fields = _fields(raw)
    except (binascii.Error, ValueError):
        return None
    for number in (URL_FIELD, AMP_URL_FIELD):
        value = fields.get(number, b"").decode("utf-8", "replace")
        if value.startswith(OPAQUE_PREFIX):
            return None
        if urlsplit(value).scheme in {"http", "https"} and urlsplit(value).hostname:
            return value
    return None
