"""The Faust application: the worker's runtime (lifecycle, low-volume agents, web server)
with the high-volume event path as a batched service inside it."""

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import faust
from faust.types import EventT

from online_models import ModelSpec, Rejection
from schemas import ActivityEvent
from schemas.codec import InvalidMessage
from schemas.formats.mapping import EventMapping
from streams.kafka.broker_health import BrokerWatch
from streams.kafka.outbox import reject
from streams.kafka.security import faust_options
from streams.runtime.checkpoints import checkpoint_key
from streams.runtime.metrics import WorkerMetrics
from streams.runtime.progress import ProgressLog
from streams.runtime.snapshots import SnapshotFollower
from streams.services.events import BatchedEvents
from streams.services.formats import EventHook, Formats
from streams.services.join import FeedbackJoin
from streams.services.learning import Learners
from streams.settings import Settings

log = logging.getLogger(__name__)


class Worker:
    """A Faust app wired to one metrics registry.

    `Worker(settings).app` is what `riverrun worker` runs: the `events` topic is consumed by
    the batched `BatchedEvents` service (consumer group RIVERRUN_GROUP_ID); the `activity`
    topic by a Faust agent (the Faust app's own group, RIVERRUN_GROUP_ID + "-app").
    """

    def __init__(
        self,
        settings: Settings,
        models: Mapping[str, ModelSpec],
        metrics: WorkerMetrics | None = None,
        *,
        mapping: EventMapping | None = None,
        event_decoder: EventHook | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics or WorkerMetrics()
        #: The topics' formats (RIVERRUN_*_FORMAT, the mapping or the event decoder).
        self.formats = Formats(
            settings,
            mapping=mapping,
            hook=event_decoder,
            on_unavailable=self.metrics.schema_registry_failures.inc,
        )
        self.app = faust.App(
            f"{settings.group_id}-app",
            broker=[f"kafka://{server}" for server in settings.bootstrap_servers.split(",")],
            **faust_options(settings),
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
            producer_linger_ms=settings.producer_linger_ms,
            logging_config=None,
        )
        self.activity = self._raw_topic(settings.activity_topic)
        self.decode_activity = self.formats.message_decoder(ActivityEvent)
        self.dead_letters = self._raw_topic(settings.dead_letters_topic)
        self.broker = BrokerWatch(
            settings, self.metrics, loop=self.app.loop, beacon=self.app.beacon
        )
        self.app.service(self.broker)  # type: ignore[arg-type]
        self.events = BatchedEvents(
            settings, self.metrics, models, loop=self.app.loop, beacon=self.app.beacon
        )
        self.events.formats = self.formats
        self.app.service(self.events)  # type: ignore[arg-type]  # an instance is accepted too
        # Global models: every worker predicts with their snapshots; the learner of each
        # is wherever the learner group puts its learn partition.
        self.learners: Learners | None = None
        global_models = settings.global_models(models)
        if global_models:
            self.snapshots = SnapshotFollower(
                settings,
                self.metrics,
                models,
                global_models,
                checkpoint_key(settings),
                loop=self.app.loop,
                beacon=self.app.beacon,
            )
            self.app.service(self.snapshots)  # type: ignore[arg-type]
            self.events.snapshots = self.snapshots
            self.learners = Learners(
                settings, self.metrics, models, loop=self.app.loop, beacon=self.app.beacon
            )
            self.learners.snapshots = self.snapshots  # (it never publishes an older one)
            self.app.service(self.learners)  # type: ignore[arg-type]
        self.join: FeedbackJoin | None = None
        if settings.join_enabled:  # it consumes activity itself, as features
            self.join = FeedbackJoin(
                settings, self.metrics, models, loop=self.app.loop, beacon=self.app.beacon
            )
            self.join.formats = self.formats
            self.app.service(self.join)  # type: ignore[arg-type]
        self.api: Any = None
        if settings.api_enabled:  # /v1 on a server of its own (TLS, tokens, limits)
            from streams.http.server import Api

            self.api = Api(
                settings,
                self.metrics,
                self.events,
                self.broker.health,
                formats=self.formats,
                loop=self.app.loop,
                beacon=self.app.beacon,
            )
            self.app.service(self.api)
        self.push: list[Any] = []  # one partitioned service per push sink
        if settings.push_sinks:
            from streams.services.push import push_sinks

            self.push = push_sinks(
                settings, self.metrics, loop=self.app.loop, beacon=self.app.beacon
            )
            for sink in self.push:
                self.app.service(sink)  # type: ignore[arg-type]
        # Last: its banner is logged once the services above have started (ports bound).
        self.progress = ProgressLog(
            settings,
            self.events,
            self.consumed_events,
            self.urls,
            loop=self.app.loop,
            beacon=self.app.beacon,
        )
        self.app.service(self.progress)  # type: ignore[arg-type]
        self._wire()

    def _raw_topic(self, name: str) -> Any:
        # Raw bytes in and out: decoding is ours, so a bad message becomes a dead letter
        # instead of an exception inside Faust.
        return self.app.topic(
            name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
        )

    def consumed_events(self) -> float:
        """Events consumed from the events topic since the worker started."""
        found = self.metrics.registry.get_sample_value(
            "riverrun_events_consumed_total", {"topic": self.settings.events_topic}
        )
        return found or 0.0

    def urls(self) -> tuple[str, str | None]:
        """Where /metrics answers, and /v1 (None when the API is off), as bound."""
        metrics = f"http://{self.settings.metrics_host}:{self.app.conf.web_port}/metrics"
        if self.api is None:
            return metrics, None
        s, runner = self.settings, self.api.runner
        bound = [address[1] for address in runner.addresses] if runner is not None else []
        scheme = "https" if s.api_ssl_certfile is not None else "http"
        api = f"{scheme}://{s.api_host}:{bound[0] if bound else s.api_port}/v1"
        return metrics, api if self.api.url == api[:-3] else f"{api} (advertised as {self.api.url})"

    def _wire(self) -> None:
        settings = self.settings

        if not settings.join_enabled:

            @self.app.agent(self.activity, name="count_activity")
            async def count_activity(stream: Any) -> None:
                async for batch in stream.take_events(settings.batch_size, settings.batch_seconds):
                    await self.handle_activity(batch)

        @self.app.page("/metrics")
        async def metrics_page(web: Any, request: Any) -> Any:
            return web.bytes(self.metrics.exposition(), content_type="text/plain")

        @self.app.page("/healthz")
        async def healthz(web: Any, request: Any) -> Any:
            # Answering at all shows the process and its event loop alive.
            return web.json({"status": "alive"})

        @self.app.page("/readyz")
        async def readyz(web: Any, request: Any) -> Any:
            ready, services = self.readiness()
            body = {"ready": ready, "services": services, "broker": self.broker.health.describe()}
            return web.json(body, status=200 if ready else 503)

        @self.app.on_before_shutdown.connect
        async def tell_a_stop_in_an_outage(app: Any, /, *_: Any, **__: Any) -> None:
            line = self.broker.health.stopping()
            if line:
                log.warning("%s", line)
            await self.formats.close()

        @self.app.page("/readyz/broker")
        async def readyz_broker(web: Any, request: Any) -> Any:
            # The second probe (docs: Operations > Health): 503 during a broker outage, for
            # what must not start then (a rollout's gate), while /readyz stays 200 so that
            # the /v1 predictions from the models in memory go on.
            health = self.broker.health
            return web.json(health.describe(), status=200 if health.reachable else 503)

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """(ready, each partitioned service's readiness): ready when every one consumes
        all the partitions it was assigned, restored (see PartitionedService.readiness)."""
        services = [self.events] + [s for s in (self.learners, self.join) if s is not None]
        states = {service.name: service.readiness() for service in services}
        return all(state["ready"] for state in states.values()), states

    async def handle_activity(self, batch: Sequence[EventT]) -> None:
        """Validate and count activity events (their features come in a later release)."""
        self.metrics.consumed.labels(self.settings.activity_topic).inc(len(batch))
        await self.formats.prepare(event.message.value for event in batch)
        for event in batch:
            message = event.message
            try:
                activity = self.decode_activity(message.value)
            except InvalidMessage as err:
                rejection = Rejection(err.error_type, err.reason)
                letter = reject(message, rejection, self.metrics, self.settings.max_event_bytes)
                await self.dead_letters.send(key=message.key, value=letter)
            else:
                self.metrics.activity.labels(activity.type).inc()


class FaustWorker(faust.Worker):
    """Faust's worker without its terminal spinner.

    To spin on every log record, the spinner sets the root logger to DEBUG: every
    `log.debug` in aiokafka (one per message sent) then builds a LogRecord. That was 13 %
    of a worker's CPU in a profile. `log_filters` are put on the root logger's handlers
    (e.g. `BrokerWatch.quiet`: a logger's own filters would miss its children's records).
    """

    def __init__(
        self, *services: Any, log_filters: Sequence[logging.Filter] = (), **kwargs: Any
    ) -> None:
        self.log_filters = log_filters
        super().__init__(*services, **kwargs)

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        self.spinner = None
        for handler in logger.handlers:
            for log_filter in self.log_filters:
                handler.addFilter(log_filter)
