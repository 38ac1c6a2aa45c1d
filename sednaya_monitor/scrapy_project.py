"""The Scrapy settings module named in ``scrapy.cfg``, so that ``scrapy list`` and ``scrapy crawl NAME``
work from the repository: its upper-case names are the crawl's Scrapy settings
(``crawlers.scrapy_settings``) for the settings of the environment (defaults <
``SEDNAYA_MONITOR_CONFIG`` file < ``SEDNAYA_MONITOR_*`` environment).
"""

from __future__ import annotations

from crawlers.scrapy_settings import scrapy_settings
from sednaya_monitor.settings import load_settings
from sednaya_monitor.wiring import crawl_config

for _key, _value in scrapy_settings(crawl_config(load_settings())).items():
    globals()[_key] = _value
