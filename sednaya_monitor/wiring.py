"""The one module that picks adapters from settings (``embedded`` or a URL)."""

from __future__ import annotations

from indexer.store import SearchStore
from stream.bus import Bus
from stream.embedding import Embedder
from stream.metrics import Metrics
from stream.settings import Settings


def make_bus(settings: Settings, metrics: Metrics | None = None) -> Bus:
    """The embedded SQLite log, or Kafka for ``bus = "kafka://host:port"`` (which counts produced and
    failed deliveries in ``metrics`` when given; the worker counts consumption on both)."""
    if settings.distributed_bus:
        from stream.bus_kafka import KafkaBus

        return KafkaBus(settings, metrics=metrics)
    from stream.bus_embedded import EmbeddedBus

    return EmbeddedBus(settings.data_dir / "bus.sqlite3")


def make_store(settings: Settings) -> SearchStore:
    """The embedded SQLite FTS5 store, or Elasticsearch 8 for ``store = "http://host:9200"``."""
    if settings.distributed_store:
        from indexer.store_elastic import ElasticStore

        return ElasticStore(settings)
    from indexer.store_embedded import EmbeddedStore

    return EmbeddedStore(settings.data_dir / "store.sqlite3")


def make_embedder(settings: Settings) -> Embedder:
    """The sentence-transformers model named by ``settings.model_name`` (loaded lazily, on first use)."""
    from stream.embedding import SentenceTransformerEmbedder

    return SentenceTransformerEmbedder(settings.model_name, settings.embed_batch_size)
