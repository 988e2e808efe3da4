"""The local broker's set-up and process logic, without starting a broker (fast).

`java` and `mvn` are replaced by a PATH without them, or by tiny shell scripts; "brokers"
are sleeping Python processes whose command line looks like our broker's.
"""

import hashlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.kafka.local_broker import (
    BROKER_FILES,
    LocalKafka,
    LocalKafkaError,
    java_major_version,
    wait_until_ready,
)
from tests.paths import PROJECT_DIR
from tests.ports import free_port_pair

DEPLOY = PROJECT_DIR / "deploy" / "kafka"


def kafka(tmp_path: Path, port: int = 29092) -> LocalKafka:
    return LocalKafka(deploy_dir=DEPLOY, cache_dir=tmp_path / "kafka", port=port)


def fake_java(bin_dir: Path, version: str) -> None:
    """A `java` that only answers `java -version`, as a JDK of `version` does."""
    bin_dir.mkdir(exist_ok=True)
    java = bin_dir / "java"
    java.write_text(f"#!/bin/sh\necho 'openjdk version \"{version}\" 2025-04-15' >&2\n")
    java.chmod(0o755)


def jars_resolved(local: LocalKafka) -> None:
    """Pretend the jars of the current pom.xml were resolved."""
    local.libs.mkdir(parents=True)
    digest = hashlib.sha256((DEPLOY / "pom.xml").read_bytes()).hexdigest()
    (local.libs / ".pom.sha256").write_text(digest)


@pytest.fixture
def fake_broker(tmp_path: Path) -> Iterator[tuple[LocalKafka, subprocess.Popen[bytes]]]:
    """A process that `LocalKafka` takes for its broker (it runs `... kafka.Kafka <config>`).

    It ignores SIGTERM when `stubborn` is in its arguments; here it does not.
    """
    local = kafka(tmp_path)
    local.cache_dir.mkdir(parents=True)
    process = start_fake_broker(local, stubborn=False)
    yield local, process
    stop(process)


def stop(process: subprocess.Popen[bytes]) -> None:
    process.kill()
    process.wait()
    if process.stdout is not None:
        process.stdout.close()


