"""What `riverrun models` and `riverrun experiments` do (the click commands are in
`streams.cli.main`): arguments read into plan edits, the partitions' statuses merged, and the
text the commands print.

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
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import click
from pydantic import ValidationError

from online_models.models.registry import ModelError, ModelSpec
from online_models.versions import plans as control
from online_models.versions.bandits import BanditDesign, BanditError
from online_models.versions.experiments import (
    SEQUENTIAL_BURN_IN,
    ArmOutcomes,
    ExperimentDesign,
    ExperimentError,
    Metric,
    msprt_confidence_sequence,
    msprt_p_value,
)
from online_models.versions.lifecycle import design_of, experiment_verdict, merged_arms
from online_models.versions.plans import PlanError, version_figures
from schemas.control import (
    BanditPlan,
    ExperimentPlan,
    ExperimentResult,
    GatePlan,
    ModelPlan,
    ModelStatus,
    Role,
    VersionPlan,
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


# --- merging the partitions' statuses ------------------------------------------------
@dataclass(frozen=True)
class BanditFigures:
    decisions: int
    reward: float | None
    shares: dict[str, float]


def bandit_figures(statuses: Sequence[ModelStatus]) -> BanditFigures:
    """The bandit over the partitions: decisions and rewards summed, each arm's share of
    the decisions weighted by the partition's decisions."""
    decisions = sum(s.bandit_decisions for s in statuses)
    rewards = [s.bandit_reward for s in statuses if s.bandit_reward is not None]
    shares: dict[str, float] = {}
    for s in statuses:
        for arm, share in s.bandit_shares.items():
            shares[arm] = shares.get(arm, 0.0) + share * s.bandit_decisions
    if decisions:
        shares = {arm: total / decisions for arm, total in shares.items()}
    return BanditFigures(decisions, sum(rewards) if rewards else None, shares)


# --- text ----------------------------------------------------------------------------
def table(rows: Sequence[Sequence[str]], indent: str = "  ") -> list[str]:
    """Rows as left-aligned columns two spaces apart.

    >>> table([["a", "bb"], ["ccc", "d"]], indent="")
    ['a    bb', 'ccc  d']
    """
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        (indent + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True))).rstrip()
        for row in rows
    ]


