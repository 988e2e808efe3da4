"""Security settings: each client gets the same TLS and SASL options; mistakes are one
sentence that never holds a secret. (Against a real SASL_SSL broker: the integration
tests' test_security.py.)"""

import asyncio
import ssl
from pathlib import Path

import faust
import pytest
from click.testing import CliRunner
from pydantic import SecretStr, ValidationError

import riverrun
from streams.cli.main import main
from streams.kafka.security import (
    SecurityError,
    aiokafka_options,
    connection_failure,
    faust_options,
    kafka_options,
    ssl_context,
)
from streams.settings import MASK, Settings, describe_error
from tests.tls import Authority, client_pki

SECRET = "s3cr3t-never-shown"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return client_pki(tmp_path_factory.mktemp("pki"), key_password=SECRET)


def scram(**values: object) -> Settings:
    base: dict[str, object] = {
        "broker": "b1:9093,b2:9093",
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_username": "svc",
        "sasl_password": SecretStr(SECRET),
    }
    return Settings(**{**base, **values})  # type: ignore[arg-type]


def error_of(**values: object) -> str:
    with pytest.raises(ValidationError) as err:
        Settings(**values)  # type: ignore[arg-type]
    return describe_error(err.value)


def test_plaintext_is_the_default_and_adds_nothing() -> None:
    settings = Settings()
    assert aiokafka_options(settings) == {"security_protocol": "PLAINTEXT"}
    assert kafka_options(settings) == {"security_protocol": "PLAINTEXT"}
    assert faust_options(settings) == {}


def test_sasl_ssl_gives_every_client_the_same_credentials_and_a_verifying_context(
    pki: dict[str, Path],
) -> None:
    settings = scram(ssl_cafile=pki["ca"])
    for options in (aiokafka_options(settings), kafka_options(settings)):
        assert options["security_protocol"] == "SASL_SSL"
        assert options["sasl_mechanism"] == "SCRAM-SHA-512"
        assert (options["sasl_plain_username"], options["sasl_plain_password"]) == ("svc", SECRET)
        context = options["ssl_context"]
        assert context.check_hostname and context.verify_mode == ssl.CERT_REQUIRED
        assert [c["subject"] for c in context.get_ca_certs()] == [((("commonName", "ca"),),)]
    credentials = faust_options(settings)["broker_credentials"]
    assert isinstance(credentials, faust.SASLCredentials)
    assert (
        credentials.protocol.value == "SASL_SSL" and credentials.mechanism.value == "SCRAM-SHA-512"
    )
    assert SECRET not in repr(credentials)


def test_mutual_tls_loads_the_client_certificate_and_hostname_checks_can_be_turned_off(
    pki: dict[str, Path],
) -> None:
    settings = Settings(
        broker="b:9093",
        security_protocol="SSL",
        ssl_cafile=pki["ca"],
        ssl_certfile=pki["cert"],
        ssl_keyfile=pki["key"],
        ssl_check_hostname=False,
    )
    context = ssl_context(settings)
    assert context is not None and not context.check_hostname
    assert context.verify_mode == ssl.CERT_REQUIRED  # the CA is still checked
    assert isinstance(faust_options(settings)["broker_credentials"], faust.SSLCredentials)
    assert "sasl_mechanism" not in kafka_options(settings)


def test_a_certificate_that_does_not_match_its_key_is_one_sentence_without_the_password(
    pki: dict[str, Path], tmp_path: Path
) -> None:
    other = Authority.create(tmp_path, "other")
    _, wrong_key = other.issue(tmp_path, "someone-else", client=True)
    settings = Settings(
        broker="b:9093",
        security_protocol="SSL",
        ssl_certfile=pki["cert"],
        ssl_keyfile=wrong_key,
        ssl_key_password=SecretStr(SECRET),
    )
    with pytest.raises(SecurityError) as err:
        ssl_context(settings)
    assert str(err.value).startswith(f"cannot load the client certificate {pki['cert']}")
    assert "RIVERRUN_SSL_KEYFILE" in str(err.value) and SECRET not in str(err.value)


def test_oauthbearer_takes_the_apps_token_provider_or_a_static_token() -> None:
    calls = []

    def provider() -> str:
        calls.append(1)
        return "token-from-idp"

    app = riverrun.App(oauth_token_provider=provider)
    settings = app.served_settings(
        Settings(
            broker="b:9093",
            security_protocol="SASL_SSL",
            sasl_mechanism="OAUTHBEARER",
            checkpoint_key=SecretStr("k"),
        )
    )
    assert settings.worker_problems() == []
    tokens = aiokafka_options(settings)["sasl_oauth_token_provider"]
    assert asyncio.run(tokens.token()) == "token-from-idp"
    assert kafka_options(settings)["sasl_oauth_token_provider"].token() == "token-from-idp"
    credentials = faust_options(settings)["broker_credentials"]
    assert isinstance(credentials, faust.OAuthCredentials)
    assert len(calls) == 2

    static = Settings(
        broker="b:9093",
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="OAUTHBEARER",
        sasl_oauth_token=SecretStr(SECRET),
    )
    assert kafka_options(static)["sasl_oauth_token_provider"].token() == SECRET

    no_token = Settings(
        broker="b:9093",
        security_protocol="SASL_SSL",
        sasl_mechanism="OAUTHBEARER",
        checkpoint_key=SecretStr("k"),
    )
    assert "RIVERRUN_SASL_OAUTH_TOKEN or give the App an oauth_token_provider" in " ".join(
        no_token.worker_problems()
    )
    with pytest.raises(SecurityError, match="there is no token"):
        aiokafka_options(no_token)


