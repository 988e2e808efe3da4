"""The `control` topic on Kafka: reading the plans and statuses, writing signed ones.

Workers follow the topic with `ControlLog` (every partition, from its beginning, no
consumer group): the newest plan of each model and the newest status of each model and
partition. The CLI reads and writes it with `read_control` and `write_control`. Messages
that are not signed with the key (`RIVERRUN_CHECKPOINT_KEY`) are refused with a log
line and counted in `riverrun_control_refused_total`.
"""

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from confluent_kafka import KafkaError, Message

from online_models.versions.plans import ControlRefused, sign, verify
from schemas.control import ControlMessage, ModelPlan, ModelStatus, PartitionOwner
from streams.kafka.clients import Follower, producer
from streams.kafka.topics import TopicReader
from streams.runtime.checkpoints import checkpoint_key
from streams.runtime.metrics import WorkerMetrics
from streams.settings import Settings

log = logging.getLogger(__name__)

#: How long the CLI waits for the broker to acknowledge what it writes.
WRITE_TIMEOUT_SECONDS = 30.0


def plan_key(model: str) -> bytes:
    return f"plan:{model}".encode()


def status_key(model: str, partition: int) -> bytes:
    return f"status:{model}:{partition}".encode()


def owner_key(topic: str, partition: int) -> bytes:
    return f"owner:{topic}:{partition}".encode()


@dataclass
class ControlState:
    """The newest plan of each model, status of each model and partition, and owner of
    each input partition."""

    plans: dict[str, ModelPlan] = field(default_factory=dict)
    statuses: dict[tuple[str, int], ModelStatus] = field(default_factory=dict)
    owners: dict[tuple[str, int], PartitionOwner] = field(default_factory=dict)
    refused: list[str] = field(default_factory=list)

    def add(self, raw: bytes | None, key: bytes) -> ControlMessage | None:
        """Take one message of the topic; None (and a log line) when it is refused. Of
        two plans of one revision the later wins, as compaction keeps it."""
        try:
            message = verify(raw, key)
        except ControlRefused as err:
            self.refused.append(err.reason)
            log.warning("control message refused: %s", err)
            return None
        self.keep(message)
        return message

    def keep(self, message: ControlMessage) -> None:
        """Take a checked message into the view."""
        if isinstance(message, ModelPlan):
            current = self.plans.get(message.model)
            if current is None or message.revision >= current.revision:
                self.plans[message.model] = message
        elif isinstance(message, PartitionOwner):
            where = (message.topic, message.partition)
            known = self.owners.get(where)
            if known is None or message.generation >= known.generation:
                self.owners[where] = message
        else:
            self.statuses[message.model, message.partition] = message

    def statuses_of(self, model: str) -> list[ModelStatus]:
        return [s for (name, _), s in sorted(self.statuses.items()) if name == model]


def read_control(settings: Settings) -> ControlState:
    """Every plan and status on the control topic now (the CLI's view)."""
    key = checkpoint_key(settings)
    state = ControlState()
    with TopicReader(settings, [settings.control_topic]) as reader:
        for message in reader.read_to_end():
            state.add(message.value, key)
    return state


def write_control(settings: Settings, messages: Iterable[ModelPlan | ModelStatus]) -> None:
    """Sign and send `messages` (the CLI's writes); returns once the broker has them."""
    key = checkpoint_key(settings)
    timeout = WRITE_TIMEOUT_SECONDS
    client = producer(
        settings, client_id=f"{settings.group_id}-cli", message_timeout_ms=int(timeout * 1000)
    )
    failed: list[KafkaError] = []

    def delivered(err: KafkaError | None, _: Message) -> None:
        if err is not None:
            failed.append(err)

    signed = [sign(message, key) for message in messages]
    for message in signed:
        value = message.model_dump_json().encode()
        client.produce(settings.control_topic, value, _key(message), on_delivery=delivered)
    left = client.flush(timeout + 5)
    if failed or left:
        why = failed[0].str() if failed else f"no answer within {timeout:g} s"
        raise RuntimeError(
            f"the broker did not acknowledge {len(failed) + left} of {len(signed)} control "
            f"message(s) on {settings.control_topic!r} ({why}): run the command again"
        )


def _key(message: ControlMessage) -> bytes:
    if isinstance(message, ModelPlan):
        return plan_key(message.model)
    if isinstance(message, PartitionOwner):
        return owner_key(message.topic, message.partition)
    return status_key(message.model, message.partition)


class Sender(Protocol):
    """A producer for asyncio code (`clients.AsyncProducer`): `await send(...)` gives a
    future that the acknowledgement resolves."""

    async def send(
        self, topic: str, value: bytes | None = None, key: bytes | None = None
    ) -> "asyncio.Future[Any]": ...


class ControlLog:
    """A worker's view of the control topic, kept current by a background task."""

    def __init__(self, settings: Settings, metrics: WorkerMetrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.key = checkpoint_key(settings)
        self.state = ControlState()
        self.follower: Follower | None = None
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Read the topic to its end (the plans in force), then follow it. (The broker
        away, the follower waits for it: librdkafka retries on its own.)"""
        s = self.settings
        self.follower = Follower(
            s, [s.control_topic], start="beginning", client_id="riverrun-control"
        )
        if not await self.follower.start():
            await self.follower.stop()
            raise RuntimeError(
                f"the control topic {s.control_topic!r} does not exist: create it (riverrun "
                "creates it at start when it may) or set RIVERRUN_CONTROL_TOPIC"
            )
        async for batch in self.follower.until_end():
            self._take(batch)
        self.task = asyncio.ensure_future(self._follow(self.follower))

    def _take(self, batch: list[Message]) -> None:
        for message in batch:
            before = len(self.state.refused)
            self.state.add(message.value(), self.key)
            for reason in self.state.refused[before:]:
                self.metrics.control_refused.labels(reason).inc()

    async def _follow(self, follower: Follower) -> None:
        async for batch in follower.batches():
            self._take(batch)

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        if self.follower is not None:
            await self.follower.stop()

    async def publish(self, producer: Sender, messages: Iterable[ControlMessage]) -> list[Any]:
        """Sign and send `messages`; the returned futures resolve on acknowledgement. A
        plan is taken into this worker's view at once (it applied it already)."""
        futures = []
        for message in messages:
            signed = sign(message, self.key)
            self.state.keep(signed)
            futures.append(
                await producer.send(
                    self.settings.control_topic,
                    key=_key(signed),
                    value=signed.model_dump_json().encode(),
                )
            )
        return futures
