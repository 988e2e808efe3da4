"""Reading and writing model checkpoints on the compacted checkpoints topic.

The bytes (signature, compression, chunks) are `online_models.learning.checkpoint`'s; this module
only moves them to and from Kafka and counts what happened.
"""

import asyncio
import logging
import os
import secrets
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from confluent_kafka import KafkaException

from online_models.learning.checkpoint import Checkpoint, Choice, Replica, choose
from streams.kafka.outbox import LoopProducer
from streams.kafka.reader import read_to_end
from streams.kafka.records import TopicPartition
from streams.kafka.topics import check_topics
from streams.runtime.metrics import WorkerMetrics
from streams.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")

# While the checkpoints topic is unfit, how often a write asks the broker again.
RECHECK_SECONDS = 10.0


class CheckpointsRefused(Exception):
    """No checkpoint is written: the checkpoints topic is missing or not compacted (said
    once in the log); the worker goes on serving and writes again once it is fixed."""


def checkpoint_key(settings: Settings) -> bytes:
    """RIVERRUN_CHECKPOINT_KEY, else a random key created once in DATA_DIR."""
    if settings.checkpoint_key is not None:
        return settings.checkpoint_key.get_secret_value().encode()
    if not settings.uses_local_broker:
        raise ValueError(settings.worker_problems()[0])
    path = Path(settings.data_dir) / "checkpoint.key"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as file:
            file.write(secrets.token_hex(32))
        log.warning(
            "RIVERRUN_CHECKPOINT_KEY is not set: checkpoints are signed with a random key "
            "kept in %s; workers on other machines will refuse them. Set the same "
            "RIVERRUN_CHECKPOINT_KEY on every worker of the group.",
            path,
        )
    for _ in range(50):  # another worker sharing DATA_DIR may be writing it right now
        key = path.read_text().strip()
        if key:
            return key.encode()
        time.sleep(0.01)
    raise RuntimeError(f"{path} is empty: delete it or set RIVERRUN_CHECKPOINT_KEY")


async def read_chunks(
    settings: Settings, where: TopicPartition, prefixes: dict[bytes, str], client_id: str
) -> dict[str, list[bytes | None]]:
    """The values of every message of checkpoints partition `where` whose key starts with
    one of `prefixes`, by the prefix's name, in topic order (committed data only: never a
    checkpoint of an aborted transaction)."""
    found: dict[str, list[bytes | None]] = defaultdict(list)
    wanted = tuple(prefixes)
    for message in await read_to_end(
        settings,
        {where: None},
        client_id=client_id,
        read_committed=True,
        max_bytes=max(1 << 20, 2 * settings.checkpoint_chunk_bytes),
        # (The partition holds every replica's checkpoints, other groups' too: only
        # these replicas' chunks are kept while reading.)
        keep=lambda message: (message.key or b"").startswith(wanted),
    ):
        key = message.key or b""
        for prefix, name in prefixes.items():
            if key.startswith(prefix):
                found[name].append(message.value)
    return found


def count_refusals(metrics: WorkerMetrics, replica: Replica, choice: Choice[Any]) -> None:
    """Log and count every checkpoint `choose` refused for `replica`."""
    for refusal in choice.refusals:
        labels = (replica.model, str(replica.partition), refusal.reason.value)
        metrics.checkpoint_refused.labels(*labels).inc()
        log.error(
            "checkpoint refused for %s[%d] model %s: %s",
            replica.topic,
            replica.partition,
            replica.model,
            refusal,
        )


async def write_checkpoint(
    producer: LoopProducer,
    settings: Settings,
    metrics: WorkerMetrics,
    records: list[tuple[bytes, bytes]],
    *,
    name: str,
    partition: int,
    partitions: int,
    started: float,
    transactional: bool = False,
) -> int:
    """Send a checkpoint's chunk messages to the checkpoints topic (partition `partition`
    mod its `partitions`), wait for their acknowledgement and count it; return its size
    in bytes. A `transactional` producer (exactly_once) sends them as one transaction."""
    topic = settings.checkpoints_topic
    where = partition % partitions
    if transactional:
        transactions = producer.producer
        await asyncio.to_thread(transactions.begin_transaction)
        try:
            for key, value in records:
                await producer.produce(topic, value, key, where, None)
            await asyncio.to_thread(transactions.commit_transaction)
        except BaseException:
            await asyncio.to_thread(transactions.abort_transaction)
            raise
    else:
        await producer.send_all(topic, where, records)
    labels, size = (name, str(partition)), sum(len(v) for _, v in records)
    seconds = time.perf_counter() - started
    metrics.checkpoints.labels(*labels).inc()
    metrics.checkpoint_bytes.labels(*labels).set(size)
    metrics.checkpoint_duration.labels(name).observe(seconds)
    return size


