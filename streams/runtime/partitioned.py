"""One machinery under every batched service of the worker: it owns partitions.

A `PartitionedService` consumes some topics in one consumer group, in batches, on
librdkafka (`streams.kafka.group`; outside Faust's per-message stream machinery). For each
partition it owns it holds a state — model replicas, a join — and:

- on assignment, keeps the new partitions paused, returns to the group at once, and
  restores their states concurrently (from their newest valid checkpoints) off the group
  protocol; each resumes where its state does (never after the committed offset:
  outputs below it were delivered, so the events up to it are re-run with their outputs
  dropped). A restore never holds the group's rebalance, whatever it takes;
- per batch, hands the fetched messages to the subclass, which sends outputs through an
  `Outbox` without awaiting each delivery; commits the offsets handled once
  every output is acknowledged (in a chain of commit tasks so that the next batch is
  fetched and processed meanwhile), with metadata saying how far the outputs reached, so
  that after a crash the next owner skips the outputs already delivered
  (`streams.kafka.delivered`: effectively once); or commits outputs and offsets in one Kafka
  transaction (exactly_once), with this member's group metadata, so that a zombie's
  commit is refused (KIP-447);
- checkpoints each state once the offsets it covers are committed: every N events or T
  seconds, on revoke and on stop.

Subclasses say only what differs: their topics and group, what a partition's state is
and how it is restored and checkpointed, and how a batch becomes outputs.
"""

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any, Generic, TypeVar

from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka import TopicPartition as KafkaPartition
from mode import Service

from online_models import ModelSpec
from streams.kafka import clients
from streams.kafka.delivered import Delivered, Where, encode_written, find_delivered, parse_written
from streams.kafka.group import Batches, GroupConsumer, group_members, kafka_error
from streams.kafka.outbox import LoopProducer, Outbox
from streams.kafka.records import Record, TopicPartition
from streams.runtime.checkpoints import CheckpointsRefused, CheckpointStore
from streams.runtime.forked import Serializer
from streams.runtime.metrics import WorkerMetrics
from streams.settings import Settings

log = logging.getLogger(__name__)

#: Batches whose outputs may await acknowledgement while later ones are processed.
MAX_BATCHES_IN_FLIGHT = 4
#: exactly_once: one transaction takes up to this many fetched batches that are at hand
#: within TRANSACTION_SECONDS (begin, offsets and commit are round trips to the broker,
#: paid per transaction, not per batch). They are fetched before the batch lock is
#: taken: a fetch runs the group's rebalance callbacks, which take that lock.
BATCHES_PER_TRANSACTION = MAX_BATCHES_IN_FLIGHT
TRANSACTION_SECONDS = 0.1

#: A failed restore is tried again after this many seconds (while the partition stays).
RESTORE_RETRY_SECONDS = 5.0

Key = TypeVar("Key")


class PartitionState:
    """What a service holds for one partition it owns, and where each of its topics is."""

    def __init__(self) -> None:
        self.positions: dict[TopicPartition, int] = {}  # next offset to handle
        self.fetched: dict[TopicPartition, int] = {}  # next offset to fetch
        #: Outputs of offsets below these were delivered before this worker got the
        #: partition: those events are re-run to rebuild the state, their outputs dropped.
        self.replay_until: dict[TopicPartition, int] = {}
        self.check_start: set[TopicPartition] = set()  # the next batch must start at fetched
        #: The first offset of the last batch dropped by that check, per topic partition.
        self.dropped_at: dict[TopicPartition, int] = {}
        self.since_checkpoint = 0  # events handled since the last checkpoint
        self.checkpointed_at = time.monotonic()

    def replayed(self, message: Record) -> bool:
        """Whether the last owner already delivered this message's outputs."""
        return message.offset < self.replay_until.get(
            TopicPartition(message.topic, message.partition), 0
        )


State = TypeVar("State", bound=PartitionState)


