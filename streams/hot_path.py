"""The high-volume event path: batches straight from aiokafka, outside Faust's per-message
stream machinery (measured at ~290 µs per message, far more than River's ~15 µs).

A `mode.Service` started and stopped with the Faust app: it fetches a batch, runs the
worker's `EventPipeline` over each partition's messages in offset order, sends every
output without awaiting each delivery, waits for the batch's deliveries, then commits the
batch's offsets. A message's offset is thus committed only after its prediction (or dead
letter) is acknowledged by the broker: at-least-once.

Model state is owned per input partition (one replica of each model per partition) and
checkpointed to the checkpoints topic once the offsets it covers are committed; a newly
assigned partition resumes from its newest valid checkpoint (see `streams.checkpoints`).

Waiting for acknowledgements and the commit happens off the fetch loop, in a chain of
commit tasks (in batch order, at most `MAX_BATCHES_IN_FLIGHT` pending), so the next batch
is fetched and predicted while the previous one is being acknowledged.
"""

import asyncio
import contextlib
import gc
import logging
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.partitioner import murmur2
from aiokafka.structs import ConsumerRecord
from mode import Service

from online_models import Learner, Rejection
from schemas import DeadLetter, MetricsReport, Prediction
from schemas.drift import DriftReport
from streams.checkpoints import CheckpointStore, PartitionState
from streams.metrics import WorkerMetrics
from streams.pipeline import EventPipeline
from streams.settings import Settings

log = logging.getLogger(__name__)

#: Batches whose outputs may await acknowledgement while later ones are processed.
MAX_BATCHES_IN_FLIGHT = 4


def reject(message: Any, rejection: Rejection, metrics: WorkerMetrics, max_bytes: int) -> bytes:
    """Count and log a rejected message; return its dead letter, encoded.

    `message` is an aiokafka ConsumerRecord or a Faust Message: anything with `topic`,
    `partition`, `offset` and `value`.
    """
    letter = DeadLetter.for_message(
        value=message.value,
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        error_type=rejection.error_type,
        reason=rejection.reason,
        ts=datetime.now(UTC),
        max_payload_bytes=max_bytes,
    )
    metrics.dead_lettered.labels(message.topic, rejection.error_type.value).inc()
    log.warning(
        "dead-lettered %s[%d]@%d: %s",
        message.topic, message.partition, message.offset, rejection.reason,
    )  # fmt: skip
    return letter.model_dump_json().encode()


def accept(
    consumer: AIOKafkaConsumer,
    tp: TopicPartition,
    messages: list[ConsumerRecord],
    position: int | None,
    check_start: bool,
) -> list[ConsumerRecord] | None:
    """The messages of a fetched batch to process, `position` being the next offset the
    partition expects; None when the batch was dropped and `tp` sought again.

    With `check_start` (the first batch after an assignment), a batch beyond `position`
    was fetched from the committed offset before the assignment's seek to an earlier
    checkpoint took effect: it is dropped and fetched again from `position`. A fetch in
    flight when the partition was sought can return records twice: each offset is
    processed once.
    """
    if position is None or messages[0].offset == position:
        return messages
    if check_start and messages[0].offset > position:
        log.info("%s[%d]: dropping a batch at %d fetched before seeking to %d",
                 tp.topic, tp.partition, messages[0].offset, position)  # fmt: skip
        consumer.seek(tp, position)
        return None
    return [m for m in messages if m.offset >= position]


async def resume_at(
    consumer: AIOKafkaConsumer, tp: TopicPartition, wanted: int, committed: int | None
) -> int:
    """Seek `tp` to `wanted`, but never before the log start (retention may have deleted
    older events) nor after the committed offset (where delivered outputs stop); return
    where it resumes. No seek when that is the committed offset: the consumer starts there."""
    log_start = (await consumer.beginning_offsets([tp]))[tp]
    start = max(wanted, log_start)
    if committed is not None:
        start = min(start, committed)
    if start != committed:
        consumer.seek(tp, start)
    return start


