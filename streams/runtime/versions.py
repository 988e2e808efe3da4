"""Model versions on a worker: plans followed, statuses and verdicts published.

The events service hands `Versions` what happened to a partition's replicas (a batch
learnt, a round of statuses due); `Versions` applies the plans the control topic holds
(`online_models.versions.following` decides), publishes the automatic plan revisions
(rollback, breaker, gate) with the versions' statuses, exports them as metrics, and, on
the worker owning input partition 0, publishes the result of each experiment that is
over and stops it. The producer is the caller's.
"""

import logging
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime

from online_models import Learner
from online_models.versions.following import Backfill, apply_plans, concluded, newer_plans, rewind
from schemas.control import ModelPlan, ModelStatus
from streams.runtime.control import ControlLog, Sender
from streams.runtime.metrics import WorkerMetrics
from streams.settings import Settings

log = logging.getLogger(__name__)

#: The first offset of the partition produced at or after a time (a Kafka lookup).
OffsetAt = Callable[[datetime, int], Awaitable[int]]


class Versions:
    """Follows the plans of the control topic `control` for the partitions' replicas and
    publishes what they decide."""

    def __init__(
        self,
        settings: Settings,
        metrics: WorkerMetrics,
        control: ControlLog,
        models: Iterable[str] | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.control = control
        #: The models whose experiments this service concludes (None: every one): the
        #: events service the partition models', the learners the global models'.
        self.models = set(models) if models is not None else None

    def plans(self) -> dict[str, ModelPlan]:
        """The newest plan of each model, as the control topic holds them."""
        return dict(self.control.state.plans)

    async def follow(
        self, learner: Learner, topic: str, partition: int, position: int, offset_at: OffsetAt
    ) -> int | None:
        """Apply the plans newer than those `learner` runs, from `position` on; the offset
        to re-read the partition from when a joining version backfills (else None)."""
        newer = newer_plans(learner, self.plans())
        for plan in newer:
            log.info(
                "%s[%d]: %s plan revision %d: %s",
                topic,
                partition,
                plan.model,
                plan.revision,
                plan.change,
            )
        backfills = apply_plans(learner, newer, position)
        for reason in learner.drain_unbuildable():
            log.warning("%s[%d]: %s", topic, partition, reason)
        starts: dict[Backfill, int] = {}
        for backfill in backfills:
            starts[backfill] = await offset_at(backfill.since, position)
        return rewind(learner, starts, position)

    async def publish_changes(
        self, producer: Sender, learner: Learner, topic: str, partition: int, position: int
    ) -> None:
        """The automatic plan revisions (rollback, breaker, gate) of a partition's batch,
        at once, with its statuses."""
        if not learner.groups:
            return
        changes = learner.drain_changes()
        for change in changes:
            log.warning("%s[%d]: %s: %s", topic, partition, change.model, change.change)
        if changes:
            statuses = self.statuses(learner, partition, position)
            await self.control.publish(producer, [*changes, *statuses])

    def statuses(self, learner: Learner, partition: int, position: int) -> list[ModelStatus]:
        """The statuses of a partition's versions now (exported as metrics too)."""
        at = datetime.now(UTC)
        statuses = [group.status(position, at) for group in learner.groups.values()]
        self._export(learner, partition, statuses)
        return statuses

    async def publish_statuses(
        self, producer: Sender, replicas: Iterable[tuple[Learner, int, int]]
    ) -> None:
        """The statuses of the owned partitions' versions (`replicas`: learner,
        partition, position); then, on the owner of input partition 0, the experiments'
        results."""
        replicas = list(replicas)
        statuses = [s for learner, p, at in replicas for s in self.statuses(learner, p, at)]
        if statuses:
            await self.control.publish(producer, statuses)
        if any(partition == 0 for _, partition, _ in replicas):
            await self.conclude_experiments(producer)

    async def conclude_experiments(self, producer: Sender) -> None:
        """Publish the result of each experiment whose every arm has its sample, and stop
        it."""
        plans = {
            model: plan
            for model, plan in self.plans().items()
            if self.models is None or model in self.models
        }
        over = concluded(plans, self.control.state.statuses_of, "worker (partition 0)")
        for result, stopped in over:
            log.warning(
                "experiment %s of %s: %s", result.experiment_id, result.model, result.decision
            )
            sent = await producer.send(
                self.settings.experiments_topic,
                key=result.experiment_id.encode(),
                value=result.model_dump_json().encode(),
            )
            await sent
            await self.control.publish(producer, [stopped])

    def _export(self, learner: Learner, partition: int, statuses: list[ModelStatus]) -> None:
        m, label = self.metrics, str(partition)
        for status in statuses:
            group = learner.groups[status.model]
            m.plan_revision.labels(status.model).set(status.revision)
            m.versions_unbuildable.labels(status.model, label).set(len(status.unbuildable))
            for v in status.versions:
                role = (status.model, v.version, v.role, str(v.learning).lower())
                m.version_role.labels(*role).set(1)
                m.learning_paused.labels(status.model, v.version).set(0 if v.learning else 1)
                for metric, value in v.headline.items():
                    m.version_quality.labels(status.model, v.version, label, metric).set(value)
            for arm, outcomes in status.arms.items():
                m.experiment_outcomes.labels(
                    status.model, status.experiment_id or "", arm, label
                ).set(outcomes.n)
            for arm, share in status.bandit_shares.items():
                m.bandit_share.labels(status.model, arm, label).set(share)
            counted = group.exported
            rollbacks, trips = status.rollbacks - counted[0], status.breaker_trips - counted[1]
            if rollbacks > 0:
                m.rollbacks.labels(status.model, label).inc(rollbacks)
            if trips > 0:
                m.breaker_trips.labels(status.model, label).inc(trips)
            group.exported = (status.rollbacks, status.breaker_trips)