def _number(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _when(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def describe_gate(gate: GatePlan) -> str:
    auto = "on" if gate.auto_promote else "off"
    return (
        f"min_labelled {gate.min_labelled}, delta {gate.delta:g}, auto-promote {auto}, "
        f"canary share {gate.canary_share:g}"
    )


def _provenance(v: VersionPlan) -> str:
    where = f"params {_json(v.params)}, joined r{v.joined_revision}"
    if v.backfill_from is not None:
        where += f", backfill from {_when(v.backfill_from)}"
    return where


def _buildable(spec: ModelSpec, v: VersionPlan) -> str | None:
    """Why the app cannot build version `v` (its code changed since), or None."""
    candidate = spec.building(v.version, v.params)
    if candidate is None:
        try:
            builds = spec.with_params(**v.params).version
        except Exception:  # the user's factory: these parameters are another factory's
            builds = ", ".join(other.version for other in spec.variants())
        way_out = "retire --force" if v.role == "champion" else "retire"
        return (
            f"the app's code builds {builds} with these params, not {v.version}: "
            "workers skip it until it is retired or the code that made it is deployed "
            f"(`riverrun models {way_out} {v.version}`)"
        )
    try:
        candidate.check()
    except ModelError as err:
        return str(err)
    return None


def _unbuilt(v: VersionPlan, statuses: Sequence[ModelStatus]) -> list[str]:
    """What the partitions whose code cannot build `v` report, and who serves instead."""
    reporting = [s for s in statuses if v.version in s.unbuildable]
    if not reporting:
        return []
    partitions = ", ".join(str(s.partition) for s in sorted(reporting, key=lambda s: s.partition))
    lines = [
        f"  cannot build {v.version} on partition(s) {partitions}: "
        f"{reporting[0].unbuildable[v.version]}"
    ]
    stand_ins = sorted({s.serving for s in reporting if s.serving and s.serving != v.version})
    if v.role == "champion" and stand_ins:
        lines.append(f"  serving in its place there: {', '.join(stand_ins)}")
    return lines


def describe_model(spec: ModelSpec, state: ControlState) -> list[str]:
    """`models list` of one model: its versions and their figures, what runs, the gate."""
    plan = state.plans.get(spec.name)
    if plan is None:
        return [f"{spec.name}: {spec.version} is the champion (the app's version); no plan"]
    statuses = state.statuses_of(spec.name)
    figures = version_figures(plan, statuses)
    lines = [
        f"{plan.model}: revision {plan.revision}, {_when(plan.changed_at)} by "
        f"{plan.changed_by}: {plan.change}"
    ]
    rows = [
        [
            "version",
            "role",
            "share",
            "learning",
            "labelled",
            "loss",
            "champion's",
            "served",
            "headline",
            "provenance",
        ]
    ]
    notes = []
    for v in plan.versions:
        f = figures[v.version]
        paused = f"paused ({v.paused_reason})" if v.paused_reason else "paused"
        stopped = not v.learning and (v.paused_reason or "").startswith(control.DIVERGED)
        if stopped:
            paused = "stopped (diverged)"  # the reason, long, in a note below
            notes.append(f"  stopped {v.version}: {v.paused_reason}")
        headline = ", ".join(f"{k} {_number(x)}" for k, x in f.headline_means().items())
        rows.append(
            [
                v.version,
                v.role,
                f"{v.share:g}" if v.role == "canary" else "-",
                "yes" if v.learning else paused,
                str(f.labelled),
                _number(f.loss),
                _number(f.champion_loss) if v.role != "champion" else "-",
                str(f.served),
                headline or "-",
                _provenance(v),
            ]
        )
        if v.role in ("shadow", "canary") and not stopped:
            passed, why = control.gate_verdict(plan, v.version, statuses)
            notes.append(f"  {'passed' if passed else 'not past'} the gate: {why}")
        problem = _buildable(spec, v)
        if problem is not None:
            notes.append(f"  cannot build {v.version}: {problem}")
        notes += _unbuilt(v, statuses)
    lines += table(rows)
    lines += notes
    lines.append(f"  gate: {describe_gate(plan.gate)}")
    if plan.previous_champions:
        lines.append(f"  previous champions: {', '.join(plan.previous_champions)}")
    if plan.experiment is not None:
        e, arms = plan.experiment, merged_arms(plan, statuses)
        counts = ", ".join(f"{arm} {arms[arm].n}/{e.sample_size}" for arm in e.arms)
        lines.append(f"  experiment {e.experiment_id} ({e.metric}): {counts} labelled")
    if plan.bandit is not None:
        b = bandit_figures(statuses)
        lines.append(
            f"  {plan.bandit.policy} bandit on {', '.join(plan.bandit.arms)}: "
            f"{b.decisions} decisions"
        )
    lines.append("  " + partitions_line(plan, statuses))
    return lines


def partitions_line(plan: ModelPlan, statuses: Sequence[ModelStatus]) -> str:
    """Which partitions report, and whether they applied the plan's revision."""
    if not statuses:
        return "no partition has reported yet"
    behind = sorted(s.partition for s in statuses if s.revision < plan.revision)
    trips = sum(s.breaker_trips for s in statuses)
    rollbacks = sum(s.rollbacks for s in statuses)
    line = f"{len(statuses)} partition(s) reporting"
    line += (
        f", partitions {', '.join(map(str, behind))} not yet at revision {plan.revision}"
        if behind
        else f", all at revision {plan.revision}"
    )
    if trips or rollbacks:
        line += f"; learning breaker trips {trips}, automatic rollbacks {rollbacks}"
    return line


def describe_models(specs: Mapping[str, ModelSpec], state: ControlState) -> list[str]:
    """`models list`: every model of `specs`, a blank line between those with a plan."""
    lines: list[str] = []
    previous = 1
    for spec in specs.values():
        block = describe_model(spec, state)
        if lines and max(previous, len(block)) > 1:
            lines.append("")
        lines += block
        previous = len(block)
    if not state.statuses:
        lines.append("no worker has published a status yet: start one with `riverrun worker`")
    return lines


def models_json(specs: Mapping[str, ModelSpec], state: ControlState) -> str:
    """`models list --json`: each model's plan (or null) and its partitions' statuses."""
    return json.dumps(
        {
            name: {
                "plan": plan.model_dump(mode="json") if (plan := state.plans.get(name)) else None,
                "statuses": [s.model_dump(mode="json") for s in state.statuses_of(name)],
            }
            for name in specs
        },
        indent=2,
    )


def describe_experiment(plan: ModelPlan, statuses: Sequence[ModelStatus]) -> list[str]:
    """`experiments status` of one model: progress per arm; effects and p-values only
    when every arm has its planned outcomes, or always-valid ones when sequential."""
    if plan.bandit is not None:
        return describe_bandit(plan, statuses)
    e = plan.experiment
    if e is None:
        return [f"{plan.model}: no experiment or bandit running"]
    kind = "sequential" if e.sequential else "fixed horizon"
    lines = [
        f"{plan.model}: experiment {e.experiment_id}, {e.metric}, {kind} (alpha {e.alpha:g}, "
        f"power {e.power:g}, mde {e.mde:g}, baseline {e.baseline:g}), learn {e.learn}, "
        f"started {_when(e.started)}"
    ]
    arms = merged_arms(plan, statuses)
    rows = [["arm", "", "labelled", "planned", "progress"]]
    for i, arm in enumerate(e.arms):
        n = arms[arm].n
        rows.append(
            [
                arm,
                "control" if i == 0 else "",
                str(n),
                str(e.sample_size),
                f"{min(n, e.sample_size) * 100 // e.sample_size}%",
            ]
        )
    lines += table(rows)
    if e.result is not None:
        return lines + describe_result(ExperimentResult.model_validate(e.result), "published")
    complete = all(arms[arm].n >= e.sample_size for arm in e.arms)
    verdict = experiment_verdict(plan, list(statuses)) if complete or e.sequential else None
    if verdict is not None:
        return lines + describe_result(verdict, "from the statuses, not yet published")
    if e.sequential:
        return lines + sequential_lines(e, arms)
    short = max(e.sample_size - arms[arm].n for arm in e.arms)
    return [
        *lines,
        f"  no effect, mean or p-value before every arm has {e.sample_size} labelled "
        f"outcomes (no peeking): {short} to go on the slowest arm",
    ]


def sequential_lines(e: ExperimentPlan, arms: Mapping[str, ArmOutcomes]) -> list[str]:
    """A sequential experiment's always-valid p-values and confidence sequences now
    (valid at any look; the workers' running minimum may be lower)."""
    design = design_of(e.model_copy(update={"sequential": True}))
    burn_in = min(SEQUENTIAL_BURN_IN, e.sample_size)
    if any(arms[arm].n < burn_in for arm in e.arms):
        return [f"  sequential: monitoring starts once every arm has {burn_in} labelled outcomes"]
    control_arm = arms[e.arms[0]]
    lines = [
        f"  sequential, always valid (stops when a p-value is below {design.comparison_alpha:g}):"
    ]
    for arm in e.arms[1:]:
        a = arms[arm]
        effect = a.mean - control_arm.mean
        variance = a.variance / a.n + control_arm.variance / control_arm.n
        if variance <= 0:
            lines.append(f"  {arm}: effect {effect:+.4f}, no variance yet")
            continue
        p = msprt_p_value(effect, variance, design.mixing_sd)
        low, high = msprt_confidence_sequence(
            effect, variance, design.mixing_sd, design.comparison_alpha
        )
        lines.append(
            f"  {arm} vs {e.arms[0]}: effect {effect:+.4f} [{low:+.4f}, {high:+.4f}], p {p:.4g}"
        )
    return lines


def describe_result(result: ExperimentResult, where: str) -> list[str]:
    """An experiment's result: the decision, each arm's outcomes, each comparison."""
    decision = (
        "keep the control" if result.decision == "keep_control" else f"{result.decision} wins"
    )
    lines = [f"  result ({where}, {_when(result.at)}): {decision}"]
    lines += table(
        [["arm", "n", "mean"]]
        + [[arm, str(n), _number(result.means.get(arm))] for arm, n in result.counts.items()],
        indent="    ",
    )
    for c in result.comparisons:
        lines.append(
            f"    {c.arm} vs {c.control}: effect {c.effect:+.4f} [{c.ci_low:+.4f}, "
            f"{c.ci_high:+.4f}], p {c.p_value:.4g}: {c.decision.replace('_', ' ')}"
        )
    return lines


def describe_bandit(plan: ModelPlan, statuses: Sequence[ModelStatus]) -> list[str]:
    """`experiments status` of a bandit: decisions, reward and each arm's share."""
    assert plan.bandit is not None
    b, figures = plan.bandit, bandit_figures(statuses)
    params = f", params {_json(b.params)}" if b.params else ""
    per = (
        f", reward {figures.reward / figures.decisions:.4f} per decision"
        if figures.reward is not None and figures.decisions
        else ""
    )
    lines = [
        f"{plan.model}: {b.policy} bandit (seed {b.seed}{params}), learn {b.learn}: "
        f"{figures.decisions} decisions{per}"
    ]
    rows = [["arm", "share"]] + [[arm, _number(figures.shares.get(arm))] for arm in b.arms]
    return lines + table(rows)


def describe_experiments(
    specs: Mapping[str, ModelSpec], state: ControlState, name: str | None
) -> list[str]:
    """`experiments status [NAME]`: that model's experiment or bandit, or every running one."""
    if name is not None:
        spec = served_spec(specs, name)
        plan = state.plans.get(spec.name)
        if plan is None:
            return [f"{spec.name}: no plan, so no experiment or bandit running"]
        return describe_experiment(plan, state.statuses_of(spec.name))
    lines: list[str] = []
    for spec in specs.values():
        plan = state.plans.get(spec.name)
        if plan is None or (plan.experiment is None and plan.bandit is None):
            continue
        if lines:
            lines.append("")
        lines += describe_experiment(plan, state.statuses_of(spec.name))
    return lines or ["no experiment or bandit is running"]
