"""A broker stopped and restarted in the middle of a replay: every event predicted once.

The worker's outputs are written by an idempotent producer, so a send retried after the
outage is written once even when it landed before (docs: Concepts > Guarantees). The test runs
against a broker of its own (started by this module with `riverrun kafka up` on ports of
its own and a cache directory of its own, never the shared one), which it kills in the
middle of a `riverrun replay` and starts again; the predictions topic is then read back
by an independent client (kafka-python) and counted by event id.
"""

import json
import os
import shutil
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from streams.settings import Settings
from tests.integration.conftest import Env, Replay, WorkerProcess, riverrun_cli
from tests.ports import free_port_pair

pytestmark = pytest.mark.integration

EVENTS = 30_000
RATE = 3_000  # events/s: a 10 s replay, the broker killed about a third of the way in
OUTAGE_SECONDS = 4.0


class OwnBroker:
    """A local broker on ports and in a cache directory of its own, driven by the CLI
    (`riverrun kafka up` / `down`) as a user drives theirs."""

    def __init__(self, root: Path) -> None:
        shared = Settings()  # the shared broker's jars: no second Maven resolve
        cache = root / "kafka"
        cache.mkdir(parents=True)
        (cache / "libs").symlink_to((shared.kafka_cache_dir / "libs").absolute())
        self.settings = Settings(kafka_port=free_port_pair(), kafka_cache_dir=cache)
        env = {k: v for k, v in os.environ.items() if not k.startswith("RIVERRUN_")}
        env.update(self.settings.as_environment())
        self.env = Env(self.settings, env, root)

    @property
    def bootstrap(self) -> str:
        return self.settings.bootstrap_servers

    def up(self) -> None:
        done = riverrun_cli(self.env, "kafka", "up", timeout=180)
        assert done.returncode == 0, f"the test's own broker did not start:\n{done.stderr}"

    def down(self) -> None:
        riverrun_cli(self.env, "kafka", "down", timeout=60)

    def crash(self) -> None:
        """SIGKILL, as a broker's machine or container dies: no controlled shutdown."""
        pid = int((self.settings.kafka_cache_dir / "kafka.pid").read_text())
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)
        pytest.fail(f"the test's broker (pid {pid}) did not die", pytrace=False)


@pytest.fixture(scope="module")
def own_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OwnBroker]:
    root = tmp_path_factory.mktemp("restart")
    broker = OwnBroker(root)
    broker.up()
    yield broker
    broker.down()
    shutil.rmtree(root / "kafka" / "data", ignore_errors=True)


def event_ids(messages: list) -> list[str]:  # type: ignore[type-arg]
    return [json.loads(m.value)["event_id"] for m in messages]


def wait_until(check: Callable[[], bool], timeout: float, worker: WorkerProcess) -> bool:
    """Whether `check()` came true within `timeout` s (polled each second) while the
    worker runs."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline or worker.process.poll() is not None:
            return False
        time.sleep(1.0)
    return True


def test_a_broker_restart_in_the_middle_of_a_replay_loses_nothing_and_duplicates_nothing(
    own_broker: OwnBroker, make_own_env: Callable[..., Env]
) -> None:
    env = make_own_env(models=["logreg"], topic_partitions=2)
    s = env.settings
    worker = env.start_worker()
    replay = Replay(
        env,
        *("--dataset", "clicks", "--model", "logreg", "--limit", str(EVENTS)),
        *("--rate", str(RATE), "--id-prefix", "r-", "--wait-seconds", "0", "--quiet"),
    )
    replay.start()
    assert wait_until(lambda: env.count(s.predictions_topic) >= EVENTS // 3, 60, worker), (
        f"no third of the events predicted:\n{worker.tail()}"
    )

    own_broker.crash()  # outputs in flight: sent, perhaps written, not acknowledged
    time.sleep(OUTAGE_SECONDS)
    own_broker.up()
    replay.finish()

    sent = set(event_ids(env.read_all(s.events_topic)))
    assert len(sent) == EVENTS, f"the replay wrote {len(sent)} of {EVENTS} events"
    # Every event predicted, or a minute without: then the figures below say what is missing.
    wait_until(lambda: sent <= set(event_ids(env.read_all(s.predictions_topic))), 60, worker)
    exited = worker.process.poll()  # None: the same process rode the outage out
    code = worker.stop()

    predicted = Counter(event_ids(env.read_all(s.predictions_topic)))
    missing = sent - set(predicted)
    duplicates = sum(n - 1 for n in predicted.values())
    figures = (
        f"broker killed and restarted in a {EVENTS}-event replay: {len(missing)} events never "
        f"predicted, {duplicates} duplicate predictions, worker exit {exited} (stop: {code})"
    )
    print(figures)
    assert exited is None and code == 0, f"{figures}\n{worker.tail()}"
    assert not missing and not duplicates, figures
    assert "Traceback" not in worker.log_path.read_text(errors="replace"), worker.tail(80)
