"""Predict-then-learn over batches of decoded events, in order."""

import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from online_models.learning import failure_reasons
from online_models.learning.admission import label_problem
from online_models.learning.dedup import DEFAULT_DEDUP_WINDOW, RecentEvents
from online_models.models.registry import MODELS, ModelSpec
from online_models.quality.drift import DriftConfig, DriftMonitor
from online_models.quality.evaluation import EvaluationConfig, Evaluator, most_probable
from schemas import AnyPrediction, ClassPrediction, ErrorType, InputEvent, MetricsReport, Prediction
from schemas.control import ModelPlan, Routing
from schemas.drift import DriftReport
from schemas.fast_codec import constructed
from schemas.prediction import class_text

if TYPE_CHECKING:
    from online_models.versions.lifecycle import ModelGroup


@dataclass(frozen=True)
class Rejection:
    """An event that could not be used, and why (it becomes a dead letter)."""

    error_type: ErrorType
    reason: str


class LearningError(ValueError):
    """An event that is valid JSON but cannot be learnt from; carries the dead-letter type.
    `diverged`: the model's numbers left the finite range (not its code raising)."""

    def __init__(self, error_type: ErrorType, reason: str, *, diverged: bool = False) -> None:
        super().__init__(reason)
        self.error_type = error_type
        self.reason = reason
        self.diverged = diverged

    @property
    def summary(self) -> str:
        """What failed, without the advice (a rollback's reason quotes it)."""
        return failure_reasons.summary(self.reason)


#: Exceptions of a model's code (a feature function, River fed a wrong value) that are the
#: event's fault or the code's, not the worker's: the event is dead-lettered.
MODEL_FAULTS = (ArithmeticError, ValueError, TypeError, KeyError, IndexError, AttributeError)

#: The fields a v1 prediction is built with (the rest are defaults), as model_construct
#: records them.
_PREDICTION_SET = frozenset(Prediction.model_fields) - {"schema_version", "routing"}

_NO_ROUTING: tuple[frozenset[str], frozenset[str]] = (frozenset(), frozenset({"routing"}))

#: What a checkpoint of a `ServedModel` holds (`ServedModel.state()`): estimator,
#: updates, evaluator, classes, drift monitor, recent event ids, and the lifecycle state
#: of the model's versions on the partition (`online_models.versions.lifecycle.GroupState`, None
#: for a model without a plan).
State = tuple[
    Any, int, Evaluator, dict[str, bool | int | str], DriftMonitor | None, RecentEvents, Any
]


def scored(y_pred: Any) -> bool:
    """Whether a prediction is scored: not that of a classifier that knows no class yet
    (None, or no probabilities), which River's `progressive_val_score` skips too."""
    return y_pred is not None and y_pred != {}