def start_fake_broker(local: LocalKafka, stubborn: bool) -> subprocess.Popen[bytes]:
    code = (
        "import signal, sys, time\n"
        "if 'stubborn' in sys.argv: signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    args = [sys.executable, "-c", code, "kafka.Kafka", str(local.config_path)]
    process = subprocess.Popen([*args, *(["stubborn"] if stubborn else [])], stdout=subprocess.PIPE)
    assert process.stdout is not None and process.stdout.readline() == b"ready\n"
    return process


# --- missing or unsuitable tools ----------------------------------------------------------
def test_missing_java_is_one_actionable_sentence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH with neither java nor mvn
    with pytest.raises(LocalKafkaError) as caught:
        kafka(tmp_path).up(timeout=1)
    message = str(caught.value)
    assert message == (
        "java not found: riverrun needs a JDK 17+ to run the local Kafka broker; install one "
        "or set RIVERRUN_BROKER to an existing cluster"
    )


def test_missing_maven_is_one_actionable_sentence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(LocalKafkaError) as caught:
        kafka(tmp_path).ensure_jars()
    message = str(caught.value)
    assert message.startswith("mvn not found: ")
    assert "RIVERRUN_BROKER" in message and "\n" not in message


def test_up_without_maven_but_with_java_asks_for_maven(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_java(tmp_path / "bin", "17.0.15")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    with pytest.raises(LocalKafkaError, match=r"^mvn not found: "):
        kafka(tmp_path).up(timeout=1)


def test_an_old_java_is_refused_with_the_version_it_has(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_java(tmp_path / "bin", "11.0.22")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    with pytest.raises(LocalKafkaError) as caught:
        kafka(tmp_path).up(timeout=1)
    assert "is Java 11, but Kafka 4.1.1 needs Java 17+" in str(caught.value)


@pytest.mark.parametrize(
    ("output", "major"),
    [
        ('openjdk version "17.0.15" 2025-04-15', 17),
        ('openjdk version "21" 2023-09-19', 21),
        ('java version "1.8.0_402"', 8),
        ("no version here", None),
    ],
)
def test_java_major_version(output: str, major: int | None) -> None:
    assert java_major_version(output) == major


# --- jars -----------------------------------------------------------------------------------
def test_jars_are_not_resolved_again_for_the_same_pom(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    local = kafka(tmp_path)
    jars_resolved(local)
    monkeypatch.setenv("PATH", str(tmp_path))  # no mvn: would fail if it were called
    assert local.ensure_jars() == local.libs


def test_a_changed_pom_resolves_the_jars_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    local = kafka(tmp_path)
    local.libs.mkdir(parents=True)
    (local.libs / ".pom.sha256").write_text("the digest of an older pom.xml")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(LocalKafkaError, match=r"^mvn not found"):  # it tried to run Maven
        local.ensure_jars()


def test_a_missing_pom_says_to_reinstall(tmp_path: Path) -> None:
    local = LocalKafka(deploy_dir=tmp_path, cache_dir=tmp_path / "kafka")
    with pytest.raises(LocalKafkaError, match=r"pom\.xml not found: .* reinstall riverrun"):
        local.ensure_jars()


def test_the_broker_files_ship_with_the_package() -> None:
    """`riverrun kafka up` finds them in the package, wherever it is installed."""
    names = {path.name for path in BROKER_FILES.iterdir()}
    assert {"pom.xml", "server.properties.template", "log4j2.yaml"} <= names


# --- configuration and storage ------------------------------------------------------------
def test_config_uses_the_host_port_and_cache_dir(tmp_path: Path) -> None:
    local = kafka(tmp_path, port=31000)
    text = local.render_config().read_text()
    assert "$" not in text  # every placeholder filled
    pairs = [line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#")]
    settings = dict(pairs)
    assert len(settings) == len(pairs)  # no key twice
    assert settings["listeners"] == "PLAINTEXT://127.0.0.1:31000,CONTROLLER://127.0.0.1:31001"
    assert settings["advertised.listeners"] == "PLAINTEXT://127.0.0.1:31000"
    assert settings["controller.quorum.voters"] == "1@127.0.0.1:31001"
    assert settings["log.dirs"] == str(local.cache_dir / "data")
    assert settings["process.roles"] == "broker,controller"
    assert settings["node.id"] == "1"
    for one in (
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
        "transaction.state.log.min.isr",
        "min.insync.replicas",
        "num.partitions",
    ):
        assert settings[one] == "1", one
    assert settings["group.initial.rebalance.delay.ms"] == "0"
    # Off: a deleted internal topic must not come back with the broker's defaults
    # (cleanup.policy=delete) on the next write; riverrun creates what it writes to.
    assert settings["auto.create.topics.enable"] == "false"
    assert int(settings["message.max.bytes"]) >= 1024 * 1024


def test_cluster_id_is_made_once_and_kept(tmp_path: Path) -> None:
    local = kafka(tmp_path)
    first = local.cluster_id()
    assert len(first) == 22 and not first.startswith("-")
    assert local.cluster_id_path.read_text().strip() == first
    assert local.cluster_id() == first


def test_cluster_id_of_already_formatted_storage_is_kept(tmp_path: Path) -> None:
    local = kafka(tmp_path)
    local.data_dir.mkdir(parents=True)
    (local.data_dir / "meta.properties").write_text(
        "#\nnode.id=1\nversion=1\ncluster.id=AKk9GRBPTmW3y7RTo8mxFA\n"
    )
    assert local.cluster_id() == "AKk9GRBPTmW3y7RTo8mxFA"


# --- ports and readiness ------------------------------------------------------------------
def test_wait_until_ready_gives_up_on_time_when_nothing_listens() -> None:
    port = free_port_pair()
    started = time.monotonic()
    with pytest.raises(
        LocalKafkaError,
        match=re.escape(f"no Kafka broker answers at 127.0.0.1:{port} within 0.3 s"),
    ):
        wait_until_ready(f"127.0.0.1:{port}", 0.3)
    assert time.monotonic() - started < 2


def test_a_taken_controller_port_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port_pair()
    local = kafka(tmp_path, port=port)
    jars_resolved(local)
    fake_java(tmp_path / "bin", "17.0.15")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    with socket.socket() as other:
        other.bind(("127.0.0.1", port + 1))
        other.listen()
        with pytest.raises(LocalKafkaError) as caught:
            local.up(timeout=1)
    assert str(caught.value).startswith(f"port {port + 1} on 127.0.0.1 is taken by another program")


# --- processes ----------------------------------------------------------------------------
@pytest.mark.parametrize("content", ["1", str(os.getpid()), "not a pid", "99999999"])
def test_a_stale_pid_file_means_not_running(tmp_path: Path, content: str) -> None:
    local = kafka(tmp_path)
    local.cache_dir.mkdir(parents=True)
    local.pid_path.write_text(content)  # no process, or one that is not our broker
    assert not local.is_running()
    assert not local.pid_path.exists()
    running, message = local.status()
    assert not running and "riverrun kafka up" in message
    assert local.down() == "local Kafka is not running"


def test_our_broker_is_found_by_its_pid_file(
    fake_broker: tuple[LocalKafka, subprocess.Popen[bytes]],
) -> None:
    local, process = fake_broker
    local.pid_path.write_text(f"{process.pid}\n")
    assert local.is_running()


def test_our_broker_is_found_without_a_pid_file(
    fake_broker: tuple[LocalKafka, subprocess.Popen[bytes]],
) -> None:
    local, process = fake_broker
    assert local.is_running()  # found in /proc by its command line
    assert local.pid_path.read_text().strip() == str(process.pid)


def test_a_broker_of_another_cache_dir_is_not_ours(
    fake_broker: tuple[LocalKafka, subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    _, process = fake_broker
    other = LocalKafka(deploy_dir=DEPLOY, cache_dir=tmp_path / "other")
    other.cache_dir.mkdir()
    other.pid_path.write_text(str(process.pid))
    assert not other.is_running()


def test_down_stops_the_broker_with_sigterm(
    fake_broker: tuple[LocalKafka, subprocess.Popen[bytes]],
) -> None:
    local, process = fake_broker
    message = local.down(timeout=10)
    assert message.startswith(f"Kafka (pid {process.pid}) stopped after ")
    assert process.wait(timeout=5) == -signal.SIGTERM
    assert not local.pid_path.exists()
    assert local.down() == "local Kafka is not running"


def test_down_kills_a_broker_that_ignores_sigterm(tmp_path: Path) -> None:
    local = kafka(tmp_path)
    local.cache_dir.mkdir(parents=True)
    process = start_fake_broker(local, stubborn=True)
    try:
        message = local.down(timeout=0.5)
        assert "did not stop within 0.5 s and was killed" in message
        assert process.wait(timeout=5) == -signal.SIGKILL
    finally:
        stop(process)
