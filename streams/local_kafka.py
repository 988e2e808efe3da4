"""A single-node Apache Kafka (KRaft) from the official jars, for development and tests.

`riverrun kafka up` resolves the broker's jars from Maven Central once (with the pom in
deploy/kafka), formats the storage once, then starts the broker in the background and
waits until it answers. Later starts need no network.
"""

import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import time
import uuid
from base64 import urlsafe_b64encode
from dataclasses import dataclass
from pathlib import Path
from string import Template

from kafka import KafkaAdminClient
from kafka.errors import KafkaError

KAFKA_VERSION = "4.1.1"
NO_JAVA = (
    "java not found: riverrun needs a JDK 17+ to run the local Kafka broker; install one "
    "or set RIVERRUN_BROKER to an existing cluster"
)
NO_MAVEN = (
    "mvn not found: riverrun resolves the Kafka broker's jars from Maven Central with "
    "Maven; install it (e.g. apt-get install maven) or set RIVERRUN_BROKER to an existing cluster"
)


class LocalKafkaError(Exception):
    """A problem a person can act on; the message says what to do."""


def wait_until_ready(bootstrap: str, timeout: float) -> None:
    """Return once the cluster at `bootstrap` answers a metadata request."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            admin = KafkaAdminClient(
                bootstrap_servers=bootstrap,
                client_id="riverrun-probe",
                request_timeout_ms=max(1000, int(min(5.0, timeout) * 1000)),
            )
        except (KafkaError, OSError, ValueError) as err:
            last_error = err
        else:
            try:
                admin.list_topics()
                return
            except (KafkaError, OSError) as err:
                last_error = err
            finally:
                admin.close()
        time.sleep(0.25)
    raise LocalKafkaError(
        f"no Kafka broker answers at {bootstrap} after {timeout:.0f} s ({last_error})"
    )


@dataclass(frozen=True)
class LocalKafka:
    """The local broker: jars, data, config, pid and log all live in `cache_dir`."""

    deploy_dir: Path
    cache_dir: Path
    port: int = 19092
    host: str = "127.0.0.1"

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def libs(self) -> Path:
        return self.cache_dir / "libs"

    @property
    def log_path(self) -> Path:
        return self.cache_dir / "server.log"

    @property
    def pid_path(self) -> Path:
        return self.cache_dir / "kafka.pid"

    # --- set-up --------------------------------------------------------------------------
    def ensure_jars(self) -> Path:
        """Resolve the broker's jars once per pom.xml; later calls need no network."""
        pom = self.deploy_dir / "pom.xml"
        digest = hashlib.sha256(pom.read_bytes()).hexdigest()
        stamp = self.libs / ".pom.sha256"
        if stamp.exists() and stamp.read_text() == digest:
            return self.libs
        mvn = shutil.which("mvn")
        if mvn is None:
            raise LocalKafkaError(NO_MAVEN)
        if self.libs.exists():
            shutil.rmtree(self.libs)
        self.libs.mkdir(parents=True)
        done = subprocess.run(
            [mvn, "-q", "-B", "-f", str(pom), "dependency:copy-dependencies",
             f"-DoutputDirectory={self.libs}", "-DincludeScope=runtime"],
            capture_output=True, text=True,
        )  # fmt: skip
        if done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).splitlines()[-15:])
            raise LocalKafkaError(
                f"Maven could not resolve Kafka {KAFKA_VERSION}'s jars from Maven Central "
                f"(is the network or a Maven mirror reachable?):\n{tail}"
            )
        stamp.write_text(digest)
        return self.libs

    def _java(self) -> str:
        java = shutil.which("java")
        if java is None:
            raise LocalKafkaError(NO_JAVA)
        return java

    def render_config(self) -> Path:
        """Write server.properties for this port and cache directory."""
        template = Template((self.deploy_dir / "server.properties.template").read_text())
        config = self.cache_dir / "server.properties"
        config.write_text(
            template.substitute(
                host=self.host,
                port=self.port,
                controller_port=self.port + 1,
                data_dir=self.cache_dir / "data",
            )
        )
        return config

    def _format_storage(self, java: str, config: Path) -> None:
        """Format the data directory once (KRaft needs a cluster id and a meta.properties)."""
        data = self.cache_dir / "data"
        if (data / "meta.properties").exists():
            return
        cluster_id = urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        done = subprocess.run(
            [java, "-cp", f"{self.libs}/*", "kafka.tools.StorageTool", "format",
             "-t", cluster_id, "-c", str(config), "--ignore-formatted"],
            capture_output=True, text=True,
        )  # fmt: skip
        if done.returncode != 0:
            raise LocalKafkaError(
                f"formatting Kafka's storage in {data} failed: {done.stdout}{done.stderr}"
                f"; delete {data} and run `riverrun kafka up` again"
            )

    # --- lifecycle -----------------------------------------------------------------------
    def _pid(self) -> int | None:
        """The pid of our running broker, or None (a stale pid file is removed)."""
        try:
            pid = int(self.pid_path.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except FileNotFoundError:
            cmdline = []
        if b"kafka.Kafka" not in cmdline:
            self.pid_path.unlink(missing_ok=True)
            return None
        return pid

    def is_running(self) -> bool:
        return self._pid() is not None

    def status(self) -> tuple[bool, str]:
        """(running and answering, a one-line message)."""
        pid = self._pid()
        if pid is None:
            return False, "local Kafka is not running (start it with `riverrun kafka up`)"
        try:
            wait_until_ready(self.bootstrap, timeout=5)
        except LocalKafkaError:
            return False, f"local Kafka (pid {pid}) runs but does not answer; see {self.log_path}"
        return True, f"local Kafka {KAFKA_VERSION} running (pid {pid}) on {self.bootstrap}"

    def up(self, timeout: float = 60.0) -> str:
        """Start the broker unless it runs; return once it answers requests."""
        if self.is_running():
            wait_until_ready(self.bootstrap, timeout)
            return f"local Kafka already running on {self.bootstrap}"
        java = self._java()
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self.ensure_jars()
        self._refuse_taken_port()
        config = self.render_config()
        self._format_storage(java, config)
        log4j = self.deploy_dir / "log4j2.yaml"
        with self.log_path.open("ab") as log:
            process = subprocess.Popen(
                [java, "-Xms256m", "-Xmx768m", "-XX:+UseG1GC",
                 f"-Dlog4j2.configurationFile={log4j}", "-Dkafka.logs.dir=" + str(self.cache_dir),
                 "-cp", f"{self.libs}/*", "kafka.Kafka", str(config)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )  # fmt: skip
        self.pid_path.write_text(str(process.pid))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                self.pid_path.unlink(missing_ok=True)
                raise LocalKafkaError(
                    f"Kafka exited with code {process.returncode} while starting; "
                    f"see {self.log_path}:\n{self._log_tail()}"
                )
            try:
                wait_until_ready(self.bootstrap, timeout=2)
            except LocalKafkaError:
                continue
            return (
                f"local Kafka {KAFKA_VERSION} listening on {self.bootstrap} (log: {self.log_path})"
            )
        self.down()
        raise LocalKafkaError(
            f"Kafka did not answer on {self.bootstrap} within {timeout:.0f} s; "
            f"see {self.log_path}:\n{self._log_tail()}"
        )

    def down(self, timeout: float = 30.0) -> str:
        """Stop the broker cleanly (SIGTERM, then SIGKILL after `timeout`)."""
        pid = self._pid()
        if pid is None:
            return "local Kafka is not running"
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.1)
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.pid_path.unlink(missing_ok=True)
        return f"local Kafka (pid {pid}) stopped"

    def _refuse_taken_port(self) -> None:
        import socket

        for port in (self.port, self.port + 1):
            with socket.socket() as s:
                if s.connect_ex((self.host, port)) == 0:
                    raise LocalKafkaError(
                        f"port {port} on {self.host} is taken by another program: stop it, or "
                        "choose another port with RIVERRUN_KAFKA_PORT (the controller uses "
                        "port + 1)"
                    )

    def _log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie child of ours is dead for our purposes.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"
