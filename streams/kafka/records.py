"""What the worker's services see of Kafka: topic partitions and consumed records, as
plain values independent of the client library."""

from typing import NamedTuple

from confluent_kafka import Message


class TopicPartition(NamedTuple):
    """One partition of one topic (hashable, ordered by topic then partition)."""

    topic: str
    partition: int


class Record(NamedTuple):
    """One consumed message."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    #: Milliseconds since the epoch (the producer's or the broker's time).
    timestamp: int
    headers: list[tuple[str, bytes]]


def record(message: Message) -> Record:
    """The `Record` of a confluent-kafka message without error."""
    return Record(
        message.topic() or "",
        message.partition() or 0,
        message.offset() or 0,
        message.key(),
        message.value(),
        message.timestamp()[1],
        message.headers() or [],  # type: ignore[arg-type]
    )
