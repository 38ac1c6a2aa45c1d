"""The fields of an imported article as exporters write them (``sednaya-monitor ingest``).

Files come from scrapers, feed readers, news APIs and spreadsheets; each writes dates and languages its
own way. An article is too valuable to lose over the format of a field that can be read:

- **published**: ISO 8601 (what the contract writes), RFC 2822 (``Sun, 08 Dec 2024 12:00:00 +0100``,
  what RSS and e-mail write; ``GMT``, ``UT`` and zone names too), a Unix time in seconds or milliseconds
  (a number, or a string of digits), a date written out in one of the anchors' languages (``9 December
  2024``, ``December 9, 2024``, ``9 décembre 2024``, ``٩ كانون الأول ٢٠٢٤``; ``stream.anchors.dates_in``,
  at 00:00 UTC), then what python-dateutil reads of the rest (``2024-12-9``, ``2024-12-09T10:00:00 GMT``).
  A value none of them reads is an error naming it: a date guessed wrong would move the article in time.
  Dates before 1900 or after 2100 are errors (a Unix time in the wrong unit, a typo).
- **title** and **text** as HTML (a CMS export, a feed's ``content:encoded``): tags go, block ends become
  line breaks, entities are read (w3lib, Scrapy's own); plain text is left as it is.
- **lang**: any case, a region or script part (``en-US``, ``ar_SY``, ``zh-Hant``), an ISO 639-2/3 code
  (``eng``, ``ara``, ``fre``/``fra``); the text decides in the end, the field is a hint
  (``stream.language.detect_language``), as a page's own ``lang`` is for the crawler.
"""

from __future__ import annotations

import email.utils
import re
from datetime import UTC, datetime
from typing import Any

from dateutil import parser as date_parser
from w3lib.html import remove_tags, replace_entities

from stream.anchors import dates_in
from stream.article import json_type, parse_time, utc

YEAR_RANGE = (1900, 2100)  # a publication date outside is a mistake of the exporter, not a date
_DIGITS = re.compile(r"[+-]?\d+(?:\.\d+)?")
MILLISECONDS_FROM = 1e11  # a Unix time above this is in milliseconds (1e11 s is the year 5138)

# ISO 639-2 (bibliographic and terminology) and 639-3 codes of the languages the service meets, to 639-1
THREE_LETTER = {
    "ara": "ar", "eng": "en", "fre": "fr", "fra": "fr", "ger": "de", "deu": "de", "tur": "tr", "rus": "ru",
    "ukr": "uk", "heb": "he", "per": "fa", "fas": "fa", "pes": "fa", "spa": "es", "ita": "it", "pol": "pl",
    "dut": "nl", "nld": "nl", "por": "pt", "slv": "sl", "mac": "mk", "mkd": "mk", "ind": "id", "kur": "ku",
    "ckb": "ku", "kmr": "ku", "arb": "ar", "apc": "ar", "ajp": "ar", "ell": "el", "gre": "el", "zho": "zh",
    "chi": "zh", "jpn": "ja", "swe": "sv", "dan": "da", "nor": "no", "fin": "fi", "ces": "cs", "cze": "cs",
}  # fmt: skip


