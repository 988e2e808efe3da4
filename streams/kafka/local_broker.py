"""A single-node Apache Kafka (KRaft) from the official jars, for development and tests.

`riverrun kafka up` resolves the broker's jars from Maven Central once (with the pom in
deploy/kafka, installed with the package as `streams.broker_files`), formats the storage
once, then starts the broker in the background and waits until it answers requests.
Later starts need no network.

Everything the broker needs lives in the cache directory:

    libs/              the jars, and .pom.sha256: the pom.xml they were resolved from
    data/              the broker's log.dirs (topics and the KRaft metadata log)
    cluster.id         the id the storage was formatted with
    server.properties  rendered from deploy/kafka/server.properties.template
    kafka.pid          the running broker's process id
    server.log         this run's output (server.log.1: the previous run's)
    kafka.lock         lets one `up` or `down` at a time change the broker
"""

import contextlib
import fcntl
import hashlib
import importlib.resources
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid
from base64 import urlsafe_b64encode
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Any

from kafka import KafkaAdminClient
from kafka.errors import KafkaError

from streams.settings import Settings

KAFKA_VERSION = "4.1.1"
MIN_JAVA = 17
JVM_OPTIONS = (
    "-Xms256m",
    "-Xmx512m",
    # kafka-server-start.sh's defaults
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-Djava.awt.headless=true",
)
NO_JAVA = (
    "java not found: riverrun needs a JDK 17+ to run the local Kafka broker; install one "
    "or set RIVERRUN_BROKER to an existing cluster"
)
NO_MAVEN = (
    "mvn not found: riverrun resolves the Kafka broker's jars from Maven Central once with "
    "Maven; install it (e.g. apt-get install maven) or set RIVERRUN_BROKER to an existing "
    "cluster"
)

#: The broker's files (pom.xml, server.properties.template, log4j2.yaml): deploy/kafka in
#: a checkout, the package data of `streams.broker_files` once installed.
BROKER_FILES = Path(str(importlib.resources.files("streams.broker_files")))

#: Brokers this process started, so that `down` reaps them (no zombies, no ResourceWarning).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


class LocalKafkaError(Exception):
    """A problem a person can act on; str(err) is one clear sentence saying what to do."""


def wait_until_ready(
    bootstrap: str,
    timeout: float,
    client_options: Mapping[str, Any] | None = None,
    described: str | None = None,
) -> None:
    """Return once the cluster at `bootstrap` lists its topics; raise LocalKafkaError if not.

    Works for any cluster (comma-separated `host:port` list); `client_options` are
    kafka-python's security arguments (`streams.kafka.security.kafka_options`), and
    `described` names the cluster in the error (default: `bootstrap`). Retries until
    `timeout` seconds have passed; makes at least one attempt.
    """
    deadline = time.monotonic() + timeout
    last_error = "no answer"
    while True:
        remaining = deadline - time.monotonic()
        if not _accepts_connections(bootstrap, max(0.1, min(1.0, remaining))):
            last_error = "connection refused"
        else:
            try:
                _list_topics(bootstrap, max(0.5, remaining), client_options or {})
                return
            except (KafkaError, OSError, ValueError) as err:
                name = type(err).__name__
                last_error = str(err) if str(err).startswith(name) else f"{name}: {err}"
        if time.monotonic() >= deadline:
            break
        time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
    raise LocalKafkaError(
        f"no Kafka broker answers at {described or bootstrap} within {timeout:g} s ({last_error})"
    )


def _answers(bootstrap: str, timeout: float = 3.0) -> bool:
    try:
        wait_until_ready(bootstrap, timeout)
    except LocalKafkaError:
        return False
    return True


def _list_topics(bootstrap: str, budget: float, client_options: Mapping[str, Any]) -> None:
    """One metadata round trip with kafka-python, all of it within about `budget` seconds."""
    budget_ms = int(budget * 1000)
    admin = KafkaAdminClient(
        bootstrap_servers=bootstrap,
        client_id="riverrun-probe",
        bootstrap_timeout_ms=budget_ms,  # kafka-python 3 bootstraps in __init__ (30 s default)
        request_timeout_ms=max(1000, min(budget_ms, 10_000)),
        **client_options,
    )
    try:
        admin.list_topics()
    finally:
        admin.close()


def _accepts_connections(bootstrap: str, timeout: float) -> bool:
    """Whether one of the servers in `bootstrap` accepts a TCP connection.

    A cheap check before kafka-python, which logs a warning for every refused attempt.
    """
    for server in bootstrap.split(","):
        host, _, port = server.strip().rpartition(":")
        if not host or not port.isdigit():
            return True  # a form we do not parse: let kafka-python judge
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
                return True
        except OSError:
            continue
    return False


