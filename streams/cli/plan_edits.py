"""What `riverrun models` and `riverrun experiments` change (their click commands are in
`streams.cli.models` and `streams.cli.experiments`, the text they print in
`streams.cli.models_render`): arguments read into plan edits, and an edit applied.

Every change is a function from the model's plan (and its partitions' statuses) to its
next revision, one of `online_models.versions.plans`'s; `change` reads the control topic, applies
it to the plan (or to the app's initial plan, published with it, when the model has none
yet) and writes the result. The only I/O is `change`'s and the commands' `read_control`.

>>> parse_target("logreg@cb47a876")
('logreg', 'cb47a876')
>>> parse_target("logreg", every=True)
('logreg', '*')
"""

import difflib
import json
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, cast

import click
from pydantic import ValidationError

from online_models.models.registry import ModelError, ModelSpec
from online_models.versions import plans as control
from online_models.versions.bandits import BanditDesign, BanditError
from online_models.versions.experiments import (
    ExperimentDesign,
    ExperimentError,
    Metric,
)
from online_models.versions.plans import PlanError
from schemas.control import (
    BanditPlan,
    ExperimentPlan,
    GatePlan,
    ModelPlan,
    ModelStatus,
    Role,
)
from streams.kafka.topics import ensure_topics
from streams.runtime.control import ControlState, read_control, write_control
from streams.settings import Settings

#: A change to a model's plan, given its partitions' statuses (`online_models.versions.plans`).
Edit = Callable[[ModelPlan, list[ModelStatus]], ModelPlan]
CHANGED_BY = "cli"


# --- arguments -----------------------------------------------------------------------
def served_spec(specs: Mapping[str, ModelSpec], name: str) -> ModelSpec:
    """The app's served model `name`; one sentence naming those it has when unknown."""
    if name in specs:
        return specs[name]
    close = difflib.get_close_matches(name, list(specs), n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise click.ClickException(
        f"the app serves no model {name!r} ({hint}it serves: {', '.join(sorted(specs))}); "
        "pass --app with the app that serves it"
    )


def parse_params(text: str) -> dict[str, Any]:
    """`--params`: a JSON object of factory parameters.

    >>> parse_params('{"lr": 0.1}')
    {'lr': 0.1}
    """
    try:
        params = json.loads(text)
    except json.JSONDecodeError as err:
        raise click.BadParameter(
            f"{text!r} is not JSON ({err.msg} at character {err.pos}); pass an object, "
            "e.g. '{\"lr\": 0.1}'",
            param_hint="--params",
        ) from None
    if not isinstance(params, dict):
        raise click.BadParameter(
            f"{text!r} is not a JSON object of parameters; pass e.g. '{{\"lr\": 0.1}}'",
            param_hint="--params",
        )
    return params


def parse_time(text: str | None, option: str) -> datetime | None:
    """An ISO-8601 time (no zone means UTC), or None.

    >>> parse_time("2026-01-05T10:00", "--backfill-from").isoformat()
    '2026-01-05T10:00:00+00:00'
    """
    if text is None:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not an ISO-8601 time; pass e.g. 2026-01-05T10:00:00 (no zone = UTC)",
            param_hint=option,
        ) from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def parse_target(text: str, *, every: bool = False) -> tuple[str, str]:
    """`NAME@VERSION` as (model, version); VERSION is the full 'name@hash' or the hash.
    With `every`, `NAME` alone means every version ('*')."""
    name, at, version = text.partition("@")
    if name and version:
        return name, version
    if every and name and not at:
        return name, "*"
    alone = " (or NAME alone for every version)" if every else ""
    raise click.BadParameter(
        f"{text!r} names no version; pass NAME@VERSION{alone}, e.g. logreg@d79eff0f "
        "(see `riverrun models list`)",
        param_hint="NAME@VERSION",
    )


def parse_arms(text: str) -> list[str]:
    """`--arms V1,V2[,...]`: the versions (full or hash), the control first."""
    arms = [arm.strip() for arm in text.split(",") if arm.strip()]
    if len(arms) < 2:
        raise click.BadParameter(
            f"{text!r} names {len(arms)} arm(s); give at least two versions separated by "
            "commas, the control first",
            param_hint="--arms",
        )
    return arms


def parse_policy_params(items: Sequence[str]) -> dict[str, float | int]:
    """`--param k=v` (repeated): a bandit policy's numeric parameters.

    >>> parse_policy_params(["epsilon=0.1", "burn_in=20"])
    {'epsilon': 0.1, 'burn_in': 20}
    """
    params: dict[str, float | int] = {}
    for item in items:
        key, eq, value = (part.strip() for part in item.partition("="))
        number: float | int
        try:
            number = int(value)
        except ValueError:
            try:
                number = float(value)
            except ValueError:
                number = float("nan")
        if not key or not eq or number != number:  # NaN: not a number
            raise click.BadParameter(
                f"{item!r} is not NAME=NUMBER; pass e.g. --param epsilon=0.1",
                param_hint="--param",
            )
        params[key] = number
    return params


