"""`riverrun status`: what a consumer group of workers is doing, read from the broker.

The group's members and the partitions each owns (Kafka's group description), each
partition's committed offset, end offset and lag, the same for the global models'
learners (the learn partitions that hold examples), the versions each partition serves
(the workers' statuses and owner claims on the control topic) and each replica's newest
checkpoint (the checkpoints topic's chunk headers). Everything through kafka-python's
public API: `KafkaAdminClient.describe_groups` and `list_group_offsets`, a consumer's
`end_offsets`.
"""

import contextlib
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from online_models.learning.checkpoint import CheckpointRefused, parse_chunk
from streams.kafka.local_broker import LocalKafkaError, wait_until_ready
from streams.kafka.security import broker_shown, describe, kafka_options
from streams.runtime.control import ControlState
from streams.settings import Settings

#: How long status waits for the broker before it says it is unreachable.
TIMEOUT_SECONDS = 5.0


class BrokerUnreachable(Exception):
    """The broker did not answer: the message is the one sentence status prints."""


@dataclass
class Member:
    """A member of the consumer group: a worker's events consumer."""

    member: str  # client id and the start of its member id: unique within the group
    client_id: str
    host: str
    partitions: list[int]
    api_url: str | None = None  # from its owner claims on the control topic


@dataclass
class Checkpoint:
    """The newest checkpoint of one model replica (from its chunk header, not verified)."""

    model: str
    version: str
    next_offset: int
    updates: int
    created_at: str  # ISO 8601, UTC


@dataclass
class Partition:
    """One partition of the events topic."""

    partition: int
    committed: int | None
    end: int
    lag: int  # end - committed (end when nothing is committed)
    member: str | None  # who owns it now; None: nobody (no worker, or a rebalance)
    versions: list[str] = field(default_factory=list)  # "<version> <role>" per version
    checkpoints: list[Checkpoint] = field(default_factory=list)


@dataclass
class LearnPartition:
    """A partition of the learn topic that holds examples: how far its learner is."""

    partition: int
    committed: int | None
    end: int
    lag: int
    member: str | None  # the worker whose learner has it now


@dataclass
class GroupStatus:
    """Everything `riverrun status` shows."""

    broker: str
    group: str
    state: str  # Kafka's group state: Stable, PreparingRebalance, Empty, Dead, ...
    topic: str
    members: list[Member]
    partitions: list[Partition]
    notes: list[str] = field(default_factory=list)  # what could not be read, and why
    #: The global models' learners (group RIVERRUN_GROUP_ID + "-learner").
    learners: list[LearnPartition] = field(default_factory=list)

    @property
    def lag(self) -> int:
        return sum(p.lag for p in self.partitions)


def read_status(settings: Settings, timeout: float = TIMEOUT_SECONDS) -> GroupStatus:
    """The events consumer group's status now; raises BrokerUnreachable when the broker
    does not answer within `timeout` seconds."""
    shown = broker_shown(settings.bootstrap_servers)
    options = {
        "bootstrap_servers": settings.bootstrap_servers,
        **kafka_options(settings),
        "request_timeout_ms": int(timeout * 1000),
    }
    try:
        wait_until_ready(
            settings.bootstrap_servers, timeout, kafka_options(settings), describe(settings, shown)
        )
        with _closing(KafkaAdminClient(**options, client_id="riverrun-status")) as admin:
            group = admin.describe_groups([settings.group_id])[settings.group_id]
            committed = admin.list_group_offsets(settings.group_id).get(settings.group_id, {})
            learners = f"{settings.group_id}-learner"
            learner_group = admin.describe_groups([learners])[learners]
            committed.update(admin.list_group_offsets(learners).get(learners, {}))
            topics = set(admin.list_topics())
        with _closing(
            KafkaConsumer(**options, client_id="riverrun-status", enable_auto_commit=False)
        ) as consumer:
            found = _gather(settings, shown, group, committed, topics, consumer)
            if settings.learn_topic in topics:
                found.learners = _learners(settings, learner_group, committed, consumer)
            return found
    except LocalKafkaError as err:
        reason = str(err)
    except (KafkaError, OSError) as err:
        name = type(err).__name__
        reason = str(err) if str(err).startswith(name) else f"{name}: {err}"
    hint = (
        "start the local broker with `riverrun kafka up`"
        if settings.uses_local_broker
        else "check the cluster and RIVERRUN_BROKER"
    )
    raise BrokerUnreachable(f"broker {shown} unreachable: {reason} — {hint}")


