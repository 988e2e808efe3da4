"""The client layer: the settings mapped onto librdkafka's options for each protocol and
mechanism, accepted by librdkafka itself, no secret in a repr, an error or the log; the
log of an outage quiet. (Against a real broker: tests/integration/test_kafka_clients.py.)"""

import base64
import json
import logging
import time
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, Producer
from pydantic import SecretStr

import riverrun
from streams.kafka.clients import (
    ClientLog,
    admin,
    client_config,
    consumer,
    consumer_config,
    partition_of,
    producer,
    producer_config,
)
from streams.kafka.security import SecurityError, ssl_context
from streams.settings import Settings
from tests.tls import Authority, client_pki, keystore

SECRET = "s3cr3t-never-shown"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return client_pki(tmp_path_factory.mktemp("pki"), key_password=SECRET)


def sasl(protocol: str, mechanism: str, **values: object) -> Settings:
    return Settings(
        broker="b1:9093,b2:9093",
        security_protocol=protocol,  # type: ignore[arg-type]
        sasl_mechanism=mechanism,  # type: ignore[arg-type]
        sasl_username="svc",
        sasl_password=SecretStr(SECRET),
        **values,  # type: ignore[arg-type]
    )


def test_plaintext_names_the_cluster_and_the_client_only() -> None:
    config = client_config(Settings(broker="k1:9092,k2:9092"), client_id="riverrun-x")
    assert config["bootstrap.servers"] == "k1:9092,k2:9092"
    assert (config["client.id"], config["security.protocol"]) == ("riverrun-x", "PLAINTEXT")
    assert not [k for k in config if k.startswith(("ssl.", "sasl."))]
    assert isinstance(config["logger"], ClientLog) and config["error_cb"] == config["logger"].error


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_plaintext_gives_the_mechanism_and_credentials_and_no_tls(mechanism: str) -> None:
    config = client_config(sasl("SASL_PLAINTEXT", mechanism), client_id="c")
    assert config["security.protocol"] == "SASL_PLAINTEXT"
    assert config["sasl.mechanism"] == mechanism
    assert (config["sasl.username"], config["sasl.password"]) == ("svc", SECRET)
    assert not [k for k in config if k.startswith("ssl.")]
    assert SECRET not in repr(config) and SECRET not in str(config)
    Producer(config).flush(0)  # librdkafka takes every option as given


def test_sasl_ssl_verifies_the_brokers_certificate_with_the_ca_and_their_names(
    pki: dict[str, Path],
) -> None:
    config = client_config(sasl("SASL_SSL", "SCRAM-SHA-512", ssl_cafile=pki["ca"]), client_id="c")
    assert config["security.protocol"] == "SASL_SSL"
    assert config["ssl.ca.location"] == str(pki["ca"])
    assert config["ssl.endpoint.identification.algorithm"] == "https"
    assert "ssl.certificate.location" not in config
    assert SECRET not in repr(config)
    Producer(config).flush(0)  # librdkafka loads the CA file


def test_mutual_tls_gives_the_certificate_its_key_and_its_password_masked(
    pki: dict[str, Path],
) -> None:
    settings = Settings(
        broker="b:9093",
        security_protocol="SSL",
        ssl_certfile=pki["cert"],
        ssl_keyfile=pki["encrypted"],
        ssl_key_password=SecretStr(SECRET),
        ssl_check_hostname=False,
    )
    config = client_config(settings, client_id="c")
    assert config["ssl.ca.location"] == "probe"  # no CA file: the system's, as Python's
    assert config["ssl.certificate.location"] == str(pki["cert"])
    assert config["ssl.key.location"] == str(pki["encrypted"])
    assert config["ssl.key.password"] == SECRET and SECRET not in repr(config)
    assert config["ssl.endpoint.identification.algorithm"] == "none"
    assert not [k for k in config if k.startswith("sasl.")]
    Producer(config).flush(0)  # librdkafka decrypts the key with the password

    both = keystore(pki["cert"].parent, "client", pki["cert"], pki["key"])  # key + chain
    in_one_file = settings.model_copy(
        update={"ssl_certfile": both, "ssl_keyfile": None, "ssl_key_password": None}
    )
    config = client_config(in_one_file, client_id="c")
    assert config["ssl.certificate.location"] == config["ssl.key.location"] == str(both)
    Producer(config).flush(0)  # librdkafka finds the key among the file's blocks


def test_unusable_files_are_the_sentences_every_client_gives_without_the_password(
    pki: dict[str, Path], tmp_path: Path
) -> None:
    not_pem = tmp_path / "ca.pem"
    not_pem.write_text("not a certificate")
    _, wrong_key = Authority.create(tmp_path, "other").issue(tmp_path, "else", client=True)
    for values in (
        {"ssl_cafile": not_pem},
        {"ssl_certfile": pki["cert"], "ssl_keyfile": wrong_key},
        {"ssl_certfile": pki["cert"], "ssl_keyfile": pki["encrypted"]},  # no password
    ):
        settings = sasl("SASL_SSL", "PLAIN", ssl_key_password=SecretStr(SECRET + "x"), **values)
        with pytest.raises(SecurityError) as expected:
            ssl_context(settings)
        with pytest.raises(SecurityError) as err:
            client_config(settings, client_id="c")
        assert str(err.value) == str(expected.value)
        assert SECRET not in str(err.value)


