"""Whether the worker reaches its Kafka cluster, told in /readyz, /metrics, /v1 and the log.

- `BrokerHealth` — the state (no I/O): reachable or in an outage since when, why, and
  what the outage holds back; it writes the outage's three kinds of log line (start, a
  summary every SUMMARY_SECONDS, end).
- `QuietClients` — a logging filter for the Kafka clients' loggers: during an outage their
  per-attempt warnings and errors (hundreds a second) are held back and counted; the
  symptoms of an unreachable broker wake the probe instead of reaching the log; any other
  client warning is logged at most once per CLIENT_LOG_WINDOW_SECONDS.
- `BrokerWatch` — the service that probes the cluster (a metadata request, which any
  broker answers) and feeds the state and the gauges.
"""

import asyncio
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from mode import Service

from streams.kafka.clients import admin
from streams.runtime.metrics import WorkerMetrics
from streams.settings import Settings

log = logging.getLogger(__name__)

#: Between two probes while the broker answers (a client's error wakes the probe at once).
PROBE_SECONDS = 2.0
#: Between two probes during an outage: its end is told within about a second.
OUTAGE_PROBE_SECONDS = 1.0
#: A probe that gets no answer within this long fails.
PROBE_TIMEOUT_SECONDS = 2.0
#: How often an outage is summarised in the log while it lasts.
SUMMARY_SECONDS = 30.0
#: A client warning that is not a symptom of an outage: logged once per window and message.
CLIENT_LOG_WINDOW_SECONDS = 60.0
#: A symptom of an unreachable broker reaches the log only when it persists this long while
#: the broker answers probes (a new group's coordinator is "not available" for a second).
SYMPTOM_GRACE_SECONDS = 10.0
#: Records of one message further apart than this start a new streak.
STREAK_GAP_SECONDS = 5.0
#: The loggers of the Kafka clients (librdkafka's lines through streams.kafka.clients,
#: aiokafka, kafka-python) and of Faust's transport.
CLIENT_LOGGERS = ("streams.kafka.clients", "aiokafka", "kafka", "faust.transport")
#: What the clients log, attempt after attempt, when a broker or coordinator is away.
SYMPTOMS = re.compile(
    r"Unable connect|Unable to (update|request) metadata|NodeNotReady|KafkaConnectionError"
    r"|Connect call failed|Connection at .* closed|CoordinatorNotAvailable|NotCoordinator"
    r"|coordinator dead|Heartbeat|Got error produce response|RequestTimedOut"
    r"|NotLeaderForPartition|LeaderNotAvailable|Failed fetch messages"
)


@dataclass
class Outage:
    """One outage: since when (wall clock and monotonic), why, and what it held back."""

    since: datetime
    started: float
    error: str
    refused_events: int = 0  # /v1/events requests answered 503
    held_back_lines: int = 0  # the clients' log lines not written
    summarised: float = 0.0  # monotonic time of the last summary (or of the start)


