"""Create riverrun's topics on the cluster when they are missing."""

import contextlib
import logging
from collections.abc import Iterable

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from streams.settings import Settings

log = logging.getLogger(__name__)


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
    return {}


def ensure_topics(settings: Settings, names: Iterable[str] | None = None) -> list[str]:
    """Create the missing ones of `names` (default: all of riverrun's); return those created."""
    wanted = list(names if names is not None else topic_names(settings))
    admin = KafkaAdminClient(
        bootstrap_servers=settings.bootstrap_servers, client_id="riverrun-admin"
    )
    try:
        missing = sorted(set(wanted) - set(admin.list_topics()))
        if not missing:
            return []
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
        return missing
    except KafkaError as err:
        raise RuntimeError(
            f"cannot create topics {', '.join(wanted)} on {settings.bootstrap_servers} "
            f"({err}); create them yourself or give riverrun's user the right to"
        ) from err
    finally:
        admin.close()
