"""riverrun's topics: create the missing ones, read what they hold.

Creating and checking them (`ensure_topics`, `check_topics`) is the worker's: its admin
client comes from `clients.admin`. `TopicReader` serves the CLI tools and tests only, on
kafka-python (a plain blocking client, independent of the worker's).
"""

import logging
import time
from collections.abc import Iterable
from concurrent.futures import Future
from typing import TypeVar

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic, ResourceType
from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord

from streams.kafka import clients
from streams.kafka.security import kafka_options
from streams.settings import Settings

log = logging.getLogger(__name__)

#: How long a topic just created may take to be described by the broker.
CREATED_VISIBLE_SECONDS = 10.0
#: Longest wait for the broker's answer to one admin request (list, create, describe).
ADMIN_TIMEOUT_SECONDS = 30.0

T = TypeVar("T")


def topic_names(settings: Settings) -> list[str]:
    """Every topic a worker reads or writes."""
    return [
        settings.events_topic,
        settings.predictions_topic,
        settings.dead_letters_topic,
        settings.activity_topic,
        settings.metrics_topic,
        settings.checkpoints_topic,
        settings.drift_topic,
        settings.control_topic,
        settings.shadow_predictions_topic,
        settings.experiments_topic,
        settings.learn_topic,
        settings.snapshots_topic,
    ] + (join_topics(settings) if settings.join_enabled else [])


def join_topics(settings: Settings) -> list[str]:
    """The topics of the delayed-feedback join (besides activity and the outputs)."""
    return [
        settings.impressions_topic,
        settings.clicks_topic,
        settings.conversions_topic,
        settings.outcomes_topic,
    ]


def topic_configs(settings: Settings, name: str) -> dict[str, str]:
    """Broker configuration of a topic riverrun creates."""
    if name == settings.checkpoints_topic:
        # Compacted: the newest two checkpoints of each replica stay (their keys
        # alternate between two slots); segments roll every 10 minutes so that the old
        # ones become cleanable and a restore reads little more than what it needs.
        return {
            "cleanup.policy": "compact",
            "segment.ms": str(10 * 60 * 1000),
            "min.cleanable.dirty.ratio": "0.1",
        }
    if name in (settings.control_topic, settings.snapshots_topic):
        # Compacted: the newest plan of each model, the newest status of each partition;
        # the newest two snapshots of each global model (keys alternate like checkpoints').
        return {
            "cleanup.policy": "compact",
            "segment.ms": str(10 * 60 * 1000),
            "min.cleanable.dirty.ratio": "0.1",
        }
    return {}


class TopicError(RuntimeError):
    """A topic riverrun needs cannot be created, or has a configuration riverrun must
    not write to; the message is one sentence saying what to do."""


def compacted_topics(settings: Settings) -> list[str]:
    """The topics that must be compacted: what they keep (the newest checkpoint of each
    replica, the newest plan of each model) must outlive any retention time."""
    return [settings.checkpoints_topic, settings.control_topic, settings.snapshots_topic]


def not_compacted(settings: Settings, name: str, policy: str) -> str:
    """The sentence refusing topic `name`, which must be compacted and has `policy`.

    >>> import textwrap
    >>> print(textwrap.fill(not_compacted(Settings(broker="k:9092"), "cp", "delete"), 88))
    the topic 'cp' has cleanup.policy=delete, but riverrun keeps its newest checkpoints and
    plans there and needs cleanup.policy=compact (with delete the broker removes them after
    the retention time): run `kafka-configs --bootstrap-server k:9092 --alter --entity-type
    topics --entity-name cp --add-config cleanup.policy=compact`, or delete the topic and
    let riverrun create it
    """
    return (
        f"the topic {name!r} has cleanup.policy={policy}, but riverrun keeps its newest "
        "checkpoints and plans there and needs cleanup.policy=compact (with delete the "
        "broker removes them after the retention time): run `kafka-configs "
        f"--bootstrap-server {settings.bootstrap_servers} --alter --entity-type topics "
        f"--entity-name {name} --add-config cleanup.policy=compact`, or delete the topic "
        "and let riverrun create it"
    )


def missing_topic(settings: Settings, name: str) -> str:
    """The sentence saying that topic `name`, which must be compacted, is gone.

    >>> import textwrap
    >>> print(textwrap.fill(missing_topic(Settings(broker="k:9092", topic_partitions=3), "cp"), 88))
    the topic 'cp' no longer exists and the broker does not create it: create it compacted
    (`kafka-topics --bootstrap-server k:9092 --create --topic cp --partitions 3 --config
    cleanup.policy=compact`) and the workers write there again
    """
    return (
        f"the topic {name!r} no longer exists and the broker does not create it: create it "
        f"compacted (`kafka-topics --bootstrap-server {settings.bootstrap_servers} --create "
        f"--topic {name} --partitions {settings.topic_partitions} --config "
        "cleanup.policy=compact`) and the workers write there again"
    )


def topic_problems(admin: AdminClient, settings: Settings, names: Iterable[str]) -> list[str]:
    """One sentence for each of `names` that must be compacted and is missing or not.

    Raises KafkaException when the broker does not answer."""
    must = list(dict.fromkeys(name for name in names if name in compacted_topics(settings)))
    if not must:
        return []
    resources = {name: ConfigResource(ResourceType.TOPIC, name) for name in must}
    found = admin.describe_configs(list(resources.values()), request_timeout=ADMIN_TIMEOUT_SECONDS)
    problems = []
    for name in must:
        try:
            configs = _result(found[resources[name]])
        except KafkaException as err:
            if _code(err) != KafkaError.UNKNOWN_TOPIC_OR_PART:
                raise
            configs = {}
        if "cleanup.policy" not in configs:
            problems.append(missing_topic(settings, name))
            continue
        policy = str(configs["cleanup.policy"].value)
        # Not `compact,delete` either: its retention removes a quiet replica's only checkpoint.
        if policy.replace(" ", "") != "compact":
            problems.append(not_compacted(settings, name, policy))
    return problems


