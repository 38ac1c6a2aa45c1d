"""Page -> article fields: body text, title, authors, publication date with its source, language.

Pure functions over the page text (no network, no Scrapy): the spiders call :func:`extract` with what
they downloaded and what the feed or sitemap said about the link.

- Decoding (:func:`decode_html`): w3lib's order (BOM, HTTP charset, ``<meta charset>`` or
  ``<meta http-equiv="Content-Type">``, UTF-8), except that a page whose HTTP charset garbles it but
  whose own ``<meta>`` charset decodes it cleanly is read in the ``<meta>`` charset (legacy servers
  that send a default charset).
- Body, title and authors: trafilatura (maintained, the best-scoring open extractor in its own and
  third-party evaluations; see docs of adbar/trafilatura). A precise pass (``favor_precision``, keeps
  navigation out) first; when it yields less than the floor, a recall pass (``favor_recall``: keeps the
  short paragraphs a precise pass drops on WordPress-style and table templates) and the longer of the
  two wins. trafilatura's own fallbacks (its readability port and jusText) run inside both passes.
- The floor is by script (:func:`min_text_chars`): Arabic writes the same news in fewer characters.
- ``published``/``date_source``: the first of JSON-LD (``datePublished`` of an Article), meta tags
  (``article:published_time``...), the feed entry, the sitemap entry, a date in the URL, a date the page
  shows in an element labelled as its date (:func:`labelled_date`: ``<time>``, ``class="post-date"``...;
  source ``meta``, the page's own markup, like the ``<time itemprop="datePublished">`` read with the meta
  tags); else ``none``.
- ``lang``: detected from the body (``stream.language``, lingua, offline); the page's ``<html lang>`` is
  only a hint, used when the detector is not confident.
- Rejections raise :class:`ExtractionError` with a counted ``reason``: ``not_html``, ``bad_encoding``,
  ``listing_page``, ``too_short``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urljoin, urlsplit

import charset_normalizer
import lxml.html
import trafilatura
from w3lib.encoding import (
    html_body_declared_encoding,
    http_content_type_encoding,
    read_bom,
    resolve_encoding,
    to_unicode,
)

from crawlers.errors import ExtractionError
from stream.anchors import YEAR_RANGE, dates_in
from stream.article import DateSource, parse_time
from stream.canonical_url import canonical_url
from stream.errors import ContractError
from stream.language import detect_language
from stream.text import content_hash, fold, normalize_whitespace

MIN_TEXT_CHARS = 200  # Latin/Cyrillic/other scripts: a two-sentence wire brief is news; less is a caption
MIN_TEXT_CHARS_ARABIC = 150  # Arabic omits short vowels and joins particles: ~25 % fewer characters per fact
RECALL_RETRY_CHARS = 700  # precise bodies shorter than this get a recall pass too (short pages lose paragraphs)
RECALL_ANCHOR_CHARS = 80  # the precise body's opening that the recall body must contain to replace it
WESTERN_DEFAULT_CHARSETS = frozenset({"cp1252", "latin1", "iso8859-1", "iso8859-15", "ascii"})  # server defaults
ARABIC_MAJORITY = 0.5  # share of letters in Arabic script above which the Arabic floor applies
MAX_REPLACEMENT_RATIO = 0.005  # U+FFFD per character above which the page was decoded with a wrong charset
LISTING_MIN_LINKS = 15  # a page with at least this many links ...
LISTING_LINK_TEXT_RATIO = 0.5  # ... whose link text is at least half its text is a listing, not an article
LISTING_MIN_TEASERS = 3  # <article> elements on one page: a section front
HTML_TYPES = ("text/html", "application/xhtml+xml")
ARTICLE_TYPES = frozenset(
    {
        "article",
        "newsarticle",
        "reportagenewsarticle",
        "analysisnewsarticle",
        "blogposting",
        "report",
        "opinionnewsarticle",
        "backgroundnewsarticle",
        "liveblogposting",
    }
)
LISTING_TYPES = frozenset({"collectionpage", "website", "itemlist", "searchresultspage", "webpage"})
META_DATE_KEYS = (
    "article:published_time",
    "og:article:published_time",
    "og:published_time",
    "datepublished",
    "pubdate",
    "publishdate",
    "publish-date",
    "date",
    "dc.date.issued",
    "dc.date",
    "dcterms.created",
    "dcterms.issued",
    "parsely-pub-date",
    "sailthru.date",
    "article.published",
    "cxenseparse:recs:publishtime",
)
# A date the page shows in an element it labels as one, for templates without a date in their markup (a
# legacy <font class="date">, a hand-made <span class="post-date">): a word of the element's class, id or
# itemprop, or a <time> that is not inside running text. A label that also names another time (an update, a
# comment, today's date in a site's top bar) does not count, nor one inside a part of the page that is not
# the article (navigation, related links, comments...).
_DATE_WORDS = frozenset(
    {"date", "datum", "time", "timestamp", "datetime", "pubdate", "postdate", "publishdate", "published", "publish",
     "publication", "posted", "dateline", "byline", "fecha", "tarih"}
)  # fmt: skip
_OTHER_TIME_WORDS = frozenset(
    {"modified", "modify", "updated", "update", "edited", "lastmod", "revised", "revision", "copyright", "comment",
     "comments", "reply", "birth", "expires", "expiry", "deadline", "reading", "weather", "event", "events", "today",
     "current", "clock", "print"}
)  # fmt: skip
_NOT_ARTICLE_WORDS = frozenset(
    {"related", "comment", "comments", "teaser", "teasers", "widget", "sidebar", "trending", "popular", "recommended",
     "masthead", "topbar", "ticker", "breadcrumb", "breadcrumbs", "share", "newsletter", "promo"}
)  # fmt: skip
_NOT_ARTICLE = frozenset({"nav", "aside", "footer", "form", "select", "script", "style", "noscript", "template"})
_SITE_HEADER_WORDS = frozenset({"header", "masthead", "topbar", "top", "banner"})  # without the headline: the site's
_RUNNING_TEXT = frozenset({"p", "li", "blockquote", "q", "cite", "figcaption", "dd", "td"})  # a <time> in these: prose
MAX_LABEL_DISTANCE = 40  # elements between the headline and its date label, in document order
MAX_DATE_LABEL_CHARS = 80  # a date label's text; longer is a paragraph that happens to mention a date
# Numeric dates a label may show: year first (2024/12/14, 2024.12.14) or last (14.12.2024, 14/12/2024).
_NUMERIC_YEAR_FIRST = re.compile(r"(?<!\d)(\d{4})[./](\d{1,2})[./](\d{1,2})(?!\d)")
_NUMERIC_YEAR_LAST = re.compile(r"(?<!\d)(\d{1,2})([./])(\d{1,2})[./](\d{4})(?!\d)")
_URL_DATE = re.compile(r"/((?:19|20)\d{2})[/-](0?[1-9]|1[0-2])[/-](0?[1-9]|[12]\d|3[01])(?:/|-|$)")
_URL_DATE_COMPACT = re.compile(r"/((?:19|20)\d{2})(0[1-9]|1[0-2])(0[1-9]|[12]\d|3[01])/")


@dataclass(frozen=True, kw_only=True, slots=True)
class Extracted:
    """What one article page yields. ``canonical`` is the page's ``rel=canonical`` URL (absolute) or None."""

    title: str
    text: str
    authors: tuple[str, ...]
    published: datetime | None
    date_source: DateSource
    lang: str  # ISO 639-1, or "und"
    lang_hint: str | None  # the page's own <html lang>, as a hint
    canonical: str | None
    content_sha256: str


