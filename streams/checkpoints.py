"""Reading and writing model checkpoints on the compacted checkpoints topic.

The bytes (signature, compression, chunks) are `online_models.checkpoint`'s; this module
only moves them to and from Kafka and counts what happened.
"""

import asyncio
import logging
import os
import secrets
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from online_models import Learner
from online_models.checkpoint import (
    Checkpoint,
    Choice,
    Replica,
    choose,
    encode_checkpoint,
    restore,
)
from online_models.learner import ServedModel
from streams.metrics import WorkerMetrics
from streams.settings import Settings

log = logging.getLogger(__name__)


def checkpoint_key(settings: Settings) -> bytes:
    """RIVERRUN_CHECKPOINT_KEY, else a random key created once in DATA_DIR."""
    if settings.checkpoint_key is not None:
        return settings.checkpoint_key.get_secret_value().encode()
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
    reader: AIOKafkaConsumer, where: TopicPartition, prefixes: dict[bytes, str]
) -> dict[str, list[bytes | None]]:
    """The values of every message of checkpoints partition `where` whose key starts with
    one of `prefixes`, by the prefix's name, in topic order."""
    reader.assign([where])
    await reader.seek_to_beginning(where)
    end = (await reader.end_offsets([where]))[where]
    found: dict[str, list[bytes | None]] = defaultdict(list)
    while await reader.position(where) < end:
        batch = await reader.getmany(where, timeout_ms=1000)
        for message in batch.get(where, []):
            key = message.key or b""
            for prefix, name in prefixes.items():
                if key.startswith(prefix):
                    found[name].append(message.value)
    return found


def checkpoint_reader(settings: Settings, name: str) -> AIOKafkaConsumer:
    """A consumer without group for reading the checkpoints topic (committed data only)."""
    return AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers,
        client_id=f"{settings.group_id}-{name}",
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",  # never a checkpoint of an aborted transaction
        max_partition_fetch_bytes=max(1 << 20, 2 * settings.checkpoint_chunk_bytes),
    )


def count_refusals(metrics: WorkerMetrics, replica: Replica, choice: Choice[Any]) -> None:
    """Log and count every checkpoint `choose` refused for `replica`."""
    for refusal in choice.refusals:
        labels = (replica.model, str(replica.partition), refusal.reason.value)
        metrics.checkpoint_refused.labels(*labels).inc()
        log.error("checkpoint refused for %s[%d] model %s: %s",
                  replica.topic, replica.partition, replica.model, refusal)  # fmt: skip


async def write_checkpoint(
    producer: AIOKafkaProducer,
    settings: Settings,
    metrics: WorkerMetrics,
    records: list[tuple[bytes, bytes]],
    *,
    name: str,
    partition: int,
    started: float,
    transactional: bool = False,
) -> None:
    """Send a checkpoint's chunk messages to the checkpoints topic (partition `partition`
    mod its partition count), wait for their acknowledgement and count it. A
    `transactional` producer (exactly_once) sends them as one transaction."""
    topic = settings.checkpoints_topic
    where = partition % len(await producer.partitions_for(topic))

    async def send() -> list[Any]:
        return [
            await producer.send(topic, value, key=key, partition=where) for key, value in records
        ]

    if transactional:
        async with producer.transaction():
            await send()
    else:
        await asyncio.gather(*await send())
    labels = (name, str(partition))
    metrics.checkpoints.labels(*labels).inc()
    metrics.checkpoint_bytes.labels(*labels).set(sum(len(v) for _, v in records))
    metrics.checkpoint_duration.labels(name).observe(time.perf_counter() - started)


class PartitionState:
    """What a worker holds for one input partition it owns: the model replicas, where it
    is, and what the last checkpoint covered."""

    def __init__(self, tp: TopicPartition, learner: Learner, replay_until: int) -> None:
        self.tp = tp
        self.learner = learner
        #: Outputs of offsets below this one were delivered before this worker got the
        #: partition: the events are re-run to rebuild the model, their outputs dropped.
        self.replay_until = replay_until
        self.position: int | None = None  # next offset to process
        self.check_start = False  # the next batch must start at `position`
        self.sequences: dict[str, int] = defaultdict(int)  # next checkpoint per model
        self.resume: dict[str, int] = {}  # model -> first offset it has not learnt
        self.since_checkpoint = 0  # events processed since the last checkpoint
        self.checkpointed_at = time.monotonic()


