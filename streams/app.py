"""The Faust application: agents that move bytes between Kafka and the learning core."""

import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import faust
from faust.types import EventT, Message

from online_models import Learner, Rejection
from schemas import ActivityEvent, DeadLetter, ErrorType, MetricsReport, Prediction
from schemas.codec import InvalidMessage, decode
from streams.metrics import WorkerMetrics
from streams.pipeline import EventPipeline
from streams.settings import Settings

log = logging.getLogger(__name__)


class Worker:
    """A Faust app wired to one Learner and one metrics registry.

    `Worker(settings).app` is what `riverrun worker` runs. The agents only move bytes:
    decoding is in `schemas`, predict-then-learn in `online_models`.
    """

    def __init__(self, settings: Settings, metrics: WorkerMetrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics or WorkerMetrics()
        self.learner = Learner(
            settings.models, params=settings.model_params, evaluation=settings.evaluation()
        )
        self.pipeline = EventPipeline(self.learner, settings.max_event_bytes)
        self.app = faust.App(
            settings.group_id,
            broker=[f"kafka://{server}" for server in settings.bootstrap_servers.split(",")],
            datadir=str(settings.data_dir),
            autodiscover=False,
            store="memory://",
            web_enabled=True,
            web_bind=settings.metrics_host,
            web_host=settings.metrics_host,
            web_port=settings.metrics_port,
            broker_session_timeout=settings.session_timeout_seconds,
            broker_heartbeat_interval=min(3.0, settings.session_timeout_seconds / 3),
            consumer_auto_offset_reset="earliest",
            topic_partitions=settings.topic_partitions,
            producer_linger_ms=5,
            logging_config=None,
        )
        self.events = self._raw_topic(settings.events_topic)
        self.activity = self._raw_topic(settings.activity_topic)
        self.predictions = self._raw_topic(settings.predictions_topic)
        self.dead_letters = self._raw_topic(settings.dead_letters_topic)
        self.metrics_topic = self._raw_topic(settings.metrics_topic)
        self._wire()

    def _raw_topic(self, name: str) -> Any:
        # Raw bytes in and out: decoding is ours, so a bad message becomes a dead letter
        # instead of an exception inside Faust.
        return self.app.topic(
            name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
        )

    def _wire(self) -> None:
        settings = self.settings

        @self.app.agent(self.events, name="learn_and_predict")
        async def learn_and_predict(stream: Any) -> None:
            async for batch in stream.take_events(settings.batch_size, settings.batch_seconds):
                await self.handle_events(batch)

        @self.app.agent(self.activity, name="count_activity")
        async def count_activity(stream: Any) -> None:
            async for batch in stream.take_events(settings.batch_size, settings.batch_seconds):
                await self.handle_activity(batch)

        @self.app.page("/metrics")
        async def metrics_page(web: Any, request: Any) -> Any:
            return web.bytes(self.metrics.exposition(), content_type="text/plain")

    async def handle_events(self, batch: Sequence[EventT]) -> None:
        """Decode, predict-then-learn and publish one batch of input messages, in order."""
        received_at = time.perf_counter()
        self.metrics.consumed.labels(self.settings.events_topic).inc(len(batch))
        outputs = self.pipeline.run([event.message.value for event in batch], received_at)
        for event, output in zip(batch, outputs, strict=True):
            if isinstance(output, Rejection):
                await self.dead_letter(event.message, output.error_type, output.reason)
            else:
                await self.publish(output)
        for report in self.learner.drain_reports():
            await self.publish_report(report)
        self._observe(batch)

    async def publish(self, prediction: Prediction) -> None:
        await self.predictions.send(
            key=prediction.event_id.encode(), value=prediction.model_dump_json().encode()
        )
        self.metrics.predicted.labels(prediction.model).inc()
        if prediction.learned:
            self.metrics.learned.labels(prediction.model).inc()
        self.metrics.latency.labels(prediction.model).observe(prediction.latency_seconds)

    async def publish_report(self, report: MetricsReport) -> None:
        await self.metrics_topic.send(
            key=report.model.encode(), value=report.model_dump_json().encode()
        )
        for name, value in report.metrics.items():
            if value is not None:
                self.metrics.model_metric.labels(report.model, report.segment, name).set(value)

    async def handle_activity(self, batch: Sequence[EventT]) -> None:
        """Validate and count activity events (their features come in a later release)."""
        self.metrics.consumed.labels(self.settings.activity_topic).inc(len(batch))
        for event in batch:
            try:
                activity = decode(
                    ActivityEvent, event.message.value, max_bytes=self.settings.max_event_bytes
                )
            except InvalidMessage as err:
                await self.dead_letter(event.message, err.error_type, err.reason)
            else:
                self.metrics.activity.labels(activity.type).inc()
        self._observe(batch)

    async def dead_letter(self, message: Message, error_type: ErrorType, reason: str) -> None:
        """Send a rejected message to the dead-letter topic with its reason, and count it."""
        payload, encoding = DeadLetter.encode_payload(message.value or b"")
        letter = DeadLetter(
            payload=payload,
            payload_encoding=encoding,
            source_topic=message.topic,
            source_partition=message.partition,
            source_offset=message.offset,
            error_type=error_type,
            reason=reason,
            ts=datetime.now(UTC),
        )
        await self.dead_letters.send(key=message.key, value=letter.model_dump_json().encode())
        self.metrics.dead_lettered.labels(message.topic, error_type.value).inc()
        log.warning(
            "dead-lettered %s[%d]@%d: %s", message.topic, message.partition, message.offset, reason
        )

    def _observe(self, batch: Sequence[EventT]) -> None:
        """Refresh lag and quality gauges after a batch."""
        next_offsets = {event.message.tp: event.message.offset + 1 for event in batch}
        for tp, next_offset in next_offsets.items():
            lag = self.app.consumer.highwater(tp) - next_offset
            self.metrics.lag.labels(tp.topic, str(tp.partition)).set(max(lag, 0))
        for model, (metric, value) in self.learner.quality().items():
            self.metrics.quality.labels(model, metric).set(value)
