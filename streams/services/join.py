"""The delayed-feedback join as a `PartitionedService` of the Faust app.

It consumes `impressions`, `clicks`, `conversions` and `activity` in one consumer group
(`<group>-join`) with the range assignor, so partition p of every topic goes to the same
worker: topics must have the same partition count and be keyed by visitor. Each
partition's `online_models.feedback.joiner.FeedbackJoiner` gets that partition's messages of all
four topics merged in event-time order. Predictions go to `predictions`, labelled
outcomes to `outcomes`, reports to `metrics`, rejects to `dead-letters`.

State (models, pending impressions, visitor activity) is one checkpoint per partition,
with the next offset of each topic; restore, commits, transactions and checkpoints are
the events path's (`streams.runtime.partitioned`).
"""

import hashlib
import json
import logging
import math
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterable
from dataclasses import asdict
from functools import partial
from typing import Any

from pydantic import BaseModel

from online_models import Rejection
from online_models.feedback.joiner import FeedbackJoiner
from online_models.learning.checkpoint import Identity, Replica, encode_state, restore_state
from schemas import ActivityEvent, Prediction, encode_prediction
from schemas.codec import InvalidMessage, decode
from schemas.feedback import Click, Conversion, Impression, Outcome
from streams.kafka.outbox import Outbox, dead_letter, publish_report
from streams.kafka.records import Record, TopicPartition
from streams.runtime.partitioned import Batches, PartitionedService, PartitionState
from streams.services.formats import Formats

log = logging.getLogger(__name__)

#: The state's name in checkpoint keys, where a model name would be.
JOIN = "join"
#: Longest the join waits for a topic's next fetch before handling the others without it.
MAX_ALIGNMENT_WAIT = 2.0
#: `JoinStats` counters exported as `riverrun_join_events_total{kind}`.
COUNTED = (
    "impressions",
    "click_positives",
    "late_clicks",
    "duplicate_clicks",
    "conversions",
    "conversions_joined",
    "negatives_learnt",
    "negatives_skipped",
    "features_missing",
    "features_stale",
    "evicted_impressions",
    "forgotten_visitors",
)


class JoinPartition(PartitionState):
    """The join state of one partition number across its four topics."""

    def __init__(self, partition: int, joiner: FeedbackJoiner, sequence: int) -> None:
        super().__init__()
        self.partition = partition
        self.joiner = joiner
        self.sequence = sequence
        # Fetched, decoded, not yet handled: (event time, message, event or rejection).
        self.buffers: dict[TopicPartition, deque[tuple[float, Record, Any]]] = defaultdict(deque)
        self.waiting_since: dict[TopicPartition, float] = {}
        #: Join counters already added to Prometheus (restored ones: by the last owner).
        self.exported = {kind: getattr(joiner.stats, kind) for kind in COUNTED}