class ServedModel:
    """One live model: the River estimator, how many events it learnt, its rolling quality,
    its drift detectors and the event ids it processed lately."""

    def __init__(
        self,
        spec: ModelSpec,
        evaluation: EvaluationConfig,
        drift: DriftConfig | None = None,
        estimator: Any = None,
        dedup_window: int = DEFAULT_DEDUP_WINDOW,
    ) -> None:
        self.spec = spec
        self.version = spec.version
        self.task = spec.task
        self.estimator: Any = spec.create() if estimator is None else estimator
        self.updates = 0
        self.binary = spec.task == "binary"
        self.evaluator = Evaluator(spec.name, self.version, spec.task, evaluation)
        self.drift = DriftMonitor(spec.name, self.version, spec.task, drift) if drift else None
        self.recent = RecentEvents(dedup_window)
        #: Multiclass: every class learnt, by its text on the wire (3 and "3" would share
        #: one, so the second kind is refused).
        self.classes: dict[str, bool | int | str] = {}
        #: Input offsets below this one were learnt before a restore: predicted again
        #: (outputs may be needed), never learnt or scored twice.
        self.resume_offset = 0
        #: False: learning paused by the plan (predictions go on).
        self.learning = True
        #: The lifecycle state of the model's versions, checkpointed with this replica.
        self.lifecycle: Any = None

    def state(self) -> State:
        """Everything learnt and every detector, for a checkpoint: a restored replica
        goes on exactly as this one would."""
        return (
            self.estimator,
            self.updates,
            self.evaluator,
            self.classes,
            self.drift,
            self.recent,
            self.lifecycle,
        )

    @classmethod
    def from_state(
        cls,
        spec: ModelSpec,
        state: State,
        resume_offset: int,
        drift: DriftConfig | None = None,
        dedup_window: int = DEFAULT_DEDUP_WINDOW,
    ) -> "ServedModel":
        """A model restored from `state()`, resuming at input offset `resume_offset`.
        Drift detectors of other settings than `drift` start afresh; the window of recent
        event ids keeps its newest `dedup_window` ids. (A state of 6 parts, from format 3
        checkpoints, has no lifecycle state.)"""
        estimator, updates, evaluator, classes, monitor, recent, *lifecycle = state
        served = cls(spec, evaluator.config, drift, estimator, dedup_window)
        served.updates, served.evaluator, served.classes = updates, evaluator, classes
        if monitor is not None and drift is not None and monitor.config == drift:
            served.drift = monitor
        served.recent = recent if recent.size == dedup_window else recent.resized(dedup_window)
        served.resume_offset = resume_offset
        served.lifecycle = lifecycle[0] if lifecycle else None
        return served

    def refuse_duplicate(self, event_id: str, offset: int | None) -> None:
        """Refuse an event whose id this replica processed at an earlier offset (within
        its window)."""
        first = self.recent.first_offset(event_id)
        if first is not None and (offset is None or first < offset):
            raise LearningError(
                ErrorType.DUPLICATE_EVENT,
                f"event_id {event_id!r} was already processed by model {self.spec.name!r} "
                f"on this partition at offset {first}: not predicted or learnt again (the "
                f"last {self.recent.size} event ids per model are checked); give each event "
                "its own event_id, or set RIVERRUN_DEDUP_WINDOW=0 to accept re-sent events",
            )

    def remember(self, event_id: str, offset: int | None) -> None:
        """Add a processed event's id to the window (an id processed before the restore
        point is in the restored window already)."""
        if offset is None or offset >= self.resume_offset:
            self.recent.add(event_id, offset)

    def target(self, label: bool | float | str) -> bool | float | int | str:
        """The label as the estimator wants it; raises LearningError when it cannot be
        (`online_models.learning.admission`: what the task refuses, also checked by
        POST /v1/events)."""
        problem = label_problem(self.spec.name, self.task, label)
        if problem is not None:
            raise LearningError(ErrorType.INVALID_LABEL, problem)
        if self.binary:
            return bool(label)
        if self.task == "multiclass" and not isinstance(label, float):  # (floats refused)
            return self._class(label)
        return float(label)

    def _class(self, label: bool | int | str) -> bool | int | str:
        """A multiclass label, refused when it shares its text (or, as True and 1 do, its
        Python identity) with a class of another type."""
        text = class_text(label)
        known = self.classes.get(text)
        if known is None:  # a new class: no known one may equal it (True == 1 in Python)
            clash = any(other == label for other in self.classes.values())
        else:
            clash = type(known) is not type(label)
        if clash:
            raise LearningError(
                ErrorType.INVALID_LABEL,
                f"label {label!r} of multiclass model {self.spec.name!r} is a "
                f"{type(label).__name__}, but the model already learns a class that equals it "
                "of another type: send every class with one type",
            )
        if known is None:
            self.classes[text] = label
        return label

    def predict(self, features: dict[str, Any]) -> Any:
        """The probability of the positive class (binary), the value (regression), or the
        probabilities of the classes (multiclass). A classifier that has learnt no class
        yet knows nothing: None (binary) or no probabilities (multiclass), never scored."""
        try:
            if self.binary:
                proba = self.estimator.predict_proba_one(features)
                if not proba:  # no class learnt yet (a tree, a forest): it knows nothing
                    return None
                y_pred = float(proba.get(True, 0.0))
            elif self.task == "multiclass":
                proba = self.estimator.predict_proba_one(features)
            else:
                y_pred = float(self.estimator.predict_one(features))
        except MODEL_FAULTS as err:
            raise self._fault(err, "predicting") from err
        if self.task == "multiclass":
            return self._probabilities(proba)
        if not math.isfinite(y_pred):
            raise LearningError(
                ErrorType.LEARNING_ERROR,
                failure_reasons.diverged(self.version, y_pred, self.estimator),
                diverged=True,
            )
        return y_pred

    def _fault(self, err: Exception, doing: str) -> LearningError:
        """An exception of the model's code, or a numeric overflow (it diverged)."""
        if isinstance(err, failure_reasons.NUMERIC_FAULTS):
            reason = failure_reasons.diverged(self.version, err, self.estimator)
            return LearningError(ErrorType.LEARNING_ERROR, reason, diverged=True)
        reason = failure_reasons.raised(self.version, err, doing)
        return LearningError(ErrorType.LEARNING_ERROR, reason)

    def _probabilities(self, proba: dict[Any, float]) -> dict[Any, float]:
        for value in proba.values():
            if not math.isfinite(value):
                raise LearningError(
                    ErrorType.LEARNING_ERROR,
                    failure_reasons.diverged(self.version, value, self.estimator),
                    diverged=True,
                )
        return {label: float(p) for label, p in proba.items()}

    def output(
        self,
        event: InputEvent,
        y_pred: Any,
        updates: int,
        learned: bool,
        latency: float,
        routing: Routing | None = None,
    ) -> "AnyPrediction":
        """The message published for `event`, predicted `y_pred` after `updates` updates."""
        # Every field comes from a validated event or from checks above (a finite
        # prediction): built without re-validation, as model_construct would build it
        # (every field in the model's order; `schema_version` of v1 left as a default).
        if self.task != "multiclass":
            values = {
                "schema_version": 1,
                "event_id": event.event_id,
                "key": event.key,
                "model": event.model,
                "model_version": self.version,
                "model_updates": updates,
                "ts": event.ts,
                "prediction": y_pred,
                "label": event.label,
                "learned": learned,
                "latency_seconds": latency,
                "routing": routing,
            }
            given = _PREDICTION_SET if routing is None else _PREDICTION_SET | {"routing"}
            return constructed(Prediction, values, set(given))
        values = {
            "schema_version": 2,
            "event_id": event.event_id,
            "key": event.key,
            "model": event.model,
            "model_version": self.version,
            "model_updates": updates,
            "ts": event.ts,
            "prediction": most_probable(y_pred) if y_pred else None,
            "probabilities": {class_text(c): p for c, p in y_pred.items()},
            "label": event.label,
            "learned": learned,
            "latency_seconds": latency,
            "routing": routing,
        }
        return constructed(ClassPrediction, values, set(values) - _NO_ROUTING[routing is None])

    def learn_and_score(
        self,
        event: InputEvent,
        features: dict[str, Any],
        y: Any,
        y_pred: Any,
        offset: int | None,
        reports: list[tuple[int | None, MetricsReport]],
        drifts: list[tuple[int | None, DriftReport]],
    ) -> None:
        """Learn labelled `event`, predicted `y_pred` before, and score it (metrics and
        drift); the reports that come due are appended, with `offset`, to `reports` and
        `drifts`."""
        self.learn(features, y)
        if scored(y_pred):
            for report in self.evaluator.observe(y, y_pred, features, event.key, event.ts):
                reports.append((offset, report))
            if self.drift is not None:
                for drift in self.drift.observe(features, y, y_pred, event.ts, offset):
                    drifts.append((offset, drift))

    def learn(self, features: dict[str, Any], y: Any) -> None:
        try:
            self.estimator.learn_one(features, y)
        except MODEL_FAULTS as err:
            raise self._fault(err, "learning") from err
        self.updates += 1


