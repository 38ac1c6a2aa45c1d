"""What every spider of one crawl shares: config, bus, metrics, registry, crawl state and the summary.

One :class:`CrawlContext` per crawl (``crawlers.run.crawl`` builds it and hands it to every
spider as the ``context`` argument). ``scrapy crawl NAME`` from the repository builds its own with
:meth:`CrawlContext.standalone` (config, bus, metrics and raw-copy storage from the composition root).
All methods run on the reactor thread.
"""

from __future__ import annotations

import logging
import re
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import unquote_plus

from crawlers.crawl_config import CrawlConfig
from crawlers.dead_letter import DeadLetterFile
from crawlers.raw_store import RawCopies
from crawlers.registry import Source, load_registry, select, source_for_url
from crawlers.relevance import RelevanceFilter
from crawlers.seen import SeenStore
from crawlers.sharding import shard
from stream.article import now_utc
from stream.bus import Bus
from stream.metrics import Metrics
from stream.topic import load_topic

logger = logging.getLogger(__name__)

SUCCESS_OUTCOMES = frozenset({"ok", "not_modified", "html_page"})  # fetches that count as "the source answered"
CRAWL_STAGE = "crawl"  # the ``stage`` label of sednaya_articles_total for this package


@dataclass
class CrawlSummary:
    """What one crawl did. ``fetches``: source -> outcome -> count; ``extraction``: reason -> count
    (``ok`` for articles extracted and on topic, else the rejection reason); ``articles``: status ->
    count (published, rejected, duplicate, failed, dead_lettered); ``degraded``: source -> reason for
    search sources whose answer could not be trusted (rate limits, errors: never "zero results")."""

    started_at: datetime = field(default_factory=now_utc)
    finished_at: datetime | None = None
    fetches: dict[str, Counter[str]] = field(default_factory=dict)
    extraction: Counter[str] = field(default_factory=Counter)
    articles: Counter[str] = field(default_factory=Counter)
    degraded: dict[str, str] = field(default_factory=dict)
    skipped_seen: int = 0  # links already handled by an earlier run (or earlier in this one)
    prefiltered: int = 0  # feed/sitemap entries not fetched: the prefilter found nothing on topic
    google_news_links: Counter[str] = field(default_factory=Counter)  # article ids decoded | opaque
    prefilter_kept: Counter[str] = field(default_factory=Counter)  # why entries were fetched (name, context...)
    links_skipped: Counter[str] = field(default_factory=Counter)  # entries not fetched: no_link, bad_link, too_long

    @property
    def published(self) -> int:
        return self.articles["published"]

    @property
    def dead_lettered(self) -> int:
        return self.articles["dead_lettered"]

    def fetch_count(self, source: str, outcome: str) -> int:
        return self.fetches.get(source, Counter())[outcome]

    def to_dict(self) -> dict[str, Any]:
        return {
            "started_at": self.started_at.isoformat(),
            "finished_at": None if self.finished_at is None else self.finished_at.isoformat(),
            "published": self.published,
            "dead_lettered": self.dead_lettered,
            "skipped_seen": self.skipped_seen,
            "prefiltered": self.prefiltered,
            "prefilter_kept": dict(sorted(self.prefilter_kept.items())),
            "links_skipped": dict(sorted(self.links_skipped.items())),
            "google_news_links": dict(sorted(self.google_news_links.items())),
            "articles": dict(sorted(self.articles.items())),
            "extraction": dict(sorted(self.extraction.items())),
            "fetches": {s: dict(sorted(c.items())) for s, c in sorted(self.fetches.items())},
            "degraded": dict(sorted(self.degraded.items())),
        }

    def __str__(self) -> str:
        return "\n".join(self.lines())

    def lines(self) -> list[str]:
        """Human summary, one fact per line (CLI output)."""
        fetched = sum(sum(c.values()) for c in self.fetches.values())
        out = [
            (
                f"crawl: {self.published} article(s) published, {self.dead_lettered} dead-lettered, "
                f"{fetched} fetch(es) from {len(self.fetches)} source(s), {self.skipped_seen} already seen, "
                f"{self.prefiltered} feed entries skipped by the prefilter"
            ),
        ]
        if self.prefilter_kept:
            out.append("  prefilter kept: " + ", ".join(f"{k}={v}" for k, v in sorted(self.prefilter_kept.items())))
        if self.links_skipped:
            out.append("  links skipped: " + ", ".join(f"{k}={v}" for k, v in sorted(self.links_skipped.items())))
        if self.google_news_links:
            out.append(
                "  google news links: " + ", ".join(f"{k}={v}" for k, v in sorted(self.google_news_links.items()))
            )
        if self.extraction:
            out.append("  extraction: " + ", ".join(f"{k}={v}" for k, v in sorted(self.extraction.items())))
        for source, outcomes in sorted(self.fetches.items()):
            out.append(f"  {source}: " + ", ".join(f"{k}={v}" for k, v in sorted(outcomes.items())))
        for source, reason in sorted(self.degraded.items()):
            out.append(f"  DEGRADED {source}: {reason}")
        return out


