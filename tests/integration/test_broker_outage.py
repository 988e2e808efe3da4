"""A broker outage of over 20 s, told and not hidden: a worker against a broker of its own
(started by this module, never the shared one), which the test stops and starts again.

During the outage /readyz names it (and stays 200: predictions go on), /readyz/broker
answers 503, /v1/events answers 503 within its timeout (and the event is never written
later), /v1 predictions are answered from memory marked stalled, and the worker's log has
a handful of lines; once the broker is back the outage's last line is logged and the
worker learns again.
"""

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from schemas import InputEvent, Prediction
from streams.cli.replay import dataset_events, encode
from streams.http.server import STREAM
from streams.kafka.local_broker import LocalKafka, LocalKafkaError
from streams.settings import Settings
from tests.integration.conftest import Env
from tests.ports import free_port_pair

OUTAGE_SECONDS = 20.0
#: The log lines a 20 s outage may add: its first line, a few the group or the stop may
#: write around it; not the clients' hundreds of retry errors a second.
MAX_OUTAGE_LINES = 20


@pytest.fixture(scope="module")
def own_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    root = tmp_path_factory.mktemp("outage")
    main = LocalKafka.for_settings(Settings())
    (root / "kafka").mkdir()
    (root / "kafka" / "libs").symlink_to(main.ensure_jars().absolute())  # no second resolve
    kafka = LocalKafka(main.deploy_dir, root / "kafka", port=free_port_pair())
    try:
        kafka.up(timeout=120)
    except LocalKafkaError as err:
        pytest.fail(f"the test's own broker could not start: {err}", pytrace=False)
    yield kafka
    kafka.down()
    shutil.rmtree(root / "kafka" / "data", ignore_errors=True)


def call(url: str, body: Any = None, timeout: float = 15.0) -> tuple[int, Any, dict[str, str]]:
    """(status, JSON answer, headers) of a POST (GET without a body), as a client with a
    15 s timeout sees it."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.status, json.loads(answer.read()), dict(answer.headers)
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read()), dict(err.headers)


def until(check: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    """The first true value of `check()`, polled every 0.2 s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            found = check()
        except (urllib.error.URLError, ConnectionError):
            found = None  # not listening yet
        if found:
            return found
        time.sleep(0.2)
    pytest.fail(f"{what}: not within {timeout} s", pytrace=False)


