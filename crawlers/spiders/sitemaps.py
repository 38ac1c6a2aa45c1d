"""``sitemaps``: Google-News sitemaps (``news:publication_date``, ``news:title``, ``news:keywords``) and
sitemap indexes, gzip-compressed or not, newest first."""

from __future__ import annotations

import contextlib
import logging
import re
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

import scrapy
from lxml import etree
from scrapy.http import Response

from crawlers.errors import FeedError
from crawlers.extraction import parse_date
from crawlers.spiders.base import BaseSpider
from stream.canonical_url import canonical_url
from stream.errors import ContractError

logger = logging.getLogger(__name__)

GZIP_MAGIC = b"\x1f\x8b"
MAX_CHILD_SITEMAPS = 20  # newest children of an index followed per poll (older ones hold older news)
MAX_SITEMAP_DEPTH = 3  # indexes of indexes followed this deep (the protocol has one level; some sites nest two)
_EPOCH = datetime.min.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class SitemapEntry:
    loc: str
    published: datetime | None  # <news:publication_date>
    title: str
    keywords: str
    modified: datetime | None = None  # <lastmod>: when the page last changed, maybe years after it appeared


def gunzip(body: bytes, limit: int) -> bytes:
    """Decompress a gzip body to at most ``limit`` bytes.

    Raises:
        FeedError: ``too_large`` beyond ``limit``, ``malformed_xml`` when the gzip stream is corrupt.
    """
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise FeedError("<gzip>", "malformed_xml", f"corrupt gzip: {exc}") from exc
    if len(out) > limit:
        raise FeedError("<gzip>", "too_large", f"more than {limit} bytes uncompressed")
    return out


def _local(tag: object) -> str:
    return etree.QName(tag).localname if isinstance(tag, str) else ""


def parse_sitemap(body: bytes) -> tuple[str, list[SitemapEntry], bool]:
    """``(kind, entries, repaired)``: kind ``sitemapindex`` or ``urlset``; entries newest first;
    ``repaired`` when the XML was broken and parsed in recovery mode.

    Raises:
        FeedError: ``malformed_xml`` when nothing usable can be read.
    """
    repaired = False
    safe = {"resolve_entities": False, "no_network": True, "huge_tree": False}
    try:
        root = etree.fromstring(body, parser=etree.XMLParser(**safe))
    except etree.XMLSyntaxError:
        repaired = True
        try:
            root = etree.fromstring(body, parser=etree.XMLParser(recover=True, **safe))
        except etree.XMLSyntaxError as exc:  # even recovery finds nothing (empty or binary body)
            raise FeedError("<sitemap>", "malformed_xml", str(exc)) from exc
    if root is None or _local(root.tag) not in {"sitemapindex", "urlset"}:
        raise FeedError("<sitemap>", "malformed_xml", "no <urlset> or <sitemapindex> root")
    kind = _local(root.tag)
    entries: list[SitemapEntry] = []
    for node in root:
        fields = _entry_fields(node)
        if not fields.get("loc"):
            continue
        entries.append(
            SitemapEntry(
                fields["loc"],
                parse_date(fields.get("publication_date", "")),
                fields.get("title", ""),
                fields.get("keywords", ""),
                parse_date(fields.get("lastmod", "")),
            )
        )
    if not entries and repaired:
        raise FeedError("<sitemap>", "malformed_xml", "no entry could be recovered")
    entries.sort(key=_newest_first, reverse=True)
    return kind, entries, repaired


_LOC_MONTH = re.compile(r"(?<!\d)((?:19|20)\d\d)(?:[-_/.]?(0[1-9]|1[0-2])(?:[-_/.]?(0[1-9]|[12]\d|3[01]))?)?(?!\d)")
_LOC_NUMBER = re.compile(r"(\d+)(?=\D*$)")


def _newest_first(entry: SitemapEntry) -> tuple[datetime, int]:
    """The order of a sitemap's entries, newest first once reversed: by publication, else last edit, else a
    year and month in the address (``sitemap-2024-12.xml``, ``/2024/12/``: archives are often listed oldest
    first), then by the address's last number (``post-sitemap12.xml`` is newer than ``post-sitemap2.xml``)."""
    when = entry.published or entry.modified
    if when is None:
        found = _LOC_MONTH.search(urlsplit(entry.loc).path)
        if found:
            with contextlib.suppress(ValueError):  # 2024-02-30: the month still orders it
                when = datetime(int(found[1]), int(found[2] or 1), 1, tzinfo=UTC)
                when = when.replace(day=int(found[3] or 1))
    number = _LOC_NUMBER.search(urlsplit(entry.loc).path)
    return when or _EPOCH, int(number[1][-9:]) if number else 0


