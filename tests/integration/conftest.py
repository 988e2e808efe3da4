"""Integration fixtures: the real local Kafka broker, fresh topics, worker subprocesses.

The broker is started once per session with the project's own `LocalKafka` (or the
cluster in RIVERRUN_BROKER is used). If it cannot start, every test fails with the
reason; nothing is skipped.
"""

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import CoordinatorNotAvailableError

from streams.kafka.local_broker import LocalKafka, LocalKafkaError
from streams.kafka.security import kafka_options
from streams.kafka.topics import TopicReader, ensure_topics, join_topics, topic_names
from streams.settings import Settings
from tests.ports import free_ports
from tests.registry import LocalRegistry, RegistryError


@pytest.fixture(scope="session")
def local_kafka() -> Iterator[LocalKafka | None]:
    """The project's local broker, started (None when RIVERRUN_BROKER names a cluster)."""
    base = Settings()
    if not base.uses_local_broker:
        yield None
        return
    kafka = LocalKafka.for_settings(base)
    already_running = kafka.is_running()
    try:
        kafka.up(timeout=120)
    except LocalKafkaError as err:
        pytest.fail(f"the local Kafka broker could not start: {err}", pytrace=False)
    yield kafka
    if not already_running:
        kafka.down()


@pytest.fixture(scope="session")
def bootstrap(local_kafka: LocalKafka | None) -> str:
    """Bootstrap servers of a running, answering broker."""
    return local_kafka.bootstrap if local_kafka is not None else Settings().bootstrap_servers


@pytest.fixture(scope="session")
def schema_registry() -> Iterator[str]:
    """URL of the local schema registry (plain HTTP, no auth, in memory), for the session."""
    with _started(LocalRegistry()) as registry:
        yield registry.url


@pytest.fixture(scope="session")
def secured_schema_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRegistry]:
    """The local schema registry behind basic auth and TLS that requires a client
    certificate: its credentials, CA and client certificate are on the object
    (`confluent_config()`, `riverrun_env()`)."""
    registry = LocalRegistry(
        username="riverrun",
        password="registry-secret",
        tls_dir=tmp_path_factory.mktemp("registry-tls"),
        client_certificates=True,
    )
    with _started(registry) as started:
        yield started


@contextlib.contextmanager
def _started(registry: LocalRegistry) -> Iterator[LocalRegistry]:
    try:
        registry.start()
    except RegistryError as err:
        pytest.fail(str(err), pytrace=False)
    try:
        yield registry
    finally:
        registry.stop()


