"""Predict-then-learn over batches of decoded events, in order."""

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from online_models.learning.dedup import DEFAULT_DEDUP_WINDOW
from online_models.learning.served import LearningError, ServedModel, scored
from online_models.learning.snapshot import Snapshot
from online_models.models.registry import ModelSpec
from online_models.quality.drift import DriftConfig, Watched
from online_models.quality.evaluation import EvaluationConfig, Scored
from online_models.versions.lifecycle import ModelGroup
from schemas import AnyPrediction, ErrorType, InputEvent, MetricsReport
from schemas.control import ModelPlan
from schemas.drift import DriftReport

__all__ = ["Learner", "LearningError", "Rejection", "ServedModel"]


@dataclass(frozen=True)
class Rejection:
    """An event that could not be used, and why (it becomes a dead letter)."""

    error_type: ErrorType
    reason: str


class Learner:
    """Serves the named models: for each event, predict, then learn when it has a label.

    >>> from datetime import datetime, UTC
    >>> from riverrun.builtin import app  # an app's models: riverrun's built-in ones
    >>> learner = Learner(["logreg"], registry=app.models)
    >>> event = InputEvent(event_id="e1", ts=datetime(2026, 1, 1, tzinfo=UTC), model="logreg",
    ...                    key="k", features={"device": "mobile"}, label=True)
    >>> [out.prediction for out in learner.process([event])]
    [0.5]
    """

    def __init__(
        self,
        model_names: Iterable[str],
        *,
        registry: Mapping[str, ModelSpec],
        params: Mapping[str, Mapping[str, Any]] | None = None,
        evaluation: EvaluationConfig | None = None,
        drift: DriftConfig | None = None,
        dedup_window: int = DEFAULT_DEDUP_WINDOW,
        clock: Callable[[], float] = time.perf_counter,
        partition: int | None = None,
        followers: Iterable[str] = (),
    ) -> None:
        params = params or {}
        self.models: dict[str, ServedModel] = {}
        for name in model_names:
            if name not in registry:
                known = ", ".join(sorted(registry))
                raise ValueError(f"unknown model {name!r}: choose among {known}")
            spec = registry[name].with_params(**params.get(name, {}))
            self.models[name] = ServedModel(
                spec, evaluation or EvaluationConfig(), drift, dedup_window=dedup_window
            )
        self.clock = clock
        self.evaluation, self.drift, self.dedup_window = evaluation, drift, dedup_window
        self.partition = partition
        #: Models with a plan on the control topic: every version of each, by name.
        #: `models[name]` is then the group's champion.
        self.groups: dict[str, ModelGroup] = {}
        #: Reports that came due, each with the input offset of the event that made it due.
        self.pending_reports: list[tuple[int | None, MetricsReport]] = []
        self.pending_drift: list[tuple[int | None, DriftReport]] = []
        #: Global models (`scope="global"`): predicted with the newest snapshot of the
        #: model their learner learns (`install`), scored against the labels seen here
        #: (their served quality), never learnt here: each labelled event is queued in
        #: `pending_examples` for the learn topic instead.
        self.followers = frozenset(followers) & set(self.models)
        self.pending_examples: list[tuple[int | None, str]] = []
        #: The batch's labelled predictions per model, scored after it (`_score`), each
        #: with its position in the batch and its input offset.
        self._scoring: dict[ServedModel, tuple[list[Scored], list[tuple[int, int | None]]]] = {}
        #: Of those, the ones the model's drift detectors watch (all but a follower's).
        self._watching: dict[ServedModel, list[Watched]] = {}
        #: The followers among them: scored for their gauge, their reports dropped.
        self._serving_only: set[ServedModel] = set()

    def process(
        self,
        events: Sequence[InputEvent],
        received_at: float | None = None,
        offsets: Sequence[int] | None = None,
    ) -> list[AnyPrediction | Rejection]:
        """Predict-then-learn each event in order; one output per event, in the same order.

        `received_at` (a `clock()` reading) is when the batch reached the worker; each
        prediction's latency is measured from it. `offsets`, the events' input offsets,
        let a restored model skip learning what its checkpoint already holds.
        """
        if received_at is None:
            received_at = self.clock()
        outputs: list[AnyPrediction | Rejection] = []
        try:
            for i, event in enumerate(events):
                try:
                    offset = offsets[i] if offsets is not None else None
                    outputs.append(self._predict_then_learn(event, received_at, offset, i))
                except LearningError as err:
                    outputs.append(Rejection(err.error_type, err.reason))
        finally:  # (what was learnt is scored, even if an error stops the batch)
            if self._scoring:
                self._score()
        return outputs

    def _score(self) -> None:
        """Score the batch's labelled predictions, each model's in one pass
        (`Evaluator.observe_many`, `DriftMonitor.observe_many`); their reports join
        `pending_reports` and `pending_drift` in event order."""
        due: list[tuple[int, int | None, MetricsReport]] = []
        drifts: list[tuple[int, int | None, DriftReport]] = []
        for model, (rows, where) in self._scoring.items():
            made = model.evaluator.observe_many(rows)
            if model in self._serving_only:
                continue  # a snapshot's served quality: a gauge (`quality`), not reports
            for at, report in made:
                index, offset = where[at]
                due.append((index, offset, report))
            watched = self._watching.pop(model, None)  # (then one row per scored row)
            if watched is not None and model.drift is not None:
                for at, drift in model.drift.observe_many(watched):
                    index, offset = where[at]
                    drifts.append((index, offset, drift))
        self._scoring, self._serving_only = {}, set()
        due.sort(key=itemgetter(0))
        drifts.sort(key=itemgetter(0))
        self.pending_reports += [(offset, report) for _, offset, report in due]
        self.pending_drift += [(offset, drift) for _, offset, drift in drifts]

    def _predict_then_learn(
        self, event: InputEvent, received_at: float, offset: int | None, index: int
    ) -> AnyPrediction:
        group = self.groups.get(event.model)
        if group is not None:
            return self._with_versions(group, event, received_at, offset)
        model = self.models.get(event.model)
        if model is None:
            raise LearningError(
                ErrorType.UNKNOWN_MODEL,
                f"no model named {event.model!r} is served here (served: "
                f"{', '.join(self.models)}); fix the event's 'model' field or add the model "
                "to RIVERRUN_MODELS",
            )
        model.refuse_duplicate(event.event_id, offset)
        features = dict(event.features)
        y = None if event.label is None else model.target(event.label)
        if offset is not None and offset < model.resume_offset:
            y = None  # learnt before the checkpoint this model was restored from
        updates = model.updates
        y_pred = model.predict(features)
        learns = y is not None
        if y is not None and event.model in self.followers:
            # Served quality of the snapshot; its learner learns the example, in the
            # learn topic's order, with the features as they are now.
            if scored(y_pred):
                self._to_score(model, (y, y_pred, features, event.key, event.ts), index, None)
                self._serving_only.add(model)
            self.pending_examples.append((offset, event.model))
            learns = False
        elif y is not None:
            model.learn(features, y)
            if scored(y_pred):
                self._to_score(model, (y, y_pred, features, event.key, event.ts), index, offset)
                if model.drift is not None:
                    self._watching.setdefault(model, []).append(
                        (features, y, y_pred, event.ts, offset)
                    )
        model.remember(event.event_id, offset)
        latency = max(0.0, self.clock() - received_at)
        return model.output(event, y_pred, updates, learns, latency)

    def _to_score(self, model: ServedModel, row: Scored, index: int, offset: int | None) -> None:
        rows, where = self._scoring.setdefault(model, ([], []))
        rows.append(row)
        where.append((index, offset))

    def _with_versions(
        self, group: ModelGroup, event: InputEvent, received_at: float, offset: int | None
    ) -> AnyPrediction:
        try:
            prediction, reports, drifts = group.process(event, received_at, offset, self.clock)
        except LearningError as err:
            if not group.diverged(event, err, offset):
                raise
            # The champion diverged: the previous one serves this event already.
            prediction, reports, drifts = group.process(event, received_at, offset, self.clock)
        self.pending_reports.extend(reports)
        self.pending_drift.extend(drifts)
        self.models[group.name] = group.versions[group.champion]
        return prediction

    # --- versions (online_models.versions.lifecycle) ------------------------------------------
    def build(self, spec: ModelSpec) -> ServedModel:
        """A fresh replica of `spec` with this learner's settings."""
        return ServedModel(
            spec, self.evaluation or EvaluationConfig(), self.drift, dedup_window=self.dedup_window
        )

    def apply_plan(
        self, plan: ModelPlan, offset: int, restored: Mapping[str, ServedModel] | None = None
    ) -> list[str]:
        """Serve `plan`'s versions of its model from input offset `offset` on (a plan
        of a model not served here is ignored); `restored` are replicas by version.
        Returns the versions that joined."""
        base = self.models.get(plan.model)
        if base is None or plan.model in self.followers:
            return []  # (a global model's versions are its learner's)
        group = self.groups.get(plan.model)
        models = dict(restored or {})
        if group is None:
            spec = base.spec
            group = self.groups[plan.model] = ModelGroup(
                plan.model, spec, self.build, self.partition
            )
            models.setdefault(spec.version, base)
        joined = group.apply(plan, offset, models)
        # The champion, or its stand-in when this code cannot build it (see
        # `ModelGroup.apply`): a plan never stops the partition.
        self.models[plan.model] = group.versions[group.champion]
        return joined

    def install(self, name: str, snapshot: Snapshot) -> bool:
        """Predict global model `name` with `snapshot` from now on; False when it is not
        one of this learner's followers or already holds that snapshot."""
        model = self.models.get(name)
        if model is None or name not in self.followers:
            return False
        if model.estimator is snapshot.estimator:
            return False
        model.estimator, model.updates = snapshot.estimator, snapshot.updates
        model.classes, model.version = dict(snapshot.classes), snapshot.version
        return True

    def drain_examples(self) -> list[tuple[int | None, str]]:
        """The labelled events of global models since the last call, in order: (input
        offset, model) of each, for the learn topic."""
        examples, self.pending_examples = self.pending_examples, []
        return examples

    def drain_unbuildable(self) -> list[str]:
        """One sentence per version of a plan this learner cannot build, not told
        before: which version, why, and what to do."""
        return [line for group in self.groups.values() for line in group.untold()]

    def replicas(self) -> dict[str, ServedModel]:
        """Every model replica by its checkpoint name (a version's lifecycle state is
        attached to it)."""
        replicas: dict[str, ServedModel] = {}
        for name, served in self.models.items():
            group = self.groups.get(name)
            if group is None:
                replicas[name] = served
                continue
            for version, member in group.versions.items():
                member.lifecycle = group.state
                replicas[group.replica_name(version)] = member
        return replicas

    def drain_shadow(self) -> list[tuple[int | None, AnyPrediction]]:
        """Predictions of the versions that did not serve, with their input offsets."""
        shadow: list[tuple[int | None, AnyPrediction]] = []
        for group in self.groups.values():
            shadow.extend(group.shadow)
            group.shadow = []
        return shadow

    def drain_changes(self) -> list[ModelPlan]:
        """Plan revisions the versions made themselves (rollback, breaker, gate)."""
        changes: list[ModelPlan] = []
        for group in self.groups.values():
            changes.extend(group.changes)
            group.changes = []
        return changes

    def quality(self) -> dict[str, tuple[str, float]]:
        """Rolling quality per model that has scored at least once: (metric name, value)."""
        return {
            name: headline
            for name, model in self.models.items()
            if (headline := model.evaluator.headline()) is not None
        }

    def drain_drift(self) -> list[DriftReport]:
        """Drift reports that came due since the last call, in order."""
        return [report for _, report in self.drain_drift_at()]

    def drain_reports(self) -> list[MetricsReport]:
        """Metrics reports that came due since the last call, in the order they did."""
        return [report for _, report in self.drain_reports_at()]

    def drain_drift_at(self) -> list[tuple[int | None, DriftReport]]:
        """`drain_drift()`, each with the input offset of the event that made it due."""
        reports, self.pending_drift = self.pending_drift, []
        return reports

    def drain_reports_at(self) -> list[tuple[int | None, MetricsReport]]:
        """`drain_reports()`, each with the input offset of the event that made it due."""
        reports, self.pending_reports = self.pending_reports, []
        return reports
