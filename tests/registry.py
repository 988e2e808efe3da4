"""The local schema registry (Conduit's, built by `make schema-registry`), started for tests.

In memory, on a free port of 127.0.0.1, optionally behind HTTP basic auth and TLS (with
client certificates required when asked). Production registries are the teams' own; this one
implements registering and reading schemas by id or subject version, which is what the
serializers and riverrun use.
"""

import os
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from base64 import b64encode
from pathlib import Path
from typing import IO, Self

from tests.paths import PROJECT_DIR
from tests.ports import free_port
from tests.tls import Authority

REGISTRY_BINARY = PROJECT_DIR / ".cache" / "schema-registry" / "riverrun-schema-registry"


class RegistryError(RuntimeError):
    """The registry could not be started (the message says why)."""


class LocalRegistry:
    """A registry process: `start()` returns once it answers, `stop()` ends it.

    With `username`/`password` it wants HTTP basic auth; with `tls_dir` it serves HTTPS with
    a throw-away CA made there (`ca_file`), and with `client_certificates` it also requires
    a client certificate signed by that CA (`client_cert`, `client_key`).
    """

    def __init__(
        self,
        *,
        username: str | None = None,
        password: str | None = None,
        tls_dir: Path | None = None,
        client_certificates: bool = False,
        binary: Path = REGISTRY_BINARY,
    ) -> None:
        if (username is None) != (password is None):
            raise ValueError("basic auth needs both a username and a password")
        if client_certificates and tls_dir is None:
            raise ValueError("client certificates need TLS (tls_dir)")
        self.username, self.password, self.binary = username, password, binary
        self.ca_file: Path | None = None
        self.client_cert: Path | None = None
        self.client_key: Path | None = None
        self._server_cert: tuple[Path, Path] | None = None
        if tls_dir is not None:
            ca = Authority.create(tls_dir, "registry-ca")
            self.ca_file = ca.certificate_file
            self._server_cert = ca.issue(tls_dir, "registry", hosts=("127.0.0.1", "localhost"))
            if client_certificates:
                self.client_cert, self.client_key = ca.issue(
                    tls_dir, "registry-client", client=True
                )
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._output = ""

    @property
    def url(self) -> str:
        scheme = "https" if self._server_cert else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0, *, port: int | None = None) -> Self:
        """Start it on `port` (say, the port of a registry stopped before: a fresh, empty
        registry where the old one was), else on a free port."""
        if not self.binary.is_file():
            raise RegistryError(
                f"{self.binary} not found: build the local schema registry with "
                "`make schema-registry` (it needs Go 1.23+)"
            )
        for _ in range(1 if port else 3):  # a free port can be taken before it is bound
            self.port = port or free_port()
            self._spawn()
            try:
                up = self._wait_until_up(timeout)
            except RegistryError:
                self.stop()
                raise
            if up:
                return self
            self.stop()
        raise RegistryError(f"the schema registry did not start:\n{self.output()}")

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None
        if self._log is not None:
            self._output = self.output()
            self._log.close()
            self._log = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def output(self) -> str:
        """What the registry wrote, or wrote last time it ran (it logs errors only)."""
        if self._log is None:
            return self._output
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    def ssl_context(self) -> ssl.SSLContext | None:
        """A client context trusting the registry's CA, with the client certificate if any."""
        if self.ca_file is None:
            return None
        context = ssl.create_default_context(cafile=str(self.ca_file))
        if self.client_cert is not None and self.client_key is not None:
            context.load_cert_chain(self.client_cert, self.client_key)
        return context

    def authorization(self) -> dict[str, str]:
        """The basic-auth header (empty without auth)."""
        if self.username is None or self.password is None:
            return {}
        token = b64encode(f"{self.username}:{self.password}".encode()).decode()
        return {"Authorization": f"Basic {token}"}

    def confluent_config(self) -> dict[str, str]:
        """The configuration of confluent-kafka's `SchemaRegistryClient` for this registry."""
        config = {"url": self.url}
        if self.username is not None:
            config["basic.auth.user.info"] = f"{self.username}:{self.password}"
        if self.ca_file is not None:
            config["ssl.ca.location"] = str(self.ca_file)
        if self.client_cert is not None and self.client_key is not None:
            config["ssl.certificate.location"] = str(self.client_cert)
            config["ssl.key.location"] = str(self.client_key)
        return config

    def riverrun_env(self) -> dict[str, str]:
        """riverrun's settings for this registry, as environment variables."""
        env = {"RIVERRUN_SCHEMA_REGISTRY_URL": self.url}
        if self.username is not None and self.password is not None:
            env["RIVERRUN_SCHEMA_REGISTRY_USERNAME"] = self.username
            env["RIVERRUN_SCHEMA_REGISTRY_PASSWORD"] = self.password
        if self.ca_file is not None:
            env["RIVERRUN_SCHEMA_REGISTRY_CAFILE"] = str(self.ca_file)
        if self.client_cert is not None and self.client_key is not None:
            env["RIVERRUN_SCHEMA_REGISTRY_CERTFILE"] = str(self.client_cert)
            env["RIVERRUN_SCHEMA_REGISTRY_KEYFILE"] = str(self.client_key)
        return env

    def _spawn(self) -> None:
        command = [str(self.binary), "-addr", f"127.0.0.1:{self.port}"]
        if self._server_cert is not None:
            chain, key = self._server_cert
            command += ["-tls-cert", str(chain), "-tls-key", str(key)]
            if self.client_cert is not None:
                command += ["-tls-client-ca", str(self.ca_file)]
        # The credentials go through the environment: never on a command line `ps` shows.
        env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_BASIC_AUTH_")}
        if self.username is not None and self.password is not None:
            env["REGISTRY_BASIC_AUTH_USER"] = self.username
            env["REGISTRY_BASIC_AUTH_PASSWORD"] = self.password
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 (closed by stop())
        self._process = subprocess.Popen(
            command, env=env, stdout=self._log, stderr=subprocess.STDOUT
        )

    def _wait_until_up(self, timeout: float) -> bool:
        """True once it answers (404 for schema 1 of an empty registry); False if it exited."""
        assert self._process is not None
        request = urllib.request.Request(f"{self.url}/schemas/ids/1", headers=self.authorization())
        context = self.ssl_context()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                return False
            try:
                with urllib.request.urlopen(request, timeout=1, context=context):
                    return True
            except urllib.error.HTTPError:
                return True  # it answers (404 while empty)
            except OSError:
                time.sleep(0.02)
        raise RegistryError(
            f"the schema registry on {self.url} did not answer within {timeout} s:\n"
            + self.output()
        )
