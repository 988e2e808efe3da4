"""The local broker's set-up logic, without starting a broker."""

import hashlib
from pathlib import Path

import pytest

from streams.local_kafka import LocalKafka, LocalKafkaError
from streams.settings import PROJECT_DIR

DEPLOY = PROJECT_DIR / "deploy" / "kafka"


def kafka(tmp_path: Path, port: int = 29092) -> LocalKafka:
    return LocalKafka(deploy_dir=DEPLOY, cache_dir=tmp_path / "kafka", port=port)


def test_missing_java_is_one_actionable_sentence(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH with neither java nor mvn
    with pytest.raises(LocalKafkaError) as caught:
        kafka(tmp_path).up(timeout=1)
    message = str(caught.value)
    assert message.startswith("java not found")
    assert "RIVERRUN_BROKER" in message and "\n" not in message


def test_missing_maven_is_one_actionable_sentence(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(LocalKafkaError) as caught:
        kafka(tmp_path).ensure_jars()
    assert str(caught.value).startswith("mvn not found")
    assert "RIVERRUN_BROKER" in str(caught.value)


def test_jars_are_not_resolved_again_for_the_same_pom(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    local = kafka(tmp_path)
    local.libs.mkdir(parents=True)
    digest = hashlib.sha256((DEPLOY / "pom.xml").read_bytes()).hexdigest()
    (local.libs / ".pom.sha256").write_text(digest)
    monkeypatch.setenv("PATH", str(tmp_path))  # no mvn: would fail if it were called
    assert local.ensure_jars() == local.libs


def test_config_uses_the_port_and_cache_dir(tmp_path: Path) -> None:
    local = kafka(tmp_path, port=31000)
    local.cache_dir.mkdir(parents=True)
    text = local.render_config().read_text()
    assert "listeners=PLAINTEXT://127.0.0.1:31000,CONTROLLER://127.0.0.1:31001" in text
    assert "controller.quorum.voters=1@127.0.0.1:31001" in text
    assert f"log.dirs={local.cache_dir / 'data'}" in text
    assert "$" not in text  # every placeholder filled


def test_stale_pid_file_means_not_running(tmp_path: Path) -> None:
    local = kafka(tmp_path)
    local.cache_dir.mkdir(parents=True)
    local.pid_path.write_text("1")  # pid 1 exists but is not a Kafka broker
    assert not local.is_running()
    assert not local.pid_path.exists()
    running, message = local.status()
    assert not running and "riverrun kafka up" in message
    assert local.down() == "local Kafka is not running"
