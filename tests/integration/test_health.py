"""/healthz and /readyz of a worker, as an orchestrator's probes see them."""

import json
import time
import urllib.error
import urllib.request
from pathlib import Path

from schemas import Prediction
from streams.cli.replay import dataset_events, encode

#: A user's app whose model carries a large payload (4 MB, incompressible) and takes
#: seconds to unpickle: a restore an orchestrator must wait for.
SLOW_APP = """
import os
import time

from river import linear_model

import riverrun

app = riverrun.App()


class SlowToRestore(linear_model.LogisticRegression):
    def __init__(self, payload_bytes: int = 4_000_000):
        super().__init__()
        self.payload_bytes = payload_bytes
        self.payload = os.urandom(payload_bytes)

    def __setstate__(self, state):
        time.sleep(float(os.environ.get("SLOW_RESTORE_SECONDS", "0")))
        self.__dict__.update(state)


@app.model("slow", task="binary")
def slow():
    return SlowToRestore()
"""


def probe(port: int, path: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())
    except (urllib.error.URLError, ConnectionError):
        return 0, {}  # not listening yet


def watch_until_ready(worker, timeout: float = 90.0) -> list[tuple[int, dict, int]]:  # type: ignore[no-untyped-def, type-arg]
    """/readyz (with /healthz's status) every 50 ms until ready; every answer seen."""
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        worker.assert_alive()
        status, body = probe(worker.metrics_port, "/readyz")
        if status:
            seen.append((status, body, probe(worker.metrics_port, "/healthz")[0]))
        if status == 200:
            return seen
        time.sleep(0.05)
    raise AssertionError(f"/readyz never answered 200 within {timeout} s: {seen[-3:]}")


def test_readyz_is_false_while_a_large_checkpoint_restores_and_true_after(  # type: ignore[no-untyped-def]
    make_env, tmp_path: Path
) -> None:
    (tmp_path / "slowapp.py").write_text(SLOW_APP)
    env = make_env(app="slowapp:app", checkpoint_chunk_bytes=256 * 1024)
    env.env["PYTHONPATH"] = str(tmp_path)
    env.env["SLOW_RESTORE_SECONDS"] = "4"
    events = list(dataset_events("phishing", limit=300, model="slow", seed=42))
    first, second = events[:200], events[200:]

    worker = env.start_worker()
    answers = watch_until_ready(worker)
    assert answers[-1][1]["services"]["events"]["consuming"] == [f"{env.settings.events_topic}[0]"]
    env.produce([encode(e) for e in first])
    env.read(env.settings.predictions_topic, len(first))
    assert worker.stop() == 0, worker.tail()
    assert env.count(env.settings.checkpoints_topic) >= 16  # 4 MB in 256 KiB chunks

    restarted = env.start_worker()
    answers = watch_until_ready(restarted)
    restoring = [body for status, body, _ in answers if body["services"]["events"]["restoring"]]
    assert restoring, f"never seen restoring: {answers}"
    assert all(status == 503 and not body["ready"] for status, body, _ in answers[:-1])
    assert "restoring" in restoring[-1]["services"]["events"]["reason"]
    # The restore runs off the event loop: the worker stays alive for the liveness probe.
    assert all(health == 200 for _, _, health in answers)
    # Seconds of answers saying "restoring": the probe tracked the restore itself.
    assert len(restoring) >= 20

    env.produce([encode(e) for e in second])
    messages = env.read(env.settings.predictions_topic, len(events))
    later = [Prediction.model_validate_json(m.value) for m in messages[len(first) :]]
    assert [p.model_updates for p in later] == list(range(len(first), len(events)))
