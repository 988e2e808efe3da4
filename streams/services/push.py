"""Push sinks: predictions delivered to HTTP endpoints, at least once.

Each sink of RIVERRUN_PUSH_SINKS is a `PartitionedService` of its own, in its own
consumer group (`<group>-push-<name>`) on its topic (the predictions by default), so the
workers of a group share its partitions and a sink that falls behind holds back nothing
else. A sink keeps no state but its committed offsets: a partition it gets resumes at the
committed offset, and nothing is checkpointed.

Per fetched batch of a partition: the predictions the sink takes
(`online_models.push.takes`) are POSTed in batches of up to `batch_size`, each attempt of
a batch with the same `Idempotency-Key` header and each item with its prediction's
idempotency key; failed attempts are retried with exponential backoff; after
`max_attempts` (or at once, when the endpoint refuses the request with a 4xx other than
408/429) the batch's predictions become `push_failed` dead letters, queued in the batch's
outbox. The partitioned machinery commits the offsets only once every delivery is done
and every dead letter acknowledged: a crash repeats deliveries, never loses one.
"""

import logging
import random
import time
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import ClientError, ClientSession, ClientTimeout

from online_models.push import (
    backoff,
    batch_body,
    batch_key,
    failure_reason,
    idempotency_key,
    parse_retry_after,
    retryable,
    shown_url,
    takes,
)
from schemas.dead_letter import DeadLetter, ErrorType
from schemas.prediction import decode_prediction
from streams.kafka.outbox import Outbox
from streams.kafka.records import Record, TopicPartition
from streams.runtime.metrics import WorkerMetrics
from streams.runtime.partitioned import Batches, PartitionedService, PartitionState
from streams.settings import PushSink, Settings

log = logging.getLogger(__name__)

#: A fetched message the sink takes: its index in the fetched batch, the message, and
#: its prediction.
Taken = tuple[int, Record, dict[str, Any]]


