"""Plans of the `control` topic: signing them, checking them, and every change to one.

A plan says which versions of a model exist and what each does (`schemas.control`).
Each change is a function from a plan to its next revision that raises `PlanError`, a
sentence saying why it cannot apply and what to do, instead of producing a plan that
cannot be served. The CLI and the workers' automatic changes (gate, rollback, breaker)
both go through them. No I/O.

>>> from riverrun.builtin import app
>>> MODELS = app.models
>>> plan = initial_plan(MODELS["logreg"], changed_by="cli")
>>> plan = deploy(plan, MODELS["logreg"].with_params(lr=0.1), role="shadow")
>>> [(v.version == MODELS["logreg"].version, v.role) for v in plan.versions]
[(True, 'champion'), (False, 'shadow')]
>>> signed = sign(plan, b"key")
>>> verify(signed.model_dump_json().encode(), b"key").revision
2
>>> verify(signed.model_dump_json().encode(), b"other")
Traceback (most recent call last):
...
online_models.versions.plans.ControlRefused: bad_signature: ...
"""

import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError

from online_models.models.registry import ModelSpec
from schemas.control import (
    BanditPlan,
    ControlMessage,
    ExperimentPlan,
    GatePlan,
    ModelPlan,
    ModelStatus,
    PartitionOwner,
    Role,
    VersionPlan,
)

Message = TypeVar("Message", bound=ModelPlan | ModelStatus | PartitionOwner)
_CONTROL: TypeAdapter[ControlMessage] = TypeAdapter(ControlMessage)


class PlanError(ValueError):
    """A change that cannot apply to the plan; `str()` says why and what to do."""


class ControlRefused(Exception):
    """A control message that must not be applied: `reason` is the metric label."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason


# --- signatures ----------------------------------------------------------------------
def _digest(message: BaseModel, key: bytes) -> str:
    unsigned = message.model_copy(update={"signature": ""}).model_dump_json()
    return hmac.new(key, unsigned.encode(), hashlib.sha256).hexdigest()


def sign(message: Message, key: bytes) -> Message:
    """`message` with its HMAC-SHA256 signature."""
    return message.model_copy(update={"signature": _digest(message, key)})  # type: ignore[return-value]


def verify(raw: bytes | None, key: bytes) -> ControlMessage:
    """The control message in `raw`; raises ControlRefused when it is not one, is not
    signed, or is signed with another key."""
    if raw is None:
        raise ControlRefused("malformed", "an empty control message (a tombstone)")
    try:
        message = _CONTROL.validate_json(raw)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ControlRefused(
            "malformed", f"not a control message ({where}: {first['msg']})"
        ) from None
    what = (
        f"the owner of {message.topic}[{message.partition}]"
        if isinstance(message, PartitionOwner)
        else f"the {message.kind} of {message.model!r}"
    )
    if not message.signature:
        raise ControlRefused(
            "unsigned",
            f"{what} is not signed: only "
            "`riverrun models` and workers with RIVERRUN_CHECKPOINT_KEY may write control "
            "messages",
        )
    if not hmac.compare_digest(_digest(message, key), message.signature):
        raise ControlRefused(
            "bad_signature",
            f"{what} fails its signature: it was altered, "
            "or signed with another key; give the CLI and every worker the same "
            "RIVERRUN_CHECKPOINT_KEY",
        )
    return message


# --- the plan's parts ----------------------------------------------------------------
def version_of(plan: ModelPlan, version: str) -> VersionPlan:
    """The version `version` of the plan (also accepts the hash after '@')."""
    for v in plan.versions:
        if v.version == version or v.version.partition("@")[2] == version:
            return v
    known = ", ".join(f"{v.version} ({v.role})" for v in plan.versions)
    raise PlanError(
        f"{plan.model} has no version {version!r} (it has: {known}); see `riverrun models list`"
    )


def champion(plan: ModelPlan) -> VersionPlan:
    """The version that serves every key nothing else takes."""
    return next(v for v in plan.versions if v.role == "champion")


def _now() -> datetime:
    return datetime.now(UTC)


def _revised(plan: ModelPlan, change: str, changed_by: str, **updates: Any) -> ModelPlan:
    revised = plan.model_copy(
        update={
            "revision": plan.revision + 1,
            "change": change,
            "changed_by": changed_by,
            "changed_at": _now(),
            "signature": "",
            **updates,
        }
    )
    return ModelPlan.model_validate(revised.model_dump())  # every field checked again


def _with_version(plan: ModelPlan, version: VersionPlan) -> list[VersionPlan]:
    return [version if v.version == version.version else v for v in plan.versions]


def _json_params(spec: ModelSpec) -> dict[str, Any]:
    params = dict(spec.params)
    try:
        return json.loads(json.dumps(params))  # type: ignore[no-any-return]
    except (TypeError, ValueError):
        raise PlanError(
            f"the parameters of {spec.name} ({params}) are not JSON values: a version "
            "deployed from the command line has JSON parameters only"
        ) from None


def initial_plan(spec: ModelSpec, *, changed_by: str) -> ModelPlan:
    """Revision 1: the app's own version of the model is the champion."""
    version = VersionPlan(
        version=spec.version, params=_json_params(spec), role="champion", joined_revision=1
    )
    return ModelPlan(
        model=spec.name,
        revision=1,
        versions=[version],
        change=f"{spec.version} is the champion (the app's version)",
        changed_by=changed_by,
        changed_at=_now(),
    )


