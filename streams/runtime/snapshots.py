"""Every worker follows the snapshots topic: the newest snapshot of each global model it
serves, which its events partitions predict with (`Learner.install`) and /v1 answers
from. Snapshots are decoded off the event loop, and only once their signature checks."""

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import TopicPartition as KafkaPartition
from mode import Service

from online_models import Learner
from online_models.learning.checkpoint import Checkpoint, CheckpointRefused, parse_chunk
from online_models.learning.request_time import Answer, predict_now
from online_models.learning.snapshot import Snapshot, decode_snapshot
from online_models.models.registry import ModelSpec
from streams.kafka.clients import METADATA_TIMEOUT_SECONDS, Follower, partition_of
from streams.runtime.metrics import WorkerMetrics
from streams.settings import Settings

log = logging.getLogger(__name__)

#: How often the age and lag gauges are refreshed.
GAUGE_SECONDS = 1.0
#: After the snapshots topic could not be followed, how long until the next try.
RETRY_SECONDS = 5.0


class SnapshotFollower(Service):
    """The newest snapshot of each of `names` (global models of `models`) on the
    snapshots topic, as `newest`."""

    def __init__(
        self,
        settings: Settings,
        metrics: WorkerMetrics,
        models: Mapping[str, ModelSpec],
        names: Iterable[str],
        key: bytes,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.settings, self.metrics, self.models, self.key = settings, metrics, models, key
        self.names = set(names)
        self.newest: dict[str, Snapshot] = {}
        #: Chunks of the snapshots not complete yet, by model and snapshot id.
        self.partial: dict[str, dict[str, Checkpoint]] = {}
        self.follower: Follower | None = None
        self.since = time.time()  # the age of no snapshot counts from here
        self.learn_partitions = 0
        self.answering: dict[str, SnapshotReplicas] = {}
        #: The topic was read to its end once: the newest snapshots there are held.
        self.caught_up = False

    def snapshot(self, model: str) -> Snapshot | None:
        """The newest snapshot of global model `model` (None: none yet)."""
        return self.newest.get(model)

    def replicas(self, model: str) -> "SnapshotReplicas | None":
        """What /v1 asks for global model `model` (None: not a global model here)."""
        if model not in self.names:
            return None
        found = self.answering.get(model)
        if found is None:
            learner = Learner(
                [model],
                registry=self.models,
                params=self.settings.model_params,
                followers=[model],
            )
            found = self.answering[model] = SnapshotReplicas(learner, model)
        snapshot = self.newest.get(model)
        if snapshot is not None:
            found.learner.install(model, snapshot)
            found.learnt_until = snapshot.learnt_until
        return found

    async def on_stop(self) -> None:
        if self.follower is not None:
            await self.follower.stop()

    @Service.task
    async def _follow(self) -> None:
        s = self.settings
        while self.names and not self.should_stop:
            self.follower = Follower(
                s, [s.snapshots_topic], client_id=f"{s.group_id}-snapshots", start="beginning"
            )
            try:
                async with self.follower as follower:
                    async for batch in follower.until_end():
                        for message in batch:
                            await self._take(message.value())
                    self.caught_up = True
                    async for batch in follower.batches(idle=GAUGE_SECONDS):
                        for message in batch:
                            await self._take(message.value())
            except Exception:
                if self.should_stop:
                    return
                log.exception("following %s failed: retrying", s.snapshots_topic)
                await self.sleep(RETRY_SECONDS)

    async def _take(self, value: bytes | None) -> None:
        """One chunk message; a snapshot whose every chunk arrived is decoded."""
        try:
            header, data = parse_chunk(value)
        except CheckpointRefused as err:
            self._refused("?", err)
            return
        if header.model not in self.names or header.group_id != self.settings.group_id:
            return
        partial = self.partial.setdefault(header.model, {})
        checkpoint = partial.setdefault(header.checkpoint_id, Checkpoint(header))
        checkpoint.chunks[header.chunk] = data
        if len(checkpoint.chunks) < header.chunks:
            return
        del partial[header.checkpoint_id]
        held = self.newest.get(header.model)
        if held is not None and not _newer(
            header.model_version, header.updates, header.created_at, held
        ):
            return
        spec = self.models[header.model]
        try:
            snapshot = await asyncio.to_thread(
                decode_snapshot, checkpoint, spec, group_id=self.settings.group_id, key=self.key
            )
        except CheckpointRefused as err:
            self._refused(header.model, err)
            return
        self.newest[header.model] = snapshot
        self.metrics.snapshot_updates.labels(header.model).set(snapshot.updates)

    def _refused(self, model: str, err: CheckpointRefused) -> None:
        self.metrics.snapshots_refused.labels(model, err.reason.value).inc()
        log.error("snapshot of %s refused: %s", model, err)

    @Service.task
    async def _gauges(self) -> None:
        """Each global model's snapshot age and lag, every GAUGE_SECONDS."""
        while self.names and not self.should_stop:
            await self.sleep(GAUGE_SECONDS)
            now = time.time()
            for name in self.names:
                snapshot = self.newest.get(name)
                made = snapshot.created_at.timestamp() if snapshot is not None else self.since
                self.metrics.snapshot_age.labels(name).set(max(0.0, now - made))
            try:
                await self._lag()
            except Exception as err:  # the broker away: the gauges keep their last value
                log.debug("snapshot lag not measured: %s", err)

    async def _lag(self) -> None:
        follower = self.follower
        if follower is None or follower.consumer is None or follower.closed:
            return
        consumer, topic = follower.consumer, self.settings.learn_topic
        if not self.learn_partitions:
            metadata = await asyncio.to_thread(
                consumer.list_topics, topic, timeout=METADATA_TIMEOUT_SECONDS
            )
            described = metadata.topics.get(topic)
            self.learn_partitions = len(described.partitions) if described is not None else 0
            if not self.learn_partitions:
                return
        for name in self.names:
            where = KafkaPartition(topic, partition_of(name, self.learn_partitions))
            _, end = await asyncio.to_thread(
                consumer.get_watermark_offsets, where, METADATA_TIMEOUT_SECONDS, False
            )
            snapshot = self.newest.get(name)
            learnt = snapshot.learnt_until if snapshot is not None else 0
            self.metrics.snapshot_lag.labels(name).set(max(0, end - learnt))


class SnapshotReplicas:
    """A global model as its newest snapshot here has it, for /v1 (`PartitionReplicas`)."""

    def __init__(self, learner: Learner, model: str) -> None:
        self.learner, self.model = learner, model
        self.learnt_until = 0  # of the learn partition, by the snapshot

    def predict_now(self, model: str, key: str, features: Mapping[str, Any]) -> Answer:
        return predict_now(self.learner, model, key, features)

    def next_offset(self) -> int:
        return self.learnt_until


def _newer(version: str, updates: int, created_at: datetime, held: Snapshot) -> bool:
    """Whether a snapshot is newer than `held`: more learnt of the same version, or
    another version (a plan changed the champion) made later."""
    if version == held.version:
        return updates > held.updates
    return created_at.astimezone(UTC) > held.created_at.astimezone(UTC)
