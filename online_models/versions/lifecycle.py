"""The versions of one model on one input partition, and what routes among them.

A model without a plan on the control topic is one `ServedModel` (the learner's fast
path). With a plan, a `ModelGroup` holds one `ServedModel` per version and, per event:

1. routes it: a bandit's choice, else the experiment's arm for the event's key (a hash),
   else a canary whose share of the key hash space holds the key, else the champion;
2. lets every version predict it and, when labelled, learn from it (`learn="routed"`:
   arms only from the events routed to them), each with its own metrics and drift;
3. scores the gate (each challenger's loss next to the champion's on the same events),
   the experiment's outcomes and the bandit's reward;
4. watches for trouble: the serving champion's prediction is not finite, or its drift
   detectors raise a loss alarm while the previous champion does better on the recent
   events -> rollback (this event, or the next one, is served by the previous champion);
   the label rate or the mean label jumps -> the learning breaker pauses every version's
   learning (predictions go on);
5. the served prediction says its version, role, arm and selection probability; the
   others go to the shadow-predictions topic.

Automatic changes (rollback, breaker, gate promotion) apply here at once and are queued
in `changes` as new plan revisions for the worker to publish. No I/O.
"""

import contextlib
import hashlib
import math
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from online_models.learning.served import LearningError, ServedModel, scored
from online_models.models.registry import ModelError, ModelSpec
from online_models.versions import plans as control
from online_models.versions.bandits import BanditDesign, BanditError, BanditRouter
from online_models.versions.experiments import (
    ArmOutcomes,
    Experiment,
    ExperimentDesign,
    ExperimentError,
    assign_arm,
)
from schemas import AnyPrediction, ErrorType, InputEvent, MetricsReport
from schemas.control import (
    ArmStatus,
    BreakerPlan,
    ComparisonResult,
    ExperimentPlan,
    ExperimentResult,
    ModelPlan,
    ModelStatus,
    Routing,
    VersionPlan,
    VersionStatus,
)
from schemas.drift import DriftReport

#: Losses of each version kept to compare a champion with its predecessor (rollback).
RECENT_LOSSES = 200
#: Bandit decisions waiting for a label, per partition (beyond: the oldest is dropped).
MAX_WAITING = 100_000
_EPS = 1e-15


def event_loss(task: str, y: Any, y_pred: Any) -> float:
    """The per-event loss the gate compares: log loss for classifiers, absolute error
    for regressors.

    >>> round(event_loss("binary", True, 0.5), 6)
    0.693147
    >>> event_loss("regression", 3.0, 1.0)
    2.0
    """
    if task == "binary":
        p = y_pred if y else 1.0 - y_pred
        return -math.log(min(max(p, _EPS), 1.0))
    if task == "multiclass":
        return -math.log(min(max(y_pred.get(y, 0.0), _EPS), 1.0))
    return abs(float(y) - y_pred)


def key_bucket(key: str) -> float:
    """Where a key falls in [0, 1): the same in every process (canary shares).

    >>> key_bucket("visitor-1") == key_bucket("visitor-1")
    True
    """
    digest = hashlib.blake2b(key.encode(), digest_size=8, person=b"rr-canary").digest()
    return int.from_bytes(digest, "big") / 2**64


@dataclass
class Track:
    """A version's figures since it joined in its current role (its plan revision)."""

    joined_revision: int
    labelled: int = 0  # labelled events scored, the champion scored too
    loss: float = 0.0  # their summed loss
    champion_loss: float = 0.0  # the champion's summed loss on the same events
    served: int = 0
    recent: deque[float] = field(default_factory=lambda: deque(maxlen=RECENT_LOSSES))

    def recent_loss(self) -> float | None:
        return sum(self.recent) / len(self.recent) if self.recent else None


