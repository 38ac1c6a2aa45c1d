"""``stream.state_changelog.Changelog`` on a compacted Kafka topic (kafka-python).

One partition (the story state has one owner at a time: the holder of the one partition in use of
``articles.embedded``), ``cleanup.policy=compact``: the broker keeps the latest record per key (table
and primary key), so a replay costs the state's size, not its history. Each record carries the
appending process's id in the header ``changelog.writer``.

Producer: ``acks=all``, idempotent, like the bus's; :meth:`KafkaChangelog.append` returns once every
record is acknowledged. Reader: a consumer assigned to the partition by hand (no group), positioned at
the caller's offset; a read goes to the end as it is when the read starts: the larger of ListOffsets and
the high watermark of a fetch made after it (tansu answers ListOffsets with the last batch's base
offset + 1, see ``stream.bus_kafka``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from stream.bus_kafka import (
    ADMIN_TIMEOUT_MS,
    PRODUCER_DELIVERY_TIMEOUT_MS,
    PRODUCER_MAX_BLOCK_MS,
    PRODUCER_MAX_IN_FLIGHT,
    PRODUCER_RETRY_BACKOFF_MS,
    KafkaConfig,
    close_producer,
    flush_in_slices,
    kafka_security_options,
)
from stream.errors import UnavailableError
from stream.interruptible import call_interruptibly
from stream.state_changelog import Change, LoggedChange, new_writer_id

logger = logging.getLogger(__name__)

H_WRITER = "changelog.writer"
# Every append ends with a marker record keyed by its writer (compaction keeps each writer's latest):
# a reader applies a writer's records only up to that writer's marker, so a commit a SIGKILL cut in the
# middle of its append (some records acknowledged, not all) is never applied half.
MARKER_PREFIX = "__end__:"
TOPIC_CONFIGS = {"cleanup.policy": "compact"}  # the latest row per key survives; deletes are tombstones
READ_TIMEOUT_S = 120.0  # a replay that cannot reach the end in this time fails (and is retried by the worker)
READ_POLL_MS = 50  # > FETCH_MAX_WAIT_MS + a round trip: an empty poll returns only when this runs out
FETCH_MAX_WAIT_MS = 20  # an empty fetch returns at once: catching up before each batch costs one round trip
MAX_RECORD_BYTES = 4 * 1024 * 1024  # a story row holds two vectors per language: well under this
# ``append`` sends a batch's changes and flushes: records wait (linger) only until that flush, so they
# travel as a few record batches of up to BATCH_BYTES (before compression: well under a broker's 1 MB
# message limit) instead of one produce request, compressed stream and CRC per row (kafka-python's defaults,
# linger 0 and 16 KB, hold one or two ~8 KB story rows).
LINGER_UNTIL_FLUSH_MS = 1000
BATCH_BYTES = 512 * 1024


class KafkaChangelog:
    """A changelog topic of one partition. Raises ``UnavailableError`` naming the brokers and the topic
    when it cannot be created, written or read: the state store is unavailable, no article is at fault
    (the stage keeps its batch uncommitted, turns red and retries; nothing is dead-lettered for it)."""

    def __init__(self, config: KafkaConfig, topic: str) -> None:
        self.config = config
        self.topic = topic
        self.bootstrap = list(config.bootstrap)
        self.writer = new_writer_id()
        self.tp = TopicPartition(topic, 0)
        self.bytes_appended = 0  # key + value bytes appended since start (the bench's state cost)
        self.records_appended = 0
        self._producer: KafkaProducer | None = None
        self._consumer: KafkaConsumer | None = None
        self._position: int | None = None
        self._interrupted = threading.Event()
        self._ensure_topic()

    def _ensure_topic(self) -> None:
        try:
            admin = KafkaAdminClient(
                bootstrap_servers=self.bootstrap,
                client_id=self.config.client_id + "-changelog-admin",
                request_timeout_ms=ADMIN_TIMEOUT_MS,
                **kafka_security_options(self.config),
            )
        except KafkaError as exc:
            raise UnavailableError(f"kafka {self.bootstrap}: cannot connect the admin client: {exc!r}") from exc
        try:
            if self.topic not in set(admin.list_topics()):
                try:
                    admin.create_topics(
                        [NewTopic(self.topic, 1, self.config.replication, topic_configs=TOPIC_CONFIGS)],
                        timeout_ms=ADMIN_TIMEOUT_MS,
                    )
                    logger.info("changelog topic created", extra={"topic": self.topic, **TOPIC_CONFIGS})
                except TopicAlreadyExistsError:
                    pass
        except KafkaError as exc:
            raise UnavailableError(
                f"kafka {self.bootstrap}: cannot create changelog topic {self.topic!r}: {exc!r}"
            ) from exc
        finally:
            admin.close()

    def _producer_client(self) -> KafkaProducer:
        if self._producer is None:
            try:
                self._producer = KafkaProducer(
                    bootstrap_servers=self.bootstrap,
                    client_id=self.config.client_id + "-changelog",
                    acks="all",
                    enable_idempotence=True,
                    retry_backoff_ms=PRODUCER_RETRY_BACKOFF_MS,
                    max_in_flight_requests_per_connection=PRODUCER_MAX_IN_FLIGHT,
                    compression_type=self.config.compression,
                    linger_ms=LINGER_UNTIL_FLUSH_MS,
                    batch_size=BATCH_BYTES,
                    max_request_size=MAX_RECORD_BYTES,
                    delivery_timeout_ms=PRODUCER_DELIVERY_TIMEOUT_MS,
                    max_block_ms=PRODUCER_MAX_BLOCK_MS,
                    allow_auto_create_topics=False,
                    **kafka_security_options(self.config),
                )
            except KafkaError as exc:
                raise UnavailableError(f"kafka {self.bootstrap}: cannot start the changelog producer: {exc!r}") from exc
        return self._producer

    def append(self, changes: Sequence[Change]) -> tuple[int, int] | None:
        """Append ``changes`` and this writer's end marker; returns the offset of the first change and the
        offset after the marker when the records landed one after the other (None when another writer's
        records came between them)."""
        producer = self._producer_client()
        headers = [(H_WRITER, self.writer.encode("ascii"))]
        futures: list[tuple[str, Any]] = []
        try:
            for change in changes:
                key = change.key.encode("utf-8")
                futures.append(
                    (change.key, producer.send(self.topic, key=key, value=change.value, headers=headers, partition=0))
                )
                self.bytes_appended += len(key) + len(change.value or b"")
            if futures:
                marker = (MARKER_PREFIX + self.writer).encode("utf-8")
                sent = producer.send(self.topic, key=marker, value=b"1", headers=headers, partition=0)
                futures.append(("marker", sent))
            ended = flush_in_slices(
                producer,
                settled=lambda: all(f.is_done for _, f in futures),
                interrupted=self._interrupted,
                timeout_s=None,
            )
        except KafkaError as exc:
            raise UnavailableError(f"kafka {self.bootstrap}: changelog {self.topic!r}: append failed: {exc!r}") from exc
        if ended != "done":
            waiting = sum(1 for _, f in futures if not f.is_done)
            raise UnavailableError(
                f"kafka {self.bootstrap}: changelog {self.topic!r}: {waiting} records not acknowledged: "
                "the process is stopping"
            )
        failed = [(key, f.exception) for key, f in futures if f.failed()]
        if failed:
            shown = "; ".join(f"key {k}: {e!r}" for k, e in failed[:3])
            raise UnavailableError(
                f"kafka {self.bootstrap}: changelog {self.topic!r}: {len(failed)} records not acknowledged: {shown}"
            )
        self.records_appended += len(changes)
        if not futures:
            return None
        first, closing = int(futures[0][1].value.offset), int(futures[-1][1].value.offset)  # RecordMetadata
        if closing - first + 1 != len(futures):
            return None  # interleaved with another writer's records
        return first, closing + 1

    def _reader(self) -> KafkaConsumer:
        if self._consumer is None:
            try:
                self._consumer = KafkaConsumer(
                    bootstrap_servers=self.bootstrap,
                    client_id=self.config.client_id + "-changelog-reader",
                    group_id=None,
                    enable_auto_commit=False,
                    auto_offset_reset="earliest",
                    allow_auto_create_topics=False,
                    fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
                    max_partition_fetch_bytes=MAX_RECORD_BYTES,
                    **kafka_security_options(self.config),
                )
                self._consumer.assign([self.tp])
            except KafkaError as exc:
                raise UnavailableError(
                    f"kafka {self.bootstrap}: cannot read changelog {self.topic!r}: {exc!r}"
                ) from exc
        return self._consumer

    def read(self, start: int) -> Iterator[LoggedChange]:
        """Records from ``start`` to the end, each writer's only up to its latest end marker (a commit whose
        append a crash cut short is left out: its articles are redone by whoever takes over)."""
        held: dict[str, list[LoggedChange]] = {}  # per writer: records not yet closed by its marker
        for logged in self._read_raw(start):
            if logged.change.key.startswith(MARKER_PREFIX):
                yield from held.pop(logged.writer, [])
                continue
            held.setdefault(logged.writer, []).append(logged)

    def _read_raw(self, start: int) -> Iterator[LoggedChange]:
        consumer = self._reader()
        try:
            end = self._end_offset(consumer)
            if end <= start:
                # Nothing after start: exact on Kafka; tansu answers the last batch's base offset + 1, which
                # is at most start only when that batch ends before start too.
                return
            if self._position != start:
                consumer.seek(self.tp, start)
            polled = False  # the high watermark must come from a fetch made during this read
            deadline = time.monotonic() + READ_TIMEOUT_S
            while True:
                batch = consumer.poll(timeout_ms=READ_POLL_MS, max_records=10_000)
                polled = True
                for message in batch.get(self.tp, []):
                    if message.offset < start:
                        continue
                    writer = next((v.decode("ascii", "replace") for n, v in message.headers or [] if n == H_WRITER), "")
                    key = (message.key or b"").decode("utf-8")
                    change = Change(key=key, value=message.value)
                    yield LoggedChange(offset=message.offset, writer=writer, change=change)
                position = consumer.position(self.tp)
                high = consumer.highwater(self.tp)
                if polled and position >= end and (high is None or position >= high):
                    self._position = position
                    return
                if not batch:
                    self._check_interrupted()  # nothing came: a stopping process does not wait for READ_TIMEOUT_S
                if time.monotonic() > deadline:
                    raise UnavailableError(
                        f"kafka {self.bootstrap}: changelog {self.topic!r}: could not read from offset {start} "
                        f"to {max(end, high or 0)} in {READ_TIMEOUT_S}s (at {position})"
                    )
        except KafkaError as exc:
            self._position = None
            raise UnavailableError(f"kafka {self.bootstrap}: cannot read changelog {self.topic!r}: {exc!r}") from exc

    def _end_offset(self, consumer: KafkaConsumer) -> int:
        """The partition's end offset (ListOffsets: kafka-python's request timeout, 30 s, on a broker that is
        gone), waited for in slices so that an ``interrupt`` is heard (``stream.interruptible``)."""
        try:
            offsets = call_interruptibly(
                lambda: consumer.end_offsets([self.tp]),
                self._interrupted,
                what=f"kafka {self.bootstrap}: changelog {self.topic!r}: end offset",
            )
        except UnavailableError:
            self._position = None
            raise
        return int(offsets[self.tp])

    def _check_interrupted(self) -> None:
        if self._interrupted.is_set():
            self._position = None
            raise UnavailableError(f"kafka {self.bootstrap}: changelog {self.topic!r}: read interrupted (stopping)")

    def interrupt(self) -> None:
        """The process is stopping: a read or an append the broker does not answer raises ``UnavailableError``
        after its current slice (``stream.interruptible.WAIT_SLICE_S`` for the end offset, ``FLUSH_SLICE_S`` for an
        append) instead of at its timeout (30 s; an append's: the 120 s delivery timeout); a broker that answers is
        read and written as before."""
        self._interrupted.set()

    def close(self) -> None:
        try:
            if self._producer is not None:
                # stopping: records still in flight may land later; with its end marker a commit is applied by
                # the next owner (its decisions are keyed by article id: a redo gets the same answers), without
                # it never (see ``read``)
                close_producer(self._producer, stopping=self._interrupted.is_set())
        finally:
            if self._consumer is not None:
                self._consumer.close(autocommit=False)
            self._producer = None
            self._consumer = None