# The composition root's factory of a standalone crawl's parts, by dotted path (the crawlers never import
# the application package): () -> (CrawlConfig, Bus, Metrics, RawCopies), from the environment's settings.
STANDALONE_FACTORY = "sednaya_monitor.wiring.standalone_crawl"


class CrawlContext:
    """Shared state of one crawl. ``sources`` are the registry entries to poll; ``registry`` all of them
    (used to attribute discovered links to an outlet)."""

    def __init__(
        self,
        config: CrawlConfig,
        bus: Bus,
        metrics: Metrics,
        *,
        raw: RawCopies,
        source_ids: Sequence[str] | None = None,
        backfill_since: datetime | None = None,
        owns_bus: bool = False,
    ) -> None:
        self.config = config
        self.bus = bus
        self.metrics = metrics
        self.registry = load_registry(config.sources_file)
        # This process's share of the sources (crawl_shard_index of crawl_shard_count; all by default).
        self.sources = shard(select(self.registry, source_ids), config.crawl_shard_index, config.crawl_shard_count)
        for source in self.sources:  # the staleness alert compares freshness with each source's interval
            interval = source.interval_s or config.follow_interval_s
            metrics.source_poll_interval.labels(source=source.id).set(interval)
        self.topic = load_topic(config.topic_file)
        self.relevance = RelevanceFilter(self.topic)
        config.data_dir.mkdir(parents=True, exist_ok=True)
        self.seen = SeenStore(config.data_dir)
        self.raw: RawCopies = raw
        self.dead_letters = DeadLetterFile(config.data_dir)
        self.backfill_since = backfill_since
        self.summary = CrawlSummary()
        self._claimed: set[str] = set()
        self.published_ids: set[str] = set()
        self._owns_bus = owns_bus
        self._closed = False
        bus.ensure_topics([config.topic_raw])

    @classmethod
    def standalone(
        cls,
        source_ids: Sequence[str] | None = None,
        *,
        factory: str = STANDALONE_FACTORY,
    ) -> CrawlContext:
        """For ``scrapy crawl NAME``: the config, bus, fresh metrics and raw-copy storage the settings of
        the environment name, built by the composition root (named by ``factory`` as Scrapy names its
        components)."""
        from scrapy.utils.misc import load_object

        config, bus, metrics, raw = load_object(factory)()
        return cls(config, bus, metrics, raw=raw, source_ids=source_ids, owns_bus=True)

    @property
    def backfill(self) -> bool:
        return self.backfill_since is not None

    def attribute(self, url: str) -> str:
        """Registry id of the outlet serving ``url``, else its host."""
        return source_for_url(self.registry, url)

    def source_type(self, source: str) -> str | None:
        """The registry ``type`` of ``source`` (``wire``, ``ngo``...), None for unregistered hosts."""
        for entry in self.registry:
            if entry.id == source:
                return entry.type
        return None

    def source_country(self, source: str) -> str | None:
        """The registry ``country`` (ISO 3166-1 alpha-2) of ``source``, None for unregistered hosts."""
        for entry in self.registry:
            if entry.id == source:
                return entry.country or None
        return None

    def worth_fetching(self, source: Source, text: str, link: str, listing_url: str) -> bool:
        """Whether a feed/sitemap entry of ``source`` (``text``: its title, summary and keywords; ``link``: its
        URL) is fetched: always for sources with ``prefilter = false`` (``whole_source``) and entries of a
        declared topic section (``section``); else when the topic prefilter keeps it (``name``, ``context``)
        in the text or the link's words (:func:`link_words`). Counts the decision in the summary."""
        if not source.prefilter:
            reason: str | None = "whole_source"
        elif source.in_topic_section(link, listing_url):
            reason = "section"
        else:
            reason = self.relevance.prefilter(f"{text}\n{link_words(link)}")
        if reason is None:
            self.summary.prefiltered += 1
            return False
        self.summary.prefilter_kept[reason] += 1
        return True

    def claim(self, canonical: str) -> bool:
        """True the first time ``canonical`` is claimed in this crawl and it was not handled by an earlier
        run; counts the skip otherwise."""
        if canonical in self._claimed or self.seen.is_seen(canonical):
            self.summary.skipped_seen += 1
            return False
        self._claimed.add(canonical)
        return True

    def release(self, canonical: str) -> None:
        """Claim ``canonical`` no more in this crawl: its fetch failed, and a later poll of the listing that
        led to it (``--follow``) asks for it again."""
        self._claimed.discard(canonical)

    def fetch(self, source: str, outcome: str, url: str) -> None:
        """Count one fetch of ``source`` ending with ``outcome`` (``ok``, ``not_modified``, ``http_403``...)."""
        self.metrics.source_fetches.labels(source=source, outcome=outcome).inc()
        self.summary.fetches.setdefault(source, Counter())[outcome] += 1
        success = outcome in SUCCESS_OUTCOMES
        if success:
            self.metrics.source_last_success.labels(source=source).set(time.time())
        else:
            logger.warning("fetch failed", extra={"url": url, "source": source, "outcome": outcome, "stage": "crawl"})
        self.seen.record_fetch(source, outcome, success=success)

    def degraded(self, source: str, reason: str) -> None:
        """Mark a search source's answer as untrustworthy for this crawl (never read as zero results)."""
        self.summary.degraded[source] = reason
        logger.warning("search source degraded", extra={"source": source, "reason": reason, "stage": "crawl"})

    def extraction(self, reason: str) -> None:
        self.metrics.extraction.labels(reason=reason).inc()
        self.summary.extraction[reason] += 1

    def link_skipped(self, reason: str, link: str, source: str) -> None:
        """Count a listing entry whose link cannot be fetched (``no_link``, ``bad_link``, ``too_long``)."""
        self.summary.links_skipped[reason] += 1
        logger.info("link skipped", extra={"reason": reason, "url": link[:300], "source": source, "stage": "crawl"})

    def article(self, status: str) -> None:
        self.metrics.articles.labels(stage=CRAWL_STAGE, status=status).inc()
        self.summary.articles[status] += 1

    def close(self) -> CrawlSummary:
        """Release the crawl state (and the bus when this context built it); returns the summary."""
        if not self._closed:
            self._closed = True
            self.summary.finished_at = now_utc()
            self.seen.close()
            if self._owns_bus:
                self.bus.close()
        return self.summary


def link_words(link: str) -> str:
    """The words of a link as people read them: percent-escapes decoded (an Arabic or Cyrillic slug is
    otherwise ``%D8%B3...``) and ``-``, ``_``, ``+`` and ``/`` as spaces (``mass-grave-found``)."""
    return _LINK_BREAKS.sub(" ", unquote_plus(link))


_LINK_BREAKS = re.compile(r"[-_+/]+")
