"""The composition root: the one module that turns settings into adapters.

Registries keyed by URL scheme (bus, store) or by model name (embedder): a new backend is one module
plus one registration line here. Stages receive ready collaborators.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, TypeVar

from crawlers.crawl_config import CrawlConfig
from crawlers.raw_store import RawCopies
from indexer.alerting.alert_stage import AlertConfig, AlertStage
from indexer.alerting.channels import ChannelConfig
from indexer.alerting.delivery import DeliveryConfig
from indexer.alerting.ledger import AlertLedger
from indexer.alerting.watchlists import SqliteWatchlistRepository, WatchlistRepository
from indexer.store import SearchStore
from sednaya_monitor.prometheus_metrics import PrometheusMetrics
from sednaya_monitor.settings import Settings, load_settings
from stream.assign_stage import AssignConfig, AssignStage
from stream.bus import Bus
from stream.clustering import ClusterParams
from stream.embedding import Embedder
from stream.errors import SettingsError
from stream.metrics import Metrics
from stream.story_state import STATE_FILE, StoryState

if TYPE_CHECKING:
    from crawlers.raw_store_s3 import S3Config
    from indexer.store_elastic import ElasticConfig
    from stream.bus_kafka import KafkaConfig

Config = TypeVar("Config")


def settings_slice(config_type: type[Config], settings: Settings, **computed: Any) -> Config:
    """A component's config object (a dataclass whose field names are setting names, so each knob is
    documented once, in ``Settings``) filled from ``settings``; ``computed`` gives the fields that are
    not plain settings."""
    names = [f.name for f in fields(config_type)]  # type: ignore[arg-type]
    return config_type(**{n: getattr(settings, n) for n in names if n not in computed}, **computed)


# The cosine thresholds each model was calibrated with: a cosine means something only for one model (e5's raw
# cosines sit at 0.78-0.93, USE's spread over 0.2-0.9). Chosen on half A of the multilingual tuning set by
# `python -m bench.multilingual_stories [--model NAME]`, raw-cosine (warm-up) values only above what two
# different events of one narrow topic reach (docs/clustering.md); all-MiniLM-L6-v2's are round 1's NeuS
# calibration (raw cosines: the English-only model is never centred, relates no stories). The one-language
# margins and the word evidence's weight are chosen by `python -m bench.language_margin` (half A of the
# multilingual set first, then NeuS); e5's chosen weight (0.2) lost a held-out event and NeuS test, so it ships 0.
MODEL_CALIBRATIONS: dict[str, Mapping[str, float]] = {
    "use-multilingual-v3": {
        "cluster_threshold": 0.3,
        "cluster_warmup_threshold": 0.7,
        "merge_threshold": 0.35,
        "merge_warmup_threshold": 0.8,
        "related_threshold": 0.25,
        "related_warmup_threshold": 1.01,
        "date_bonus": 0.2,
        "related_date_bonus": 0.1,
        "unconfirmed_margin": 0.1,
        "same_language_margin": 0.25,
        "same_language_merge_margin": 0.4,
        "word_evidence_weight": 0.3,
        "name_evidence_weight": 1.0,
    },
    "multilingual-e5-small": {
        "cluster_threshold": 0.25,
        "cluster_warmup_threshold": 0.93,
        "merge_threshold": 0.35,
        "merge_warmup_threshold": 0.95,
        "related_threshold": 0.35,  # with the warm-up hold (0.2 before it: 13/15 events alerted)
        "related_warmup_threshold": 1.01,
        "date_bonus": 0.0,
        "related_date_bonus": 0.0,
        "unconfirmed_margin": 0.15,
        "same_language_margin": 0.2,
        "same_language_merge_margin": 0.4,
        "word_evidence_weight": 0.0,
        "name_evidence_weight": 0.0,
    },
    "all-MiniLM-L6-v2": {
        "cluster_threshold": 0.7,
        "cluster_warmup_threshold": 0.7,
        "merge_threshold": 0.8,
        "merge_warmup_threshold": 0.8,
        "related_threshold": 1.01,
        "related_warmup_threshold": 1.01,
        "date_bonus": 0.0,
        "related_date_bonus": 0.0,
        "unconfirmed_margin": 0.0,
        "same_language_margin": 0.0,
        "same_language_merge_margin": 0.0,
        "word_evidence_weight": 0.0,
        "name_evidence_weight": 0.0,
    },
}


@dataclass(frozen=True, slots=True)
class EmbedderKind:
    """A registered embedder: how to build it, its dimension without loading it, and the name of its
    threshold calibration (``MODEL_CALIBRATIONS``)."""

    build: Callable[[Settings], Embedder]
    dim: int
    calibration: str


def _use(settings: Settings) -> Embedder:
    from stream.embedding_use import UniversalSentenceEncoder

    return UniversalSentenceEncoder(threads=settings.model_threads, batch_size=settings.embed_batch_size)


def _e5(settings: Settings) -> Embedder:
    from stream.embedding_e5 import E5SmallEmbedder

    return E5SmallEmbedder(threads=settings.model_threads)


def _sentence_transformers(settings: Settings) -> Embedder:
    from stream.embedding import SentenceTransformerEmbedder

    return SentenceTransformerEmbedder(
        settings.model_name,
        settings.embed_batch_size,
        backend=settings.embed_backend,
        cache_dir=settings.data_dir / MODEL_CACHE_DIR,
        threads=settings.model_threads,
    )


# model_name -> embedder; any other name or path is a sentence-transformers model.
EMBEDDERS: dict[str, EmbedderKind] = {
    "use-multilingual-v3": EmbedderKind(build=_use, dim=512, calibration="use-multilingual-v3"),
    "multilingual-e5-small": EmbedderKind(build=_e5, dim=384, calibration="multilingual-e5-small"),
    "all-MiniLM-L6-v2": EmbedderKind(build=_sentence_transformers, dim=384, calibration="all-MiniLM-L6-v2"),
    "sentence-transformers/all-MiniLM-L6-v2": EmbedderKind(
        build=_sentence_transformers, dim=384, calibration="all-MiniLM-L6-v2"
    ),
}
UNKNOWN_MODEL_CALIBRATION = "all-MiniLM-L6-v2"  # another sentence-transformers model: raw cosines, English
MODEL_CACHE_DIR = "models"  # under data_dir: the ONNX exports of sentence-transformers models (embed_backend)


def calibrated(settings: Settings) -> Settings:
    """``settings`` with each cosine threshold left empty set to the model's calibration
    (``MODEL_CALIBRATIONS``; a sentence-transformers model the registry does not know gets
    all-MiniLM-L6-v2's). Thresholds set in the configuration, the environment or a flag stay."""
    kind = EMBEDDERS.get(settings.model_name)
    calibration = MODEL_CALIBRATIONS[kind.calibration if kind is not None else UNKNOWN_MODEL_CALIBRATION]
    missing = {name: value for name, value in calibration.items() if getattr(settings, name) is None}
    return settings.replace(**missing) if missing else settings


def threshold(settings: Settings, name: str) -> float:
    """The value of cosine threshold ``name``: the setting's, else the model's calibration."""
    value = getattr(calibrated(settings), name)
    if not isinstance(value, float | int):  # calibrated() fills every one
        raise SettingsError(f"setting {name!r} has no value and model {settings.model_name!r} no calibration")
    return float(value)


def make_embedder(settings: Settings, metrics: Metrics | None = None) -> Embedder:
    """The embedder ``settings.model_name`` names (built, loaded on first use). Caps the process's BLAS
    threads first (:func:`limit_blas_threads`): the process that embeds also clusters. With ``metrics``,
    the model's CPU time is counted (``stream.metered_embedder``, ``sednaya_model_cpu_seconds_total``)."""
    limit_blas_threads(settings)
    kind = EMBEDDERS.get(settings.model_name)
    if settings.embed_backend != "torch" and kind is not None and kind.build is not _sentence_transformers:
        raise SettingsError(
            f"setting 'embed_backend'={settings.embed_backend!r}: model {settings.model_name!r} is not a "
            "sentence-transformers model (the ONNX backends are for those; its own runtime is already numpy/C)"
        )
    embedder = kind.build(settings) if kind is not None else _sentence_transformers(settings)
    if metrics is None:
        return embedder
    from stream.metered_embedder import MeteredEmbedder

    return MeteredEmbedder(embedder, metrics.model_seconds, settings.model_name)


def limit_blas_threads(settings: Settings) -> None:
    """Cap this process's BLAS threads at ``settings.model_threads`` (0 = the cores) for all of its numpy
    work, not only the model's own calls: story clustering's matrix products otherwise run on OpenBLAS's
    default of one thread per core, whose threads spin while they wait (a 2048 x 512 float32
    matrix-vector product, the content index of ~1,000 stories: 0.76 ms with 2 threads on a loaded
    2-core machine, 0.35 ms with 1)."""
    from threadpoolctl import threadpool_limits

    from stream.embedding_use import default_threads

    threadpool_limits(limits=settings.model_threads or default_threads(), user_api="blas")


def embedder_dim(settings: Settings) -> int:
    """The model's vector dimension: from the registry, else by loading the model."""
    kind = EMBEDDERS.get(settings.model_name)
    return kind.dim if kind is not None else make_embedder(settings).dim


def make_story_state(settings: Settings) -> StoryState:
    """The clustering stage's story state in the data directory."""
    return StoryState(
        settings.data_dir / STATE_FILE,
        window_days=settings.cluster_window_days,
        duplicate_threshold=settings.duplicate_threshold,
        duplicate_window_days=settings.duplicate_window_days,
    )


def make_cluster_state(settings: Settings) -> StoryState:
    """The story state of the distributed clustering stage: with a Kafka bus, a copy in this process's
    data directory mirrored to the compacted topic ``topic_story_changelog`` (no disk shared between
    the replicas: ``stream.state_changelog``); with the embedded bus, the plain file."""
    if not settings.distributed_bus:
        return make_story_state(settings)
    from stream.changelog_kafka import KafkaChangelog
    from stream.state_changelog import ChangelogStoryState

    return ChangelogStoryState(
        settings.data_dir / STATE_FILE,
        changelog=KafkaChangelog(kafka_config(settings), settings.topic_story_changelog),
        window_days=settings.cluster_window_days,
        duplicate_threshold=settings.duplicate_threshold,
        duplicate_window_days=settings.duplicate_window_days,
    )


def cluster_params(settings: Settings) -> ClusterParams:
    """Clustering thresholds from the settings, those left empty from the model's calibration
    (:func:`calibrated`); the languages the model reads are resolved against the embedder by the stage
    (``stream.assign_stage.model_languages``)."""
    settings = calibrated(settings)
    return ClusterParams(
        threshold=threshold(settings, "cluster_threshold"),
        warmup_threshold=threshold(settings, "cluster_warmup_threshold"),
        anchor_weight=settings.anchor_weight,
        cross_lingual_min_anchors=settings.cross_lingual_min_anchors,
        follow_up_min_anchors=settings.follow_up_min_anchors,
        novelty_override=settings.novelty_override,
        merge_threshold=threshold(settings, "merge_threshold"),
        warmup_merge_threshold=threshold(settings, "merge_warmup_threshold"),
        date_gate_days=settings.date_gate_days,
        date_bonus=threshold(settings, "date_bonus"),
        date_bonus_stories=settings.date_bonus_stories,
        related_threshold=threshold(settings, "related_threshold"),
        related_warmup_threshold=threshold(settings, "related_warmup_threshold"),
        related_date_bonus=threshold(settings, "related_date_bonus"),
        related_date_bonus_articles=settings.related_date_bonus_articles,
        unconfirmed_margin=threshold(settings, "unconfirmed_margin"),
        same_language_margin=threshold(settings, "same_language_margin"),
        same_language_merge_margin=threshold(settings, "same_language_merge_margin"),
        word_evidence_weight=threshold(settings, "word_evidence_weight"),
        name_evidence_weight=threshold(settings, "name_evidence_weight"),
    )


def assign_config(settings: Settings) -> AssignConfig:
    """The story-assignment stage's config: topics, topic file, model, merge pace, thresholds."""
    return settings_slice(AssignConfig, settings, cluster=cluster_params(settings))


def make_assign_stage(
    settings: Settings,
    metrics: Metrics,
    *,
    embedder: Embedder,
    state: StoryState | None = None,
    bus: Bus | None = None,
) -> AssignStage:
    """The story-assignment stage on ``state`` (default: the story state in the data directory,
    ``make_story_state``)."""
    return AssignStage(
        assign_config(settings),
        metrics,
        embedder=embedder,
        state=state if state is not None else make_story_state(settings),
        bus=bus,
    )


def make_metrics() -> PrometheusMetrics:
    """The process's metrics: the Prometheus implementation of the port ``stream.metrics.Metrics`` on a
    fresh registry (``crawlers.crawl_context`` names this function by dotted path for ``scrapy crawl``)."""
    return PrometheusMetrics()


def kafka_config(settings: Settings) -> KafkaConfig:
    """The Kafka bus's own config from ``settings`` (``bus = "kafka://h1:9092,h2:9092"`` and ``kafka_*``)."""
    from stream.bus_kafka import KafkaConfig

    return KafkaConfig(
        bootstrap=tuple(settings.kafka_bootstrap()),
        client_id=settings.kafka_client_id,
        partitions=settings.kafka_partitions,
        replication=settings.kafka_replication,
        max_poll_interval_ms=settings.kafka_max_poll_interval_ms,
        session_timeout_ms=settings.kafka_session_timeout_ms,
        compression=None if settings.kafka_compression == "none" else settings.kafka_compression,
        linger_ms=settings.kafka_linger_ms,
        batch_bytes=settings.kafka_batch_bytes,
        fetch_min_bytes=settings.kafka_fetch_min_bytes,
        fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
        max_partition_fetch_bytes=settings.kafka_max_partition_fetch_bytes,
        dlq_suffix=settings.dlq_suffix,
        security_protocol=settings.kafka_security_protocol,
        sasl_mechanism=settings.kafka_sasl_mechanism,
        sasl_username=settings.kafka_sasl_username,
        sasl_password=settings.kafka_sasl_password,
        ssl_cafile=settings.kafka_ssl_cafile,
        ssl_check_hostname=settings.kafka_ssl_check_hostname,
    )


def make_bus(settings: Settings, metrics: Metrics | None = None) -> Bus:
    """The embedded SQLite log, or Kafka for ``bus = "kafka://host:port"`` (which counts produced and
    failed deliveries in ``metrics`` when given; the worker counts consumption on both)."""
    if settings.distributed_bus:
        from stream.bus_kafka import KafkaBus

        return KafkaBus(kafka_config(settings), metrics=metrics)
    from stream.bus_embedded import EmbeddedBus

    return EmbeddedBus(settings.data_dir / "bus.sqlite3")


def make_store(settings: Settings) -> SearchStore:
    """The embedded SQLite FTS5 store, or Elasticsearch 8 for ``store = "http://host:9200"`` (its
    ``dense_vector`` fields sized for the configured model); both expand query words to the name
    variants of the topic file (``settings.topic_file``)."""
    from indexer.names import NameGroups
    from stream.topic import load_topic

    names = NameGroups.from_topic(load_topic(settings.topic_file))
    if settings.distributed_store:
        from indexer.store_elastic import ElasticStore

        return ElasticStore(elastic_config(settings), names=names, vector_dims=embedder_dim(settings))
    from indexer.store_embedded import EmbeddedStore

    return EmbeddedStore(settings.data_dir / "store.sqlite3", names=names)


def make_raw_store(settings: Settings) -> RawCopies:
    """Where raw pages are kept: ``<data_dir>/raw`` (embedded default), or an S3-compatible bucket for
    ``raw_store = "s3://bucket/prefix"`` (every crawl process and ``serve`` replica, on any host)."""
    if settings.raw_store != "embedded":
        from crawlers.raw_store_s3 import S3RawStore

        return S3RawStore(s3_config(settings))
    from crawlers.raw_store import RawStore

    return RawStore(settings.data_dir)


def s3_config(settings: Settings) -> S3Config:
    """The S3 raw-copy storage's config (``raw_store = "s3://..."`` and ``s3_*``)."""
    from crawlers.raw_store_s3 import S3Config

    return settings_slice(S3Config, settings)


def crawl_config(settings: Settings) -> CrawlConfig:
    """The crawl's config (sources, topic, politeness, search APIs, shard) from ``settings``."""
    return settings_slice(CrawlConfig, settings)


def standalone_crawl() -> tuple[CrawlConfig, Bus, Metrics, RawCopies]:
    """The parts of a ``scrapy crawl NAME`` run, from the environment's settings (named by dotted path
    in ``crawlers.crawl_context.STANDALONE_FACTORY``)."""
    settings = load_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return crawl_config(settings), make_bus(settings), make_metrics(), make_raw_store(settings)


def elastic_config(settings: Settings) -> ElasticConfig:
    """The Elasticsearch cluster's config (``store = "http(s)://..."`` and ``es_*``): the store's, and
    the watchlists' and alert ledger's on the same cluster."""
    from indexer.store_elastic import ElasticConfig

    return settings_slice(ElasticConfig, settings)


def make_watchlists(settings: Settings) -> WatchlistRepository:
    """The watchlists of this deployment: in the search store when it is Elasticsearch (distributed
    mode: every host sees the same ones), else ``<data_dir>/watchlists.sqlite3``."""
    if settings.distributed_store:
        from indexer.alerting.watchlists_elastic import ElasticWatchlistRepository

        return ElasticWatchlistRepository(elastic_config(settings))
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return SqliteWatchlistRepository.in_data_dir(settings.data_dir)


def make_ledger(settings: Settings) -> AlertLedger:
    """The alert ledger of this deployment: with an Elasticsearch store, the pairs alerted on and the
    merges live in the store (``indexer.alerting.ledger_elastic``: every alert stage, on any host, from
    any data directory, sees them); the working rows stay in ``<data_dir>/alerts.sqlite3`` in both modes."""
    if settings.distributed_store:
        from indexer.alerting.ledger_elastic import ElasticAlertLedger

        return ElasticAlertLedger(settings.data_dir / "alerts.sqlite3", elastic_config(settings))
    return AlertLedger.in_data_dir(settings.data_dir)


def channel_config(settings: Settings) -> ChannelConfig:
    """What the alert channels use: User-Agent, SMTP relay, private targets allowed."""
    return settings_slice(ChannelConfig, settings)


def delivery_config(settings: Settings) -> DeliveryConfig:
    """Delivery retries and the channels' config."""
    return settings_slice(DeliveryConfig, settings, channels=channel_config(settings))


def alert_config(settings: Settings) -> AlertConfig:
    """The alert stage's config: links, freshness, waiting for the index, deliveries."""
    return settings_slice(AlertConfig, settings, delivery=delivery_config(settings))


def make_alert_stage(
    settings: Settings, store: SearchStore, metrics: Metrics, *, bus: Bus | None = None, **options: Any
) -> AlertStage:
    """The alert stage with this deployment's watchlists and ledger (closed with the stage); ``options``
    are the stage's own (``digest_interval_s``, ``wait_interval_s``, ``deliverer``)."""
    return AlertStage(
        alert_config(settings),
        store,
        metrics,
        repository=make_watchlists(settings),
        ledger=make_ledger(settings),
        owns_stores=True,
        bus=bus,
        **options,
    )
