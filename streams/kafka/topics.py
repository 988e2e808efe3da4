"""riverrun's topics: create the missing ones, read what they hold."""

import contextlib
import logging
import time
from collections.abc import Iterable

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import KafkaError, TopicAlreadyExistsError

from streams.kafka.security import kafka_options
from streams.settings import Settings

log = logging.getLogger(__name__)

#: How long a topic just created may take to be described by the broker.
CREATED_VISIBLE_SECONDS = 10.0


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
    if name == settings.control_topic:
        # Compacted: the newest plan of each model, the newest status of each partition.
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
    return [settings.checkpoints_topic, settings.control_topic]


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


def topic_problems(admin: KafkaAdminClient, settings: Settings, names: Iterable[str]) -> list[str]:
    """One sentence for each of `names` that must be compacted and is missing or not."""
    must = [name for name in names if name in compacted_topics(settings)]
    if not must:
        return []
    found = admin.describe_configs(
        [
            ConfigResource(ConfigResourceType.TOPIC, name, configs={"cleanup.policy": None})
            for name in must
        ],
        config_filter="all",
    ).get("topic", {})
    problems = []
    for name in must:
        configs = found.get(name) or {}
        if not configs:
            problems.append(missing_topic(settings, name))
            continue
        policy = str(configs["cleanup.policy"]["value"])
        # Not `compact,delete` either: its retention removes a quiet replica's only checkpoint.
        if policy.replace(" ", "") != "compact":
            problems.append(not_compacted(settings, name, policy))
    return problems


def admin_client(settings: Settings) -> KafkaAdminClient:
    return KafkaAdminClient(
        bootstrap_servers=settings.bootstrap_servers,
        client_id="riverrun-admin",
        **kafka_options(settings),
    )


def check_topics(settings: Settings, names: Iterable[str]) -> list[str]:
    """The problems of `names` now (see `topic_problems`), read from the broker."""
    admin = admin_client(settings)
    try:
        return topic_problems(admin, settings, names)
    finally:
        admin.close()


def ensure_topics(settings: Settings, names: Iterable[str] | None = None) -> list[str]:
    """Create the missing ones of `names` (default: all of riverrun's), compacted where
    they must be, and check the existing ones; return those created. A topic that must
    be compacted and is not raises `TopicError`: riverrun does not write there."""
    wanted = list(names if names is not None else topic_names(settings))
    admin = admin_client(settings)
    try:
        missing = sorted(set(wanted) - set(admin.list_topics()))
        if missing:
            new = [
                NewTopic(
                    name,
                    settings.topic_partitions,
                    settings.topic_replication,
                    topic_configs=topic_configs(settings, name),
                )
                for name in missing
            ]
            with contextlib.suppress(TopicAlreadyExistsError):  # another worker was faster
                admin.create_topics(new)
            log.info("created topics %s", ", ".join(missing))
        problems = topic_problems(admin, settings, wanted)
        # A topic just created is described a moment after the broker acknowledged it.
        deadline = time.monotonic() + CREATED_VISIBLE_SECONDS
        while problems and missing and time.monotonic() < deadline:
            time.sleep(0.1)
            problems = topic_problems(admin, settings, wanted)
    except KafkaError as err:
        raise TopicError(
            f"cannot create or check topics {', '.join(wanted)} on "
            f"{settings.bootstrap_servers} ({err}); create them yourself or give "
            "riverrun's user the right to"
        ) from err
    finally:
        admin.close()
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