def riverrun_cli(env: "Env", *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`riverrun ARGS` run as a user runs it, with the test's environment (its topics,
    group and broker), its output captured."""
    return subprocess.run(
        [sys.executable, "-m", "streams.cli.main", *args],
        env=env.env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def replay_file(
    env: "Env", path: Path, model: str, *options: str
) -> subprocess.CompletedProcess[str]:
    """`riverrun replay --file PATH --model MODEL OPTIONS` as a user runs it."""
    return riverrun_cli(env, "replay", "--file", str(path), "--model", model, *options)


class Replay(threading.Thread):
    """`riverrun replay` of a bundled dataset, in the background, as a user runs it."""

    def __init__(self, env: "Env", *args: str) -> None:
        super().__init__(daemon=True)
        self.env, self.args = env, args
        self.done: subprocess.CompletedProcess[str] | None = None

    def run(self) -> None:
        self.done = riverrun_cli(self.env, "replay", *self.args, timeout=240)

    def finish(self) -> None:
        self.join(240)
        assert not self.is_alive(), "riverrun replay did not finish"
        assert self.done is not None and self.done.returncode == 0, (
            f"riverrun replay failed: {self.done.stderr if self.done else ''}"
        )


@dataclass
class Env:
    """One test's own topics, consumer group and metrics port, as settings and env vars."""

    settings: Settings
    env: dict[str, str]
    tmp: Path
    workers: list["WorkerProcess"] = field(default_factory=list)

    def client_options(self) -> dict[str, object]:
        """kafka-python's connection arguments for this test's cluster and security."""
        return {
            "bootstrap_servers": self.settings.bootstrap_servers,
            **kafka_options(self.settings),
        }

    def produce(self, messages: list[tuple[bytes | None, bytes]], topic: str | None = None) -> None:
        producer = KafkaProducer(**self.client_options(), linger_ms=5)
        for key, value in messages:
            producer.send(topic or self.settings.events_topic, key=key, value=value)
        producer.flush()
        producer.close()

    def read(self, topic: str, count: int, timeout: float = 60.0) -> list:  # type: ignore[type-arg]
        """Exactly the first `count` messages of `topic` (fails if fewer arrive in time)."""
        messages: list = []  # type: ignore[type-arg]
        deadline = time.monotonic() + timeout
        with TopicReader(self.settings, [topic]) as reader:
            while len(messages) < count and time.monotonic() < deadline:
                messages += reader.poll(timeout_ms=200)
                for worker in self.workers:
                    worker.assert_alive()
        assert len(messages) >= count, (
            f"only {len(messages)} of {count} messages arrived on {topic} within {timeout} s\n"
            + "\n".join(worker.tail(40) for worker in self.workers)
        )
        return messages

    def read_until(
        self,
        topic: str,
        done: Callable[[list], bool],  # type: ignore[type-arg]
        timeout: float = 120.0,
        isolation_level: str = "read_uncommitted",
    ) -> list:  # type: ignore[type-arg]
        """Messages of `topic` from the beginning until `done(messages)` (fails on timeout)."""
        messages: list = []  # type: ignore[type-arg]
        deadline = time.monotonic() + timeout
        with TopicReader(self.settings, [topic], isolation_level=isolation_level) as reader:
            while not done(messages):
                if time.monotonic() > deadline:
                    tails = "\n".join(w.tail(15) for w in self.workers if not w.stopped)
                    pytest.fail(
                        f"{topic}: still incomplete after {timeout} s with "
                        f"{len(messages)} messages\n{tails}",
                        pytrace=False,
                    )
                messages += reader.poll(timeout_ms=200)
                for worker in self.workers:
                    worker.assert_alive()
        return messages

    def read_all(self, topic: str) -> list:  # type: ignore[type-arg]
        """Every message now in `topic`, partition after partition."""
        consumer = KafkaConsumer(**self.client_options(), enable_auto_commit=False)
        tps = [
            TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or {0})
        ]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        found: dict[TopicPartition, list] = {tp: [] for tp in tps}  # type: ignore[type-arg]
        while any(consumer.position(tp) < end[tp] for tp in tps):
            for tp, batch in consumer.poll(timeout_ms=500).items():
                found[tp] += [m for m in batch if m.offset < end[tp]]
        consumer.close()
        return [m for tp in tps for m in found[tp]]

    def count(self, topic: str) -> int:
        """Messages currently in `topic` (sum of end offsets)."""
        consumer = KafkaConsumer(**self.client_options())
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or {0}]
        total = sum(consumer.end_offsets(partitions).values())
        consumer.close()
        return total

    def wait_for_group_members(self, count: int, timeout: float = 60.0) -> None:
        """Until the events consumer group has `count` members, each with partitions."""
        admin = KafkaAdminClient(**self.client_options())
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                try:
                    described = admin.describe_groups([self.settings.group_id])
                except CoordinatorNotAvailableError:
                    # A fresh broker creates __consumer_offsets on the group's first use:
                    # until then no coordinator answers (retriable, as Kafka says).
                    time.sleep(0.2)
                    continue
                group = described[self.settings.group_id]
                assignments = [m["member_assignment"] for m in group["members"]]
                # While the group rebalances an assignment is still empty (not a dict).
                assigned = [
                    a for a in assignments if isinstance(a, dict) and a["assigned_partitions"]
                ]
                if group["group_state"] == "Stable" and len(assigned) == count:
                    return
                for worker in self.workers:
                    worker.assert_alive()
                time.sleep(0.2)
        finally:
            admin.close()
        pytest.fail(f"the group never had {count} members with partitions", pytrace=False)

    def start_worker(self) -> "WorkerProcess":
        """Start `riverrun worker`; the first one serves /metrics on the settings' port,
        later ones each on a free port (`WorkerProcess.metrics_port`); the same for the
        /v1 API (`WorkerProcess.api_port`)."""
        first = not self.workers
        port, api_port = (
            (self.settings.metrics_port, self.settings.api_port) if first else free_ports(2)
        )
        env = {**self.env, "RIVERRUN_METRICS_PORT": str(port), "RIVERRUN_API_PORT": str(api_port)}
        # Named by the group too: two envs of one test share its tmp directory.
        log = self.tmp / f"{self.settings.group_id}-worker-{len(self.workers)}.log"
        worker = WorkerProcess(env, log, port, api_port)
        self.workers.append(worker)
        return worker