class FeedbackJoin(PartitionedService[int, JoinPartition]):
    """Scores impressions and learns from their delayed clicks and conversions."""

    name = "join"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        s = settings = self.settings
        self.types: dict[str, type[BaseModel]] = {
            s.impressions_topic: Impression,
            s.clicks_topic: Click,
            s.conversions_topic: Conversion,
            s.activity_topic: ActivityEvent,
        }
        self.rank = {topic: i for i, topic in enumerate(self.types)}
        #: Each topic's decoder in RIVERRUN_JOIN_FORMAT (none: riverrun's JSON).
        self.decoders: dict[str, Callable[[bytes | None], Any]] = {}
        # The versions name the models' code too: new code never restores an old state.
        versions = sorted(served.version for served in self.new_joiner().models.values())
        params = {
            "join": asdict(settings.join()),
            "models": settings.model_params,
            "versions": versions,
        }
        blob = json.dumps(params, sort_keys=True, default=repr)
        digest = hashlib.sha256(blob.encode()).hexdigest()[:8]
        self.identity = Identity(
            f"{FeedbackJoiner.__module__}.FeedbackJoiner", json.loads(blob), f"join@{digest}"
        )

    #: The formats of the topics (set by the worker; None: riverrun's JSON everywhere).
    formats: Formats | None = None
    #: How predictions are written (RIVERRUN_PREDICTIONS_FORMAT).
    encode = staticmethod(encode_prediction)

    async def on_start(self) -> None:
        if self.formats is not None:
            encode = await self.formats.prediction_encoder(abandon=lambda: self.should_stop)
            if encode is None:
                return  # stopped while the registry was away: nothing was started
            self.encode = encode  # type: ignore[assignment]
            self.decoders = {
                topic: self.formats.message_decoder(model) for topic, model in self.types.items()
            }
        await super().on_start()

    async def prepare(self, fetched: list[Batches]) -> bool:
        if self.formats is None:
            return True
        values = (m.value for batches in fetched for ms in batches.values() for m in ms)
        return await self.formats.prepare(values, abandon=lambda: self.should_stop)

    def topics(self) -> list[str]:
        return list(self.types)

    def group_id(self) -> str:
        return f"{self.settings.group_id}-join"

    def output_topics(self) -> list[str]:
        s = self.settings
        return [s.predictions_topic, s.outcomes_topic, s.dead_letters_topic, s.metrics_topic]

    def consumer_options(self) -> dict[str, Any]:
        # Partition p of every topic to the same worker (round robin would split them).
        return {"partition.assignment.strategy": "range"}

    def key(self, tp: TopicPartition) -> int:
        return tp.partition

    def new_joiner(self) -> FeedbackJoiner:
        s = self.settings
        return FeedbackJoiner(s.join(), s.evaluation(), registry=self.models, params=s.model_params)

    # --- restore and checkpoint ------------------------------------------------------
    def _replica(self, partition: int) -> Replica:
        return Replica(self.settings.group_id, JOIN, partition, JOIN)

    async def restore(
        self, key: int, tps: list[TopicPartition], committed: dict[TopicPartition, int | None]
    ) -> tuple[JoinPartition, dict[TopicPartition, int]]:
        """The partition's join state and the offset of each topic it resumes at (its
        checkpoint's, never after the committed one)."""
        assert self.store is not None
        replica, store = self._replica(key), self.store
        found = await store.read(key, {replica.prefix: JOIN})

        def load(checkpoint: Any) -> tuple[FeedbackJoiner, dict[str, int]]:
            joiner = restore_state(checkpoint, replica, self.identity, key=store.key)
            return joiner, checkpoint.header.offsets or {}

        choice = await store.choose(replica, found.get(JOIN, []), load)
        joiner, offsets = choice.restored or (None, None)
        # Without a usable checkpoint: re-run the topics from the log start (outputs below
        # the committed offsets not sent again), unless RIVERRUN_CHECKPOINT_FALLBACK=fresh
        # after a refusal says to start afresh at the committed offsets.
        fresh = joiner is None and bool(choice.refusals)
        fresh = fresh and self.settings.checkpoint_fallback == "fresh"
        state = JoinPartition(key, joiner or self.new_joiner(), choice.next_sequence)
        wanted = {
            tp: (committed[tp] or 0) if fresh else (offsets or {}).get(tp.topic, 0) for tp in tps
        }
        restored = "restored" if joiner is not None else "new"
        log.info(
            "join partition %d: %s state, %d impressions pending",
            key,
            restored,
            len(state.joiner.pending),
        )
        return state, wanted

    async def checkpoint(self, state: JoinPartition, *, transactional: bool) -> None:
        assert self.store is not None
        started = time.perf_counter()
        offsets = {tp.topic: position for tp, position in state.positions.items()}
        encode = partial(
            encode_state,
            state.joiner,
            self._replica(state.partition),
            self.identity,
            key=self.store.key,
            next_offset=0,
            sequence=state.sequence,
            offsets=offsets,
            chunk_bytes=self.settings.checkpoint_chunk_bytes,
        )
        records = await self.serializer.records(f"join[{state.partition}]", encode)
        await self.store.write(
            records,
            name=JOIN,
            partition=state.partition,
            started=started,
            transactional=transactional,
        )
        state.sequence += 1

    def replica_names(self, state: JoinPartition) -> Iterable[tuple[str, int]]:
        return [(JOIN, state.partition)]

    # --- the batch path --------------------------------------------------------------
    def pending(self) -> bool:
        # Buffered messages may be waiting for a topic that has since caught up, or
        # waited long enough: they are handled without new records too.
        return any(buffer for state in self.owned.values() for buffer in state.buffers.values())

    async def handle(
        self, state: JoinPartition, batches: Batches, outbox: Outbox
    ) -> Counter[TopicPartition]:
        """Buffer what was fetched, then handle the partition's buffered messages of all
        topics in event-time order as far as that order is known."""
        for tp, messages in batches.items():  # (`prepare` fetched their schemas)
            state.buffers[tp].extend(self._decode(tp, m) for m in messages)
        handled = await self._drain(state, outbox)
        if handled:
            self._export(state)
        return handled

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
            await self._handle(state, message, event, outbox)
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

    def _decode(self, tp: TopicPartition, message: Record) -> tuple[float, Any, Any]:
        """(event time, message, event); a message that fails validation is a rejection,
        handled as soon as it is reached (at time -inf)."""
        try:
            decoder = self.decoders.get(tp.topic)
            if decoder is not None:
                event = decoder(message.value)
            else:
                event = decode(
                    self.types[tp.topic], message.value, max_bytes=self.settings.max_event_bytes
                )
        except InvalidMessage as err:
            return -math.inf, message, Rejection(err.error_type, err.reason)
        return event.ts.timestamp(), message, event  # type: ignore[attr-defined]

    async def _handle(
        self, state: JoinPartition, message: Record, event: Any, outbox: Outbox
    ) -> None:
        s = self.settings
        replayed = state.replayed(message)  # its outputs were sent by the last owner
        if isinstance(event, Rejection):
            if not replayed:
                await dead_letter(outbox, message, event, self.metrics, s)
            return
        outputs = state.joiner.handle(event)
        reports = state.joiner.drain_reports()
        if replayed:
            state.joiner.drain_delays()
            return
        if isinstance(event, ActivityEvent):
            self.metrics.activity.labels(event.type).inc()
        source, offset = TopicPartition(message.topic, message.partition), message.offset
        for output in outputs:
            if isinstance(output, Prediction):
                await outbox.add(
                    s.predictions_topic,
                    output.event_id.encode(),
                    self.encode(output),
                    source,
                    offset,
                )
                self.metrics.predicted.labels(output.model).inc()
            elif isinstance(output, Outcome):
                await outbox.add(
                    s.outcomes_topic,
                    output.impression_id.encode(),
                    output.model_dump_json().encode(),
                    source,
                    offset,
                )
                self.metrics.learned.labels(output.model).inc(output.learned)
            else:
                await dead_letter(outbox, message, output, self.metrics, s)
        for report in reports:
            await publish_report(
                outbox, report, state.partition, self.metrics, s.metrics_topic, source, offset
            )

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