@dataclass
class BrokerHealth:
    """Whether the broker answers, fed by probes (`failed`, `answered`) and by the
    clients' log records (`suspect`); each method returns the line to log, if any.

    >>> clock = iter([0.0, 31.0, 41.5]).__next__
    >>> health = BrokerHealth("kafka:9092", clock=clock)
    >>> health.failed("Connect call failed").split(" (")[0]
    'the Kafka broker at kafka:9092 is unreachable'
    >>> health.reachable, health.summary().split(" (")[0]
    (False, 'the Kafka broker at kafka:9092 is unreachable for 31 s now')
    >>> health.answered().split(": ")[0]
    'the Kafka broker at kafka:9092 answers again after an outage of 42 s'
    """

    bootstrap: str
    clock: Callable[[], float] = time.monotonic
    outage: Outage | None = None
    outages: int = 0  # since the worker started
    last_symptom: str | None = None  # the last client error that looked like an outage
    last_symptom_at: float = float("-inf")
    on_suspect: Callable[[], None] | None = field(default=None, repr=False)

    @property
    def reachable(self) -> bool:
        return self.outage is None

    def seconds(self) -> float:
        """How long the current outage has lasted (0 when the broker answers)."""
        return self.clock() - self.outage.started if self.outage is not None else 0.0

    def failed(self, error: str) -> str | None:
        """A probe failed with `error`: the outage's first line when it starts now."""
        if self.outage is not None:
            return None
        now = self.clock()
        if self.last_symptom is not None and now - self.last_symptom_at < STREAK_GAP_SECONDS:
            error = self.last_symptom  # the clients saw why (e.g. the refused connection)
        self.outage = Outage(datetime.now(UTC), now, error, summarised=now)
        self.outages += 1
        return (
            f"the Kafka broker at {self.bootstrap} is unreachable ({error}): consuming, "
            "learning and publishing wait for it, /v1 predictions answer from the models in "
            "memory (X-Riverrun-Stream: stalled), /v1/events answers 503, and the clients' "
            f"retry errors are held back (a summary every {SUMMARY_SECONDS:g} s)"
        )

    def answered(self) -> str | None:
        """A probe was answered: the outage's last line when one ends now."""
        outage, self.outage = self.outage, None
        if outage is None:
            return None
        return (
            f"the Kafka broker at {self.bootstrap} answers again after an outage of "
            f"{self.clock() - outage.started:.0f} s: consuming and publishing resume "
            f"({_held_back(outage)} during it)"
        )

    def summary(self) -> str | None:
        """Every SUMMARY_SECONDS of an outage, a line on how long and what it holds back."""
        outage, now = self.outage, self.clock()
        if outage is None or now - outage.summarised < SUMMARY_SECONDS:
            return None
        outage.summarised = now
        return (
            f"the Kafka broker at {self.bootstrap} is unreachable for {now - outage.started:.0f}"
            f" s now ({outage.error}): nothing consumed, learnt or published since "
            f"{outage.since:%H:%M:%S} UTC; {_held_back(outage)} so far"
        )

    def stopping(self) -> str | None:
        """The worker stops: during an outage, a line on what the stop waits for."""
        if self.outage is None:
            return None
        return (
            f"stopping during a broker outage ({self.seconds():.0f} s so far): the outputs in "
            "flight, the offsets and the checkpoints are written once the broker answers; kill "
            "the worker not to wait (a restart resumes from the last committed offset and "
            "checkpoint)"
        )

    def suspect(self, symptom: str) -> None:
        """A client logged a symptom of an unreachable broker: probe now."""
        self.last_symptom, self.last_symptom_at = symptom, self.clock()
        if self.outage is None and self.on_suspect is not None:
            self.on_suspect()

    def refused_events(self) -> None:
        """A /v1/events request was answered 503 because of the outage."""
        if self.outage is not None:
            self.outage.refused_events += 1

    def held_back(self) -> None:
        """A client's log line was not written because of the outage."""
        if self.outage is not None:
            self.outage.held_back_lines += 1

    def describe(self) -> dict[str, Any]:
        """The state as JSON (the `broker` of /readyz): `reachable`, and during an outage
        `since` (ISO 8601, UTC), `seconds`, `error`, `refused_events`, `held_back_lines`."""
        outage = self.outage
        if outage is None:
            return {"reachable": True, "outages": self.outages}
        return {
            "reachable": False,
            "since": outage.since.isoformat(timespec="seconds").replace("+00:00", "Z"),
            "seconds": round(self.seconds(), 1),
            "error": outage.error,
            "refused_events": outage.refused_events,
            "held_back_lines": outage.held_back_lines,
            "outages": self.outages,
        }


def _held_back(outage: Outage) -> str:
    return (
        f"{outage.refused_events} /v1/events request(s) refused, "
        f"{outage.held_back_lines} client log line(s) held back"
    )


@dataclass
class _Streak:
    """One message's records: the current streak (no gap over STREAK_GAP_SECONDS) and
    the rate limit's window."""

    first: float  # when this streak of one message began
    last: float  # when it was last seen
    logged: float = float("-inf")  # when it was last let through
    held: int = 0  # records held back since then