# --- changes -------------------------------------------------------------------------
def deploy(
    plan: ModelPlan,
    spec: ModelSpec,
    *,
    role: Role = "shadow",
    share: float = 0.0,
    backfill_from: datetime | None = None,
    changed_by: str = "cli",
) -> ModelPlan:
    """A new version beside the others: in shadow (default) or as a canary. It cannot
    serve before the gate let it (`promote`); a canary's share of keys is served at once."""
    if role not in ("shadow", "canary"):
        raise PlanError(f"a new version starts as shadow or canary, not {role!r}; promote it later")
    if any(v.version == spec.version for v in plan.versions):
        raise PlanError(
            f"{spec.version} is deployed already (parameters {dict(spec.params)}); deploy "
            "other parameters, or promote or retire it"
        )
    if role == "canary" and not 0 < share <= 1:
        raise PlanError(f"a canary serves a share of keys in (0, 1], not {share}; pass --share")
    taken = sum(v.share for v in plan.versions if v.role == "canary")
    if role == "canary" and taken + share > 1:
        raise PlanError(
            f"canaries of {plan.model} serve {taken:g} of the keys already; "
            f"{share:g} more is over 1: lower --share"
        )
    version = VersionPlan(
        version=spec.version,
        params=_json_params(spec),
        role=role,
        share=share if role == "canary" else 0.0,
        backfill_from=backfill_from,
        joined_revision=plan.revision + 1,
    )
    keys = f" ({share:g} of keys)" if role == "canary" else ""
    where = f" backfilled from {backfill_from.isoformat()}" if backfill_from else ""
    change = f"deployed {spec.version} as {role}{keys}{where}"
    return _revised(plan, change, changed_by, versions=[*plan.versions, version])


@dataclass
class Figures:
    """One version over the partitions: what the gate counts since the version joined."""

    labelled: int = 0
    loss_sum: float = 0.0
    champion_loss_sum: float = 0.0
    served: int = 0
    partitions: int = 0
    headline: dict[str, list[tuple[float, int]]] = field(default_factory=dict)

    @property
    def loss(self) -> float | None:
        return self.loss_sum / self.labelled if self.labelled else None

    @property
    def champion_loss(self) -> float | None:
        return self.champion_loss_sum / self.labelled if self.labelled else None

    def headline_means(self) -> dict[str, float]:
        """Each rolling metric over the partitions, weighted by their labelled events
        (an approximation: the partitions' windows are not merged)."""
        means = {}
        for name, parts in self.headline.items():
            weight = sum(w for _, w in parts)
            if weight:
                means[name] = sum(v * w for v, w in parts) / weight
            else:
                means[name] = sum(v for v, _ in parts) / len(parts)
        return means


def version_figures(plan: ModelPlan, statuses: Sequence[ModelStatus]) -> dict[str, Figures]:
    """Each version's figures summed over the partitions whose status is of its role's
    revision or later (as the gate counts them: older ones count its previous role)."""
    figures = {v.version: Figures() for v in plan.versions}
    joined = {v.version: v.joined_revision for v in plan.versions}
    for status in statuses:
        if status.model != plan.model:
            continue
        for v in status.versions:
            f = figures.get(v.version)
            if f is None or status.revision < joined[v.version]:
                continue
            f.partitions += 1
            f.labelled += v.labelled
            f.served += v.served
            if v.loss is not None and v.champion_loss is not None:
                f.loss_sum += v.loss * v.labelled
                f.champion_loss_sum += v.champion_loss * v.labelled
            for name, value in v.headline.items():
                f.headline.setdefault(name, []).append((value, v.labelled))
    return figures


