"""The outputs of one input batch on their way to Kafka: predictions, reports, dead
letters, each counted and logged where that is due."""

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.partitioner import murmur2

from online_models import Rejection
from schemas import DeadLetter, MetricsReport
from streams.kafka.delivered import HEADER, Delivered, Where
from streams.runtime.metrics import WorkerMetrics
from streams.settings import Settings

log = logging.getLogger(__name__)


class Outbox:
    """The outputs of one input batch, appended to one producer batch per (topic,
    partition) and sent with `send_batch`: no per-message future, partitioner call or
    debug log line, which cost more than the rest of aiokafka's send path together.

    Keys go to the partition Kafka's default partitioner would choose (murmur2 of the key
    modulo the partition count), so consumers see the usual key -> partition mapping.
    Each output names its source message in a header (`streams.kafka.delivered`); outputs that
    `delivered` lists were sent by a crashed owner already and are skipped.
    """

    def __init__(
        self,
        producer: AIOKafkaProducer,
        partitions: dict[str, int],
        delivered: dict[TopicPartition, Delivered] | None = None,
    ) -> None:
        self.producer = producer
        self.partitions = partitions
        self.delivered = delivered
        self.builders: dict[Where, Any] = {}
        #: Each producer batch sent: where to, how many records, its acknowledgement.
        self.deliveries: list[tuple[Where, int, asyncio.Future[Any]]] = []
        self.prefixes: dict[TopicPartition, str] = {}

    def partition(self, topic: str, key: bytes | None, fallback: int) -> int:
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
        """Queue one output of the message at `offset` of `source`; a full producer batch
        is sent at once."""
        where = (topic, self.partition(topic, key, fallback))
        if self.delivered:
            delivered = self.delivered.get(source)
            if delivered and delivered.take(where, offset):
                return
        prefix = self.prefixes.get(source)
        if prefix is None:
            prefix = self.prefixes[source] = f"{source.topic}:{source.partition}:"
        headers = [(HEADER, f"{prefix}{offset}".encode())]
        builder = self.builders.get(where)
        if builder is None:
            builder = self.builders[where] = self.producer.create_batch()
        if builder.append(timestamp=None, key=key, value=value, headers=headers) is None:  # full
            await self._send(where, builder)
            builder = self.builders[where] = self.producer.create_batch()
            # An empty batch takes any size.
            builder.append(timestamp=None, key=key, value=value, headers=headers)

    async def _send(self, where: Where, builder: Any) -> None:
        topic, partition = where
        future = await self.producer.send_batch(builder, topic, partition=partition)
        self.deliveries.append((where, builder.record_count(), future))

    async def flush(self) -> list[tuple[Where, int, asyncio.Future[Any]]]:
        """Send what is queued; return the futures of every delivery of this outbox."""
        for where, builder in self.builders.items():
            await self._send(where, builder)
        self.builders.clear()
        return self.deliveries


def reject(message: Any, rejection: Rejection, metrics: WorkerMetrics, max_bytes: int) -> bytes:
    """Count and log a rejected message; return its dead letter, encoded.

    `message` is an aiokafka ConsumerRecord or a Faust Message: anything with `topic`,
    `partition`, `offset` and `value`.
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
