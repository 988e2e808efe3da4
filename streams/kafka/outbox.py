"""The outputs of one input batch on their way to Kafka: predictions, reports, dead
letters, each counted and logged where that is due."""

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from online_models import Rejection
from schemas import DeadLetter, MetricsReport
from streams.kafka.clients import murmur2
from streams.kafka.delivered import HEADER, Delivered
from streams.kafka.records import TopicPartition
from streams.runtime.metrics import WorkerMetrics
from streams.settings import Settings

log = logging.getLogger(__name__)

#: The partition argument that lets the producer's partitioner choose.
UNASSIGNED = -1
#: How often a producer with messages in flight is asked for their acknowledgements.
POLL_SECONDS = 0.002
#: How long a producer whose queue is full is given before the next try.
FULL_QUEUE_SECONDS = 0.005


class Acknowledgements:
    """The acknowledgements of messages sent to one topic: `future` resolves to the
    offset after the last of them in each partition once every one is written, or fails
    with the first error. The producer's thread counts them (`__call__` is the delivery
    callback); `seal` says how many there are."""

    __slots__ = ("ends", "error", "future", "lock", "loop", "received", "sent")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.future: asyncio.Future[dict[int, int]] = loop.create_future()
        self.lock = threading.Lock()
        self.received = 0
        self.sent: int | None = None
        self.ends: dict[int, int] = {}
        self.error: KafkaError | None = None

    def __call__(self, err: KafkaError | None, message: Message) -> None:
        with self.lock:
            self.received += 1
            if err is not None:
                self.error = self.error or err
            else:
                partition, end = message.partition() or 0, (message.offset() or 0) + 1
                if end > self.ends.get(partition, 0):
                    self.ends[partition] = end
            done = self.received == self.sent
        if done:
            self.loop.call_soon_threadsafe(self._settle)

    def seal(self, sent: int) -> None:
        with self.lock:
            self.sent = sent
            done = self.received == sent
        if done:
            self._settle()

    def _settle(self) -> None:
        if self.future.done():
            return
        if self.error is not None:
            self.future.set_exception(KafkaException(self.error))
        else:
            self.future.set_result(self.ends)


class LoopProducer:
    """A librdkafka producer whose acknowledgements are served on the event loop: a task
    polls it every POLL_SECONDS while messages are in flight, and sleeps otherwise. No
    thread of its own contends with the loop for the interpreter at every delivery."""

    def __init__(self, producer: Producer) -> None:
        self.producer = producer
        self.wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.ensure_future(self._serve())

    async def _serve(self) -> None:
        while True:
            self.producer.poll(0)
            if len(self.producer):
                await asyncio.sleep(POLL_SECONDS)
            else:
                self.wake.clear()
                await self.wake.wait()

    async def produce(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None,
        partition: int,
        on_delivery: Any,
        headers: list[tuple[str, str | bytes | None]] | None = None,
    ) -> None:
        """Hand one message to the producer, waiting while its queue is full (a broker
        away)."""
        while True:
            try:
                self.producer.produce(
                    topic, value, key, partition, on_delivery=on_delivery, headers=headers
                )
                break
            except BufferError:
                self.wake.set()
                await asyncio.sleep(FULL_QUEUE_SECONDS)
        if not self.wake.is_set():
            self.wake.set()

    async def send(
        self, topic: str, value: bytes | None = None, key: bytes | None = None
    ) -> "asyncio.Future[dict[int, int]]":
        """Send one message; the future resolves once it is written (`Sender`)."""
        acks = Acknowledgements(asyncio.get_running_loop())
        await self.produce(topic, value, key, UNASSIGNED, acks)
        acks.seal(1)
        return acks.future

    async def send_all(
        self, topic: str, partition: int, records: Iterable[tuple[bytes, bytes]]
    ) -> int:
        """Send (key, value) `records` to one partition and wait until all are written;
        the offset after the last."""
        acks = Acknowledgements(asyncio.get_running_loop())
        sent = 0
        for key, value in records:
            await self.produce(topic, value, key, partition, acks)
            sent += 1
        acks.seal(sent)
        return (await acks.future).get(partition, 0)

    async def stop(self, timeout: float) -> int:
        """Wait up to `timeout` seconds for the messages in flight, then stop serving;
        how many are left unwritten."""
        deadline = time.monotonic() + timeout
        while len(self.producer) and time.monotonic() < deadline:
            self.producer.poll(0)
            await asyncio.sleep(POLL_SECONDS)
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        return len(self.producer)


