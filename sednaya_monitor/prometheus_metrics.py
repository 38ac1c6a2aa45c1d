"""The Prometheus implementation of the metrics port (``stream.metrics.Metrics``), created on a registry
passed in (tests use a fresh one), plus what only the application counts (build info, health).

Names follow https://prometheus.io/docs/practices/naming/: ``sednaya_`` prefix, base units,
``_total`` on counters, bounded label values only (stage, status, reason, source, lang, topic, group,
channel): never a URL, an article id or a story id.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


class PrometheusMetrics:
    """Every metric of the service (``stream.metrics.Metrics`` and the process's own). One instance per
    process, built by the application (``sednaya_monitor.wiring.make_metrics``), passed to the stages."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        reg = self.registry
        self.articles = Counter(
            "sednaya_articles_total",
            "Articles out of a stage, each counted once per stage with its outcome.",
            ["stage", "status"],
            registry=reg,
        )
        self.stage_seconds = Histogram(
            "sednaya_stage_duration_seconds",
            "Processing time per article in a stage.",
            ["stage"],
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self.bus_records = Counter(
            "sednaya_bus_records_total",
            "Records produced, consumed or dead-lettered on the bus.",
            ["topic", "op"],
            registry=reg,
        )
        self.bus_lag = Gauge(
            "sednaya_bus_consumer_lag_records",
            "Records not yet committed by a consumer group.",
            ["topic", "group", "partition"],
            registry=reg,
        )
        self.dead_letters = Counter(
            "sednaya_dead_letters_total",
            "Records sent to a dead-letter topic, by stage and reason class.",
            ["stage", "reason"],
            registry=reg,
        )
        self.store_writes = Counter(
            "sednaya_store_writes_total",
            "Search-store document writes by kind and result.",
            ["kind", "result"],
            registry=reg,
        )
        self.stories = Counter(
            "sednaya_story_events_total",
            "Story events published by the clustering stage.",
            ["kind"],
            registry=reg,
        )
        self.source_fetches = Counter(
            "sednaya_source_fetches_total",
            "Fetches per source and outcome (ok, not_modified, http_403, http_429, http_5xx, dns, timeout, ...).",
            ["source", "outcome"],
            registry=reg,
        )
        self.source_last_success = Gauge(
            "sednaya_source_last_success_timestamp_seconds",
            "Unix time of the last successful fetch of a source (freshness).",
            ["source"],
            registry=reg,
        )
        self.extraction = Counter(
            "sednaya_extraction_total",
            "Extraction outcomes by reason (ok, listing_page, too_short, not_html, off_topic, ...).",
            ["reason"],
            registry=reg,
        )
        self.alerts = Counter(
            "sednaya_alerts_total",
            "Alerts by channel and result (matched, sent, failed).",
            ["channel", "result"],
            registry=reg,
        )
        self.alert_latency = Histogram(
            "sednaya_alert_latency_seconds",
            "Time from the article's entry on the bus to alert delivery.",
            ["channel"],
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self.alert_events = Counter(
            "sednaya_alert_story_events_total",
            "Story events the alert stage took, by kind (created, updated: one per article; merged).",
            ["kind"],
            registry=reg,
        )
        self.alert_waiting = Gauge(
            "sednaya_alert_events_waiting",
            "Story events the alert stage holds until their article is indexed (the index stage lags).",
            registry=reg,
        )
        self.story_events_held = Gauge(
            "sednaya_story_events_held",
            "Story events the clustering stage holds back during the warm-up of a fresh story state.",
            registry=reg,
        )
        self.model_seconds = Counter(
            "sednaya_model_cpu_seconds",
            "CPU seconds of the thread that calls the embedding model, inside its embed calls (the model's "
            "BLAS threads are not counted; one by default, model_threads).",
            ["model"],
            registry=reg,
        )
        self.info = Info("sednaya", "Build and model information.", registry=reg)
        self.store_write_seconds = Histogram(
            "sednaya_store_write_duration_seconds",
            "Wall time of one search-store write call (a bulk request counts once), by document kind.",
            ["kind"],
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self.source_poll_interval = Gauge(
            "sednaya_source_poll_interval_seconds",
            "Configured poll interval of a source; the staleness alert fires after 3 intervals without success.",
            ["source"],
            registry=reg,
        )
        self.source_articles = Counter(
            "sednaya_source_articles_total",
            "Relevant articles published to the bus per source (the per-source volume baseline).",
            ["source"],
            registry=reg,
        )
        self.healthy = Gauge(
            "sednaya_healthy",
            "1 while the process reports green on /healthz, 0 while red.",
            registry=reg,
        )
        self.healthy.set(1)  # green until a Health says otherwise (a process without one is not "down")


def set_build_info(metrics: PrometheusMetrics, *, version: str, model: str, **extra: str) -> None:
    """Fill ``sednaya_info{version, model, ...}`` (value 1); call once at start-up of every process.

    ``extra`` adds bounded labels such as ``stage="embed"`` or ``bus="kafka"``; never an id or a URL.
    """
    metrics.info.info({"version": version, "model": model, **extra})
