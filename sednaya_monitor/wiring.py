"""The one module that picks adapters from settings (``embedded`` or a URL)."""

from __future__ import annotations

from indexer.store import SearchStore
from stream.bus import Bus
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
    """The embedded SQLite FTS5 store, or Elasticsearch 8 for ``store = "http://host:9200"``; both expand
    query words to the name variants of the topic file (``settings.topic_file``)."""
    from indexer.names import NameGroups
    from stream.topic import load_topic

    names = NameGroups.from_topic(load_topic(settings.topic_file))
    if settings.distributed_store:
        from indexer.store_elastic import ElasticStore

        return ElasticStore(settings, names=names)
    from indexer.store_embedded import EmbeddedStore

    return EmbeddedStore(settings.data_dir / "store.sqlite3", names=names)