@dataclass(frozen=True)
class SaslSslListener:
    """A listener that authenticates clients with SCRAM-SHA-512 over TLS, as managed
    clusters do: to test riverrun's security settings against a real broker.

    `keystore` is a PEM file holding the broker's private key (unencrypted PKCS#8) and
    its certificate chain; the certificate must name `host` for hostname verification.
    `users` (name, password) are created when the storage is formatted, that is on the
    first start of a cache directory only.
    """

    port: int
    keystore: Path
    users: tuple[tuple[str, str], ...]
    mechanism: str = "SCRAM-SHA-512"

    def __repr__(self) -> str:  # never the passwords
        names = ", ".join(name for name, _ in self.users)
        return f"SaslSslListener(port={self.port}, keystore={self.keystore}, users=[{names}])"


@dataclass(frozen=True)
class LocalKafka:
    """The local broker: jars, data, config, pid and log all live in `cache_dir`."""

    deploy_dir: Path  # pom.xml, server.properties.template, log4j2.yaml: BROKER_FILES
    cache_dir: Path  # the broker's working directory: RIVERRUN_KAFKA_CACHE_DIR
    port: int = 19092  # the broker's listener; the controller listens on port + 1
    host: str = "127.0.0.1"
    secure: SaslSslListener | None = None  # a SASL_SSL listener besides PLAINTEXT

    @classmethod
    def for_settings(cls, settings: Settings) -> "LocalKafka":
        """The local broker of `settings` (RIVERRUN_KAFKA_CACHE_DIR, RIVERRUN_KAFKA_PORT)."""
        return cls(BROKER_FILES, settings.kafka_cache_dir, settings.kafka_port)

    # --- paths ---------------------------------------------------------------------------
    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def controller_port(self) -> int:
        return self.port + 1

    @property
    def secure_bootstrap(self) -> str | None:
        """The SASL_SSL listener's address, if there is one."""
        return f"{self.host}:{self.secure.port}" if self.secure else None

    @property
    def root(self) -> Path:
        """The cache directory as an absolute path (the broker runs with it as cwd)."""
        return self.cache_dir.absolute()

    @property
    def libs(self) -> Path:
        return self.root / "libs"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def config_path(self) -> Path:
        return self.root / "server.properties"

    @property
    def log_path(self) -> Path:
        return self.root / "server.log"

    @property
    def pid_path(self) -> Path:
        return self.root / "kafka.pid"

    @property
    def cluster_id_path(self) -> Path:
        return self.root / "cluster.id"

    @property
    def log4j_config(self) -> Path:
        return self.deploy_dir.absolute() / "log4j2.yaml"

    # --- set-up --------------------------------------------------------------------------
    def ensure_jars(self) -> Path:
        """Resolve the broker's jars into `libs` once per pom.xml; later calls need no network."""
        with self._lock():
            return self._ensure_jars()

    def _ensure_jars(self) -> Path:
        pom = self.deploy_dir.absolute() / "pom.xml"
        try:
            digest = hashlib.sha256(pom.read_bytes()).hexdigest()
        except FileNotFoundError:
            raise LocalKafkaError(
                f"{pom} not found: riverrun's broker files are missing; reinstall riverrun "
                "(or pass a directory holding pom.xml as deploy_dir)"
            ) from None
        stamp = self.libs / ".pom.sha256"
        if stamp.is_file() and stamp.read_text().strip() == digest:
            return self.libs
        mvn = shutil.which("mvn")
        if mvn is None:
            raise LocalKafkaError(NO_MAVEN)
        # Resolve into a staging directory, so that a failure leaves no half-filled libs.
        staging = self.root / "libs.partial"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        done = subprocess.run(
            [
                mvn,
                "-q",
                "-B",
                "-Dstyle.color=never",
                "-f",
                str(pom),
                "dependency:copy-dependencies",
                f"-DoutputDirectory={staging}",
                "-DincludeScope=runtime",
            ],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
        )
        output = done.stdout + done.stderr
        (self.root / "mvn.log").write_text(output)
        if done.returncode != 0:
            shutil.rmtree(staging, ignore_errors=True)
            raise LocalKafkaError(
                f"Maven could not resolve Kafka's jars with {pom}: check that Maven Central "
                f"(or your Maven mirror) is reachable; full output in {self.root / 'mvn.log'}:\n"
                + _maven_error(output)
            )
        (staging / ".pom.sha256").write_text(digest)
        shutil.rmtree(self.libs, ignore_errors=True)
        staging.rename(self.libs)
        return self.libs

    def render_config(self) -> Path:
        """Write server.properties for this host, port and cache directory."""
        template = Template((self.deploy_dir / "server.properties.template").read_text())
        self.root.mkdir(parents=True, exist_ok=True)
        secure = self.secure
        self.config_path.write_text(
            template.substitute(
                host=self.host,
                port=self.port,
                controller_port=self.controller_port,
                data_dir=self.data_dir,
                secure_listener=f",SASL_SSL://{self.host}:{secure.port}" if secure else "",
                secure_config=_secure_config(secure) if secure else "# none",
            )
        )
        return self.config_path

    def cluster_id(self) -> str:
        """The cluster id of the storage: stored in cluster.id, generated the first time."""
        if self.cluster_id_path.is_file():
            return self.cluster_id_path.read_text().strip()
        cluster_id = _formatted_cluster_id(self.data_dir) or _new_cluster_id()
        self.root.mkdir(parents=True, exist_ok=True)
        self.cluster_id_path.write_text(cluster_id + "\n")
        return cluster_id

    def _format_storage(self, java: str, config: Path) -> None:
        """Format the data directory once (KRaft needs a cluster id and meta.properties)."""
        cluster_id = self.cluster_id()  # stored (or recovered from meta.properties) first
        if (self.data_dir / "meta.properties").exists():
            return
        # With controller.quorum.voters in the config the voters are static: no --standalone.
        users = []
        if self.secure is not None:
            for name, password in self.secure.users:
                scram = f"{self.secure.mechanism}=[name={name},password={password}]"
                users += ["--add-scram", scram]
        done = subprocess.run(
            [
                java,
                f"-Dlog4j2.configurationFile={self.log4j_config}",
                "-cp",
                str(self.libs / "*"),
                "kafka.tools.StorageTool",
                "format",
                "-t",
                cluster_id,
                "-c",
                str(config),
                "--ignore-formatted",
                *users,
            ],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
        )
        if done.returncode != 0:
            output = _tail(done.stdout + done.stderr, 15)
            for _, password in self.secure.users if self.secure else ():
                output = output.replace(password, "***")
            raise LocalKafkaError(
                f"formatting Kafka's storage in {self.data_dir} failed; delete that directory "
                f"and run `riverrun kafka up` again:\n{output}"
            )

    # --- processes -----------------------------------------------------------------------
    def _is_our_broker(self, pid: int) -> bool:
        """Whether `pid` is a Kafka broker started with this cache directory's config."""
        args = _cmdline(pid)
        return args is not None and "kafka.Kafka" in args and str(self.config_path) in args

    def _pid(self) -> int | None:
        """The pid of our running broker, or None. Removes a stale pid file.

        A pid file is stale when its process is gone or is not our broker (pids are reused).
        Without a pid file, a broker running with our config is found in /proc and adopted.
        """
        try:
            pid: int | None = int(self.pid_path.read_text().strip())
        except FileNotFoundError:
            pid = None
        except ValueError:
            self.pid_path.unlink(missing_ok=True)
            pid = None
        if pid is not None:
            if self._is_our_broker(pid):
                return pid
            self.pid_path.unlink(missing_ok=True)
        pid = self._find_broker()
        if pid is not None:
            self.pid_path.write_text(f"{pid}\n")
        return pid

    def _find_broker(self) -> int | None:
        proc = Path("/proc")
        if not proc.is_dir():
            return None
        for entry in proc.iterdir():
            if entry.name.isdigit() and self._is_our_broker(int(entry.name)):
                return int(entry.name)
        return None

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        """Serialise `up`, `down` and jar resolution across processes (e.g. two test runs)."""
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / "kafka.lock").open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    # --- lifecycle -----------------------------------------------------------------------
    def running_pid(self) -> int | None:
        """Our broker's process id while it runs."""
        return self._pid()

    def is_running(self) -> bool:
        """Whether our broker's process runs (answering or not)."""
        return self._pid() is not None

    def status(self) -> tuple[bool, str]:
        """(running and answering, a one-line message)."""
        pid = self._pid()
        if pid is None:
            return False, "local Kafka is not running (start it with `riverrun kafka up`)"
        try:
            wait_until_ready(self.bootstrap, timeout=5)
        except LocalKafkaError as err:
            return False, (
                f"local Kafka (pid {pid}) runs but does not answer ({err}); see {self.log_path}"
            )
        return True, (
            f"Kafka {KAFKA_VERSION} running on {self.bootstrap} (pid {pid}, log: {self.log_path})"
        )

    def up(self, timeout: float = 60.0) -> str:
        """Start the broker unless it runs; return once it answers requests.

        `timeout` bounds the wait for the started broker to answer (not the one-time jar
        resolution before it).
        """
        with self._lock():
            pid = self._pid()
            if pid is not None:
                try:
                    wait_until_ready(self.bootstrap, timeout)
                except LocalKafkaError as err:
                    raise LocalKafkaError(
                        f"local Kafka (pid {pid}) runs but does not answer ({err}); see "
                        f"{self.log_path}, or restart it with `riverrun kafka down` and "
                        "`riverrun kafka up`"
                    ) from None
                return (
                    f"Kafka {KAFKA_VERSION} already running on {self.bootstrap} "
                    f"(pid {pid}, log: {self.log_path})"
                )
            java = _java()
            self._ensure_jars()
            self._refuse_taken_ports()
            config = self.render_config()
            self._format_storage(java, config)
            return self._start(java, config, timeout)

    def _start(self, java: str, config: Path, timeout: float) -> str:
        command = [
            java,
            *JVM_OPTIONS,
            f"-Dlog4j2.configurationFile={self.log4j_config}",
            "-cp",
            str(self.libs / "*"),
            "kafka.Kafka",
            str(config),
        ]
        if self.log_path.exists():
            self.log_path.replace(self.log_path.with_name("server.log.1"))
        with self.log_path.open("wb") as log:
            log.write(f"# riverrun: {' '.join(command)}\n".encode())
            log.flush()
            process = subprocess.Popen(
                command,
                cwd=self.root,  # where a JVM crash report (hs_err_pid*.log) would land
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # detached: outlives `riverrun kafka up`, no Ctrl-C
            )
        _CHILDREN[process.pid] = process
        self.pid_path.write_text(f"{process.pid}\n")
        started = time.monotonic()
        deadline = started + timeout
        while True:
            if process.poll() is not None:
                _CHILDREN.pop(process.pid, None)
                self.pid_path.unlink(missing_ok=True)
                raise LocalKafkaError(
                    f"Kafka exited with code {process.returncode} while starting; see "
                    f"{self.log_path}:\n{self._log_tail()}"
                )
            try:
                wait_until_ready(self.bootstrap, min(2.0, max(0.0, deadline - time.monotonic())))
            except LocalKafkaError:
                if time.monotonic() < deadline:
                    continue
                self._stop(process.pid, timeout=10)
                raise LocalKafkaError(
                    f"Kafka did not answer on {self.bootstrap} within {timeout:g} s and was "
                    f"stopped; see {self.log_path}:\n{self._log_tail()}"
                ) from None
            return (
                f"Kafka {KAFKA_VERSION} listening on {self.bootstrap} (pid {process.pid}, "
                f"ready in {time.monotonic() - started:.1f} s, log: {self.log_path})"
            )

    def down(self, timeout: float = 30.0) -> str:
        """Stop the broker cleanly: SIGTERM (controlled shutdown), SIGKILL after `timeout`."""
        with self._lock():
            pid = self._pid()
            if pid is None:
                return "local Kafka is not running"
            return self._stop(pid, timeout)

    def _stop(self, pid: int, timeout: float) -> str:
        started = time.monotonic()
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            self.pid_path.unlink(missing_ok=True)
            return "local Kafka is not running"
        if _wait_exit(pid, timeout):
            how = "stopped"
        else:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            _wait_exit(pid, 10)
            how = f"did not stop within {timeout:g} s and was killed"
        self.pid_path.unlink(missing_ok=True)
        return f"Kafka (pid {pid}) {how} after {time.monotonic() - started:.1f} s"

    def _refuse_taken_ports(self) -> None:
        """Fail clearly when something else already listens on our ports."""
        ports = (self.port, self.controller_port) + ((self.secure.port,) if self.secure else ())
        for port in ports:
            address = f"{self.host}:{port}"
            if not _accepts_connections(address, 1.0):
                continue
            if port == self.port and _answers(address):
                raise LocalKafkaError(
                    f"another Kafka broker (not the one in {self.root}) answers on "
                    f"{address}: stop it, use it with RIVERRUN_BROKER={address}, or choose "
                    "another port with RIVERRUN_KAFKA_PORT"
                )
            raise LocalKafkaError(
                f"port {port} on {self.host} is taken by another program (the local broker "
                f"needs ports {self.port} and {self.controller_port}): stop it, or choose "
                "another port with RIVERRUN_KAFKA_PORT"
            )

    def _log_tail(self, lines: int = 12) -> str:
        """The log's last ERROR lines (a stack trace can bury them) and its last lines."""
        try:
            log = self.log_path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return "(no log)"
        errors = []
        for number, line in enumerate(log):
            if "] ERROR " in line or "] FATAL " in line:
                # with the exception it logged, on the next line
                after = log[number + 1] if number + 1 < len(log) else "["
                cause = "" if after.startswith(("[", "\t")) else f"\n    {_shorten(after)}"
                errors.append(_shorten(line) + cause)
        tail = [_shorten(line) for line in log[-lines:]]
        if not errors:
            return "\n".join(tail)
        return "\n".join(["last errors:", *errors[-3:], "last lines:", *tail])


