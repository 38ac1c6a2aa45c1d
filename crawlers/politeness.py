"""robots.txt ``Crawl-delay`` as a floor under the per-host download delay.

Scrapy obeys robots.txt allow/disallow (``ROBOTSTXT_OBEY``) but ignores ``Crawl-delay``, and
AutoThrottle may lower a host's delay below it. This extension reads the delay when a robots.txt is
parsed (``robots_parsed`` signal), applies it to the host's download slot (and to slots created later
for that host), and restores it after every AutoThrottle adjustment. Delays are capped at
``settings.crawl_max_crawl_delay_s`` (``CRAWL_DELAY_MAX`` here) so one host cannot stall a crawl.
"""

from __future__ import annotations

import logging
from typing import Any

from scrapy import Request, signals
from scrapy.crawler import Crawler
from scrapy.http import Response

logger = logging.getLogger(__name__)


class CrawlDelayFloor:
    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler
        self.cap = crawler.settings.getfloat("CRAWL_DELAY_MAX", 30.0)
        self.user_agent = crawler.settings.get("USER_AGENT", "")
        self.floors: dict[str, float] = {}  # download-slot key -> least delay in seconds
        crawler.signals.connect(self._robots_parsed, signal=signals.robots_parsed)
        # Connected after AutoThrottle (extension order), so this runs after its adjustment.
        crawler.signals.connect(self._response_downloaded, signal=signals.response_downloaded)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> CrawlDelayFloor:
        return cls(crawler)

    def _robots_parsed(self, robotparser: Any, request: Request) -> None:
        parser = getattr(robotparser, "rp", None)  # scrapy.robotstxt.ProtegoRobotParser wraps protego
        if parser is None or not hasattr(parser, "crawl_delay"):
            return
        delay = parser.crawl_delay(self.user_agent)
        if delay is None:
            return
        delay = min(float(delay), self.cap)
        downloader = self.crawler.engine.downloader
        key = downloader.get_slot_key(request)
        self.floors[key] = delay
        # No jitter on such hosts: Scrapy's ±50% would send some requests sooner than the Crawl-delay.
        downloader.per_slot_settings.setdefault(key, {}).update({"delay": delay, "jitter": 0.0})
        slot = downloader.slots.get(key)
        if slot is not None:
            slot.delay = max(slot.delay, delay)
            slot.jitter = 0.0
        logger.info("robots.txt Crawl-delay applied", extra={"slot": key, "delay_s": delay})

    def _response_downloaded(self, response: Response, request: Request, spider: Any) -> None:
        key = request.meta.get("download_slot")
        if key is None or key not in self.floors:
            return
        slot = self.crawler.engine.downloader.slots.get(key)
        if slot is not None and slot.delay < self.floors[key]:
            slot.delay = self.floors[key]
