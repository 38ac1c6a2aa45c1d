"""The vector half of the distributed ``embed`` stage: raw articles -> embeddings -> ``articles.embedded``.

Embedding is the costly, stateless part of the embed stage; story assignment is cheap but stateful
(``stream.story_state``). In the distributed mode the two halves run as two workers of one
``sednaya-monitor embed`` process:

- :class:`EmbeddingStage` (this module, group ``embed`` on ``settings.topic_raw``): every replica takes a
  share of the raw partitions, embeds its articles and publishes each one *with* its vector to
  ``settings.topic_embedded``, all under one constant key (:data:`EMBEDDED_KEY`), so every embedded
  article lands in one partition, in arrival order;
- ``stream.cluster_stage.SharedStateClusterStage`` (group ``cluster`` on ``settings.topic_embedded``):
  the one member holding that partition assigns stories with the ordinary ``AssignStage``, which
  uses the vectors as given; the other replicas stand by.

The article id travels in the :data:`H_ARTICLE_ID` header because the record key is the constant.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from stream.article_records import decode_articles
from stream.bus import H_ENTERED_AT, H_SCHEMA, Bus, Record
from stream.embed_text import embed_text
from stream.embedding import Embedder
from stream.metrics import Metrics

logger = logging.getLogger(__name__)

STAGE = "embed"  # the metrics/dead-letter stage label: this is the embed stage's costly half
# One key for every embedded article: Kafka's partitioner maps one key to one partition, so exactly
# one member of the "cluster" group sees every article, in order (story assignment is sequential).
EMBEDDED_KEY = "stories"
H_ARTICLE_ID = "article.id"  # header naming the article on articles.embedded (the key is EMBEDDED_KEY)


class EmbeddingStage:
    """``stream.worker.Handler`` named ``embed``: decode, embed, publish to ``out_topic``.

    Args:
        out_topic: where embedded articles go (``settings.topic_embedded``).
        metrics: counts ``sednaya_articles_total{stage="embed", status="embedded"}``.
        bus: where the embedded articles go; flushed before :meth:`handle` returns.
        embedder: the model (``sednaya_monitor.wiring.make_embedder``; pass the clustering half's
            embedder to load the model once per process).

    A record that is not a contract-v1 article, or whose key is not its id, gets a ``ContractError``
    (dead-lettered at once). A model failure (``EmbeddingError``) or a bus failure (``BusError``) is
    raised for the whole batch: the worker retries it, then isolates and dead-letters what still fails.
    """

    name = STAGE

    def __init__(self, out_topic: str, metrics: Metrics, *, bus: Bus, embedder: Embedder) -> None:
        self.out_topic = out_topic
        self.metrics = metrics
        self.bus = bus
        self.embedder = embedder

    def handle(self, records: Sequence[Record]) -> list[BaseException | None]:
        outcomes, taken = decode_articles(records)
        to_embed = [article for article, _ in taken if article.embedding is None]
        vectors = self.embedder.embed([embed_text(a.title, a.text) for a in to_embed]) if to_embed else None
        if vectors is not None and vectors.shape[0] != len(to_embed):
            raise RuntimeError(f"embedder returned {vectors.shape[0]} vectors for {len(to_embed)} articles")
        row = 0
        for original, record in taken:
            article = original
            if original.embedding is None:
                assert vectors is not None
                article = original.replace(embedding=tuple(vectors[row].tolist()))
                row += 1
            headers = {k: record.headers[k] for k in (H_SCHEMA, H_ENTERED_AT) if k in record.headers}
            headers.setdefault(H_SCHEMA, str(article.schema))
            headers[H_ARTICLE_ID] = article.id
            value = article.to_bytes(with_embedding=True, compact=True)  # the vector as float32 bytes
            self.bus.publish(self.out_topic, EMBEDDED_KEY, value, headers)
        if taken:
            self.bus.flush()
            self.metrics.articles.labels(stage=STAGE, status="embedded").inc(len(taken))
            logger.debug("articles embedded", extra={"stage": STAGE, "count": len(taken)})
        return outcomes