class Learner:
    """Serves the named models: for each event, predict, then learn when it has a label.

    >>> from datetime import datetime, UTC
    >>> learner = Learner(["logreg"])
    >>> event = InputEvent(event_id="e1", ts=datetime(2026, 1, 1, tzinfo=UTC), model="logreg",
    ...                    key="k", features={"device": "mobile"}, label=True)
    >>> [out.prediction for out in learner.process([event])]
    [0.5]
    """

    def __init__(
        self,
        model_names: Iterable[str],
        *,
        registry: Mapping[str, ModelSpec] = MODELS,
        params: Mapping[str, Mapping[str, Any]] | None = None,
        evaluation: EvaluationConfig | None = None,
        drift: DriftConfig | None = None,
        dedup_window: int = DEFAULT_DEDUP_WINDOW,
        clock: Callable[[], float] = time.perf_counter,
        partition: int | None = None,
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
        for i, event in enumerate(events):
            try:
                offset = offsets[i] if offsets is not None else None
                outputs.append(self._predict_then_learn(event, received_at, offset))
            except LearningError as err:
                outputs.append(Rejection(err.error_type, err.reason))
        return outputs

    def _predict_then_learn(
        self, event: InputEvent, received_at: float, offset: int | None = None
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
        if y is not None:
            model.learn_and_score(
                event, features, y, y_pred, offset, self.pending_reports, self.pending_drift
            )
        model.remember(event.event_id, offset)
        latency = max(0.0, self.clock() - received_at)
        return model.output(event, y_pred, updates, y is not None, latency)

    def _with_versions(
        self, group: "ModelGroup", event: InputEvent, received_at: float, offset: int | None
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
        if base is None:
            return []
        from online_models.versions.lifecycle import ModelGroup  # (it builds on this module)

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