def _hint(lang: str | None) -> str | None:
    if not lang:
        return None
    code = lang.strip().split("-")[0].split("_")[0].lower()
    return code if len(code) == 2 and code.isalpha() else None


def parse_date(value: str) -> datetime | None:
    """ISO 8601 (date or date-time) or RFC 822 date as aware UTC; None when unparsable."""
    text = value.strip()
    if not text:
        return None
    try:
        return parse_time(text)
    except ValueError:
        pass
    except OverflowError:  # 9999-12-31T23:59-23:59: past the range of datetime once in UTC
        return None
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2})?(\.\d+)?[+-]\d{4}", text):
        try:
            return parse_time(text[:-2] + ":" + text[-2:])
        except (ValueError, OverflowError):
            return None
    try:
        parsed = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        return None


def date_from_url(url: str) -> datetime | None:
    """A ``/YYYY/MM/DD/``, ``/YYYY-MM-DD`` or ``/YYYYMMDD/`` date in the URL path, at 00:00 UTC."""
    path = urlsplit(url).path
    match = _URL_DATE.search(path) or _URL_DATE_COMPACT.search(path + "/")
    if not match:
        return None
    try:
        return datetime(int(match[1]), int(match[2]), int(match[3]), tzinfo=UTC)
    except ValueError:
        return None


_JSONLD_COMMENT = re.compile(r"^\s*<!--|-->\s*$")
_TRAILING_COMMA = re.compile(r",(\s*[}\]])")


def _jsonld(text: str) -> Any:
    """A JSON-LD block as sites write it: raw newlines inside strings (``strict=False``), an HTML comment
    around it, trailing commas. Raises ``ValueError`` when none of that makes it JSON."""
    text = _JSONLD_COMMENT.sub("", text)
    try:
        return json.loads(text, strict=False)
    except ValueError:
        return json.loads(_TRAILING_COMMA.sub(r"\1", text), strict=False)