def _secure_config(listener: SaslSslListener) -> str:
    """server.properties lines of a SASL_SSL listener."""
    name = "listener.name.sasl_ssl"
    mechanism = listener.mechanism.lower()
    return "\n".join(
        [
            f"{name}.sasl.enabled.mechanisms={listener.mechanism}",
            f"{name}.{mechanism}.sasl.jaas.config="
            "org.apache.kafka.common.security.scram.ScramLoginModule required;",
            f"{name}.ssl.keystore.type=PEM",
            f"{name}.ssl.keystore.location={listener.keystore.absolute()}",
        ]
    )


def _java() -> str:
    """The java executable on PATH, checked to be version 17 or later."""
    java = shutil.which("java")
    if java is None:
        raise LocalKafkaError(NO_JAVA)
    try:
        done = subprocess.run(
            [java, "-version"],
            capture_output=True,
            text=True,
            timeout=30,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired):
        return java  # starting the broker will say what is wrong
    version = java_major_version(done.stderr + done.stdout)
    if version is not None and version < MIN_JAVA:
        raise LocalKafkaError(
            f"{java} is Java {version}, but Kafka {KAFKA_VERSION} needs Java {MIN_JAVA}+; "
            "put a newer JDK first on PATH or set RIVERRUN_BROKER to an existing cluster"
        )
    return java