def registered_version(spec: ModelSpec, version: str) -> ModelSpec:
    """`--version`: the factory the app registers under the model's name with that
    pinned version (another pipeline of the same model); one sentence when none does."""
    found = spec.registered(version)
    if found is not None:
        return found
    pinned = [f"{s.pinned_version!r}" for s in spec.variants() if s.pinned_version is not None]
    has = f"it registers {', '.join(pinned)}" if pinned else "it registers none"
    raise click.BadParameter(
        f"the app registers no factory of {spec.name!r} with version {version!r} ({has}); "
        f'register one with @app.model("{spec.name}", task=..., version="{version}")',
        param_hint="--version",
    )


def new_version(spec: ModelSpec, params: Mapping[str, Any]) -> ModelSpec:
    """The app's served `spec` with `params` over its own, built once to check it."""
    candidate = spec.with_params(**params)
    try:
        candidate.check()
    except ModelError as err:
        raise click.ClickException(str(err)) from None
    return candidate


def _invalid(err: ValidationError) -> str:
    """A ValidationError of the CLI's own arguments: each field and what is wrong."""
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors(include_url=False)
    )


# --- edits ---------------------------------------------------------------------------
def deploying(
    version: ModelSpec, role: str, share: float | None, backfill_from: datetime | None
) -> Edit:
    """`models deploy`: `version` beside the others, as shadow or canary."""
    if role != "canary" and share is not None:
        raise click.BadParameter(
            f"only a canary serves a share of keys, not a {role}; add --role canary",
            param_hint="--share",
        )
    return lambda plan, _: control.deploy(
        plan,
        version,
        role=cast(Role, role),
        share=share or 0.0,
        backfill_from=backfill_from,
        changed_by=CHANGED_BY,
    )


def promoting(version: str) -> Edit:
    """`models promote`: one step up (shadow -> canary -> champion) once past the gate."""
    return lambda plan, statuses: control.promote(plan, version, statuses, changed_by=CHANGED_BY)


def rolling_back(reason: str) -> Edit:
    """`models rollback`: the previous champion serves again."""
    return lambda plan, _: control.rollback(plan, reason=reason, changed_by=CHANGED_BY)


def retiring(version: str, *, force: bool = False, app: ModelSpec | None = None) -> Edit:
    """`models retire`: remove a version that does not serve; `--force`: any version (the
    champion's place goes to its latest predecessor `app` builds, else to `app`'s version)."""
    return lambda plan, _: control.retire(
        plan, version, changed_by=CHANGED_BY, force=force, app=app
    )


def learning(version: str, on: bool, reason: str) -> Edit:
    """`models pause-learning` / `resume-learning` of a version ('*': every one)."""
    return lambda plan, _: control.set_learning(
        plan, version, on, reason=reason, changed_by=CHANGED_BY
    )


def describe_gate(gate: GatePlan) -> str:
    auto = "on" if gate.auto_promote else "off"
    return (
        f"min_labelled {gate.min_labelled}, delta {gate.delta:g}, auto-promote {auto}, "
        f"canary share {gate.canary_share:g}"
    )


def gating(**changes: Any) -> Edit:
    """`models gate`: the plan's gate with `changes` (None values are left as they are)."""
    given = {k: v for k, v in changes.items() if v is not None}

    def edit(plan: ModelPlan, _: list[ModelStatus]) -> ModelPlan:
        try:
            gate = GatePlan.model_validate({**plan.gate.model_dump(), **given})
        except ValidationError as err:
            raise PlanError(f"not a gate: {_invalid(err)}") from None
        if gate == plan.gate:
            raise PlanError(f"the gate of {plan.model} is {describe_gate(gate)} already")
        return control.with_gate(plan, gate, changed_by=CHANGED_BY)

    return edit


def experiment_design(
    arms: Sequence[str],
    metric: str,
    *,
    alpha: float,
    power: float,
    mde: float,
    baseline: float,
    sequential: bool,
) -> ExperimentDesign:
    """The design `experiments start` plans with (its sample size is computed up front)."""
    try:
        return ExperimentDesign(
            cast(Metric, metric),
            tuple(arms),
            alpha=alpha,
            power=power,
            mde=mde,
            baseline=baseline,
            sequential=sequential,
        )
    except ExperimentError as err:
        raise click.ClickException(str(err)) from None