class LabelBreaker:
    """Trips when, over the last `window` events, the share of labelled events or the
    mean label exceeds `factor` times its level over every event before the window (once
    there were `reference` of them). Tripped, it stays so until `reset()`; events seen
    meanwhile do not become the reference."""

    def __init__(self, plan: BreakerPlan) -> None:
        self.plan = plan
        self.window: deque[tuple[bool, float]] = deque()
        self.window_labelled = 0
        self.window_sum = 0.0
        self.ref_events = self.ref_labelled = 0
        self.ref_sum = 0.0
        self.tripped: str | None = None
        self.trips = 0

    def observe(self, labelled: bool, value: float) -> str | None:
        """Count one event; the reason when this event trips the breaker."""
        if self.tripped is not None or not self.plan.enabled:
            return None
        self.window.append((labelled, value))
        self.window_labelled += labelled
        self.window_sum += value
        if len(self.window) > self.plan.window:
            old_labelled, old_value = self.window.popleft()
            self.window_labelled -= old_labelled
            self.window_sum -= old_value
            self.ref_events += 1
            self.ref_labelled += old_labelled
            self.ref_sum += old_value
        if self.ref_events < self.plan.reference or len(self.window) < self.plan.window:
            return None
        factor, n = self.plan.factor, self.plan.window
        rate, ref_rate = self.window_labelled / n, self.ref_labelled / self.ref_events
        if ref_rate > 0 and rate > factor * ref_rate:
            return self._trip(
                f"labelled share {rate:.3g} over the last {n} events is over "
                f"{factor:g}x its level {ref_rate:.3g}"
            )
        if self.window_labelled and self.ref_labelled:
            mean, ref_mean = (
                self.window_sum / self.window_labelled,
                self.ref_sum / self.ref_labelled,
            )
            if ref_mean > 0 and mean > factor * ref_mean:
                return self._trip(
                    f"mean label {mean:.3g} over the last {n} events is over "
                    f"{factor:g}x its level {ref_mean:.3g}"
                )
        return None

    def _trip(self, reason: str) -> str:
        self.tripped = reason
        self.trips += 1
        return reason

    def reset(self) -> None:
        """Learning resumed: watch again, from an empty window."""
        self.tripped = None
        self.window.clear()
        self.window_labelled, self.window_sum = 0, 0.0


@dataclass
class GroupState:
    """What a group holds besides its versions' models: checkpointed with each of them."""

    revision: int = 0  # of the plan applied
    tracks: dict[str, Track] = field(default_factory=dict)
    bandit: BanditRouter | None = None
    experiment: Experiment | None = None
    experiment_id: str | None = None
    breaker: LabelBreaker | None = None
    rollbacks: int = 0
    #: Input offset from which each version joined this partition.
    joined_at: dict[str, int] = field(default_factory=dict)
    #: Bandit decisions waiting for their outcome, by key (oldest first).
    waiting: dict[str, tuple[str, float]] = field(default_factory=dict)


Build = Callable[[ModelSpec], ServedModel]