def _jsonld_objects(tree: lxml.html.HtmlElement) -> Iterator[dict[str, Any]]:
    for script in tree.xpath('//script[@type="application/ld+json"]'):
        try:
            data = _jsonld(script.text_content() or "")
        except ValueError:
            continue
        stack: list[Any] = [data]
        while stack:
            item = stack.pop()
            if isinstance(item, list):
                stack.extend(item)
            elif isinstance(item, dict):
                yield item
                if "@graph" in item:
                    stack.append(item["@graph"])


def _types(obj: dict[str, Any]) -> set[str]:
    kind = obj.get("@type", [])
    kinds = kind if isinstance(kind, list) else [kind]
    return {str(k).lower() for k in kinds}


def _meta(tree: lxml.html.HtmlElement) -> dict[str, str]:
    out: dict[str, str] = {}
    for el in tree.xpath("//meta[@content]"):
        key = (el.get("property") or el.get("name") or el.get("itemprop") or "").strip().lower()
        if key and key not in out:
            out[key] = el.get("content", "")
    for el in tree.xpath('//time[@itemprop="datePublished"][@datetime]'):
        out.setdefault("datepublished", el.get("datetime", ""))
    # hAtom's "published" class (WordPress themes: <time class="entry-date published" datetime=...>)
    for el in tree.xpath('//time[contains(concat(" ", normalize-space(@class), " "), " published ")][@datetime]'):
        out.setdefault("datepublished", el.get("datetime", ""))
    return out


WEB_SINCE = datetime(1991, 1, 1, tzinfo=UTC)  # no news page was published before the web


def plausible(when: datetime | None, *, now: datetime | None = None) -> bool:
    """A publication date a page can have: not before the web, not after ``now`` (a day's slack for time
    zones). ``1970-01-01`` (a Unix time of 0), ``0001-01-01`` or a date years ahead is a template's bug, and
    the next source of a date is read instead."""
    return when is not None and WEB_SINCE <= when <= (now or datetime.now(UTC)) + timedelta(days=1)


def _published(
    tree: lxml.html.HtmlElement, url: str, hinted: datetime | None, hinted_source: DateSource | None, lang: str
) -> tuple[datetime | None, DateSource]:
    for obj in _jsonld_objects(tree):
        published = obj.get("datePublished")
        if isinstance(published, list):  # some sites list it: the first is the publication
            published = next((p for p in published if isinstance(p, str)), None)
        if _types(obj) & ARTICLE_TYPES and isinstance(published, str):
            when = parse_date(published) or written_date(published, lang)
            if plausible(when):
                return when, "jsonld"
    meta = _meta(tree)
    for key in META_DATE_KEYS:
        if key in meta:
            # ISO or RFC 822, else as people write it: <meta name="date" content="14.12.2024">
            when = parse_date(meta[key]) or written_date(meta[key], lang)
            if plausible(when):
                return when, "meta"
    if plausible(hinted) and hinted_source is not None:
        return hinted, hinted_source
    when = date_from_url(url)
    if plausible(when):
        return when, "url"
    return None, "none"


def labelled_date(
    tree: lxml.html.HtmlElement, lang: str, title: str = "", *, now: datetime | None = None
) -> datetime | None:
    """The date the page shows in an element labelled as a date (see ``_DATE_WORDS``), nearest its headline:
    the headline is the element whose text is ``title`` (an ``<h1>`` or ``<h2>`` first), else the first
    ``<h1>``; the label is the nearest one before or after it in document order, at most
    ``MAX_LABEL_DISTANCE`` elements away, outside navigation, asides, footers, related links, comments and a
    site header that does not hold the headline (a site's top bar, a teaser list or a comment carries other
    dates). None without a headline or such a label.

    The date is the element's ``datetime``/``content`` attribute (the instant it gives, in UTC), else its
    text when it is short (``MAX_DATE_LABEL_CHARS``: a label, not a paragraph that mentions a date) at 00:00
    UTC. ``lang`` (the page's language) reads ``d/m/y`` against ``m/d/y``: month first only in English, and an
    English date whose order its numbers leave open is not read. A date after ``now`` (a day's slack) is no
    publication date."""
    headline = _headline(tree, title)
    if headline is None:
        return None
    order = {element: i for i, element in enumerate(tree.iter())}
    at = order[headline]
    around = set(headline.iterancestors())
    latest = (now or datetime.now(UTC)) + timedelta(days=1)
    labels = sorted(
        (abs(i - at), i, element)
        for element, i in order.items()
        if abs(i - at) <= MAX_LABEL_DISTANCE and isinstance(element.tag, str) and _is_date_label(element, around)
    )
    for _, _, element in labels:
        when = _date_of_label(element, lang)
        if when is not None and when.year in YEAR_RANGE and when <= latest:
            return when
    return None


