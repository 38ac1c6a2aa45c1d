"""The distributed bus: ``stream.bus.Bus`` over Kafka with kafka-python.

- Topics are named by the caller (the settings' ``topic_raw``, ``topic_clustered``, ...), each with
  a ``<topic>.dlq`` twin, created with ``KafkaConfig.partitions`` partitions when missing. Records are keyed
  by article id, so the default partitioner keeps every record of one article in one partition, in order.
- Producer: ``acks=all``, idempotent, retries with backoff, bounded in-flight requests, lz4 record
  batches (``KafkaConfig.compression``, default ``COMPRESSION``; linger, batch and fetch sizes there
  too). ``flush`` waits for the acknowledgement of every record the calling thread sent and raises
  ``UndeliveredError`` naming each of them the brokers refused; failures are never dropped silently and are
  counted. Threads sharing the bus each get their own records' failures, never another thread's.
- Consumers: one Kafka consumer group per stage, ``enable_auto_commit=False``; ``commit`` commits the
  offsets after the records ``poll`` returned (the worker calls it once the effects are durable).
  A rebalance listener forgets the uncommitted positions of revoked partitions, so a commit after a
  rebalance never claims records the new owner will process; those records are redelivered
  (at-least-once), and a committed record is never handed out again. ``close`` leaves the group.
- Dead letters: ``dead_letter`` produces the record to ``<topic>.dlq`` with the ``stream.bus.H_*``
  headers (the error text cut to ``DLQ_REASON_MAX_BYTES``); a letter refused as too large (a record just
  under the limit plus the headers) is sent again without its value, ``H_VALUE_DROPPED`` saying why (replay
  leaves such letters listed). ``dead_letters`` reads the dlq topic from the replay group's committed offset;
  ``replay`` republishes letters, then writes a marker record (header ``dlq.replayed_of``) into the letter's dlq
  partition and commits the replay group past every resolved prefix, so a replayed letter is not
  listed again (a crash between republish and marker replays it twice: at-least-once again).

Stand-in brokers used by the tests differ from Kafka in known ways handled here: tansu 0.6 answers
ListOffsets(latest) with the base offset of the last batch + 1, so end offsets are the maximum of
ListOffsets and the high watermark of fetch responses.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kafka import ConsumerRebalanceListener, KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import (
    CommitFailedError,
    IllegalGenerationError,
    KafkaError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    NoError,
    RebalanceInProgressError,
    TopicAlreadyExistsError,
    UnknownMemberIdError,
)
from kafka.structs import OffsetAndMetadata

from stream.article import iso_utc
from stream.bus import (
    H_ATTEMPTS,
    H_DEAD_LETTERED_AT,
    H_ERROR_CLASS,
    H_ERROR_MESSAGE,
    H_ORIGINAL_OFFSET,
    H_ORIGINAL_PARTITION,
    H_ORIGINAL_TOPIC,
    H_STAGE,
    H_VALUE_DROPPED,
    DeadLetter,
    GroupLag,
    Record,
    Undelivered,
    UndeliveredError,
    dlq_reason,
)
from stream.errors import BusError, GroupActiveError, UnavailableError
from stream.interruptible import call_interruptibly
from stream.metrics import Metrics
from stream.offset_reset import OffsetReset, ResetTarget, clamp

logger = logging.getLogger(__name__)

H_REPLAYED_OF = "dlq.replayed_of"  # marker record in a dlq topic: the id of the letter it resolves
DLQ_HEADER_PREFIX = "dlq."  # headers the bus adds on dead-lettering; stripped on replay
# lz4 (kafka-python[lz4]): kafka-python's gzip is hard-wired to level 9, 1.35 ms per 11.6 KB embedded article
# (ratio 0.43); lz4 0.07 ms (ratio 0.70). The embed process compressed each article twice on the bus and ~29 KB
# of changelog rows: gzip was its largest cost beside the model (docs/benchmarks.md, "distributed_load").
# Consumers need the lz4 package to read these batches: upgrade them first.
COMPRESSION = "lz4"
PRODUCER_RETRY_BACKOFF_MS = 200  # first retry delay of a failed produce request (kafka-python backs off)
PRODUCER_MAX_IN_FLIGHT = 5  # the idempotent producer keeps per-partition order with at most 5 in flight
PRODUCER_LINGER_MS = 5  # wait this long to fill a batch: fewer requests at a few ms of latency
# Record batch size per partition (before compression). kafka-python's default, 16 KB, holds one embedded article
# (~12 KB with its vector): a batch, a CRC, a compressed stream and a wake-up of the sender thread per article.
# bench.distributed_load, 2 replicas, back to back: 16 KB 97 articles/s, 12.9 ms CPU per article (all processes);
# 64 KB 107-110, 9.7-10.3 ms; 256 KB 108-112, 9.8-9.9 ms but embed peaks of up to 308 MB (64 KB: 291-296).
PRODUCER_BATCH_BYTES = 64 * 1024
PRODUCER_DELIVERY_TIMEOUT_MS = 120_000  # give up on a record (and report it) after retrying this long
PRODUCER_MAX_BLOCK_MS = 30_000  # send() waits this long for metadata of an unknown topic
# The largest record the producer sends (kafka-python's max_request_size default, which a broker's default
# message.max.bytes of 1 MiB + 12 does not undercut): a larger one is refused at send, MessageSizeTooLargeError.
MAX_RECORD_BYTES = 1024 * 1024
ADMIN_TIMEOUT_MS = 30_000  # create/list topics
CONSUMER_CLOSE_TIMEOUT_MS = 5_000  # leaving a group: milliseconds on a live coordinator (a dead one: see close)
FLUSH_SLICE_S = 0.5  # a flush waits in slices of this long, so that ``interrupt`` (a stopping process) is heard
SCAN_TIMEOUT_S = 30.0  # a dead-letter scan that cannot reach the end of the dlq topic in this time fails
SCAN_POLL_MS = 200  # poll slice while scanning a dlq topic
FUTURES_PRUNE_AT = 10_000  # drop acknowledged futures when this many accumulate between flushes
REPLAY_GROUP_SUFFIX = "-dlq-replay"  # consumer group whose committed dlq offsets record replay progress
END_FETCH_LIMITS = {"max_partition_fetch_bytes": 1, "fetch_max_bytes": 1}  # the broker still returns one batch
END_FETCH_TIMEOUT_S = 10.0  # reading the exact end offsets (a fetch of each partition's last batch) gives up then


@dataclass(frozen=True, slots=True)
class KafkaConfig:
    """What the Kafka bus reads: its own knobs, not the application's settings (the composition root
    builds it from them: ``sednaya_monitor.wiring.kafka_config``; defaults and meanings there)."""

    bootstrap: tuple[str, ...]  # host:port of the brokers
    client_id: str = "sednaya-monitor"
    partitions: int = 6  # of the topics it creates
    replication: int = 1
    max_poll_interval_ms: int = 300_000
    session_timeout_ms: int = 10_000
    dlq_suffix: str = ".dlq"
    security_protocol: str = "PLAINTEXT"  # PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL
    sasl_mechanism: str = "PLAIN"
    sasl_username: str = ""
    sasl_password: str = ""
    ssl_cafile: str = ""
    ssl_check_hostname: bool = True
    # client tuning (the settings ``kafka_compression`` ... ``kafka_max_partition_fetch_bytes``; defaults here)
    compression: str | None = COMPRESSION  # None: uncompressed
    linger_ms: int = PRODUCER_LINGER_MS
    batch_bytes: int = PRODUCER_BATCH_BYTES
    fetch_min_bytes: int = 1  # kafka-python's defaults
    fetch_max_wait_ms: int = 500
    max_partition_fetch_bytes: int = 1024 * 1024

    def dlq(self, topic: str) -> str:
        """The dead-letter twin of ``topic``."""
        return topic + self.dlq_suffix


def kafka_security_options(config: KafkaConfig) -> dict[str, Any]:
    """The kafka-python keyword arguments of ``config.security_protocol`` (every client gets them).

    SSL and SASL_SSL verify the brokers' certificates against ``ssl_cafile`` (the system CAs
    when empty) and check the host name unless ``ssl_check_hostname`` is off; the SASL_*
    protocols log in with ``sasl_mechanism`` (PLAIN, SCRAM-SHA-256/512) as
    ``sasl_username``. PLAINTEXT adds nothing else.
    """
    protocol = config.security_protocol
    options: dict[str, Any] = {"security_protocol": protocol}
    if protocol in ("SSL", "SASL_SSL"):
        options["ssl_check_hostname"] = config.ssl_check_hostname
        if config.ssl_cafile:
            options["ssl_cafile"] = config.ssl_cafile
    if protocol.startswith("SASL_"):
        options["sasl_mechanism"] = config.sasl_mechanism
        options["sasl_plain_username"] = config.sasl_username  # kafka-python uses these for SCRAM too
        options["sasl_plain_password"] = config.sasl_password
    return options


@dataclass(frozen=True, slots=True)
class _Pending:
    """One record sent by a thread and not yet reported by its flush."""

    topic: str
    key: str
    value_bytes: int
    letter: Mapping[str, str] | None  # a dead letter: its dlq.* headers (to send it again without its value)
    future: Any = None  # kafka.producer.future.FutureRecordMetadata (untyped library); None when send raised
    error: BaseException | None = None  # send() refused it at once

    def failure(self) -> BaseException | None:
        if self.future is None:
            return self.error
        return self.future.exception if self.future.failed() else None


@dataclass(slots=True)
class _Sends:
    """What one thread sent since its own last flush (``KafkaBus`` keeps one per thread)."""

    pending: list[_Pending] = field(default_factory=list)


class KafkaBus:
    """``stream.bus.Bus`` on Kafka. Thread-safe for publishing; one consumer per thread.

    Args:
        config: the brokers, partitions, replication, client id, poll and session timeouts, security.
        metrics: when given, counts ``sednaya_bus_records_total{topic, op="produced"|"delivery_failed"}``.

    Raises:
        BusError: from any method when the brokers cannot be reached or refuse a request (the message
            names the bootstrap servers and the topic).
    """

    def __init__(self, config: KafkaConfig, *, metrics: Metrics | None = None) -> None:
        if not config.bootstrap:
            raise BusError("KafkaBus needs at least one broker (bus='kafka://host:port')")
        self.config = config
        self.metrics = metrics
        self.bootstrap = list(config.bootstrap)
        self.delivery_failures = 0  # records the brokers never acknowledged, since start
        self._lock = threading.RLock()
        self._producer: KafkaProducer | None = None
        self._admin: KafkaAdminClient | None = None
        self._known_topics: set[str] = set()
        # Each thread's sends, reported by that thread's flush only: threads of one process share the bus
        # (the index and index-stories workers), and one thread must never commit on another's failure.
        self._local = threading.local()
        self._interrupted = threading.Event()

    # --- topics -------------------------------------------------------------------------------------
    def ensure_topics(self, topics: Sequence[str]) -> None:
        """Create ``topics`` and their dlq twins with ``config.partitions`` partitions when missing."""
        wanted: list[str] = []
        for topic in topics:
            for name in (topic, self.config.dlq(topic)):
                if name not in wanted and name not in self._known_topics:
                    wanted.append(name)
        if not wanted:
            return
        with self._lock:
            admin = self._admin_client()
            try:
                existing = set(admin.list_topics())
                missing = [t for t in wanted if t not in existing]
                if missing:
                    new = [NewTopic(t, self.config.partitions, self.config.replication) for t in missing]
                    try:
                        admin.create_topics(new, timeout_ms=ADMIN_TIMEOUT_MS)
                    except TopicAlreadyExistsError:
                        logger.debug("topic created concurrently", extra={"topics": missing})
                    still = [t for t in missing if t not in set(admin.list_topics())]
                    if still:
                        raise BusError(f"kafka {self.bootstrap}: topics {still} missing after create_topics")
                    logger.info(
                        "topics created",
                        extra={"topics": missing, "partitions": self.config.partitions},
                    )
            except KafkaError as exc:
                raise BusError(f"kafka {self.bootstrap}: cannot create topics {wanted}: {exc!r}") from exc
            self._known_topics.update(wanted)

    def partitions(self, topic: str) -> int:
        """How many partitions ``topic`` has (0 when it does not exist)."""
        consumer = self._plain_consumer(group=None)
        try:
            found = consumer.partitions_for_topic(topic)
        finally:
            consumer.close()
        return len(found or ())

    # --- producing ----------------------------------------------------------------------------------
    def publish(self, topic: str, key: str, value: bytes, headers: Mapping[str, str] | None = None) -> None:
        self._send(topic, key, value, headers or {}, partition=None)

    def _sends(self) -> _Sends:
        """The calling thread's sends since its last flush."""
        sends: _Sends | None = getattr(self._local, "sends", None)
        if sends is None:
            sends = _Sends()
            self._local.sends = sends
        return sends

    def _send(
        self,
        topic: str,
        key: str,
        value: bytes,
        headers: Mapping[str, str],
        *,
        partition: int | None,
        letter: Mapping[str, str] | None = None,
    ) -> None:
        if topic not in self._known_topics:
            self.ensure_topics([topic.removesuffix(self.config.dlq_suffix)])
        wire_headers = [(name, str(text).encode("utf-8")) for name, text in headers.items()]
        producer = self._producer_client()
        sends = self._sends()
        try:
            future = producer.send(
                topic, key=key.encode("utf-8"), value=bytes(value), headers=wire_headers, partition=partition
            )
        except KafkaError as exc:
            sends.pending.append(_Pending(topic, key, len(value), letter, error=exc))
            return
        sends.pending.append(_Pending(topic, key, len(value), letter, future=future))
        if len(sends.pending) >= FUTURES_PRUNE_AT:
            sends.pending = [p for p in sends.pending if not (p.future is not None and p.future.succeeded())]

    def flush(self, timeout_s: float | None = None) -> None:
        """Wait for the acknowledgement of every record the calling thread sent (``timeout_s`` None = up to
        the delivery timeout). A dead letter refused as too large is sent again without its value (header
        ``H_VALUE_DROPPED`` says why; its ``dlq.original_*`` headers and key find the record).

        Raises:
            UndeliveredError: naming the topic, key and broker error of each of this thread's records not
                acknowledged (another thread's failures are raised by that thread's flush).
            BusError: ``timeout_s`` ran out (with the count of this thread's records still in flight).
            UnavailableError: :meth:`interrupt` was called (the process is stopping) before the records were
                acknowledged: the caller's input stays uncommitted, for the next member of its group.
        """
        failures = self._settle(timeout_s)
        strip = [
            (p, e) for p, e in failures if p.letter is not None and H_VALUE_DROPPED not in p.letter and _too_large(e)
        ]
        if strip:
            for item, error in strip:
                self._send_without_value(item, error)
            stripped = {id(p) for p, _e in strip}
            failures = [(p, e) for p, e in failures if id(p) not in stripped] + self._settle(timeout_s)
        if not failures:
            return
        with self._lock:
            self.delivery_failures += len(failures)
        if self.metrics is not None:
            for item, _error in failures:
                self.metrics.bus_records.labels(topic=item.topic, op="delivery_failed").inc()
        shown = "; ".join(f"topic {p.topic!r} key {p.key!r}: {e!r}" for p, e in failures[:5])
        more = f" (and {len(failures) - 5} more)" if len(failures) > 5 else ""
        logger.error("records not delivered", extra={"count": len(failures), "first": shown})
        raise UndeliveredError(
            f"kafka {self.bootstrap}: {len(failures)} records not delivered: {shown}{more}",
            [
                Undelivered(topic=p.topic, key=p.key, value_bytes=p.value_bytes, error=repr(e), too_large=_too_large(e))
                for p, e in failures
            ],
        )

    def _settle(self, timeout_s: float | None) -> list[tuple[_Pending, BaseException]]:
        """Flush the producer, count what the calling thread got delivered; its failed records."""
        sends = self._sends()
        if self._producer is None or not sends.pending:
            return []
        try:
            ended = flush_in_slices(
                self._producer, settled=lambda: _waiting(sends) == 0, interrupted=self._interrupted, timeout_s=timeout_s
            )
        except KafkaError as exc:
            raise BusError(f"kafka {self.bootstrap}: {_waiting(sends)} records not acknowledged: {exc!r}") from exc
        if ended == "interrupted":
            raise UnavailableError(
                f"kafka {self.bootstrap}: {_waiting(sends)} records not acknowledged: the process is stopping"
            )
        if ended == "timeout":
            raise BusError(f"kafka {self.bootstrap}: {_waiting(sends)} records not acknowledged within {timeout_s}s")
        done = [p for p in sends.pending if p.future is None or p.future.is_done]
        sends.pending = [p for p in sends.pending if not (p.future is None or p.future.is_done)]
        failures: list[tuple[_Pending, BaseException]] = []
        produced: dict[str, int] = {}
        for item in done:
            error = item.failure()
            if error is not None:
                failures.append((item, error))
            else:
                produced[item.topic] = produced.get(item.topic, 0) + 1
        if self.metrics is not None:
            for topic, count in produced.items():
                self.metrics.bus_records.labels(topic=topic, op="produced").inc(count)
        return failures

    def _send_without_value(self, item: _Pending, error: BaseException) -> None:
        """Send the dead letter ``item`` again with its dlq headers only and no value."""
        assert item.letter is not None
        headers = dict(item.letter)
        headers[H_VALUE_DROPPED] = dlq_reason(
            f"the letter's copy of the record ({item.value_bytes} bytes) was refused: {error!r}"
        )
        logger.warning(
            "dead letter kept without its value",
            extra={
                "topic": item.topic,
                "key": item.key,
                "value_bytes": item.value_bytes,
                "original_topic": headers.get(H_ORIGINAL_TOPIC),
                "original_partition": headers.get(H_ORIGINAL_PARTITION),
                "original_offset": headers.get(H_ORIGINAL_OFFSET),
                "error": repr(error),
            },
        )
        if self.metrics is not None:
            self.metrics.bus_records.labels(topic=item.topic, op="value_dropped").inc()
        self._send(item.topic, item.key, b"", headers, partition=None, letter=headers)

    # --- consuming ----------------------------------------------------------------------------------
    def consumer(self, topic: str, group: str) -> KafkaGroupConsumer:
        self.ensure_topics([topic.removesuffix(self.config.dlq_suffix)])
        return KafkaGroupConsumer(self.config, topic, group)

    # --- dead letters -------------------------------------------------------------------------------
    def dead_letter(self, record: Record, *, stage: str, error_class: str, reason: str, attempts: int) -> None:
        """Produce ``record`` to ``<record.topic>.dlq`` with the ``H_*`` headers (sent on the next flush; the
        error text cut to ``DLQ_REASON_MAX_BYTES``; a copy refused as too large goes without its value)."""
        letter = {
            H_STAGE: stage,
            H_ERROR_CLASS: error_class,
            H_ERROR_MESSAGE: dlq_reason(reason),
            H_ORIGINAL_TOPIC: record.topic,
            H_ORIGINAL_PARTITION: str(record.partition),
            H_ORIGINAL_OFFSET: str(record.offset),
            H_ATTEMPTS: str(attempts),
            H_DEAD_LETTERED_AT: iso_utc(datetime.now(UTC)),
        }
        headers = {**record.headers, **letter}
        self._send(self.config.dlq(record.topic), record.key, record.value, headers, partition=None, letter=letter)

    def dead_letters(self, topic: str, limit: int = 100) -> list[DeadLetter]:
        """Letters of ``topic`` not yet replayed, oldest first per dlq partition (id ``"<partition>:<offset>"``)."""
        scan = self._scan(topic)
        try:
            return scan.unresolved()[:limit]
        finally:
            scan.close()

    def replay(self, topic: str, ids: Sequence[str] | None = None) -> int:
        """Republish letters of ``topic`` (all, or ``ids``) to ``topic``; they are not listed again.

        Raises:
            BusError: an id is unknown or already replayed (nothing is replayed then), or delivery failed.
        """
        scan = self._scan(topic)
        try:
            letters = scan.unresolved()
            if ids is not None:
                wanted = set(ids)
                unknown = wanted - {d.id for d in letters}
                if unknown:
                    raise BusError(f"dead letters {sorted(unknown)} of topic {topic!r} not found (or already replayed)")
                letters = [d for d in letters if d.id in wanted]
                empty = [d.id for d in letters if H_VALUE_DROPPED in d.headers]
                if empty:
                    raise BusError(
                        f"dead letters {empty} of topic {topic!r} were kept without their record (too large): "
                        f"read it from the original topic at the letter's dlq.original_partition/offset"
                    )
            kept = [d for d in letters if H_VALUE_DROPPED not in d.headers]
            if len(kept) < len(letters):
                logger.warning(
                    "dead letters without their record not replayed",
                    extra={"topic": topic, "ids": [d.id for d in letters if H_VALUE_DROPPED in d.headers]},
                )
            letters = kept
            if not letters:
                return 0
            for letter in letters:
                headers = {k: v for k, v in letter.headers.items() if not k.startswith(DLQ_HEADER_PREFIX)}
                self.publish(topic, letter.key, letter.value, headers)
            self.flush()
            dlq = self.config.dlq(topic)
            for letter in letters:
                dlq_partition = int(letter.id.split(":", 1)[0])
                self._send(dlq, letter.key, b"", {H_REPLAYED_OF: letter.id}, partition=dlq_partition)
            self.flush()
            scan.commit_resolved({d.id for d in letters})
            logger.info("dead letters replayed", extra={"topic": topic, "count": len(letters)})
            return len(letters)
        finally:
            scan.close()

    def _scan(self, topic: str) -> _DlqScan:
        dlq = self.config.dlq(topic)
        consumer = self._plain_consumer(group=self.config.client_id + REPLAY_GROUP_SUFFIX)
        try:
            scan = _DlqScan(topic, dlq, consumer)
            scan.read()
        except KafkaError as exc:
            consumer.close()
            raise BusError(f"kafka {self.bootstrap}: cannot read dead letters of {dlq!r}: {exc!r}") from exc
        except BaseException:
            consumer.close()
            raise
        return scan

    # --- operators (stream.bus.BusAdmin) -----------------------------------------------------------
    def read_topic(
        self, topic: str, *, partition: int | None = None, start: int | None = None, stop: int | None = None
    ) -> Iterator[Record]:
        """Records of ``topic`` with ``start <= offset < stop``, partition by partition, up to the end
        offsets as they were when called (a plain consumer: joins no group, commits nothing)."""
        consumer = self._plain_consumer(group=None)
        try:
            found = consumer.partitions_for_topic(topic)
            if not found:
                raise BusError(f"kafka {self.bootstrap}: topic {topic!r} does not exist")
            if partition is not None and partition not in found:
                raise BusError(
                    f"kafka {self.bootstrap}: topic {topic!r} has no partition {partition} (it has {sorted(found)})"
                )
            chosen = [partition] if partition is not None else sorted(found)
            tps = [TopicPartition(topic, p) for p in chosen]
            beginning = consumer.beginning_offsets(tps)
            ender = self._plain_consumer(group=None, **END_FETCH_LIMITS)  # must not disturb the reading consumer
            try:
                ends = _exact_ends(ender, tps)
            finally:
                ender.close(autocommit=False)
            for tp in tps:
                first = max(beginning[tp], start or 0)
                last = min(ends[tp], stop) if stop is not None else ends[tp]
                if first >= last:
                    continue
                consumer.assign([tp])
                consumer.seek(tp, first)
                deadline = time.monotonic() + SCAN_TIMEOUT_S
                while consumer.position(tp) < last:
                    if time.monotonic() > deadline:
                        raise BusError(
                            f"kafka {self.bootstrap}: {topic!r} partition {tp.partition}: could not read "
                            f"offsets {first}..{last - 1} in {SCAN_TIMEOUT_S}s"
                        )
                    for message in consumer.poll(timeout_ms=SCAN_POLL_MS).get(tp, []):
                        if first <= message.offset < last:
                            yield _record(tp, message)
        except KafkaError as exc:
            raise BusError(f"kafka {self.bootstrap}: cannot read {topic!r}: {exc!r}") from exc
        finally:
            consumer.close(autocommit=False)

    def group_lag(self, pairs: Sequence[tuple[str, str]]) -> list[GroupLag]:
        """Each group's committed offsets (OffsetFetch through the admin client) against the partitions'
        end offsets. A group that never committed a partition is at the partition's first offset."""
        with self._lock:
            try:
                admin = self._admin_client()
                groups = sorted({group for _topic, group in pairs})
                committed: dict[str, dict[TopicPartition, int]] = {}
                for group in groups:  # one request per group: older brokers fetch one group at a time
                    answer = admin.list_group_offsets({group: None}).get(group, {})
                    committed[group] = {tp: meta.offset for tp, meta in answer.items() if meta.offset >= 0}
                consumer = self._plain_consumer(group=None, **END_FETCH_LIMITS)
                try:
                    tps: list[TopicPartition] = []
                    for topic in sorted({topic for topic, _group in pairs}):
                        tps += [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
                    beginning = consumer.beginning_offsets(tps) if tps else {}
                    ends = _exact_ends(consumer, tps)
                finally:
                    consumer.close(autocommit=False)
            except KafkaError as exc:
                raise BusError(f"kafka {self.bootstrap}: cannot read the groups' lag: {exc!r}") from exc
        out: list[GroupLag] = []
        for topic, group in pairs:
            for tp in (tp for tp in tps if tp.topic == topic):
                start = committed.get(group, {}).get(tp, beginning.get(tp, 0))
                out.append(GroupLag(topic=topic, group=group, partition=tp.partition, committed=start, end=ends[tp]))
        return out

    # --- offset resets (stream.offset_reset.OffsetAdmin) ---------------------------------------------
    def group_members(self, group: str) -> int | None:
        """Active members of ``group`` from DescribeGroups; None when kafka-python cannot read the answer
        (tansu 0.6 sends authorized operations it cannot decode): the broker still refuses the commit."""
        with self._lock:
            try:
                answer = self._admin_client().describe_groups([group]).get(group, {})
            except ValueError as exc:
                logger.debug("group description unreadable", extra={"group": group, "error": str(exc)})
                return None
            except KafkaError as exc:
                raise BusError(f"kafka {self.bootstrap}: cannot describe group {group!r}: {exc!r}") from exc
        return len(answer.get("members") or [])

    def plan_offset_reset(self, topic: str, group: str, target: ResetTarget) -> list[OffsetReset]:
        """Each partition of ``topic``: ``group``'s committed offset and ``target`` resolved against the
        partition's first and end offsets (``time``: the first record at or after it, else the end)."""
        with self._lock:
            try:
                committed_raw = self._admin_client().list_group_offsets({group: None}).get(group, {})
                committed = {tp: meta.offset for tp, meta in committed_raw.items() if meta.offset >= 0}
                consumer = self._plain_consumer(group=None, **END_FETCH_LIMITS)
                try:
                    partitions = consumer.partitions_for_topic(topic)
                    if not partitions:
                        raise BusError(f"kafka {self.bootstrap}: topic {topic!r} does not exist")
                    tps = [TopicPartition(topic, p) for p in sorted(partitions)]
                    firsts = consumer.beginning_offsets(tps)
                    at: dict[TopicPartition, Any] = {}
                    if target.kind == "time" and target.at is not None:
                        millis = int(target.at.timestamp() * 1000)
                        at = consumer.offsets_for_times(dict.fromkeys(tps, millis))
                    ends = _exact_ends(consumer, tps)
                finally:
                    consumer.close(autocommit=False)
            except KafkaError as exc:
                raise BusError(
                    f"kafka {self.bootstrap}: cannot plan the offset reset of {group!r} on {topic!r}: {exc!r}"
                ) from exc
        moves = []
        for tp in tps:
            first, end = firsts[tp], ends[tp]
            if target.kind == "earliest":
                new = first
            elif target.kind == "latest":
                new = end
            elif target.kind == "offset":
                new = clamp(target.offset or 0, first, end)
            else:
                found = at.get(tp)
                # none at or after the time: the end (tansu answers "none" with timestamp -1, Kafka with None)
                new = end if found is None or found.timestamp < 0 else clamp(found.offset, first, end)
            current = committed.get(tp)
            moves.append(OffsetReset(topic, group, tp.partition, current=current, new=new, first=first, end=end))
        return moves

    def reset_offsets(self, moves: Sequence[OffsetReset]) -> None:
        """Commit the moves' offsets (OffsetCommit from outside the group, as Kafka's own tool does);
        the broker refuses while the group has members, and that is raised as ``GroupActiveError``."""
        by_group: dict[str, dict[TopicPartition, OffsetAndMetadata]] = {}
        for move in moves:
            by_group.setdefault(move.group, {})[TopicPartition(move.topic, move.partition)] = OffsetAndMetadata(
                move.new, "", -1
            )
        with self._lock:
            for group, offsets in by_group.items():
                try:
                    answer = self._admin_client().alter_group_offsets(group, offsets)
                except _GROUP_ACTIVE as exc:
                    raise GroupActiveError(_active(group, exc)) from exc
                except KafkaError as exc:
                    raise BusError(f"kafka {self.bootstrap}: cannot reset the offsets of {group!r}: {exc!r}") from exc
                errors = {tp: err for tp, err in answer.items() if err is not NoError}
                active = [err for err in errors.values() if err in _GROUP_ACTIVE]
                if active:
                    raise GroupActiveError(_active(group, active[0]))
                if errors:
                    failed = ", ".join(f"{tp.topic}:{tp.partition} {err.__name__}" for tp, err in errors.items())
                    raise BusError(f"kafka {self.bootstrap}: resetting the offsets of {group!r} failed: {failed}")

    # --- clients ------------------------------------------------------------------------------------
    def _producer_client(self) -> KafkaProducer:
        with self._lock:
            if self._producer is None:
                try:
                    self._producer = KafkaProducer(
                        bootstrap_servers=self.bootstrap,
                        client_id=self.config.client_id,
                        acks="all",
                        enable_idempotence=True,
                        retry_backoff_ms=PRODUCER_RETRY_BACKOFF_MS,
                        max_in_flight_requests_per_connection=PRODUCER_MAX_IN_FLIGHT,
                        compression_type=self.config.compression,
                        linger_ms=self.config.linger_ms,
                        batch_size=self.config.batch_bytes,
                        delivery_timeout_ms=PRODUCER_DELIVERY_TIMEOUT_MS,
                        max_block_ms=PRODUCER_MAX_BLOCK_MS,
                        max_request_size=MAX_RECORD_BYTES,
                        allow_auto_create_topics=False,
                        **kafka_security_options(self.config),
                    )
                except KafkaError as exc:
                    raise BusError(f"kafka {self.bootstrap}: cannot start the producer: {exc!r}") from exc
            return self._producer

    def _admin_client(self) -> KafkaAdminClient:
        if self._admin is None:
            try:
                self._admin = KafkaAdminClient(
                    bootstrap_servers=self.bootstrap,
                    client_id=self.config.client_id + "-admin",
                    request_timeout_ms=ADMIN_TIMEOUT_MS,
                    **kafka_security_options(self.config),
                )
            except KafkaError as exc:
                raise BusError(f"kafka {self.bootstrap}: cannot connect the admin client: {exc!r}") from exc
        return self._admin

    def _plain_consumer(self, *, group: str | None, **extra: Any) -> KafkaConsumer:
        """A consumer that is assigned partitions by hand (never joins a group; may commit for ``group``);
        ``extra`` adds kafka-python options."""
        try:
            return KafkaConsumer(
                bootstrap_servers=self.bootstrap,
                client_id=f"{self.config.client_id}-scan-{uuid.uuid4().hex[:8]}",
                group_id=group,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                allow_auto_create_topics=False,
                **kafka_security_options(self.config),
                **extra,
            )
        except KafkaError as exc:
            raise BusError(f"kafka {self.bootstrap}: cannot connect a consumer: {exc!r}") from exc

    def interrupt(self) -> None:
        """The process is stopping (``stream.worker.Interruptible``): a flush whose records are not acknowledged
        within a slice (a broker that is down: up to the delivery timeout) raises ``UnavailableError``, and
        :meth:`close` then does not wait for what is still in flight (its input was not committed). A broker that
        answers still gets every batch in hand flushed and committed."""
        self._interrupted.set()

    def close(self) -> None:
        """Flush (raising ``BusError`` on undelivered records), then close every client. After
        :meth:`interrupt`, records a slice did not see acknowledged are logged and not waited for
        (:func:`close_producer`)."""
        try:
            self.flush()
        except UnavailableError as exc:
            if not self._interrupted.is_set():
                raise
            message = "stopping with records in flight; their input is redone by the next member"
            logger.warning(message, extra={"error": str(exc)})
        finally:
            with self._lock:
                if self._producer is not None:
                    close_producer(self._producer, stopping=self._interrupted.is_set())
                    self._producer = None
                if self._admin is not None:
                    self._admin.close()
                    self._admin = None


def flush_in_slices(
    producer: KafkaProducer, *, settled: Callable[[], bool], interrupted: threading.Event, timeout_s: float | None
) -> str:
    """``producer.flush`` in ``FLUSH_SLICE_S`` slices until the caller's records are ``settled`` (acknowledged or
    failed; the producer's flush also waits for other threads' records), ``interrupted`` is set while they are
    not (the process is stopping and the broker does not answer), or ``timeout_s`` runs out (None: until the
    records' own delivery timeout). Returns "done", "interrupted" or "timeout"; a failed flush raises
    kafka-python's error. A broker that answers still gets every record flushed after an interrupt."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        left = FLUSH_SLICE_S if deadline is None else min(FLUSH_SLICE_S, max(0.0, deadline - time.monotonic()))
        try:
            producer.flush(timeout=left)
            return "done"
        except KafkaTimeoutError:
            if settled():
                return "done"
            if interrupted.is_set():
                return "interrupted"
            if deadline is not None and time.monotonic() >= deadline:
                return "timeout"


def close_producer(producer: KafkaProducer, *, stopping: bool) -> None:
    """Close ``producer``: waiting for what is in flight, or, when the process is ``stopping``, hardly at all.
    kafka-python's ``close(timeout=0)`` flushes first and, with records in flight, raises ``KafkaTimeoutError``
    before it force-closes (its sender is then force-closed here; the producer's ``__del__`` waits 1 s more).
    Records already on the wire may still land: records of input not yet committed,
    which the next member redoes, as after a SIGKILL (the stages downstream are keyed by article id)."""
    if not stopping:
        producer.close()
        return
    try:
        producer.close(timeout=0)
    except KafkaTimeoutError:
        # stop the sender thread too, which would otherwise retry the dead broker until the process ends
        force_close = getattr(getattr(producer, "_sender", None), "force_close", None)
        if callable(force_close):
            force_close()


def _waiting(sends: _Sends) -> int:
    return sum(1 for p in sends.pending if p.future is not None and not p.future.is_done)


class _DlqScan:
    """One read of a dlq topic from the replay group's committed offsets to the end."""

    def __init__(self, topic: str, dlq: str, consumer: KafkaConsumer) -> None:
        self.topic = topic
        self.dlq = dlq
        self.consumer = consumer
        self.letters: list[tuple[TopicPartition, int, DeadLetter]] = []
        self.markers: dict[TopicPartition, set[int]] = {}
        self.resolved: set[str] = set()  # letter ids with a marker
        self.start: dict[TopicPartition, int] = {}

    def read(self) -> None:
        found = self.consumer.partitions_for_topic(self.dlq)
        if not found:
            return
        tps = [TopicPartition(self.dlq, p) for p in sorted(found)]
        self.consumer.assign(tps)
        beginning = self.consumer.beginning_offsets(tps)
        for tp in tps:
            committed = self.consumer.committed(tp)
            self.start[tp] = committed if committed is not None else beginning[tp]
            self.consumer.seek(tp, self.start[tp])
        listed_end = self.consumer.end_offsets(tps)
        deadline = time.monotonic() + SCAN_TIMEOUT_S
        while True:
            for tp, messages in self.consumer.poll(timeout_ms=SCAN_POLL_MS).items():
                for message in messages:
                    self._take(tp, message)
            # tansu reports too-low ListOffsets; the fetch high watermark is exact, so wait for both
            done = True
            for tp in tps:
                high = self.consumer.highwater(tp)
                end = max(listed_end[tp], high or 0)
                if (high is None and end > self.start[tp]) or self.consumer.position(tp) < end:
                    done = False
            if done:
                return
            if time.monotonic() > deadline:
                raise BusError(f"dead-letter topic {self.dlq!r}: could not read to the end in {SCAN_TIMEOUT_S}s")

    def _take(self, tp: TopicPartition, message: Any) -> None:
        headers = {name: (raw or b"").decode("utf-8", "replace") for name, raw in message.headers or []}
        if H_REPLAYED_OF in headers:
            self.resolved.add(headers[H_REPLAYED_OF])
            self.markers.setdefault(tp, set()).add(message.offset)
            return
        key = (message.key or b"").decode("utf-8", "replace")
        at_text = headers.get(H_DEAD_LETTERED_AT, "")
        try:
            at = datetime.fromisoformat(at_text)
        except ValueError:
            at = datetime.fromtimestamp(message.timestamp / 1000, UTC)
        letter = DeadLetter(
            id=f"{tp.partition}:{message.offset}",
            topic=headers.get(H_ORIGINAL_TOPIC, self.topic),
            key=key,
            value=bytes(message.value or b""),
            headers=headers,
            stage=headers.get(H_STAGE, ""),
            error_class=headers.get(H_ERROR_CLASS, ""),
            reason=headers.get(H_ERROR_MESSAGE, ""),
            attempts=_int(headers.get(H_ATTEMPTS)),
            partition=_int(headers.get(H_ORIGINAL_PARTITION)),
            offset=_int(headers.get(H_ORIGINAL_OFFSET)),
            at=at,
        )
        self.letters.append((tp, message.offset, letter))

    def unresolved(self) -> list[DeadLetter]:
        return [d for _tp, _off, d in self.letters if d.id not in self.resolved]

    def commit_resolved(self, replayed: set[str]) -> None:
        """Commit the replay group past each partition's prefix of replayed letters and markers."""
        done = self.resolved | replayed
        by_tp: dict[TopicPartition, dict[int, bool]] = {}
        for tp, offset, letter in self.letters:
            by_tp.setdefault(tp, {})[offset] = letter.id in done
        for tp, offsets in self.markers.items():
            for offset in offsets:
                by_tp.setdefault(tp, {})[offset] = True
        commits: dict[TopicPartition, OffsetAndMetadata] = {}
        for tp, resolved_at in by_tp.items():
            position = self.start.get(tp, 0)
            while resolved_at.get(position, False):
                position += 1
            if position > self.start.get(tp, 0):
                commits[tp] = OffsetAndMetadata(position, "", -1)
        if commits:
            try:
                self.consumer.commit(commits)
            except KafkaError as exc:
                # The markers already keep replayed letters out of the listing; only the scan start is stale.
                logger.warning("replay progress not committed", extra={"dlq": self.dlq, "error": repr(exc)})

    def close(self) -> None:
        self.consumer.close(autocommit=False)


def _record(tp: TopicPartition, message: Any) -> Record:
    return Record(
        topic=tp.topic,
        key=(message.key or b"").decode("utf-8", "replace"),
        value=bytes(message.value or b""),
        headers={n: (v or b"").decode("utf-8", "replace") for n, v in message.headers or []},
        partition=tp.partition,
        offset=message.offset,
    )


_GROUP_ACTIVE = (UnknownMemberIdError, RebalanceInProgressError, IllegalGenerationError)  # a live group's answers


def _active(group: str, error: object) -> str:
    name = getattr(error, "__name__", type(error).__name__)
    return (
        f"consumer group {group!r} has active members (the broker answered {name}): stop the stage that "
        "consumes with it (every replica), wait for its session timeout, then reset again"
    )


def _exact_ends(consumer: KafkaConsumer, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
    """End offsets (the offset after the last record) of ``tps``.

    ListOffsets is exact on Kafka; tansu 0.6 answers it with the base offset of the last batch + 1,
    so each non-empty partition's last batch is also fetched and the larger of the two numbers and the
    fetch's high watermark wins. ``consumer`` must be fresh (a high watermark it saw before would be
    taken for the end); it is left assigned to ``tps`` and paused.
    """
    if not tps:
        return {}
    listed: dict[TopicPartition, int] = dict(consumer.end_offsets(list(tps)))
    consumer.assign(list(tps))
    nonempty = [tp for tp in tps if listed[tp] > 0]
    for tp in nonempty:
        consumer.seek(tp, listed[tp] - 1)
    deadline = time.monotonic() + END_FETCH_TIMEOUT_S
    ends = dict(listed)
    waiting = set(nonempty)
    while waiting and time.monotonic() < deadline:
        consumer.poll(timeout_ms=SCAN_POLL_MS, max_records=1)
        for tp in list(waiting):
            high = consumer.highwater(tp)
            if high is not None:
                ends[tp] = max(ends[tp], high)
                waiting.discard(tp)
                consumer.pause(tp)
    if waiting:
        logger.warning(
            "end offsets from ListOffsets only (no fetch answered)",
            extra={"partitions": sorted(f"{tp.topic}:{tp.partition}" for tp in waiting)},
        )
    return ends


def _too_large(error: BaseException) -> bool:
    """The broker (or the producer, before sending) refused the record for its size."""
    return isinstance(error, MessageSizeTooLargeError)


def _int(text: str | None) -> int:
    try:
        return int(text or 0)
    except ValueError:
        return 0


class _ForgetRevoked(ConsumerRebalanceListener):  # type: ignore[misc]  # untyped library base class
    def __init__(self, owner: KafkaGroupConsumer) -> None:
        self.owner = owner

    def on_partitions_revoked(self, revoked: Sequence[TopicPartition]) -> None:
        self.owner._forget(revoked, why="revoked")

    def on_partitions_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        logger.info(
            "partitions assigned",
            extra={
                "group": self.owner.group,
                "topic": self.owner.topic,
                "partitions": sorted(tp.partition for tp in assigned),
            },
        )

    def on_partitions_lost(self, lost: Sequence[TopicPartition]) -> None:
        self.owner._forget(lost, why="lost")


class KafkaGroupConsumer:
    """A member of consumer group ``group`` on ``topic`` (``stream.bus.Consumer``).

    Not thread-safe: one worker thread polls and commits. ``poll`` starts from the group's committed
    offsets (the earliest offset for a new group).
    """

    def __init__(self, config: KafkaConfig, topic: str, group: str) -> None:
        self.topic = topic
        self.group = group
        self.bootstrap = list(config.bootstrap)
        self._lock = threading.Lock()  # the rebalance listener runs on kafka-python's IO loop
        self._interrupted = threading.Event()
        self._uncommitted: dict[TopicPartition, int] = {}  # next offset to commit per partition
        self._committed: dict[TopicPartition, int] = {}  # the group's committed offsets we know (for lag)
        session_ms = config.session_timeout_ms
        try:
            self._consumer = KafkaConsumer(
                bootstrap_servers=self.bootstrap,
                client_id=f"{config.client_id}-{group}",
                group_id=group,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                allow_auto_create_topics=False,
                max_poll_interval_ms=config.max_poll_interval_ms,
                session_timeout_ms=session_ms,
                heartbeat_interval_ms=max(100, session_ms // 3),  # Kafka's advice: a third of the session
                fetch_min_bytes=config.fetch_min_bytes,
                fetch_max_wait_ms=config.fetch_max_wait_ms,
                max_partition_fetch_bytes=config.max_partition_fetch_bytes,
                **kafka_security_options(config),
            )
            self._consumer.subscribe([topic], listener=_ForgetRevoked(self))
        except KafkaError as exc:
            raise BusError(f"kafka {self.bootstrap}: cannot join group {group!r} on {topic!r}: {exc!r}") from exc
        self._closed = False
        self.refused_commits = 0  # commits the group refused because it had rebalanced meanwhile

    def _forget(self, partitions: Sequence[TopicPartition], *, why: str) -> None:
        with self._lock:
            dropped = {tp.partition: self._uncommitted.pop(tp) for tp in partitions if tp in self._uncommitted}
            for tp in partitions:
                self._committed.pop(tp, None)
        if dropped:
            logger.info(
                "uncommitted records of revoked partitions will be redelivered to the new owner",
                extra={"group": self.group, "topic": self.topic, "why": why, "next_offsets": dropped},
            )

    def poll(self, max_records: int, timeout_s: float) -> list[Record]:
        if self._closed:
            raise BusError(f"consumer of group {self.group!r} on {self.topic!r} is closed")
        try:
            batches = self._consumer.poll(timeout_ms=int(timeout_s * 1000), max_records=max_records)
        except KafkaError as exc:
            raise BusError(f"kafka {self.bootstrap}: poll of {self.topic!r} (group {self.group!r}): {exc!r}") from exc
        records: list[Record] = []
        with self._lock:
            for tp, messages in batches.items():
                for message in messages:
                    records.append(
                        Record(
                            topic=tp.topic,
                            key=(message.key or b"").decode("utf-8", "replace"),
                            value=bytes(message.value or b""),
                            headers={n: (v or b"").decode("utf-8", "replace") for n, v in message.headers or []},
                            partition=tp.partition,
                            offset=message.offset,
                        )
                    )
                    self._uncommitted[tp] = message.offset + 1
        return records

    def commit(self) -> None:
        """Commit the offsets after every record returned so far by ``poll`` on partitions still held.

        A commit the group refuses because it rebalanced meanwhile is logged, not raised: those records
        go to the partition's new owner (at-least-once).

        Raises:
            BusError: the coordinator could not be reached.
            UnavailableError: :meth:`interrupt` was called and the coordinator did not answer within a slice.
        """
        with self._lock:
            offsets = {tp: OffsetAndMetadata(offset, "", -1) for tp, offset in self._uncommitted.items()}
        if not offsets:
            return
        try:
            call_interruptibly(
                lambda: self._consumer.commit(offsets),
                self._interrupted,
                what=f"kafka {self.bootstrap}: commit of group {self.group!r} on {self.topic!r}",
            )
        except CommitFailedError as exc:
            self.refused_commits += 1
            logger.warning(
                "commit refused after a rebalance; the records will be redelivered",
                extra={"group": self.group, "topic": self.topic, "error": str(exc)},
            )
            return
        except KafkaError as exc:
            raise BusError(
                f"kafka {self.bootstrap}: commit of group {self.group!r} on {self.topic!r} failed: {exc!r}"
            ) from exc
        with self._lock:
            for tp, committed in offsets.items():
                if self._uncommitted.get(tp) == committed.offset:
                    del self._uncommitted[tp]
                self._committed[tp] = committed.offset

    def lag(self) -> dict[int, int]:
        """Records after the group's committed offset, per partition this member holds (end - committed).

        Steady state costs no request: the end is the high watermark of the last fetch response and the
        committed offset is the one this member last committed. Partitions not fetched or committed yet
        since their assignment are asked for (ListOffsets, OffsetFetch).
        """
        assigned = sorted(self._consumer.assignment(), key=lambda tp: tp.partition)
        if not assigned:
            return {}
        try:
            ends: dict[TopicPartition, int] = {}
            for tp in assigned:
                high = self._consumer.highwater(tp)
                if high is not None:
                    ends[tp] = high
            unknown = [tp for tp in assigned if tp not in ends]
            if unknown:
                # tansu 0.6 under-reports ListOffsets (last batch base offset + 1); exact on Kafka
                ends.update(self._consumer.end_offsets(unknown))
            with self._lock:
                starts = {tp: self._committed[tp] for tp in assigned if tp in self._committed}
            for tp in assigned:
                if tp not in starts:
                    committed = self._consumer.committed(tp)
                    if committed is None:
                        committed = self._consumer.beginning_offsets([tp]).get(tp, 0)
                    starts[tp] = committed
                    with self._lock:
                        self._committed.setdefault(tp, committed)
        except KafkaError as exc:
            raise BusError(f"kafka {self.bootstrap}: lag of group {self.group!r} on {self.topic!r}: {exc!r}") from exc
        return {tp.partition: max(0, (ends.get(tp) or 0) - starts[tp]) for tp in assigned}

    def assignment(self) -> list[int]:
        """Partitions of ``topic`` this member holds now."""
        return sorted(tp.partition for tp in self._consumer.assignment())

    def interrupt(self) -> None:
        """The process is stopping (``stream.worker.Interruptible``): a commit the coordinator does not answer
        (kafka-python waits 30 s) raises ``UnavailableError`` after a slice; its records go to the next member."""
        self._interrupted.set()

    def close(self) -> None:
        """Leave the group without committing (uncommitted records go to the next member). A coordinator that
        does not answer is waited for ``CONSUMER_CLOSE_TIMEOUT_MS``, not kafka-python's request timeout (30 s):
        the group drops the member after its session timeout anyway."""
        if self._closed:
            return
        self._closed = True
        self._consumer.close(autocommit=False, timeout_ms=CONSUMER_CLOSE_TIMEOUT_MS)
