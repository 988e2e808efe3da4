"""A plan naming versions this code cannot build never stops a partition: it serves what it
can build, says what it cannot, and `retire --force` is the way out. Without a broker."""

from typing import Any

import pytest
from river import compose, linear_model, tree

from online_models.learning.learner import Learner
from online_models.models.features import mixed_features
from online_models.models.registry import ModelSpec, model_spec
from online_models.versions import plans as control
from schemas.control import BanditPlan, ExperimentPlan, GatePlan, ModelPlan
from tests.builtin import MODELS
from tests.unit.test_lifecycle import GOOD, T0, WEAK, clicks, run


def other_code(lr: float = 0.0005, l2: float = 0.0) -> Any:
    """What 'logreg' was before an edit of its code: another version, same parameters."""
    return mixed_features() | linear_model.LogisticRegression(l2=l2 + 0.001)


def linear(lr: float = 0.0005) -> Any:
    """The first version of the tests' two-pipeline apps."""
    return mixed_features() | linear_model.LogisticRegression()


def with_one(x: dict[str, Any]) -> dict[str, Any]:
    return {**x, "one": 1.0}


def former(params: dict[str, Any] = WEAK) -> ModelSpec:
    return model_spec("logreg", "binary", other_code, params)


def served() -> ModelSpec:
    return MODELS["logreg"].with_params(**WEAK)


def plan_of_former_code() -> ModelPlan:
    """A plan written by a worker of the former code: its version is the champion."""
    return control.initial_plan(former(), changed_by="test")


def test_an_unbuildable_champion_is_stood_in_for_by_the_apps_version() -> None:
    """What the issue saw: `apply_plan` raised KeyError and the worker crashed at each start."""
    plan = plan_of_former_code()
    gone = former().version
    learner = Learner(["logreg"], params={"logreg": WEAK}, registry=MODELS)
    learner.apply_plan(plan, 0)  # raised KeyError
    group = learner.groups["logreg"]
    assert group.champion == served().version == learner.models["logreg"].version
    outputs = run(learner, clicks(50))
    assert {o.model_version for o in outputs} == {served().version}
    assert {o.routing.role for o in outputs} == {"champion"}
    assert learner.models["logreg"].updates == 50  # it learns: the partition goes on
    assert set(group.unbuildable) == {gone}
    status = group.status(50, T0)
    assert status.unbuildable.keys() == {gone} and status.serving == served().version
    told = learner.drain_unbuildable()
    assert len(told) == 1 and told[0].startswith(
        f"logreg: cannot build {gone} (champion) of the plan; {served().version} serves in "
        "its place: this worker's code builds"
    )
    assert f"riverrun models retire --force {gone}" in told[0]
    learner.apply_plan(plan.model_copy(update={"revision": 2}), 50)
    assert learner.drain_unbuildable() == []  # told once
    assert learner.models["logreg"].updates == 50  # the stand-in kept what it learnt


def test_the_latest_buildable_previous_champion_stands_in_first() -> None:
    ours = served()
    plan = control.initial_plan(ours, changed_by="test")
    plan = _promoted(control.deploy(plan, former(), role="shadow"), former().version)
    assert plan.previous_champions == [ours.version]
    learner = Learner(["logreg"], params={"logreg": WEAK}, registry=MODELS)
    learner.apply_plan(plan, 0)
    assert learner.groups["logreg"].champion == ours.version
    outputs = run(learner, clicks(20))
    assert {o.model_version for o in outputs} == {ours.version}


def _promoted(plan: ModelPlan, version: str) -> ModelPlan:
    """`version` made champion by hand (what the gate does once it passed)."""
    old = control.champion(plan).version
    versions = [
        v.model_copy(update={"role": "champion" if v.version == version else "shadow"})
        if v.version in (version, old)
        else v
        for v in plan.versions
    ]
    return plan.model_copy(
        update={"revision": plan.revision + 1, "versions": versions, "previous_champions": [old]}
    )


