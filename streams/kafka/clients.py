"""Every Kafka client of the worker, built from the settings on confluent-kafka (librdkafka).

- `client_config` — the librdkafka configuration of one client: the cluster, TLS and SASL
  from the settings (checked as `security.ssl_context` checks them), and a `ClientLog`
  that turns librdkafka's log lines and errors into Python logging.
- `consumer`, `producer`, `admin` — the three kinds of client, with riverrun's defaults.
- `AsyncProducer` — a producer whose sends are awaited (a thread serves its deliveries).
- `Follower` — the one group-less reader: every partition of some topics from a given
  offset, in batches, without blocking the event loop.
- `partition_of` — where a key lands: murmur2, as Java clients and kafka-python put it.

Nothing else in riverrun builds a Kafka client of the worker or reads a client library's
private attribute.
"""

import asyncio
import base64
import binascii
import contextlib
import functools
import json
import logging
import re
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient
from kafka.partitioner.default import murmur2

from streams.kafka.security import (
    SecurityError,
    connection_failure,
    ssl_context,
    token_provider,
)
from streams.settings import Settings, TokenProvider

log = logging.getLogger(__name__)

#: librdkafka's words for a broker it cannot reach right now. It retries on its own (twenty
#: times a second during an outage), so these are DEBUG lines, counted; the broker watch
#: tells the outage once.
TRANSIENT = re.compile(
    r"Connection refused|brokers? (are )?down|Connect to .* failed|Disconnected"
    r"|timed out|Connection reset|Broken pipe|Failed to resolve|Receive failed|Send failed"
    r"|transport failure|load in progress|coordinator not available|not leader"
    r"|leader not available",
    re.IGNORECASE,
)
TRANSIENT_CODES = frozenset(
    {
        KafkaError._TRANSPORT,
        KafkaError._ALL_BROKERS_DOWN,
        KafkaError._RESOLVE,
        KafkaError._TIMED_OUT,
    }
)
#: Errors that retrying cannot fix: refused credentials, an untrusted certificate.
REFUSALS = frozenset(
    {KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED, KafkaError._SSL}
)
#: A partition's leader not known (yet): a topic just created, a leader moving.
LEADERLESS_CODES = frozenset(
    {
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
    }
)
#: The same warning of one client is logged at most once per this long.
WARNING_WINDOW_SECONDS = 60.0
#: Configuration keys whose values are secrets (masked in the repr of a configuration).
SECRET_KEYS = frozenset({"sasl.password", "ssl.key.password"})
#: Keys confluent-kafka itself reads (Python objects, spelt with underscores).
PYTHON_KEYS = frozenset(
    {"logger", "error_cb", "oauth_cb", "on_delivery", "stats_cb", "throttle_cb"}
)
#: Lifetime assumed for an OAUTHBEARER token that does not say when it expires (librdkafka
#: asks the provider again at 80 % of it).
TOKEN_SECONDS = 300.0
#: A follower waits at most this long in one `consume` call: its latency at low rates and
#: the longest a stop waits for it.
FOLLOW_POLL_SECONDS = 0.1
#: Longest wait for a metadata answer when a follower starts.
METADATA_TIMEOUT_SECONDS = 10.0


class ClientConfig(dict[str, Any]):
    """A librdkafka configuration whose repr masks the secrets it holds."""

    def __repr__(self) -> str:
        shown = {k: "***" if k in SECRET_KEYS else v for k, v in self.items()}
        return f"ClientConfig({shown!r})"

    __str__ = __repr__


def client_config(settings: Settings, *, client_id: str) -> ClientConfig:
    """The configuration every client of the worker shares: where the cluster is, how to
    authenticate and encrypt, and where librdkafka's log lines go.

    >>> config = client_config(Settings(broker="kafka:9092"), client_id="riverrun-api")
    >>> config["bootstrap.servers"], config["security.protocol"], config["client.id"]
    ('kafka:9092', 'PLAINTEXT', 'riverrun-api')
    """
    clientlog = ClientLog(settings, client_id)
    config = ClientConfig(
        {
            "bootstrap.servers": settings.bootstrap_servers,
            "client.id": client_id,
            "security.protocol": settings.security_protocol,
            "logger": clientlog,
            "error_cb": clientlog.error,
            "log.connection.close": False,  # a broker closing an idle connection is no news
            # A broker back after an outage is reconnected to within a second (librdkafka
            # backs off up to 10 s by default).
            "reconnect.backoff.max.ms": 1000,
        }
    )
    config.update(_tls(settings))
    config.update(_sasl(settings))
    return config


