"""What a crawl is configured with: the crawl's own slice of the application settings.

Built from the settings by the composition root (``sednaya_monitor.wiring.crawl_config``); the field
names are the settings' names, so each knob is documented once, next to its default, in
``sednaya_monitor/settings.py``. The crawlers never read the application settings themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, kw_only=True, slots=True)
class CrawlConfig:
    """Knobs of one crawl (the spiders, the crawl context, the Scrapy settings)."""

    data_dir: Path  # crawl state (<data_dir>/crawl), dead letters, the HTTP cache
    sources_file: Path
    topic_file: Path
    topic_raw: str  # the bus topic on-topic articles are published on
    discovery: bool
    follow_interval_s: int
    crawl_shard_index: int
    crawl_shard_count: int
    user_agent: str
    contact_url: str
    crawl_http_cache: bool
    crawl_download_delay_s: float
    crawl_concurrency_per_domain: int
    crawl_download_timeout_s: float
    crawl_max_page_bytes: int
    crawl_retry_times: int
    crawl_max_crawl_delay_s: float
    crawl_sitemap_max_entries: int
    gdelt_api_url: str
    gdelt_lookback_hours: int
    gdelt_min_interval_s: float
    google_news_url: str
    log_level: str