def gate_verdict(
    plan: ModelPlan, version: str, statuses: Sequence[ModelStatus]
) -> tuple[bool, str]:
    """Whether `version` passed the gate on the partitions' statuses: at least
    `min_labelled` labelled events (summed over partitions) since it joined, with a mean
    loss at most the champion's on the same events plus `delta`; and why."""
    gate, v = plan.gate, version_of(plan, version)
    target = v.version
    figures = version_figures(plan, statuses)[target]
    n = figures.labelled
    if n < gate.min_labelled:
        # The count starts again at each role: say from when, and which partitions'
        # statuses are still of an older revision (their events are not counted yet).
        behind = sorted(
            s.partition
            for s in statuses
            if s.model == plan.model and s.revision < v.joined_revision
        )
        waiting = (
            f"; partition(s) {', '.join(map(str, behind))} not yet at that revision"
            if behind
            else ("; no partition has reported yet" if not figures.partitions else "")
        )
        return False, (
            f"{version} was scored on {n} labelled events since it became {v.role} at "
            f"revision {v.joined_revision} (the gate counts each role afresh{waiting}); the "
            f"gate needs {gate.min_labelled}: wait, or lower it (`riverrun models gate "
            f"{plan.model} --min-labelled N`)"
        )
    mean, champion_mean = figures.loss_sum / n, figures.champion_loss_sum / n
    if mean > champion_mean + gate.delta:
        return False, (
            f"{version}'s mean loss {mean:.6g} is worse than the champion's {champion_mean:.6g} "
            f"+ delta {gate.delta:g} on the same {n} labelled events: it may not serve"
        )
    return True, (
        f"{version}: mean loss {mean:.6g} vs the champion's {champion_mean:.6g} on {n} "
        f"labelled events (gate: at least {gate.min_labelled}, delta {gate.delta:g})"
    )


def promote(
    plan: ModelPlan,
    version: str,
    statuses: Sequence[ModelStatus],
    *,
    changed_by: str = "cli",
    to: Role | None = None,
) -> ModelPlan:
    """`version` one step up once it passed the gate: shadow -> canary (the gate's
    canary share), canary -> champion (or straight to `to`). The champion it replaces
    stays in shadow, learning, for a rollback."""
    target = version_of(plan, version)
    if target.role == "champion":
        raise PlanError(f"{target.version} is the champion already")
    if target.role == "arm":
        raise PlanError(
            f"{target.version} is an arm of a running experiment or bandit; stop it first"
        )
    passed, why = gate_verdict(plan, target.version, statuses)
    if not passed:
        raise PlanError(why)
    step: Role = to or ("canary" if target.role == "shadow" else "champion")
    if step == "canary":
        share = plan.gate.canary_share
        taken = sum(v.share for v in plan.versions if v.role == "canary")
        share = min(share, 1 - taken)
        if share <= 0:
            raise PlanError(f"canaries of {plan.model} serve every key already: promote one")
        moved = target.model_copy(
            update={"role": "canary", "share": share, "joined_revision": plan.revision + 1}
        )
        return _revised(
            plan,
            f"promoted {target.version} to canary ({share:g} of keys): {why}",
            changed_by,
            versions=_with_version(plan, moved),
        )
    old = champion(plan)
    versions = []
    for v in plan.versions:
        if v.version == target.version:
            v = v.model_copy(
                update={"role": "champion", "share": 0.0, "joined_revision": plan.revision + 1}
            )
        elif v.version == old.version:
            v = v.model_copy(update={"role": "shadow", "joined_revision": plan.revision + 1})
        versions.append(v)
    return _revised(
        plan,
        f"promoted {target.version} to champion ({old.version} stays in shadow): {why}",
        changed_by,
        versions=versions,
        previous_champions=[*plan.previous_champions, old.version],
    )