def _tls(settings: Settings) -> dict[str, Any]:
    """TLS options of the SSL and SASL_SSL protocols; unusable files raise SecurityError
    with the sentences every client of riverrun gives."""
    if ssl_context(settings) is None:  # (loads the files: the same checks, the same words)
        return {}
    password = settings.ssl_key_password
    options: dict[str, Any] = {
        "ssl.ca.location": str(settings.ssl_cafile) if settings.ssl_cafile else "probe",
        "ssl.endpoint.identification.algorithm": "https" if settings.ssl_check_hostname else "none",
    }
    if settings.ssl_certfile is not None:
        options["ssl.certificate.location"] = str(settings.ssl_certfile)
        # Unset: the key is in the certificate's file (librdkafka finds it among the blocks).
        options["ssl.key.location"] = str(settings.ssl_keyfile or settings.ssl_certfile)
    if password is not None:
        options["ssl.key.password"] = password.get_secret_value()
    return options


def _sasl(settings: Settings) -> dict[str, Any]:
    if not settings.security_protocol.startswith("SASL_"):
        return {}
    if settings.sasl_mechanism == "OAUTHBEARER":
        provider = token_provider(settings)
        if provider is None:
            raise SecurityError(
                "RIVERRUN_SASL_MECHANISM is OAUTHBEARER but there is no token: set "
                "RIVERRUN_SASL_OAUTH_TOKEN or give the App an oauth_token_provider"
            )
        return {"sasl.mechanism": "OAUTHBEARER", "oauth_cb": OAuthTokens(provider)}
    password = settings.sasl_password
    return {
        "sasl.mechanism": settings.sasl_mechanism,
        "sasl.username": settings.sasl_username,
        "sasl.password": password.get_secret_value() if password else None,
    }


class OAuthTokens:
    """librdkafka's `oauth_cb` around a token provider: (token, expiry, principal), the
    expiry and principal read from the token when it is a JWT that names them."""

    def __init__(self, provider: TokenProvider) -> None:
        self.provider = provider

    def __repr__(self) -> str:
        return "OAuthTokens(<provider>)"

    def __call__(self, _config: str | None = None) -> tuple[str, float, str]:
        try:
            token = self.provider()
        except Exception as err:  # librdkafka retries; the log says why, without a token
            log.warning("the OAUTHBEARER token provider failed (%s)", type(err).__name__)
            raise
        claims = _jwt_claims(token)
        expiry = claims.get("exp")
        if not isinstance(expiry, int | float):
            expiry = time.time() + TOKEN_SECONDS
        principal = claims.get("sub")
        return token, float(expiry), principal if isinstance(principal, str) else "riverrun"


def _jwt_claims(token: str) -> dict[str, Any]:
    """The claims of a JWT, unverified (the broker verifies it); {} for any other token."""
    parts = token.split(".")
    if len(parts) != 3:
        return {}
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (binascii.Error, ValueError):
        return {}
    return claims if isinstance(claims, dict) else {}


