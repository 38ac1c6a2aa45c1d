"""The stage topology: one table of which stage reads which topic in which consumer group, how its
handler is built and how it is guarded. The one-process pipeline (``sednaya_monitor.pipeline``) and
the stage commands (``sednaya-monitor embed | index | alert``, ``sednaya_monitor.cli.commands_stages``)
both build their workers from :data:`STAGES`; nowhere else names a stage's topic or group.

    row            command  input topic           group          handler                  guard   runs in
    embed          embed    articles.raw          embed          AssignStage (embeds too) -       one process
    embed-vectors  embed    articles.raw          embed          EmbeddingStage           -       stage processes
    cluster        embed    articles.embedded     cluster        ChangelogClusterStage    -       stage processes
                                                                 (Kafka) | SharedStateClusterStage
    index          index    articles.clustered    index          IndexStage               store   both
    index-stories  index    stories.events        index-stories  StoryIndexStage          store   both
    alert          alert    stories.events        alert          AlertStage               store   both

One process embeds and assigns in one stage (no ``articles.embedded`` hop); the stage processes split
the two so the costly embedding scales over replicas while one member assigns stories in order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from indexer.store import SearchStore
from sednaya_monitor import wiring
from sednaya_monitor.settings import Settings
from sednaya_monitor.store_guard import StoreGuard
from stream.bus import Bus
from stream.metrics import Metrics
from stream.worker import Handler

if TYPE_CHECKING:
    from stream.embedding import Embedder

# Consumer-group names: one per stage; Kafka keeps committed offsets under these names, so they stay.
GROUP_EMBED = "embed"
GROUP_CLUSTER = "cluster"  # distributed mode: the one member that assigns stories (articles.embedded)
GROUP_INDEX = "index"
GROUP_INDEX_STORIES = "index-stories"
GROUP_ALERT = "alert"


class StageParts:
    """The collaborators stage handlers are built from, shared by every stage of one process.

    Args:
        settings, metrics, bus: as the process has them.
        store: the search store; ``None`` in a process whose stages need none (``embed``).
        embedder: a ready embedder; when ``None`` it is built (``wiring.make_embedder``) on first use,
            once per process.
    """

    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        bus: Bus,
        store: SearchStore | None = None,
        embedder: Embedder | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.bus = bus
        self._store = store
        self._embedder = embedder

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = wiring.make_embedder(self.settings, self.metrics)
        return self._embedder

    @property
    def store(self) -> SearchStore:
        if self._store is None:
            raise RuntimeError(f"a stage needs the search store ({self.settings.store}) and none was opened")
        return self._store


@dataclass(frozen=True, slots=True)
class StageSpec:
    """One row of the topology.

    Attributes:
        name: the row's name (tests and logs).
        command: the stage command whose process runs it (``sednaya-monitor <command>``).
        topic: the input topic, from the settings.
        group: the consumer group.
        build: builds the handler from the process's :class:`StageParts`.
        store_guard: wrapped in ``StoreGuard``: a store that is down keeps the batch uncommitted (health
            red) instead of dead-lettering it.
        needs_embedder: loads the model (the stage commands load it before joining a group).
        one_process: runs in the one-process pipeline.
        stage_process: runs in its stage command's process.
    """

    name: str
    command: str
    topic: Callable[[Settings], str]
    group: str
    build: Callable[[StageParts], Handler]
    store_guard: bool = False
    needs_embedder: bool = False
    one_process: bool = True
    stage_process: bool = True

    @property
    def needs_store(self) -> bool:
        return self.store_guard


def _assign_with_embedding(parts: StageParts) -> Handler:
    return wiring.make_assign_stage(
        parts.settings,
        parts.metrics,
        embedder=parts.embedder,
        state=wiring.make_story_state(parts.settings),
        bus=parts.bus,
    )


def _embedding(parts: StageParts) -> Handler:
    from stream.embedding_stage import EmbeddingStage

    return EmbeddingStage(parts.settings.topic_embedded, parts.metrics, bus=parts.bus, embedder=parts.embedder)


def _shared_state_assign(parts: StageParts) -> Handler:
    """The story assigner of the stage processes: on a Kafka bus its state is mirrored to the changelog
    topic (``stream.cluster_changelog``: no shared disk); on the embedded bus replicas share the file."""
    from stream.cluster_stage import SharedStateClusterStage
    from stream.story_state import STATE_FILE

    settings = parts.settings
    embedder = parts.embedder
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if settings.distributed_bus:
        from stream.cluster_changelog import STANDBY_CATCH_UP_S, ChangelogClusterStage

        state = wiring.make_cluster_state(settings)
        return ChangelogClusterStage(
            wiring.make_assign_stage(settings, parts.metrics, embedder=embedder, bus=parts.bus, state=state),
            standby_catch_up_s=STANDBY_CATCH_UP_S,
        )
    return SharedStateClusterStage(
        lambda: wiring.make_assign_stage(
            settings, parts.metrics, embedder=embedder, state=wiring.make_story_state(settings), bus=parts.bus
        ),
        settings.data_dir / STATE_FILE,
    )


def _index(parts: StageParts) -> Handler:
    from indexer.index_stage import IndexStage

    return IndexStage(parts.store, parts.metrics)


def _index_stories(parts: StageParts) -> Handler:
    from indexer.index_stage import StoryIndexStage

    return StoryIndexStage(parts.store, parts.metrics)


def _alert(parts: StageParts) -> Handler:
    return wiring.make_alert_stage(parts.settings, parts.store, parts.metrics, bus=parts.bus)


STAGES: tuple[StageSpec, ...] = (
    StageSpec(
        "embed",
        "embed",
        lambda s: s.topic_raw,
        GROUP_EMBED,
        _assign_with_embedding,
        needs_embedder=True,
        stage_process=False,
    ),
    StageSpec(
        "embed-vectors", "embed", lambda s: s.topic_raw, GROUP_EMBED, _embedding, needs_embedder=True, one_process=False
    ),
    StageSpec(  # its records carry their vectors: the model loads only for one that does not (AssignStage._embed)
        "cluster", "embed", lambda s: s.topic_embedded, GROUP_CLUSTER, _shared_state_assign, one_process=False
    ),
    StageSpec("index", "index", lambda s: s.topic_clustered, GROUP_INDEX, _index, store_guard=True),
    StageSpec(
        "index-stories", "index", lambda s: s.topic_story_events, GROUP_INDEX_STORIES, _index_stories, store_guard=True
    ),
    StageSpec("alert", "alert", lambda s: s.topic_story_events, GROUP_ALERT, _alert, store_guard=True),
)

COMMANDS: tuple[str, ...] = tuple(dict.fromkeys(spec.command for spec in STAGES))  # embed, index, alert


def one_process() -> list[StageSpec]:
    """The rows the one-process pipeline runs, in order."""
    return [spec for spec in STAGES if spec.one_process]


def stage_process(command: str) -> list[StageSpec]:
    """The rows the process of stage command ``command`` runs.

    Raises:
        ValueError: ``command`` is not a stage command.
    """
    specs = [spec for spec in STAGES if spec.stage_process and spec.command == command]
    if not specs:
        raise ValueError(f"stage command {command!r}: none of {', '.join(COMMANDS)}")
    return specs


def build(spec: StageSpec, parts: StageParts) -> Handler:
    """The row's handler, wrapped in ``StoreGuard`` when the row says so."""
    handler = spec.build(parts)
    if spec.store_guard:
        return StoreGuard(handler, parts.store, parts.settings.store)
    return handler


def consumer_groups(settings: Settings) -> list[tuple[str, str]]:
    """Every (input topic, consumer group) of the pipeline, embedded and distributed alike."""
    return list(dict.fromkeys((spec.topic(settings), spec.group) for spec in STAGES))


def unwrap(handler: Handler) -> Handler:
    """The stage inside a guard (``StoreGuard.inner``), or the handler itself."""
    return handler.inner if isinstance(handler, StoreGuard) else handler