def _headline(tree: lxml.html.HtmlElement, title: str) -> lxml.html.HtmlElement | None:
    """The element whose text is ``title`` (``<h1>``, ``<h2>``, then any in the body), else the first ``<h1>``."""
    wanted = normalize_whitespace(title)
    body = tree.find("body")
    if wanted and body is not None:
        for tags in (("h1", "h2"), ()):
            for element in body.iter(*tags):
                # a headline holds a few inline elements at most: a container's whole text is not read
                if (
                    isinstance(element.tag, str)
                    and len(element) <= 8
                    and normalize_whitespace(element.text_content()) == wanted
                ):
                    return element
    return next((h for h in tree.iter("h1") if normalize_whitespace(h.text_content())), None)


def _is_date_label(element: lxml.html.HtmlElement, around_headline: set[lxml.html.HtmlElement]) -> bool:
    words = _label_words(element)
    if words & _OTHER_TIME_WORDS:
        return False
    if not words & _DATE_WORDS:
        if element.tag != "time" or element.get("datetime") is None:
            return False
        if any(isinstance(up.tag, str) and up.tag in _RUNNING_TEXT for up in element.iterancestors()):
            return False  # "on <time datetime=2017-05-15>15 May 2017</time> the State Department..."
    for up in element.iterancestors():
        if not isinstance(up.tag, str):
            continue
        words = _label_words(up)
        if up.tag in _NOT_ARTICLE or words & _NOT_ARTICLE_WORDS:
            return False
        if (up.tag == "header" or words & _SITE_HEADER_WORDS) and up not in around_headline:
            return False  # the site's header (today's date in its top bar), not the article's
    return True


def _label_words(element: lxml.html.HtmlElement) -> set[str]:
    """The lower-case words of the element's class, id and itemprop: ``"entry-date published"``,
    ``"datePublished"``, ``"post__date"`` -> ``{"entry", "date", "published", "post"}``."""
    label = " ".join(element.get(key) or "" for key in ("class", "id", "itemprop"))
    return set(re.split(r"[^a-z]+", re.sub(r"([a-z])([A-Z])", r"\1 \2", label).lower())) - {""}


def _date_of_label(element: lxml.html.HtmlElement, lang: str) -> datetime | None:
    for key in ("datetime", "content"):
        value = element.get(key)
        when = parse_date(value) if value else None
        if when is not None:
            return when
    return written_date(element.text_content(), lang)


def written_date(text: str, lang: str) -> datetime | None:
    """The first date of a short ``text`` as people write it, at 00:00 UTC: a day, a month name and a year in
    the anchors' grammar (``stream.anchors.dates_in``), else numeric (:func:`_numeric_date`); None in a text
    longer than ``MAX_DATE_LABEL_CHARS`` (a paragraph that mentions a date, not a date)."""
    text = normalize_whitespace(text)
    if not text or len(text) > MAX_DATE_LABEL_CHARS:
        return None
    written = dates_in(text)
    day = written[0] if written else _numeric_date(text, lang)
    if day is None or day.year not in YEAR_RANGE:
        return None
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _numeric_date(text: str, lang: str) -> date | None:
    """The first numeric date of a date label (see ``labelled_date`` for the order of day and month)."""
    found = _NUMERIC_YEAR_FIRST.search(text)
    if found is not None:
        year, month, day = int(found[1]), int(found[2]), int(found[3])
    else:
        found = _NUMERIC_YEAR_LAST.search(text)
        if found is None:
            return None
        first, second, year = int(found[1]), int(found[3]), int(found[4])
        if found[2] == "/" and lang == "en":  # 12/14/2024; 05/06/2024 could be either
            if first <= 12 and second <= 12 and first != second:
                return None
            month, day = (first, second) if first <= 12 else (second, first)
        else:  # day first: 14.12.2024, 14/12/2024
            day, month = first, second
    try:
        return date(year, month, day)
    except ValueError:
        return None


