"""The outbox: outputs go to the partitions Kafka's default partitioner would choose."""

import pytest

from streams.kafka.outbox import Outbox

# Java's org.apache.kafka.common.utils.Utils.murmur2 on these keys (Kafka's UtilsTest):
# the default partitioner of every Kafka client picks (murmur2 & 0x7fffffff) % partitions.
JAVA_MURMUR2 = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


@pytest.mark.parametrize(("key", "java_hash"), JAVA_MURMUR2.items())
def test_keyed_outputs_go_where_kafkas_default_partitioner_puts_them(
    key: bytes, java_hash: int
) -> None:
    outbox = Outbox(producer=None, partitions={"predictions": 7, "single": 1})  # type: ignore[arg-type]
    assert outbox.partition("predictions", key, 0) == (java_hash & 0x7FFFFFFF) % 7
    assert outbox.partition("single", key, 0) == 0


def test_keyless_outputs_follow_their_source_partition() -> None:
    outbox = Outbox(producer=None, partitions={"dead-letters": 4})  # type: ignore[arg-type]
    assert [outbox.partition("dead-letters", None, p) for p in range(6)] == [0, 1, 2, 3, 0, 1]