@pytest.mark.parametrize("routing", ["canary", "experiment", "bandit"])
def test_routing_to_an_unbuildable_version_never_raises(routing: str) -> None:
    ours, gone = served(), former(GOOD)
    plan = control.initial_plan(ours, changed_by="test")
    if routing == "canary":
        plan = control.deploy(plan, gone, role="canary", share=1.0)
    else:
        plan = control.deploy(plan, gone, role="shadow")
        arms = [ours.version, gone.version]
        if routing == "experiment":
            plan = control.start_experiment(
                plan,
                ExperimentPlan(
                    experiment_id="ab",
                    arms=arms,
                    metric="ctr",
                    alpha=0.05,
                    power=0.8,
                    mde=0.05,
                    baseline=0.1,
                    sample_size=100,
                    started=T0,
                    learn="routed",
                ),
            )
        else:
            bandit = BanditPlan(
                policy="epsilon_greedy", arms=arms, params={"epsilon": 0.5}, learn="routed"
            )
            plan = control.start_bandit(plan, bandit)
    learner = Learner(["logreg"], params={"logreg": WEAK}, registry=MODELS)
    learner.apply_plan(plan, 0)
    events = clicks(300)
    outputs = run(learner, events[:150]) + run(
        learner, [e.model_copy(update={"label": None}) for e in events[150:]], 150
    )
    assert all(getattr(o, "model_version", None) == ours.version for o in outputs), outputs[:3]
    assert learner.groups["logreg"].unbuildable.keys() == {gone.version}
    from online_models.learning.request_time import predict_now

    answer = predict_now(learner, "logreg", "v1", events[0].features)
    assert answer.version == ours.version


def test_retire_force_makes_the_apps_version_champion() -> None:
    plan = plan_of_former_code()
    with pytest.raises(control.PlanError, match="retire it with --force"):
        control.retire(plan, former().version)
    retired = control.retire(plan, former().version, force=True, app=served())
    assert [(v.version, v.role) for v in retired.versions] == [(served().version, "champion")]
    assert retired.change == (
        f"retired {former().version} by force ({served().version} is the champion now)"
    )
    learner = Learner(["logreg"], params={"logreg": WEAK}, registry=MODELS)
    learner.apply_plan(retired, 0)
    assert learner.groups["logreg"].unbuildable == {}


def test_retire_force_prefers_the_latest_previous_champion_the_code_builds() -> None:
    ours = served()
    plan = control.deploy(control.initial_plan(ours, changed_by="test"), former(), role="shadow")
    plan = _promoted(plan, former().version)
    retired = control.retire(plan, former().version, force=True, app=ours)
    assert [(v.version, v.role) for v in retired.versions] == [(ours.version, "champion")]
    assert retired.previous_champions == []
    # A predecessor the code cannot build either is passed over for the app's version.
    third = model_spec("logreg", "binary", other_code, {**WEAK, "l2": 0.1})
    plan = control.deploy(plan, third, role="shadow")
    plan = _promoted(plan, third.version).model_copy(
        update={"previous_champions": [ours.version, former().version]}
    )
    retired = control.retire(plan, third.version, force=True, app=ours)
    assert control.champion(retired).version == ours.version


def test_retire_force_of_an_arm_stops_the_experiment() -> None:
    ours, gone = served(), former(GOOD)
    plan = control.deploy(control.initial_plan(ours, changed_by="test"), gone, role="shadow")
    plan = control.start_bandit(plan, BanditPlan(policy="ucb", arms=[ours.version, gone.version]))
    with pytest.raises(control.PlanError, match="stop it first"):
        control.retire(plan, gone.version)
    retired = control.retire(plan, gone.version, force=True, app=ours)
    assert retired.bandit is None and [v.role for v in retired.versions] == ["champion"]