def _is_listing(tree: lxml.html.HtmlElement, url: str) -> str | None:
    """Why the page is a listing/home page, or None when it looks like one article."""
    kinds: set[str] = set()
    for obj in _jsonld_objects(tree):
        kinds |= _types(obj)
    if kinds & LISTING_TYPES and not kinds & ARTICLE_TYPES and urlsplit(url).path in ("", "/"):
        return "home page"
    if kinds & {"collectionpage", "itemlist", "searchresultspage"} and not kinds & ARTICLE_TYPES:
        return "JSON-LD " + "/".join(sorted(kinds & LISTING_TYPES))
    meta = _meta(tree)
    if kinds & ARTICLE_TYPES or meta.get("og:type") == "article" or "article:published_time" in meta:
        return None  # the page says it is one article: related-story boxes and menus do not make it a listing
    body = tree.find("body")
    if body is None:
        return None
    teasers = len(body.xpath(".//article"))
    if teasers >= LISTING_MIN_TEASERS:
        return f"{teasers} <article> teasers"
    # the site's menus, header, footer and sidebar are on every page: the links that say "listing" are the rest
    frame = {e for e in body.iter() if is_chrome(e)}
    chrome = [e for e in frame if not any(up in frame for up in e.iterancestors())]  # the outermost parts
    links = [a for a in body.xpath(".//a[@href]") if not any(up in frame for up in a.iterancestors())]
    if len(links) >= LISTING_MIN_LINKS:
        link_chars = sum(len(normalize_whitespace(a.text_content())) for a in links)
        all_chars = len(normalize_whitespace(body.text_content()))
        all_chars = max(1, all_chars - sum(len(normalize_whitespace(e.text_content())) for e in chrome))
        if link_chars / all_chars >= LISTING_LINK_TEXT_RATIO:
            return f"{len(links)} links, {link_chars * 100 // all_chars}% of the text"
    return None


_CHROME_TAGS = frozenset({"nav", "header", "footer", "aside", "form", "select", "script", "style", "noscript"})
_CHROME_WORDS = frozenset(
    {"menu", "nav", "navbar", "navigation", "header", "footer", "masthead", "topbar", "breadcrumb", "breadcrumbs",
     "sidebar", "widget", "social", "share", "newsletter"}
)  # fmt: skip


def is_chrome(element: lxml.html.HtmlElement) -> bool:
    """Part of the site's frame around the content (menus, header, footer, sidebar), by tag or by a word of
    its class or id; teaser and related lists are not: on a section front they are the content."""
    return isinstance(element.tag, str) and (element.tag in _CHROME_TAGS or bool(_label_words(element) & _CHROME_WORDS))


_ARABIC_LETTER = re.compile("[\u0600-\u06ff\u0750-\u077f\ufb50-\ufdff\ufe70-\ufeff]")
_LETTER = re.compile(r"[^\W\d_]")


def min_text_chars(text: str) -> int:
    """The body-length floor for ``text``: ``MIN_TEXT_CHARS_ARABIC`` when most letters are Arabic script,
    else ``MIN_TEXT_CHARS``."""
    letters = len(_LETTER.findall(text))
    if letters and len(_ARABIC_LETTER.findall(text)) / letters > ARABIC_MAJORITY:
        return MIN_TEXT_CHARS_ARABIC
    return MIN_TEXT_CHARS


def _detect_charset(body: bytes) -> str | None:
    """Charset of a page that declares none (no BOM, HTTP charset or ``<meta>``): UTF-8 when it decodes
    as such, else charset-normalizer's guess (legacy Arabic pages in windows-1256 without a declaration)."""
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        best = charset_normalizer.from_bytes(body).best()
        return None if best is None else best.encoding
    return "utf-8"


def _html_to_unicode(content_type: str | None, body: bytes) -> tuple[str, str]:
    """``(encoding, text)`` by w3lib's order, as Scrapy reads a response: the BOM, the HTTP charset, the page's
    declaration, else :func:`_detect_charset` (UTF-8 last). w3lib 2.6 deprecated the detection hook of its
    ``html_to_unicode`` (its own detector answers instead), so the order is written here with its parts."""
    bom_encoding, bom = read_bom(body)
    if bom_encoding is not None and bom is not None:
        return bom_encoding, to_unicode(body[len(bom) :], bom_encoding)
    encoding = http_content_type_encoding(content_type) or html_body_declared_encoding(body)
    if encoding is None:
        encoding = _detect_charset(body) or "utf-8"
    elif encoding in {"utf-16", "utf-32"}:
        encoding += "-be"
    return encoding, to_unicode(body, encoding)


def decode_html(body: bytes, content_type: str | None) -> tuple[str, str]:
    """``(encoding, text)`` of an HTML page: BOM, the HTTP charset, the page's ``<meta charset>`` /
    ``<meta http-equiv="Content-Type">``, else UTF-8 or a detected charset (w3lib's order, as Scrapy's).
    When the HTTP charset garbles the page (U+FFFD, or a Western single-byte server default) and the page
    declares another charset that decodes it, the page wins. When what is declared is wrong in the other
    way (:func:`_declared_wrongly`), the bytes win.
    Never raises: undecodable bytes become U+FFFD (``extract`` rejects such pages as ``bad_encoding``)."""
    encoding, text = _html_to_unicode(content_type, body)
    header = http_content_type_encoding(content_type) if content_type else None
    declared = html_body_declared_encoding(body)
    if header and declared:
        meta, http = resolve_encoding(declared), resolve_encoding(header)
        # A Western single-byte charset decodes any bytes without error, so garbling shows no U+FFFD:
        # a server default (Apache's ISO-8859-1) in front of a page that declares its own charset.
        if meta and meta != http and ("\ufffd" in text or http in WESTERN_DEFAULT_CHARSETS):
            try:
                return meta, body.decode(meta)
            except (UnicodeDecodeError, LookupError):
                pass
    return _declared_wrongly(body, encoding, text, page_declares=declared is not None) or (encoding, text)