def accept(
    tp: TopicPartition,
    messages: list[Record],
    position: int | None,
    check_start: bool,
    dropped_at: int | None = None,
) -> list[Record] | None:
    """The messages of a fetched batch to process, `position` being the next offset the
    partition expects; None when the batch must be dropped and `tp` sought again.

    With `check_start` (the first batch after a partition resumed), a batch beyond
    `position` was fetched before the seek to it took effect: it is dropped and fetched
    again from `position`. A fetch in flight when the partition was sought can return
    records twice: each offset is processed once. A batch that starts where the dropped
    one did (`dropped_at`) again, after the seek, is the partition's next record: the
    offsets before it hold none (the commit marker of a transactional producer, or
    records removed by compaction).

    >>> at = lambda *offsets: [Record("t", 0, o, None, b"", 0, []) for o in offsets]
    >>> accept(TopicPartition("t", 0), at(5, 6), 4, True) is None  # fetched before the seek
    True
    >>> [m.offset for m in accept(TopicPartition("t", 0), at(5, 6), 4, True, dropped_at=5)]
    [5, 6]
    """
    if position is None or messages[0].offset == position:
        return messages
    if check_start and messages[0].offset > position and messages[0].offset != dropped_at:
        log.info(
            "%s[%d]: dropping a batch at %d fetched before seeking to %d",
            tp.topic,
            tp.partition,
            messages[0].offset,
            position,
        )
        return None
    return [m for m in messages if m.offset >= position]


def first_dropped(dropped_at: int | None, offset: int) -> int:
    """Where the batches dropped since the partition resumed started, the earliest: what
    `accept` takes for the partition's next record when a fetch after the seek starts there.

    exactly_once handles several fetched batches at once: all of them may have been fetched
    before the seek, and each is dropped in turn. Had the last one's start been kept, the
    fetch after the seek (which starts at the first one's) would be dropped again, and so
    on without end (the learner of a global model once stalled so, its partition resuming
    at a transaction's commit marker).

    >>> first_dropped(None, 530), first_dropped(530, 1532), first_dropped(1532, 530)
    (530, 530, 530)
    """
    return offset if dropped_at is None else min(dropped_at, offset)


async def start_offset(
    consumer: GroupConsumer, tp: TopicPartition, wanted: int, committed: int | None
) -> int:
    """Where `tp` resumes for a state that wants `wanted`: never before the log start
    (retention may have deleted older events) nor after the committed offset (where
    delivered outputs stop)."""
    log_start, _ = await consumer.watermarks(tp)
    start = max(wanted, log_start)
    if committed is not None:
        start = min(start, committed)
    return start


async def resume_at(
    consumer: GroupConsumer, tp: TopicPartition, wanted: int, committed: int | None
) -> int:
    """Seek the fetching partition `tp` to `start_offset(...)`; return it."""
    start = await start_offset(consumer, tp, wanted, committed)
    await consumer.seek(tp, start)
    return start


def where_it_starts(tp: TopicPartition, start: int, committed: int | None, wanted: int) -> str:
    """The log line of a partition acquired at offset `start` (`resume_at` of `wanted`,
    the restored state's next offset, and `committed`).

    >>> where_it_starts(TopicPartition("events", 2), 0, None, 0)
    'events[2]: starting at the beginning (nothing committed yet)'
    >>> print(where_it_starts(TopicPartition("events", 2), 400, 900, 400))
    events[2]: resuming at offset 400, where the state ends, before the committed \
offset 900: events 400 to 899 are learnt again and their outputs, delivered before, are not \
sent again
    """
    where = f"{tp.topic}[{tp.partition}]"
    why = "the first offset still in the log" if start > wanted else "where the state ends"
    if committed is None:
        if start == 0:
            return f"{where}: starting at the beginning (nothing committed yet)"
        return f"{where}: starting at offset {start}, {why} (nothing committed yet)"
    if start >= committed:
        return f"{where}: resuming at the committed offset {committed}"
    return (
        f"{where}: resuming at offset {start}, {why}, before the committed offset "
        f"{committed}: events {start} to {committed - 1} are learnt again and their "
        "outputs, delivered before, are not sent again"
    )


def idle_warning(topic: str, partitions: int, members: int | None) -> str:
    """What a worker that got no partition of `topic` logs.

    >>> print(idle_warning("events", 2, 3))
    this worker got no partition of events (2 partitions, 3 members): add partitions or \
run fewer workers
    """
    group = f"{members} members" if members is not None else "more members than partitions"
    return (
        f"this worker got no partition of {topic} ({partitions} partitions, {group}): add "
        "partitions or run fewer workers"
    )


def checkpoint_line(
    service: str, positions: Mapping[TopicPartition, int], size: int | None, seconds: float
) -> str:
    """What a worker logs when a partition's checkpoint is written.

    >>> checkpoint_line("events", {TopicPartition("events", 3): 1200}, 46500, 0.0123)
    'events: checkpoint written for events[3] up to offset 1200: 46500 bytes in 12 ms'
    """
    where = ", ".join(
        f"{tp.topic}[{tp.partition}] up to offset {offset}"
        for tp, offset in sorted(positions.items())
    )
    written = "" if size is None else f"{size} bytes "
    return f"{service}: checkpoint written for {where}: {written}in {seconds * 1000:.0f} ms"