# --- two pipelines as versions of one model ------------------------------------------------
def test_a_second_factory_with_its_own_version_is_another_version_of_the_model() -> None:
    import riverrun

    app = riverrun.App()
    app.model("ctr", task="binary")(linear)

    @app.model("ctr", task="binary", version="2")
    def hoeffding(grace_period: int = 50) -> Any:
        return tree.HoeffdingTreeClassifier(grace_period=grace_period)

    spec = app.models["ctr"]
    assert spec.factory is linear  # the first registered is served
    second = spec.registered("2")
    assert second is not None and second.version == "ctr@2" and second.factory is hoeffding
    assert spec.registered("ctr@2") == second and spec.registered("3") is None
    assert spec.building("ctr@2", {"grace_period": 50}) == second
    assert spec.building("ctr@2", {"grace_period": 10}) is None

    with pytest.raises(ValueError, match=r"registered twice .*pin a version on the later one"):
        app.model("ctr", task="binary")(hoeffding)
    with pytest.raises(ValueError, match="has version '2' twice"):
        app.model("ctr", task="binary", version="2")(hoeffding)
    with pytest.raises(ValueError, match="versions of one model serve one task"):
        app.model("ctr", task="regression", version="3")(hoeffding)


def test_a_second_pipeline_deployed_in_shadow_is_promoted_by_the_gate() -> None:
    """Two different pipelines, compared on the same events; the better one wins the gate."""
    import riverrun

    app = riverrun.App()

    @app.model("logreg", task="binary")
    def weak(lr: float = 0.0005) -> Any:
        from river import optim

        return mixed_features() | linear_model.LogisticRegression(optim.SGD(lr))

    @app.model("logreg", task="binary", version="2")
    def better(lr: float = 0.05) -> Any:  # another pipeline: a feature more, a faster rate
        from river import optim

        features = compose.FuncTransformer(with_one)
        return features | mixed_features() | linear_model.LogisticRegression(optim.SGD(lr))

    learner = Learner(["logreg"], registry=app.models)
    spec = learner.models["logreg"].spec
    second = spec.registered("2")
    assert second is not None
    plan = control.initial_plan(spec, changed_by="test")
    plan = control.with_gate(plan, GatePlan(min_labelled=1500, auto_promote=True, canary_share=0.2))
    plan = control.deploy(plan, second, role="shadow")
    learner.apply_plan(plan, 0)
    assert set(learner.groups["logreg"].versions) == {spec.version, "logreg@2"}
    roles = []
    for start in range(0, 6000, 500):
        run(learner, clicks(500, start=start), start)
        roles += [{v.version: v.role for v in c.versions} for c in learner.drain_changes()]
    assert [r["logreg@2"] for r in roles][:2] == ["canary", "champion"]
    assert learner.models["logreg"].version == "logreg@2"
    assert "with_one" in learner.models["logreg"].estimator.steps  # the second pipeline serves


def test_a_second_factory_that_fails_is_refused_at_start_or_left_unbuilt_by_a_plan() -> None:
    import riverrun
    from online_models.models.registry import ModelError, resolve

    app = riverrun.App()
    app.model("logreg", task="binary")(linear)

    @app.model("logreg", task="binary", version="2")
    def picky(grace_period: int = 50) -> Any:
        if grace_period < 0:
            raise ValueError("grace_period must be positive")
        return tree.HoeffdingTreeClassifier(grace_period=grace_period)

    @app.model("other", task="binary")
    def other() -> Any:
        return mixed_features() | linear_model.LogisticRegression()

    @app.model("other", task="binary", version="2")
    def broken() -> Any:
        raise RuntimeError("no such file")

    with pytest.raises(ModelError, match=r"broken\) failed to build its model \(RuntimeError"):
        resolve(app.models, ["other"], {})
    spec = resolve(app.models, ["logreg"], {})["logreg"]
    bad = spec.registered("2").with_params(grace_period=-1)  # type: ignore[union-attr]
    plan = control.deploy(control.initial_plan(spec, changed_by="test"), bad, role="shadow")
    learner = Learner(["logreg"], registry=app.models)
    learner.apply_plan(plan, 0)  # its factory raises: the version is left out, not a crash
    (told,) = learner.drain_unbuildable()
    assert f"cannot build {bad.version} (shadow) of the plan: model 'logreg'" in told
    assert "failed to build its model (ValueError: grace_period must be positive)" in told
    assert f"`riverrun models retire {bad.version}`" in told
    assert {o.model_version for o in run(learner, clicks(10))} == {spec.version}
