"""How riverrun's Kafka clients authenticate and encrypt, from the settings.

One place for the security of every client riverrun has: the worker's librdkafka
clients (`streams.kafka.clients` maps the same settings and checks the same files),
kafka-python in the CLI tools (replay, tail, report, demo, status), the Faust app (its
`broker_credentials`: Faust keeps its own aiokafka clients for its runtime) and the CLI's
broker check. Each gets the same TLS context and SASL options, and a failed connection
becomes one sentence naming the broker, the protocol and the mechanism — never a secret.
"""

import asyncio
import ssl
import time
from typing import Any

import aiokafka.abc
import faust
from aiokafka.conn import create_conn
from aiokafka.protocol.metadata import MetadataRequest
from kafka.net.sasl.oauth import AbstractTokenProvider as KafkaTokenProvider

from streams.settings import Settings, TokenProvider, env_name


class SecurityError(ValueError):
    """Security settings that cannot work; str() is one sentence saying what to do."""


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context of the SSL and SASL_SSL protocols (None for the others)."""
    if settings.security_protocol not in ("SSL", "SASL_SSL"):
        return None
    try:
        context = ssl.create_default_context(
            cafile=str(settings.ssl_cafile) if settings.ssl_cafile else None
        )
    except (OSError, ssl.SSLError) as err:
        raise SecurityError(
            f"RIVERRUN_SSL_CAFILE {settings.ssl_cafile} holds no usable CA certificate "
            f"({_reason(err)}); give a PEM file of the CA that signs the brokers' certificates"
        ) from None
    context.check_hostname = settings.ssl_check_hostname
    if settings.ssl_certfile is not None:
        password = settings.ssl_key_password
        try:
            context.load_cert_chain(
                str(settings.ssl_certfile),
                str(settings.ssl_keyfile) if settings.ssl_keyfile else None,
                password.get_secret_value() if password else None,
            )
        except (OSError, ssl.SSLError) as err:
            key = f"with its key {settings.ssl_keyfile} " if settings.ssl_keyfile else ""
            raise SecurityError(
                f"cannot load the client certificate {settings.ssl_certfile} {key}"
                f"({_reason(err)}); check RIVERRUN_SSL_CERTFILE, RIVERRUN_SSL_KEYFILE and "
                "RIVERRUN_SSL_KEY_PASSWORD"
            ) from None
    return context


def _reason(err: BaseException) -> str:
    if isinstance(err, ssl.SSLError) and err.reason:
        return str(err.reason).replace("_", " ").lower()
    return getattr(err, "strerror", None) or type(err).__name__


def token_provider(settings: Settings) -> TokenProvider | None:
    """The OAUTHBEARER token source: the App's provider, else the static token."""
    if settings.oauth_token_provider is not None:
        return settings.oauth_token_provider
    token = settings.sasl_oauth_token
    if token is not None:
        return token.get_secret_value
    return None


def _sasl(settings: Settings) -> dict[str, Any]:
    """The SASL options both Python clients name alike (without the token provider)."""
    if not settings.security_protocol.startswith("SASL_"):
        return {}
    if settings.sasl_mechanism == "OAUTHBEARER":
        if token_provider(settings) is None:
            raise SecurityError(
                "RIVERRUN_SASL_MECHANISM is OAUTHBEARER but there is no token: set "
                "RIVERRUN_SASL_OAUTH_TOKEN or give the App an oauth_token_provider"
            )
        return {"sasl_mechanism": "OAUTHBEARER"}
    password = settings.sasl_password
    return {
        "sasl_mechanism": settings.sasl_mechanism,
        "sasl_plain_username": settings.sasl_username,
        "sasl_plain_password": password.get_secret_value() if password else None,
    }


def aiokafka_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments of AIOKafkaConsumer/AIOKafkaProducer for these settings."""
    return _client_options(settings, AsyncTokens)


def kafka_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments of kafka-python's KafkaProducer/KafkaConsumer/KafkaAdminClient."""
    return _client_options(settings, SyncTokens)


def _client_options(settings: Settings, tokens: type[Any]) -> dict[str, Any]:
    """The options both Python clients name alike, with `tokens` (the client's token
    provider class) around an OAUTHBEARER token source."""
    options: dict[str, Any] = {"security_protocol": settings.security_protocol, **_sasl(settings)}
    context = ssl_context(settings)
    if context is not None:
        options["ssl_context"] = context
    if options.get("sasl_mechanism") == "OAUTHBEARER":
        options["sasl_oauth_token_provider"] = tokens(token_provider(settings))
    return options


def faust_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments of faust.App: its broker_credentials (nothing for PLAINTEXT)."""
    protocol = settings.security_protocol
    context = ssl_context(settings)
    if protocol == "PLAINTEXT":
        return {}
    if protocol == "SSL":
        return {"broker_credentials": faust.SSLCredentials(context)}
    sasl = _sasl(settings)
    if sasl["sasl_mechanism"] == "OAUTHBEARER":
        provider = token_provider(settings)
        assert provider is not None  # _sasl refused it otherwise
        credentials: Any = faust.OAuthCredentials(
            oauth_cb=AsyncTokens(provider), ssl_context=context
        )
    else:
        credentials = faust.SASLCredentials(
            username=sasl["sasl_plain_username"],
            password=sasl["sasl_plain_password"],
            mechanism=sasl["sasl_mechanism"],
            ssl_context=context,
        )
    return {"broker_credentials": credentials}


class AsyncTokens(aiokafka.abc.AbstractTokenProvider):
    """aiokafka's (and Faust's) token provider around a plain callable, called in a
    thread so that a provider that asks an identity service does not block the loop."""

    def __init__(self, provider: TokenProvider) -> None:
        self.provider = provider

    async def token(self) -> str:
        return await asyncio.get_running_loop().run_in_executor(None, self.provider)


class SyncTokens(KafkaTokenProvider):
    """kafka-python's token provider around a plain callable."""

    def __init__(self, provider: TokenProvider) -> None:
        self.provider = provider

    def token(self) -> str:
        return self.provider()