def log_failure(err: BaseException, message: str, *args: object) -> None:
    """Log `message` about `err`: one line for a Kafka error (the broker away, the group
    gone on without this worker after an outage), with the traceback for anything else."""
    if isinstance(err, KafkaException):
        error = kafka_error(err)
        said = error.str() if error is not None else type(err).__name__
        log.error(f"{message} (%s)", *args, said)
    else:
        log.exception(message, *args)


class PartitionedService(Service, Generic[Key, State]):
    """Consumes `topics()` in batches and owns one `State` per partition key."""

    #: In logs and client ids: which service this is.
    name = "partitioned"

    def __init__(
        self,
        settings: Settings,
        metrics: WorkerMetrics,
        models: Mapping[str, ModelSpec],
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.metrics = metrics
        self.models = models  # the app's models by name
        self.owned: dict[Key, State] = {}
        self.batch_lock = asyncio.Lock()
        #: Serialises checkpoints (and snapshots) off the loop once they are slow.
        self.serializer = Serializer(settings.serialize_in_child)
        self.consumer: GroupConsumer | None = None
        self.producer: Producer | None = None
        self.deliveries: LoopProducer | None = None  # serves the producer's deliveries
        #: The restores under way, by state key (their partitions are paused meanwhile).
        self.restoring: dict[Key, asyncio.Task[None]] = {}
        self.store: CheckpointStore | None = None
        self.partitions: dict[str, int] = {}  # partition count of each output topic
        self.commits: asyncio.Future[None] | None = None  # the last of the chained commits
        #: Output partition -> offset after this worker's last acknowledged output there
        #: (in commit order): the metadata of each commit.
        self.written: dict[Where, int] = {}
        self.metadata_too_long = False  # warned once that commits cannot carry `written`
        #: Outputs a crashed owner delivered after its last commit, by input partition,
        #: and the metadata of that commit: re-committed until the re-run is past them
        #: (this worker's `written` lies beyond them, a next owner would not see them).
        self.delivered: dict[TopicPartition, Delivered] = {}
        self.inherited: dict[TopicPartition, str] = {}
        self.in_flight = asyncio.Semaphore(MAX_BATCHES_IN_FLIGHT)
        self.joined = False  # received a first assignment from the group
        self.rebalancing = False  # between a revoke and the end of the next assignment
        #: A commit was refused since the last assignment: the group went on without
        #: this member, whose states are dropped rather than checkpointed.
        self.membership_lost = False
        #: The offsets this worker committed last, for the log line on stop and hand-over.
        self.committed: dict[TopicPartition, int] = {}

    # --- what subclasses say ---------------------------------------------------------
    def topics(self) -> list[str]:
        """The topics consumed."""
        raise NotImplementedError

    def group_id(self) -> str:
        """The consumer group (also the group of transactional offset commits)."""
        raise NotImplementedError

    def output_topics(self) -> list[str]:
        """The topics outputs go to (the outbox needs their partition counts)."""
        raise NotImplementedError

    def consumer_options(self) -> dict[str, Any]:
        """Extra librdkafka consumer options."""
        return {}

    def key(self, tp: TopicPartition) -> Key:
        """The state a topic partition belongs to."""
        raise NotImplementedError

    async def restore(
        self, key: Key, tps: list[TopicPartition], committed: dict[TopicPartition, int | None]
    ) -> tuple[State, dict[TopicPartition, int]]:
        """The state of a newly assigned partition (from its checkpoint, or fresh) and
        the offset each of its topic partitions should resume at."""
        raise NotImplementedError

    async def handle(
        self, state: State, batches: Batches, outbox: Outbox
    ) -> Counter[TopicPartition]:
        """Turn fetched messages (maybe none: a state may hold buffered ones) into outputs
        queued in `outbox`, advancing `state.positions`; return the count handled per
        topic partition."""
        raise NotImplementedError

    def pending(self) -> bool:
        """Whether some state holds fetched messages it has not handled yet."""
        return False

    async def prepare(self, fetched: list[Batches]) -> bool:
        """Before a batch is handled, outside the batch lock: fetch what decoding it needs
        (the schemas its records name, waiting while the registry is away). False when the
        worker stopped meanwhile: the batch is then left unhandled and uncommitted, for
        the next owner."""
        return True

    async def checkpoint(self, state: State, *, transactional: bool) -> int | None:
        """Write `state`'s checkpoint(s) at its positions, until acknowledged; the bytes
        written (None: not counted)."""
        raise NotImplementedError

    def replica_names(self, state: State) -> Iterable[tuple[str, int]]:
        """(name, partition) of each checkpointed replica of `state`, for the age gauge."""
        raise NotImplementedError

    # --- lifecycle -------------------------------------------------------------------
    async def on_start(self) -> None:
        s = self.settings
        transactions: dict[str, Any] = {}
        if s.exactly_once:
            transactions = {
                "transactional_id": s.worker_transactional_id(self.name),
                "transaction.timeout.ms": int(s.transaction_timeout_seconds * 1000),
            }
        producer = clients.producer(
            s, client_id=f"{s.group_id}-{self.name}-producer", **transactions
        )
        self.producer, self.deliveries = producer, LoopProducer(producer)
        self.deliveries.start()
        if s.exactly_once:
            await asyncio.to_thread(producer.init_transactions, 60.0)
        self.consumer = GroupConsumer(
            s,
            self.topics(),
            group_id=self.group_id(),
            client_id=f"{s.group_id}-{self.name}",
            on_assign=self._assigned,
            on_revoke=self._revoked,
            on_lost=self._lost,
            **self.consumer_options(),
        )
        await self.consumer.start()
        for topic in self.output_topics():
            self.partitions[topic] = await self.consumer.partition_count(topic)
        self.store = CheckpointStore(s, self.deliveries, self.metrics, self.name)
        await self.store.start()
        # Every output of this worker lies at or after today's end of each output partition.
        for topic, count in self.partitions.items():
            for partition in range(count):
                _, end = await self.consumer.watermarks(TopicPartition(topic, partition))
                self.written[topic, partition] = end

    async def on_stop(self) -> None:
        try:
            async with self.batch_lock:  # the batch in flight is sent and committed first
                if self.store is not None:  # started
                    assigned = self.assigned()
                    await self.release(assigned)
                    if self.membership_lost:
                        log.error(
                            "could not commit or checkpoint %s on stop: the consumer group "
                            "went on without this worker (its session lapsed); a restart "
                            "resumes from the last committed offset and checkpoint",
                            self.name,
                        )
                    else:
                        self.log_committed(assigned, "on stop")
        except Exception as err:
            log_failure(
                err,
                "could not commit or checkpoint %s on stop: a restart resumes from the "
                "last committed offset and checkpoint",
                self.name,
            )
        finally:
            # Outside the lock: the group's last revocation (as the consumer leaves) waits
            # for it in its hand-over.
            await self._cancel_restores()
            if self.consumer is not None:
                await self.consumer.stop()
            if self.deliveries is not None:
                left = await self.deliveries.stop(timeout=30.0)
                if left:
                    log.error("%s: %d outputs were not written before the stop", self.name, left)

    def log_committed(self, tps: set[TopicPartition], when: str) -> None:
        """One line: the offset this worker committed last for each of `tps` (where its
        next owner starts), which it then forgets (`tps` are no longer its own)."""
        if not tps:
            return
        shown = ", ".join(
            f"{tp.topic}[{tp.partition}] at {self.committed.pop(tp)}"
            if tp in self.committed
            else f"{tp.topic}[{tp.partition}] as before (nothing processed here since)"
            for tp in sorted(tps)
        )
        log.info("%s: offsets committed %s: %s", self.name, when, shown)

    def warn_if_idle(self, assigned: set[TopicPartition]) -> None:
        """Warn (in the background) when the group gave this worker no partition of its
        first topic: the group has more members than the topic has partitions."""
        topic = self.topics()[0]
        if self.consumer is not None and not any(tp.topic == topic for tp in assigned):
            self.add_future(self._warn_idle(topic))

    async def _warn_idle(self, topic: str) -> None:
        assert self.consumer is not None
        partitions = await self.consumer.partition_count(topic)
        members = await asyncio.to_thread(group_members, self.settings, self.group_id())
        log.warning("%s", idle_warning(topic, partitions, members))

    def assigned(self) -> set[TopicPartition]:
        """Every topic partition of the owned states."""
        return {tp for state in self.owned.values() for tp in state.positions}

    def readiness(self) -> dict[str, Any]:
        """Whether this service consumes every partition the group gave it, restored:
        not before it joined the group, not while the group rebalances, not while a
        partition's state is being restored (or its restore failed)."""
        assignment = self.consumer.assigned if self.consumer is not None else set()
        restoring = sorted(
            f"{tp.topic}[{tp.partition}]" for tp in assignment if self.key(tp) not in self.owned
        )
        if restoring:
            reason = f"restoring {len(restoring)} partition(s) from their checkpoints"
        elif not self.joined:
            reason = "joining the consumer group"
        elif self.rebalancing:
            reason = "the consumer group is rebalancing"
        else:
            reason = None
        ready = reason is None and self.consumer is not None and not self.should_stop
        return {
            "ready": ready,
            **({"reason": reason} if reason else {}),
            "consuming": sorted(
                f"{tp.topic}[{tp.partition}]" for tp in assignment if self.key(tp) in self.owned
            ),
            "restoring": restoring,
        }

    # --- ownership -------------------------------------------------------------------
    async def _assigned(self, assigned: set[TopicPartition]) -> None:
        """The group gave this member `assigned` (paused): restore their states in the
        background, each resuming once restored."""
        if self.should_stop:  # (a group that rebalances as this worker leaves it)
            return
        log.info(
            "%s partitions assigned: %s",
            self.name,
            sorted({tp.partition for tp in assigned}),
        )
        self.warn_if_idle(assigned)
        self.rebalancing = False
        self.joined = True
        self.membership_lost = False
        groups: dict[Key, list[TopicPartition]] = {}
        for tp in sorted(assigned):
            groups.setdefault(self.key(tp), []).append(tp)
        for key, tps in groups.items():
            if key not in self.owned and key not in self.restoring:
                self.restoring[key] = asyncio.ensure_future(self._restore(key, tps))

    async def _restore(self, key: Key, tps: list[TopicPartition]) -> None:
        """Restore one state until it succeeds (or its partitions go), then resume its
        partitions where it does."""
        try:
            while True:
                try:
                    await self.acquire(key, tps)
                    return
                except asyncio.CancelledError:
                    raise
                except Exception as err:
                    log_failure(
                        err,
                        "could not restore %s partitions %s: trying again in %.0f s",
                        self.name,
                        sorted(f"{tp.topic}[{tp.partition}]" for tp in tps),
                        RESTORE_RETRY_SECONDS,
                    )
                await asyncio.sleep(RESTORE_RETRY_SECONDS)
        finally:
            self.restoring.pop(key, None)

    async def _cancel_restores(self) -> None:
        tasks = list(self.restoring.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _revoked(self, revoked: set[TopicPartition]) -> None:
        """Before partitions move elsewhere: the batch in flight finishes, every processed
        batch commits and their states checkpoint, so that the next owner starts exactly
        after the last output, with the states as they were."""
        self.rebalancing = True  # until the next assignment
        await self._cancel_restores()
        async with self.batch_lock:
            try:
                await self.release(revoked)
                self.log_committed(revoked, "as the group rebalances")
            except Exception as err:
                log_failure(
                    err,
                    "could not commit or checkpoint revoked %s partitions: their next owner "
                    "resumes from the last committed offset and checkpoint",
                    self.name,
                )

    async def _lost(self, lost: set[TopicPartition]) -> None:
        """The group went on without this member (it stalled past its session timeout,
        or the broker was away): the partitions are someone else's already, so nothing
        is committed or checkpointed for them."""
        self.rebalancing = True
        self.membership_lost = True
        # Said first: the batch in flight may hold the lock until its commit is refused.
        log.warning(
            "%s: the consumer group went on without this worker (partitions %s lost, e.g. "
            "after a stall past RIVERRUN_SESSION_TIMEOUT_SECONDS): their next owner "
            "resumes from the last committed offset and checkpoint; rejoining",
            self.name,
            sorted(f"{tp.topic}[{tp.partition}]" for tp in lost),
        )
        await self._cancel_restores()
        async with self.batch_lock:
            for key in {self.key(tp) for tp in lost}:
                self.owned.pop(key, None)
            for tp in lost:
                self.delivered.pop(tp, None)
                self.inherited.pop(tp, None)
                self.committed.pop(tp, None)

    async def acquire(self, key: Key, tps: list[TopicPartition]) -> None:
        """Restore the state of newly assigned (paused) partitions and resume each of
        their topics where the state does."""
        assert self.consumer is not None
        # This worker's own batches in flight settle first, their outputs acknowledged and
        # their commits made or refused: after the group went on without it (a broker
        # restart), the outputs it sent since its last commit are a last owner's, and read
        # before they are written they would be missed and sent again by the re-run.
        with contextlib.suppress(Exception):  # (a failed commit stops the worker anyway)
            await self.drain()
        commits = await self.consumer.committed(tps)
        committed: dict[TopicPartition, int | None] = {}
        sources: dict[TopicPartition, tuple[int, dict[Where, int]]] = {}
        metadata: dict[TopicPartition, str] = {}
        for tp in tps:
            offset, text = commits.get(tp, (None, None))
            committed[tp] = offset
            written = parse_written(text)
            if offset is not None and written is not None and text is not None:
                sources[tp] = (offset, written)
                metadata[tp] = text
        state, wanted = await self.restore(key, tps, committed)
        starts: dict[TopicPartition, int] = {}
        for tp in tps:
            start = await start_offset(self.consumer, tp, wanted[tp], committed[tp])
            starts[tp] = state.positions[tp] = state.fetched[tp] = start
            state.replay_until[tp] = committed[tp] or 0
            state.check_start.add(tp)
            if start != committed[tp]:
                log.info("%s", where_it_starts(tp, start, committed[tp], wanted[tp]))
        found: dict[TopicPartition, Delivered] = {}
        if sources and not self.settings.exactly_once:
            found = await find_delivered(self.settings, sources, self.output_topics())
        async with self.batch_lock:
            if not set(tps) <= self.consumer.assigned:
                return  # revoked meanwhile
            for tp, delivered in found.items():
                if delivered:
                    self.delivered[tp], self.inherited[tp] = delivered, metadata[tp]
            self.owned[key] = state
            await self.consumer.resume_at(starts)

    async def release(self, revoked: set[TopicPartition]) -> None:
        """Commit and checkpoint the partitions this worker gives up (or stops serving);
        only drop them when their offsets could not be committed (a checkpoint covers
        committed offsets only)."""
        try:
            await self.drain()
        finally:
            for tp in revoked:
                self.delivered.pop(tp, None)
                self.inherited.pop(tp, None)
            states = [self.owned.pop(key, None) for key in {self.key(tp) for tp in revoked}]
        if self.membership_lost:
            return
        for state in states:
            if state is not None and state.since_checkpoint:
                await self.write(state)

    async def write(self, state: State) -> None:
        """Checkpoint `state`; called only with every offset it covers committed."""
        started = time.perf_counter()
        try:
            size = await self.checkpoint(state, transactional=self.settings.exactly_once)
        except CheckpointsRefused:  # said once by the store; the age metric keeps growing
            state.since_checkpoint = 0
            return
        log.info(
            "%s", checkpoint_line(self.name, state.positions, size, time.perf_counter() - started)
        )
        state.since_checkpoint = 0
        state.checkpointed_at = time.monotonic()

    async def checkpoint_due(self) -> None:
        """Checkpoint states that handled RIVERRUN_CHECKPOINT_EVERY_EVENTS events, or any
        event RIVERRUN_CHECKPOINT_EVERY_SECONDS ago, since their last one."""
        s = self.settings
        oldest = time.monotonic() - s.checkpoint_every_seconds
        due = [
            state
            for state in self.owned.values()
            if state.since_checkpoint >= s.checkpoint_every_events
            or (state.since_checkpoint and state.checkpointed_at <= oldest)
        ]
        if due:
            await self.drain()  # a checkpoint covers committed offsets only
            for state in due:
                await self.write(state)
        now = time.monotonic()
        for state in self.owned.values():
            for name, partition in self.replica_names(state):
                gauge = self.metrics.checkpoint_age.labels(name, str(partition))
                gauge.set(now - state.checkpointed_at)

    # --- the batch path --------------------------------------------------------------
    @Service.task
    async def _consume(self) -> None:
        assert self.consumer is not None
        poll_seconds = max(0.001, self.settings.batch_seconds)
        while not self.should_stop:
            if self.commits is not None and self.commits.done() and self.commits.exception():
                raise self.commits.exception()  # type: ignore[misc]  # stops the worker
            fetched = [await self.consumer.fetch(self.settings.batch_size, poll_seconds)]
            if self.settings.exactly_once and fetched[0]:
                fetched += await self._at_hand()
            # (Not under the lock: a stop or a rebalance never waits for the registry.)
            if any(fetched) and not await self.prepare(fetched):
                continue  # stopping
            async with self.batch_lock:
                if any(fetched) or self.pending():
                    await self.process(fetched)
                await self.checkpoint_due()

    async def _at_hand(self) -> list[Batches]:
        """exactly_once: the further batches fetched at once, for the same transaction.

        Never fetched with the batch lock held: a fetch runs the group's rebalance
        callbacks, and their handlers wait for that lock (a revoke or a lost assignment
        during a fetch inside the batch would wait for itself)."""
        assert self.consumer is not None
        more: list[Batches] = []
        started = time.monotonic()
        while len(more) < BATCHES_PER_TRANSACTION - 1:
            if time.monotonic() - started > TRANSACTION_SECONDS:
                break
            batch = await self.consumer.fetch(self.settings.batch_size, 0)
            if not batch:
                break
            more.append(batch)
        return more

    async def process(self, fetched: list[Batches]) -> None:
        """Handle fetched batches, in order; commit once all is delivered (exactly_once:
        outputs and offsets of all of them in one transaction)."""
        assert self.consumer is not None and self.producer is not None
        if not self.settings.exactly_once:
            for records in fetched:
                await self._process(records)
            return
        producer = self.producer
        await asyncio.to_thread(producer.begin_transaction)
        try:
            offsets: dict[TopicPartition, int] = {}
            for records in fetched:
                offsets.update(await self._process(records))
            if offsets:
                group = await self.consumer.group_metadata()
                parts = [KafkaPartition(tp.topic, tp.partition, o) for tp, o in offsets.items()]
                await asyncio.to_thread(producer.send_offsets_to_transaction, parts, group, 60.0)
            await asyncio.to_thread(producer.commit_transaction, 60.0)
            self.committed.update(offsets)
        except BaseException as err:
            fenced = error_code(err) in FENCED
            log.error(
                "a %s transaction failed%s: aborting it and stopping; a restart resumes "
                "after the last committed transaction%s",
                self.name,
                f" ({err})" if isinstance(err, KafkaException) else "",
                " (another worker took this worker's partitions over while it stalled: "
                "its outputs are refused, as they must be)"
                if fenced
                else " (check the broker)",
            )
            with contextlib.suppress(Exception):
                await asyncio.to_thread(producer.abort_transaction, 10.0)
            raise

    async def _process(self, records: Batches) -> dict[TopicPartition, int]:
        """Handle fetched records; the offsets to commit (exactly_once: by the caller, in
        its transaction; else by a commit task, once delivered)."""
        assert self.consumer is not None and self.producer is not None
        batches: dict[Key, Batches] = {}
        for tp, messages in records.items():
            state = self.owned.get(self.key(tp))
            if state is None:  # fetched before a revoke
                continue
            accepted = accept(
                tp,
                messages,
                state.fetched.get(tp),
                tp in state.check_start,
                state.dropped_at.get(tp),
            )
            if accepted is None:
                state.dropped_at[tp] = first_dropped(state.dropped_at.get(tp), messages[0].offset)
                await self.consumer.seek(tp, state.fetched[tp])
                continue
            state.check_start.discard(tp)
            state.dropped_at.pop(tp, None)
            if not accepted:
                continue
            self.metrics.consumed.labels(tp.topic).inc(len(accepted))
            state.fetched[tp] = accepted[-1].offset + 1
            batches.setdefault(self.key(tp), {})[tp] = accepted
        assert self.deliveries is not None
        outbox = Outbox(self.deliveries, self.partitions, self.delivered)
        offsets: dict[TopicPartition, int] = {}
        for key, state in self.owned.items():
            handled = await self.handle(state, batches.get(key, {}), outbox)
            for tp in handled:
                # The committed offset says which outputs were delivered: never move it
                # back while re-running events whose outputs the last owner delivered.
                offsets[tp] = max(state.positions[tp], state.replay_until.get(tp, 0))
            state.since_checkpoint += sum(handled.values())
        if self.delivered:
            self._passed_delivered()
        deliveries = outbox.flush()
        if not offsets:  # every batch was dropped, or is buffered
            return offsets
        if not self.settings.exactly_once:  # (else committed with the outputs, by process())
            # Idle partitions too: their commit metadata then says how far outputs reach
            # now, and a next owner reads no more than the batches in flight.
            for state in self.owned.values():
                for tp, position in state.positions.items():
                    offsets.setdefault(tp, max(position, state.replay_until.get(tp, 0)))
            await self.in_flight.acquire()
            # Decided now: by its turn to commit, the re-run may be past what was inherited.
            inherited = {tp: self.inherited[tp] for tp in offsets if tp in self.inherited}
            self.commits = asyncio.ensure_future(
                self._commit(self.commits, deliveries, offsets, inherited)
            )
        return offsets

    async def _commit(
        self,
        previous: asyncio.Future[None] | None,
        deliveries: list[tuple[str, asyncio.Future[dict[int, int]]]],
        offsets: dict[TopicPartition, int],
        inherited: dict[TopicPartition, str],
    ) -> None:
        """Commit `offsets` once every output is acknowledged and earlier batches are
        committed; a failure fails every later commit too, and stops the worker."""
        assert self.consumer is not None
        try:
            if previous is not None:
                await previous  # raises again what an earlier batch raised (logged there)
            try:
                for topic, delivery in deliveries:
                    for partition, end in (await delivery).items():
                        where = (topic, partition)
                        self.written[where] = max(self.written.get(where, 0), end)
                await self.consumer.commit(self._with_metadata(offsets, inherited))
                self.committed.update(offsets)
            except KafkaException as err:
                if error_code(err) not in MEMBERSHIP_LOST:
                    log_failure(
                        err,
                        "%s outputs could not be delivered or offsets committed: stopping so "
                        "that a restart re-processes from the last committed offset (check "
                        "the broker)",
                        self.name,
                    )
                    raise
                # The group went on without this member (a broker restart, a stall): the
                # partitions are restored again from their checkpoints and the outputs
                # delivered since the last commit are found and skipped (`delivered`).
                if not self.membership_lost:
                    log.warning(
                        "%s: offsets not committed, the consumer group no longer knows this "
                        "worker (%s): rejoining; its partitions resume from their last "
                        "commit and checkpoint, without sending delivered outputs again",
                        self.name,
                        err.args[0].str() if err.args else err,
                    )
                self.membership_lost = True
            except Exception as err:
                log_failure(
                    err,
                    "%s outputs could not be delivered or offsets committed: stopping so that "
                    "a restart re-processes from the last committed offset (check the broker)",
                    self.name,
                )
                raise
        finally:
            self.in_flight.release()

    def _with_metadata(
        self, offsets: dict[TopicPartition, int], inherited: dict[TopicPartition, str]
    ) -> dict[TopicPartition, tuple[int, str]]:
        """`offsets` with how far this worker's acknowledged outputs reach (or, where the
        re-run is not past what a crashed owner delivered, that owner's commit metadata),
        for the next owner after a crash (`streams.kafka.delivered`)."""
        metadata = encode_written(self.written)
        if metadata is None:
            if not self.metadata_too_long:
                log.warning(
                    "%s: %d output partitions are too many for Kafka's commit metadata: "
                    "after a crash, outputs of the batches in flight may be sent again",
                    self.name,
                    len(self.written),
                )
                self.metadata_too_long = True
            metadata = ""
        return {tp: (offset, inherited.get(tp, metadata)) for tp, offset in offsets.items()}

    def _passed_delivered(self) -> None:
        """Forget what a crashed owner delivered once the re-run is past it."""
        for tp, delivered in list(self.delivered.items()):
            state = self.owned.get(self.key(tp))
            if state is not None and state.positions.get(tp, 0) <= delivered.last_offset:
                continue
            if delivered.left():
                log.warning(
                    "%s[%d]: %d outputs the last owner delivered were not made again by "
                    "the re-run (they stay on their topics once)",
                    tp.topic,
                    tp.partition,
                    delivered.left(),
                )
            del self.delivered[tp]
            self.inherited.pop(tp, None)

    async def drain(self) -> None:
        """Wait until every batch processed so far is acknowledged and committed."""
        if self.commits is not None:
            await self.commits


#: A commit refused because the group went on without this member.
MEMBERSHIP_LOST = {
    KafkaError.UNKNOWN_MEMBER_ID,
    KafkaError.ILLEGAL_GENERATION,
    KafkaError.REBALANCE_IN_PROGRESS,
    KafkaError.FENCED_INSTANCE_ID,
    KafkaError._ASSIGNMENT_LOST,
}
#: A transaction refused because another worker owns this one's partitions now.
FENCED = MEMBERSHIP_LOST | {
    KafkaError.PRODUCER_FENCED,
    KafkaError.INVALID_PRODUCER_EPOCH,
    KafkaError._FENCED,
}


def error_code(err: BaseException) -> int | None:
    """The librdkafka error code of a client exception (None for anything else)."""
    error = kafka_error(err)
    return error.code() if error is not None else None
