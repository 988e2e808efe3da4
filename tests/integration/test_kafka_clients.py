"""The client layer against the real broker: keys land where kafka-python (and the Java
client) put them; a follower reads a topic from its beginning, from its end or from given
offsets without blocking the event loop, and stops at once; over SASL_SSL too."""

import asyncio
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import Message
from confluent_kafka.admin import NewTopic
from kafka.partitioner.default import murmur2

from streams.kafka.clients import (
    FOLLOW_POLL_SECONDS,
    AsyncProducer,
    Delivered,
    Follower,
    admin,
    producer,
)
from streams.settings import Settings
from tests.integration.test_security import SecureCluster, secure_cluster  # noqa: F401

PARTITIONS = 12


def create_topic(settings: Settings, partitions: int = PARTITIONS) -> str:
    name = f"t-{uuid.uuid4().hex[:10]}-clients"
    client = admin(settings)  # (held: a futures' client that is collected cancels them)
    client.create_topics([NewTopic(name, partitions, 1)])[name].result(timeout=30)
    deadline = time.monotonic() + 30
    while len(client.list_topics(name, timeout=10).topics[name].partitions) < partitions:
        assert time.monotonic() < deadline, f"{name} not in the cluster's metadata after 30 s"
        time.sleep(0.05)  # (the broker acknowledges a creation before it describes it)
    return name


@pytest.fixture
def settings(bootstrap: str) -> Settings:
    return Settings(broker=bootstrap)


@pytest.fixture
def topic(settings: Settings) -> Iterator[str]:
    name = create_topic(settings)
    yield name
    client = admin(settings)
    client.delete_topics([name])[name].result(timeout=30)


def produce(settings: Settings, topic: str, keys: list[str]) -> dict[str, int]:
    """Write one message per key through `producer()`; the partition each landed on."""
    landed: dict[str, int] = {}

    def delivered(err: object, message: Message) -> None:
        key, partition = message.key(), message.partition()
        assert err is None and key is not None and partition is not None, err
        landed[key.decode()] = partition

    client = producer(settings, client_id="test-clients")
    for key in keys:
        client.produce(topic, key.encode(), key.encode(), on_delivery=delivered)
    assert client.flush(30) == 0
    return landed


def test_keys_land_on_the_partitions_kafka_python_chooses(settings: Settings, topic: str) -> None:
    keys = [f"user-{i}" for i in range(600)] + ["", "é-ünïcode", "a" * 300]
    landed = produce(settings, topic, keys)
    expected = {k: (murmur2(k.encode()) & 0x7FFFFFFF) % PARTITIONS for k in keys}
    assert landed == expected
    assert len(set(landed.values())) == PARTITIONS  # (a spread that shows the hash)


def test_async_sends_resolve_on_acknowledgement_where_the_key_landed(
    settings: Settings, topic: str
) -> None:
    async def scenario() -> list[Delivered]:
        sender = await asyncio.to_thread(AsyncProducer, settings, client_id="test-clients")
        sent = [await sender.send(topic, b"v", f"key-{i}".encode()) for i in range(50)]
        written = await asyncio.gather(*sent)
        assert await sender.stop() == 0
        return written

    written = asyncio.run(scenario())
    expected = [(murmur2(f"key-{i}".encode()) & 0x7FFFFFFF) % PARTITIONS for i in range(50)]
    assert [w.partition for w in written] == expected
    assert {w.topic for w in written} == {topic}
    by_partition: dict[int, list[int]] = {}
    for w in written:
        by_partition.setdefault(w.partition, []).append(w.offset)
    assert all(offsets == list(range(len(offsets))) for offsets in by_partition.values())


async def follow(follower: Follower, count: int, timeout: float = 30.0) -> list[Message]:
    """What `follower` yields until `count` messages (fails after `timeout` s)."""
    got: list[Message] = []
    async with asyncio.timeout(timeout):
        async for batch in follower.batches():
            got += batch
            if len(got) >= count:
                break
    return got