def _declared_wrongly(body: bytes, encoding: str, text: str, *, page_declares: bool) -> tuple[str, str] | None:
    """The page decoded by its bytes when what is declared cannot be its charset: declared single-byte but
    the non-ASCII bytes are valid UTF-8 (a UTF-8 page with a template's old ``windows-1256`` or
    ``iso-8859-1`` meta: read as declared it is garbled, with no U+FFFD to show it), or UTF-8 by the
    server alone and the bytes are not (a windows-1256 page that declares nothing behind a server's
    ``charset=utf-8``: the detected charset). A page whose own ``<meta>`` says UTF-8 as well is not second-
    guessed: it stays ``bad_encoding`` (a guess over two wrong declarations could index mojibake). None
    when the declaration holds."""
    utf8 = resolve_encoding(encoding) == "utf-8"
    if not utf8 and max(body, default=0) >= 0x80:
        try:
            return "utf-8", body.decode("utf-8")
        except UnicodeDecodeError:
            return None
    if utf8 and not page_declares and "\ufffd" in text:
        try:
            body.decode("utf-8")
        except UnicodeDecodeError:
            detected = _detect_charset(body)
            if detected and resolve_encoding(detected) != "utf-8":
                try:
                    return detected, body.decode(detected)
                except (UnicodeDecodeError, LookupError):
                    return None
    return None


def is_html(content_type: str | None, body_start: bytes) -> bool:
    """True for an HTML content type, or (no type given) a body that starts like HTML."""
    if content_type:
        return content_type.split(";")[0].strip().lower() in HTML_TYPES
    head = body_start[:512].lstrip().lower()
    if head.startswith(b"<?xml"):  # XHTML: an XML declaration, then the page (a feed has no <html>)
        return b"<html" in head or b"<!doctype html" in head
    return head.startswith((b"<!doctype html", b"<html"))


def extract(
    html: str,
    *,
    url: str,
    content_type: str | None = "text/html",
    hinted_published: datetime | None = None,
    hinted_date_source: DateSource | None = None,
    hinted_title: str | None = None,
    hinted_modified: datetime | None = None,
) -> Extracted:
    """Extract one article from the decoded page ``html`` served at ``url``.

    ``hinted_published``/``hinted_date_source`` (``feed`` or ``sitemap``) and ``hinted_title`` come from
    the entry that led to the page and are used when the page's markup says nothing. ``hinted_modified``,
    the entry's last-edit time (a sitemap's ``<lastmod>``, an Atom entry's ``<updated>``), comes last: after
    the date in the URL and the date the page shows, since an edit can come years after the publication.

    Raises:
        ExtractionError: ``reason`` is ``not_html``, ``bad_encoding``, ``listing_page`` or ``too_short``.
    """
    if not is_html(content_type, html[:512].encode("utf-8", "replace")):
        raise ExtractionError(url, "not_html", f"content type {content_type!r}")
    if not html.strip():
        raise ExtractionError(url, "too_short", "empty page")
    bad = html.count("\ufffd")
    if bad and bad / len(html) > MAX_REPLACEMENT_RATIO:
        raise ExtractionError(url, "bad_encoding", f"{bad} undecodable characters")
    tree = _parse(html, url)
    why = _is_listing(tree, url)
    if why:
        raise ExtractionError(url, "listing_page", why)
    doc, text, title = _body(tree, url, hinted_title, favor="precision")
    floor = min_text_chars(text or title)
    precise = normalize_whitespace(text)
    if len(precise) < max(floor, RECALL_RETRY_CHARS):
        # The precise pass drops short paragraphs on some templates (a short article can lose the very
        # paragraph that names the topic); the recall pass keeps them.
        recall_doc, recall_text, recall_title = _body(_parse(html, url), url, hinted_title, favor="recall")
        recall_text = _strip_title(trim_boilerplate_lines(recall_text), recall_title)
        recalled = normalize_whitespace(recall_text)
        # Under the floor any longer body wins; above it, only a body that holds the precise one (the
        # same article with the dropped paragraphs back, not a page of widgets).
        if len(recalled) > len(precise) and (len(precise) < floor or precise[:RECALL_ANCHOR_CHARS] in recalled):
            doc, text, title = recall_doc, recall_text, recall_title
            floor = min_text_chars(text)
    if len(normalize_whitespace(text)) < floor:
        raise ExtractionError(url, "too_short", f"{len(normalize_whitespace(text))} characters of text (floor {floor})")
    authors: tuple[str, ...] = ()
    if doc is not None and doc.author:
        authors = tuple(a.strip() for a in re.split(r";|\|", doc.author) if a.strip())
    hint = _hint(tree.get("lang") or tree.get("xml:lang"))
    lang = detect_language(text, hint)
    published, date_source = _published(tree, url, hinted_published, hinted_date_source, lang)
    if published is None:  # trafilatura pruned ``tree``: the labels are read from a fresh one
        published = labelled_date(_parse(html, url), lang, title)
        date_source = "none" if published is None else "meta"
    if published is None and plausible(hinted_modified) and hinted_date_source is not None:
        published, date_source = hinted_modified, hinted_date_source  # the listing's edit time: better than none
    canonical = None
    rel = 'translate(normalize-space(@rel), "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")'
    base = next((b.strip() for b in tree.xpath("//base/@href") if b.strip()), "")
    for link in tree.xpath(f'//link[@href][contains(concat(" ", {rel}, " "), " canonical ")]'):
        href = (link.get("href") or "").strip()
        if href:
            absolute = urljoin(urljoin(url, base), href)
            if _usable_canonical(absolute, url):
                canonical = absolute
                break
    return Extracted(
        title=title,
        text=text,
        authors=authors,
        published=published,
        date_source=date_source,
        lang=lang,
        lang_hint=hint,
        canonical=canonical,
        content_sha256=content_hash(text),
    )


