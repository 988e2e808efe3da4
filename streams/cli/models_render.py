"""The text `riverrun models list` and `riverrun experiments status` print: each version
of a model and its figures summed over the partitions' statuses, the gate, the experiment
or bandit (`streams.cli.plan_edits` changes the plans these describe)."""

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from online_models.models.registry import ModelError, ModelSpec
from online_models.versions import plans as control
from online_models.versions.experiments import (
    SEQUENTIAL_BURN_IN,
    ArmOutcomes,
    msprt_confidence_sequence,
    msprt_p_value,
)
from online_models.versions.lifecycle import design_of, experiment_verdict, merged_arms
from online_models.versions.plans import Figures, version_figures
from schemas.control import (
    ExperimentPlan,
    ExperimentResult,
    ModelPlan,
    ModelStatus,
    VersionPlan,
)
from streams.cli.plan_edits import describe_gate, served_spec
from streams.runtime.control import ControlState


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


#: The columns of `models list`'s table, one row per version.
VERSION_COLUMNS = [
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


def describe_model(spec: ModelSpec, state: ControlState) -> list[str]:
    """`models list` of one model: its versions and their figures, what runs, the gate."""
    plan = state.plans.get(spec.name)
    if plan is None:
        return [f"{spec.name}: {spec.version} is the champion (the app's version); no plan"]
    statuses = state.statuses_of(spec.name)
    figures = version_figures(plan, statuses)
    rows, notes = [VERSION_COLUMNS], []
    for v in plan.versions:
        row, version_notes = _version_row(spec, plan, v, figures[v.version], statuses)
        rows.append(row)
        notes += version_notes
    return [
        f"{plan.model}: revision {plan.revision}, {_when(plan.changed_at)} by "
        f"{plan.changed_by}: {plan.change}",
        *table(rows),
        *notes,
        *_what_runs(plan, statuses),
        "  " + partitions_line(plan, statuses),
    ]


def _version_row(
    spec: ModelSpec,
    plan: ModelPlan,
    v: VersionPlan,
    f: Figures,
    statuses: Sequence[ModelStatus],
) -> tuple[list[str], list[str]]:
    """Version `v`'s row of the table, and the notes below it (stopped, the gate's
    verdict, why it cannot be built)."""
    notes = []
    paused = f"paused ({v.paused_reason})" if v.paused_reason else "paused"
    stopped = not v.learning and (v.paused_reason or "").startswith(control.DIVERGED)
    if stopped:
        paused = "stopped (diverged)"  # the reason, long, in a note below
        notes.append(f"  stopped {v.version}: {v.paused_reason}")
    headline = ", ".join(f"{k} {_number(x)}" for k, x in f.headline_means().items())
    row = [
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
    if v.role in ("shadow", "canary") and not stopped:
        passed, why = control.gate_verdict(plan, v.version, statuses)
        notes.append(f"  {'passed' if passed else 'not past'} the gate: {why}")
    problem = _buildable(spec, v)
    if problem is not None:
        notes.append(f"  cannot build {v.version}: {problem}")
    return row, notes + _unbuilt(v, statuses)


def _what_runs(plan: ModelPlan, statuses: Sequence[ModelStatus]) -> list[str]:
    """The gate, the previous champions, the experiment or bandit of a model's plan."""
    lines = [f"  gate: {describe_gate(plan.gate)}"]
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
