"""`riverrun serve`: predictions of the global models from their snapshots, in a process
that holds no partition, equal to what the workers answer."""

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

from streams.cli.replay import dataset_events, encode
from tests.integration.conftest import Env
from tests.ports import free_port

pytestmark = pytest.mark.integration


def ask(port: int, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=json.dumps(body).encode() if body is not None else None,
        method="POST" if body is not None else "GET",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            raw = answer.read()
            return answer.status, json.loads(raw) if path != "/metrics" else raw.decode()
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())
    except (urllib.error.URLError, ConnectionError):
        return 0, None


def until(check: Any, what: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := check()):
        assert time.monotonic() < deadline, what
        time.sleep(0.2)
    return found


def test_serve_answers_global_models_from_their_snapshots_as_the_workers_do(
    make_env: Any, tmp_path: Any
) -> None:
    env: Env = make_env(
        models=["logreg", "linreg"],
        model_scopes={"logreg": "global", "linreg": "partition"},
        topic_partitions=2,
    )
    s = env.settings
    worker = env.start_worker()
    events: list[tuple[bytes | None, bytes]] = [
        encode(e) for e in dataset_events("clicks", limit=3_000, model="logreg", seed=9)
    ]
    env.produce(events)
    env.read(s.predictions_topic, len(events))

    port = free_port()
    serving_env = {**env.env, "RIVERRUN_API_PORT": str(port), "RIVERRUN_METRICS_PORT": "0"}
    log = (tmp_path / "serve.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "streams.cli.main", "serve"],
        env=serving_env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        ready = until(lambda: ask(port, "/readyz")[0] == 200, "serve never ready")
        assert ready
        body = {"key": "visitor-3", "features": json.loads(events[-1][1])["features"]}
        served = until(
            lambda: (
                (a := ask(port, "/v1/models/logreg/predict", body))[1]
                and a[1].get("model_updates") == len(events)
                and a[1]
            ),
            "serve never had the newest snapshot",
        )
        code, answered = ask(worker.api_port, "/v1/models/logreg/predict", body)
        assert code == 200 and answered["model_updates"] == len(events)
        assert served["prediction"] == answered["prediction"]
        assert served["model_version"] == answered["model_version"]
        # A partition model's replicas live on the workers: not served here.
        code, refused = ask(port, "/v1/models/linreg/predict", body)
        assert code == 404 and refused["error"] == "unknown_model", refused
        _, metrics = ask(port, "/metrics")
        assert f'riverrun_snapshot_updates{{model="logreg"}} {float(len(events))}' in metrics
    finally:
        process.terminate()
        assert process.wait(30) == 0, (tmp_path / "serve.log").read_text()[-3000:]
        log.close()
