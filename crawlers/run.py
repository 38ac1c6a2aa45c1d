"""Run the spiders of one crawl in this process with Scrapy's ``CrawlerProcess``.

Twisted's reactor starts once per process and cannot be restarted, so :func:`crawl` can be called
once per process: a second call raises :class:`CrawlError` instead of hanging. The CLI (``crawl``,
``run``, ``demo``) calls it once per command; the tests run each crawl in a fresh subprocess
(``sednaya-monitor crawl --json``) and read the bus and the summary afterwards. ``follow=True`` keeps the
spiders alive, polling each source on its own interval, until SIGINT/SIGTERM.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime

from crawlers.crawl_config import CrawlConfig
from crawlers.crawl_context import CrawlContext, CrawlSummary
from crawlers.errors import CrawlError
from crawlers.raw_store import RawCopies
from crawlers.scrapy_settings import scrapy_settings
from stream.bus import Bus
from stream.metrics import Metrics

logger = logging.getLogger(__name__)

_started = False
# Scrapy's logging set-up forces these loggers to its own levels; the CLI's choice is restored after it.
SCRAPY_LOGGERS = ("scrapy", "twisted", "filelock", "hpack")
SCRAPY_DEFAULT_LEVEL = logging.WARNING  # Scrapy's INFO lines (stats dumps, settings) are noise in our logs


def _restore_log_levels(levels: dict[str, int]) -> None:
    for name, before in levels.items():
        unset_scrapy = before == logging.NOTSET and name == "scrapy"
        level = max(logging.getLogger().getEffectiveLevel(), SCRAPY_DEFAULT_LEVEL) if unset_scrapy else before
        logging.getLogger(name).setLevel(level)


def crawl(
    config: CrawlConfig,
    bus: Bus,
    metrics: Metrics,
    *,
    raw: RawCopies,
    follow: bool = False,
    sources: Sequence[str] | None = None,
    backfill_since: datetime | None = None,
    spiders: Sequence[str] | None = None,
) -> CrawlSummary:
    """Crawl the registry (``sources``: ids to restrict to) and publish on-topic articles to ``bus``,
    keeping each page's raw copy in ``raw``.

    ``backfill_since`` runs the GDELT backfill from that time instead (articles marked ``backfill``).
    ``spiders`` overrides the spider selection (``feeds``, ``sitemaps``, ``gdelt``, ``googlenews``); all
    run as children of one ``monitor`` spider so that one downloader paces every host.

    Raises:
        CrawlError: called twice in one process (the reactor cannot restart), or an unknown spider name.
        RegistryError: the registry file is invalid or a source id is unknown.
    """
    global _started  # noqa: PLW0603  # one reactor per process: remember it was used
    if _started:
        raise CrawlError(
            "crawl: a crawl already ran in this process and Twisted's reactor cannot restart; "
            "run each crawl in a new process (as the CLI does)"
        )
    from scrapy.crawler import CrawlerProcess

    from crawlers.spiders.monitor import CHILDREN, MonitorSpider, default_children

    # The search APIs (GDELT, Google News) are not split by source: the first crawl shard alone asks them.
    discovery = config.discovery and config.crawl_shard_index == 0
    names = (
        tuple(spiders) if spiders is not None else default_children(discovery, backfill=backfill_since is not None)
    )
    unknown = [n for n in names if n not in CHILDREN]
    if unknown:
        raise CrawlError(f"unknown spider(s) {unknown} (known: {sorted(CHILDREN)})")
    context = CrawlContext(config, bus, metrics, raw=raw, source_ids=sources, backfill_since=backfill_since)
    _started = True
    try:
        # One crawler (one downloader) for every spider: per-host pacing and robots.txt are shared.
        levels = {name: logging.getLogger(name).level for name in SCRAPY_LOGGERS}
        process = CrawlerProcess(scrapy_settings(config))
        _restore_log_levels(levels)
        process.crawl(MonitorSpider, context=context, follow=follow, spiders=names)
        process.start()
    finally:
        summary = context.close()
    logger.info("crawl finished", extra={"stage": "crawl", "summary": summary.to_dict()})
    return summary