class CheckpointStore:
    """Reads the checkpoints of a service's partitions from the checkpoints topic and
    writes new ones there, counting what happened."""

    def __init__(
        self, settings: Settings, producer: LoopProducer, metrics: WorkerMetrics, name: str
    ) -> None:
        self.settings = settings
        self.producer = producer
        self.metrics = metrics
        self.name = name
        self.key = checkpoint_key(settings)
        self.partitions = 1  # of the checkpoints topic, read at start
        self.unfit: str | None = None  # why the topic takes no checkpoint now
        self.checked_at = 0.0

    async def start(self) -> None:
        topic = self.settings.checkpoints_topic
        metadata = await asyncio.to_thread(self.producer.producer.list_topics, topic, 30.0)
        self.partitions = len(metadata.topics[topic].partitions) or 1

    async def read(
        self, partition: int, prefixes: dict[bytes, str]
    ) -> dict[str, list[bytes | None]]:
        """Every chunk message of input partition `partition`'s replicas whose key starts
        with one of `prefixes`, by the prefix's name, in topic order."""
        where = TopicPartition(self.settings.checkpoints_topic, partition % self.partitions)
        client_id = f"{self.settings.group_id}-{self.name}-checkpoints"
        return await read_chunks(self.settings, where, prefixes, client_id)

    async def choose(
        self, replica: Replica, values: list[bytes | None], load: Callable[[Checkpoint], T]
    ) -> Choice[T]:
        """The newest of `values` that `load` accepts (RIVERRUN_CHECKPOINT_FALLBACK says
        whether older ones are tried after a refusal); every refusal logged and counted.

        Verified, decompressed and unpickled in a thread: a large model's restore keeps
        the event loop (the web server's /healthz, the group's heartbeats) answering."""
        fresh_on_refusal = self.settings.checkpoint_fallback == "fresh"
        choice = await asyncio.to_thread(choose, values, load, fresh_on_refusal=fresh_on_refusal)
        count_refusals(self.metrics, replica, choice)
        return choice

    async def write(
        self,
        records: list[tuple[bytes, bytes]],
        *,
        name: str,
        partition: int,
        started: float,
        transactional: bool,
    ) -> int:
        """Send a checkpoint's chunks (see `write_checkpoint`); their size in bytes.

        Raises `CheckpointsRefused` when the checkpoints topic is missing or not
        compacted: checked when a write fails, since a checkpoint the broker deletes
        after its retention time, or one written where nobody reads, is lost silently.
        The worker keeps serving (its models are now the only copy of what they learnt)
        and checks again every RECHECK_SECONDS; writes resume once the topic is fixed."""
        if self.unfit is not None:
            await self.recheck()
        try:
            return await write_checkpoint(
                self.producer,
                self.settings,
                self.metrics,
                records,
                name=name,
                partition=partition,
                partitions=self.partitions,
                started=started,
                transactional=transactional,
            )
        except KafkaException:
            problems = await self.problems()
            if not problems:
                raise  # the topic is fine: the broker's trouble, handled as before
        self.unfit = problems[0]
        log.error(
            "%s: checkpoints stop: %s; this worker keeps predicting and learning meanwhile",
            self.name,
            self.unfit,
        )
        raise CheckpointsRefused(self.unfit)

    async def problems(self) -> list[str]:
        """What is wrong with the checkpoints topic now (nothing when fit)."""
        self.checked_at = time.monotonic()
        topic = self.settings.checkpoints_topic
        return await asyncio.to_thread(check_topics, self.settings, [topic])

    async def recheck(self) -> None:
        """Raise `CheckpointsRefused` while the topic stays unfit; asks the broker at most
        every RECHECK_SECONDS."""
        if time.monotonic() - self.checked_at < RECHECK_SECONDS:
            raise CheckpointsRefused(self.unfit)
        problems = await self.problems()
        if problems:
            raise CheckpointsRefused(problems[0])
        log.info(
            "%s: the topic %r is fit again: checkpoints resume",
            self.name,
            self.settings.checkpoints_topic,
        )
        self.unfit = None
