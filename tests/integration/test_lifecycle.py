"""Model versions through the real broker: the gate promotes a better version through
shadow -> canary -> champion and never a worse one (with a kill -9 in the middle), a
diverging champion is rolled back, a poisoned label burst trips the learning breaker,
an A/B test publishes its result only once every arm has its sample, and unsigned
control messages are refused."""

import importlib.util
import json
import re
import sys
import time
from collections import Counter
from pathlib import Path
from types import ModuleType
from typing import Any

from kafka import KafkaProducer

from online_models.models.registry import ModelSpec
from online_models.versions import plans as control
from schemas import InputEvent, decode_prediction
from schemas.control import ExperimentResult, GatePlan, ModelPlan
from streams.cli.replay import encode
from streams.runtime.control import read_control, write_control
from tests.clicks import click_events
from tests.integration.conftest import riverrun_cli as cli

APP = '''
import riverrun
from river import base, linear_model, optim
from online_models.models.features import mixed_features

app = riverrun.App()


class Diverging(base.Classifier):
    """Logistic regression whose predictions are NaN from its `after`-th update on."""

    def __init__(self, lr=0.05, l2=0.0, after=10**9):
        self.lr, self.l2, self.after = lr, l2, after
        self.model = mixed_features() | linear_model.LogisticRegression(optim.SGD(lr), l2=l2)
        self.n = 0

    def learn_one(self, x, y):
        self.n += 1
        self.model.learn_one(x, y)

    def predict_proba_one(self, x):
        if self.n >= self.after:
            return {True: float("nan"), False: float("nan")}
        return self.model.predict_proba_one(x)


@app.model("clicks_lr", task="binary")
def clicks_lr(lr: float = 0.0005, l2: float = 0.0, after: int = 10**9):
    return Diverging(lr, l2, after)
'''
GOOD = {"lr": 0.05}
BAD = {"lr": 0.0005, "l2": 0.5}


