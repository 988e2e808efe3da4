"""What a version's predictions and the plan say at the moments its role changes: an
automatic promotion (the prediction of the event that passed the gate keeps the role the
version had when it predicted) and a divergence (the version is stopped in the plan, with
the event, the reason and what to do, instead of falling silent)."""

from typing import Any

from online_models.learning.learner import Learner
from online_models.models.registry import model_spec
from online_models.versions import plans as control
from schemas import Prediction
from schemas.control import GatePlan, ModelPlan
from tests.builtin import MODELS
from tests.unit.test_lifecycle import GOOD, WEAK, clicks, diverging, routing, run


def test_predictions_carry_the_role_their_version_had_when_it_predicted() -> None:
    learner = Learner(["logreg"], params={"logreg": WEAK}, partition=0, registry=MODELS)
    spec = learner.models["logreg"].spec
    plan = control.initial_plan(spec, changed_by="test")
    plan = control.with_gate(plan, GatePlan(min_labelled=300, auto_promote=True, canary_share=0.5))
    plan = control.deploy(plan, spec.with_params(**GOOD), role="shadow")
    learner.apply_plan(plan, 0)
    group = learner.groups["logreg"]
    good = MODELS["logreg"].with_params(**GOOD).version
    changes: list[ModelPlan] = []
    wrong = []
    for offset, event in enumerate(clicks(1500)):
        before = {version: v.role for version, v in group.roles.items()}
        served = run(learner, [event], offset)[0]
        changes += learner.drain_changes()
        assert served.routing.role == before[served.model_version]
        for _, shadow in learner.drain_shadow():
            if routing(shadow).role != before[shadow.model_version]:
                wrong.append((offset, shadow.model_version, routing(shadow).role))
    # The good version passed the gate twice (300 labelled events as shadow, 300 more as
    # canary): at each of those two events the other version's shadow prediction was
    # labelled with the role it only got from that event's label.
    assert [{v.version: v.role for v in c.versions}[good] for c in changes] == [
        "canary",
        "champion",
    ]
    assert wrong == []


def diverging_champion() -> tuple[Learner, str, str]:
    """A learner whose champion diverges at its 300th update, with the app's version as
    the previous champion (as `test_lifecycle` sets it up)."""
    registry = {"logreg": model_spec("logreg", "binary", diverging, {"after": 10**9})}
    learner = Learner(["logreg"], registry=registry, partition=0)
    spec = learner.models["logreg"].spec
    challenger = spec.with_params(after=300).version
    plan = control.initial_plan(spec, changed_by="test")
    plan = control.deploy(plan, spec.with_params(after=300), role="shadow")
    plan = plan.model_copy(update={"gate": GatePlan(min_labelled=100)})
    learner.apply_plan(plan, 0)
    run(learner, clicks(200))
    status = learner.groups["logreg"].status(200, clicks(1)[0].ts)
    learner.apply_plan(control.promote(plan, challenger, [status], to="champion"), 200)
    learner.drain_shadow()
    return learner, spec.version, challenger


def test_a_version_rolled_back_from_for_diverging_is_stopped_visibly() -> None:
    learner, previous, diverged = diverging_champion()
    events = clicks(400, start=200)
    outputs = run(learner, events, 200)
    assert all(isinstance(o, Prediction) for o in outputs)  # every event served
    changes = learner.drain_changes()
    # The rollback, then the diverged version stopped: one revision each, no more (the
    # worker logs each revision in one line).
    assert [c.change.split(" (")[0].split(":")[0] for c in changes] == [
        f"rolled back from {diverged} to {previous}",
        f"stopped {diverged}",
    ]
    stopped = control.version_of(changes[-1], diverged)
    assert not stopped.learning and stopped.role == "shadow"
    reason = stopped.paused_reason or ""
    # Which event, why, and what to do.
    assert reason.startswith(f"diverged on event {events[100].event_id} (offset 300)")
    assert "predicted nan" in reason
    assert f"riverrun models retire {diverged}" in reason
    assert changes[-1].change == f"stopped {diverged}: {reason}"
    # It predicts nothing any more: no shadow prediction after the rollback.
    shadows = [p for _, p in learner.drain_shadow()]
    assert {p.model_version for p in shadows} == {previous}
    # Learning resumed by hand (every version): it fails again and is stopped again.
    resumed = control.set_learning(changes[-1], "*", True)
    learner.apply_plan(resumed, 600)
    run(learner, clicks(10, start=600), 600)
    again = learner.drain_changes()
    assert [c.change.split(":")[0] for c in again] == [f"stopped {diverged}"]


def test_a_shadow_that_fails_is_stopped_once_and_the_champion_serves_on() -> None:
    registry = {"logreg": model_spec("logreg", "binary", diverging, {"after": 10**9})}
    learner = Learner(["logreg"], registry=registry, partition=0)
    spec = learner.models["logreg"].spec
    shadow = spec.with_params(after=50).version
    plan = control.deploy(
        control.initial_plan(spec, changed_by="test"), spec.with_params(after=50), role="shadow"
    )
    learner.apply_plan(plan, 0)
    outputs = run(learner, clicks(300))
    assert {o.model_version for o in outputs} == {spec.version}
    changes = learner.drain_changes()
    assert len(changes) == 1 and changes[0].change.startswith(f"stopped {shadow}: diverged")
    any_version: Any = control.version_of(changes[0], shadow)
    assert not any_version.learning