@contextlib.contextmanager
def _closing(client: Any) -> Iterator[Any]:
    try:
        yield client
    finally:
        client.close()


def _gather(
    settings: Settings,
    broker: str,
    group: dict[str, Any],
    committed: dict[TopicPartition, Any],
    topics: set[str],
    consumer: KafkaConsumer,
) -> GroupStatus:
    s = settings
    notes: list[str] = []
    members, owners = _owners(group, s.events_topic)
    state = group.get("group_state") or "Dead"
    if state == "Dead" and not members:  # what Kafka says of a group it does not know
        state = "unknown to the broker (no worker has joined it)"
    status = GroupStatus(broker, s.group_id, state, s.events_topic, members, [], notes)
    if s.events_topic not in topics:
        notes.append(
            f"the events topic {s.events_topic} does not exist yet (a worker creates it at start)"
        )
        return status
    for partition, offset, end, lag in _lags(consumer, s.events_topic, committed):
        status.partitions.append(Partition(partition, offset, end, lag, owners.get(partition)))
    by_number = {p.partition: p for p in status.partitions}
    control, checkpoints = _read_topics(settings, consumer, topics, notes)
    if control is not None:
        _add_versions(settings, control, by_number, status.members)
    for (partition, _), checkpoint in sorted(checkpoints.items()):
        if partition in by_number:
            by_number[partition].checkpoints.append(checkpoint)
    return status


def _owners(group: dict[str, Any], topic: str) -> tuple[list[Member], dict[int, str]]:
    """The members of a described group, and which of them owns each partition of `topic`."""
    owners: dict[int, str] = {}
    members = []
    for m in group.get("members", []):
        assignment = m.get("member_assignment")
        partitions = sorted(
            p
            for a in (
                assignment.get("assigned_partitions", []) if isinstance(assignment, dict) else []
            )  # (not a dict while the group rebalances)
            if a["topic"] == topic
            for p in a["partitions"]
        )
        client_id, member_id = m["client_id"], m["member_id"]
        name = client_id + "-" + member_id[len(client_id) + 1 :][:8]
        members.append(Member(name, client_id, m["client_host"].lstrip("/"), partitions))
        owners.update({p: name for p in partitions})
    return members, owners


def _lags(
    consumer: KafkaConsumer, topic: str, committed: dict[TopicPartition, Any]
) -> list[tuple[int, int | None, int, int]]:
    """(partition, committed offset, end, lag) of each partition of `topic`."""
    tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
    ends = consumer.end_offsets(tps)
    found = []
    for tp in tps:
        commit = committed.get(tp)
        offset = commit.offset if commit is not None and commit.offset >= 0 else None
        found.append((tp.partition, offset, ends[tp], ends[tp] - (offset or 0)))
    return found


def _learners(
    settings: Settings,
    group: dict[str, Any],
    committed: dict[TopicPartition, Any],
    consumer: KafkaConsumer,
) -> list[LearnPartition]:
    """The learn partitions that hold examples, with their learner's progress."""
    _, owners = _owners(group, settings.learn_topic)
    return [
        LearnPartition(partition, offset, end, lag, owners.get(partition))
        for partition, offset, end, lag in _lags(consumer, settings.learn_topic, committed)
        if end
    ]