def test_an_outage_is_told_predictions_go_on_and_events_are_refused_at_once(
    own_broker: LocalKafka, make_own_env: Callable[..., Env]
) -> None:
    env = make_own_env()
    s = env.settings
    worker = env.start_worker()
    health = f"http://127.0.0.1:{worker.metrics_port}"
    api = f"http://127.0.0.1:{worker.api_port}"
    events = list(dataset_events("phishing", limit=40, model=None, seed=42, id_prefix="o-"))
    env.produce([encode(e) for e in events])
    env.read(s.predictions_topic, len(events))
    ask = {"key": events[0].key, "features": events[0].features}
    until(lambda: call(f"{api}/v1/models/logreg/predict", ask)[0] == 200, "a first answer")
    status, ready, _ = call(f"{health}/readyz")
    assert status == 200 and ready["broker"]["reachable"] is True, ready

    lines_before = len(worker.log_path.read_text(errors="replace").splitlines())
    stopped = time.monotonic()
    own_broker.down()

    # /readyz names the outage and stays 200; the second probe turns 503.
    ready = until(
        lambda: (lambda r: r[1] if r[1]["broker"]["reachable"] is False else None)(
            call(f"{health}/readyz")
        ),
        "/readyz naming the outage",
        timeout=15,
    )
    assert {"since", "seconds", "error"} <= set(ready["broker"]), ready
    assert call(f"{health}/readyz")[0] == 200
    status, broker, _ = call(f"{health}/readyz/broker")
    assert status == 503 and broker["reachable"] is False, broker

    # /v1/events: 503 at once (well within the client's 15 s), and the event never written.
    refused = {**events[0].model_dump(mode="json"), "event_id": "refused-in-outage"}
    started = time.monotonic()
    status, answer, headers = call(f"{api}/v1/events", refused)
    assert time.monotonic() - started < s.api_events_timeout_seconds
    assert status == 503 and headers.get("Retry-After"), (status, answer)
    assert "not written" in answer["reason"] and answer["reason"].count(". ") == 0, answer

    # Predictions are answered from the model in memory, marked stalled.
    status, answer, headers = call(f"{api}/v1/models/logreg/predict", ask)
    assert status == 200 and answer["prediction"] is not None, answer
    assert headers.get(STREAM) == "stalled", headers
    assert worker.scrape()["riverrun_broker_reachable"] == 0.0

    time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - stopped)))
    outage_lines = worker.log_path.read_text(errors="replace").splitlines()[lines_before:]
    assert len(outage_lines) < MAX_OUTAGE_LINES, "\n".join(outage_lines[:60])
    assert sum("is unreachable (" in line for line in outage_lines) == 1, outage_lines

    own_broker.up(timeout=120)
    until(
        lambda: "answers again after an outage of" in worker.log_path.read_text(errors="replace"),
        "the outage's last line",
        timeout=30,
    )
    until(lambda: call(f"{health}/readyz")[1]["ready"], "ready after the outage")
    assert call(f"{health}/readyz/broker")[0] == 200

    # The worker learns again: an event sent after the outage is predicted.
    after = {**events[1].model_dump(mode="json"), "event_id": "after-outage"}
    status, answer, _ = until(
        lambda: (lambda r: r if r[0] == 202 else None)(call(f"{api}/v1/events", after)),
        "an event accepted after the outage",
    )
    predicted = env.read_until(
        s.predictions_topic,
        lambda ms: any(
            Prediction.model_validate_json(m.value).event_id == "after-outage" for m in ms
        ),
    )
    assert predicted
    written = [
        InputEvent.model_validate_json(m.value).event_id for m in env.read_all(s.events_topic)
    ]
    assert "refused-in-outage" not in written and "after-outage" in written

    assert worker.stop() == 0
    log = worker.log_path.read_text(errors="replace")
    assert "Future exception was never retrieved" not in log
    assert "Traceback" not in log


def test_a_worker_stopped_during_an_outage_says_so_and_stops_once_the_broker_is_back(
    own_broker: LocalKafka, make_own_env: Callable[..., Env]
) -> None:
    env = make_own_env()
    worker = env.start_worker()
    events = list(dataset_events("phishing", limit=40, model=None, seed=42, id_prefix="s-"))
    env.produce([encode(e) for e in events])
    env.read(env.settings.predictions_topic, len(events))
    os.kill(int(own_broker.pid_path.read_text()), signal.SIGKILL)  # the broker crashes
    own_broker.pid_path.unlink()
    health = f"http://127.0.0.1:{worker.metrics_port}"
    until(lambda: call(f"{health}/readyz/broker")[0] == 503, "the outage seen", timeout=15)
    time.sleep(env.settings.session_timeout_seconds + 2)  # the group's session lapses
    worker.process.terminate()  # SIGTERM, as an orchestrator stops a pod
    until(
        lambda: "stopping during a broker outage" in worker.log_path.read_text(errors="replace"),
        "the stop's line",
        timeout=15,
    )
    assert worker.process.poll() is None  # it waits for the broker to write what it holds
    own_broker.up(timeout=120)
    # Once the broker answers, it exits (a rebalance begun meanwhile by the group's
    # coordinator used to deadlock with the stop, which held the batch lock).
    try:
        worker.process.wait(60)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the worker did not stop within 60 s:\n{worker.tail()}", pytrace=False)
    assert worker.stop() == 0, worker.tail()
    # Committed, or (when its session lapsed and the group went on without it) refused in
    # one line: a restart resumes from the last committed offset.
    log = worker.log_path.read_text(errors="replace")
    assert (
        "offsets committed on stop" in log or "could not commit or checkpoint events on stop" in log
    ), worker.tail()
    assert "Traceback" not in log and "Logging error" not in log, worker.tail(80)