class QuietClients(logging.Filter):
    """Hold back the Kafka clients' repeated warnings and errors (see the module's doc).

    Attach it to the log handlers (a logger's filter would miss its children's records).
    A record let through after others of its kind were held back says how many.
    """

    def __init__(self, health: BrokerHealth) -> None:
        super().__init__()
        self.health = health
        self.streaks: dict[tuple[str, Any], _Streak] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or not record.name.startswith(CLIENT_LOGGERS):
            return True
        health = self.health
        text = record.getMessage()  # (the error is often in the arguments)
        symptom = SYMPTOMS.search(text) is not None
        if symptom:
            health.suspect(text)
        if not health.reachable:
            health.held_back()
            self.streaks.clear()  # after the outage, every message starts afresh
            return False
        now = health.clock()
        key = (record.name, record.msg)
        streak = self.streaks.get(key)
        if streak is None:
            streak = self.streaks[key] = _Streak(first=now, last=now)
        elif now - streak.last > STREAK_GAP_SECONDS:
            streak.first = now  # a new streak: a symptom has its grace again
        streak.last = now
        if symptom and now - streak.first < SYMPTOM_GRACE_SECONDS:
            streak.held += 1  # the probe tells whether it is an outage
            return False
        if now - streak.logged < CLIENT_LOG_WINDOW_SECONDS:
            streak.held += 1
            return False
        if streak.held:
            record.msg = f"{text} ({streak.held} more like it held back)"
            record.args = ()  # (a tuple: mode's formatter makes any other value one)
        streak.logged, streak.held = now, 0
        return True


class BrokerWatch(Service):
    """Probe the cluster and keep `health` and the broker gauges current."""

    def __init__(self, settings: Settings, metrics: WorkerMetrics, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.metrics = metrics
        self.health = BrokerHealth(settings.bootstrap_servers, on_suspect=self._wake)
        self.quiet = QuietClients(self.health)
        self.client: AdminClient | None = None
        self.woken: asyncio.Event | None = None
        self.metrics.broker_reachable.set(1)

    def _wake(self) -> None:
        woken = self.woken
        if woken is not None and not woken.is_set():
            self.loop.call_soon_threadsafe(woken.set)  # (a restore thread may log too)

    async def on_start(self) -> None:
        s = self.settings
        self.woken = asyncio.Event()
        # (built in a thread: an OAUTHBEARER client waits for its first token)
        self.client = await asyncio.to_thread(admin, s, client_id=f"{s.group_id}-health")

    async def on_stop(self) -> None:
        self.client = None  # (librdkafka's handle goes with the last reference)

    def _metadata(self) -> None:
        client = self.client
        if client is None:  # stopped
            return
        try:
            client.list_topics(timeout=PROBE_TIMEOUT_SECONDS)
        finally:
            client.poll(0)  # serves its log lines and errors (queued until polled)

    async def probe(self) -> str | None:
        """None when a broker of the cluster answers a metadata request, else why not."""
        try:
            await asyncio.to_thread(self._metadata)
        except KafkaException as err:
            return str(err.args[0].str())
        return None

    @Service.task
    async def _watch(self) -> None:
        health, metrics = self.health, self.metrics
        while not self.should_stop:
            assert self.woken is not None
            self.woken.clear()
            error = await self.probe()
            if error is None:
                line = health.answered()
                if line:
                    log.info("%s", line)
            else:
                line = health.failed(error)
                if line:
                    metrics.broker_outages.inc()
                    log.error("%s", line)
                line = health.summary()
                if line:
                    log.warning("%s", line)
            metrics.broker_reachable.set(1 if health.reachable else 0)
            metrics.broker_outage_seconds.set(health.seconds())
            every = PROBE_SECONDS if health.reachable else OUTAGE_PROBE_SECONDS
            try:
                await asyncio.wait_for(self.woken.wait(), every)
                await self.sleep(0.2)  # at most five probes a second however noisy
            except TimeoutError:
                pass