def _usable_canonical(canonical: str, url: str) -> bool:
    """A canonical link a page may be filed under: http(s), and not the site root or a section above the
    page (``/news/`` for ``/news/2024/story.html``): those are template bugs that would make every article
    of the site one article."""
    target, page = urlsplit(canonical), urlsplit(url)
    if target.scheme not in {"http", "https"} or target.path in ("", "/"):
        return False
    if _drops_the_query(canonical, url):
        return False
    if target.netloc.lower() != page.netloc.lower() or target.query:
        return True
    section = target.path.rstrip("/") + "/"
    if not page.path.startswith(section):
        return True
    rest = page.path[len(section) :].strip("/").lower()
    return rest in _PAGE_VARIANTS  # ``/story/amp`` filed under ``/story``: the same page


def _drops_the_query(canonical: str, url: str) -> bool:
    """The canonical link is the page's own path without the query that tells this page apart
    (``<link rel=canonical href="/news.php">`` on every ``news.php?id=N`` of an old template). One that
    keeps part of it (``?id=5`` for ``?id=5&page=2``) is the page's first page, and usable."""
    try:
        target, page = urlsplit(canonical_url(canonical)), urlsplit(canonical_url(url))
    except ContractError:
        return False
    return (target.netloc, target.path) == (page.netloc, page.path) and bool(page.query) and not target.query


_PAGE_VARIANTS = {"", "amp", "amp.html", "index.html", "index.php", "print", "mobile"}
_XML_DECLARATION = re.compile(r"^\s*<\?xml[^>]*\?>", re.IGNORECASE)


def _parse(html: str, url: str) -> lxml.html.HtmlElement:
    """A fresh tree of ``html`` (trafilatura prunes the tree it is given, so each pass gets its own). An
    XHTML page's ``<?xml ... encoding=...?>`` declaration goes first: the text is decoded already, and lxml
    refuses a decoded string that declares an encoding."""
    try:
        return lxml.html.document_fromstring(_XML_DECLARATION.sub("", html, count=1))
    except (lxml.etree.ParserError, ValueError) as exc:
        raise ExtractionError(url, "too_short", f"unparsable HTML: {exc}") from exc


def _body(tree: lxml.html.HtmlElement, url: str, hinted_title: str | None, *, favor: str) -> tuple[Any, str, str]:
    """``(document, body text, title)`` of one trafilatura pass (``favor``: ``precision`` or ``recall``)."""
    result = trafilatura.bare_extraction(
        tree,
        url=url,
        with_metadata=True,
        include_comments=False,
        include_tables=False,
        favor_precision=favor == "precision",
        favor_recall=favor == "recall",
    )
    doc = None if isinstance(result, dict) else result  # as_dict=False: a Document or None
    text = "" if doc is None else (doc.text or "")
    title = normalize_whitespace((doc.title if doc is not None else None) or hinted_title or "")
    html_title = normalize_whitespace(" ".join(tree.xpath("//title//text()")))
    site = normalize_whitespace(" ".join(tree.xpath('//meta[@property="og:site_name"]/@content')))
    title = _without_site_name(_best_title(title, html_title, hinted_title, text), site, url)
    return doc, _strip_title(text, title), title


