"""A consumer group member for asyncio code, on librdkafka.

Every call to the confluent-kafka `Consumer` is made on one thread of its own: librdkafka
serves a consumer's rebalances and commits through the thread that consumes, and a
blocking call made from another thread while `consume` runs waits for it. The event loop
asks that thread for what it needs (`fetch`, `commit`, `committed`, `seek`, ...) and
awaits the answer.

Rebalances (the group's eager protocol, partitions assigned by range so that the join's
co-partitioned topics stay together):

- an assignment returns at once: the new partitions are assigned *paused*, and
  `on_assign` (a coroutine scheduled on the loop, not awaited by the group protocol)
  restores their states and `release`s them at the offsets they resume at. The group's
  heartbeats never wait for a restore, however long it takes;
- a revocation waits for `on_revoke` (the batch in flight finished, its offsets
  committed, the states checkpointed) before the partitions go: their next owner starts
  exactly where this one stopped. Meanwhile the thread keeps answering the loop's calls,
  which the hand-over needs (commits);
- partitions lost (this member was evicted, e.g. stalled past its session timeout) go
  through `on_lost`: nothing may be committed for them any more.
"""

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping
from concurrent.futures import Future
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message
from confluent_kafka import TopicPartition as KafkaPartition

from streams.kafka import clients
from streams.kafka.records import Record, TopicPartition, record
from streams.settings import Settings

log = logging.getLogger(__name__)

#: Fetched records by topic partition, each list in offset order.
Batches = dict[TopicPartition, list[Record]]
#: How long the thread waits for the loop's next call before looking again.
IDLE_SECONDS = 0.05
#: Longest a metadata or offsets round trip to the broker may take.
REQUEST_SECONDS = 30.0

#: A commit the coordinator could not take now is tried again after this, doubling.
RETRY_SECONDS = 0.1
MAX_RETRY_SECONDS = 2.0
#: Errors that pass: the group's coordinator moving, loading or away for a moment.
TRANSIENT = {
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    KafkaError.COORDINATOR_NOT_AVAILABLE,
    KafkaError.NOT_COORDINATOR,
    KafkaError.REQUEST_TIMED_OUT,
    KafkaError.NETWORK_EXCEPTION,
    KafkaError._TIMED_OUT,
    KafkaError._TRANSPORT,
    KafkaError._WAIT_COORD,
    KafkaError._ALL_BROKERS_DOWN,
}

#: A call for the consumer's thread: the function, its future, whether it consumes.
Call = tuple[Callable[[], Any], Future[Any], bool]
Rebalanced = Callable[[set[TopicPartition]], Coroutine[Any, Any, None]]