class CheckpointStore:
    """Restores partition states from the checkpoints topic and writes them there."""

    def __init__(
        self,
        settings: Settings,
        producer: AIOKafkaProducer,
        metrics: WorkerMetrics,
        new_learner: Any,
    ) -> None:
        self.settings = settings
        self.producer = producer
        self.metrics = metrics
        self.new_learner = new_learner  # () -> Learner with fresh models
        self.key = checkpoint_key(settings)
        self.partitions = 1  # of the checkpoints topic, read at start
        self.reader: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        s = self.settings
        self.partitions = len(await self.producer.partitions_for(s.checkpoints_topic))
        self.reader = checkpoint_reader(s, "checkpoints")
        await self.reader.start()

    async def stop(self) -> None:
        if self.reader is not None:
            await self.reader.stop()

    def replica(self, tp: TopicPartition, model: str) -> Replica:
        return Replica(self.settings.group_id, tp.topic, tp.partition, model)

    def _where(self, tp: TopicPartition) -> TopicPartition:
        return TopicPartition(self.settings.checkpoints_topic, tp.partition % self.partitions)

    async def _read(self, tp: TopicPartition) -> dict[str, list[bytes | None]]:
        """Every chunk message of this partition's replicas on the topic, by model, in order."""
        assert self.reader is not None
        prefixes = {self.replica(tp, name).prefix: name for name in self.settings.models}
        return await read_chunks(self.reader, self._where(tp), prefixes)

    async def load(self, tp: TopicPartition, committed: int | None) -> PartitionState:
        """The state of a newly assigned partition: each model from its newest valid
        checkpoint (or fresh), and where to resume consuming."""
        started = time.perf_counter()
        learner: Learner = self.new_learner()
        found = await self._read(tp)
        state = PartitionState(tp, learner, replay_until=committed or 0)
        evaluation = self.settings.evaluation()
        for name, served in list(learner.models.items()):
            replica = self.replica(tp, name)
            choice = self._choose(replica, served, found.get(name, []), evaluation)
            count_refusals(self.metrics, replica, choice)
            state.sequences[name] = choice.next_sequence
            label = (name, str(tp.partition))
            if choice.restored is None:
                # No usable checkpoint: learn every event still in the partition (what
                # the last owner learnt before its first checkpoint), unless refusals
                # and RIVERRUN_CHECKPOINT_FALLBACK=fresh say to start from here on.
                fresh = choice.refusals and self.settings.checkpoint_fallback == "fresh"
                served.resume_offset = (committed or 0) if fresh else 0
                state.resume[name] = served.resume_offset
                self.metrics.restored_offset.labels(*label).set(-1)
                continue
            learner.models[name] = served = choice.restored
            state.resume[name] = served.resume_offset
            self.metrics.restored_offset.labels(*label).set(served.resume_offset)
            log.info(
                "restored %s on %s[%d] at offset %d (%d updates)",
                served.version, tp.topic, tp.partition, served.resume_offset, served.updates,
            )  # fmt: skip
        self.metrics.restore_duration.observe(time.perf_counter() - started)
        return state

    def _choose(
        self, replica: Replica, fresh: ServedModel, values: list[bytes | None], evaluation: Any
    ) -> Choice[ServedModel]:
        """The newest valid checkpoint's model, the refusals, the next sequence."""

        def load(checkpoint: Checkpoint) -> ServedModel:
            return restore(
                checkpoint, replica, fresh.spec, key=self.key, evaluation=evaluation,
                drift=self.settings.drift(),
            )  # fmt: skip

        fresh_on_refusal = self.settings.checkpoint_fallback == "fresh"
        return choose(values, load, fresh_on_refusal=fresh_on_refusal)

    async def write(self, state: PartitionState) -> None:
        """Checkpoint every model of `state` at `state.position`, until acknowledged.

        Called with every output below `state.position` acknowledged and its offset
        committed, so a restore never resumes after an output that was not delivered.
        """
        assert state.position is not None
        for name, served in state.learner.models.items():
            started = time.perf_counter()
            records = encode_checkpoint(
                served,
                self.replica(state.tp, name),
                key=self.key,
                next_offset=state.position,
                sequence=state.sequences[name],
                chunk_bytes=self.settings.checkpoint_chunk_bytes,
            )
            where = state.tp.partition
            await write_checkpoint(
                self.producer, self.settings, self.metrics, records,
                name=name, partition=where, started=started,
                transactional=self.settings.exactly_once,
            )  # fmt: skip
            state.sequences[name] += 1
        state.since_checkpoint = 0
        state.checkpointed_at = time.monotonic()

    def update_ages(self, states: Any) -> None:
        """Refresh the checkpoint age gauges of the owned partitions."""
        now = time.monotonic()
        for state in states:
            for name in state.learner.models:
                labels = (name, str(state.tp.partition))
                self.metrics.checkpoint_age.labels(*labels).set(now - state.checkpointed_at)
