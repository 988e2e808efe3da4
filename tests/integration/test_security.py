"""riverrun against a real broker with authentication on: SCRAM-SHA-512 over SASL_SSL.

The module starts its own broker (the project's `LocalKafka` with a SASL_SSL listener)
with a CA and a broker certificate made for this session; every client of these tests
connects through that listener only.
"""

import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from schemas import Prediction
from streams.cli.replay import dataset_events, encode
from streams.kafka.local_broker import LocalKafka, LocalKafkaError, SaslSslListener
from streams.settings import Settings
from tests.integration.conftest import Env, env_factory
from tests.ports import free_port, free_port_pair
from tests.tls import Authority, keystore

USER = "riverrun-test"
PASSWORD = f"pw-{secrets.token_hex(12)}"  # searched for in every output below


class SecureCluster:
    """The secured broker and the files a client needs to trust it."""

    def __init__(self, root: Path, main: LocalKafka) -> None:
        certs = root / "certs"
        self.ca = Authority.create(certs, "test-ca")
        self.other_ca = Authority.create(certs, "other-ca")
        chain, key = self.ca.issue(certs, "broker", hosts=("127.0.0.1", "localhost"))
        (root / "kafka").mkdir(parents=True)
        (root / "kafka" / "libs").symlink_to(main.ensure_jars().absolute())  # no second resolve
        self.kafka = LocalKafka(
            main.deploy_dir,
            root / "kafka",
            port=free_port_pair(),
            secure=SaslSslListener(
                free_port(), keystore(certs, "broker", chain, key), ((USER, PASSWORD),)
            ),
        )
        assert self.kafka.secure_bootstrap is not None
        self.bootstrap: str = self.kafka.secure_bootstrap

    def client_settings(self) -> dict[str, object]:
        """What every test's settings say to connect through the SASL_SSL listener."""
        return {
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_username": USER,
            "sasl_password": PASSWORD,
            "ssl_cafile": self.ca.certificate_file,
        }


@pytest.fixture(scope="module")
def secure_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureCluster]:
    root = tmp_path_factory.mktemp("secure")
    cluster = SecureCluster(root, LocalKafka.for_settings(Settings()))
    try:
        cluster.kafka.up(timeout=120)
    except LocalKafkaError as err:
        pytest.fail(f"the SASL_SSL broker could not start: {err}", pytrace=False)
    yield cluster
    cluster.kafka.down()
    shutil.rmtree(root / "kafka" / "data", ignore_errors=True)


@pytest.fixture
def make_secure_env(secure_cluster: SecureCluster, tmp_path: Path) -> Iterator[Callable[..., Env]]:
    yield from env_factory(secure_cluster.bootstrap, tmp_path, secure_cluster.client_settings())


def riverrun(
    env: dict[str, str], *args: str, timeout: float = 120
) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "streams.cli.main", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return done, time.monotonic() - started


def phishing(n: int, prefix: str = "") -> list:  # type: ignore[type-arg]
    return list(dataset_events("phishing", limit=n, model=None, seed=42, id_prefix=prefix))


def test_a_worker_serves_learns_checkpoints_and_restores_over_sasl_ssl(make_secure_env) -> None:  # type: ignore[no-untyped-def]
    env = make_secure_env(checkpoint_every_events=200, metrics_every_events=100)
    events = phishing(600)
    first, second = events[:400], events[400:]
    worker = env.start_worker()
    env.produce([encode(e) for e in first])
    predictions = [
        Prediction.model_validate_json(m.value)
        for m in env.read(env.settings.predictions_topic, len(first))
    ]
    assert [p.event_id for p in predictions] == [e.event_id for e in first]
    env.read(env.settings.metrics_topic, 1)  # a metrics report went out too
    assert worker.stop() == 0, worker.tail()
    assert env.count(env.settings.checkpoints_topic) > 0

    # A new worker restores the model from its checkpoint: it goes on counting updates.
    restarted = env.start_worker()
    env.produce([encode(e) for e in second])
    messages = env.read(env.settings.predictions_topic, len(events))
    later = [Prediction.model_validate_json(m.value) for m in messages[len(first) :]]
    assert [p.event_id for p in later] == [e.event_id for e in second]
    assert [p.model_updates for p in later] == list(range(len(first), len(events)))
    assert restarted.stop() == 0, restarted.tail()
    for process in env.workers:
        assert PASSWORD not in process.log_path.read_text(errors="replace")


def test_replay_and_tail_over_sasl_ssl(make_secure_env) -> None:  # type: ignore[no-untyped-def]
    env = make_secure_env()
    replayed, _ = riverrun(env.env, "replay", "--dataset", "phishing", "--limit", "50", "--quiet")
    assert replayed.returncode == 0, replayed.stderr
    assert "replayed 50 events" in replayed.stdout
    tailed, _ = riverrun(
        env.env, "tail", env.settings.events_topic, "--from-beginning", "--limit", "50"
    )
    assert tailed.returncode == 0, tailed.stderr
    keys = [line.split("\t")[0] for line in tailed.stdout.splitlines()]
    assert keys == [e.event_id for e in phishing(50)]
    for done in (replayed, tailed):
        assert PASSWORD not in done.stdout + done.stderr


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"RIVERRUN_SASL_PASSWORD": f"{PASSWORD}-wrong"}, "refused the credentials"),
        ("other_ca", "not signed by a trusted CA"),
    ],
    ids=["wrong-password", "untrusted-ca"],
)
def test_a_worker_that_cannot_authenticate_exits_at_once_with_one_sentence(
    make_secure_env, secure_cluster: SecureCluster, change: object, expected: str
) -> None:  # type: ignore[no-untyped-def]
    env = make_secure_env()
    variables = dict(env.env)
    if change == "other_ca":
        variables["RIVERRUN_SSL_CAFILE"] = str(secure_cluster.other_ca.certificate_file)
    else:
        variables.update(change)  # type: ignore[call-overload]
    done, seconds = riverrun(variables, "worker", timeout=60)
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert seconds < 30, f"took {seconds:.1f} s"
    assert "Traceback" not in output
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    for part in (secure_cluster.bootstrap, "SASL_SSL", "SCRAM-SHA-512", expected):
        assert part in lines[0], lines[0]
    assert PASSWORD not in output
