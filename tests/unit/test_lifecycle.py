"""Versions of a model on one partition: shadow, gate, canary, rollback, breaker,
experiments and bandits, through the learner, without a broker."""

import itertools
import math
import pickle
import random
from collections import Counter
from collections.abc import Hashable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from river import base, linear_model
from statsmodels.stats.power import NormalIndPower

from online_models.learning.checkpoint import Replica, encode_checkpoint, gather, restore
from online_models.learning.learner import Learner
from online_models.models.datasets import synthetic_clicks
from online_models.models.features import mixed_features
from online_models.models.registry import model_spec
from online_models.versions import plans as control
from online_models.versions.experiments import ExperimentDesign
from online_models.versions.lifecycle import experiment_verdict, key_bucket
from schemas import InputEvent, Prediction
from schemas.control import BanditPlan, BreakerPlan, ExperimentPlan, GatePlan, ModelPlan, Routing
from schemas.prediction import AnyPrediction
from tests.builtin import MODELS
from tests.fingerprint import fingerprint

T0 = datetime(2026, 1, 1, tzinfo=UTC)
WEAK = {"lr": 0.0005}  # the champion: learns slowly, so a sound challenger beats it
GOOD = {"lr": 0.05}
BAD = {"lr": 0.0005, "l2": 0.5}  # worse than the weak champion: heavy L2 pulls to 0.5


def clicks(n: int, seed: int = 3, start: int = 0, label: bool = True) -> list[InputEvent]:
    """`n` labelled events of the synthetic click stream, keys of 500 visitors."""
    out = []
    for i, (x, y) in enumerate(itertools.islice(synthetic_clicks(seed=seed), start, start + n)):
        out.append(
            InputEvent(
                event_id=f"s{seed}-{start + i}",
                ts=T0 + timedelta(seconds=i),
                model="logreg",
                key=f"v{(start + i) % 500}",
                features=x,
                label=y if label else None,
            )
        )
    return out


def learner_with(plan_edits: Any = None, partition: int = 0) -> tuple[Learner, ModelPlan]:
    learner = Learner(["logreg"], params={"logreg": WEAK}, partition=partition, registry=MODELS)
    plan = control.initial_plan(learner.models["logreg"].spec, changed_by="test")
    if plan_edits is not None:
        plan = plan_edits(plan, learner.models["logreg"].spec)
    learner.apply_plan(plan, 0)
    return learner, plan


def run(learner: Learner, events: list[InputEvent], first_offset: int = 0) -> list[Any]:
    offsets = list(range(first_offset, first_offset + len(events)))
    return learner.process(events, offsets=offsets)


def routing(prediction: AnyPrediction) -> Routing:
    """The routing of a prediction made under a plan, which always has one."""
    assert prediction.routing is not None
    return prediction.routing


def current_plan(learner: Learner) -> ModelPlan:
    """The plan the learner's logreg group follows (it was given one)."""
    plan = learner.groups["logreg"].plan
    assert plan is not None
    return plan


def test_a_shadow_predicts_and_learns_every_event_and_never_serves() -> None:
    def edits(plan: ModelPlan, spec: Any) -> ModelPlan:
        return control.deploy(plan, spec.with_params(**GOOD), role="shadow")

    learner, _ = learner_with(edits)
    events = clicks(3000)
    outputs = run(learner, events)
    champion = learner.models["logreg"].version
    assert {o.model_version for o in outputs} == {champion}
    assert {o.routing.role for o in outputs} == {"champion"}
    shadow = [p for _, p in learner.drain_shadow()]
    assert len(shadow) == len(events)
    assert {routing(p).role for p in shadow} == {"shadow"} and not any(
        routing(p).served for p in shadow
    )
    # Its metrics equal an offline run of that version alone over the same events.
    alone = Learner(["logreg"], params={"logreg": GOOD}, registry=MODELS)
    offline = run(alone, events)
    assert [p.prediction for p in shadow] == [o.prediction for o in offline]
    group = learner.groups["logreg"]
    challenger = group.versions[shadow[0].model_version]
    assert challenger.evaluator.headline() == alone.models["logreg"].evaluator.headline()


def test_the_gate_promotes_a_better_version_step_by_step_and_never_a_worse_one() -> None:
    def edits(plan: ModelPlan, spec: Any) -> ModelPlan:
        plan = control.with_gate(
            plan, GatePlan(min_labelled=1500, delta=0.0, auto_promote=True, canary_share=0.2)
        )
        plan = control.deploy(plan, spec.with_params(**GOOD), role="shadow")
        return control.deploy(plan, spec.with_params(**BAD), role="shadow")

    learner, _ = learner_with(edits)
    good = MODELS["logreg"].with_params(**GOOD).version
    bad = MODELS["logreg"].with_params(**BAD).version
    roles: list[dict[str, str]] = []
    served_by: Counter[str] = Counter()
    for start in range(0, 12_000, 500):
        outputs = run(learner, clicks(500, start=start), start)
        served_by.update(o.model_version for o in outputs)
        for change in learner.drain_changes():
            roles.append({v.version: v.role for v in change.versions})
    # shadow -> canary (after 1500 labelled events) -> champion (1500 more as canary)
    assert [r[good] for r in roles][:2] == ["canary", "champion"]
    assert all(r[bad] == "shadow" for r in roles)
    assert served_by[bad] == 0
    assert learner.models["logreg"].version == good


