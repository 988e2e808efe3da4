"""The events topic: predict-then-learn every event, one model replica per partition.

A `PartitionedService` (see `streams.partitioned`): per batch, each partition's messages
run through the worker's `EventPipeline` in offset order; predictions, dead letters,
metrics and drift reports are queued in one outbox and committed with the batch's offsets.
Model state is owned per input partition (one replica of each model per partition) and
checkpointed per model; a newly assigned partition resumes from each model's newest valid
checkpoint, at the lowest offset some model has not learnt.
"""

import gc
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from typing import Any

from aiokafka import TopicPartition

from online_models import Learner, Rejection
from online_models.checkpoint import Checkpoint, Replica, encode_checkpoint, restore
from online_models.learner import ServedModel
from schemas import encode_prediction
from schemas.drift import DriftReport
from streams.outbox import Outbox, dead_letter, publish_report
from streams.partitioned import MAX_BATCHES_IN_FLIGHT, Batches, PartitionedService, PartitionState
from streams.pipeline import EventPipeline

__all__ = ["MAX_BATCHES_IN_FLIGHT", "BatchedEvents", "EventsPartition"]

log = logging.getLogger(__name__)


class EventsPartition(PartitionState):
    """The model replicas of one input partition and what their checkpoints covered."""

    def __init__(self, tp: TopicPartition, learner: Learner) -> None:
        super().__init__()
        self.tp = tp
        self.learner = learner
        self.sequences: dict[str, int] = defaultdict(int)  # next checkpoint per model


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
        return [s.predictions_topic, s.dead_letters_topic, s.metrics_topic, s.drift_topic]

    def key(self, tp: TopicPartition) -> TopicPartition:
        return tp

    async def on_start(self) -> None:
        await super().on_start()
        # Everything imported and built at start-up (~150k objects: Faust, aiokafka, River,
        # pydantic) never becomes garbage; moved out of the collector's sight, it no longer
        # makes every full collection ~40 ms longer (a tail-latency spike).
        gc.freeze()

    def new_learner(self) -> Learner:
        """Fresh replicas of the served models, for one input partition."""
        s = self.settings
        return Learner(
            s.model_names(self.models), registry=self.models, params=s.model_params,
            evaluation=s.evaluation(), drift=s.drift(), dedup_window=s.dedup_window,
        )  # fmt: skip

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
        state = EventsPartition(tp, self.new_learner())
        names = list(state.learner.models)
        found = await self.store.read(tp.partition, {self._replica(tp, n).prefix: n for n in names})
        for name, fresh in list(state.learner.models.items()):
            replica = self._replica(tp, name)
            load = self._loader(replica, fresh)
            choice = await self.store.choose(replica, found.get(name, []), load)
            state.sequences[name] = choice.next_sequence
            label = (name, str(tp.partition))
            if choice.restored is None:
                # No usable checkpoint: learn every event still in the partition (what
                # the last owner learnt before its first checkpoint), unless refusals
                # and RIVERRUN_CHECKPOINT_FALLBACK=fresh say to start from here on.
                starts_fresh = choice.refusals and s.checkpoint_fallback == "fresh"
                fresh.resume_offset = (committed[tp] or 0) if starts_fresh else 0
                self.metrics.restored_offset.labels(*label).set(-1)
                continue
            state.learner.models[name] = served = choice.restored
            self.metrics.restored_offset.labels(*label).set(served.resume_offset)
            log.info(
                "restored %s on %s[%d] at offset %d (%d updates)",
                served.version, tp.topic, tp.partition, served.resume_offset, served.updates,
            )  # fmt: skip
        self.metrics.restore_duration.observe(time.perf_counter() - started)
        # Resume at the first offset some model has not learnt.
        resume = min(served.resume_offset for served in state.learner.models.values())
        return state, {tp: resume}

    def _loader(self, replica: Replica, fresh: ServedModel) -> Any:
        assert self.store is not None
        key, s = self.store.key, self.settings

        def load(checkpoint: Checkpoint) -> ServedModel:
            return restore(checkpoint, replica, fresh.spec, key=key, evaluation=s.evaluation(),
                           drift=s.drift(), dedup_window=s.dedup_window)  # fmt: skip

        return load

    async def checkpoint(self, state: EventsPartition, *, transactional: bool) -> None:
        """Checkpoint every model of `state` at its position."""
        assert self.store is not None
        for name, served in state.learner.models.items():
            started = time.perf_counter()
            records = encode_checkpoint(
                served, self._replica(state.tp, name), key=self.store.key,
                next_offset=state.positions[state.tp], sequence=state.sequences[name],
                chunk_bytes=self.settings.checkpoint_chunk_bytes,
            )  # fmt: skip
            await self.store.write(records, name=name, partition=state.tp.partition,
                                   started=started, transactional=transactional)  # fmt: skip
            state.sequences[name] += 1

    def replica_names(self, state: EventsPartition) -> Iterable[tuple[str, int]]:
        return [(name, state.tp.partition) for name in state.learner.models]

    # --- the batch path --------------------------------------------------------------
    async def _process(self, records: Batches) -> dict[TopicPartition, int]:
        self.received_at = time.perf_counter()  # each prediction's latency counts from here
        return await super()._process(records)

    async def handle(
        self, state: EventsPartition, batches: Batches, outbox: Outbox
    ) -> Counter[TopicPartition]:
        """Predict-then-learn the partition's messages in offset order."""
        tp, s = state.tp, self.settings
        messages = batches.get(tp)
        if not messages:
            return Counter()
        pipeline = EventPipeline(state.learner, s.max_event_bytes)
        replayed = [m for m in messages if state.replayed(m)]
        if replayed:  # rebuilding the model: outputs were delivered by the last owner
            pipeline.run([m.value for m in replayed], self.received_at,
                         [m.offset for m in replayed])  # fmt: skip
            state.learner.drain_reports()
            state.learner.drain_drift()
            messages = messages[len(replayed) :]
        predicted: Counter[str] = Counter()
        learned: Counter[str] = Counter()
        latency: dict[str, Any] = {}  # each model's histogram, looked up once per batch
        outputs = pipeline.run([m.value for m in messages], self.received_at,
                               [m.offset for m in messages])  # fmt: skip
        for message, output in zip(messages, outputs, strict=True):
            if isinstance(output, Rejection):
                await dead_letter(outbox, message, output, self.metrics, s)
                continue
            await outbox.add(s.predictions_topic, output.event_id.encode(),
                             encode_prediction(output), tp, message.offset)  # fmt: skip
            predicted[output.model] += 1
            learned[output.model] += output.learned
            histogram = latency.get(output.model)
            if histogram is None:
                histogram = latency[output.model] = self.metrics.latency.labels(output.model)
            histogram.observe(output.latency_seconds)
        last = messages[-1].offset if messages else -1  # (reports come with an offset)
        for offset, report in state.learner.drain_reports_at():
            await publish_report(outbox, report, tp.partition, self.metrics, s.metrics_topic,
                                 tp, last if offset is None else offset)  # fmt: skip
        for offset, drift in state.learner.drain_drift_at():
            await self._drift(outbox, drift, tp, last if offset is None else offset)
        state.positions[tp] = (messages or replayed)[-1].offset + 1
        self._export(state, predicted, learned)
        return Counter({tp: len(replayed) + len(messages)})

    def _export(
        self, state: EventsPartition, predicted: Counter[str], learned: Counter[str]
    ) -> None:
        """Counters, lag and rolling quality of the partition after a batch."""
        assert self.consumer is not None
        for model, count in predicted.items():
            self.metrics.predicted.labels(model).inc(count)
            self.metrics.learned.labels(model).inc(learned[model])
        tp, next_offset = state.tp, state.positions[state.tp]
        lag = (self.consumer.highwater(tp) or next_offset) - next_offset
        self.metrics.lag.labels(tp.topic, str(tp.partition)).set(max(lag, 0))
        for model, (metric, value) in state.learner.quality().items():
            self.metrics.quality.labels(model, str(tp.partition), metric).set(value)

    async def _drift(
        self, outbox: Outbox, report: DriftReport, source: TopicPartition, offset: int
    ) -> None:
        partition = source.partition
        report = report.model_copy(update={"partition": partition})
        labels = (report.model, str(partition), report.detector, report.signal)
        if report.drift:
            self.metrics.drift.labels(*labels).inc()
        if report.trigger == "window":
            self.metrics.drift_statistic.labels(*labels).set(report.statistic)
        await outbox.add(self.settings.drift_topic, report.model.encode(),
                         report.model_dump_json().encode(), source, offset)  # fmt: skip
