"""What both stores derive from an :class:`Article` to index it (the same values on both stores).

- ``source_type``: the source registry's type (``wire``, ``ngo``...), carried by crawlers in
  ``article.extra["source_type"]``; ``"unknown"`` when absent (imports).
- ``source_country``: the registry's country of the outlet, ``article.extra["source_country"]``
  (Elasticsearch only: Kibana's map of source countries joins on it).
- ``sort_time``: ``published``, or ``fetched_at`` when the publication time is unknown: what date
  filters, date sorting and the ``day`` facet use.
"""

from __future__ import annotations

from datetime import datetime

from stream.article import Article, utc

SOURCE_TYPE_KEY = "source_type"  # key in Article.extra set by the crawlers from the source registry
UNKNOWN_SOURCE_TYPE = "unknown"
SOURCE_COUNTRY_KEY = "source_country"  # key in Article.extra set by the crawlers (registry country)
FACET_SIZE = 20  # buckets per facet (day: the most recent ones are kept in date order)
DAY_FACET_SIZE = 366  # a year of daily buckets


def source_type_of(article: Article) -> str:
    return article.extra.get(SOURCE_TYPE_KEY) or UNKNOWN_SOURCE_TYPE


def source_country_of(article: Article) -> str:
    """ISO 3166-1 alpha-2 country of the outlet (source registry), ``""`` when unknown (imports)."""
    return article.extra.get(SOURCE_COUNTRY_KEY, "")


def sort_time(article: Article) -> datetime:
    """UTC publication time, or fetch time when unknown."""
    return utc(article.published or article.fetched_at)


def day_of(article: Article) -> str:
    """``YYYY-MM-DD`` (UTC) of :func:`sort_time`."""
    return sort_time(article).date().isoformat()


def epoch_micros(value: datetime) -> int:
    """Microseconds since 1970-01-01 UTC (exact integer sort key)."""
    delta = utc(value) - datetime(1970, 1, 1, tzinfo=utc(value).tzinfo)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
