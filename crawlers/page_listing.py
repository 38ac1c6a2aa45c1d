"""A web page read as a listing: what a source offers when its "feed" answers HTML (a feed moved, a section
page registered as the feed) or when the registry gives only its home page.

- :func:`alternate_feeds`: the feeds the page announces (``<link rel="alternate" type="application/rss+xml">``,
  Atom, JSON Feed), which the feed spider then reads as feeds;
- :func:`article_links`: the links of the page that look like articles of the same site (a date or a
  numeric id in the path, or a slug of several words), with their anchor text as the headline the
  prefilter reads (the longest of the page's links to it: a teaser's picture links with no text), in page
  order, without the site's menus, header and footer.

Pure functions of the page's text, no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import lxml.html

from crawlers.extraction import is_chrome
from crawlers.registry import host_key
from stream.text import normalize_whitespace

FEED_TYPES = frozenset(
    {"application/rss+xml", "application/atom+xml", "application/rdf+xml", "application/feed+json", "application/json"}
)
MAX_ALTERNATE_FEEDS = 3  # a page announcing more (one per category) is read through its first ones
MAX_PAGE_LINKS = 100  # article links taken from one page, in page order
_SLUG_WORDS = 3  # a last path segment of this many words ("sednaya-families-wait-at-the-gates") is an article's
_SLUG_SPLIT = re.compile(r"[-_+]+|%20")
_DATE_IN_PATH = re.compile(r"/(?:19|20)\d\d[/-](?:0?[1-9]|1[0-2])(?:[/-]|$)|/(?:19|20)\d\d(?:0[1-9]|1[0-2])\d\d(?:/|$)")
_NUMERIC_ID = re.compile(r"(?:^|[/_-])\d{4,}(?:\.\w+)?$")
_ID_PARAM = re.compile(r"(?:^|&)(?:id|p|article|story|nid|aid|cid|newsid|news_id)=\d+(?:&|$)", re.IGNORECASE)
_NOT_ARTICLES = re.compile(
    r"/(?:tag|tags|category|categories|author|authors|page|search|login|register|subscribe|about|contact)(?:/|$)",
    re.IGNORECASE,
)
_FILES = re.compile(r"\.(?:jpe?g|png|gif|webp|svg|pdf|mp3|mp4|zip|css|js|xml|rss)$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class PageLink:
    url: str
    text: str  # the anchor's text (its title attribute when it has none)


def parse_page(html: str | bytes) -> lxml.html.HtmlElement | None:
    """The page's tree, or None when there is no HTML to read."""
    try:
        return lxml.html.document_fromstring(html)
    except (lxml.etree.ParserError, ValueError):
        return None


def alternate_feeds(tree: lxml.html.HtmlElement, base_url: str) -> list[str]:
    """The absolute URLs of the feeds the page announces, first ``MAX_ALTERNATE_FEEDS``, in page order."""
    found: list[str] = []
    for link in tree.xpath("//link[@href][@type]"):
        rel = (link.get("rel") or "").lower().split()
        kind = (link.get("type") or "").lower().split(";")[0].strip()
        if "alternate" not in rel or kind not in FEED_TYPES:
            continue
        url = _absolute(base_url, link.get("href") or "")
        if url and url not in found and url != base_url:
            found.append(url)
        if len(found) >= MAX_ALTERNATE_FEEDS:
            break
    return found


def article_links(tree: lxml.html.HtmlElement, base_url: str, hosts: frozenset[str]) -> list[PageLink]:
    """Links of the page to articles of the site (``hosts``: ``host[:port]``, ``www.`` dropped), first
    ``MAX_PAGE_LINKS`` in page order, each once; links inside the site's frame are left out."""
    body = tree.find("body")
    if body is None:
        return []
    frame = {e for e in body.iter() if is_chrome(e)}
    page = urlsplit(base_url)
    texts: dict[str, str] = {}  # url -> the longest anchor text of its links, in the order first met
    for anchor in body.xpath(".//a[@href]"):
        if any(up in frame for up in anchor.iterancestors()):
            continue
        url = _absolute(base_url, anchor.get("href") or "")
        if not url:
            continue
        text = normalize_whitespace(anchor.text_content()) or normalize_whitespace(anchor.get("title") or "")
        if url in texts:
            texts[url] = max(texts[url], text, key=len)
            continue
        parts = urlsplit(url)
        if host_key(url) not in hosts or (parts.path, parts.query) == (page.path, page.query) or not _is_article(url):
            continue
        if len(texts) < MAX_PAGE_LINKS:
            texts[url] = text
    return [PageLink(url, text) for url, text in texts.items()]


def _is_article(url: str) -> bool:
    parts = urlsplit(url)
    path = parts.path
    if _FILES.search(path) or _NOT_ARTICLES.search(path):
        return False
    if _DATE_IN_PATH.search(path) or _NUMERIC_ID.search(path.rstrip("/")) or _ID_PARAM.search(parts.query):
        return True
    last = path.rstrip("/").rsplit("/", 1)[-1].rsplit(".", 1)[0]
    return len([w for w in _SLUG_SPLIT.split(last) if w]) >= _SLUG_WORDS


def _absolute(base_url: str, href: str) -> str | None:
    href = href.strip()
    if not href or href.startswith(("#", "javascript:", "mailto:", "tel:")):
        return None
    try:
        url = urljoin(base_url, href)
        parts = urlsplit(url)
        parts.port  # noqa: B018  # raises on a port that is no number
    except ValueError:
        return None
    return url.split("#", 1)[0] if parts.scheme in ("http", "https") else None
