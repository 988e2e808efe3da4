"""The events topic: predict-then-learn every event, one model replica per partition.

A `PartitionedService` (see `streams.runtime.partitioned`): per batch, each partition's messages
run through the worker's `EventPipeline` in offset order; predictions, dead letters,
metrics and drift reports are queued in one outbox and committed with the batch's offsets.
Model state is owned per input partition (one replica of each model per partition) and
checkpointed per model; a newly assigned partition resumes from each model's newest valid
checkpoint, at the lowest offset some model has not learnt.
"""

import asyncio
import functools
import gc
import logging
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Iterable, Mapping
from functools import partial
from typing import Any

from mode import Service

from online_models import Learner, Rejection
from online_models.learning.checkpoint import Checkpoint, Replica, encode_checkpoint, restore
from online_models.learning.learner import ServedModel
from online_models.learning.request_time import Answer, predict_now
from online_models.versions.lifecycle import GroupState, ModelGroup
from schemas import AnyPrediction, encode_prediction
from schemas.control import ModelPlan, PartitionOwner
from schemas.drift import DriftReport
from schemas.formats.events import RecordMeta
from streams.kafka.outbox import Outbox, dead_letter, publish_report
from streams.kafka.records import TopicPartition
from streams.runtime.control import ControlLog
from streams.runtime.partitioned import (
    MAX_BATCHES_IN_FLIGHT,
    Batches,
    PartitionedService,
    PartitionState,
    resume_at,
)
from streams.runtime.replicas import Ownership, PartitionReplicas, Unavailable
from streams.runtime.snapshots import SnapshotFollower
from streams.runtime.versions import Versions
from streams.services.event_pipeline import EventPipeline
from streams.services.formats import Formats

__all__ = ["MAX_BATCHES_IN_FLIGHT", "BatchedEvents", "EventsPartition"]

log = logging.getLogger(__name__)

#: Events predicted-then-learnt per call of the pipeline within a batch ...
SLICE_EVENTS = 16
#: ... and how long a batch keeps the event loop before it lets /v1 requests (and every
#: other task) run: a request waits for at most about one slice, not a whole batch.
SLICE_SECONDS = 0.001


class EventsPartition(PartitionState):
    """The model replicas of one input partition and what their checkpoints covered."""

    def __init__(self, tp: TopicPartition, learner: Learner) -> None:
        super().__init__()
        self.tp = tp
        self.learner = learner
        self.sequences: dict[str, int] = defaultdict(int)  # next checkpoint per model
        #: The replicas have learnt every event below this offset (request-time
        #: predictions say so); None until the partition's first batch.
        self.learnt_until: int | None = None

    def predict_now(self, model: str, key: str, features: Mapping[str, Any]) -> Answer:
        """What the stream would predict for `key` now (a /v1 request); learns nothing."""
        return predict_now(self.learner, model, key, features)

    def next_offset(self) -> int:
        """The replicas have learnt every event below this offset."""
        learnt = self.learnt_until
        return learnt if learnt is not None else self.positions.get(self.tp, 0)