def load_app(tmp_path: Path) -> ModuleType:
    (tmp_path / "lifecycle_app.py").write_text(APP)
    spec = importlib.util.spec_from_file_location("lifecycle_app", tmp_path / "lifecycle_app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["lifecycle_app"] = module
    spec.loader.exec_module(module)
    return module


def make(make_env: Any, tmp_path: Path, **settings: Any) -> tuple[Any, ModelSpec]:
    module = load_app(tmp_path)
    env = make_env(app="lifecycle_app:app", models=["clicks_lr"], **settings)
    env.env["PYTHONPATH"] = str(tmp_path)
    return env, module.app.models["clicks_lr"]


def clicks(n: int, start: int = 0, poisoned: bool = False) -> list[InputEvent]:
    return click_events(
        "clicks_lr", n, start, seed=3, id_prefix="c", key_prefix="v", keys=700, poisoned=poisoned
    )


def predictions(env: Any, topic: str, count: int) -> list[Any]:
    def done(messages: list[Any]) -> bool:
        return len({m.key for m in messages}) >= count

    return [decode_prediction(m.value) for m in env.read_until(topic, done, timeout=240)]


def plans(env: Any) -> list[ModelPlan]:
    """Every plan revision on the control topic, in order."""
    found = [
        control.verify(m.value, env.settings.checkpoint_key.get_secret_value().encode())
        for m in env.read_all(env.settings.control_topic)
    ]
    return sorted((p for p in found if isinstance(p, ModelPlan)), key=lambda p: p.revision)


def test_the_gate_promotes_the_better_version_and_never_the_worse_one_across_a_kill(
    make_env: Any, tmp_path: Path
) -> None:
    env, spec = make(make_env, tmp_path, checkpoint_every_events=1500)
    good, bad = spec.with_params(**GOOD), spec.with_params(**BAD)
    plan = control.initial_plan(spec, changed_by="test")
    gate = GatePlan(min_labelled=1500, delta=0.0, auto_promote=True, canary_share=0.3)
    plan = control.with_gate(plan, gate)
    plan = control.deploy(plan, good, role="shadow")
    plan = control.deploy(plan, bad, role="shadow")
    write_control(env.settings, [plan])
    events = clicks(9000)
    first = env.start_worker()
    env.produce([encode(e) for e in events])
    predictions(env, env.settings.predictions_topic, 4000)
    first.kill()  # mid-stream: no commit, no checkpoint
    env.start_worker()
    served = predictions(env, env.settings.predictions_topic, len(events))

    # Every event served exactly once, though the worker was killed.
    assert len(served) == len(events)
    assert Counter(p.event_id for p in served).most_common(1)[0][1] == 1
    by_version = Counter((p.model_version, p.routing.role) for p in served)
    assert by_version[bad.version, "canary"] == by_version[bad.version, "champion"] == 0
    assert by_version[good.version, "canary"] > 0 and by_version[good.version, "champion"] > 0
    # The plans on the control topic: the good one was promoted twice by the gate.
    revisions = plans(env)
    roles = [{v.version: v.role for v in p.versions} for p in revisions]
    assert [r[good.version] for r in roles] == ["shadow", "canary", "champion"]
    assert all(r[bad.version] == "shadow" for r in roles)
    assert all(p.changed_by.startswith("worker") for p in revisions[-2:])
    # Every version that did not serve an event predicted it on shadow-predictions.
    shadows = predictions(env, env.settings.shadow_predictions_topic, 1)
    assert all(not p.routing.served for p in shadows)
    listed = cli(env, "models", "list")
    assert listed.returncode == 0, listed.stderr
    assert good.version in listed.stdout and "champion" in listed.stdout


def wait_for_revision(env: Any, timeout: float = 60.0) -> None:
    """Until the worker's status says it applied the newest plan (then the events sent
    next are routed by it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = read_control(env.settings)
        newest = state.plans["clicks_lr"].revision
        if all(s.revision >= newest for s in state.statuses_of("clicks_lr")):
            return
        time.sleep(0.3)
    raise AssertionError("the worker never applied the newest plan")


def wait_for_gate(env: Any, version: str, labelled: int, timeout: float = 60.0) -> None:
    """Until the partitions' statuses show `version` scored on `labelled` events."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        statuses = read_control(env.settings).statuses_of("clicks_lr")
        if (
            sum(v.labelled for s in statuses for v in s.versions if v.version == version)
            >= labelled
        ):
            return
        time.sleep(0.3)
    raise AssertionError(f"{version} never reached {labelled} labelled events")


def test_a_diverging_champion_is_rolled_back_and_a_poisoned_burst_pauses_learning(
    make_env: Any, tmp_path: Path
) -> None:
    env, spec = make(make_env, tmp_path, status_every_seconds=0.5)
    diverging = spec.with_params(lr=0.05, after=1100)
    plan = control.initial_plan(spec, changed_by="test")
    plan = control.with_gate(plan, GatePlan(min_labelled=300))
    plan = control.deploy(plan, diverging, role="shadow")
    write_control(env.settings, [plan])
    worker = env.start_worker()
    env.produce([encode(e) for e in clicks(400)])
    wait_for_gate(env, diverging.version, 400)
    # It passed the gate (300 labelled events, a lower loss): promoted by hand, twice.
    promoted = cli(env, "models", "promote", diverging.version)
    assert promoted.returncode == 0, promoted.stderr + promoted.stdout
    assert "canary" in promoted.stdout
    wait_for_revision(env)
    refused = cli(env, "models", "promote", diverging.version)  # no events as a canary yet
    assert refused.returncode != 0 and "labelled" in refused.stderr + refused.stdout
    env.produce([encode(e) for e in clicks(400, start=400)])
    wait_for_gate(env, diverging.version, 400)
    promoted = cli(env, "models", "promote", diverging.version)
    assert promoted.returncode == 0, promoted.stderr + promoted.stdout
    current = read_control(env.settings).plans["clicks_lr"]
    assert control.champion(current).version == diverging.version
    wait_for_revision(env)
    env.produce([encode(e) for e in clicks(3200, start=800)])
    served = predictions(env, env.settings.predictions_topic, 4000)
    after = [p for p in served if int(p.event_id[1:]) >= 800]
    versions = [p.model_version for p in sorted(after, key=lambda p: int(p.event_id[1:]))]
    # It diverges at its 1100th update: 800 learnt before, it fails on its 300th event as
    # champion; that event and every later one are served by the previous champion.
    assert versions[:300] == [diverging.version] * 300
    assert set(versions[300:]) == {spec.version}
    rolled = [p for p in plans(env) if p.change.startswith("rolled back")]
    assert len(rolled) == 1 and "diverged" in rolled[0].change
    # The diverged version is stopped, not silent: one revision saying on which event
    # (c1100: its 1100th update came from c1099), one log line, and `models list`.
    stopped = [p for p in plans(env) if p.change.startswith(f"stopped {diverging.version}")]
    assert len(stopped) == 1 and "diverged on event c1100 " in stopped[0].change
    logged = worker.log_path.read_text().count(f"stopped {diverging.version}: diverged")
    assert logged == 1
    listed = cli(env, "models", "list")
    assert listed.returncode == 0 and "stopped (diverged)" in listed.stdout, listed.stderr
    # A poisoned burst: every label positive (the stream's click rate is ~3%).
    env.produce([encode(e) for e in clicks(800, start=4000, poisoned=True)])
    served = predictions(env, env.settings.predictions_topic, 4800)
    assert len(served) == 4800  # predictions went on
    paused = [p for p in plans(env) if "learning breaker" in p.change]
    assert len(paused) == 1 and not any(v.learning for v in paused[0].versions)
    metrics = worker.scrape()
    assert metrics['riverrun_rollbacks_total{model="clicks_lr",partition="0"}'] == 1
    assert metrics['riverrun_learning_breaker_trips_total{model="clicks_lr",partition="0"}'] == 1
    resumed = cli(env, "models", "resume-learning", "clicks_lr")
    assert resumed.returncode == 0, resumed.stderr + resumed.stdout


def test_an_ab_test_publishes_its_result_only_with_its_sample_and_refuses_unsigned_plans(
    make_env: Any, tmp_path: Path
) -> None:
    env, spec = make(make_env, tmp_path, status_every_seconds=0.5)
    good = spec.with_params(**GOOD)
    plan = control.deploy(control.initial_plan(spec, changed_by="test"), good, role="shadow")
    write_control(env.settings, [plan])
    started = cli(
        env,
        "experiments",
        "start",
        "clicks_lr",
        "--arms",
        f"{spec.version},{good.version}",
        "--metric",
        "logloss",
        "--mde",
        "0.1",
        "--baseline",
        "0.5",
        "--id",
        "ab1",
    )
    assert started.returncode == 0, started.stderr + started.stdout
    experiment = read_control(env.settings).plans["clicks_lr"].experiment
    assert experiment is not None  # `experiments start` succeeded
    planned = experiment.sample_size
    worker = env.start_worker()
    env.produce([encode(e) for e in clicks(400)])
    predictions(env, env.settings.predictions_topic, 400)
    early = cli(env, "experiments", "status", "clicks_lr")
    assert early.returncode == 0 and "no peeking" in early.stdout, early.stdout
    assert not re.search(r"\bp [0-9]", early.stdout)  # no p-value shown (as "p 0.0001")
    # An unsigned plan naming another champion is refused and changes nothing.
    forged = plan.model_copy(update={"revision": 50, "change": "forged"})
    producer = KafkaProducer(bootstrap_servers=env.settings.bootstrap_servers)
    producer.send(
        env.settings.control_topic, key=b"plan:clicks_lr", value=forged.model_dump_json().encode()
    ).get(timeout=30)
    producer.close()
    env.produce([encode(e) for e in clicks(2600, start=400)])
    served = predictions(env, env.settings.predictions_topic, 3000)
    arms = Counter(p.routing.arm for p in served[:400])
    assert set(arms) == {spec.version, good.version}
    results = env.read(env.settings.experiments_topic, 1, timeout=120)
    result = ExperimentResult.model_validate_json(results[0].value)
    assert all(n >= planned for n in result.counts.values())
    assert result.decision == good.version  # its log loss is far lower (the unit tests)
    assert worker.scrape()['riverrun_control_refused_total{reason="unsigned"}'] == 1
    assert read_control(env.settings).plans["clicks_lr"].revision < 50
    json.dumps(result.model_dump(mode="json"))
