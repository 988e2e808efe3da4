"""Through the real broker: a plan naming a version this code can no longer build never
stops the worker (it starts, gets ready, serves the app's version, says "cannot build" in
its log, statuses, `models list` and metrics, and `models retire --force` recovers), and
a second pipeline registered as another version of the model is deployed from the CLI
as a shadow and promoted by the gate."""

import json
import os
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from online_models.versions import plans as control
from schemas import InputEvent, decode_prediction
from schemas.control import ModelPlan
from streams.cli.replay import encode
from streams.runtime.control import read_control, write_control
from tests.clicks import click_events
from tests.integration.conftest import riverrun_cli as cli

MODULE = "h1_fraud_models"
APP = '''
import riverrun
from river import compose, linear_model, optim
from online_models.models.features import mixed_features

app = riverrun.App()


def features(x):
    """Feature engineering (a docstring edit changes no version)."""
    return {**x, "scaled_price": x.get("price", 0.0) / 100.0}


@app.model("fraud", task="binary")
def fraud(lr: float = 0.01):
    pipeline = compose.FuncTransformer(features) | mixed_features()
    return pipeline | linear_model.LogisticRegression(optim.SGD(lr))
'''
#: A second pipeline, registered as version "2" of the same model.
SECOND = """

@app.model("fraud", task="binary", version="2")
def fraud_wider(lr: float = 0.05):
    # A second pipeline: another feature function, a faster rate.
    return compose.FuncTransformer(with_one) | mixed_features() | linear_model.LogisticRegression(
        optim.SGD(lr)
    )


def with_one(x):
    return {**x, "one": 1.0}
"""
#: The code edited since the plan was written: a constant of the feature function.
EDITED = APP.replace('x.get("price", 0.0) / 100.0', 'x.get("price", 0.0) / 1000.0')


def app_dir(tmp_path: Path, name: str, source: str) -> Path:
    directory = tmp_path / name
    directory.mkdir()
    (directory / f"{MODULE}.py").write_text(source)
    return directory


def spec_of(directory: Path) -> Any:
    """The served spec of 'fraud' as the code in `directory` builds it (a fresh import)."""
    sys.path.insert(0, str(directory))
    try:
        sys.modules.pop(MODULE, None)
        module = __import__(MODULE)
        return module.app.models["fraud"]
    finally:
        sys.path.remove(str(directory))
        sys.modules.pop(MODULE, None)


def using(env: Any, directory: Path) -> None:
    """Workers and CLI commands of `env` import the app from `directory`."""
    env.env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(directory), os.environ.get("PYTHONPATH", "")) if p
    )


def events(n: int, start: int = 0) -> list[InputEvent]:
    return click_events("fraud", n, start, seed=5, id_prefix="f", key_prefix="k", keys=600)