def _result(future: "Future[T]") -> T:
    """What an admin request's future holds; KafkaException when the broker said no or
    did not answer (librdkafka gives up after ADMIN_TIMEOUT_SECONDS, this a bit later)."""
    try:
        return future.result(timeout=ADMIN_TIMEOUT_SECONDS + 5)
    except TimeoutError:
        raise KafkaException(
            KafkaError(KafkaError._TIMED_OUT, "no answer from the broker")
        ) from None


def _code(err: KafkaException) -> int | None:
    error = err.args[0] if err.args else None
    return error.code() if isinstance(error, KafkaError) else None


def _reason(err: KafkaException) -> str:
    """librdkafka's words for `err` (not KafkaError's repr)."""
    error = err.args[0] if err.args else None
    return error.str() if isinstance(error, KafkaError) else str(err)


def _create(admin: AdminClient, settings: Settings, names: list[str]) -> None:
    """Create `names`, each with its configuration; one another worker created meanwhile
    is fine."""
    new = [
        NewTopic(
            name,
            num_partitions=settings.topic_partitions,
            replication_factor=settings.topic_replication,
            config=topic_configs(settings, name),
        )
        for name in names
    ]
    futures = admin.create_topics(
        new, operation_timeout=CREATED_VISIBLE_SECONDS, request_timeout=ADMIN_TIMEOUT_SECONDS
    )
    for future in futures.values():
        try:
            _result(future)
        except KafkaException as err:
            if _code(err) != KafkaError.TOPIC_ALREADY_EXISTS:  # another worker was faster
                raise


def check_topics(settings: Settings, names: Iterable[str]) -> list[str]:
    """The problems of `names` now (see `topic_problems`), read from the broker.

    Raises KafkaException when the broker does not answer."""
    return topic_problems(clients.admin(settings), settings, names)


def ensure_topics(settings: Settings, names: Iterable[str] | None = None) -> list[str]:
    """Create the missing ones of `names` (default: all of riverrun's), compacted where
    they must be, and check the existing ones; return those created. A topic that must
    be compacted and is not raises `TopicError`: riverrun does not write there."""
    wanted = list(names if names is not None else topic_names(settings))
    admin = clients.admin(settings)
    try:
        existing = admin.list_topics(timeout=ADMIN_TIMEOUT_SECONDS).topics
        missing = sorted(set(wanted) - set(existing))
        if missing:
            _create(admin, settings, missing)
            log.info("created topics %s", ", ".join(missing))
        problems = topic_problems(admin, settings, wanted)
        # A topic just created is described a moment after the broker acknowledged it.
        deadline = time.monotonic() + CREATED_VISIBLE_SECONDS
        while problems and missing and time.monotonic() < deadline:
            time.sleep(0.1)
            problems = topic_problems(admin, settings, wanted)
    except KafkaException as err:
        raise TopicError(
            f"cannot create or check topics {', '.join(wanted)} on "
            f"{settings.bootstrap_servers} ({_reason(err)}); create them yourself or give "
            "riverrun's user the right to"
        ) from err
    if problems:
        raise TopicError("; ".join(problems))
    return missing


class TopicReader:
    """Reads every partition of some topics, from their beginning or from their end as
    of now, without a consumer group (nothing is committed).

    `read_to_end()` returns what the topics hold up to their end at the call; `poll()`
    what arrived since the last call, for readers that wait for something.
    """

    def __init__(
        self,
        settings: Settings,
        topics: Iterable[str],
        *,
        from_beginning: bool = True,
        isolation_level: str = "read_uncommitted",
    ) -> None:
        self.consumer = KafkaConsumer(
            bootstrap_servers=settings.bootstrap_servers,
            **kafka_options(settings),
            enable_auto_commit=False,
            isolation_level=isolation_level,
            client_id="riverrun-reader",
        )
        self.partitions = [
            TopicPartition(topic, p)
            for topic in topics
            for p in sorted(self.consumer.partitions_for_topic(topic) or ())
        ]
        if not self.partitions:  # no such topic (yet): nothing to read, nothing to seek
            return
        self.consumer.assign(self.partitions)
        if from_beginning:
            self.consumer.seek_to_beginning(*self.partitions)
        else:
            for tp, offset in self.consumer.end_offsets(self.partitions).items():
                self.consumer.seek(tp, offset)

    def poll(self, timeout_ms: int = 200) -> list[ConsumerRecord]:
        """The messages that arrived since the last call (maybe none), partition by
        partition in offset order."""
        if not self.partitions:
            time.sleep(timeout_ms / 1000)  # as a poll of an empty topic would wait
            return []
        batches = self.consumer.poll(timeout_ms=timeout_ms)
        return [message for messages in batches.values() for message in messages]

    def read_to_end(self) -> list[ConsumerRecord]:
        """Every message from the current positions up to the topics' end as of now."""
        if not self.partitions:
            return []
        end = self.consumer.end_offsets(self.partitions)
        out: list[ConsumerRecord] = []
        while any(self.consumer.position(tp) < end[tp] for tp in self.partitions):
            out += self.poll(timeout_ms=500)
        return out

    def close(self) -> None:
        self.consumer.close()

    def __enter__(self) -> "TopicReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_to_end(settings: Settings, topic: str) -> list[ConsumerRecord]:
    """Every message of `topic` from its beginning to its end as of now."""
    with TopicReader(settings, [topic]) as reader:
        return reader.read_to_end()