class Diverging(base.Classifier):
    """A logistic regression whose predictions become NaN after `after` updates."""

    def __init__(self, after: int = 300) -> None:
        self.after = after
        self.model = mixed_features() | linear_model.LogisticRegression()
        self.n = 0

    def learn_one(self, x: dict[Hashable, Any], y: base.typing.ClfTarget) -> None:
        self.n += 1
        self.model.learn_one(x, y)

    def predict_proba_one(
        self, x: dict[Hashable, Any], **kwargs: Any
    ) -> dict[base.typing.ClfTarget, float]:
        if self.n >= self.after:
            return {True: math.nan, False: math.nan}
        return self.model.predict_proba_one(x)


def diverging(after: int = 300) -> base.Estimator:
    return Diverging(after)


def test_a_champion_that_diverges_is_rolled_back_on_the_event_it_fails() -> None:
    registry = {"logreg": model_spec("logreg", "binary", diverging, {"after": 10**9})}
    learner = Learner(["logreg"], registry=registry, partition=0)
    spec = learner.models["logreg"].spec
    plan = control.initial_plan(spec, changed_by="test")
    plan = control.deploy(plan, spec.with_params(after=300), role="shadow")
    challenger = spec.with_params(after=300).version
    plan = plan.model_copy(update={"gate": GatePlan(min_labelled=100)})
    learner.apply_plan(plan, 0)
    run(learner, clicks(200))
    status = learner.groups["logreg"].status(200, T0)
    plan = control.promote(plan, challenger, [status], to="champion")
    learner.apply_plan(plan, 200)
    outputs = run(learner, clicks(400, start=200), 200)
    # It learnt 200 events as a shadow: it diverges at its 300th update, the 100th event
    # it serves; that very event is served by the previous champion, and all after it.
    versions = [o.model_version for o in outputs]
    assert versions[:100] == [challenger] * 100
    assert versions[100:] == [spec.version] * 300
    changes = learner.drain_changes()
    # (then the diverged version is stopped: see test_lifecycle_roles)
    assert [c.change.split(" (")[0] for c in changes[:1]] == [
        f"rolled back from {challenger} to {spec.version}"
    ]
    assert "diverged" in changes[0].change


def test_a_poisoned_label_burst_trips_the_breaker_and_predictions_go_on() -> None:
    def edits(plan: ModelPlan, spec: Any) -> ModelPlan:
        breaker = BreakerPlan(window=200, reference=1000, factor=3.0)
        return plan.model_copy(update={"breaker": breaker})

    learner, _ = learner_with(edits)
    run(learner, clicks(3000))
    updates = learner.models["logreg"].updates
    poisoned = [e.model_copy(update={"label": True}) for e in clicks(600, start=3000)]
    outputs = run(learner, poisoned, 3000)
    assert len(outputs) == 600 and all(isinstance(o, Prediction) for o in outputs)
    changes = learner.drain_changes()
    assert len(changes) == 1 and "learning breaker: mean label" in changes[0].change
    served = learner.models["logreg"]
    assert not served.learning
    # The breaker trips within its window: at most 200 poisoned labels were learnt.
    assert served.updates - updates <= 200
    resumed = control.set_learning(changes[0], "*", True)
    learner.apply_plan(resumed, 3600)
    run(learner, clicks(100, start=3600), 3600)
    assert (
        learner.models["logreg"].learning
        and learner.models["logreg"].updates > served.updates - 100
    )


def test_canary_keys_are_a_stable_share_of_the_key_space() -> None:
    share = sum(key_bucket(f"visitor-{i}") < 0.1 for i in range(20_000)) / 20_000
    assert abs(share - 0.1) < 0.01  # 3 standard errors of a share of 0.1 in 20k keys: 0.0064


