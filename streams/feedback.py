"""The delayed-feedback join as a batched service of the Faust app.

It consumes `impressions`, `clicks`, `conversions` and `activity` in one consumer group
(`<group>-join`) with the range assignor, so partition p of every topic goes to the same
worker: topics must have the same partition count and be keyed by visitor. Each
partition's `online_models.joiner.FeedbackJoiner` gets that partition's messages of all
four topics, ordered by Kafka timestamp within a batch. Predictions go to `predictions`,
labelled outcomes to `outcomes`, reports to `metrics`, rejects to `dead-letters`.

State (models, pending impressions, visitor activity) is checkpointed per partition, with
the next offset of each topic, like the events path's replicas (README, Guarantees):
after the commit it covers, every N events or T seconds, on revoke and on stop.
"""

import asyncio
import hashlib
import json
import logging
import math
import time
from collections import Counter, defaultdict, deque
from dataclasses import asdict
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.structs import ConsumerRecord
from mode import Service
from pydantic import BaseModel

from online_models import Rejection
from online_models.checkpoint import Identity, Replica, choose, encode_state, restore_state
from online_models.joiner import FeedbackJoiner
from schemas import ActivityEvent, Prediction
from schemas.codec import InvalidMessage, decode
from schemas.feedback import Click, Conversion, Impression, Outcome
from streams.checkpoints import (
    checkpoint_key,
    checkpoint_reader,
    count_refusals,
    read_chunks,
    write_checkpoint,
)
from streams.hot_path import Outbox, accept, dead_letter, publish_report, resume_at
from streams.metrics import WorkerMetrics
from streams.settings import Settings

log = logging.getLogger(__name__)

#: The state's name in checkpoint keys, where a model name would be.
JOIN = "join"
#: Longest the join waits for a topic's next fetch before handling the others without it.
MAX_ALIGNMENT_WAIT = 2.0
#: `JoinStats` counters exported as `riverrun_join_events_total{kind}`.
COUNTED = ("impressions", "click_positives", "late_clicks", "duplicate_clicks", "conversions",
           "conversions_joined", "negatives_learnt", "negatives_skipped", "features_missing",
           "features_stale")  # fmt: skip


class JoinPartition:
    """The join state of one partition number, and where each of its topics is."""

    def __init__(self, partition: int, joiner: FeedbackJoiner, sequence: int) -> None:
        self.partition = partition
        self.joiner = joiner
        self.sequence = sequence
        self.positions: dict[TopicPartition, int | None] = {}  # next offset to process
        self.fetched: dict[TopicPartition, int | None] = {}  # next offset to fetch
        # Fetched, decoded, not yet handled: (event time, message, event or rejection).
        self.buffers: dict[TopicPartition, deque[tuple[float, ConsumerRecord, Any]]] = defaultdict(
            deque
        )
        self.waiting_since: dict[TopicPartition, float] = {}
        self.replay_until: dict[TopicPartition, int] = {}
        self.check_start: set[TopicPartition] = set()
        self.since_checkpoint = 0
        self.checkpointed_at = time.monotonic()
        self.exported: dict[str, int] = {}  # join counters already added to Prometheus


class _HandOver(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, service: "FeedbackJoin") -> None:
        self.service = service

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        async with self.service.batch_lock:
            await self.service.release({tp.partition for tp in revoked})

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        log.info("join partitions assigned: %s", sorted({tp.partition for tp in assigned}))


