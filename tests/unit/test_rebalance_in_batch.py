"""A rebalance during a fetch never waits for the batch that fetched.

librdkafka runs the group's rebalance callbacks inside the consumer's `consume`/`poll`,
and a fetch returns only once its callback has; the handlers (revoke, lost) take the
batch lock so that no batch is half-handled while partitions change hands. Under
exactly_once a transaction takes every batch at hand: were those fetched with the batch
lock held, a rebalance in one of them would wait for itself and the worker would hang,
alive and silent (a zombie thawed, a learner handing its partition over).
"""

import asyncio
from typing import Any, Literal

from streams.kafka.records import Record, TopicPartition
from streams.runtime.metrics import WorkerMetrics
from streams.runtime.partitioned import PartitionedService
from streams.settings import Settings

TP = TopicPartition("events", 0)


class Service(PartitionedService):  # type: ignore[type-arg]
    def key(self, tp: TopicPartition) -> int:
        return tp.partition


class Consumer:
    """Fetches a batch, then, on the next fetch, runs the service's lost handler
    inside it as librdkafka does (the fetch returns once the handler has)."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.fetches = 0

    async def fetch(self, max_records: int, timeout: float) -> dict[Any, list[Record]]:
        self.fetches += 1
        if self.fetches == 1:
            return {TP: [Record(TP.topic, TP.partition, 0, b"k", b"{}", 0, [])]}
        if self.fetches == 2:
            await self.service._lost({TP})
        return {}

    async def group_metadata(self) -> object:
        return object()


class Producer:
    """A transactional producer that says what was asked of it."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return lambda *args: self.calls.append(name)


async def one_round(
    guarantee: Literal["at_least_once", "exactly_once"],
) -> tuple[list[Any], list[str]]:
    service = Service(Settings(processing_guarantee=guarantee), WorkerMetrics(), {})
    service.consumer = Consumer(service)  # type: ignore[assignment]
    producer = Producer()
    service.producer = producer  # type: ignore[assignment]
    handled: list[Any] = []

    async def process(records: Any) -> dict[TopicPartition, int]:
        handled.append(records)
        return {TP: 1}

    async def last_round() -> None:
        service._stopped.set()

    async def nothing() -> None:
        pass

    service._process = process  # type: ignore[method-assign]
    service.checkpoint_due = last_round  # type: ignore[method-assign]
    service._cancel_restores = nothing  # type: ignore[method-assign]
    await asyncio.wait_for(PartitionedService._consume(service), timeout=5)
    return handled, producer.calls


def test_a_partition_lost_during_a_fetch_of_an_exactly_once_batch_does_not_hang() -> None:
    handled, calls = asyncio.run(one_round("exactly_once"))
    assert handled == [{TP: [Record(TP.topic, TP.partition, 0, b"k", b"{}", 0, [])]}]
    assert calls == ["begin_transaction", "send_offsets_to_transaction", "commit_transaction"]


def test_at_least_once_handles_the_batch_it_fetched() -> None:
    handled, calls = asyncio.run(one_round("at_least_once"))
    assert len(handled) == 1 and not calls
