"""Scrapy settings of the ``crawlers`` project, derived from the service's ``Settings``.

:func:`scrapy_settings` maps a ``stream.settings.Settings`` onto Scrapy's keys (the one place that does).
As a module, this file is also the Scrapy settings module named in ``scrapy.cfg`` so that ``scrapy list``
and ``scrapy crawl NAME`` work from the repository: its upper-case names are built from
``load_settings()`` (defaults < ``SEDNAYA_MONITOR_CONFIG`` file < ``SEDNAYA_MONITOR_*`` environment).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from stream.settings import Settings, load_settings

PROJECT_NAME = "sednaya_monitor"
AUTOTHROTTLE_MAX_DELAY_S = 60.0  # slowest pace AutoThrottle may fall back to for a struggling host
AUTOTHROTTLE_TARGET = 1.0  # one request in flight per host on average: a monitor, not a mirror
SEARCH_API_CONCURRENCY = 1  # GDELT and Google News: one request at a time


def user_agent(settings: Settings) -> str:
    """The descriptive User-Agent, with the contact URL (added when ``user_agent`` lacks it)."""
    if settings.contact_url and settings.contact_url not in settings.user_agent:
        return f"{settings.user_agent} (+{settings.contact_url})"
    return settings.user_agent


def scrapy_settings(settings: Settings) -> dict[str, Any]:
    """Scrapy settings dict for one crawl with ``settings``."""
    delay = settings.crawl_download_delay_s
    search_slots = {}
    for url, interval in (
        (settings.gdelt_api_url, settings.gdelt_min_interval_s),
        (settings.google_news_url, delay),
    ):
        host = urlsplit(url).hostname
        if host:
            search_slots[host] = {"concurrency": SEARCH_API_CONCURRENCY, "delay": interval}
    return {
        "BOT_NAME": PROJECT_NAME,
        "SPIDER_MODULES": ["crawlers.spiders"],
        "NEWSPIDER_MODULE": "crawlers.spiders",
        "USER_AGENT": user_agent(settings),
        "ROBOTSTXT_OBEY": True,
        "COOKIES_ENABLED": False,  # no sessions: we read public pages only, never log in or pass checks
        "TELNETCONSOLE_ENABLED": False,
        "CONCURRENT_REQUESTS": 16,
        "CONCURRENT_REQUESTS_PER_DOMAIN": settings.crawl_concurrency_per_domain,
        "DOWNLOAD_DELAY": delay,
        "AUTOTHROTTLE_ENABLED": True,
        "AUTOTHROTTLE_START_DELAY": max(delay, 0.0),
        "AUTOTHROTTLE_MAX_DELAY": max(AUTOTHROTTLE_MAX_DELAY_S, delay),
        "AUTOTHROTTLE_TARGET_CONCURRENCY": AUTOTHROTTLE_TARGET,
        "CRAWL_DELAY_MAX": settings.crawl_max_crawl_delay_s,
        "DOWNLOAD_SLOTS": search_slots,
        "DOWNLOAD_TIMEOUT": settings.crawl_download_timeout_s,
        "DNS_TIMEOUT": settings.crawl_download_timeout_s,
        "DOWNLOAD_MAXSIZE": settings.crawl_max_page_bytes,
        "DOWNLOAD_WARNSIZE": 0,
        "RETRY_ENABLED": settings.crawl_retry_times > 0,
        "RETRY_TIMES": settings.crawl_retry_times,
        "REDIRECT_MAX_TIMES": 10,
        "HTTPCACHE_ENABLED": settings.crawl_http_cache,
        "HTTPCACHE_DIR": str((settings.data_dir / "crawl" / "httpcache").resolve()),
        "HTTPCACHE_IGNORE_HTTP_CODES": [403, 429, 500, 502, 503, 504],
        "ITEM_PIPELINES": {"crawlers.pipelines.BusPublishPipeline": 300},
        "EXTENSIONS": {"crawlers.politeness.CrawlDelayFloor": 100},  # after AutoThrottle (order 0)
        "LOG_LEVEL": settings.log_level.upper(),
        "LOG_INSTALL_ROOT_HANDLER": False,  # the CLI configures logging (sednaya_monitor/cli/logs.py)
        "FEED_EXPORT_ENCODING": "utf-8",
    }


for _key, _value in scrapy_settings(load_settings()).items():
    globals()[_key] = _value