class WorkerProcess:
    """`riverrun worker` in a subprocess, exactly as a user runs it."""

    def __init__(
        self, env: dict[str, str], log_path: Path, metrics_port: int, api_port: int = 0
    ) -> None:
        self.metrics_port = metrics_port
        self.api_port = api_port
        self.log_path = log_path
        self.log = log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "streams.cli.main", "worker"],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.stopped = False

    def assert_alive(self) -> None:
        """Fail at once (with its log) if the worker died without being asked to stop."""
        code = self.process.poll()
        if code is not None and not self.stopped:
            pytest.fail(f"worker exited with {code}:\n{self.tail()}", pytrace=False)

    def scrape(self) -> dict[str, float]:
        """This worker's /metrics, as {sample name with labels: value}."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        text = urllib.request.urlopen(url, timeout=5).read().decode()
        return {
            line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line and not line.startswith("#")
        }

    def readyz(self) -> dict[str, Any] | None:
        """This worker's /readyz body (200 or 503), or None while it does not answer."""
        url = f"http://127.0.0.1:{self.metrics_port}/readyz"
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:
                return dict(json.loads(answer.read()))
        except urllib.error.HTTPError as err:
            return dict(json.loads(err.read()))
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return None

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def kill(self) -> None:
        """SIGKILL: no drain, no commit, no checkpoint, as a crash or an OOM kill."""
        self.stopped = True
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self.log.close()

    def stop(self, timeout: float = 30.0) -> int:
        self.stopped = True
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()
        return self.process.returncode


@pytest.fixture
def make_env(bootstrap: str, tmp_path: Path) -> Iterator[Callable[..., Env]]:
    """Factory: a fresh set of random topics (created), group and port for one test."""
    yield from env_factory(bootstrap, tmp_path)


@pytest.fixture
def make_own_env(own_broker: Any, tmp_path: Path) -> Iterator[Callable[..., Env]]:
    """`make_env` on the broker of a module's own `own_broker` fixture (one it may stop)."""
    yield from env_factory(own_broker.bootstrap, tmp_path)


def env_factory(
    bootstrap: str, tmp_path: Path, base: dict[str, object] | None = None
) -> Iterator[Callable[..., Env]]:
    """`make_env` for the cluster at `bootstrap`, with `base` settings in every env
    (e.g. how to authenticate)."""
    made: list[Env] = []

    def make(**overrides: object) -> Env:
        run = uuid.uuid4().hex[:10]
        ports = free_ports(2)
        values: dict[str, object] = {
            "events_topic": f"t-{run}-events",
            "predictions_topic": f"t-{run}-predictions",
            "dead_letters_topic": f"t-{run}-dead-letters",
            "activity_topic": f"t-{run}-activity",
            "metrics_topic": f"t-{run}-metrics",
            "checkpoints_topic": f"t-{run}-checkpoints",
            "drift_topic": f"t-{run}-drift",
            "control_topic": f"t-{run}-control",
            "shadow_predictions_topic": f"t-{run}-shadow-predictions",
            "experiments_topic": f"t-{run}-experiments",
            "impressions_topic": f"t-{run}-impressions",
            "clicks_topic": f"t-{run}-clicks",
            "conversions_topic": f"t-{run}-conversions",
            "outcomes_topic": f"t-{run}-outcomes",
            "learn_topic": f"t-{run}-learn",
            "snapshots_topic": f"t-{run}-snapshots",
            # The tests written for one replica per partition say so; those of global
            # models (the default scope) pass model_scopes={}.
            "model_scopes": {"*": "partition"},
            "checkpoint_key": f"key-{run}",
            "group_id": f"g-{run}",
            "metrics_port": ports[0],
            "api_port": ports[1],
            "data_dir": tmp_path / f"data-{run}",
            "session_timeout_seconds": 6.0,
            "log_level": "info",
            **(base or {}),
            **overrides,
        }
        settings = Settings(broker=bootstrap, **values)  # type: ignore[arg-type]
        ensure_topics(settings)
        env = {k: v for k, v in os.environ.items() if not k.startswith("RIVERRUN_")}
        # Only what this test chose: everything else keeps its default, as for a user.
        env.update(settings.as_environment())
        made.append(Env(settings, env, tmp_path))
        return made[-1]

    yield make
    for env in made:
        for worker in env.workers:
            worker.stop()
    # Every partition left on the broker makes each of its later starts slower.
    if not made:
        return
    names = {n for env in made for n in topic_names(env.settings) + join_topics(env.settings)}
    admin = KafkaAdminClient(**made[0].client_options())
    try:
        admin.delete_topics([n for n in names if n in set(admin.list_topics())])
    finally:
        admin.close()
