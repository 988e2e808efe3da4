"""One live model replica: predict, learn, score, and the state a checkpoint holds.

`ServedModel` is what the learner (`online_models.learning.learner`) and a model's
versions (`online_models.versions.lifecycle`) both serve; it depends on neither.
"""

import math
from dataclasses import dataclass
from typing import Any

from online_models.learning import failure_reasons
from online_models.learning.admission import label_problem
from online_models.learning.dedup import DEFAULT_DEDUP_WINDOW, RecentEvents
from online_models.models.registry import ModelSpec
from online_models.quality.drift import DriftConfig, DriftMonitor
from online_models.quality.evaluation import EvaluationConfig, Evaluator, most_probable
from schemas import AnyPrediction, ClassPrediction, ErrorType, InputEvent, MetricsReport, Prediction
from schemas.control import Routing
from schemas.drift import DriftReport
from schemas.fast_codec import constructed
from schemas.prediction import class_text


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


@dataclass(frozen=True)
class ReplicaState:
    """What a checkpoint of a `ServedModel` holds (`ServedModel.state()`), read by name:
    a restored replica goes on exactly as the one that wrote it would.

    >>> from riverrun.builtin import app
    >>> state = ServedModel(app.models["logreg"], EvaluationConfig()).state()
    >>> state.updates, state.drift, state.lifecycle
    (0, None, None)
    >>> ReplicaState.from_parts(state.parts()[:6]).estimator is state.estimator
    True
    """

    #: The River estimator or pipeline.
    estimator: Any
    #: Events learnt.
    updates: int
    #: Rolling metrics.
    evaluator: Evaluator
    #: Multiclass: every class learnt, by its text on the wire.
    classes: dict[str, bool | int | str]
    #: Drift detectors (None: drift detection off).
    drift: DriftMonitor | None
    #: The event ids processed lately (duplicates refused).
    recent: RecentEvents
    #: The lifecycle state of the model's versions on the partition
    #: (`online_models.versions.lifecycle.GroupState`); None for a model without a plan.
    lifecycle: Any = None

    def parts(self) -> tuple[Any, ...]:
        """The positional tuple checkpoint formats 3 and 4 pickled (tests write them)."""
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
    def from_parts(cls, parts: tuple[Any, ...]) -> "ReplicaState":
        """The state a format 4 (seven parts) or 3 (six: no lifecycle state) checkpoint
        pickled as a tuple; ValueError for any other shape."""
        if not isinstance(parts, tuple) or len(parts) not in (6, 7):
            raise ValueError(f"a state of {type(parts).__name__}, not a tuple of 6 or 7 parts")
        return cls(*parts)


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

    def state(self) -> ReplicaState:
        """Everything learnt and every detector, for a checkpoint: a restored replica
        goes on exactly as this one would."""
        return ReplicaState(
            estimator=self.estimator,
            updates=self.updates,
            evaluator=self.evaluator,
            classes=self.classes,
            drift=self.drift,
            recent=self.recent,
            lifecycle=self.lifecycle,
        )

    @classmethod
    def from_state(
        cls,
        spec: ModelSpec,
        state: ReplicaState,
        resume_offset: int,
        drift: DriftConfig | None = None,
        dedup_window: int = DEFAULT_DEDUP_WINDOW,
    ) -> "ServedModel":
        """A model restored from `state()`, resuming at input offset `resume_offset`.
        Drift detectors of other settings than `drift` start afresh; the window of recent
        event ids keeps its newest `dedup_window` ids."""
        served = cls(spec, state.evaluator.config, drift, state.estimator, dedup_window)
        served.updates, served.evaluator = state.updates, state.evaluator
        served.classes = state.classes
        monitor = state.drift
        if monitor is not None and drift is not None and monitor.config == drift:
            served.drift = monitor
        recent = state.recent
        served.recent = recent if recent.size == dedup_window else recent.resized(dedup_window)
        served.resume_offset = resume_offset
        served.lifecycle = state.lifecycle
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
            own = {"prediction": y_pred}
            values = self._values(1, event, updates, own, learned, latency, routing)
            given = _PREDICTION_SET if routing is None else _PREDICTION_SET | {"routing"}
            return constructed(Prediction, values, set(given))
        own = {
            "prediction": most_probable(y_pred) if y_pred else None,
            "probabilities": {class_text(c): p for c, p in y_pred.items()},
        }
        values = self._values(2, event, updates, own, learned, latency, routing)
        return constructed(ClassPrediction, values, set(values) - _NO_ROUTING[routing is None])

    def _values(
        self,
        schema_version: int,
        event: InputEvent,
        updates: int,
        own: dict[str, Any],
        learned: bool,
        latency: float,
        routing: Routing | None,
    ) -> dict[str, Any]:
        """A prediction's fields in its model's order, `own` those of its format (the
        prediction; the probabilities too, for a multiclass model)."""
        return {
            "schema_version": schema_version,
            "event_id": event.event_id,
            "key": event.key,
            "model": event.model,
            "model_version": self.version,
            "model_updates": updates,
            "ts": event.ts,
            **own,
            "label": event.label,
            "learned": learned,
            "latency_seconds": latency,
            "routing": routing,
        }

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