class ModelGroup:
    """Every version of one model on one partition, run by its plan (see the module)."""

    def __init__(
        self,
        name: str,
        spec: ModelSpec,
        build: Build,
        partition: int | None = None,
    ) -> None:
        self.name = name
        self.spec = spec  # the app's version of the model (parameters applied)
        self.build = build
        self.partition = partition
        self.plan: ModelPlan | None = None
        self.versions: dict[str, ServedModel] = {}
        self.roles: dict[str, VersionPlan] = {}
        self.state = GroupState()
        #: Input offsets below this one were counted before a restore (gate, experiment,
        #: bandit, breaker): re-run, they are not counted again.
        self.resume_offset = 0
        #: Automatic plan revisions to publish, in order.
        self.changes: list[ModelPlan] = []
        #: Versions of the plan this worker cannot build, with the reason.
        self.unbuildable: dict[str, str] = {}
        #: Unbuildable versions already told (`Learner.drain_unbuildable`).
        self.told: set[str] = set()
        #: The version serving as champion while the plan's champion is unbuildable: its
        #: latest buildable predecessor, else the app's version (a fresh model).
        self.stand_in: str | None = None
        self.shadow: list[tuple[int | None, AnyPrediction]] = []
        self.exported = (0, 0)  # rollbacks and breaker trips counted in the metrics

    # --- plans -----------------------------------------------------------------------
    @property
    def champion(self) -> str:
        """The version that serves every key nothing else takes: the plan's champion, or
        its stand-in while this worker cannot build it (`stand_in`)."""
        assert self.plan is not None
        return self.stand_in or control.champion(self.plan).version

    def replica_name(self, version: str) -> str:
        """The checkpoint replica of a version: the model's name for the app's version
        (as before any plan), the version otherwise."""
        return self.name if self.spec.is_version(version) else version

    def apply(self, plan: ModelPlan, offset: int, models: Mapping[str, ServedModel]) -> list[str]:
        """Run `plan` from input offset `offset` on; `models` are replicas restored or
        running already, by version. Returns the versions that joined (they may want a
        backfill)."""
        self.plan = plan
        joined = []
        versions: dict[str, ServedModel] = {}
        self.unbuildable = {}
        for v in plan.versions:
            served = self.versions.get(v.version) or models.get(v.version)
            if served is None:
                spec = self.spec.building(v.version, v.params)
                failed = None
                if spec is not None:
                    try:  # a pinned version's factory has not built a model yet
                        spec.check()
                    except ModelError as err:
                        failed = str(err)
                if spec is None or failed is not None:
                    self.unbuildable[v.version] = self._unbuildable(plan, v, failed)
                    continue
                served = self.build(spec)
                served.resume_offset = offset
                joined.append(v.version)
                self.state.joined_at.setdefault(v.version, offset)
            served.learning = v.learning
            versions[v.version] = served
        self.roles = {v.version: v for v in plan.versions if v.version in versions}
        self.stand_in = None
        if control.champion(plan).version not in versions:
            joined += self._stand_in(plan, versions, models, offset)
        self.versions = versions
        tracks = self.state.tracks
        for version, v in self.roles.items():
            if version not in tracks or tracks[version].joined_revision != v.joined_revision:
                tracks[version] = Track(v.joined_revision)
        for gone in set(tracks) - set(self.roles):
            del tracks[gone]
        self._routing(plan)
        if self.state.breaker is None or self.state.breaker.plan != plan.breaker:
            self.state.breaker = LabelBreaker(plan.breaker)
        if self.state.breaker.tripped and all(v.learning for v in self.roles.values()):
            self.state.breaker.reset()  # learning resumed
        self.state.revision = plan.revision
        return joined

    def _unbuildable(self, plan: ModelPlan, v: VersionPlan, failed: str | None = None) -> str:
        """Why this worker does not serve `v` (`failed`: its factory's failure), and what
        to do: one sentence."""
        way_out = (
            f"`riverrun models retire --force {v.version}`"
            if v.role == "champion"
            else f"`riverrun models retire {v.version}`"
        )
        if v.role == "arm":
            way_out = f"`riverrun experiments stop {plan.model}`, then {way_out}"
        if failed is not None:
            return f"{failed}, or run {way_out}"
        builds = ", ".join(spec.version for spec in self.spec.variants())
        return (
            f"this worker's code builds {builds}, not it with parameters {v.params} (the code "
            f"changed since it was deployed); deploy the code that made it, or run {way_out}"
        )

    def untold(self) -> list[str]:
        """One sentence per unbuildable version not told before (for the log): which
        version, who serves in its place, why, and what to do."""
        lines = []
        roles = {v.version: v.role for v in self.plan.versions} if self.plan else {}
        for version, reason in self.unbuildable.items():
            if version in self.told:
                continue
            self.told.add(version)
            role = roles[version]
            instead = f"; {self.stand_in} serves in its place" if role == "champion" else ""
            lines.append(
                f"{self.name}: cannot build {version} ({role}) of the plan{instead}: {reason}"
            )
        return lines

    def _stand_in(
        self,
        plan: ModelPlan,
        versions: dict[str, ServedModel],
        models: Mapping[str, ServedModel],
        offset: int,
    ) -> list[str]:
        """Choose the version serving in the unbuildable champion's place: the latest
        previous champion this worker builds, else the app's version (fresh, or as it
        served already). Returns it when it joined."""
        previous = [p for p in plan.previous_champions if p in versions]
        if previous:
            self.stand_in = previous[-1]
            return []
        app = self.spec.version
        self.stand_in = app
        joined = []
        if app not in versions:
            served = self.versions.get(app) or models.get(app)
            if served is None:
                served = self.build(self.spec)
                served.resume_offset = offset
                joined.append(app)
            self.state.joined_at.setdefault(app, offset)
            versions[app] = served
            self.roles[app] = VersionPlan(
                version=app,
                params=dict(self.spec.params),
                role="champion",
                joined_revision=plan.revision,
            )
        return joined

    def _routing(self, plan: ModelPlan) -> None:
        s = self.state
        if plan.bandit is None:
            s.bandit = None
        else:
            b = plan.bandit
            design = BanditDesign(
                policy=b.policy, arms=tuple(b.arms), seed=b.seed, params=dict(b.params)
            )
            if s.bandit is None or s.bandit.design != design:
                s.bandit = BanditRouter(design)
        e = plan.experiment
        if e is None or e.result is not None:
            s.experiment, s.experiment_id = None, None
        elif s.experiment_id != e.experiment_id or s.experiment is None:
            s.experiment_id = e.experiment_id
            s.experiment = Experiment(design_of(e))

    def _change(self, revised: ModelPlan, offset: int) -> None:
        self.changes.append(revised)
        self.apply(revised, offset, {})

    # --- the event path --------------------------------------------------------------
    def route(self, key: str, labelled: bool = False) -> tuple[str, Routing]:
        """The version that serves `key` now, and why.

        Bandits: an unlabelled event is a decision waiting for its outcome; the next
        labelled event of the same key is that outcome (a late label): it is served by
        the same arm, which the label rewards. A labelled event without a waiting
        decision is a decision and its outcome at once."""
        assert self.plan is not None
        s = self.state
        if s.bandit is not None:
            waiting = s.waiting.pop(key, None) if labelled else None
            if waiting is not None:
                arm, probability = waiting
            else:
                decision = s.bandit.choose()
                arm, probability = decision.arm, decision.probability
                if not labelled:
                    s.waiting[key] = (arm, probability)
                    if len(s.waiting) > MAX_WAITING:
                        del s.waiting[next(iter(s.waiting))]  # the oldest decision
            return arm, Routing(role="arm", served=True, arm=arm, probability=probability)
        return self._route_by_key(key)

    def route_now(self, key: str) -> tuple[str, Routing]:
        """The version that would serve `key` now, changing nothing (a request-time
        prediction). Under a bandit: the arm of the key's waiting decision, else the arm
        the policy now gives the highest probability (no draw: the stream's own draws
        stay as they would be without requests)."""
        s = self.state
        if s.bandit is not None:
            waiting = s.waiting.get(key)
            if waiting is None:
                shares = s.bandit.probabilities()
                arm = max(shares, key=lambda a: (shares[a], a))
                waiting = (arm, shares[arm])
            arm, probability = waiting
            return arm, Routing(role="arm", served=True, arm=arm, probability=probability)
        return self._route_by_key(key)

    def _route_by_key(self, key: str) -> tuple[str, Routing]:
        """Experiment arm, canary or champion: what a key's hash and the plan decide."""
        assert self.plan is not None
        plan = self.plan
        if plan.experiment is not None and plan.experiment.result is None:
            e = plan.experiment
            arm = assign_arm(key, e.arms, salt=e.experiment_id)
            return arm, Routing(role="arm", served=True, arm=arm, experiment=e.experiment_id)
        champion = self.champion
        canaries = [v for v in self.roles.values() if v.role == "canary" and v.share > 0]
        if canaries:
            bucket, edge = key_bucket(key), 0.0
            for v in canaries:
                edge += v.share
                if bucket < edge:
                    return v.version, Routing(role="canary", served=True)
        return champion, Routing(role="champion", served=True)

    def process(
        self, event: InputEvent, received_at: float, offset: int | None, clock: Callable[[], float]
    ) -> tuple[
        AnyPrediction, list[tuple[int | None, MetricsReport]], list[tuple[int | None, DriftReport]]
    ]:
        """Predict-then-learn one event with every version; the served prediction and
        the reports that came due. Raises LearningError, before anything was learnt, when
        the event cannot be used or the serving version fails to predict."""
        assert self.plan is not None
        counted = offset is None or offset >= self.resume_offset
        champion = self.champion
        self.versions[champion].refuse_duplicate(event.event_id, offset)
        serving, routing = (
            self.route(event.key, event.label is not None)
            if counted
            else (champion, Routing(role="champion", served=True))
        )
        if serving not in self.versions:
            serving, routing = champion, Routing(role="champion", served=True)
        routed_only = self._routed_only()
        features = dict(event.features)
        # First every version predicts (a failure of the serving one leaves nothing
        # learnt: the event is then served by another version or dead-lettered) ...
        taking: list[tuple[str, ServedModel, Any, Any]] = []
        failed: dict[str, str] = {}  # challengers that diverged: stopped below
        for version, served in self.versions.items():
            if routed_only and self.roles[version].role == "arm" and version != serving:
                continue
            y = None if event.label is None else served.target(event.label)
            try:
                y_pred = served.predict(features)
            except LearningError as err:
                if version == serving:
                    raise
                if err.diverged:  # for good (not an exception of its code on this event)
                    failed[version] = err.summary
                continue  # a challenger that failed serves nothing and is not scored
            taking.append((version, served, y, y_pred))
        # ... then the labelled event is learnt and scored.
        losses: dict[str, float] = {}
        reports: list[tuple[int | None, MetricsReport]] = []
        drifts: list[tuple[int | None, DriftReport]] = []
        loss_alarm = False
        outputs: dict[str, tuple[Any, int, bool]] = {}
        for version, served, y, y_pred in taking:
            updates = served.updates
            if y is not None and scored(y_pred):
                losses[version] = event_loss(served.task, y, y_pred)
            learns = y is not None and served.learning
            if offset is not None and offset < served.resume_offset:
                learns = False  # learnt before the checkpoint this replica came from
            if learns:
                due = len(drifts)
                served.learn_and_score(event, features, y, y_pred, offset, reports, drifts)
                loss_alarm |= version == champion and any(
                    d.signal == "loss" and d.drift and d.trigger == "alarm" for _, d in drifts[due:]
                )
            outputs[version] = (y_pred, updates, learns)
        for served in self.versions.values():
            served.remember(event.event_id, offset)
        latency_at = clock()
        # The roles as this event was predicted: its label may promote a version below.
        roles, versions = {v: p.role for v, p in self.roles.items()}, self.versions
        if counted:
            self._count(event, serving, losses, offset, loss_alarm)
        latency = max(0.0, latency_at - received_at)
        for version, (y_pred, updates, learns) in outputs.items():
            if version != serving:
                self.shadow.append(
                    (
                        offset,
                        versions[version].output(
                            event,
                            y_pred,
                            updates,
                            learns,
                            latency,
                            Routing(role=roles[version], served=False),
                        ),
                    )
                )
        for version, reason in failed.items():
            self._stop_diverged(version, event, reason, offset)
        y_pred, updates, learns = outputs[serving]
        prediction = versions[serving].output(event, y_pred, updates, learns, latency, routing)
        return prediction, reports, drifts

    def _routed_only(self) -> bool:
        plan = self.plan
        assert plan is not None
        if plan.bandit is not None:
            return plan.bandit.learn == "routed"
        if plan.experiment is not None:
            return plan.experiment.learn == "routed"
        return False

    def _count(
        self,
        event: InputEvent,
        serving: str,
        losses: dict[str, float],
        offset: int | None,
        loss_alarm: bool,
    ) -> None:
        """Gate, experiment, bandit, breaker and rollback for one (not re-run) event."""
        s, champion = self.state, self.champion
        s.tracks[serving].served += 1
        champion_loss = losses.get(champion)
        gate = self.plan.gate if self.plan is not None else None
        due: list[str] = []
        for version, loss in losses.items():
            track = s.tracks[version]
            track.recent.append(loss)
            if champion_loss is not None:
                track.labelled += 1
                track.loss += loss
                track.champion_loss += champion_loss
                # The gate is looked at every min_labelled events (at the event that
                # completes them: the same event on every re-run).
                if (
                    gate is not None
                    and gate.auto_promote
                    and version != champion
                    and track.labelled % gate.min_labelled == 0
                ):
                    due.append(version)
        label = event.label
        if label is not None and serving in losses:
            outcome = self._outcome(label, losses[serving])
            if s.experiment is not None and serving in s.experiment.outcomes:
                with contextlib.suppress(ExperimentError):  # e.g. a label that is no click
                    s.experiment.observe(serving, outcome)
            if s.bandit is not None and self.plan is not None and self.plan.bandit is not None:
                with contextlib.suppress(BanditError):  # e.g. Thompson sampling and a 0.3 label
                    s.bandit.reward(serving, float(label) if not isinstance(label, str) else 0.0)
        where = offset if offset is not None else 0
        if s.breaker is not None:
            value = float(label) if label is not None and not isinstance(label, str) else 0.0
            reason = s.breaker.observe(label is not None, value)
            if reason is not None and self.plan is not None:
                paused = control.set_learning(
                    self.plan,
                    "*",
                    False,
                    reason=f"learning breaker: {reason}",
                    changed_by=self._by(),
                )
                self._change(paused, where + 1)
        if loss_alarm:
            self._rollback_if_better(f"loss alarm of {champion}'s drift detectors", where + 1)
        for version in due:
            self._promote_if_passed(version, where + 1)

    def _outcome(self, label: Any, loss: float) -> float:
        plan = self.plan
        assert plan is not None
        metric = plan.experiment.metric if plan.experiment is not None else "ctr"
        if metric == "ctr":
            return float(label) if not isinstance(label, str) else 0.0
        return loss

    def _by(self) -> str:
        return f"worker (partition {self.partition})"

    def _rollback_if_better(self, why: str, offset: int) -> bool:
        """Roll back to the previous champion when it did better on the recent events."""
        plan = self.plan
        assert plan is not None
        previous = [p for p in plan.previous_champions if p in self.versions]
        if not previous:
            return False
        champion, back = self.state.tracks[self.champion], self.state.tracks[previous[-1]]
        ours, theirs = champion.recent_loss(), back.recent_loss()
        if ours is None or theirs is None or theirs >= ours:
            return False
        reason = f"{why}; recent mean loss {ours:.4g} against {previous[-1]}'s {theirs:.4g}"
        self.state.rollbacks += 1
        self._change(control.rollback(plan, reason=reason, changed_by=self._by()), offset)
        return True

    def diverged(self, event: InputEvent, error: LearningError, offset: int | None) -> bool:
        """The serving champion failed on `event`: roll back when a previous champion is
        there (the caller then processes the event again); False when none is."""
        plan = self.plan
        if plan is None or error.error_type != ErrorType.LEARNING_ERROR:
            return False
        previous = [p for p in plan.previous_champions if p in self.versions]
        serving_champion = self.champion
        if not previous or serving_champion == previous[-1]:
            return False
        self.state.rollbacks += 1
        failed = "diverged" if error.diverged else "failed"  # its numbers, or its code
        reason = f"{serving_champion} {failed} ({error.summary})"
        where = offset if offset is not None else 0
        self._change(control.rollback(plan, reason=reason, changed_by=self._by()), where)
        return True

    def _stop_diverged(
        self, version: str, event: InputEvent, reason: str, offset: int | None
    ) -> None:
        """A version that did not serve diverged on `event` (`reason`): stop it in the
        plan (a revision the worker logs and `models list` shows), once, not every event."""
        plan, v = self.plan, self.roles.get(version)
        if plan is None or v is None:
            return
        if not v.learning and (v.paused_reason or "").startswith(control.DIVERGED):
            return  # stopped already
        where = f"offset {offset}" if offset is not None else "no offset"
        why = (
            f"{control.DIVERGED} on event {event.event_id} ({where}): {reason}; it predicts "
            f"and learns nothing more: retire it (`riverrun models retire {version}`), then "
            "deploy it again to start it afresh"
        )
        stopped = control.stop_diverged(plan, version, reason=why, changed_by=self._by())
        self._change(stopped, (offset if offset is not None else 0) + 1)

    def _promote_if_passed(self, version: str, offset: int) -> None:
        """With `auto_promote`: `version` one step up (shadow -> canary -> champion) when
        it passed the gate on this partition."""
        plan = self.plan
        if plan is None or version not in self.roles or self.roles[version].role == "arm":
            return
        if version in plan.previous_champions:
            return  # a champion rolled back from is not promoted again automatically
        status = self.status(offset, datetime.now(UTC))
        passed, _ = control.gate_verdict(plan, version, [status])
        if passed:
            self._change(control.promote(plan, version, [status], changed_by=self._by()), offset)

    # --- reporting -------------------------------------------------------------------
    def status(self, offset: int, at: datetime) -> ModelStatus:
        """This partition's figures for the control topic."""
        assert self.plan is not None
        s = self.state
        versions = []
        for version, v in self.roles.items():
            track, served = s.tracks[version], self.versions[version]
            headline = served.evaluator.headline()
            versions.append(
                VersionStatus(
                    version=version,
                    role=v.role,
                    learning=served.learning,
                    updates=served.updates,
                    labelled=track.labelled,
                    loss=track.loss / track.labelled if track.labelled else None,
                    champion_loss=track.champion_loss / track.labelled if track.labelled else None,
                    served=track.served,
                    headline={headline[0]: headline[1]} if headline is not None else {},
                )
            )
        arms = {}
        if s.experiment is not None:
            arms = {
                arm: ArmStatus(n=o.n, mean=o.mean, m2=max(o.m2, 0.0))
                for arm, o in s.experiment.outcomes.items()
            }
        bandit = s.bandit
        return ModelStatus(
            model=self.name,
            partition=self.partition or 0,
            revision=s.revision,
            offset=offset,
            versions=versions,
            experiment_id=s.experiment_id,
            arms=arms,
            bandit_shares=bandit.shares() if bandit is not None else {},
            bandit_reward=bandit.total_reward if bandit is not None else None,
            bandit_decisions=bandit.decisions if bandit is not None else 0,
            breaker_trips=s.breaker.trips if s.breaker is not None else 0,
            rollbacks=s.rollbacks,
            unbuildable=dict(self.unbuildable),
            serving=self.champion,
            at=at,
        )


