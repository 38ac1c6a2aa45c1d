"""The clustering half of the distributed ``embed`` stage with its story state on the broker.

``ChangelogClusterStage`` (group ``cluster`` on ``settings.topic_embedded``, one partition in use, so one
replica assigns while the others stand by) wraps the ordinary ``stream.assign_stage.AssignStage`` on a
``stream.state_changelog.ChangelogStoryState``: every committed write of the state is appended to the
compacted changelog topic (``settings.topic_story_changelog``) once the batch's outbox (kept local) is
published, and before the input is committed; before each batch the handler brings its own SQLite copy
(in its own ``--data-dir``) up to the changelog's end. A standby on another host, with an empty data directory or a
stale one, thus takes over from what it reads from the broker; decisions stay keyed by article id, so a
record redone after a SIGKILL gets the answer the dead owner committed, or the one it would have given.

A standby is handed no batch, so with ``standby_catch_up_s`` a thread of the handler catches up every that
many seconds between batches (Kafka Streams' standby replicas): at a takeover only the last seconds'
tail is left to read, however long the standby waited.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Sequence

from stream.assign_stage import AssignStage
from stream.bus import Record
from stream.embedding_stage import H_ARTICLE_ID
from stream.state_changelog import ChangelogStoryState
from stream.story import StoryEvent

logger = logging.getLogger(__name__)

STAGE = "cluster"  # its stage label everywhere, as stream.cluster_stage
STANDBY_CATCH_UP_S = 10.0  # how often an idle replica reads the changelog's tail (the embed command's choice)


class ChangelogClusterStage:
    """``stream.worker.Handler`` named ``cluster``: catch up with the changelog, then ``AssignStage``.

    Args:
        stage: an ``AssignStage`` whose ``state`` is a ``ChangelogStoryState`` (closed with this handler).
        standby_catch_up_s: period of the background catch-up between batches; None = only before batches.

    Raises:
        UnavailableError: the changelog cannot be read or written (the worker keeps the batch uncommitted,
            turns red and retries with backoff; nothing is dead-lettered for it).
        StoryStateError: a changelog record this version cannot apply.
    """

    name = STAGE

    def __init__(self, stage: AssignStage, *, standby_catch_up_s: float | None = None) -> None:
        if not isinstance(stage.state, ChangelogStoryState):
            raise TypeError(f"ChangelogClusterStage needs a ChangelogStoryState, got {type(stage.state).__name__}")
        stage.name = STAGE  # the vectors were counted as stage "embed"; each article is counted once per stage
        self.stage = stage
        self.state: ChangelogStoryState = stage.state
        self.takeovers = 0  # batches before which another process's writes were applied
        self.restores = 0  # catch-ups that applied another process's writes (before batches or between them)
        self._lock = threading.Lock()  # one user of the state at a time: the worker's thread or the standby's
        self._stop = threading.Event()
        self.catch_up()  # a standby starts warm: at a takeover only the tail is left to read
        self._thread: threading.Thread | None = None
        if standby_catch_up_s is not None:
            self._thread = threading.Thread(
                target=self._standby, args=(standby_catch_up_s,), name="cluster-standby", daemon=True
            )
            self._thread.start()

    def _standby(self, interval_s: float) -> None:
        while not self._stop.wait(interval_s):
            try:
                with self._lock:
                    if not self._stop.is_set():
                        self.catch_up()
            except Exception as exc:  # noqa: BLE001  # the next batch catches up anyway (and reports it)
                error = f"{type(exc).__name__}: {exc}"
                logger.warning("standby catch-up failed", extra={"stage": STAGE, "error": error})

    def catch_up(self) -> int:
        started = time.monotonic()
        applied = self.state.catch_up()
        if applied:
            self.restores += 1
            logger.info(
                "story state restored from the changelog",
                extra={
                    "stage": STAGE,
                    "records": applied,
                    "seconds": round(time.monotonic() - started, 3),
                    "state": str(self.state.path),
                },
            )
        return applied

    def _take_over(self) -> None:
        """Apply what another replica appended (held by ``_lock``): the state this replica then acts on."""
        if self.catch_up():
            self.takeovers += 1

    def handle(self, records: Sequence[Record]) -> list[BaseException | None]:
        with self._lock:
            self._take_over()
            keyed = [dataclasses.replace(r, key=r.headers.get(H_ARTICLE_ID, r.key)) for r in records]
            return self.stage.handle(keyed)

    def on_idle(self) -> object:
        """The assigner's idle work (the warm-up hold's time limit) on a current state; the worker calls
        it on every empty poll while this replica owns the input partition. The changelog is read only when
        the local copy holds events past their limit: held events of a dead owner reach the local copy with
        the standby catch-up (every ``standby_catch_up_s``) or before the next batch."""
        if not self._lock.acquire(blocking=False):
            return []  # the standby's catch-up holds the state (on a slow or dead broker, for a while): next poll
        try:
            if not self.stage.hold_expired():
                return []
            self._take_over()
            return self.stage.on_idle()
        finally:
            self._lock.release()

    def end_of_input(self) -> list[StoryEvent]:
        """The assigner's end of a finite run, on a current state (what the warm-up hold still holds goes out)."""
        with self._lock:
            self._take_over()
            return self.stage.end_of_input()

    def interrupt(self) -> None:
        """The process is stopping (``stream.worker.Interruptible``): the standby stops, and a catch-up
        waiting on a broker that does not answer (the standby's, or the one before a batch) gives up after its
        current wait instead of at its timeout, so a SIGTERM is not held up by the lock or the request."""
        self._stop.set()
        self.state.interrupt()

    def close(self) -> None:
        self.interrupt()
        if self._thread is not None:
            self._thread.join()
        with self._lock:
            self.stage.close()