class Outbox:
    """The outputs of one input batch, appended to one producer batch per (topic,
    partition) and sent with `send_batch`: no per-message future, partitioner call or
    debug log line, which cost more than the rest of aiokafka's send path together.

    Keys go to the partition Kafka's default partitioner would choose (murmur2 of the key
    modulo the partition count), so consumers see the usual key -> partition mapping.
    """

    def __init__(self, producer: AIOKafkaProducer, partitions: dict[str, int]) -> None:
        self.producer = producer
        self.partitions = partitions
        self.builders: dict[tuple[str, int], Any] = {}
        self.deliveries: list[asyncio.Future[Any]] = []

    def partition(self, topic: str, key: bytes | None, fallback: int) -> int:
        count = self.partitions[topic]
        if count == 1:
            return 0
        if key is None:
            return fallback % count
        return (murmur2(key) & 0x7FFFFFFF) % count

    async def add(self, topic: str, key: bytes | None, value: bytes, fallback: int = 0) -> None:
        """Queue one message; a full producer batch is sent at once."""
        where = (topic, self.partition(topic, key, fallback))
        builder = self.builders.get(where)
        if builder is None:
            builder = self.builders[where] = self.producer.create_batch()
        if builder.append(timestamp=None, key=key, value=value) is None:  # full
            await self._send(where, builder)
            builder = self.builders[where] = self.producer.create_batch()
            builder.append(timestamp=None, key=key, value=value)  # an empty batch takes any size

    async def _send(self, where: tuple[str, int], builder: Any) -> None:
        topic, partition = where
        self.deliveries.append(await self.producer.send_batch(builder, topic, partition=partition))

    async def flush(self) -> list[asyncio.Future[Any]]:
        """Send what is queued; return the futures of every delivery of this outbox."""
        for where, builder in self.builders.items():
            await self._send(where, builder)
        self.builders.clear()
        return self.deliveries


class _HandOver(ConsumerRebalanceListener):  # type: ignore[misc]
    """Before partitions move elsewhere, let the batch in flight finish, every processed
    batch commit and their models checkpoint: the next owner starts exactly after the
    last output, with the model as it was. Restore the models of assigned partitions."""

    def __init__(self, service: "BatchedEvents") -> None:
        self.service = service

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        async with self.service.batch_lock:
            try:
                await self.service.release(revoked)
            except Exception:  # aiokafka would log it and go on: say what it means
                log.exception(
                    "could not commit or checkpoint revoked partitions: their next owner "
                    "resumes from the last committed offset and checkpoint"
                )
                raise

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        log.info("events partitions assigned: %s", sorted(tp.partition for tp in assigned))
        async with self.service.batch_lock:
            try:
                await self.service.acquire(assigned)
            except Exception:
                log.exception(
                    "could not restore assigned partitions: retrying at their first batch"
                )