def _read_topics(
    settings: Settings, consumer: KafkaConsumer, topics: set[str], notes: list[str]
) -> tuple[ControlState | None, dict[tuple[int, str], Checkpoint]]:
    """The control topic's view and the newest checkpoint of each (partition, model) of
    the group's events topic."""
    from streams.runtime.checkpoints import checkpoint_key

    s = settings
    key: bytes | None = None
    wanted = [t for t in (s.control_topic, s.checkpoints_topic) if t in topics]
    try:
        key = checkpoint_key(s)
    except (ValueError, RuntimeError, OSError) as err:
        notes.append(
            f"versions are not shown: the control topic's messages cannot be checked ({err})"
        )
        wanted = [t for t in wanted if t != s.control_topic]
    control = ControlState() if key is not None and s.control_topic in wanted else None
    newest: dict[tuple[int, str], tuple[int, Checkpoint]] = {}
    prefix = f"{s.group_id}|{s.events_topic}|".encode()
    for message in _read_to_end(consumer, wanted):
        if message.topic == s.control_topic:
            assert control is not None and key is not None
            control.add(message.value, key)
            continue
        if not (message.key or b"").startswith(prefix) or message.value is None:
            continue
        try:
            header, _ = parse_chunk(message.value)
        except CheckpointRefused:
            continue
        if header.chunk != 0:
            continue
        where = (header.partition, header.model)
        if where not in newest or header.sequence > newest[where][0]:
            seen = Checkpoint(
                header.model,
                header.model_version,
                header.next_offset,
                header.updates,
                header.created_at.isoformat(),
            )
            newest[where] = (header.sequence, seen)
    if control is not None and control.refused:
        notes.append(
            f"{len(control.refused)} control message(s) refused (not signed with "
            "this RIVERRUN_CHECKPOINT_KEY)"
        )
    return control, {where: seen for where, (_, seen) in newest.items()}


def _read_to_end(consumer: KafkaConsumer, topics: list[str]) -> list[Any]:
    tps = [
        TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or ())
    ]
    if not tps:
        return []
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    end = consumer.end_offsets(tps)
    out: list[Any] = []
    while any(consumer.position(tp) < end[tp] for tp in tps):
        for batch in consumer.poll(timeout_ms=500).values():
            out += batch
    return out


def _add_versions(
    settings: Settings,
    control: ControlState,
    partitions: dict[int, Partition],
    members: list[Member],
) -> None:
    """Each partition's versions (the workers' newest statuses) and each member's API URL
    (its owner claims)."""
    for (_, number), status in sorted(control.statuses.items()):
        partition = partitions.get(number)
        if partition is not None:
            partition.versions += [f"{v.version} {v.role}" for v in status.versions]
    urls = {
        owner.worker: owner.url
        for (topic, _), owner in control.owners.items()
        if topic == settings.events_topic
    }
    for member in members:
        for worker, url in urls.items():
            if worker.startswith(member.member):
                member.api_url = url


def status_json(status: GroupStatus) -> str:
    """The status as JSON (what `riverrun status --json` prints)."""
    return json.dumps({**asdict(status), "lag": status.lag}, indent=2)


def _offsets(partitions: list[Partition] | list[LearnPartition]) -> list[str]:
    """A table of partitions: committed offset, end, lag and the member that has each."""
    lines = [f"  {'partition':>9}  {'committed':>10}  {'end':>10}  {'lag':>8}  member"]
    for p in partitions:
        committed = "-" if p.committed is None else str(p.committed)
        lines.append(
            f"  {p.partition:>9}  {committed:>10}  {p.end:>10}  {p.lag:>8}  {p.member or '(none)'}"
        )
    return lines


def status_lines(status: GroupStatus, now: datetime | None = None) -> list[str]:
    """The status as text (what `riverrun status` prints)."""
    now = now or datetime.now(UTC)
    lines = [
        f"group {status.group} on {status.broker}: {status.state}, "
        f"{len(status.members)} member(s), {len(status.partitions)} partition(s) of "
        f"{status.topic}, lag {status.lag}",
    ]
    if status.members:
        lines.append("members:")
        for m in status.members:
            owned = ",".join(map(str, m.partitions)) or "none"
            api = f", api {m.api_url}" if m.api_url else ""
            lines.append(f"  {m.member}  host {m.host}, partitions {owned}{api}")
    if status.partitions:
        lines += ["partitions:", *_offsets(status.partitions)]
    if status.learners:
        lines.append("learners of the global models (learn partitions with examples):")
        lines += _offsets(status.learners)
    served = [p for p in status.partitions if p.versions]
    if served:
        lines.append("versions served (control topic):")
        for p in served:
            lines.append(f"  partition {p.partition}: {', '.join(p.versions)}")
    saved = [p for p in status.partitions if p.checkpoints]
    if saved:
        lines.append("last checkpoints:")
        for p in saved:
            for c in p.checkpoints:
                age = (now - datetime.fromisoformat(c.created_at)).total_seconds()
                lines.append(
                    f"  partition {p.partition}: {c.version} at offset {c.next_offset}, "
                    f"{c.updates} updates, {age:.0f} s ago"
                )
    lines += [f"note: {note}" for note in status.notes]
    return lines