def rollback(plan: ModelPlan, *, reason: str = "by hand", changed_by: str = "cli") -> ModelPlan:
    """The previous champion serves again; the champion it replaces goes to shadow."""
    present = {v.version for v in plan.versions}
    previous = [p for p in plan.previous_champions if p in present]
    if not previous:
        raise PlanError(
            f"{plan.model} has no previous champion left to roll back to (champion "
            f"{champion(plan).version}); deploy and promote another version"
        )
    back, old = previous[-1], champion(plan)
    versions = []
    for v in plan.versions:
        if v.version == back:
            v = v.model_copy(
                update={"role": "champion", "share": 0.0, "joined_revision": plan.revision + 1}
            )
        elif v.version == old.version:
            v = v.model_copy(update={"role": "shadow", "joined_revision": plan.revision + 1})
        versions.append(v)
    history = [p for p in plan.previous_champions if p != back]
    return _revised(
        plan,
        f"rolled back from {old.version} to {back} ({reason})",
        changed_by,
        versions=versions,
        previous_champions=history,
    )


def retire(
    plan: ModelPlan,
    version: str,
    *,
    changed_by: str = "cli",
    force: bool = False,
    app: ModelSpec | None = None,
) -> ModelPlan:
    """Remove a version that does not serve (its checkpoints stay on the topic).

    `force` removes any version, e.g. one the code can no longer build: an arm ends
    its experiment or bandit (the arms go back to shadow); the champion's place goes to
    the latest previous champion that `app` (the app's served model) builds, else to
    `app`'s own version (deployed if absent)."""
    target = version_of(plan, version)
    if target.role == "champion" and not force:
        raise PlanError(
            f"{target.version} is the champion: promote another version or roll back "
            "before retiring it, or retire it with --force (the previous champion the "
            "code builds, else the app's version, serves in its place)"
        )
    if target.role == "arm" and not force:
        raise PlanError(
            f"{target.version} is an arm of a running experiment or bandit; stop it first "
            "(or retire it with --force, which stops it)"
        )
    if force and target.role in ("champion", "arm"):
        return _forced_retire(plan, target, app, changed_by)
    versions = [v for v in plan.versions if v.version != target.version]
    history = [p for p in plan.previous_champions if p != target.version]
    return _revised(
        plan, f"retired {target.version}", changed_by, versions=versions, previous_champions=history
    )


def _forced_retire(
    plan: ModelPlan, target: VersionPlan, app: ModelSpec | None, changed_by: str
) -> ModelPlan:
    """`retire(force=True)` of the champion or an arm (see `retire`)."""
    routing = plan.experiment is not None or plan.bandit is not None
    stopped = " and stopped the experiment or bandit" if routing else ""
    versions = [
        v.model_copy(update={"role": "shadow", "joined_revision": plan.revision + 1})
        if v.role == "arm"
        else v
        for v in plan.versions
        if v.version != target.version
    ]
    history = [p for p in plan.previous_champions if p != target.version]
    successor = None
    if target.role == "champion":
        buildable = {
            v.version
            for v in versions
            if app is None or app.building(v.version, v.params) is not None
        }
        previous = [p for p in history if p in buildable]
        if previous:
            successor = previous[-1]
        elif app is not None:
            successor = app.version
            if all(v.version != successor for v in versions):
                joins = VersionPlan(
                    version=successor, params=_json_params(app), role="shadow", joined_revision=0
                )
                versions.append(joins)  # made champion below
        else:
            raise PlanError(
                f"{plan.model} has no previous champion to serve in {target.version}'s "
                "place; deploy and promote another version"
            )
        versions = [
            v.model_copy(
                update={"role": "champion", "share": 0.0, "joined_revision": plan.revision + 1}
            )
            if v.version == successor
            else v
            for v in versions
        ]
        history = [p for p in history if p != successor]
    instead = f" ({successor} is the champion now)" if successor is not None else ""
    return _revised(
        plan,
        f"retired {target.version} by force{stopped}{instead}",
        changed_by,
        versions=versions,
        previous_champions=history,
        experiment=None,
        bandit=None,
    )