async def lag_while(work: "asyncio.Future[Any]") -> float:
    """The longest the event loop was held while `work` ran."""
    worst, last = 0.0, time.monotonic()
    while not work.done():
        await asyncio.sleep(0.005)
        now = time.monotonic()
        worst, last = max(worst, now - last), now
    return worst


def test_a_follower_reads_from_the_beginning_to_the_end_then_what_arrives(
    settings: Settings, topic: str
) -> None:
    before = [f"before-{i}" for i in range(300)]
    produce(settings, topic, before)

    async def scenario() -> None:
        follower = Follower(settings, [topic, "no-such-topic"], start="beginning", client_id="t")
        assert await follower.start() == [(topic, p) for p in range(PARTITIONS)]
        held = []
        async for batch in follower.until_end():
            held += [m.key().decode() for m in batch]  # type: ignore[union-attr]
        assert sorted(held) == sorted(before)  # each once, and nothing more
        after = [f"after-{i}" for i in range(50)]
        reading = asyncio.ensure_future(follow(follower, len(after)))
        await asyncio.sleep(0.5)  # the follower waits on an idle topic: the loop does not
        await asyncio.to_thread(produce, settings, topic, after)
        lag = await lag_while(reading)
        assert sorted(m.key().decode() for m in reading.result()) == sorted(after)  # type: ignore[union-attr]
        assert lag < 0.1, f"the event loop was held {lag:.3f} s"
        stopping = time.monotonic()
        await follower.stop()
        assert time.monotonic() - stopping < FOLLOW_POLL_SECONDS + 0.5

    asyncio.run(scenario())


def test_a_follower_from_the_end_sees_only_what_arrives_and_offsets_are_honoured(
    settings: Settings, topic: str
) -> None:
    landed = produce(settings, topic, [f"old-{i}" for i in range(100)])

    async def scenario() -> None:
        async with Follower(settings, [topic], start="end", client_id="t") as follower:
            await asyncio.to_thread(produce, settings, topic, ["new-1", "new-2"])  # at once
            got = [m async for batch in follower.until_end() for m in batch]
            assert sorted(m.key() for m in got) == [b"new-1", b"new-2"]  # type: ignore[type-var]

        # From offset 1 of one partition (the beginning of the others): all but one.
        partition = landed["old-0"]
        async with Follower(
            settings, [topic], start={(topic, partition): 1}, client_id="t"
        ) as follower:
            read = [m async for batch in follower.until_end() for m in batch]
        skipped = [m for m in read if m.partition() == partition and m.offset() == 0]
        assert len(read) == 100 + 2 - 1 and not skipped

    asyncio.run(scenario())


def test_a_follower_stops_promptly_while_it_waits(settings: Settings, topic: str) -> None:
    async def scenario() -> None:
        follower = Follower(settings, [topic], start="end", client_id="t")
        await follower.start()
        reading = asyncio.ensure_future(follow(follower, 1))
        await asyncio.sleep(0.3)
        stopping = time.monotonic()
        await follower.stop()
        assert await reading == []  # the iteration ended with the stop
        assert time.monotonic() - stopping < FOLLOW_POLL_SECONDS + 0.5

    asyncio.run(scenario())


def test_the_clients_connect_over_sasl_ssl(secure_cluster: SecureCluster) -> None:  # noqa: F811
    settings = Settings(broker=secure_cluster.bootstrap, **secure_cluster.client_settings())  # type: ignore[arg-type]
    topic = create_topic(settings, partitions=3)
    produce(settings, topic, ["k1", "k2", "k3"])

    async def read() -> list[bytes]:
        async with Follower(settings, [topic], start="beginning", client_id="t") as follower:
            values = [m.value() async for batch in follower.until_end() for m in batch]
        return sorted(v for v in values if v is not None)

    assert asyncio.run(read()) == [b"k1", b"k2", b"k3"]