class SinkDelivery(PartitionedService[TopicPartition, PartitionState]):
    """One push sink: its share of its topic's partitions, delivered over HTTP."""

    def __init__(
        self, settings: Settings, metrics: WorkerMetrics, sink: PushSink, **kwargs: Any
    ) -> None:
        # At least once whatever RIVERRUN_PROCESSING_GUARANTEE says: an HTTP endpoint
        # takes no part in a Kafka transaction (it dedups by idempotency key instead).
        once = settings.model_copy(update={"processing_guarantee": "at_least_once"})
        super().__init__(once, metrics, {}, **kwargs)
        self.sink = sink
        self.name = f"push-{sink.name}"
        #: Under exactly_once the predictions of aborted transactions are not pushed.
        self.read_committed = settings.exactly_once
        self.session: ClientSession | None = None
        self.random = random.Random()

    # --- what the partitioned machinery asks ----------------------------------------
    def topics(self) -> list[str]:
        return [self.sink.topic or self.settings.predictions_topic]

    def group_id(self) -> str:
        return f"{self.settings.group_id}-push-{self.sink.name}"

    def output_topics(self) -> list[str]:
        return [self.settings.dead_letters_topic]

    def consumer_options(self) -> dict[str, Any]:
        return {"isolation.level": "read_committed"} if self.read_committed else {}

    def key(self, tp: TopicPartition) -> TopicPartition:
        return tp

    async def restore(
        self,
        key: TopicPartition,
        tps: list[TopicPartition],
        committed: dict[TopicPartition, int | None],
    ) -> tuple[PartitionState, dict[TopicPartition, int]]:
        """No state: each partition resumes at its committed offset (the log start when
        nothing is committed yet)."""
        return PartitionState(), {tp: committed[tp] or 0 for tp in tps}

    async def checkpoint(self, state: PartitionState, *, transactional: bool) -> None:
        return None  # (never called: see `write`)

    async def write(self, state: PartitionState) -> None:
        """Nothing to checkpoint: the committed offset is all a sink's partition holds."""
        state.since_checkpoint = 0

    async def checkpoint_due(self) -> None:
        """No checkpoints; after each fetch, the lag of every partition owned instead:
        the messages the sink has not handled yet."""
        assert self.consumer is not None
        # Under read_committed a partition ends with a transaction's commit marker, which
        # is no record: once all fetched is handled, the consumer's position is past it.
        positions = await self.consumer.positions(self.owned) if self.read_committed else {}
        for tp, state in self.owned.items():
            high = self.consumer.highwater(tp)
            if high is None or tp not in state.positions:
                continue
            position = state.positions[tp]
            if state.fetched.get(tp) == position:
                position = max(position, positions.get(tp, position))
            lag = max(0, high - position)
            self.metrics.push_lag.labels(self.sink.name, str(tp.partition)).set(lag)

    def replica_names(self, state: PartitionState) -> Iterable[tuple[str, int]]:
        return ()

    # --- lifecycle -------------------------------------------------------------------
    async def on_start(self) -> None:
        self.session = ClientSession()
        await super().on_start()
        log.info(
            "push sink %s: %s to %s", self.sink.name, self.topics()[0], shown_url(self.sink.url)
        )

    async def on_stop(self) -> None:
        # The batch in flight stops retrying (see `_deliver`); what it delivered is committed.
        try:
            await super().on_stop()
        finally:
            if self.session is not None:
                await self.session.close()

    # --- the batch path --------------------------------------------------------------
    async def handle(
        self, state: PartitionState, batches: Batches, outbox: Outbox
    ) -> Counter[TopicPartition]:
        """Deliver (or dead-letter) the predictions of the fetched messages that the sink
        takes; a stop cuts the batch short before the first delivery not finished."""
        handled: Counter[TopicPartition] = Counter()
        size = self.sink.batch_size
        for tp, messages in batches.items():
            taken = self._taken(state, messages)
            done = len(messages)
            for start in range(0, len(taken), size):
                chunk = taken[start : start + size]
                if not await self._deliver(chunk, outbox):
                    done = chunk[0][0]
                    break
            if done:
                state.positions[tp] = messages[done - 1].offset + 1
                handled[tp] = done
        return handled

    def _taken(self, state: PartitionState, messages: list[Record]) -> list[Taken]:
        taken: list[Taken] = []
        for index, message in enumerate(messages):
            if state.replayed(message):  # delivered before this worker got the partition
                continue
            try:
                prediction = _prediction(message.value)
            except (ValueError, TypeError):
                continue  # (the topic holds predictions riverrun wrote)
            if takes(prediction, models=self.sink.models, min_score=self.sink.min_score):
                taken.append((index, message, prediction))
        return taken

    async def _deliver(self, batch: list[Taken], outbox: Outbox) -> bool:
        """POST `batch` until the endpoint acknowledges it, or dead-letter it; False when
        the worker stops before either (the batch is delivered again after a restart)."""
        assert self.session is not None
        sink, m = self.sink, self.metrics
        predictions = [p for _, _, p in batch]
        body = batch_body(sink.name, predictions)
        keys = [idempotency_key(p) for p in predictions]
        headers = {"Content-Type": "application/json", "Idempotency-Key": batch_key(keys)}
        if sink.token is not None:
            headers["Authorization"] = f"Bearer {sink.token.get_secret_value()}"
        timeout = ClientTimeout(total=sink.timeout_seconds)
        last = ""
        for attempt in range(1, sink.max_attempts + 1):
            started = time.perf_counter()
            retry_after = None
            try:
                async with self.session.post(
                    sink.url, data=body, headers=headers, timeout=timeout
                ) as answer:
                    await answer.read()
                    status = answer.status
                    retry_after = parse_retry_after(answer.headers.get("Retry-After"))
            except (ClientError, TimeoutError) as err:
                status, last = 0, type(err).__name__
            m.push_request_seconds.labels(sink.name).observe(time.perf_counter() - started)
            if 200 <= status < 300:
                m.push_attempts.labels(sink.name, "ok").inc()
                m.push_delivered.labels(sink.name).inc(len(batch))
                return True
            if status:
                last = f"HTTP {status}"
            if status and not retryable(status):
                m.push_attempts.labels(sink.name, "refused").inc()
                await self._dead_letters(batch, outbox, last, attempt, gave_up=False)
                return True
            m.push_attempts.labels(sink.name, "retry").inc()
            if attempt < sink.max_attempts:
                jitter = self.random.uniform(0.5, 1.0)
                wait = backoff(
                    attempt,
                    base=sink.backoff_seconds,
                    cap=sink.max_backoff_seconds,
                    jitter=jitter,
                    retry_after=retry_after,
                )
                log.warning(
                    "push sink %s: %s answered %s (attempt %d of %d); retrying in %.2f s",
                    sink.name,
                    shown_url(sink.url),
                    last,
                    attempt,
                    sink.max_attempts,
                    wait,
                )
                await self.sleep(wait)  # (cut short by a stop)
                if self.should_stop:
                    return False
        await self._dead_letters(batch, outbox, last, sink.max_attempts, gave_up=True)
        return True

    async def _dead_letters(
        self, batch: list[Taken], outbox: Outbox, last: str, attempts: int, *, gave_up: bool
    ) -> None:
        """Each prediction of `batch` as a `push_failed` dead letter, queued in `outbox`
        (the batch's offsets are committed once they are acknowledged)."""
        s, sink = self.settings, self.sink
        reason = failure_reason(sink.name, sink.url, last, attempts, gave_up)
        log.warning("push sink %s: %d predictions dead-lettered: %s", sink.name, len(batch), reason)
        for _, message, _ in batch:
            letter = DeadLetter.for_message(
                value=message.value,
                topic=message.topic,
                partition=message.partition,
                offset=message.offset,
                error_type=ErrorType.PUSH_FAILED,
                reason=reason,
                ts=datetime.now(UTC),
                max_payload_bytes=s.max_event_bytes,
            )
            await outbox.add(
                s.dead_letters_topic,
                message.key,
                letter.model_dump_json().encode(),
                TopicPartition(message.topic, message.partition),
                message.offset,
                fallback=message.partition,
            )
        self.metrics.push_dead_letters.labels(sink.name).inc(len(batch))
        self.metrics.dead_lettered.labels(batch[0][1].topic, ErrorType.PUSH_FAILED.value).inc(
            len(batch)
        )


def push_sinks(settings: Settings, metrics: WorkerMetrics, **kwargs: Any) -> list[SinkDelivery]:
    """One service per push sink of the settings."""
    return [SinkDelivery(settings, metrics, sink, **kwargs) for sink in settings.push_sinks]


def _prediction(value: bytes | None) -> dict[str, Any]:
    """A prediction of the predictions topic as its JSON object, whatever the format it
    was written in (RIVERRUN_PREDICTIONS_FORMAT: JSON as it is, Avro and JSON Schema
    records in the wire format decoded)."""
    if value is None:
        raise ValueError("no value")
    if value[:1] == b"\x00":
        return decode_prediction(value).model_dump(mode="json")
    parsed: dict[str, Any] = orjson.loads(value)
    return parsed
