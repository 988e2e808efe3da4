"""Reading given partitions from given offsets to their end, without group (a
restore's checkpoints, the outputs a crashed owner delivered), through the one
group-less reader, `Follower`."""

import asyncio
from collections.abc import Callable, Mapping

from confluent_kafka import OFFSET_BEGINNING

from streams.kafka.clients import Follower
from streams.kafka.records import Record, TopicPartition, record
from streams.settings import Settings


async def read_to_end(
    settings: Settings,
    starts: Mapping[TopicPartition, int | None],
    *,
    client_id: str,
    read_committed: bool = False,
    timeout: float = 30.0,
    max_bytes: int = 8 << 20,
    keep: Callable[[Record], bool] | None = None,
) -> list[Record]:
    """Every record of each partition of `starts` from its offset (None: the beginning)
    up to the partition's end, in offset order per partition; only those `keep` accepts,
    chosen as they arrive (memory holds what is kept, not the partition).

    Raises TimeoutError after `timeout` seconds, KafkaException on a broker error."""
    if not starts:
        return []
    follower = Follower(
        settings,
        sorted({tp.topic for tp in starts}),
        client_id=client_id,
        start={
            (tp.topic, tp.partition): OFFSET_BEGINNING if offset is None else offset
            for tp, offset in starts.items()
        },
        partitions=[(tp.topic, tp.partition) for tp in starts],
        max_messages=1000,
        **{
            "isolation.level": "read_committed" if read_committed else "read_uncommitted",
            "max.partition.fetch.bytes": max_bytes,
        },
    )
    records: list[Record] = []
    async with asyncio.timeout(timeout):
        async with follower:
            async for batch in follower.until_end():
                read = map(record, batch)
                records.extend(read if keep is None else filter(keep, read))
    return records
