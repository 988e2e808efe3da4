"""Push sinks: predictions delivered to HTTP endpoints, at least once.

Each sink of RIVERRUN_PUSH_SINKS has its own consumer group (`<group>-push-<name>`) on
its topic (the predictions by default), so the workers of a group share its partitions
and a sink that falls behind holds back nothing else. Per fetched batch of a partition:
the predictions the sink takes (`online_models.push.takes`) are POSTed in batches of up
to `batch_size`, each attempt of a batch with the same `Idempotency-Key` header and each
item with its prediction's idempotency key; failed attempts are retried with exponential
backoff; after `max_attempts` (or at once, when the endpoint refuses the request with a
4xx other than 408/429) the batch's predictions become `push_failed` dead letters. Only
then is the partition's offset committed: a crash repeats deliveries, never loses one.
"""

import asyncio
import logging
import random
import time
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import ClientError, ClientSession, ClientTimeout
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import ConsumerRecord
from mode import Service

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
from streams.kafka.security import aiokafka_options
from streams.runtime.metrics import WorkerMetrics
from streams.settings import PushSink, Settings

log = logging.getLogger(__name__)


class PushSinks(Service):
    """Every push sink of the settings, each in a task of its own."""

    def __init__(self, settings: Settings, metrics: WorkerMetrics, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.metrics = metrics
        self.session: ClientSession | None = None
        self.producer: AIOKafkaProducer | None = None
        self.consumers: list[AIOKafkaConsumer] = []
        self.random = random.Random()

    async def on_start(self) -> None:
        s = self.settings
        self.session = ClientSession()
        self.producer = AIOKafkaProducer(
            bootstrap_servers=s.bootstrap_servers,
            client_id=f"{s.group_id}-push",
            acks="all",
            enable_idempotence=True,
            **aiokafka_options(s),
        )
        await self.producer.start()
        for sink in s.push_sinks:
            consumer = AIOKafkaConsumer(
                sink.topic or s.predictions_topic,
                bootstrap_servers=s.bootstrap_servers,
                group_id=f"{s.group_id}-push-{sink.name}",
                client_id=f"{s.group_id}-push-{sink.name}",
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                max_poll_records=max(sink.batch_size, 500),
                **aiokafka_options(s),
            )
            await consumer.start()
            self.consumers.append(consumer)
            self.add_future(self._run(sink, consumer))
            log.info(
                "push sink %s: %s to %s",
                sink.name,
                sink.topic or s.predictions_topic,
                shown_url(sink.url),
            )

    async def on_stop(self) -> None:
        # The tasks are cancelled first (by mode): a batch cut short is not committed.
        for consumer in self.consumers:
            await consumer.stop()
        if self.producer is not None:
            await self.producer.stop()
        if self.session is not None:
            await self.session.close()

    async def _run(self, sink: PushSink, consumer: AIOKafkaConsumer) -> None:
        while not self.should_stop:
            try:
                batches = await consumer.getmany(timeout_ms=500)
                for tp, messages in batches.items():
                    await self._push(sink, messages)
                    await consumer.commit({tp: messages[-1].offset + 1})
                await self._export_lag(sink, consumer)
            except asyncio.CancelledError:
                raise
            except Exception:  # the broker away, a rebalance: the batch comes again
                log.exception(
                    "push sink %s: a batch failed and is fetched again in 1 s; check the broker",
                    sink.name,
                )
                await asyncio.sleep(1.0)
                for tp in consumer.assignment():
                    committed = await consumer.committed(tp)
                    if committed is not None:
                        consumer.seek(tp, committed)
                    else:
                        await consumer.seek_to_beginning(tp)

    async def _push(self, sink: PushSink, messages: list[ConsumerRecord]) -> None:
        """Deliver (or dead-letter) the predictions of `messages` that the sink takes."""
        taken: list[tuple[ConsumerRecord, dict[str, Any]]] = []
        for message in messages:
            try:
                prediction = orjson.loads(message.value)
            except (orjson.JSONDecodeError, TypeError):
                continue  # (the topic holds predictions riverrun wrote)
            if takes(prediction, models=sink.models, min_score=sink.min_score):
                taken.append((message, prediction))
        for start in range(0, len(taken), sink.batch_size):
            await self._deliver(sink, taken[start : start + sink.batch_size])

    async def _deliver(
        self, sink: PushSink, batch: list[tuple[ConsumerRecord, dict[str, Any]]]
    ) -> None:
        assert self.session is not None
        m = self.metrics
        predictions = [p for _, p in batch]
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
                return
            if status:
                last = f"HTTP {status}"
            if status and not retryable(status):
                m.push_attempts.labels(sink.name, "refused").inc()
                await self._dead_letters(sink, batch, last, attempt, gave_up=False)
                return
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
                await asyncio.sleep(wait)
        await self._dead_letters(sink, batch, last, sink.max_attempts, gave_up=True)

    async def _dead_letters(
        self,
        sink: PushSink,
        batch: list[tuple[ConsumerRecord, dict[str, Any]]],
        last: str,
        attempts: int,
        *,
        gave_up: bool,
    ) -> None:
        """Each prediction of `batch` as a `push_failed` dead letter, acknowledged."""
        assert self.producer is not None
        s = self.settings
        reason = failure_reason(sink.name, sink.url, last, attempts, gave_up)
        log.warning("push sink %s: %d predictions dead-lettered: %s", sink.name, len(batch), reason)
        sent = []
        for message, _ in batch:
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
            value = letter.model_dump_json().encode()
            sent.append(
                await self.producer.send(s.dead_letters_topic, key=message.key, value=value)
            )
        await asyncio.gather(*sent)
        self.metrics.push_dead_letters.labels(sink.name).inc(len(batch))
        self.metrics.dead_lettered.labels(batch[0][0].topic, ErrorType.PUSH_FAILED.value).inc(
            len(batch)
        )

    async def _export_lag(self, sink: PushSink, consumer: AIOKafkaConsumer) -> None:
        """Predictions of each assigned partition the sink has not handled yet."""
        for tp in consumer.assignment():
            high = consumer.highwater(tp)
            if high is not None:
                position = await consumer.position(tp)
                self.metrics.push_lag.labels(sink.name, str(tp.partition)).set(
                    max(0, high - position)
                )