SENTENCE_MIN_WORDS = 6  # a line this long, or ending like a sentence, is text rather than a menu item
_TITLE_SEPARATORS = re.compile(r"\s+[-|\u2013\u2014:\u00bb]+\s+")  # "Site - Headline", "Headline | Site"
BOILERPLATE_RUN = 3  # this many non-sentence lines in a row end the article (link bars, footers)
_SENTENCE_END = re.compile(r"[.!?\u061f\u06d4\"\u201d\u00bb:;]\s*$")


def _is_sentence(line: str) -> bool:
    return len(line.split()) >= SENTENCE_MIN_WORDS or bool(_SENTENCE_END.search(line))


def trim_boilerplate_lines(text: str) -> str:
    """``text`` without its leading and trailing lines that are not sentences (menus, "most read" links,
    dates, "print | send" bars that a recall pass keeps on table templates). Inner lines are kept."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    sentences = [_is_sentence(line) for line in lines]
    if not any(sentences):
        return text.strip()
    start = sentences.index(True)
    end, run = start, 0
    for i in range(start, len(lines)):
        if sentences[i]:
            end, run = i, 0
            continue
        run += 1
        if run >= BOILERPLATE_RUN:  # "print | send to a friend" bars: the article has ended
            break
    return "\n".join(lines[start : end + 1])


def _best_title(page_title: str, html_title: str, hinted: str | None, text: str) -> str:
    """trafilatura's title, unless it kept only the site name of a ``Site - Headline`` ``<title>``: then
    the feed entry's title when the ``<title>`` holds it, else the longer ``<title>`` part that the
    page repeats as a line of its text (the headline)."""
    if hinted and len(hinted) > len(page_title) and fold(hinted) in fold(html_title):
        return normalize_whitespace(hinted)
    parts = [normalize_whitespace(p) for p in _TITLE_SEPARATORS.split(html_title)]
    if page_title in parts:
        lines = {normalize_whitespace(line) for line in text.splitlines()}
        longer = [p for p in parts if len(p) > len(page_title) and p in lines]
        if longer:
            return max(longer, key=len)
        # a page without its headline in the text (no <h1>): a longer part of several words is the headline
        # next to a site name ("Daily Courier - Families wait at the gates")
        worded = [p for p in parts if len(p) > len(page_title) and len(p.split()) >= HEADLINE_MIN_WORDS]
        if worded and len(page_title.split()) < HEADLINE_MIN_WORDS:
            return max(worded, key=len)
    return page_title


HEADLINE_MIN_WORDS = 3  # a <title> part this long can be a headline; a site's name is shorter


def _without_site_name(title: str, site: str, url: str) -> str:
    """``title`` without a part that names the site: the page's ``og:site_name`` ("Headline | Daily Courier"),
    or, written with spaces, the site's host name ("Headline | Daily Courier" on dailycourier.example,
    "Headline :: Syria TV" on syria.tv)."""
    names = _host_names(url)
    if site:
        names.add(_squashed(site))
    parts = [normalize_whitespace(p) for p in _TITLE_SEPARATORS.split(title)]
    kept = [p for p in parts if len(p.split()) > SITE_NAME_MAX_WORDS or _squashed(p) not in names]
    return title if len(kept) in (0, len(parts)) else " - ".join(kept)


SITE_NAME_MAX_WORDS = 4  # a longer title part is never taken for the site's name
_NOT_A_NAME = re.compile(r"\W+")
_HOST_PREFIXES = ("www", "m", "mobile", "amp")


def _squashed(name: str) -> str:
    return _NOT_A_NAME.sub("", fold(name)).replace("_", "")


def _host_names(url: str) -> set[str]:
    """How a site's name is written in its host, letters and digits only: each label but the last, and the
    labels run together with and without it (``www.syria.tv``: ``syria``, ``syriatv``)."""
    labels = (urlsplit(url).hostname or "").split(".")
    while len(labels) > 2 and labels[0] in _HOST_PREFIXES:
        labels = labels[1:]
    if len(labels) < 2:
        return set()
    names = {label for label in labels[:-1] if len(label) >= 3}
    names.update({"".join(labels[:-1]), "".join(labels)})
    return {_squashed(name) for name in names if len(name) >= 3}


def _strip_title(text: str, title: str) -> str:
    """Drop a first line that repeats the title (trafilatura keeps the ``<h1>``)."""
    first, _, rest = text.strip().partition("\n")
    if title and normalize_whitespace(first) == title:
        return rest.strip()
    return text.strip()
