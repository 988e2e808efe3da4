"""Reading given partitions from given offsets to their end as it is now, without group
(a restore's checkpoints, the outputs a crashed owner delivered). Blocking: run it in a
thread."""

import time
from collections.abc import Iterator, Mapping

from confluent_kafka import OFFSET_BEGINNING, KafkaError, KafkaException
from confluent_kafka import TopicPartition as KafkaPartition

from streams.kafka import clients
from streams.kafka.records import Record, TopicPartition, record
from streams.settings import Settings

#: Records per consume call.
BATCH = 1000


def read_to_end(
    settings: Settings,
    starts: Mapping[TopicPartition, int | None],
    *,
    client_id: str,
    read_committed: bool = False,
    timeout: float = 30.0,
    max_bytes: int = 8 << 20,
) -> Iterator[Record]:
    """Every record of each partition of `starts` from its offset (None: the beginning)
    up to the partition's end when the read began, in offset order per partition.

    Raises TimeoutError after `timeout` seconds, KafkaException on a broker error."""
    if not starts:
        return
    consumer = clients.consumer(
        settings,
        group_id=f"{client_id}-reader",  # (librdkafka wants one; never joined)
        client_id=client_id,
        **{
            "enable.partition.eof": True,
            "isolation.level": "read_committed" if read_committed else "read_uncommitted",
            "fetch.wait.max.ms": 100,
            "max.partition.fetch.bytes": max_bytes,
        },
    )
    try:
        ends: dict[TopicPartition, int] = {}
        parts = []
        for tp, start in starts.items():
            low, high = consumer.get_watermark_offsets(
                KafkaPartition(tp.topic, tp.partition), timeout=timeout
            )
            begin = low if start is None else max(start, low)
            if begin < high:
                ends[tp] = high
                parts.append(KafkaPartition(tp.topic, tp.partition, begin or OFFSET_BEGINNING))
        consumer.assign(parts)
        deadline = time.monotonic() + timeout
        while ends:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{sorted(ends)} not read to their end in {timeout:.0f} s")
            for message in consumer.consume(BATCH, 0.5):
                err = message.error()
                tp = TopicPartition(message.topic() or "", message.partition() or 0)
                if err is not None:
                    if err.code() != KafkaError._PARTITION_EOF:
                        raise KafkaException(err)
                    if tp in ends and (message.offset() or 0) >= ends[tp]:
                        del ends[tp]  # (an end past transaction markers too)
                    continue
                if tp not in ends:
                    continue
                if (message.offset() or 0) < ends[tp]:
                    yield record(message)
                if (message.offset() or 0) >= ends[tp] - 1:
                    del ends[tp]
    finally:
        consumer.close()
