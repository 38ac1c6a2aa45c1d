"""The source registry: one TOML table per outlet (DESIGN.md "The source registry").

```toml
[[source]]
id = "bbc-arabic"            # stable: metrics label and the article's ``source``
name = "BBC Arabic"
home = "https://www.bbc.com/arabic"
lang = "ar"                  # main language; or langs = ["en", "fr", "ar"] (main first) for multilingual outlets
country = "GB"
type = "public-broadcaster"  # see SOURCE_TYPES
feeds = ["https://feeds.bbci.co.uk/arabic/rss.xml"]
sitemaps = []
verified = false             # true only when the URLs were checked to answer
# optional:
interval_s = 900             # poll interval in ``--follow`` (default: the follow_interval_s setting)
prefilter = true             # fetch only entries the topic prefilter keeps (crawlers/relevance.py `prefilter`)
topic_sections = ["https://www.bbc.com/arabic/topics/syria"]  # URL prefixes of sections (or feeds/sitemaps)
                             # that cover the region: their entries are fetched whole, prefilter or not
search_only = "no feed or sitemap; reached through GDELT and Google News"  # instead of feeds/sitemaps
```

A source lists at least one feed or sitemap, or says why it has none with ``search_only``; a source
with neither is logged as a warning and treated as search-only (``UNDECLARED_SEARCH_ONLY``).
"""

from __future__ import annotations

import logging
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from crawlers.errors import RegistryError

SOURCE_TYPES = frozenset(
    {
        "wire",
        "public-broadcaster",
        "pan-arab",
        "syrian-independent",
        "syrian-state",
        "counter-narrative",
        "ngo",
        "primary",
        "fact-checker",
        "other",
    }
)
DEFAULT_REGISTRY = Path(__file__).resolve().parent / "sources.toml"
UNDECLARED_SEARCH_ONLY = "undeclared: the registry lists no feed or sitemap"  # search_only when none was given
logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True, slots=True)
class Source:
    """One outlet of the registry."""

    id: str
    name: str
    home: str
    lang: str  # ISO 639-1 main language (= langs[0])
    country: str  # ISO 3166-1 alpha-2
    type: str  # one of SOURCE_TYPES
    feeds: tuple[str, ...] = ()
    sitemaps: tuple[str, ...] = ()
    verified: bool = False
    interval_s: int | None = None  # None: the follow_interval_s setting
    prefilter: bool = True
    langs: tuple[str, ...] = ()  # every language the outlet publishes in, main first ((lang,) when one)
    topic_sections: tuple[str, ...] = ()  # URL prefixes whose entries skip the prefilter
    search_only: str | None = None  # why the source has no feed or sitemap (reached by discovery only)

    def in_topic_section(self, *urls: str) -> bool:
        """True when one of ``urls`` (the entry's link, the feed or sitemap it came from) lies under a
        declared topic section."""
        return any(u.startswith(prefix) for u in urls for prefix in self.topic_sections)

    @property
    def hosts(self) -> frozenset[str]:
        """Hosts (``host[:port]``) of the home page, feeds and sitemaps (lower-case, ``www.`` dropped)."""
        return frozenset(host_key(u) for u in (self.home, *self.feeds, *self.sitemaps))