def merged_outcomes(parts: list[ArmStatus]) -> ArmOutcomes:
    """One arm's outcomes over every partition (Chan et al.'s pairwise update of count,
    mean and sum of squared deviations: exact, whatever the order).

    >>> a = merged_outcomes([ArmStatus(n=2, mean=1.5, m2=0.5), ArmStatus(n=1, mean=4.0, m2=0.0)])
    >>> a.n, round(a.mean, 12), round(a.variance, 12)
    (3, 2.333333333333, 2.333333333333)
    """
    total = ArmOutcomes()
    for part in parts:
        if part.n == 0:
            continue
        n = total.n + part.n
        delta = part.mean - total.mean
        total.mean += delta * part.n / n
        total.m2 += part.m2 + delta * delta * total.n * part.n / n
        total.n = n
    return total


def design_of(e: ExperimentPlan) -> ExperimentDesign:
    """The statistical design of an experiment of a plan."""
    return ExperimentDesign(
        metric=e.metric,
        arms=tuple(e.arms),
        alpha=e.alpha,
        power=e.power,
        mde=e.mde,
        baseline=e.baseline,
        sequential=e.sequential,
    )


def merged_arms(plan: ModelPlan, statuses: Sequence[ModelStatus]) -> dict[str, ArmOutcomes]:
    """Each arm of the plan's experiment over the partitions whose status reports it."""
    e = plan.experiment
    if e is None:
        return {}
    ours = [s for s in statuses if s.experiment_id == e.experiment_id]
    return {arm: merged_outcomes([s.arms[arm] for s in ours if arm in s.arms]) for arm in e.arms}


