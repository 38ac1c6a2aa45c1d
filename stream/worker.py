"""Runs one stage over a bus topic: poll → handle → retry → dead-letter → commit.

A stage does not know where it sits in the pipeline or how records travel: it implements
:class:`Handler` and gets its collaborators in its constructor. The worker gives at-least-once
processing: it commits only after ``handle`` returned (the handler's effects, its store writes and
its publishes, are durable by then: handlers flush what they publish), retries failed records up to
``settings.max_attempts`` times, and dead-letters what still fails, so the stage goes on and nothing
is lost. Permanent errors (a record that breaks the contract) are dead-lettered at once.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Protocol, runtime_checkable

from stream.bus import Bus, Consumer, Record
from stream.errors import ContractError, UnavailableError
from stream.metrics import Metrics

logger = logging.getLogger(__name__)

RETRY_BACKOFF_S = 0.05  # first in-process retry delay, doubled per attempt (transient store errors)
UNAVAILABLE_BACKOFF_S = 0.5  # first wait while a dependency is down, doubled up to the cap below
UNAVAILABLE_BACKOFF_MAX_S = 15.0  # longest wait between two tries of an unreachable dependency

HealthCallback = Callable[[bool, str], None]  # (green, reason) -> None


class StageStopped(Exception):
    """The worker was asked to stop while waiting for a dependency; the batch stays uncommitted."""


class PermanentError(Exception):
    """Raise (or return) for a record that no retry can fix: it is dead-lettered at once."""


class Handler(Protocol):
    """A stage. ``handle`` returns one entry per record, in order: ``None`` for success or the error."""

    name: str

    def handle(self, records: Sequence[Record]) -> Sequence[BaseException | None]: ...


@runtime_checkable
class IdleAware(Protocol):
    """A stage with work of its own to do when its input is quiet (a time limit to check)."""

    def on_idle(self) -> object: ...


@runtime_checkable
class Interruptible(Protocol):
    """A stage whose batch can wait on a dependency for long (a broker's request timeout): told, from
    another thread, that the process is stopping, it makes that wait end soon with ``UnavailableError``
    (the batch then stays uncommitted and the worker stops)."""

    def interrupt(self) -> None: ...


@runtime_checkable
class EndOfInputAware(Protocol):
    """A stage that holds records back until its input ends (the warm-up hold of story events): told when
    a finite run (an ``ingest``, a crawl round) has drained its input; returns what it released."""

    def end_of_input(self) -> Sequence[object]: ...


def is_permanent(error: BaseException) -> bool:
    return isinstance(error, (PermanentError, ContractError))


class StageWorker:
    def __init__(
        self,
        bus: Bus,
        topic: str,
        group: str,
        handler: Handler,
        *,
        metrics: Metrics,
        max_attempts: int = 3,
        batch_size: int = 64,
        on_health: HealthCallback | None = None,
        stop: threading.Event | None = None,
        report_lag: bool = True,
    ) -> None:
        self.bus = bus
        self.topic = topic
        self.group = group
        self.handler = handler
        self.metrics = metrics
        self.max_attempts = max_attempts
        self.batch_size = batch_size
        self.on_health = on_health
        self.stop = stop if stop is not None else threading.Event()
        self.report_lag = report_lag  # False where a broker-side exporter reports every group's lag
        self._consumer: Consumer | None = None

    @property
    def consumer(self) -> Consumer:
        if self._consumer is None:
            self._consumer = self.bus.consumer(self.topic, self.group)
        return self._consumer

    def run_once(self, timeout_s: float = 0.0) -> int:
        """Process one batch; returns how many records were taken (0 when the topic is drained)."""
        records = self.consumer.poll(self.batch_size, timeout_s)
        if not records:
            # only a member that owns partitions: a standby replica must not act on a state it does not own
            owns = getattr(self.consumer, "assignment", None)
            if isinstance(self.handler, IdleAware) and (owns is None or owns()):
                try:
                    self.handler.on_idle()
                except Exception as exc:  # noqa: BLE001  # its work is durable: the next poll or batch retries it
                    logger.warning(
                        "idle work failed",
                        extra={"stage": self.handler.name, "error": f"{type(exc).__name__}: {exc}"},
                    )
            self._report_lag()
            return 0
        self.metrics.bus_records.labels(topic=self.topic, op="consumed").inc(len(records))
        started = time.perf_counter()
        errors = self._handle_available(records)
        attempts = 1
        while attempts < self.max_attempts:
            retry = [i for i, e in enumerate(errors) if e is not None and not is_permanent(e)]
            if not retry:
                break
            time.sleep(RETRY_BACKOFF_S * 2 ** (attempts - 1))
            attempts += 1
            again = self._handle_available([records[i] for i in retry])
            for i, err in zip(retry, again, strict=True):
                errors[i] = err
        lettered: list[BaseException] = []
        for record, error in zip(records, errors, strict=True):
            if error is None:
                continue
            tries = 1 if is_permanent(error) else attempts
            logger.warning(
                "record dead-lettered",
                extra={
                    "stage": self.handler.name,
                    "topic": self.topic,
                    "key": record.key,
                    "offset": record.offset,
                    "error": f"{type(error).__name__}: {error}",
                    "attempts": tries,
                },
            )
            self.bus.dead_letter(
                record,
                stage=self.handler.name,
                error_class=type(error).__name__,
                reason=str(error),  # the Kafka bus cuts it to fit the letter (DLQ_REASON_MAX_BYTES)
                attempts=tries,
            )
            lettered.append(error)
        with self._stopping("its dead letters were unacknowledged"):
            self.bus.flush()
        for error in lettered:  # counted once the letters are on the bus (a failed flush redoes the batch)
            self.metrics.bus_records.labels(topic=self.topic, op="dead_lettered").inc()
            self.metrics.dead_letters.labels(stage=self.handler.name, reason=type(error).__name__).inc()
            self.metrics.articles.labels(stage=self.handler.name, status="dead_lettered").inc()
        with self._stopping("its commit was unanswered"):
            self.consumer.commit()
        elapsed = time.perf_counter() - started
        self.metrics.stage_seconds.labels(stage=self.handler.name).observe(elapsed / len(records))
        self._report_lag()
        return len(records)

    @contextlib.contextmanager
    def _stopping(self, while_: str) -> Iterator[None]:
        """An ``UnavailableError`` of an interrupted wait (the process is stopping, the broker silent) ends the
        worker as a stop does (``StageStopped``: nothing more is committed), not as a failure."""
        try:
            yield
        except UnavailableError as exc:
            if self.stop.is_set():
                raise StageStopped(f"stage {self.handler.name!r} stopped while {while_}") from exc
            raise

    def _handle_available(self, records: Sequence[Record]) -> list[BaseException | None]:
        """``_handle``, repeated with backoff while a dependency is unavailable (never dead-lettered).

        Raises:
            StageStopped: ``stop`` was set while waiting; nothing of the batch is committed.
        """
        delay = UNAVAILABLE_BACKOFF_S
        failed, since = 0, time.monotonic()
        while True:
            errors = self._handle(records)
            down = next((e for e in errors if isinstance(e, UnavailableError)), None)
            if down is None:
                if self.on_health is not None:
                    self.on_health(True, "")
                if failed:  # the outage in one line with its count (its repeats were collapsed by the CLI's filter)
                    logger.warning(
                        "dependency available again",
                        extra={
                            "stage": self.handler.name,
                            "failed_tries": failed,
                            "down_s": round(time.monotonic() - since, 1),
                        },
                    )
                return errors
            failed += 1
            logger.warning(
                "dependency unavailable, batch kept uncommitted",
                extra={"stage": self.handler.name, "topic": self.topic, "error": str(down), "retry_in_s": delay},
            )
            if self.on_health is not None:
                self.on_health(False, f"{self.handler.name}: {down}")
            if self.stop.wait(delay):
                raise StageStopped(f"stage {self.handler.name!r} stopped while waiting: {down}")
            delay = min(delay * 2, UNAVAILABLE_BACKOFF_MAX_S)

    def _handle(self, records: Sequence[Record]) -> list[BaseException | None]:
        """Whole batch first; if the batch as a whole raises, one record at a time to isolate it."""
        try:
            out = list(self.handler.handle(records))
        except Exception as exc:  # noqa: BLE001  # a batch failure is retried record by record
            if len(records) == 1 or isinstance(exc, UnavailableError):
                return [exc] * len(records)
            logger.info("batch failed, isolating records", extra={"stage": self.handler.name, "error": repr(exc)})
            out = []
            for record in records:
                try:
                    out.extend(self.handler.handle([record]))
                except Exception as one:  # noqa: BLE001  # recorded per record, dead-lettered after retries
                    out.append(one)
        if len(out) != len(records):
            raise RuntimeError(f"stage {self.handler.name!r} returned {len(out)} outcomes for {len(records)} records")
        return out

    def _report_lag(self) -> None:
        if not self.report_lag:
            return
        try:
            lag = self.consumer.lag()
        except Exception:  # lag is best-effort telemetry
            logger.debug("lag unavailable", exc_info=True)
            return
        for partition, value in lag.items():
            self.metrics.bus_lag.labels(topic=self.topic, group=self.group, partition=str(partition)).set(value)

    def run_forever(self, poll_timeout_s: float = 1.0) -> None:
        """Process until ``self.stop`` is set (SIGTERM): finishes the batch in hand, commits, leaves the group.

        While a dependency is down the batch in hand stays uncommitted; stopping then leaves it to the
        next member of the group.
        """
        try:
            while not self.stop.is_set():
                self.run_once(poll_timeout_s)
        except StageStopped:
            logger.info("stage stopped while its dependency was down", extra={"stage": self.handler.name})
        finally:
            self.close()

    def interrupt(self) -> None:
        """Called from another thread once ``stop`` is set: an ``Interruptible`` handler, bus or consumer gives up
        its wait on a broker that is down (a flush of a batch's output: up to the 120 s delivery timeout; a commit
        or the story state's catch-up: 30 s)."""
        for part in (self.handler, self.bus, self._consumer):
            if isinstance(part, Interruptible):
                part.interrupt()

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