def wait(condition: Callable[[], Any], what: str, worker: Any, timeout: float = 90.0) -> Any:
    """Until `condition()` is truthy (its value); fails at once, with the worker's log,
    when the worker died (what the old code did at every start)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        worker.assert_alive()
        value = condition()
        if value:
            return value
        time.sleep(0.3)
    pytest.fail(f"never {what}:\n{worker.tail()}", pytrace=False)


def ready(env: Any) -> bool:
    try:
        url = f"http://127.0.0.1:{env.settings.metrics_port}/readyz"
        return urllib.request.urlopen(url, timeout=2).status == 200
    except (urllib.error.URLError, OSError):
        return False


def served(env: Any, count: int) -> list[Any]:
    found = env.read_all(env.settings.predictions_topic)
    values = [decode_prediction(m.value) for m in found]
    return values if len({p.event_id for p in values}) >= count else []


def test_a_plan_of_code_since_edited_serves_the_apps_version_and_retire_force_recovers(
    make_env: Any, tmp_path: Path
) -> None:
    before, after = app_dir(tmp_path, "before", APP), app_dir(tmp_path, "after", EDITED)
    old, new = spec_of(before), spec_of(after)
    assert old.version != new.version  # a changed constant is a new version
    env = make_env(app=f"{MODULE}:app", models=["fraud"], status_every_seconds=0.5)
    # The plan a worker of the former code wrote: its version is the champion.
    write_control(env.settings, [control.initial_plan(old, changed_by="worker (partition 0)")])
    using(env, after)
    worker = env.start_worker()
    env.produce([encode(e) for e in events(300)])
    outputs = wait(lambda: served(env, 300), "300 predictions", worker)
    assert {p.model_version for p in outputs} == {new.version}
    assert {p.routing.role for p in outputs} == {"champion"}
    assert ready(env)
    told = [line for line in worker.tail(400).splitlines() if "of the plan" in line]
    assert len(told) == 1, told  # one line (the start-up banner names it too)
    standing_in = f"{new.version} serves in its place"
    assert f"fraud: cannot build {old.version} (champion) of the plan; {standing_in}" in told[0]
    assert f"riverrun models retire --force {old.version}" in told[0]
    gauge = 'riverrun_model_versions_unbuildable{model="fraud",partition="0"}'
    wait(lambda: worker.scrape().get(gauge) == 1.0, "the gauge at 1", worker)

    listed = cli(env, "models", "list", "fraud")
    assert listed.returncode == 0, listed.stderr
    assert f"cannot build {old.version} on partition(s) 0" in listed.stdout
    assert f"serving in its place there: {new.version}" in listed.stdout

    retired = cli(env, "models", "retire", "--force", old.version)
    assert retired.returncode == 0, retired.stderr
    assert f"({new.version} is the champion now)" in retired.stdout
    plan = max((m for m in read_control(env.settings).plans.values()), key=lambda p: p.revision)
    assert [(v.version, v.role) for v in plan.versions] == [(new.version, "champion")]

    def recovered() -> bool:
        statuses = read_control(env.settings).statuses_of("fraud")
        return bool(statuses) and all(
            s.revision >= plan.revision and not s.unbuildable for s in statuses
        )

    wait(recovered, "statuses of the new revision without unbuildable versions", worker)
    wait(lambda: worker.scrape().get(gauge) == 0.0, "the gauge back at 0", worker)
    env.produce([encode(e) for e in events(100, start=300)])
    outputs = wait(lambda: served(env, 400), "400 predictions", worker)
    later = [p for p in outputs if int(p.event_id[1:]) >= 300]
    assert {p.model_version for p in later} == {new.version}
    # The app's version kept learning as the stand-in: nothing learnt was discarded.
    assert min(p.model_updates for p in later) >= 300
    listed = cli(env, "models", "list", "fraud")
    assert "cannot build" not in listed.stdout, listed.stdout


def test_a_second_pipeline_deployed_as_shadow_is_promoted_by_the_gate(
    make_env: Any, tmp_path: Path
) -> None:
    directory = app_dir(tmp_path, "app", APP + SECOND)
    env = make_env(app=f"{MODULE}:app", models=["fraud"], status_every_seconds=0.5)
    using(env, directory)
    first = spec_of(directory)
    gate = cli(
        env,
        "models",
        "gate",
        "fraud",
        "--min-labelled",
        "1500",
        "--auto-promote",
        "--canary-share",
        "0.3",
    )
    assert gate.returncode == 0, gate.stderr
    deployed = cli(env, "models", "deploy", "fraud", "--version", "2")
    assert deployed.returncode == 0, deployed.stderr
    assert deployed.stdout.splitlines()[-1] == "fraud: deployed fraud@2 as shadow (revision 3)"
    worker = env.start_worker()
    stream = events(6000)
    env.produce([encode(e) for e in stream])
    outputs = wait(
        lambda: served(env, len(stream)), f"{len(stream)} predictions", worker, timeout=240
    )
    by = Counter((p.model_version, p.routing.role) for p in outputs)
    assert by["fraud@2", "canary"] > 0 and by["fraud@2", "champion"] > 0, by
    assert by[first.version, "champion"] > 0  # served first, until the gate passed
    key = env.settings.checkpoint_key.get_secret_value().encode()
    revisions = sorted(
        (
            p
            for m in env.read_all(env.settings.control_topic)
            if isinstance(p := control.verify(m.value, key), ModelPlan)
        ),
        key=lambda p: p.revision,
    )
    roles = [{v.version: v.role for v in p.versions}.get("fraud@2") for p in revisions]
    assert roles[-3:] == ["shadow", "canary", "champion"], roles
    assert all(p.changed_by.startswith("worker") for p in revisions[-2:])
    champion = next(v for v in revisions[-1].versions if v.version == "fraud@2")
    assert champion.params == {"lr": 0.05}
    assert json.loads(json.dumps(champion.params)) == champion.params
