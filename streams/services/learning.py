"""The learn topic: one learner per global model, and its snapshots.

The events service writes every labelled event of a global model (`scope="global"`) to
the learn topic, keyed by the model's name, so that all of one model's examples are in
one partition in one order. The consumer group RIVERRUN_GROUP_ID + "-learner" gives each
learn partition to one worker: its learner predicts-then-learns the examples in that
order exactly as a partition model does with its events (evaluation, drift,
de-duplication, versions, checkpoints, restore, effectively-once outputs), and publishes
the model to the snapshots topic every RIVERRUN_SNAPSHOT_EVERY_EVENTS examples or
RIVERRUN_SNAPSHOT_EVERY_SECONDS, whichever comes first. Every worker predicts with the
newest snapshot (`streams.runtime.snapshots`).
"""

import time
from collections import Counter, defaultdict
from functools import partial

from online_models import Learner
from online_models.learning.snapshot import encode_snapshot
from streams.kafka.clients import partition_of
from streams.kafka.outbox import Outbox
from streams.kafka.records import TopicPartition
from streams.runtime.partitioned import Batches
from streams.runtime.replicas import Ownership
from streams.services.events import BatchedEvents, EventsPartition

__all__ = ["LearnPartition", "Learners"]


class LearnPartition(EventsPartition):
    """The learners of the global models whose examples are in one learn partition."""

    def __init__(self, tp: TopicPartition, learner: Learner) -> None:
        super().__init__(tp, learner)
        self.since_snapshot = 0  # examples learnt since the last snapshot
        self.snapshot_at = time.monotonic()
        self.snapshot_sequences: dict[str, int] = defaultdict(int)


class Learners(BatchedEvents):
    """Consumes the learn topic; publishes metrics, drift reports and snapshots (no
    predictions: the workers make those, from the snapshots)."""

    name = "learner"
    publishes_predictions = False

    def reads_team_records(self) -> bool:
        return False  # the learn topic carries riverrun's InputEvent JSON, whatever the format

    state_class = LearnPartition

    def topics(self) -> list[str]:
        return [self.settings.learn_topic]

    def group_id(self) -> str:
        return f"{self.settings.group_id}-learner"

    def output_topics(self) -> list[str]:
        s = self.settings
        return [
            s.dead_letters_topic,
            s.metrics_topic,
            s.drift_topic,
            s.shadow_predictions_topic,
            s.snapshots_topic,
        ]

    def new_learner(self, partition: int | None = None) -> Learner:
        """The learners of the global models whose examples go to learn `partition`."""
        s = self.settings
        names = s.global_models(self.models)
        count = self.consumer.counts.get(s.learn_topic) if self.consumer is not None else None
        if partition is not None and count:
            names = [name for name in names if partition_of(name, count) == partition]
        return self.learner_of(names, partition)

    def own_models(self) -> list[str]:
        return self.settings.global_models(self.models)

    def ownership(self) -> Ownership | None:
        return None  # /v1 asks the events service (and the snapshots), never a learner

    def pending(self) -> bool:
        """A state that learnt since its last snapshot, RIVERRUN_SNAPSHOT_EVERY_SECONDS
        ago, publishes one even when no example follows."""
        oldest = time.monotonic() - self.settings.snapshot_every_seconds
        return any(
            isinstance(state, LearnPartition)
            and state.since_snapshot
            and state.snapshot_at <= oldest
            for state in self.owned.values()
        )

    async def handle(
        self, state: EventsPartition, batches: Batches, outbox: Outbox
    ) -> Counter[TopicPartition]:
        assert isinstance(state, LearnPartition)
        replaying = state.replay_until.get(state.tp, 0)
        handled = await super().handle(state, batches, outbox)
        position = state.positions.get(state.tp, 0)
        if position <= replaying:
            return handled  # re-learning what the last owner snapshotted already
        state.since_snapshot += sum(handled.values())
        s = self.settings
        due = state.since_snapshot >= s.snapshot_every_events or (
            state.since_snapshot
            and time.monotonic() - state.snapshot_at >= s.snapshot_every_seconds
        )
        if due:
            await self._snapshot(state, outbox, position)
        return handled

    async def _snapshot(self, state: LearnPartition, outbox: Outbox, position: int) -> None:
        """Publish each global model of `state` as it is after offset `position` - 1."""
        assert self.store is not None
        s, tp = self.settings, state.tp
        for name, served in state.learner.models.items():
            held = self.snapshots.snapshot(name) if self.snapshots is not None else None
            if held and held.version == served.version and held.updates >= served.updates:
                continue  # (re-learning after a take-over: the topic has this one already)
            encode = partial(
                encode_snapshot,
                served,
                name,
                group_id=s.group_id,
                key=self.store.key,
                learnt_until=position,
                sequence=state.snapshot_sequences[name],
                chunk_bytes=s.checkpoint_chunk_bytes,
            )
            records = await self.serializer.records(f"{name} snapshot", encode)
            state.snapshot_sequences[name] += 1
            for key, value in records:
                await outbox.add(s.snapshots_topic, key, value, tp, position - 1)
            self.metrics.snapshots_published.labels(name).inc()
        state.since_snapshot = 0
        state.snapshot_at = time.monotonic()