class FeedbackJoin(Service):
    """Scores impressions and learns from their delayed clicks and conversions."""

    def __init__(self, settings: Settings, metrics: WorkerMetrics, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.metrics = metrics
        s = settings
        self.types: dict[str, type[BaseModel]] = {
            s.impressions_topic: Impression,
            s.clicks_topic: Click,
            s.conversions_topic: Conversion,
            s.activity_topic: ActivityEvent,
        }
        self.rank = {topic: i for i, topic in enumerate(self.types)}
        self.owned: dict[int, JoinPartition] = {}
        self.batch_lock = asyncio.Lock()
        self.key = checkpoint_key(settings)
        self.consumer: AIOKafkaConsumer | None = None
        self.producer: AIOKafkaProducer | None = None
        self.reader: AIOKafkaConsumer | None = None
        self.partitions: dict[str, int] = {}
        params = {"join": asdict(settings.join()), "models": settings.model_params}
        blob = json.dumps(params, sort_keys=True, default=repr)
        digest = hashlib.sha256(blob.encode()).hexdigest()[:8]
        self.identity = Identity(f"{FeedbackJoiner.__module__}.FeedbackJoiner",
                                 json.loads(blob), f"join@{digest}")  # fmt: skip

    def new_joiner(self) -> FeedbackJoiner:
        s = self.settings
        return FeedbackJoiner(s.join(), s.evaluation(), params=s.model_params)

    async def on_start(self) -> None:
        s = self.settings
        self.producer = AIOKafkaProducer(
            bootstrap_servers=s.bootstrap_servers, client_id=f"{s.group_id}-join-producer",
            acks="all", linger_ms=s.producer_linger_ms,
        )  # fmt: skip
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=s.bootstrap_servers,
            client_id=f"{s.group_id}-join",
            group_id=f"{s.group_id}-join",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=s.fetch_max_wait_ms,
            max_poll_records=s.batch_size,
            session_timeout_ms=int(s.session_timeout_seconds * 1000),
            heartbeat_interval_ms=int(min(3.0, s.session_timeout_seconds / 3) * 1000),
            # Partition p of every topic to the same worker (round robin would split them).
            partition_assignment_strategy=(RangePartitionAssignor,),
        )
        self.consumer.subscribe(list(self.types), listener=_HandOver(self))
        await self.producer.start()
        topics = (s.predictions_topic, s.outcomes_topic, s.dead_letters_topic, s.metrics_topic,
                  s.checkpoints_topic)  # fmt: skip
        for topic in topics:
            self.partitions[topic] = len(await self.producer.partitions_for(topic))
        self.reader = checkpoint_reader(s, "join-checkpoints")
        await self.reader.start()
        await self.consumer.start()

    async def on_stop(self) -> None:
        async with self.batch_lock:
            try:
                if self.consumer is not None:
                    await self.release(set(self.owned))
            except Exception:
                log.exception("could not checkpoint the join on stop: a restart resumes from "
                              "the last checkpoint")  # fmt: skip
            finally:
                for client in (self.reader, self.consumer, self.producer):
                    if client is not None:
                        await client.stop()

    @Service.task
    async def _consume(self) -> None:
        assert self.consumer is not None
        poll_ms = max(1, int(self.settings.batch_seconds * 1000))
        while not self.should_stop:
            records = await self.consumer.getmany(
                timeout_ms=poll_ms, max_records=self.settings.batch_size
            )
            async with self.batch_lock:
                # Also without new records: buffered ones may be waiting for a topic that
                # has since caught up, or waited long enough.
                await self.process(records)
                await self.checkpoint_due()

    # --- ownership ---------------------------------------------------------------------
    def _replica(self, partition: int) -> Replica:
        return Replica(self.settings.group_id, JOIN, partition, JOIN)

    async def acquire(self, partition: int) -> JoinPartition:
        """Restore partition `partition`'s join state and seek its topics to where it
        resumes (its checkpoint's offsets, never after the committed ones)."""
        assert self.consumer is not None and self.reader is not None
        s = self.settings
        replica = self._replica(partition)
        where = TopicPartition(
            s.checkpoints_topic, partition % self.partitions[s.checkpoints_topic]
        )
        found = await read_chunks(self.reader, where, {replica.prefix: JOIN})
        fallback_fresh = s.checkpoint_fallback == "fresh"
        choice = choose(
            found.get(JOIN, []),
            lambda checkpoint: (
                restore_state(checkpoint, replica, self.identity, key=self.key),
                checkpoint.header.offsets or {},
            ),
            fresh_on_refusal=fallback_fresh,
        )
        count_refusals(self.metrics, replica, choice)
        joiner, offsets = choice.restored or (None, None)
        # Without a usable checkpoint: re-run the topics from the log start (outputs below
        # the committed offsets not sent again), unless RIVERRUN_CHECKPOINT_FALLBACK=fresh
        # after a refusal says to start afresh at the committed offsets.
        fresh = joiner is None and bool(choice.refusals) and fallback_fresh
        state = JoinPartition(partition, joiner or self.new_joiner(), choice.next_sequence)
        assigned = self.consumer.assignment()
        for topic in self.types:
            tp = TopicPartition(topic, partition)
            if tp not in assigned:
                continue
            committed = await self.consumer.committed(tp)
            if fresh:
                wanted = committed or 0
            else:
                wanted = offsets.get(topic, 0) if offsets is not None else 0
            start = await resume_at(self.consumer, tp, wanted, committed)
            state.positions[tp] = state.fetched[tp] = start
            state.replay_until[tp] = committed or 0
            state.check_start.add(tp)
        restored = "restored" if joiner is not None else "new"
        log.info("join partition %d: %s state, %d impressions pending", partition, restored,
                 len(state.joiner.pending))  # fmt: skip
        # Counters restored with the state were exported by the last owner.
        state.exported = {kind: getattr(state.joiner.stats, kind) for kind in COUNTED}
        self.owned[partition] = state
        return state

    async def release(self, partitions: set[int]) -> None:
        for partition in sorted(partitions):
            state = self.owned.pop(partition, None)
            if state is not None and state.since_checkpoint:
                await self.checkpoint(state)

    async def checkpoint_due(self) -> None:
        s = self.settings
        oldest = time.monotonic() - s.checkpoint_every_seconds
        for state in list(self.owned.values()):
            if state.since_checkpoint >= s.checkpoint_every_events or (
                state.since_checkpoint and state.checkpointed_at <= oldest
            ):
                await self.checkpoint(state)

    async def checkpoint(self, state: JoinPartition) -> None:
        """Write the partition's state; called only with its offsets committed."""
        assert self.producer is not None
        s = self.settings
        started = time.perf_counter()
        offsets = {tp.topic: pos for tp, pos in state.positions.items() if pos is not None}
        records = encode_state(
            state.joiner, self._replica(state.partition), self.identity, key=self.key,
            next_offset=0, sequence=state.sequence, offsets=offsets,
            chunk_bytes=s.checkpoint_chunk_bytes,
        )  # fmt: skip
        await write_checkpoint(self.producer, s, self.metrics, records, name=JOIN,
                               partition=state.partition, started=started)  # fmt: skip
        state.sequence += 1
        state.since_checkpoint = 0
        state.checkpointed_at = time.monotonic()

    # --- the batch path ----------------------------------------------------------------
    async def _accepted(
        self, tp: TopicPartition, messages: list[ConsumerRecord]
    ) -> tuple[JoinPartition | None, list[ConsumerRecord]]:
        """The partition state and the messages to process (see BatchedEvents.process)."""
        assert self.consumer is not None
        state = self.owned.get(tp.partition)
        if state is None:
            if tp not in self.consumer.assignment():
                return None, []
            state = await self.acquire(tp.partition)
        accepted = accept(
            self.consumer, tp, messages, state.fetched.get(tp), tp in state.check_start
        )
        state.check_start.discard(tp)
        return state, accepted or []

    async def process(self, records: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        """Buffer what was fetched, then handle each partition's buffered messages of all
        topics in timestamp order as far as that order is known; commit what was handled."""
        assert self.consumer is not None and self.producer is not None
        outbox = Outbox(self.producer, self.partitions)
        for tp, messages in records.items():
            state, messages = await self._accepted(tp, messages)
            if state is None or not messages:
                continue
            self.metrics.consumed.labels(tp.topic).inc(len(messages))
            state.buffers[tp].extend(self._decode(tp, m) for m in messages)
            state.fetched[tp] = messages[-1].offset + 1
        offsets: dict[TopicPartition, int] = {}
        for state in list(self.owned.values()):
            handled = await self._drain(state, outbox)
            for tp in handled:
                position = state.positions[tp]
                assert position is not None
                offsets[tp] = max(position, state.replay_until.get(tp, 0))
            if handled:
                state.since_checkpoint += sum(handled.values())
                self._export(state)
        deliveries = await outbox.flush()
        if offsets:
            try:
                await asyncio.gather(*deliveries)
                await self.consumer.commit(offsets)
            except Exception:
                log.exception("join outputs could not be delivered or offsets committed: "
                              "stopping; a restart resumes from the last commit")  # fmt: skip
                raise

    async def _drain(self, state: JoinPartition, outbox: Outbox) -> Counter[TopicPartition]:
        """Handle buffered messages, always the one with the smallest event time among the
        partition's topics; stop when a topic with unfetched data has nothing buffered
        (its next message could be earlier). Returns the count handled per topic."""
        handled: Counter[TopicPartition] = Counter()
        while True:
            heads = []
            for tp in state.positions:
                buffer = state.buffers[tp]
                if buffer:
                    state.waiting_since.pop(tp, None)
                    ts, message, _ = buffer[0]
                    heads.append((ts, self.rank[tp.topic], message.offset, tp))
                elif not self._caught_up(state, tp):
                    return handled
            if not heads:
                return handled
            tp = min(heads)[3]
            _, message, event = state.buffers[tp].popleft()
            await self._handle(state, tp, message, event, outbox)
            state.positions[tp] = message.offset + 1
            handled[tp] += 1

    def _caught_up(self, state: JoinPartition, tp: TopicPartition) -> bool:
        """Whether `tp` has nothing more to fetch now (or, once a fetch of it has been
        answered, kept the others waiting for longer than MAX_ALIGNMENT_WAIT seconds)."""
        assert self.consumer is not None
        highwater = self.consumer.highwater(tp)
        if highwater is None:
            return False  # no fetch answered yet: its first messages may be the earliest
        fetched = state.fetched.get(tp)
        if fetched is not None and fetched >= highwater:
            state.waiting_since.pop(tp, None)
            return True
        since = state.waiting_since.setdefault(tp, time.monotonic())
        return time.monotonic() - since > MAX_ALIGNMENT_WAIT

    def _decode(self, tp: TopicPartition, message: ConsumerRecord) -> tuple[float, Any, Any]:
        """(event time, message, event); a message that fails validation is a rejection,
        handled as soon as it is reached (at time -inf)."""
        try:
            event = decode(
                self.types[tp.topic], message.value, max_bytes=self.settings.max_event_bytes
            )
        except InvalidMessage as err:
            return -math.inf, message, Rejection(err.error_type, err.reason)
        return event.ts.timestamp(), message, event  # type: ignore[attr-defined]

    async def _handle(
        self,
        state: JoinPartition,
        tp: TopicPartition,
        message: ConsumerRecord,
        event: Any,
        outbox: Outbox,
    ) -> None:
        s = self.settings
        replayed = message.offset < state.replay_until.get(tp, 0)  # its outputs were sent
        if isinstance(event, Rejection):
            if not replayed:
                await self._dead_letter(outbox, message, event)
            return
        outputs = state.joiner.handle(event)
        reports = state.joiner.drain_reports()
        if replayed:
            state.joiner.drain_delays()
            return
        if isinstance(event, ActivityEvent):
            self.metrics.activity.labels(event.type).inc()
        for output in outputs:
            if isinstance(output, Prediction):
                await outbox.add(s.predictions_topic, output.event_id.encode(),
                                 output.model_dump_json().encode())  # fmt: skip
                self.metrics.predicted.labels(output.model).inc()
            elif isinstance(output, Outcome):
                await outbox.add(s.outcomes_topic, output.impression_id.encode(),
                                 output.model_dump_json().encode())  # fmt: skip
                self.metrics.learned.labels(output.model).inc(output.learned)
            else:
                await self._dead_letter(outbox, message, output)
        for report in reports:
            await publish_report(outbox, report, state.partition, self.metrics, s.metrics_topic)

    async def _dead_letter(
        self, outbox: Outbox, message: ConsumerRecord, rejection: Rejection
    ) -> None:
        await dead_letter(outbox, message, rejection, self.metrics, self.settings)

    def _export(self, state: JoinPartition) -> None:
        """Mirror the joiner's counters, delays, pending size and coverage in Prometheus."""
        stats = state.joiner.stats
        for kind in COUNTED:
            value = getattr(stats, kind)
            name = "late_positives" if kind == "late_clicks" else kind
            delta = value - state.exported.get(kind, 0)
            if delta > 0:
                self.metrics.join_counts.labels(name).inc(delta)
            state.exported[kind] = value
        for label_type, delay in state.joiner.drain_delays():
            self.metrics.join_delay.labels(label_type).observe(delay)
        partition = str(state.partition)
        self.metrics.join_pending.labels(partition).set(len(state.joiner.pending))
        if stats.impressions:
            self.metrics.join_coverage.labels(partition).set(stats.resolved / stats.impressions)