def java_major_version(version_output: str) -> int | None:
    """The major version in `java -version`'s output ("1.8.0_402" is 8), or None."""
    found = re.search(r'version "(\d+)(?:\.(\d+))?', version_output)
    if found is None:
        return None
    major = int(found.group(1))
    return int(found.group(2) or 0) if major == 1 else major


def _new_cluster_id() -> str:
    """A random cluster id as Kafka's StorageTool makes it: 22 url-safe base64 characters."""
    while True:
        cluster_id = urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):  # would be read as an option (Kafka avoids it too)
            return cluster_id


def _formatted_cluster_id(data_dir: Path) -> str | None:
    """The cluster id an already formatted data directory has, if any."""
    try:
        text = (data_dir / "meta.properties").read_text()
    except FileNotFoundError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "cluster.id":
            return value.strip()
    return None


def _cmdline(pid: int) -> list[str] | None:
    """The arguments process `pid` runs with, or None when there is no such process."""
    if Path("/proc").is_dir():
        try:
            raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:  # gone, or not ours to read
            return None
        return [arg.decode(errors="replace") for arg in raw.split(b"\0") if arg] or None
    done = subprocess.run(  # macOS: no /proc
        ["ps", "-ww", "-o", "command=", "-p", str(pid)], capture_output=True, text=True
    )
    return done.stdout.split() if done.returncode == 0 and done.stdout.strip() else None


def _wait_exit(pid: int, timeout: float) -> bool:
    """Wait up to `timeout` seconds for `pid` to exit; whether it did."""
    child = _CHILDREN.get(pid)
    if child is not None:
        try:
            child.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        del _CHILDREN[pid]
        return True
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped by its parent) is dead for our purposes.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


def _tail(text: str, lines: int) -> str:
    return "\n".join(text.splitlines()[-lines:])


def _shorten(line: str, limit: int = 400) -> str:
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _maven_error(output: str) -> str:
    """Maven's first error line (the rest is boilerplate), else its last lines."""
    output = re.sub(r"\x1b\[[0-9;]*m", "", output)  # colour codes, despite -B
    for line in output.splitlines():
        if line.startswith("[ERROR]") and line[len("[ERROR]") :].strip():
            return _shorten(line)
    return _tail(output, 15)