def jwt(claims: dict[str, object]) -> str:
    def part(value: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    return f"{part({'alg': 'none'})}.{part(claims)}.sig"


def test_oauthbearer_asks_the_apps_provider_for_a_token_and_reads_its_expiry() -> None:
    expires = int(time.time()) + 3600
    tokens = [jwt({"sub": "svc-account", "exp": expires})]
    app = riverrun.App(oauth_token_provider=lambda: tokens[-1])
    settings = app.served_settings(
        Settings(broker="b:9093", security_protocol="SASL_PLAINTEXT", sasl_mechanism="OAUTHBEARER")
    )
    config = client_config(settings, client_id="c")
    assert config["sasl.mechanism"] == "OAUTHBEARER" and "sasl.password" not in config
    assert config["oauth_cb"](None) == (tokens[-1], float(expires), "svc-account")
    assert tokens[-1] not in repr(config)
    producer(settings, client_id="c").flush(0)  # librdkafka takes the callback's token

    static = Settings(
        broker="b:9093",
        security_protocol="SASL_SSL",
        sasl_mechanism="OAUTHBEARER",
        sasl_oauth_token=SecretStr(SECRET),
    )
    token, expiry, principal = client_config(static, client_id="c")["oauth_cb"](None)
    assert (token, principal) == (SECRET, "riverrun")
    assert time.time() < expiry <= time.time() + 300  # asked again before 5 minutes
    assert SECRET not in repr(client_config(static, client_id="c"))

    no_token = static.model_copy(update={"sasl_oauth_token": None})
    with pytest.raises(SecurityError, match="there is no token: set RIVERRUN_SASL_OAUTH_TOKEN"):
        client_config(no_token, client_id="c")


def test_producers_are_idempotent_put_keys_by_murmur2_and_batch_as_the_settings_say() -> None:
    settings = Settings(
        producer_linger_ms=7, producer_batch_bytes=65536, producer_compression="gzip"
    )
    config = producer_config(
        settings, client_id="p", transactional_id="tx-1", queue_buffering_max_ms=3
    )
    assert (config["acks"], config["enable.idempotence"]) == ("all", True)
    assert config["partitioner"] == "murmur2_random"
    assert (config["linger.ms"], config["batch.size"]) == (7, 65536)
    assert config["compression.type"] == "gzip"
    assert config["transactional.id"] == "tx-1" and config["queue.buffering.max.ms"] == 3
    assert producer_config(Settings(), client_id="p")["compression.type"] == "none"
    assert "transactional.id" not in producer_config(Settings(), client_id="p")
    producer(settings, client_id="p").flush(0)


def test_consumers_commit_only_when_told_and_read_committed_under_exactly_once() -> None:
    settings = Settings(session_timeout_seconds=6.0, fetch_max_wait_ms=10)
    config = consumer_config(settings, group_id="g", client_id="c", enable_partition_eof=True)
    assert (config["group.id"], config["enable.auto.commit"]) == ("g", False)
    assert config["auto.offset.reset"] == "earliest"
    assert config["isolation.level"] == "read_uncommitted"
    assert (config["session.timeout.ms"], config["heartbeat.interval.ms"]) == (6000, 2000)
    assert config["fetch.wait.max.ms"] == 10 and config["enable.partition.eof"] is True
    exactly_once = Settings(processing_guarantee="exactly_once", checkpoint_key=SecretStr("k"))
    assert consumer_config(exactly_once, group_id="g", client_id="c")["isolation.level"] == (
        "read_committed"
    )
    consumer(settings, group_id="g", client_id="c").close()
    admin(settings).poll(0)


def test_keys_go_where_the_java_client_puts_them() -> None:
    # The Java client's own murmur2 test vectors (Utils.murmur2), masked and reduced.
    for key, java in [("21", -973932308), ("foobar", -790332482), ("abc", 479470107)]:
        assert partition_of(key, 12) == (java & 0x7FFFFFFF) % 12


def error(code: int, text: str, fatal: bool = False) -> KafkaError:
    return KafkaError(code, text, fatal=fatal)


def test_an_outage_is_quiet_refusals_are_one_sentence_and_no_secret_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="streams.kafka.clients")
    settings = sasl("SASL_PLAINTEXT", "SCRAM-SHA-512")
    clientlog = ClientLog(settings, "riverrun-api")
    for _ in range(100):  # librdkafka's retries during an outage, twenty a second
        clientlog.log(
            logging.ERROR,
            "%s [%s] %s",
            "FAIL",
            "riverrun-api#producer-1",
            "b1:9093/1: Connect to ipv4#10.0.0.1:9093 failed: Connection refused",
        )
        clientlog.error(error(KafkaError._ALL_BROKERS_DOWN, "2/2 brokers are down"))
        clientlog.error(error(KafkaError._TRANSPORT, "b1:9093/1: Disconnected"))
    assert clientlog.transient == 300
    assert {r.levelno for r in caplog.records} == {logging.DEBUG}
    caplog.clear()

    for _ in range(5):
        clientlog.error(
            error(
                KafkaError._AUTHENTICATION,
                f"SASL authentication error: Authentication failed ({SECRET})",
            )
        )
        clientlog.error(error(KafkaError.UNKNOWN_TOPIC_OR_PART, "Subscribed topic not available"))
    lines = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert len(lines) == 2, lines  # each once
    assert lines[0][0] == logging.ERROR
    assert lines[0][1].startswith(
        "cannot connect to Kafka at b1:9093,b2:9093 over SASL_PLAINTEXT (SCRAM-SHA-512): "
        "the broker refused the credentials for user 'svc'"
    )
    assert clientlog.refused == lines[0][1]
    assert lines[1][0] == logging.WARNING and "topic not available" in lines[1][1]
    assert SECRET not in caplog.text

    clientlog.error(error(KafkaError._FENCED, "producer fenced", fatal=True))
    assert caplog.records[-1].levelno == logging.ERROR and "fatal" in caplog.records[-1].message
