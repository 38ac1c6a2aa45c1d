"""The metrics port: what the stages count, as ``typing.Protocol`` s (no metrics library here).

The domain (``stream/``, ``indexer/``, ``crawlers/``) counts through :class:`Metrics`; the application
package builds the implementation (``sednaya_monitor.prometheus_metrics.PrometheusMetrics``, on
prometheus_client) and passes it in. Label values stay bounded (stage, status, reason, source, lang,
topic, group, channel): never a URL, an article id or a story id.
"""

from __future__ import annotations

from types import TracebackType
from typing import Protocol


class Timing(Protocol):
    """A context manager that observes the time its block took."""

    def __enter__(self) -> object: ...

    def __exit__(
        self, typ: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> object: ...


class CounterChild(Protocol):
    def inc(self, amount: float = 1) -> None: ...


class GaugeChild(Protocol):
    def set(self, value: float) -> None: ...


class HistogramChild(Protocol):
    def observe(self, amount: float) -> None: ...

    def time(self) -> Timing: ...


class Counter(Protocol):
    def labels(self, **labels: str) -> CounterChild: ...


class Gauge(Protocol):
    def labels(self, **labels: str) -> GaugeChild: ...


class Histogram(Protocol):
    def labels(self, **labels: str) -> HistogramChild: ...


class Metrics(Protocol):
    """Every metric a stage, the bus, the store or the crawl counts (names in the implementation)."""

    @property
    def articles(self) -> Counter:
        """Articles out of a stage, each counted once per stage: labels ``stage``, ``status``."""

    @property
    def stage_seconds(self) -> Histogram:
        """Processing time per article in a stage: ``stage``."""

    @property
    def bus_records(self) -> Counter:
        """Records produced, consumed or dead-lettered: ``topic``, ``op``."""

    @property
    def bus_lag(self) -> Gauge:
        """Records not yet committed by a consumer group: ``topic``, ``group``, ``partition``."""

    @property
    def dead_letters(self) -> Counter:
        """Dead-lettered records: ``stage``, ``reason`` (the error class)."""

    @property
    def store_writes(self) -> Counter:
        """Search-store document writes: ``kind``, ``result``."""

    @property
    def store_write_seconds(self) -> Histogram:
        """Wall time of one store write call: ``kind``."""

    @property
    def stories(self) -> Counter:
        """Story events published: ``kind``."""

    @property
    def source_fetches(self) -> Counter:
        """Fetches per source and outcome: ``source``, ``outcome``."""

    @property
    def source_last_success(self) -> Gauge:
        """Unix time of a source's last successful fetch: ``source``."""

    @property
    def source_poll_interval(self) -> Gauge:
        """A source's configured poll interval: ``source``."""

    @property
    def source_articles(self) -> Counter:
        """Relevant articles published per source: ``source``."""

    @property
    def extraction(self) -> Counter:
        """Extraction outcomes: ``reason``."""

    @property
    def alerts(self) -> Counter:
        """Alerts by channel and result: ``channel``, ``result``."""

    @property
    def alert_latency(self) -> Histogram:
        """Entry on the bus to alert delivery: ``channel``."""

    @property
    def alert_events(self) -> Counter:
        """Story events the alert stage took: ``kind`` (created, updated: one per article; merged)."""

    @property
    def alert_waiting(self) -> GaugeChild:
        """Story events the alert stage holds until their article is indexed (no labels)."""

    @property
    def story_events_held(self) -> GaugeChild:
        """Story events the clustering stage holds during the warm-up (no labels; stream.assign_stage)."""

    @property
    def model_seconds(self) -> Counter:
        """CPU seconds of the thread that calls the model, inside its ``embed`` calls: ``model``
        (``stream.metered_embedder``)."""