def test_an_experiment_assigns_keys_to_arms_and_concludes_only_with_its_sample() -> None:
    good = MODELS["logreg"].with_params(**GOOD).version

    def edits(plan: ModelPlan, spec: Any) -> ModelPlan:
        plan = control.deploy(plan, spec.with_params(**GOOD), role="shadow")
        design = ExperimentDesign(
            metric="logloss", arms=(spec.version, good), mde=0.1, baseline=0.5
        )
        experiment = ExperimentPlan(
            experiment_id="x1",
            arms=[spec.version, good],
            metric="logloss",
            alpha=0.05,
            power=0.8,
            mde=0.1,
            baseline=0.5,
            sample_size=design.sample_size(),
            started=T0,
        )
        return control.start_experiment(plan, experiment)

    learner, plan = learner_with(edits)
    outputs = run(learner, clicks(600))
    arm_of: dict[str, set[str]] = {}
    for o in outputs:
        arm_of.setdefault(o.key, set()).add(o.routing.arm)
    assert all(len(arms) == 1 for arms in arm_of.values())  # a visitor stays in one arm
    status = learner.groups["logreg"].status(600, T0)
    experiment = current_plan(learner).experiment
    assert experiment is not None
    planned = experiment.sample_size
    expected = NormalIndPower().solve_power(effect_size=0.1 / 0.5, alpha=0.05, power=0.8)
    assert planned == math.ceil(expected)  # statsmodels' size for d = mde / sd
    assert experiment_verdict(plan, [status]) is None  # ~300 per arm: not yet
    run(learner, clicks(2400, start=600), 600)
    status = learner.groups["logreg"].status(3000, T0)
    result = experiment_verdict(current_plan(learner), [status])
    assert result is not None and all(n >= planned for n in result.counts.values())
    assert result.comparisons[0].arm == good


def test_a_bandit_sends_most_traffic_to_the_better_version_rewarded_by_late_labels() -> None:
    """A simulated ad server: each unlabelled event is a decision; the visitor clicks with
    probability 0.10 after the good version served, 0.04 after the other; the click (or
    not) arrives as the key's next, labelled event."""
    good = MODELS["logreg"].with_params(**GOOD).version

    def edits(plan: ModelPlan, spec: Any) -> ModelPlan:
        plan = control.deploy(plan, spec.with_params(**GOOD), role="shadow")
        bandit = BanditPlan(policy="thompson", arms=[spec.version, good], seed=7)
        return control.start_bandit(plan, bandit)

    learner, _ = learner_with(edits)
    rng = random.Random(11)
    served, offset = [], 0
    for event in clicks(6000, label=False):
        decision = run(learner, [event], offset)[0]
        assert 0 < decision.routing.probability <= 1
        rate = 0.10 if decision.model_version == good else 0.04
        outcome = event.model_copy(
            update={"event_id": event.event_id + "-outcome", "label": rng.random() < rate}
        )
        feedback = run(learner, [outcome], offset + 1)[0]
        assert feedback.model_version == decision.model_version  # the arm that decided
        assert feedback.routing.probability == decision.routing.probability
        served.append(decision.model_version)
        offset += 2
    # Thompson sampling on 0.10 vs 0.04: after 3,000 decisions the posteriors are apart
    # by ~6 standard errors; the last 2,000 decisions go to the good arm.
    late = served[-2000:]
    assert late.count(good) / len(late) >= 0.9
    bandit = learner.groups["logreg"].state.bandit
    assert bandit is not None and bandit.decisions == 6000


def test_every_version_and_the_lifecycle_state_survive_a_checkpoint_exactly() -> None:
    def edits(plan: ModelPlan, spec: Any) -> ModelPlan:
        plan = control.deploy(plan, spec.with_params(**GOOD), role="shadow")
        return control.start_bandit(
            plan,
            BanditPlan(policy="thompson", arms=[spec.version, spec.with_params(**GOOD).version]),
        )

    learner, plan = learner_with(edits)
    run(learner, clicks(1500))
    restored = Learner(["logreg"], params={"logreg": WEAK}, partition=0, registry=MODELS)
    restored.apply_plan(plan, 1500)
    group = restored.groups["logreg"]
    replicas = {}
    for name, served in learner.replicas().items():
        replica = Replica("g", "events", 0, name)
        records = encode_checkpoint(served, replica, key=b"k", next_offset=1500, sequence=0)
        checkpoint = gather([v for _, v in records])[0][0]
        replicas[name] = restore(checkpoint, replica, served.spec, key=b"k")
    for version in list(group.versions):
        group.versions[version] = replicas[group.replica_name(version)]
    group.state = pickle.loads(pickle.dumps(learner.groups["logreg"].state))
    group.resume_offset = 1500
    group.apply(plan, 1500, {})
    more = clicks(1000, start=1500)
    expected = run(learner, more, 1500)
    got = run(restored, more, 1500)
    assert [(o.model_version, o.prediction, o.routing) for o in got] == [
        (o.model_version, o.prediction, o.routing) for o in expected
    ]
    for name, served in learner.replicas().items():
        assert fingerprint(restored.replicas()[name].state().parts()[:6]) == fingerprint(
            served.state().parts()[:6]
        )


def test_control_messages_need_the_key() -> None:
    plan = control.initial_plan(MODELS["logreg"], changed_by="test")
    raw = plan.model_dump_json().encode()
    with pytest.raises(control.ControlRefused, match="unsigned"):
        control.verify(raw, b"k")
    signed = control.sign(plan, b"k")
    tampered = signed.model_copy(update={"change": "something else"})
    with pytest.raises(control.ControlRefused, match="bad_signature"):
        control.verify(tampered.model_dump_json().encode(), b"k")
    assert control.verify(signed.model_dump_json().encode(), b"k") == signed