def set_learning(
    plan: ModelPlan,
    version: str,
    learning: bool,
    *,
    reason: str = "by hand",
    changed_by: str = "cli",
) -> ModelPlan:
    """Pause or resume the learning of one version (`*` for every version)."""
    targets = plan.versions if version == "*" else [version_of(plan, version)]
    names = {v.version for v in targets}
    if all(v.learning == learning for v in targets):
        state = "learning" if learning else "paused"
        raise PlanError(
            f"{', '.join(sorted(names))} {'is' if len(names) == 1 else 'are'} {state} already"
        )
    versions = [
        v.model_copy(update={"learning": learning, "paused_reason": None if learning else reason})
        if v.version in names
        else v
        for v in plan.versions
    ]
    verb = "resumed learning of" if learning else "paused learning of"
    return _revised(
        plan, f"{verb} {', '.join(sorted(names))} ({reason})", changed_by, versions=versions
    )


#: How the `paused_reason` of a version stopped by `stop_diverged` begins.
DIVERGED = "diverged"


def stop_diverged(
    plan: ModelPlan, version: str, *, reason: str, changed_by: str = "cli"
) -> ModelPlan:
    """Stop a version that can no longer predict: it learns no more, and `reason` (which
    begins with DIVERGED) says why and what to do (`models list` shows it)."""
    target = version_of(plan, version)
    stopped = target.model_copy(update={"learning": False, "paused_reason": reason})
    return _revised(
        plan,
        f"stopped {target.version}: {reason}",
        changed_by,
        versions=_with_version(plan, stopped),
    )


def _arms(plan: ModelPlan, arms: Sequence[str]) -> list[str]:
    if plan.experiment is not None or plan.bandit is not None:
        running = "an experiment" if plan.experiment is not None else "a bandit"
        raise PlanError(f"{plan.model} runs {running} already; stop it first")
    resolved = [version_of(plan, arm).version for arm in arms]
    if len(set(resolved)) != len(resolved) or len(resolved) < 2:
        raise PlanError(f"give at least two different versions as arms, not {list(arms)}")
    return resolved


def _as_arms(plan: ModelPlan, arms: Sequence[str]) -> list[VersionPlan]:
    return [
        v.model_copy(update={"role": "arm", "share": 0.0, "joined_revision": plan.revision + 1})
        if v.version in arms and v.role != "champion"
        else v
        for v in plan.versions
    ]


def start_experiment(
    plan: ModelPlan, experiment: ExperimentPlan, *, changed_by: str = "cli"
) -> ModelPlan:
    """Route the model's keys among the experiment's arms (by a hash of the key)."""
    arms = _arms(plan, experiment.arms)
    experiment = experiment.model_copy(update={"arms": arms})
    change = (
        f"started experiment {experiment.experiment_id} on {', '.join(arms)}: "
        f"{experiment.sample_size} labelled outcomes per arm"
    )
    return _revised(plan, change, changed_by, experiment=experiment, versions=_as_arms(plan, arms))


def start_bandit(plan: ModelPlan, bandit: BanditPlan, *, changed_by: str = "cli") -> ModelPlan:
    """Route the model's events among the bandit's arms with a River policy."""
    arms = _arms(plan, bandit.arms)
    bandit = bandit.model_copy(update={"arms": arms})
    return _revised(
        plan,
        f"started a bandit ({bandit.policy}) on {', '.join(arms)}",
        changed_by,
        bandit=bandit,
        versions=_as_arms(plan, arms),
    )


def stop_routing(
    plan: ModelPlan, *, result: Mapping[str, Any] | None = None, changed_by: str = "cli"
) -> ModelPlan:
    """End the experiment or bandit: its arms go back to shadow (the champion stays)."""
    if plan.experiment is None and plan.bandit is None:
        raise PlanError(f"{plan.model} runs no experiment or bandit")
    versions = [
        v.model_copy(update={"role": "shadow", "joined_revision": plan.revision + 1})
        if v.role == "arm"
        else v
        for v in plan.versions
    ]
    what = (
        f"experiment {plan.experiment.experiment_id}"
        if plan.experiment is not None
        else "the bandit"
    )
    change = f"stopped {what}" + (f": {result.get('decision')}" if result else "")
    return _revised(plan, change, changed_by, versions=versions, experiment=None, bandit=None)


def with_gate(plan: ModelPlan, gate: GatePlan, *, changed_by: str = "cli") -> ModelPlan:
    """The plan with another gate."""
    change = (
        f"gate: at least {gate.min_labelled} labelled events, delta {gate.delta:g}, "
        f"auto-promote {'on' if gate.auto_promote else 'off'}, canary share {gate.canary_share:g}"
    )
    return _revised(plan, change, changed_by, gate=gate)