def experiment_verdict(plan: ModelPlan, statuses: list[ModelStatus]) -> ExperimentResult | None:
    """The result of the plan's experiment from the partitions' statuses, once every
    arm has its planned labelled outcomes in total (or a sequential test stopped); None
    before: nobody sees an effect or a p-value earlier (no peeking)."""
    e = plan.experiment
    if e is None or e.result is not None:
        return None
    experiment = Experiment(design_of(e))
    experiment.outcomes.update(merged_arms(plan, statuses))
    if e.sequential:  # the always-valid p-values at this look, from the merged outcomes
        experiment._monitor(experiment.control)
    analysis = experiment.analysis()
    # Sequential: as soon as an always-valid p-value is low; else: every arm has its sample.
    if not (experiment.stopped if e.sequential else analysis.complete):
        return None
    return ExperimentResult(
        experiment_id=e.experiment_id,
        model=plan.model,
        metric=e.metric,
        sequential=e.sequential,
        alpha=e.alpha,
        power=e.power,
        mde=e.mde,
        sample_size=e.sample_size,
        counts={arm: o.n for arm, o in experiment.outcomes.items()},
        means={arm: o.mean for arm, o in experiment.outcomes.items()},
        comparisons=[
            ComparisonResult(
                arm=c.arm,
                control=c.control,
                effect=c.effect,
                ci_low=c.ci_low,
                ci_high=c.ci_high,
                p_value=min(max(c.p_value, 0.0), 1.0),
                decision=c.decision,
            )
            for c in analysis.comparisons
        ],
        decision=analysis.decision,
        at=datetime.now(UTC),
    )
