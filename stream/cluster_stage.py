"""The clustering half of the distributed ``embed`` stage, safe to run in several replicas.

``SharedStateClusterStage`` (group ``cluster`` on ``settings.topic_embedded``) wraps the ordinary
``stream.assign_stage.AssignStage``. Every embedded article travels in one partition (see
``stream.embedding_stage``), so one replica assigns stories at a time and the others stand by. The story
state is one SQLite file (``<data_dir>/stories.sqlite3``) that the replicas share, but each
``AssignStage`` keeps caches in memory (story records, the near-duplicate LSH index) built from that
file. A standby that takes over the partition after a failover must not decide from caches it built
before the last owner's writes, so before each batch this handler compares SQLite's
``PRAGMA data_version`` (read on a connection of its own, which changes when any *other* connection
commits) with the value it read after its own last batch; when another process wrote meanwhile it
rebuilds the ``AssignStage`` (fresh caches, the outbox the last owner may have left is published first).

Limit: the replicas must share the SQLite file: one host, or a volume with working POSIX locks.
Across hosts the state would move to a shared database or to the search store.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from stream.assign_stage import AssignStage
from stream.bus import Record
from stream.embedding_stage import H_ARTICLE_ID
from stream.errors import StoryStateError
from stream.story import StoryEvent

logger = logging.getLogger(__name__)

STAGE = "cluster"  # its stage label everywhere: articles (decisions), dead letters, stage_seconds
WATCH_TIMEOUT_S = 30.0  # how long the data_version read waits for a writer's lock


class SharedStateClusterStage:
    """``stream.worker.Handler`` named ``cluster`` around an ``AssignStage`` rebuilt when others wrote.

    Args:
        make_stage: builds a fresh ``AssignStage`` (same settings, embedder and bus) on the shared state.
        state_path: the shared story-state SQLite file (``settings.data_dir / stream.story_state.STATE_FILE``).

    Records on ``articles.embedded`` are keyed by a constant; the article id comes from the
    ``article.id`` header and is handed to the ``AssignStage`` as the key (it checks key == id).

    Raises:
        StoryStateError: the state file cannot be read (from the constructor and :meth:`handle`).
    """

    name = STAGE

    def __init__(self, make_stage: Callable[[], AssignStage], state_path: Path) -> None:
        self._make_stage = make_stage
        self.state_path = Path(state_path)
        self.stage = self._named(make_stage())  # creates the file and its schema when missing
        try:
            self._watch = sqlite3.connect(self.state_path, timeout=WATCH_TIMEOUT_S, check_same_thread=False)
        except sqlite3.Error as exc:
            raise StoryStateError(f"story state {str(self.state_path)!r} cannot be watched: {exc}") from exc
        self._seen = self._data_version()
        self.rebuilds = 0  # how often another process's writes made this one rebuild its caches

    @staticmethod
    def _named(stage: AssignStage) -> AssignStage:
        """Count its decisions as stage ``cluster``: the vectors were counted as stage ``embed`` by
        ``EmbeddingStage``, and each article is counted once per stage."""
        stage.name = STAGE
        return stage

    def _data_version(self) -> int:
        try:
            row = self._watch.execute("PRAGMA data_version").fetchone()
        except sqlite3.Error as exc:
            raise StoryStateError(f"story state {str(self.state_path)!r}: data_version unreadable: {exc}") from exc
        return int(row[0])

    def _current(self) -> AssignStage:
        """The assigner, rebuilt when another process wrote the state since our last batch."""
        now = self._data_version()
        if now != self._seen:
            logger.info(
                "story state changed by another process; rebuilding the clustering caches",
                extra={"stage": STAGE, "state": str(self.state_path)},
            )
            self.stage.close()
            self.stage = self._named(self._make_stage())
            self.rebuilds += 1
        return self.stage

    @contextlib.contextmanager
    def _on_current(self) -> Iterator[AssignStage]:
        """The assigner on current caches; afterwards the data_version our own commits left is remembered
        (they change it too)."""
        stage = self._current()
        try:
            yield stage
        finally:
            self._seen = self._data_version()

    def handle(self, records: Sequence[Record]) -> list[BaseException | None]:
        keyed = [dataclasses.replace(r, key=r.headers.get(H_ARTICLE_ID, r.key)) for r in records]
        with self._on_current() as stage:
            return stage.handle(keyed)

    def on_idle(self) -> object:
        """The assigner's idle work (the warm-up hold's time limit), on current caches."""
        with self._on_current() as stage:
            return stage.on_idle()

    def end_of_input(self) -> list[StoryEvent]:
        """The assigner's end of a finite run (what the warm-up hold still holds goes out)."""
        with self._on_current() as stage:
            return stage.end_of_input()

    def close(self) -> None:
        self.stage.close()
        self._watch.close()