def test_inconsistent_security_settings_are_refused_with_what_to_do(pki: dict[str, Path]) -> None:
    message = error_of(security_protocol="SASL_SSL", sasl_password=SecretStr(SECRET))
    assert "needs RIVERRUN_SASL_USERNAME" in message and SECRET not in message
    message = error_of(sasl_username="u", sasl_password=SecretStr(SECRET))
    assert (
        "RIVERRUN_SASL_USERNAME, RIVERRUN_SASL_PASSWORD set but RIVERRUN_SECURITY_PROTOCOL is PLAINTEXT"
        in message
    )
    assert SECRET not in message
    assert "does not use TLS" in error_of(ssl_cafile=pki["ca"])
    message = error_of(security_protocol="SSL", ssl_cafile=Path("/nonexistent/ca.pem"))
    assert "RIVERRUN_SSL_CAFILE /nonexistent/ca.pem is not a file" in message
    assert "without RIVERRUN_SSL_CERTFILE" in error_of(
        security_protocol="SSL", ssl_keyfile=pki["key"]
    )


def test_connection_failures_retrying_cannot_fix_are_named_without_secrets() -> None:
    settings = scram()
    where = "b1:9093,b2:9093 over SASL_SSL (SCRAM-SHA-512)"
    refused = Exception(f"[Error 58] SaslAuthenticationFailed: invalid credentials ({SECRET})")
    untrusted = ssl.SSLCertVerificationError(
        1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: self-signed certificate"
    )
    hostname = ssl.SSLCertVerificationError(
        1, "certificate verify failed: Hostname mismatch, certificate is not valid for 'b1'"
    )
    for err, says in [
        (refused, "the broker refused the credentials for user 'svc'"),
        (untrusted, "not signed by a trusted CA; set RIVERRUN_SSL_CAFILE"),
        (hostname, "does not name the host connected to"),
    ]:
        sentence = connection_failure(settings, err)
        assert sentence is not None and sentence.startswith(f"cannot connect to Kafka at {where}")
        assert says in sentence and SECRET not in sentence
    assert connection_failure(settings, ConnectionRefusedError("refused")) is None  # retried


def test_a_worker_on_an_external_cluster_without_a_shared_checkpoint_key_refuses_to_start(
    clean_environment: pytest.MonkeyPatch,
) -> None:
    clean_environment.setenv("RIVERRUN_BROKER", "kafka.example.com:9092")
    done = CliRunner().invoke(main, ["worker"])
    assert done.exit_code == 1
    assert "RIVERRUN_BROKER is set but RIVERRUN_CHECKPOINT_KEY is not" in done.output
    assert "set the same secret on every worker" in done.output


def test_config_masks_secrets_says_where_each_value_comes_from_and_checks_them(
    clean_environment: pytest.MonkeyPatch,
) -> None:
    for name, value in {
        "RIVERRUN_BROKER": "b1:9093",
        "RIVERRUN_SECURITY_PROTOCOL": "SASL_SSL",
        "RIVERRUN_SASL_MECHANISM": "PLAIN",
        "RIVERRUN_SASL_USERNAME": "API-KEY",
        "RIVERRUN_SASL_PASSWORD": SECRET,
        "RIVERRUN_CHECKPOINT_KEY": SECRET + "-key",
    }.items():
        clean_environment.setenv(name, value)
    runner = CliRunner()
    shown = runner.invoke(main, ["config"])
    assert shown.exit_code == 0, shown.output
    lines = {  # the settings' rows, under their sections' headings
        line.split()[0]: line.split()[1:]
        for line in shown.output.splitlines()
        if line.startswith("  RIVERRUN_")
    }
    assert lines["RIVERRUN_SASL_PASSWORD"] == [MASK, "[environment]"]
    assert lines["RIVERRUN_SASL_USERNAME"] == ["API-KEY", "[environment]"]
    assert lines["RIVERRUN_BATCH_SIZE"] == ["1000", "[default]"]
    assert len(lines) == len(Settings.model_fields)

    as_env = runner.invoke(main, ["config", "--env"])
    assert as_env.exit_code == 0
    assert "RIVERRUN_SASL_USERNAME=API-KEY" in as_env.output.splitlines()
    assert "# RIVERRUN_SASL_PASSWORD is a secret: set it from your secret store" in as_env.output
    assert "RIVERRUN_BATCH_SIZE" not in as_env.output  # defaults are left out
    for done in (shown, as_env):
        assert SECRET not in done.output

    clean_environment.delenv("RIVERRUN_CHECKPOINT_KEY")
    broken = runner.invoke(main, ["config"])
    assert broken.exit_code == 1
    assert "error: RIVERRUN_BROKER is set but RIVERRUN_CHECKPOINT_KEY is not" in broken.output