def _options(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Keyword overrides as librdkafka names them: `linger_ms=5` is `linger.ms`; names with
    a dot (`**{"linger.ms": 5}`) and confluent-kafka's own keys (`on_delivery`) stay."""
    return {
        k if "." in k or k in PYTHON_KEYS else k.replace("_", "."): v for k, v in overrides.items()
    }


def consumer_config(
    settings: Settings, *, group_id: str, client_id: str, **overrides: Any
) -> ClientConfig:
    """The configuration of `consumer` (a follower's too)."""
    config = client_config(settings, client_id=client_id)
    session = settings.session_timeout_seconds
    config.update(
        {
            "group.id": group_id,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed" if settings.exactly_once else "read_uncommitted",
            "fetch.wait.max.ms": settings.fetch_max_wait_ms,
            "queued.max.messages.kbytes": settings.consumer_prefetch_kbytes,
            "session.timeout.ms": int(session * 1000),
            "heartbeat.interval.ms": int(min(3.0, session / 3) * 1000),
        }
    )
    config.update(_options(overrides))
    return config


def consumer(settings: Settings, *, group_id: str, client_id: str, **overrides: Any) -> Consumer:
    """A consumer of the group `group_id`: offsets committed by the caller only, from the
    beginning where the group has none, transactions' outputs read committed under
    exactly_once. `overrides` are librdkafka options (`fetch_wait_max_ms=...`)."""
    return Consumer(consumer_config(settings, group_id=group_id, client_id=client_id, **overrides))


def producer_config(
    settings: Settings, *, client_id: str, transactional_id: str | None = None, **overrides: Any
) -> ClientConfig:
    """The configuration of `producer`."""
    config = client_config(settings, client_id=client_id)
    config.update(
        {
            "acks": "all",
            # Idempotent: a retried batch is written once, after a broker outage too.
            "enable.idempotence": True,
            # Keys land where Java clients and kafka-python put them (librdkafka's own
            # default, consistent_random, hashes with CRC32); no key: any partition.
            "partitioner": "murmur2_random",
            "linger.ms": settings.producer_linger_ms,
            "batch.size": settings.producer_batch_bytes,
            "compression.type": settings.producer_compression or "none",
            # Outputs wait out a broker outage (retried until it answers) instead of
            # failing after librdkafka's 5 minutes.
            "message.timeout.ms": 0,
        }
    )
    if transactional_id is not None:
        config["transactional.id"] = transactional_id
    config.update(_options(overrides))
    return config


def producer(
    settings: Settings, *, client_id: str, transactional_id: str | None = None, **overrides: Any
) -> Producer:
    """An idempotent producer (acks=all, murmur2 keys, batches as the settings say);
    transactional when given a `transactional_id` (the caller calls init_transactions)."""
    return Producer(
        producer_config(
            settings, client_id=client_id, transactional_id=transactional_id, **overrides
        )
    )


def admin(settings: Settings, *, client_id: str | None = None) -> AdminClient:
    """An admin client (topics, configurations, metadata)."""
    return AdminClient(client_config(settings, client_id=client_id or f"{settings.group_id}-admin"))


@functools.lru_cache(maxsize=65_536)  # (murmur2 is pure Python: ~8 us a key)
def partition_of(key: str, partitions: int) -> int:
    """The partition `producer()` puts `key` in, as the Java client and kafka-python do.

    >>> partition_of("abc", 12)  # murmur2("abc") is 479470107 in Java's Utils.murmur2
    3
    """
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


class ClientLog:
    """One client's librdkafka log lines and errors, as Python logging: a broker it cannot
    reach now at DEBUG (counted in `transient`), refused credentials or certificates as
    one sentence at ERROR, other warnings at most once a minute. No secret is logged.

    confluent-kafka calls `log` as a `logging.Logger` (the `logger` option) and `error`
    (the `error_cb` option), from whichever thread polls the client.
    """

    def __init__(self, settings: Settings, client_id: str) -> None:
        self.settings = settings
        self.client_id = client_id
        self.transient = 0  # connection failures since the client was built
        self.last_transient: str | None = None
        self.refused: str | None = None  # the sentence of a failure retrying cannot fix
        self.warned: dict[str, float] = {}  # message -> when last logged
        self.lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ClientLog({self.client_id!r}, transient={self.transient})"

    def log(self, level: int, _format: str, facility: str, name: str, text: str) -> None:
        """A librdkafka log line (`_format` is confluent-kafka's "%s [%s] %s")."""
        self._emit(level, f"{name} {facility}: {self._redacted(text)}")

    def error(self, err: KafkaError) -> None:
        """An error librdkafka reports to the application (error_cb, or a message's)."""
        text = self._redacted(err.str())
        if err.code() in REFUSALS:
            sentence = connection_failure(self.settings, KafkaException(err))
            self._refuse(sentence or f"cannot connect to Kafka: {text}")
        elif err.fatal():
            log.error("%s: fatal Kafka error (%s): %s", self.client_id, err.name(), text)
        else:
            self._emit(logging.WARNING, f"{self.client_id}: {text}", code=err.code())

    def _emit(self, level: int, line: str, code: int | None = None) -> None:
        if code in TRANSIENT_CODES or (level > logging.DEBUG and TRANSIENT.search(line)):
            with self.lock:
                self.transient += 1
                self.last_transient = line
            log.debug("%s", line)
            return
        if level >= logging.WARNING:
            now = time.monotonic()
            with self.lock:
                if now - self.warned.get(line, float("-inf")) < WARNING_WINDOW_SECONDS:
                    return
                self.warned[line] = now
        log.log(level, "%s", line)

    def _refuse(self, sentence: str) -> None:
        with self.lock:
            first, self.refused = self.refused != sentence, sentence
        if first:
            log.error("%s", sentence)

    def _redacted(self, text: str) -> str:
        s = self.settings
        for secret in (s.sasl_password, s.sasl_oauth_token, s.ssl_key_password):
            if secret is not None and secret.get_secret_value():
                text = text.replace(secret.get_secret_value(), "***")
        return text


@dataclass(frozen=True)
class Delivered:
    """Where the broker wrote a message (the attributes of aiokafka's RecordMetadata)."""

    topic: str
    partition: int
    offset: int


def _settle(future: "asyncio.Future[Delivered]", err: KafkaError | None, message: Message) -> None:
    if future.done():
        return
    if err is not None:
        future.set_exception(KafkaException(err))
    else:
        where = (message.topic() or "", message.partition(), message.offset())
        future.set_result(Delivered(where[0], where[1] or 0, where[2] or 0))


class AsyncProducer:
    """A `producer()` for asyncio code: `await send(...)` hands a message over and gives
    a future that the broker's acknowledgement resolves (to `Delivered`), as aiokafka's
    `send` does; a thread serves the deliveries."""

    def __init__(self, settings: Settings, *, client_id: str, **overrides: Any) -> None:
        self.producer = producer(settings, client_id=client_id, **overrides)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._serve, name=f"{client_id}-deliveries")
        self.thread.daemon = True
        self.thread.start()

    def _serve(self) -> None:
        while not self.stopping.is_set():
            self.producer.poll(FOLLOW_POLL_SECONDS)

    async def send(
        self, topic: str, value: bytes | None = None, key: bytes | None = None
    ) -> "asyncio.Future[Delivered]":
        """Hand one message to the producer (BufferError when its queue is full)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Delivered] = loop.create_future()

        def delivered(err: KafkaError | None, message: Message) -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits
                loop.call_soon_threadsafe(_settle, future, err, message)

        self.producer.produce(topic, value, key, on_delivery=delivered)
        return future

    async def stop(self, timeout: float | None = None) -> int:
        """Wait for the messages in flight (up to `timeout` s; None: until written), then
        stop serving; returns how many are left unwritten."""
        left = await asyncio.to_thread(self.producer.flush, -1 if timeout is None else timeout)
        self.stopping.set()
        await asyncio.to_thread(self.thread.join)
        return left


#: Where a follower starts: each partition's beginning, its end (what arrives from now
#: on), or explicit offsets by (topic, partition) — partitions not named start at their
#: beginning.
Start = Literal["beginning", "end"] | Mapping[tuple[str, int], int]


class Follower:
    """Every partition of `topics` (or the given `partitions` of them), followed from
    `start` with no consumer group and no commits, in batches of confluent-kafka
    `Message`s (errors taken out and logged).

    The blocking `consume` runs in the follower's own thread, so the event loop never
    waits on it and a stop takes at most FOLLOW_POLL_SECONDS::

        async with Follower(settings, [settings.control_topic], start="beginning",
                            client_id="riverrun-control") as follower:
            async for batch in follower.until_end():  # what the topic holds now
                ...
            async for batch in follower.batches():  # then what arrives, until stop()
                ...
    """

    def __init__(
        self,
        settings: Settings,
        topics: Iterable[str],
        *,
        client_id: str,
        start: Start = "end",
        max_messages: int = 500,
        partitions: Iterable[tuple[str, int]] | None = None,
        **overrides: Any,
    ) -> None:
        self.topics = list(topics)
        self.start_at = start
        #: Only these partitions of the topics (None: every one).
        self.only = set(partitions) if partitions is not None else None
        self.max_messages = max_messages
        self.config = consumer_config(
            settings,
            group_id=f"{client_id}-follower",  # (librdkafka wants one; never joined)
            client_id=client_id,
            **{"enable.partition.eof": True, "fetch.wait.max.ms": 100, **_options(overrides)},
        )
        self.clientlog: ClientLog = self.config["logger"]
        self.partitions: list[tuple[str, int]] = []
        self.consumer: Consumer | None = None
        self.closed = False
        self.stopping = False
        self.ended: set[tuple[str, int]] = set()  # partitions read to their end once
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=client_id)

    async def __aenter__(self) -> "Follower":
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    async def _run(self, call: Callable[[], Any]) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.executor, call)

    async def start(self) -> list[tuple[str, int]]:
        """Assign every partition of the topics that exist; returns them (none: no topic
        exists yet). From "end", what is written after the return is read. Raises
        KafkaException when the cluster does not answer in time."""
        self.partitions = await self._run(self._assign)
        return self.partitions

    def _assign(self) -> list[tuple[str, int]]:
        self.consumer = Consumer(self.config)
        found = []
        for topic in self.topics:
            metadata = self.consumer.list_topics(topic, timeout=METADATA_TIMEOUT_SECONDS)
            described = metadata.topics.get(topic)
            if described is not None and described.partitions:
                found += [(topic, p) for p in sorted(described.partitions)]
        if self.only is not None:
            found = [tp for tp in found if tp in self.only]
        self.consumer.assign(self._starts(self.consumer, found))
        return found

    def _starts(self, consumer: Consumer, found: list[tuple[str, int]]) -> list[TopicPartition]:
        start = self.start_at
        if not found:
            return []
        if start == "beginning":
            return [TopicPartition(t, p, OFFSET_BEGINNING) for t, p in found]
        if start != "end":
            return [TopicPartition(t, p, start.get((t, p), OFFSET_BEGINNING)) for t, p in found]
        # The ends as of now (timestamp -1: the latest offsets), not as of the first fetch,
        # which librdkafka's OFFSET_END would resolve later: what is written once start()
        # returns is read.
        latest = [TopicPartition(t, p, OFFSET_END) for t, p in found]
        deadline = time.monotonic() + METADATA_TIMEOUT_SECONDS
        while True:  # a topic just created has no leader for a moment
            try:
                ends = consumer.offsets_for_times(latest, timeout=METADATA_TIMEOUT_SECONDS)
            except KafkaException as err:
                code = err.args[0].code()
                if time.monotonic() > deadline or code not in LEADERLESS_CODES:
                    raise
                time.sleep(0.1)
                continue
            return [TopicPartition(e.topic, e.partition, e.offset) for e in ends]

    async def until_end(self) -> AsyncIterator[list[Message]]:
        """The batches up to each partition's end as it is when reached (read committed
        under exactly_once): what the topics hold now."""
        while not self.stopping and not self.ended.issuperset(self.partitions):
            batch = await self._run(self._take)
            if batch:
                yield batch

    async def batches(self, idle: float | None = None) -> AsyncIterator[list[Message]]:
        """Each batch as it arrives, until `stop()`; with `idle`, an empty batch after
        that many seconds without a message (e.g. to write a keepalive)."""
        quiet_since = time.monotonic()
        while not self.stopping:
            batch = await self._run(self._take)
            now = time.monotonic()
            if batch or (idle is not None and now - quiet_since >= idle):
                quiet_since = now
                yield batch

    def _take(self) -> list[Message]:
        """One `consume` call, in the follower's thread: its messages; the ends reached
        are noted, other errors logged."""
        if self.closed or self.consumer is None:
            return []
        batch = []
        for message in self.consumer.consume(self.max_messages, FOLLOW_POLL_SECONDS):
            err = message.error()
            if err is None:
                batch.append(message)
            elif err.code() == KafkaError._PARTITION_EOF:
                self.ended.add((message.topic() or "", message.partition() or 0))
            else:
                self.clientlog.error(err)
        return batch

    async def stop(self) -> None:
        """Stop reading: the iterations end, the consumer closes (once the consume call
        in flight returns, at most FOLLOW_POLL_SECONDS later)."""
        self.stopping = True
        if not self.closed:
            await self._run(self._close)
        self.executor.shutdown(wait=False)

    def _close(self) -> None:
        self.closed = True
        if self.consumer is not None:
            self.consumer.close()