class BatchedEvents(PartitionedService[TopicPartition, EventsPartition]):
    """Consumes the events topic in batches and publishes predictions, dead letters,
    metrics and drift reports."""

    name = "events"
    received_at = 0.0  # when the batch in hand was fetched (perf_counter)

    def topics(self) -> list[str]:
        return [self.settings.events_topic]

    def group_id(self) -> str:
        return self.settings.group_id

    def output_topics(self) -> list[str]:
        s = self.settings
        return [
            s.predictions_topic,
            s.dead_letters_topic,
            s.metrics_topic,
            s.drift_topic,
            s.shadow_predictions_topic,
            s.learn_topic,
        ]

    def key(self, tp: TopicPartition) -> TopicPartition:
        return tp

    control: ControlLog | None = None
    versions: Versions | None = None  # follows the plans of `control`, publishes statuses
    #: The newest snapshot of each global model (set by the worker before it starts).
    snapshots: SnapshotFollower | None = None
    #: Whether predictions go to the predictions topic (the learner's do not).
    publishes_predictions = True
    state_class = EventsPartition
    #: The formats of the topics (set by the worker; None: riverrun's JSON everywhere).
    formats: Formats | None = None
    #: How predictions are written (RIVERRUN_PREDICTIONS_FORMAT).
    encode = staticmethod(encode_prediction)

    async def prepare(self, fetched: list[Batches]) -> bool:
        if self.formats is None or not self.reads_team_records():
            return True
        values = (m.value for batches in fetched for ms in batches.values() for m in ms)
        return await self.formats.prepare(values, abandon=lambda: self.should_stop)

    def reads_team_records(self) -> bool:
        """Whether the consumed topic carries a team's records (its format, a mapping or
        an event decoder), rather than riverrun's own InputEvent JSON."""
        return self.formats is not None and self.formats.event_decoder() is not None

    async def on_start(self) -> None:
        if self.formats is not None and self.publishes_predictions:
            encode = await self.formats.prediction_encoder(abandon=lambda: self.should_stop)
            if encode is None:
                return  # stopped while the registry was away: nothing was started
            self.encode = encode  # type: ignore[assignment]
        # The plans in force are known before the first partition is restored.
        self.control = ControlLog(self.settings, self.metrics)
        await self.control.start()
        self.versions = Versions(self.settings, self.metrics, self.control, self.own_models())
        await super().on_start()
        # Everything imported and built at start-up (~150k objects: Faust, aiokafka, River,
        # pydantic) never becomes garbage; moved out of the collector's sight, it no longer
        # makes every full collection ~40 ms longer (a tail-latency spike).
        gc.freeze()

    async def on_stop(self) -> None:
        await super().on_stop()
        if self.control is not None:
            await self.control.stop()

    def new_learner(self, partition: int | None = None) -> Learner:
        """Fresh replicas of the served models, for one input partition: the partition
        models learn here, the global ones follow their snapshots."""
        s = self.settings
        names = s.model_names(self.models)
        return self.learner_of(names, partition, followers=s.global_models(self.models))

    def learner_of(
        self, names: list[str], partition: int | None, followers: list[str] | None = None
    ) -> Learner:
        """Fresh replicas of the models `names` with the settings' evaluation, drift and
        de-duplication (`followers`: those predicted from their snapshots)."""
        s = self.settings
        return Learner(
            names,
            registry=self.models,
            params=s.model_params,
            evaluation=s.evaluation(),
            drift=s.drift(),
            dedup_window=s.dedup_window,
            partition=partition,
            followers=followers or (),
        )

    def own_models(self) -> list[str]:
        """The models whose versions this service decides on (experiments concluded by
        the owner of its partition 0): the partition models here, the global ones on
        their learners."""
        s = self.settings
        global_models = set(s.global_models(self.models))
        return [name for name in s.model_names(self.models) if name not in global_models]

    def plans(self) -> dict[str, ModelPlan]:
        """The newest plan of each model, as the control topic holds them."""
        return self.versions.plans() if self.versions is not None else {}

    # --- what the /v1 API asks (streams.runtime.replicas.PredictionSource) -----------
    def partition_count(self) -> int:
        if self.consumer is None:
            raise Unavailable("the worker is starting")
        found = self.consumer.counts.get(self.settings.events_topic)
        if not found:
            raise Unavailable("the worker has no metadata of the events topic yet")
        return found

    def replicas(self, partition: int) -> EventsPartition | None:
        tp = TopicPartition(self.settings.events_topic, partition)
        state = self.owned.get(tp)
        if state is None:
            if self.consumer is not None and tp in self.consumer.assigned:
                raise Unavailable(f"partition {partition} is being restored from its checkpoint")
            return None
        if self.rebalancing:
            raise Unavailable("the consumer group is rebalancing")
        if state.next_offset() < state.replay_until.get(tp, 0):
            raise Unavailable(f"partition {partition} is re-running events to rebuild its models")
        return state

    def global_replicas(self, model: str) -> PartitionReplicas | None:
        return self.snapshots.replicas(model) if self.snapshots is not None else None

    def owner_url(self, partition: int) -> str | None:
        where = (self.settings.events_topic, partition)
        claim = self.control.state.owners.get(where) if self.control is not None else None
        return claim.url if claim is not None else None

    def ownership(self) -> Ownership | None:
        if self.consumer is None or self.control is None:
            return None
        return Ownership(
            generation=self.consumer.generation,
            member=self.consumer.member,
            partitions=frozenset(tp.partition for tp in self.owned),
        )

    async def advertise(self, producer: Any, claims: list[PartitionOwner]) -> list[Any]:
        if self.control is None:
            return []
        return await self.control.publish(producer, claims)

    # --- restore and checkpoint ------------------------------------------------------
    def _replica(self, tp: TopicPartition, model: str) -> Replica:
        return Replica(self.settings.group_id, tp.topic, tp.partition, model)

    async def restore(
        self,
        key: TopicPartition,
        tps: list[TopicPartition],
        committed: dict[TopicPartition, int | None],
    ) -> tuple[EventsPartition, dict[TopicPartition, int]]:
        """Each model from its newest valid checkpoint (or fresh); resume at the first
        offset some model has not learnt."""
        assert self.store is not None
        started = time.perf_counter()
        tp, s = key, self.settings
        state = self.state_class(tp, self.new_learner(tp.partition))
        for plan in self.plans().values():
            state.learner.apply_plan(plan, committed[tp] or 0)
        for reason in state.learner.drain_unbuildable():
            log.warning("%s[%d]: %s", tp.topic, tp.partition, reason)
        replicas = state.learner.replicas()
        found = await self.store.read(
            tp.partition, {self._replica(tp, n).prefix: n for n in replicas}
        )
        restored: dict[str, ServedModel] = {}
        for name, fresh in replicas.items():
            replica = self._replica(tp, name)
            load = self._loader(replica, fresh)
            choice = await self.store.choose(replica, found.get(name, []), load)
            state.sequences[name] = choice.next_sequence
            label = (name, str(tp.partition))
            if choice.restored is None:
                # No usable checkpoint: learn every event still in the partition (what
                # the last owner learnt before its first checkpoint), unless refusals
                # and RIVERRUN_CHECKPOINT_FALLBACK=fresh say to start from here on. (A
                # version deployed later: see _restore_group.)
                starts_fresh = choice.refusals and s.checkpoint_fallback == "fresh"
                fresh.resume_offset = (committed[tp] or 0) if starts_fresh else 0
                self.metrics.restored_offset.labels(*label).set(-1)
                continue
            restored[name] = served = choice.restored
            if name in state.learner.models and name not in state.learner.groups:
                state.learner.models[name] = served
            self.metrics.restored_offset.labels(*label).set(served.resume_offset)
            log.info(
                "restored %s on %s[%d] at offset %d (%d updates)",
                served.version,
                tp.topic,
                tp.partition,
                served.resume_offset,
                served.updates,
            )
        for group in state.learner.groups.values():
            await self._restore_group(group, restored, tp, committed[tp] or 0)
        self.metrics.restore_duration.observe(time.perf_counter() - started)
        # Resume at the first offset some model has not learnt.
        resume = min(
            (served.resume_offset for served in state.learner.replicas().values()),
            default=committed[tp] or 0,  # (a learn partition no global model's goes to)
        )
        return state, {tp: resume}

    async def _restore_group(
        self,
        group: ModelGroup,
        restored: dict[str, ServedModel],
        tp: TopicPartition,
        committed: int,
    ) -> None:
        """The restored replicas of a model's versions and their lifecycle state (from the
        newest of them); versions without a checkpoint join where they joined before
        (the lifecycle state says), else at the committed offset, else their backfill."""
        mine = {
            v: restored[group.replica_name(v)]
            for v in group.versions
            if group.replica_name(v) in restored
        }
        states = [
            (m.resume_offset, m.lifecycle)
            for m in mine.values()
            if isinstance(m.lifecycle, GroupState)
        ]
        if states:
            offset, lifecycle = max(states, key=lambda pair: pair[0])
            group.state, group.resume_offset = lifecycle, offset
        group.versions.update(mine)
        assert group.plan is not None
        for version, v in group.roles.items():
            if version in mine or version == group.spec.version:
                continue  # restored, or the app's version (as any model without a plan)
            joined = group.state.joined_at.get(version, committed)
            if v.backfill_from is not None:
                joined = min(joined, await self._offset_at(tp, v.backfill_from, committed))
            group.versions[version].resume_offset = group.state.joined_at[version] = joined
        group.apply(group.plan, committed, {})  # roles, learning flags, tracks

    async def _offset_at(self, tp: TopicPartition, when: Any, default: int) -> int:
        """The first offset of `tp` whose Kafka record timestamp (when it was produced,
        not the event's `ts`) is at or after `when`."""
        assert self.consumer is not None
        found = await self.consumer.offsets_for_time(tp, int(when.timestamp() * 1000))
        return found if found is not None else default

    def _loader(self, replica: Replica, fresh: ServedModel) -> Any:
        assert self.store is not None
        key, s = self.store.key, self.settings

        def load(checkpoint: Checkpoint) -> ServedModel:
            return restore(
                checkpoint,
                replica,
                fresh.spec,
                key=key,
                evaluation=s.evaluation(),
                drift=s.drift(),
                dedup_window=s.dedup_window,
            )

        return load

    async def checkpoint(self, state: EventsPartition, *, transactional: bool) -> int:
        """Checkpoint every model of `state` at its position; the bytes written."""
        assert self.store is not None
        size = 0
        for name, served in state.learner.replicas().items():
            started = time.perf_counter()
            replica = self._replica(state.tp, name)
            encode = partial(
                encode_checkpoint,
                served,
                replica,
                key=self.store.key,
                next_offset=state.positions[state.tp],
                sequence=state.sequences[name],
                chunk_bytes=self.settings.checkpoint_chunk_bytes,
            )
            records = await self.serializer.records(f"{name}@{state.tp}", encode)
            size += await self.store.write(
                records,
                name=name,
                partition=state.tp.partition,
                started=started,
                transactional=transactional,
            )
            state.sequences[name] += 1
        return size

    def replica_names(self, state: EventsPartition) -> Iterable[tuple[str, int]]:
        return [(name, state.tp.partition) for name in state.learner.replicas()]

    # --- the batch path --------------------------------------------------------------
    async def _process(self, records: Batches) -> dict[TopicPartition, int]:
        self.received_at = time.perf_counter()  # each prediction's latency counts from here
        return await super()._process(records)

    async def handle(
        self, state: EventsPartition, batches: Batches, outbox: Outbox
    ) -> Counter[TopicPartition]:
        """Predict-then-learn the partition's messages in offset order."""
        tp, s = state.tp, self.settings
        if await self._follow_plans(state):
            return Counter()  # a version backfills: the partition was sought back
        messages = batches.get(tp)
        if not messages:
            await self._publish_lifecycle(state)
            return Counter()
        if self.snapshots is not None:
            for name in state.learner.followers:
                snapshot = self.snapshots.snapshot(name)
                if snapshot is not None:
                    state.learner.install(name, snapshot)
        decoder = None
        if self.formats is not None and self.reads_team_records():
            decoder = self.formats.event_decoder()  # (`prepare` fetched the schemas)
        pipeline = EventPipeline(state.learner, s.max_event_bytes, decoder)
        replayed = [m for m in messages if state.replayed(m)]
        if replayed:  # rebuilding the model: outputs were delivered by the last owner
            async for _ in self._learn(state, pipeline, replayed):
                pass
            state.learner.drain_reports()
            state.learner.drain_drift()
            state.learner.drain_shadow()
            state.learner.drain_changes()  # (published by the last owner)
            state.learner.drain_examples()
            messages = messages[len(replayed) :]
        predicted: Counter[str] = Counter()
        learned: Counter[str] = Counter()
        latency: dict[str, Any] = {}  # each model's histogram, looked up once per batch
        async for sliced, outputs in self._learn(state, pipeline, messages):
            for message, output in zip(sliced, outputs, strict=True):
                if isinstance(output, Rejection):
                    await dead_letter(outbox, message, output, self.metrics, s)
                    continue
                learned[output.model] += output.learned
                if not self.publishes_predictions:
                    continue
                await outbox.add(
                    s.predictions_topic,
                    output.event_id.encode(),
                    self.encode(output),
                    tp,
                    message.offset,
                )
                predicted[output.model] += 1
                histogram = latency.get(output.model)
                if histogram is None:
                    histogram = latency[output.model] = self.metrics.latency.labels(output.model)
                histogram.observe(output.latency_seconds)
        examples = state.learner.drain_examples()
        if examples:  # labelled events of global models: their learner's, in this order
            values = {m.offset: m.value for m in messages}
            for offset, model in examples:
                assert offset is not None
                decoded = pipeline.decoded.get(offset)  # a team's record: as InputEvent JSON
                value = values[offset] if decoded is None else decoded.model_dump_json().encode()
                assert value is not None  # (it decoded)
                await outbox.add(s.learn_topic, model.encode(), value, tp, offset)
        last = messages[-1].offset if messages else -1  # (reports come with an offset)
        for offset, report in state.learner.drain_reports_at():
            await publish_report(
                outbox,
                report,
                tp.partition,
                self.metrics,
                s.metrics_topic,
                tp,
                last if offset is None else offset,
            )
        for offset, drift in state.learner.drain_drift_at():
            await self._drift(outbox, drift, tp, last if offset is None else offset)
        for offset, shadow in state.learner.drain_shadow():
            await outbox.add(
                s.shadow_predictions_topic,
                shadow.event_id.encode(),
                encode_prediction(shadow),
                tp,
                last if offset is None else offset,
            )
        state.positions[tp] = (messages or replayed)[-1].offset + 1
        self._export(state, predicted, learned)
        await self._publish_lifecycle(state)
        return Counter({tp: len(replayed) + len(messages)})

    async def _learn(
        self, state: EventsPartition, pipeline: EventPipeline, messages: list[Any]
    ) -> AsyncIterator[tuple[list[Any], list[AnyPrediction | Rejection]]]:
        """Predict-then-learn `messages` in slices of SLICE_EVENTS: the outputs of each.

        The event loop is handed back whenever SLICE_SECONDS have gone by, so that /v1
        requests are answered within a batch rather than after it; `learnt_until` is
        up to date at every such point (an answer sees exactly the events before it)."""
        since = time.perf_counter()
        for start in range(0, len(messages), SLICE_EVENTS):
            sliced = messages[start : start + SLICE_EVENTS]
            metas = (
                [RecordMeta(m.topic, m.partition, m.offset, m.timestamp) for m in sliced]
                if pipeline.decoder is not None
                else None
            )
            outputs = pipeline.run(
                [m.value for m in sliced], self.received_at, [m.offset for m in sliced], metas
            )
            state.learnt_until = sliced[-1].offset + 1
            yield sliced, outputs
            if time.perf_counter() - since >= SLICE_SECONDS:
                await asyncio.sleep(0)
                since = time.perf_counter()

    # --- versions (streams.runtime.versions) -----------------------------------------
    async def _follow_plans(self, state: EventsPartition) -> bool:
        """Apply the plans newer than those the partition runs, from its position on;
        True when a joining version backfills (the partition was sought back)."""
        if self.versions is None:
            return False
        tp = state.tp
        position = state.positions.get(tp, 0)
        offset_at = functools.partial(self._offset_at, tp)
        rewind = await self.versions.follow(
            state.learner, tp.topic, tp.partition, position, offset_at
        )
        if rewind is None:
            return False
        assert self.consumer is not None
        start = await resume_at(self.consumer, tp, rewind, None)
        log.info(
            "%s[%d]: backfilling joining versions from offset %d up to %d",
            tp.topic,
            tp.partition,
            start,
            position,
        )
        state.replay_until[tp] = max(state.replay_until.get(tp, 0), position)
        state.positions[tp] = state.fetched[tp] = start
        state.check_start.add(tp)
        return True

    async def _publish_lifecycle(self, state: EventsPartition) -> None:
        """Automatic plan revisions (rollback, breaker, gate) at once, with a status."""
        if self.versions is None or self.deliveries is None:
            return
        tp = state.tp
        position = state.positions.get(tp, 0)
        await self.versions.publish_changes(
            self.deliveries, state.learner, tp.topic, tp.partition, position
        )

    @Service.task
    async def _report_statuses(self) -> None:
        """Every RIVERRUN_STATUS_EVERY_SECONDS, busy or idle: each owned partition's
        versions' statuses on the control topic; then, by the worker owning input
        partition 0, the result of each experiment whose every arm has its sample."""
        while not self.should_stop:
            await self.sleep(self.settings.status_every_seconds)
            if self.versions is None or self.deliveries is None:
                continue
            try:
                async with self.batch_lock:
                    for state in self.owned.values():  # idle partitions follow plans too
                        await self._follow_plans(state)
                    replicas = [
                        (state.learner, state.tp.partition, state.positions.get(state.tp, 0))
                        for state in self.owned.values()
                    ]
                    await self.versions.publish_statuses(self.deliveries, replicas)
            except Exception:  # the broker away: the next round tries again
                log.exception("publishing the versions' statuses failed; retrying")

    def _export(
        self, state: EventsPartition, predicted: Counter[str], learned: Counter[str]
    ) -> None:
        """Counters, lag and rolling quality of the partition after a batch."""
        assert self.consumer is not None
        for model, count in predicted.items():
            self.metrics.predicted.labels(model).inc(count)
        for model, count in learned.items():  # (a learner learns without predictions out)
            self.metrics.learned.labels(model).inc(count)
        tp, next_offset = state.tp, state.positions[state.tp]
        lag = (self.consumer.highwater(tp) or next_offset) - next_offset
        self.metrics.lag.labels(tp.topic, str(tp.partition)).set(max(lag, 0))
        for model, (metric, value) in state.learner.quality().items():
            if model in state.learner.followers:  # a global model's: of its snapshots
                metric = f"served_{metric}"
            self.metrics.quality.labels(model, str(tp.partition), metric).set(value)

    async def _drift(
        self, outbox: Outbox, report: DriftReport, source: TopicPartition, offset: int
    ) -> None:
        partition = source.partition
        report = report.model_copy(update={"partition": partition})
        labels = (report.model, str(partition), report.detector, report.signal)
        if report.drift:
            self.metrics.drift.labels(*labels).inc()
        if report.trigger == "window" and report.statistic is not None:  # (none for ADWIN)
            self.metrics.drift_statistic.labels(*labels).set(report.statistic)
        await outbox.add(
            self.settings.drift_topic,
            report.model.encode(),
            report.model_dump_json().encode(),
            source,
            offset,
        )