_OWN = {"loc", "lastmod"}  # the entry's own fields: direct children of <url>/<sitemap>
_NEWS = {"publication_date", "title", "keywords"}  # read from <news:news> only


def _entry_fields(node: etree._Element) -> dict[str, str]:
    """``loc``/``lastmod`` of a sitemap entry (its direct children) and ``publication_date``/``title``/
    ``keywords`` of its ``<news:news>`` (Google News sitemaps): an ``<image:image>`` or ``<video:video>``
    inside the entry has a ``<image:loc>``, ``<image:title>``, ``<video:publication_date>`` of its own,
    which are not the article's (an image title as the entry's title failed the prefilter)."""
    fields: dict[str, str] = {}
    for child in node:
        name = _local(child.tag)
        if name in _OWN and child.text:
            fields.setdefault(name, child.text.strip())
        elif name == "news":
            for part in child.iter():
                field = _local(part.tag)
                if field in _NEWS and part.text:
                    fields.setdefault(field, part.text.strip())
    return fields


class SitemapSpider(BaseSpider):
    name = "sitemaps"
    channel = "sitemap"

    def poll_targets(self) -> Iterable[tuple[str, int]]:
        default = self.context.config.follow_interval_s
        return [(s.id, s.interval_s or default) for s in self.context.sources if s.sitemaps]

    def requests_for(self, target: str) -> Iterable[scrapy.Request]:
        source = next(s for s in self.context.sources if s.id == target)
        for url in source.sitemaps:
            yield self.conditional_request(url, source=source.id, callback=self.parse_sitemap)

    def parse_sitemap(self, response: Response) -> Iterator[scrapy.Request]:
        if not self.listing_ok(response):
            return
        source_id: str = response.meta["source"]
        source = next(s for s in self.context.registry if s.id == source_id)
        body = response.body
        try:
            if body[:2] == GZIP_MAGIC:
                body = gunzip(body, self.context.config.crawl_max_page_bytes)
            kind, entries, repaired = parse_sitemap(body)
        except FeedError as exc:
            self.context.fetch(source_id, exc.outcome, response.url)
            return
        self.context.fetch(source_id, "malformed_xml" if repaired else "ok", response.url)
        if kind == "sitemapindex":
            yield from self._children(response, source_id, entries)
            return
        for rank, entry in enumerate(entries[: self.context.config.crawl_sitemap_max_entries]):
            url = self.entry_url(response, entry.loc, source_id)
            if url is None or not self.context.worth_fetching(
                source, f"{entry.title}\n{entry.keywords}", url, response.url
            ):
                continue
            request = self.article_request(
                url,
                source=source_id,
                title=entry.title or None,
                published=entry.published,
                modified=entry.modified,
                date_source="sitemap" if entry.published or entry.modified else None,
                priority=-rank,
            )
            if request is not None:
                yield request

    def _children(self, response: Response, source_id: str, entries: list[SitemapEntry]) -> Iterator[scrapy.Request]:
        """Requests for the newest ``MAX_CHILD_SITEMAPS`` children of a sitemap index, leaving out the indexes
        on the way down to it (an index that lists itself, or two that list each other, would be asked
        for again and again) and anything below ``MAX_SITEMAP_DEPTH``."""
        trail: tuple[str, ...] = (*response.meta.get("sitemap_trail", ()), _key(response.url))
        if len(trail) >= MAX_SITEMAP_DEPTH:
            logger.info(
                "sitemap index too deep: children not followed", extra={"url": response.url, "source": source_id}
            )
            return
        for child in entries[:MAX_CHILD_SITEMAPS]:
            url = self.entry_url(response, child.loc, source_id)
            if url is None or _key(url) in trail:
                continue
            yield self.conditional_request(url, source=source_id, callback=self.parse_sitemap, sitemap_trail=trail)


def _key(url: str) -> str:
    """``url`` as the trail of sitemap indexes compares it (its canonical form when it has one)."""
    try:
        return canonical_url(url)
    except ContractError:
        return url