class BatchedEvents(Service):
    """Consumes the events topic in batches and publishes predictions, dead letters and
    metrics reports."""

    def __init__(
        self,
        settings: Settings,
        metrics: WorkerMetrics,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.metrics = metrics
        self.owned: dict[TopicPartition, PartitionState] = {}
        self.checkpoints: CheckpointStore | None = None
        self.batch_lock = asyncio.Lock()
        self.consumer: AIOKafkaConsumer | None = None
        self.producer: AIOKafkaProducer | None = None
        self.partitions: dict[str, int] = {}  # partition count of each output topic
        self.commits: asyncio.Future[None] | None = None  # the last of the chained commits
        self.in_flight = asyncio.Semaphore(MAX_BATCHES_IN_FLIGHT)

    async def on_start(self) -> None:
        s = self.settings
        transactions: dict[str, Any] = {}
        if s.exactly_once:
            transactions = {
                "transactional_id": s.worker_transactional_id(),
                "transaction_timeout_ms": int(s.transaction_timeout_seconds * 1000),
            }
        self.producer = AIOKafkaProducer(
            bootstrap_servers=s.bootstrap_servers,
            client_id=f"{s.group_id}-producer",
            acks="all",
            **transactions,
            linger_ms=s.producer_linger_ms,
            max_batch_size=s.producer_batch_bytes,
            compression_type=s.producer_compression,
        )
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=s.bootstrap_servers,
            client_id=f"{s.group_id}-events",
            group_id=s.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed" if s.exactly_once else "read_uncommitted",
            fetch_max_wait_ms=s.fetch_max_wait_ms,
            max_poll_records=s.batch_size,
            session_timeout_ms=int(s.session_timeout_seconds * 1000),
            heartbeat_interval_ms=int(min(3.0, s.session_timeout_seconds / 3) * 1000),
        )
        self.consumer.subscribe([s.events_topic], listener=_HandOver(self))
        await self.producer.start()
        for topic in (s.predictions_topic, s.dead_letters_topic, s.metrics_topic, s.drift_topic):
            self.partitions[topic] = len(await self.producer.partitions_for(topic))
        self.checkpoints = CheckpointStore(s, self.producer, self.metrics, self.new_learner)
        await self.checkpoints.start()
        await self.consumer.start()
        # Everything imported and built at start-up (~150k objects: Faust, aiokafka, River,
        # pydantic) never becomes garbage; moved out of the collector's sight, it no longer
        # makes every full collection ~40 ms longer (a tail-latency spike).
        gc.freeze()

    def new_learner(self) -> Learner:
        """Fresh replicas of the served models, for one input partition."""
        s = self.settings
        return Learner(s.models, params=s.model_params, evaluation=s.evaluation(), drift=s.drift())

    async def on_stop(self) -> None:
        async with self.batch_lock:  # the batch in flight is sent and committed first
            try:
                if self.checkpoints is not None:  # started
                    await self.release(set(self.owned))
            except Exception:
                log.exception(
                    "could not commit or checkpoint on stop: a restart resumes from the last "
                    "committed offset and checkpoint"
                )
            finally:
                if self.checkpoints is not None:
                    await self.checkpoints.stop()
                if self.consumer is not None:
                    await self.consumer.stop()
                if self.producer is not None:
                    await self.producer.stop()

    async def acquire(self, assigned: set[TopicPartition]) -> None:
        """Restore the models of newly assigned partitions and seek to where they resume:
        the lowest offset a model has not learnt, or the committed offset."""
        assert self.consumer is not None and self.checkpoints is not None
        for tp in sorted(assigned - set(self.owned)):
            committed = await self.consumer.committed(tp)
            state = await self.checkpoints.load(tp, committed)
            self.owned[tp] = state
            # Resume at the first offset some model has not learnt, or where outputs stop.
            start = await resume_at(self.consumer, tp, min(state.resume.values()), committed)
            state.position = start
            state.check_start = True
            if start != committed:
                log.info(
                    "%s[%d]: resuming at offset %d (committed: %s); outputs below %d were "
                    "delivered before and are not sent again",
                    tp.topic, tp.partition, start, committed, state.replay_until,
                )  # fmt: skip

    async def release(self, revoked: set[TopicPartition]) -> None:
        """Commit and checkpoint partitions this worker gives up (or stops serving)."""
        assert self.checkpoints is not None
        await self.drain()
        for tp in sorted(revoked):
            state = self.owned.pop(tp, None)
            if state is not None and state.since_checkpoint:
                await self.checkpoints.write(state)

    async def checkpoint_due(self) -> None:
        """Checkpoint partitions that processed RIVERRUN_CHECKPOINT_EVERY_EVENTS events,
        or any event RIVERRUN_CHECKPOINT_EVERY_SECONDS ago, since their last one."""
        assert self.checkpoints is not None
        s = self.settings
        oldest = time.monotonic() - s.checkpoint_every_seconds
        due = [
            state
            for state in self.owned.values()
            if state.since_checkpoint >= s.checkpoint_every_events
            or (state.since_checkpoint and state.checkpointed_at <= oldest)
        ]
        if due:
            await self.drain()  # a checkpoint covers committed offsets only
            for state in due:
                await self.checkpoints.write(state)
        self.checkpoints.update_ages(self.owned.values())

    @Service.task
    async def _consume(self) -> None:
        assert self.consumer is not None
        poll_ms = max(1, int(self.settings.batch_seconds * 1000))
        while not self.should_stop:
            if self.commits is not None and self.commits.done() and self.commits.exception():
                raise self.commits.exception()  # type: ignore[misc]  # stops the worker
            records = await self.consumer.getmany(
                timeout_ms=poll_ms, max_records=self.settings.batch_size
            )
            async with self.batch_lock:
                if records:
                    await self.process(records)
                await self.checkpoint_due()

    async def process(self, records: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        """Predict-then-learn every message in offset order; commit once all is delivered
        (exactly_once: outputs and offsets in one transaction)."""
        assert self.producer is not None
        if not self.settings.exactly_once:
            await self._process(records)
            return
        await self.producer.begin_transaction()
        try:
            await self._process(records)
            await self.producer.commit_transaction()
        except BaseException:
            log.exception(
                "a transaction failed: aborting it and stopping; a restart resumes after "
                "the last committed transaction (check the broker)"
            )
            with contextlib.suppress(Exception):
                await self.producer.abort_transaction()
            raise

    async def _process(self, records: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        assert self.consumer is not None and self.producer is not None
        received_at = time.perf_counter()
        outbox = Outbox(self.producer, self.partitions)
        predicted: Counter[str] = Counter()
        learned: Counter[str] = Counter()
        offsets: dict[TopicPartition, int] = {}
        for tp, messages in records.items():
            state = self.owned.get(tp)
            if state is None:
                if tp not in self.consumer.assignment():  # fetched before a revoke
                    continue
                await self.acquire({tp})  # its restore failed at assignment: again
                state = self.owned[tp]
            accepted = accept(self.consumer, tp, messages, state.position, state.check_start)
            if accepted is None:
                state.check_start = False
                continue
            if not accepted:
                continue
            messages = accepted
            state.check_start = False
            self.metrics.consumed.labels(tp.topic).inc(len(messages))
            pipeline = EventPipeline(state.learner, self.settings.max_event_bytes)
            replayed = [m for m in messages if m.offset < state.replay_until]
            if replayed:  # rebuilding the model: outputs were delivered by the last owner
                pipeline.run([m.value for m in replayed], received_at, [m.offset for m in replayed])
                state.learner.drain_reports()
                state.learner.drain_drift()
                messages = messages[len(replayed) :]
            values = [m.value for m in messages]
            outputs = pipeline.run(values, received_at, [m.offset for m in messages])
            for message, output in zip(messages, outputs, strict=True):
                if isinstance(output, Prediction):
                    await outbox.add(
                        self.settings.predictions_topic,
                        output.event_id.encode(),
                        output.model_dump_json().encode(),
                    )
                    predicted[output.model] += 1
                    learned[output.model] += output.learned
                    self.metrics.latency.labels(output.model).observe(output.latency_seconds)
                else:
                    await self._dead_letter(outbox, message, output)
            for report in state.learner.drain_reports():
                await self._report(outbox, report, tp.partition)
            for drift in state.learner.drain_drift():
                await self._drift(outbox, drift, tp.partition)
            state.position = (messages or replayed)[-1].offset + 1
            # The committed offset says which outputs were delivered: never move it back
            # while re-running events whose outputs the last owner delivered.
            offsets[tp] = max(state.position, state.replay_until)
            state.since_checkpoint += len(replayed) + len(messages)
        deliveries = await outbox.flush()
        if not offsets:  # every batch was dropped
            return
        if self.settings.exactly_once:  # committed with the outputs, by process()
            await self.producer.send_offsets_to_transaction(offsets, self.settings.group_id)
        else:
            await self.in_flight.acquire()
            self.commits = asyncio.ensure_future(self._commit(self.commits, deliveries, offsets))
        for model, count in predicted.items():
            self.metrics.predicted.labels(model).inc(count)
            self.metrics.learned.labels(model).inc(learned[model])
        for tp, next_offset in offsets.items():
            lag = (self.consumer.highwater(tp) or next_offset) - next_offset
            self.metrics.lag.labels(tp.topic, str(tp.partition)).set(max(lag, 0))
            for model, (metric, value) in self.owned[tp].learner.quality().items():
                self.metrics.quality.labels(model, str(tp.partition), metric).set(value)

    async def _commit(
        self,
        previous: asyncio.Future[None] | None,
        deliveries: list[asyncio.Future[Any]],
        offsets: dict[TopicPartition, int],
    ) -> None:
        """Commit `offsets` once every output is acknowledged and earlier batches are
        committed; a failure fails every later commit too, and stops the worker."""
        assert self.consumer is not None
        try:
            if previous is not None:
                await previous  # raises again what an earlier batch raised (logged there)
            try:
                await asyncio.gather(*deliveries)
                await self.consumer.commit(offsets)
            except Exception:
                log.exception(
                    "outputs could not be delivered or offsets committed: stopping so that "
                    "a restart re-processes from the last committed offset (check the broker)"
                )
                raise
        finally:
            self.in_flight.release()

    async def drain(self) -> None:
        """Wait until every batch processed so far is acknowledged and committed."""
        if self.commits is not None:
            await self.commits

    async def _dead_letter(
        self, outbox: Outbox, message: ConsumerRecord, rejection: Rejection
    ) -> None:
        await dead_letter(outbox, message, rejection, self.metrics, self.settings)

    async def _drift(self, outbox: Outbox, report: DriftReport, partition: int) -> None:
        report = report.model_copy(update={"partition": partition})
        labels = (report.model, str(partition), report.detector, report.signal)
        if report.drift:
            self.metrics.drift.labels(*labels).inc()
        if report.trigger == "window":
            self.metrics.drift_statistic.labels(*labels).set(report.statistic)
        await outbox.add(
            self.settings.drift_topic, report.model.encode(), report.model_dump_json().encode()
        )

    async def _report(self, outbox: Outbox, report: MetricsReport, partition: int) -> None:
        await publish_report(outbox, report, partition, self.metrics, self.settings.metrics_topic)


async def dead_letter(
    outbox: Outbox,
    message: ConsumerRecord,
    rejection: Rejection,
    metrics: WorkerMetrics,
    settings: Settings,
) -> None:
    """Count, log and queue the dead letter of a rejected message (keyed as it was)."""
    letter = reject(message, rejection, metrics, settings.max_event_bytes)
    await outbox.add(settings.dead_letters_topic, message.key, letter, fallback=message.partition)


async def publish_report(
    outbox: Outbox, report: MetricsReport, partition: int, metrics: WorkerMetrics, topic: str
) -> None:
    """Queue a metrics report of a partition's replica and mirror it in the gauges."""
    report = report.model_copy(update={"partition": partition})
    for name, value in report.metrics.items():
        if value is not None:
            metrics.model_metric.labels(report.model, str(partition), report.segment, name).set(
                value
            )
    await outbox.add(topic, report.model.encode(), report.model_dump_json().encode())