def host_key(url: str) -> str:
    """``host[:port]`` of ``url``, lower-case, ``www.`` dropped (the port only when not the default)."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower().removeprefix("www.")
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is not None and port != {"http": 80, "https": 443}.get(parts.scheme):
        return f"{host}:{port}"
    return host


def _url(value: Any, where: str) -> str:
    if not isinstance(value, str) or urlsplit(value).scheme not in {"http", "https"} or not urlsplit(value).hostname:
        raise RegistryError(f"{where}: {value!r} is not an absolute http(s) URL")
    return value


def _urls(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise RegistryError(f"{where}: expected a list of URLs, got {value!r}")
    return tuple(_url(v, where) for v in value)


def _str(table: dict[str, Any], key: str, where: str) -> str:
    value = table.get(key)
    if not isinstance(value, str) or not value.strip():
        raise RegistryError(f"{where}: key {key!r} is required and must be a non-empty string")
    return value


def _lang(value: Any, where: str) -> str:
    if not isinstance(value, str) or len(value) != 2 or not value.isalpha():
        raise RegistryError(f"{where}: lang {value!r} must be an ISO 639-1 code such as 'ar'")
    return value.lower()


def _langs(table: dict[str, Any], where: str) -> tuple[str, ...]:
    """``langs`` (main language first) or ``lang``; both may be given when ``lang`` is ``langs[0]``."""
    if "langs" not in table:
        _str(table, "lang", where)
        return (_lang(table["lang"], where),)
    raw = table["langs"]
    if not isinstance(raw, list) or not raw:
        raise RegistryError(f"{where}: langs {raw!r} must be a non-empty list of ISO 639-1 codes, main first")
    langs = tuple(dict.fromkeys(_lang(v, where) for v in raw))
    if "lang" in table and _lang(table["lang"], where) != langs[0]:
        raise RegistryError(f"{where}: lang {table['lang']!r} is not the first of langs {list(langs)} (main first)")
    return langs


def parse_registry(text: str, origin: str = "<registry>") -> list[Source]:
    """Parse registry TOML text.

    Raises:
        RegistryError: not TOML, no ``[[source]]``, a missing/invalid key, an unknown type or a duplicate id
            (the message names ``origin``, the source id and the key).
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RegistryError(f"source registry {origin!r} is not valid TOML: {exc}") from exc
    tables = data.get("source")
    if not isinstance(tables, list) or not tables:
        raise RegistryError(f"source registry {origin!r}: no [[source]] table")
    out: list[Source] = []
    seen: set[str] = set()
    for i, table in enumerate(tables):
        where = f"source registry {origin!r}, source #{i + 1}"
        ident = _str(table, "id", where)
        where = f"source registry {origin!r}, source {ident!r}"
        if ident in seen:
            raise RegistryError(f"{where}: duplicate id")
        seen.add(ident)
        kind = _str(table, "type", where)
        if kind not in SOURCE_TYPES:
            raise RegistryError(f"{where}: type {kind!r} is not one of {sorted(SOURCE_TYPES)}")
        langs = _langs(table, where)
        interval = table.get("interval_s")
        if interval is not None and (not isinstance(interval, int) or isinstance(interval, bool) or interval < 1):
            raise RegistryError(f"{where}: interval_s {interval!r} must be a positive integer (seconds)")
        feeds = _urls(table.get("feeds", []), f"{where}, key 'feeds'")
        sitemaps = _urls(table.get("sitemaps", []), f"{where}, key 'sitemaps'")
        for flag in ("verified", "prefilter"):
            if flag in table and not isinstance(table[flag], bool):
                raise RegistryError(f"{where}: {flag} {table[flag]!r} must be true or false")
        known = {
            "id",
            "name",
            "home",
            "lang",
            "langs",
            "country",
            "type",
            "feeds",
            "sitemaps",
            "verified",
            "interval_s",
            "prefilter",
            "topic_sections",
            "search_only",
            "notes",
        }
        unknown = set(table) - known
        if unknown:
            raise RegistryError(f"{where}: unknown key(s) {sorted(unknown)} (known: {sorted(known)})")
        name = _str(table, "name", where)
        home = _url(table.get("home"), f"{where}, key 'home'")
        search_only = table.get("search_only")
        if search_only is not None and (not isinstance(search_only, str) or not search_only.strip()):
            raise RegistryError(f"{where}: search_only {search_only!r} must be the reason, a non-empty string")
        if search_only is not None and (feeds or sitemaps):
            raise RegistryError(f"{where}: search_only is set but the source lists feeds or sitemaps")
        if search_only is None and not feeds and not sitemaps:
            # Not fatal: one undeclared source must not stop the crawl of all the others.
            logger.warning(
                "source has no feeds and no sitemaps: reached only through discovery; "
                'set search_only = "<why>" to say so',
                extra={"source": ident, "registry": origin},
            )
            search_only = UNDECLARED_SEARCH_ONLY
        out.append(
            Source(
                id=ident,
                name=name,
                home=home,
                lang=langs[0],
                langs=langs,
                country=_str(table, "country", where).upper(),
                type=kind,
                feeds=feeds,
                sitemaps=sitemaps,
                verified=bool(table.get("verified", False)),
                interval_s=interval,
                prefilter=bool(table.get("prefilter", True)),
                topic_sections=_urls(table.get("topic_sections", []), f"{where}, key 'topic_sections'"),
                search_only=search_only,
            )
        )
    return out


def load_registry(path: Path) -> list[Source]:
    """Read the registry file at ``path``.

    Raises:
        RegistryError: the file does not exist or is invalid (see :func:`parse_registry`).
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise RegistryError(f"source registry {str(path)!r} does not exist") from exc
    return parse_registry(text, str(path))


def select(sources: Sequence[Source], ids: Iterable[str] | None) -> list[Source]:
    """The sources whose id is in ``ids`` (all when ``ids`` is None).

    Raises:
        RegistryError: an id is not in the registry (the message lists the known ids).
    """
    if ids is None:
        return list(sources)
    wanted = list(ids)
    by_id = {s.id: s for s in sources}
    missing = [i for i in wanted if i not in by_id]
    if missing:
        raise RegistryError(f"unknown source id(s) {missing} (known: {sorted(by_id)})")
    return [by_id[i] for i in wanted]


def source_for_url(sources: Sequence[Source], url: str) -> str:
    """The id of the registered source serving ``url``, else its host (DESIGN.md).

    A source matches when ``url``'s host is (a subdomain of) one of its hosts; among several (France 24
    Arabic and French share a host), the one whose home path is the longest prefix of ``url``'s path wins.
    """
    host = host_key(url)
    path = urlsplit(url).path
    best: tuple[int, str] | None = None
    for source in sources:
        if not any(host == known or host.endswith("." + known) for known in source.hosts):
            continue
        home_path = urlsplit(source.home).path.rstrip("/")
        if home_path and host_key(source.home) == host and not (path == home_path or path.startswith(home_path + "/")):
            score = 0  # same host, another section of it
        else:
            score = len(home_path) + 1
        if best is None or score > best[0]:
            best = (score, source.id)
    if best is not None:
        return best[1]
    return host or "unknown"