class Outbox:
    """The outputs of one input batch, handed to the producer as they come, with one
    acknowledgement per output topic for the whole batch.

    Keys go to the partition Kafka's default partitioner chooses (murmur2 of the key
    modulo the partition count, by librdkafka), as Java clients and kafka-python put
    them; an output without key goes to its input's partition. Each output names its
    source message in a header (`streams.kafka.delivered`); outputs that `delivered`
    lists were sent by a crashed owner already and are skipped.
    """

    def __init__(
        self,
        producer: LoopProducer,
        partitions: dict[str, int],
        delivered: dict[TopicPartition, Delivered] | None = None,
    ) -> None:
        self.producer = producer
        self.partitions = partitions
        self.delivered = delivered
        self.acks: dict[str, tuple[Acknowledgements, list[int]]] = {}
        self.prefixes: dict[TopicPartition, str] = {}

    def partition(self, topic: str, key: bytes | None, fallback: int) -> int:
        """Where an output goes (the producer's partitioner decides the same for keys)."""
        count = self.partitions[topic]
        if count == 1:
            return 0
        if key is None:
            return fallback % count
        return (murmur2(key) & 0x7FFFFFFF) % count

    async def add(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        source: TopicPartition,
        offset: int,
        fallback: int = 0,
    ) -> None:
        """Send one output of the message at `offset` of `source`."""
        if self.delivered:
            delivered = self.delivered.get(source)
            where = (topic, self.partition(topic, key, fallback))
            if delivered and delivered.take(where, offset):
                return
        prefix = self.prefixes.get(source)
        if prefix is None:
            prefix = self.prefixes[source] = f"{source.topic}:{source.partition}:"
        headers: list[tuple[str, str | bytes | None]] = [(HEADER, f"{prefix}{offset}".encode())]
        entry = self.acks.get(topic)
        if entry is None:
            entry = self.acks[topic] = (Acknowledgements(asyncio.get_running_loop()), [0])
        acks, count = entry
        partition = UNASSIGNED if key is not None else fallback % self.partitions[topic]
        await self.producer.produce(topic, value, key, partition, acks, headers)
        count[0] += 1

    def flush(self) -> list[tuple[str, "asyncio.Future[dict[int, int]]"]]:
        """Every output topic of this outbox and the future of its acknowledgement: the
        offset after this batch's last output in each partition written to."""
        found = []
        for topic, (acks, count) in self.acks.items():
            acks.seal(count[0])
            found.append((topic, acks.future))
        self.producer.producer.poll(0)
        return found


def reject(message: Any, rejection: Rejection, metrics: WorkerMetrics, max_bytes: int) -> bytes:
    """Count and log a rejected message; return its dead letter, encoded.

    `message` is a `Record` or a Faust Message: anything with `topic`, `partition`,
    `offset` and `value`.
    """
    letter = DeadLetter.for_message(
        value=message.value,
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        error_type=rejection.error_type,
        reason=rejection.reason,
        ts=datetime.now(UTC),
        max_payload_bytes=max_bytes,
    )
    metrics.dead_lettered.labels(message.topic, rejection.error_type.value).inc()
    log.warning(
        "dead-lettered %s[%d]@%d: %s",
        message.topic,
        message.partition,
        message.offset,
        rejection.reason,
    )
    return letter.model_dump_json().encode()


async def dead_letter(
    outbox: Outbox,
    message: Any,
    rejection: Rejection,
    metrics: WorkerMetrics,
    settings: Settings,
) -> None:
    """Count, log and queue the dead letter of a rejected message (keyed as it was)."""
    letter = reject(message, rejection, metrics, settings.max_event_bytes)
    source = TopicPartition(message.topic, message.partition)
    await outbox.add(
        settings.dead_letters_topic,
        message.key,
        letter,
        source,
        message.offset,
        fallback=message.partition,
    )


async def publish_report(
    outbox: Outbox,
    report: MetricsReport,
    partition: int,
    metrics: WorkerMetrics,
    topic: str,
    source: TopicPartition,
    offset: int,
) -> None:
    """Queue a metrics report of a partition's replica, made due by the message at
    `offset` of `source`, and mirror it in the gauges."""
    report = report.model_copy(update={"partition": partition})
    for name, value in report.metrics.items():
        if value is not None:
            metrics.model_metric.labels(report.model, str(partition), report.segment, name).set(
                value
            )
    encoded = report.model_dump_json().encode()
    await outbox.add(topic, report.model.encode(), encoded, source, offset)