def sample_size_line(design: ExperimentDesign) -> str:
    """What `experiments start` says before it starts: the planned outcomes per arm."""
    try:
        n = design.sample_size()
    except ExperimentError as err:
        raise click.ClickException(str(err)) from None
    if design.sequential:
        return (
            f"each arm needs up to {n} labelled outcomes (sequential: it may stop earlier, "
            "as soon as an always-valid p-value falls below alpha)"
        )
    return f"each arm needs {n} labelled outcomes; no result before that"


def experimenting(
    design: ExperimentDesign, *, learn: str, experiment_id: str | None, started: datetime
) -> Edit:
    """`experiments start`: route the keys among the design's arms (versions of the plan)."""

    def edit(plan: ModelPlan, _: list[ModelStatus]) -> ModelPlan:
        try:
            experiment = ExperimentPlan(
                experiment_id=experiment_id or f"{plan.model}-{plan.revision + 1}",
                arms=[control.version_of(plan, arm).version for arm in design.arms],
                metric=design.metric,
                alpha=design.alpha,
                power=design.power,
                mde=design.mde,
                baseline=design.baseline,
                sequential=design.sequential,
                sample_size=design.sample_size(),
                learn=cast(Any, learn),
                started=started,
            )
        except ValidationError as err:
            raise PlanError(f"not an experiment: {_invalid(err)}") from None
        return control.start_experiment(plan, experiment, changed_by=CHANGED_BY)

    return edit


def banditing(
    arms: Sequence[str], policy: str, *, seed: int, params: Mapping[str, float | int], learn: str
) -> Edit:
    """`experiments bandit`: route the events among the arms with a River policy."""

    def edit(plan: ModelPlan, _: list[ModelStatus]) -> ModelPlan:
        versions = [control.version_of(plan, arm).version for arm in arms]
        try:  # the worker builds this design: refuse here what it would refuse there
            BanditDesign(policy, tuple(versions), seed=seed, params=dict(params))
            bandit = BanditPlan(
                policy=cast(Any, policy),
                arms=versions,
                seed=seed,
                params=dict(params),
                learn=cast(Any, learn),
            )
        except BanditError as err:
            raise PlanError(str(err)) from None
        except ValidationError as err:
            raise PlanError(f"not a bandit: {_invalid(err)}") from None
        return control.start_bandit(plan, bandit, changed_by=CHANGED_BY)

    return edit


def stopping() -> Edit:
    """`experiments stop`: end the experiment or bandit (its decision, if published)."""
    return lambda plan, _: control.stop_routing(
        plan,
        result=plan.experiment.result if plan.experiment is not None else None,
        changed_by=CHANGED_BY,
    )


# --- applying an edit ----------------------------------------------------------------
def current_plan(state: ControlState, spec: ModelSpec) -> tuple[ModelPlan, list[ModelPlan]]:
    """The model's plan, and the plans to publish before a change to it: none when the
    topic has one, else the app's initial plan (its version is the champion)."""
    plan = state.plans.get(spec.name)
    if plan is not None:
        return plan, []
    try:
        first = control.initial_plan(spec, changed_by=CHANGED_BY)
    except PlanError as err:
        raise click.ClickException(str(err)) from None
    return first, [first]


def revise(state: ControlState, spec: ModelSpec, edit: Edit) -> list[ModelPlan]:
    """The plans to publish for `edit` (the initial plan first, when there was none);
    a ClickException with PlanError's sentence when it cannot apply."""
    plan, first = current_plan(state, spec)
    try:
        return [*first, edit(plan, state.statuses_of(spec.name))]
    except PlanError as err:
        raise click.ClickException(f"{spec.name}: {err}") from None


def change_line(plan: ModelPlan) -> str:
    """One printed line per revision written.

    The change sentences come from `online_models.versions.plans`, e.g. "logreg: deployed
    logreg@ab12cd34 as shadow (revision 3)".
    """
    return f"{plan.model}: {plan.change} (revision {plan.revision})"


def change(settings: Settings, spec: ModelSpec, edit: Edit) -> tuple[list[str], list[str]]:
    """Read the control topic, apply `edit` to the model's plan, write the revision (and
    the initial plan before it, if the model had none). Returns the warnings about the
    topic and the lines saying what changed."""
    state = read_control(settings)
    plans = revise(state, spec, edit)
    ensure_topics(settings, [settings.control_topic])  # compacted, not auto-created
    write_control(settings, plans)
    return refused_lines(state), [change_line(plan) for plan in plans]


def refused_lines(state: ControlState) -> list[str]:
    """A warning when the topic holds messages that were refused (their plans are not
    seen, so a change may start from an older revision)."""
    if not state.refused:
        return []
    reasons = ", ".join(sorted(set(state.refused)))
    return [
        f"warning: {len(state.refused)} control message(s) refused ({reasons}): the "
        "workers' plans may be signed with another RIVERRUN_CHECKPOINT_KEY than this one"
    ]