class GroupConsumer:
    """A member of `group_id` consuming `topics`, driven from the event loop."""

    def __init__(
        self,
        settings: Settings,
        topics: Iterable[str],
        *,
        group_id: str,
        client_id: str,
        on_assign: Rebalanced,
        on_revoke: Rebalanced,
        on_lost: Rebalanced,
        **overrides: Any,
    ) -> None:
        self.topics = list(topics)
        self.settings = settings
        self.options = {
            "group_id": group_id,
            "client_id": client_id,
            "partition.assignment.strategy": "range",
            **overrides,
        }
        self.handlers = {"assign": on_assign, "revoke": on_revoke, "lost": on_lost}
        self.calls: queue.SimpleQueue[Call | None] = queue.SimpleQueue()
        #: Calls that consume (a fetch, the close) put off during a rebalance callback:
        #: librdkafka's consumer is not re-entered from inside its own `consume`.
        self.deferred: list[Call] = []
        self.thread = threading.Thread(target=self._serve, name=f"{client_id}-consumer")
        self.thread.daemon = True
        self.consumer: Consumer | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        #: The partitions the group gave this member (as of the last rebalance).
        self.assigned: set[TopicPartition] = set()
        #: When this member got its assignment (ms since the epoch; librdkafka does not
        #: tell the group's generation): a later assignment is a newer one.
        self.generation = -1
        self.member = ""
        #: Partition count of each consumed topic, as of the last assignment.
        self.counts: dict[str, int] = {}
        #: The end of each fetched partition as its last fetch saw it.
        self.highs: dict[TopicPartition, int] = {}
        self.closed = False

    # --- the thread --------------------------------------------------------------------
    def _serve(self) -> None:
        while True:
            call = self.deferred.pop(0) if self.deferred else self.calls.get()
            if call is None:
                return
            self._run(*call)

    @staticmethod
    def _run(function: Callable[[], Any], future: Future[Any], consuming: bool = False) -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            future.set_result(function())
        except BaseException as err:
            future.set_exception(err)

    def _serve_until(self, done: Future[Any]) -> None:
        """Answer the loop's calls until `done` (the loop's rebalance handler) is."""
        while not done.done():
            try:
                call = self.calls.get(timeout=IDLE_SECONDS)
            except queue.Empty:
                continue
            if call is None:  # a stop: answered once the handler is done
                self.calls.put(None)
                done.result()
                return
            if call[2]:
                self.deferred.append(call)  # once the callback has returned
                continue
            self._run(*call)

    def _rebalanced(self, kind: str, partitions: list[KafkaPartition]) -> Future[Any]:
        assert self.loop is not None
        tps = {TopicPartition(p.topic, p.partition) for p in partitions}
        return asyncio.run_coroutine_threadsafe(self.handlers[kind](tps), self.loop)

    def _on_assign(self, consumer: Consumer, partitions: list[KafkaPartition]) -> None:
        consumer.assign(partitions)
        if partitions:
            consumer.pause(partitions)  # until their states are restored
        self.assigned = {TopicPartition(p.topic, p.partition) for p in partitions}
        self.generation, self.member = int(time.time() * 1000), consumer.memberid() or ""
        with contextlib.suppress(KafkaException):
            metadata = consumer.list_topics(timeout=REQUEST_SECONDS)
            for topic in self.topics:
                described = metadata.topics.get(topic)
                if described is not None:
                    self.counts[topic] = len(described.partitions)
        self._rebalanced("assign", partitions)  # not awaited: the group goes on

    def _on_revoke(self, consumer: Consumer, partitions: list[KafkaPartition]) -> None:
        self._serve_until(self._rebalanced("revoke", partitions))
        self.assigned = set()

    def _on_lost(self, consumer: Consumer, partitions: list[KafkaPartition]) -> None:
        self._serve_until(self._rebalanced("lost", partitions))
        self.assigned = set()

    async def call(self, function: Callable[[], Any], *, consuming: bool = False) -> Any:
        """`function()` (which uses the consumer) run on the consumer's thread;
        `consuming`: it polls the consumer (never from inside a rebalance callback)."""
        if self.closed:
            raise KafkaException(KafkaError(KafkaError._DESTROY, "the consumer is closed"))
        future: Future[Any] = Future()
        self.calls.put((function, future, consuming))
        return await asyncio.wrap_future(future)

    # --- what the loop asks ------------------------------------------------------------
    async def start(self) -> None:
        """Create the consumer and subscribe (the group is joined by the first fetch)."""
        self.loop = asyncio.get_running_loop()
        self.thread.start()

        def subscribe() -> None:
            self.consumer = clients.consumer(self.settings, **self.options)
            self.consumer.subscribe(
                self.topics,
                on_assign=self._on_assign,
                on_revoke=self._on_revoke,
                on_lost=self._on_lost,
            )

        await self.call(subscribe)

    async def fetch(self, max_records: int, timeout: float) -> Batches:
        """The records fetched within `timeout` seconds (at most `max_records`), by
        partition; rebalances happen during a fetch."""

        def fetch() -> Batches:
            assert self.consumer is not None
            batches: Batches = {}
            # What is at hand at once; else the first message within `timeout` and what
            # came with it (`consume` alone waits out its timeout for a full batch).
            messages = self.consumer.consume(max_records, 0)
            if not messages and timeout > 0:
                first = self.consumer.poll(timeout)
                if first is not None:
                    messages = [first, *self.consumer.consume(max_records - 1, 0)]
            for message in messages:
                if message.error() is not None:
                    self._fetch_error(message)
                    continue
                got = record(message)
                batches.setdefault(TopicPartition(got.topic, got.partition), []).append(got)
            for tp in self.assigned:  # (an empty fetch answers the end too)
                part = KafkaPartition(tp.topic, tp.partition)
                _, high = self.consumer.get_watermark_offsets(part, cached=True)
                if high >= 0:
                    self.highs[tp] = high
            return batches

        result: Batches = await self.call(fetch, consuming=True)
        return result

    def _fetch_error(self, message: Message) -> None:
        err = message.error()
        assert err is not None
        if err.code() == KafkaError._PARTITION_EOF:
            return
        if err.fatal():
            raise KafkaException(err)
        log.warning("consuming %s[%s]: %s", message.topic(), message.partition(), err.str())

    async def resume_at(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Start fetching paused (newly assigned) partitions at `offsets`."""

        def resume() -> None:
            assert self.consumer is not None
            parts = [KafkaPartition(tp.topic, tp.partition, o) for tp, o in offsets.items()]
            current = self.consumer.assignment()
            mine = {(p.topic, p.partition) for p in current}
            parts = [p for p in parts if (p.topic, p.partition) in mine]  # still assigned
            for part in parts:
                self.consumer.seek(part)
            if parts:
                self.consumer.resume(parts)

        await self.call(resume)

    async def seek(self, tp: TopicPartition, offset: int) -> None:
        """Fetch `tp` from `offset` on (an assigned, fetching partition)."""

        def seek() -> None:
            assert self.consumer is not None
            self.consumer.seek(KafkaPartition(tp.topic, tp.partition, offset))

        await self.call(seek)

    async def committed(
        self, tps: Iterable[TopicPartition]
    ) -> dict[TopicPartition, tuple[int | None, str | None]]:
        """The group's committed offset and its metadata for each of `tps` (None, None
        where nothing is committed)."""

        def committed() -> list[KafkaPartition]:
            assert self.consumer is not None
            parts = [KafkaPartition(tp.topic, tp.partition) for tp in tps]
            return self.consumer.committed(parts, timeout=REQUEST_SECONDS)

        found: dict[TopicPartition, tuple[int | None, str | None]] = {}
        for part in await self.call(committed):
            offset = part.offset if part.offset >= 0 else None
            found[TopicPartition(part.topic, part.partition)] = (offset, part.metadata)
        return found

    async def commit(self, offsets: Mapping[TopicPartition, tuple[int, str]]) -> None:
        """Commit `offsets` (offset, metadata), until the broker acknowledges them."""
        parts = [
            KafkaPartition(tp.topic, tp.partition, offset, metadata=metadata or None)
            for tp, (offset, metadata) in offsets.items()
        ]

        def commit() -> None:
            assert self.consumer is not None
            for part in self.consumer.commit(offsets=parts, asynchronous=False) or ():
                if part.error is not None:
                    raise KafkaException(part.error)

        delay = RETRY_SECONDS
        while True:
            try:
                await self.call(commit)
                return
            except KafkaException as err:
                if not transient(err):
                    raise
            await asyncio.sleep(delay)  # the coordinator moving or loading, a broker away
            delay = min(2 * delay, MAX_RETRY_SECONDS)

    async def watermarks(self, tp: TopicPartition) -> tuple[int, int]:
        """The first offset still in `tp`'s log and the offset after its last message."""

        def watermarks() -> tuple[int, int]:
            assert self.consumer is not None
            part = KafkaPartition(tp.topic, tp.partition)
            low, high = self.consumer.get_watermark_offsets(part, timeout=REQUEST_SECONDS)
            return low, high

        result: tuple[int, int] = await self.call(watermarks)
        return result

    def highwater(self, tp: TopicPartition) -> int | None:
        """The end of `tp` as its last fetch saw it (None: not fetched yet)."""
        return self.highs.get(tp)

    async def positions(self, tps: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        """The next offset the consumer fetches in each of `tps` (where known): past a
        transaction's commit marker, unlike the last record's offset + 1."""

        def positions() -> list[KafkaPartition]:
            assert self.consumer is not None
            parts = [KafkaPartition(tp.topic, tp.partition) for tp in tps]
            return self.consumer.position(parts)

        return {
            TopicPartition(part.topic, part.partition): part.offset
            for part in await self.call(positions)
            if part.offset >= 0
        }

    async def offsets_for_time(self, tp: TopicPartition, milliseconds: int) -> int | None:
        """The first offset of `tp` at or after `milliseconds` since the epoch (None:
        none that late)."""

        def lookup() -> int | None:
            assert self.consumer is not None
            part = KafkaPartition(tp.topic, tp.partition, milliseconds)
            (found,) = self.consumer.offsets_for_times([part], timeout=REQUEST_SECONDS)
            return found.offset if found.offset >= 0 else None

        result: int | None = await self.call(lookup)
        return result

    async def partition_count(self, topic: str) -> int:
        """How many partitions `topic` has."""

        def count() -> int:
            assert self.consumer is not None
            metadata = self.consumer.list_topics(topic, timeout=REQUEST_SECONDS)
            described = metadata.topics.get(topic)
            return len(described.partitions) if described is not None else 0

        result: int = await self.call(count)
        return result

    async def group_metadata(self) -> Any:
        """This member's group metadata (generation, member id) for a transaction's
        offsets: a zombie's is stale, and the broker fences its commit (KIP-447)."""
        assert self.consumer is not None
        return await self.call(self.consumer.consumer_group_metadata)

    async def stop(self) -> None:
        """Leave the group (a last revocation runs first) and close the consumer."""
        if self.closed or self.consumer is None:
            self.closed = True
            self.calls.put(None)
            return

        def close() -> None:
            assert self.consumer is not None
            with contextlib.suppress(RuntimeError):
                self.consumer.close()

        try:
            await self.call(close, consuming=True)
        finally:
            self.closed = True
            self.calls.put(None)
            await asyncio.to_thread(self.thread.join, 10)


def kafka_error(err: BaseException) -> KafkaError | None:
    """The librdkafka error a client exception carries (None for anything else)."""
    if isinstance(err, KafkaException) and err.args and isinstance(err.args[0], KafkaError):
        return err.args[0]
    return None


def transient(err: KafkaException) -> bool:
    """Whether `err` passes by itself (worth trying the same request again)."""
    error = kafka_error(err)
    return error is not None and (bool(error.retriable()) or error.code() in TRANSIENT)


def group_members(settings: Settings, group_id: str, timeout: float = 10.0) -> int | None:
    """How many members the consumer group has now (None when the broker cannot say).
    Blocking: run it in a thread."""
    admin = clients.admin(settings)
    try:
        (future,) = admin.describe_consumer_groups([group_id], request_timeout=timeout).values()
        return len(future.result(timeout=timeout).members)
    except (KafkaException, TimeoutError, OSError):
        return None
