"""Every stage in one process over one bus and one store: the embedded default (and `ingest`).

    articles.raw ──embed──▶ articles.clustered ──index──▶ store (articles)
                       └──▶ stories.events ──index_stories──▶ store (stories)
                                           └──alert──▶ watchlists → webhook / e-mail / Atom

The same stage classes run one per process in the distributed mode (``sednaya-monitor embed`` ...);
here a loop runs each worker until every topic is drained. The summary is read from the metrics, the
one place that counts every article.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, TypeVar, runtime_checkable

from indexer.store import SearchStore
from sednaya_monitor import topology, wiring
from sednaya_monitor.prometheus_metrics import PrometheusMetrics
from sednaya_monitor.settings import Settings
from sednaya_monitor.topology import GROUP_INDEX, StageParts
from stream.article import Article, iso_utc, now_utc
from stream.bus import H_ENTERED_AT, H_SCHEMA, Bus
from stream.worker import EndOfInputAware, Handler, StageWorker

if TYPE_CHECKING:
    from stream.embedding import Embedder

logger = logging.getLogger(__name__)

H = TypeVar("H")

KAFKA_POLL_TIMEOUT_S = 1.0  # per worker poll when draining over Kafka
KAFKA_IDLE_ROUNDS = 5  # empty rounds in a row that mean "drained" over Kafka (covers a group join)


@runtime_checkable
class _Closeable(Protocol):
    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class RunSummary:
    articles_in: int  # records published to the raw topic by this process (ingest and crawl)
    indexed: int
    duplicates: int
    joined: int  # joined a current story (same event, not a copy): story_role follow_up
    retold: int  # re-told a dormant story (anniversary, explainer): story_role follow_up too
    new_stories: int
    dead_letters: int
    already_seen: int = 0  # same article id again (same canonical URL, or a redelivery): decision reused

    @property
    def follow_ups(self) -> int:
        """Articles given ``story_role="follow_up"``: the count the stored roles show."""
        return self.joined + self.retold

    def lines(self) -> list[str]:
        return [
            f"articles in:   {self.articles_in}",
            f"indexed:       {self.indexed}",
            f"already seen:  {self.already_seen}",
            f"duplicates:    {self.duplicates}",
            (
                f"follow-ups:    {self.follow_ups} (joined a current story {self.joined}, "
                f"re-told a dormant one {self.retold})"
            ),
            f"new stories:   {self.new_stories}",
            f"dead letters:  {self.dead_letters}",
        ]


def publish_article(bus: Bus, settings: Settings, article: Article) -> None:
    """Put an article on the raw topic, keyed by its id, stamped with its bus-entry time."""
    bus.publish(
        settings.topic_raw,
        article.id,
        article.to_bytes(),
        {H_SCHEMA: str(article.schema), H_ENTERED_AT: iso_utc(now_utc())},
    )


def publish_articles(bus: Bus, settings: Settings, articles: Iterable[Article]) -> int:
    """Put ``articles`` on the raw topic (:func:`publish_article`) and flush; returns how many."""
    count = 0
    for article in articles:
        publish_article(bus, settings, article)
        count += 1
    bus.flush()
    return count


class Pipeline:
    """Owns the bus, the store and one worker per stage."""

    def __init__(
        self,
        settings: Settings,
        metrics: PrometheusMetrics | None = None,
        *,
        bus: Bus | None = None,
        store: SearchStore | None = None,
        embedder: Embedder | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics if metrics is not None else PrometheusMetrics()
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self._owns_bus = bus is None  # close only what this pipeline opened
        self._owns_store = store is None
        self.bus = bus if bus is not None else wiring.make_bus(settings, self.metrics)
        self.store = store if store is not None else wiring.make_store(settings)
        self.store.ensure_ready()
        self.bus.ensure_topics(settings.topics)
        self.published = 0
        # The same table the stage commands run from (sednaya_monitor.topology), the one-process rows.
        parts = StageParts(settings, self.metrics, self.bus, self.store, embedder)
        self.workers = [
            StageWorker(
                self.bus,
                spec.topic(settings),
                spec.group,
                topology.build(spec, parts),
                metrics=self.metrics,
                max_attempts=settings.max_attempts,
                batch_size=settings.batch_size,
            )
            for spec in topology.one_process()
        ]
        self._closeables = [w.handler for w in self.workers if isinstance(w.handler, _Closeable)]

    def stage(self, kind: type[H]) -> H:
        """The one stage of class ``kind`` (unwrapped from its guard).

        Raises:
            LookupError: no stage of that class runs here.
        """
        for worker in self.workers:
            handler: Handler = topology.unwrap(worker.handler)
            if isinstance(handler, kind):
                return handler
        raise LookupError(f"no {kind.__name__} in the pipeline's stages")

    def publish(self, articles: Iterable[Article]) -> int:
        """Publish ``articles`` to the raw topic and flush; returns how many."""
        count = publish_articles(self.bus, self.settings, articles)
        self.published += count
        return count

    def drain(self, on_progress: Callable[[int], None] | None = None) -> RunSummary:
        """Run every stage until no topic has anything left; ``on_progress(records)`` after each batch.

        On the embedded bus one empty round means drained. On Kafka a poll can be empty while a group
        joins or a fetch is in flight, so it polls with a timeout and wants ``KAFKA_IDLE_ROUNDS`` empty
        rounds in a row.
        """
        timeout_s = KAFKA_POLL_TIMEOUT_S if self.settings.distributed_bus else 0.0
        idle_needed = KAFKA_IDLE_ROUNDS if self.settings.distributed_bus else 1
        idle = 0
        while idle < idle_needed:
            moved = 0
            for worker in self.workers:
                taken = worker.run_once(timeout_s)
                moved += taken
                if taken and on_progress is not None and worker.group == GROUP_INDEX:
                    on_progress(taken)
            idle = idle + 1 if moved == 0 else 0
            if idle >= idle_needed and self._end_of_input():
                idle = 0  # what was held went out: drain it too
        return self.summary()

    def _end_of_input(self) -> int:
        """Tell the stages that hold something back until their input ends (``EndOfInputAware``: the
        warm-up hold of story assignment) that it has; returns how many records they published."""
        released = 0
        for worker in self.workers:
            handler = topology.unwrap(worker.handler)
            if isinstance(handler, EndOfInputAware):
                released += len(handler.end_of_input())
        return released

    def summary(self) -> RunSummary:
        def value(name: str, **labels: str) -> int:
            return int(self.metrics.registry.get_sample_value(name, labels) or 0)

        dead = sum(
            int(s.value)
            for metric in self.metrics.registry.collect()
            if metric.name == "sednaya_dead_letters"
            for s in metric.samples
            if s.name == "sednaya_dead_letters_total"
        )
        crawled = value("sednaya_articles_total", stage="crawl", status="published")
        return RunSummary(
            articles_in=self.published + crawled,
            indexed=value("sednaya_articles_total", stage="index", status="indexed"),
            duplicates=value("sednaya_articles_total", stage="embed", status="duplicate"),
            joined=value("sednaya_articles_total", stage="embed", status="clustered"),
            retold=value("sednaya_articles_total", stage="embed", status="follow_up"),
            new_stories=value("sednaya_story_events_total", kind="created"),
            dead_letters=dead,
            already_seen=value("sednaya_articles_total", stage="embed", status="replayed"),
        )

    def close(self) -> None:
        """Stop the workers, let alert deliveries in flight finish (pending ones resume next start),
        then close the stage state, and the bus and the store if this pipeline opened them."""
        for worker in self.workers:
            worker.close()
        for stage in self._closeables:
            stage.close()
        if self._owns_bus:
            self.bus.close()
        if self._owns_store:
            self.store.close()
