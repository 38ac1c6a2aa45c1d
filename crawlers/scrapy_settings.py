"""Scrapy settings of the ``crawlers`` project, derived from the crawl's :class:`CrawlConfig`.

:func:`scrapy_settings` maps a ``CrawlConfig`` onto Scrapy's keys (the one place that does). The Scrapy
settings module named in ``scrapy.cfg`` (``sednaya_monitor/scrapy_project.py``, so that ``scrapy list``
and ``scrapy crawl NAME`` work from the repository) is built with it from the environment's settings.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from crawlers.crawl_config import CrawlConfig

PROJECT_NAME = "sednaya_monitor"
AUTOTHROTTLE_MAX_DELAY_S = 60.0  # slowest pace AutoThrottle may fall back to for a struggling host
AUTOTHROTTLE_TARGET = 1.0  # one request in flight per host on average: a monitor, not a mirror
SEARCH_API_CONCURRENCY = 1  # GDELT and Google News: one request at a time
# A <meta http-equiv="refresh"> is followed only this soon: news pages reload themselves every few minutes
# ("90; url=<the page>"), and followed, that reload is a redirect loop that loses the article.
METAREFRESH_MAXDELAY_S = 5
# Longest URL requested (Scrapy drops a longer one, 2083 by default): an Arabic or Cyrillic slug percent-encoded
# runs past 2083 characters; servers take 8 KiB. Longer links are counted (``links_skipped``: too_long).
URL_LENGTH_LIMIT = 8192


def user_agent(config: CrawlConfig) -> str:
    """The descriptive User-Agent, with the contact URL (added when ``user_agent`` lacks it)."""
    if config.contact_url and config.contact_url not in config.user_agent:
        return f"{config.user_agent} (+{config.contact_url})"
    return config.user_agent


def scrapy_settings(config: CrawlConfig) -> dict[str, Any]:
    """Scrapy settings dict for one crawl with ``config``."""
    delay = config.crawl_download_delay_s
    search_slots = {}
    for url, interval in (
        (config.gdelt_api_url, config.gdelt_min_interval_s),
        (config.google_news_url, delay),
    ):
        host = urlsplit(url).hostname
        if host:
            search_slots[host] = {"concurrency": SEARCH_API_CONCURRENCY, "delay": interval}
    return {
        "BOT_NAME": PROJECT_NAME,
        "SPIDER_MODULES": ["crawlers.spiders"],
        "NEWSPIDER_MODULE": "crawlers.spiders",
        "USER_AGENT": user_agent(config),
        "ROBOTSTXT_OBEY": True,
        "COOKIES_ENABLED": False,  # no sessions: we read public pages only, never log in or pass checks
        "TELNETCONSOLE_ENABLED": False,
        "CONCURRENT_REQUESTS": 16,
        "CONCURRENT_REQUESTS_PER_DOMAIN": config.crawl_concurrency_per_domain,
        "DOWNLOAD_DELAY": delay,
        "AUTOTHROTTLE_ENABLED": True,
        "AUTOTHROTTLE_START_DELAY": max(delay, 0.0),
        "AUTOTHROTTLE_MAX_DELAY": max(AUTOTHROTTLE_MAX_DELAY_S, delay),
        "AUTOTHROTTLE_TARGET_CONCURRENCY": AUTOTHROTTLE_TARGET,
        "CRAWL_DELAY_MAX": config.crawl_max_crawl_delay_s,
        "DOWNLOAD_SLOTS": search_slots,
        "DOWNLOAD_TIMEOUT": config.crawl_download_timeout_s,
        "DNS_TIMEOUT": config.crawl_download_timeout_s,
        "DOWNLOAD_MAXSIZE": config.crawl_max_page_bytes,
        "DOWNLOAD_WARNSIZE": 0,
        "RETRY_ENABLED": config.crawl_retry_times > 0,
        "RETRY_TIMES": config.crawl_retry_times,
        "REDIRECT_MAX_TIMES": 10,
        "METAREFRESH_MAXDELAY": METAREFRESH_MAXDELAY_S,
        "URLLENGTH_LIMIT": URL_LENGTH_LIMIT,
        "HTTPCACHE_ENABLED": config.crawl_http_cache,
        "HTTPCACHE_DIR": str((config.data_dir / "crawl" / "httpcache").resolve()),
        "HTTPCACHE_IGNORE_HTTP_CODES": [403, 429, 500, 502, 503, 504],
        "ITEM_PIPELINES": {"crawlers.pipelines.BusPublishPipeline": 300},
        "EXTENSIONS": {"crawlers.politeness.CrawlDelayFloor": 100},  # after AutoThrottle (order 0)
        "LOG_LEVEL": config.log_level.upper(),
        "LOG_INSTALL_ROOT_HANDLER": False,  # the CLI configures logging (sednaya_monitor/cli/logs.py)
        "FEED_EXPORT_ENCODING": "utf-8",
    }