def published_at(value: Any) -> datetime | None:
    """The publication time of an imported record's ``published`` value (see the module docstring); None
    for null or an empty string.

    Raises:
        TypeError: the value is neither a string nor a number (the message names its JSON type).
        ValueError: the value is not a date any of the readers reads, or lies outside ``YEAR_RANGE``
            (the message names the value).
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise TypeError(f"expected a date (string or Unix time), got {json_type(value)}")
    found = _read(value)
    if found is None:
        raise ValueError(f"{value!r} is not a date: ISO 8601, RFC 2822, a Unix time or a written date")
    if not YEAR_RANGE[0] <= found.year <= YEAR_RANGE[1]:
        raise ValueError(f"{value!r} reads as {found:%Y-%m-%d}, outside {YEAR_RANGE[0]}-{YEAR_RANGE[1]}")
    return found


def _read(value: str | float) -> datetime | None:
    if not isinstance(value, str):
        return _unix(float(value))
    text = value.strip()
    if _DIGITS.fullmatch(text) and len(text.lstrip("+-").split(".")[0]) >= 9:  # a Unix time, not "2024"
        return _unix(float(text))
    try:
        return parse_time(text)
    except ValueError:
        pass
    try:
        return utc(email.utils.parsedate_to_datetime(text))
    except (TypeError, ValueError, IndexError):
        pass
    written = dates_in(text)
    if written:
        day = written[0]
        return datetime(day.year, day.month, day.day, tzinfo=UTC)
    return _complete_date(text)


def _complete_date(text: str) -> datetime | None:
    """What python-dateutil reads of ``text`` when it names a year, a month and a day: it fills a missing
    part from its default, so the text is read with two defaults and must give the same day with both."""
    try:
        first = date_parser.parse(text, default=datetime(1901, 1, 1))
        second = date_parser.parse(text, default=datetime(1902, 2, 2))
    except (ValueError, OverflowError):
        return None
    return utc(first) if first.date() == second.date() else None


def _unix(seconds: float) -> datetime | None:
    if abs(seconds) >= MILLISECONDS_FROM:
        seconds /= 1000.0
    try:
        return datetime.fromtimestamp(seconds, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None


def language_hint(value: str | None) -> str | None:
    """An ISO 639-1 code from a ``lang`` value as exporters write it (see the module docstring), or None
    when it names no language (``""``, ``und``, ``xx``)."""
    if value is None:
        return None
    code = re.split(r"[-_\s]", value.strip().lower(), maxsplit=1)[0]
    code = THREE_LETTER.get(code, code)
    return code if len(code) == 2 and code.isalpha() and code.isascii() else None


_SCRIPT_LANGS = {
    "arabic": frozenset({"ar", "fa", "ur", "ku", "ps"}),
    "cyrillic": frozenset({"ru", "uk", "mk", "bg", "sr", "be", "kk"}),
    "hebrew": frozenset({"he", "yi"}),
    "greek": frozenset({"el"}),
}
_SCRIPT_OF_CHAR = (
    ("arabic", re.compile("[\u0600-\u06ff\u0750-\u077f\ufb50-\ufdff\ufe70-\ufeff]")),
    ("cyrillic", re.compile("[\u0400-\u04ff]")),
    ("hebrew", re.compile("[\u0590-\u05ff]")),
    ("greek", re.compile("[\u0370-\u03ff]")),
    ("latin", re.compile("[A-Za-z\u00c0-\u024f]")),
)
SCRIPT_SAMPLE = 600  # characters of title and text whose letters say which script the article is in


def script_of(text: str) -> str | None:
    """The script most letters of the start of ``text`` are in (arabic, cyrillic, hebrew, greek, latin),
    or None when it has none of those."""
    sample = text[:SCRIPT_SAMPLE]
    counts = {name: len(pattern.findall(sample)) for name, pattern in _SCRIPT_OF_CHAR}
    best = max(counts, key=lambda name: counts[name])
    return best if counts[best] else None


def script_agrees(code: str, text: str) -> bool:
    """Whether a language ``code`` can be written in the script of ``text`` ("en" on an Arabic text
    cannot; a text with no letters of a known script agrees with anything)."""
    script = script_of(text)
    if script is None:
        return True
    expected = next((name for name, langs in _SCRIPT_LANGS.items() if code in langs), "latin")
    return expected == script


_HTML_TAG = re.compile(
    r"</?(?:p|br|div|span|a|b|i|u|em|strong|h[1-6]|ul|ol|li|blockquote|figure|figcaption|img|table|tr|td|th"
    r"|section|article|header|footer|small|sup|sub|iframe|script|style)\b[^<>]*>",
    re.IGNORECASE,
)
_BLOCK_END = re.compile(r"<\s*(?:br\s*/?|/(?:p|div|li|h[1-6]|blockquote|tr|section|article|figure))\s*>", re.IGNORECASE)
_HIDDEN = re.compile(r"<(script|style)\b[^<>]*>.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_BLANK_LINES = re.compile(r"\n\s*\n+")


def plain_text(value: str) -> str:
    """``value`` without HTML markup when it is HTML (a tag of prose markup in it), else as it is."""
    if _HTML_TAG.search(value) is None:
        return value
    text = _BLOCK_END.sub("\n", _HIDDEN.sub(" ", value))
    text = replace_entities(remove_tags(text))
    return _BLANK_LINES.sub("\n\n", "\n".join(line.strip() for line in text.splitlines())).strip()