def check_connection(settings: Settings, timeout: float) -> None:
    """Connect and authenticate to a bootstrap server once; raise SecurityError (one
    sentence) for a failure that retrying cannot fix. Unreachable servers pass: waiting
    for the cluster (`wait_until_ready`) reports those."""
    if settings.security_protocol == "PLAINTEXT":
        return
    options = aiokafka_options(settings)

    async def attempt(host: str, port: int) -> None:
        async def metadata() -> None:
            connection = await create_conn(
                host, port, client_id="riverrun-probe", request_timeout_ms=budget_ms, **options
            )
            try:  # a request too: TLS alone does not show a listener that wants SASL
                await connection.send(MetadataRequest([]))
            finally:
                connection.close()

        await asyncio.wait_for(metadata(), timeout)

    budget_ms = int(timeout * 1000)
    servers = [s.strip().rpartition(":") for s in settings.bootstrap_servers.split(",")]
    closed = 0
    for _ in range(3):  # a closed connection may be a restarting broker: try again
        for host, _, port in servers:
            if not host or not port.isdigit():
                continue
            try:
                asyncio.run(attempt(host.strip("[]"), int(port)))
            except Exception as err:
                sentence = connection_failure(settings, err)
                if sentence is not None:
                    raise SecurityError(sentence) from None
                closed += _closed_by_broker(err)
                continue
            return
        if not closed:
            return  # unreachable: waiting for the cluster says so
        time.sleep(0.5)
    raise SecurityError(
        f"cannot connect to Kafka at {describe(settings)}: the broker closes every connection "
        f"during the handshake; check that {env_name('security_protocol')} (and "
        f"{env_name('sasl_mechanism')}) match the listener at that address"
    )


def _closed_by_broker(err: BaseException) -> bool:
    """Whether a connection failed because the other side closed it (not refused)."""
    if isinstance(err, ConnectionResetError | BrokenPipeError | asyncio.IncompleteReadError):
        return True
    return "closed" in str(err).lower() and not isinstance(err, ConnectionRefusedError)


def broker_shown(servers: str) -> str:
    """Bootstrap servers without any user or password written into them.

    >>> broker_shown("alice:secret@kafka-1:9092,kafka-2:9092")
    'kafka-1:9092,kafka-2:9092'
    """
    return ",".join(server.rpartition("@")[2] for server in servers.split(","))


def describe(settings: Settings, bootstrap: str | None = None) -> str:
    """Which cluster and how, for messages: e.g. `b1:9093 over SASL_SSL (SCRAM-SHA-512)`."""
    where = bootstrap or settings.bootstrap_servers
    protocol = settings.security_protocol
    if protocol.startswith("SASL_"):
        return f"{where} over {protocol} ({settings.sasl_mechanism})"
    return f"{where} over {protocol}"


def connection_failure(settings: Settings, err: BaseException) -> str | None:
    """One sentence for an error that retrying cannot fix (refused credentials, an
    untrusted or mismatched certificate, a protocol mismatch), else None."""
    text = f"{type(err).__name__}: {err}"
    for secret in (settings.sasl_password, settings.sasl_oauth_token, settings.ssl_key_password):
        if secret is not None:
            text = text.replace(secret.get_secret_value(), "***")
    lowered = text.lower()
    target = describe(settings)
    if "certificate verify failed" in lowered or "certificateverify" in lowered:
        if "hostname" in lowered or "ip address mismatch" in lowered:
            return (
                f"cannot connect to Kafka at {target}: the broker's certificate does not name "
                "the host connected to; connect by a name it has (RIVERRUN_BROKER) or, only if "
                "you must, set RIVERRUN_SSL_CHECK_HOSTNAME=false"
            )
        return (
            f"cannot connect to Kafka at {target}: the broker's certificate is not signed by a "
            "trusted CA; set RIVERRUN_SSL_CAFILE to the PEM file of the CA that signs it"
        )
    if "authentication" in lowered or ("sasl" in lowered and "fail" in lowered):
        user = f" for user {settings.sasl_username!r}" if settings.sasl_username else ""
        return (
            f"cannot connect to Kafka at {target}: the broker refused the credentials{user}; "
            f"check {env_name('sasl_username')} and {env_name('sasl_password')} (or the "
            "mechanism the cluster expects)"
        )
    if "unsupportedsaslmechanism" in lowered.replace(" ", "") or "illegalsaslstate" in lowered:
        return (
            f"cannot connect to Kafka at {target}: the broker does not accept that SASL "
            f"mechanism; set {env_name('sasl_mechanism')} to one the cluster enables"
        )
    if isinstance(err, ssl.SSLError) or ("ssl" in lowered and "wrong version" in lowered):
        return (
            f"cannot connect to Kafka at {target}: the TLS handshake failed ({_reason(err)}); "
            f"check that {env_name('security_protocol')} matches the listener at that port"
        )
    return None
