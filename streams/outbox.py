"""The outputs of one input batch on their way to Kafka: predictions, reports, dead
letters, each counted and logged where that is due."""

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import murmur2

from online_models import Rejection
from schemas import DeadLetter, MetricsReport
from streams.metrics import WorkerMetrics
from streams.settings import Settings

log = logging.getLogger(__name__)


class Outbox:
    """The outputs of one input batch, appended to one producer batch per (topic,
    partition) and sent with `send_batch`: no per-message future, partitioner call or
    debug log line, which cost more than the rest of aiokafka's send path together.

    Keys go to the partition Kafka's default partitioner would choose (murmur2 of the key
    modulo the partition count), so consumers see the usual key -> partition mapping.
    """

    def __init__(self, producer: AIOKafkaProducer, partitions: dict[str, int]) -> None:
        self.producer = producer
        self.partitions = partitions
        self.builders: dict[tuple[str, int], Any] = {}
        self.deliveries: list[asyncio.Future[Any]] = []

    def partition(self, topic: str, key: bytes | None, fallback: int) -> int:
        count = self.partitions[topic]
        if count == 1:
            return 0
        if key is None:
            return fallback % count
        return (murmur2(key) & 0x7FFFFFFF) % count

    async def add(self, topic: str, key: bytes | None, value: bytes, fallback: int = 0) -> None:
        """Queue one message; a full producer batch is sent at once."""
        where = (topic, self.partition(topic, key, fallback))
        builder = self.builders.get(where)
        if builder is None:
            builder = self.builders[where] = self.producer.create_batch()
        if builder.append(timestamp=None, key=key, value=value) is None:  # full
            await self._send(where, builder)
            builder = self.builders[where] = self.producer.create_batch()
            builder.append(timestamp=None, key=key, value=value)  # an empty batch takes any size

    async def _send(self, where: tuple[str, int], builder: Any) -> None:
        topic, partition = where
        self.deliveries.append(await self.producer.send_batch(builder, topic, partition=partition))

    async def flush(self) -> list[asyncio.Future[Any]]:
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
        message.topic, message.partition, message.offset, rejection.reason,
    )  # fmt: skip
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
    await outbox.add(settings.dead_letters_topic, message.key, letter, fallback=message.partition)


async def publish_report(
    outbox: Outbox, report: MetricsReport, partition: int, metrics: WorkerMetrics, topic: str
) -> None:
    """Queue a metrics report of a partition's replica and mirror it in the gauges."""
    report = report.model_copy(update={"partition": partition})
    for name, value in report.metrics.items():
        if value is not None:
            metrics.model_metric.labels(report.model, str(partition), report.segment, name).set(
                value
            )
    await outbox.add(topic, report.model.encode(), report.model_dump_json().encode())
