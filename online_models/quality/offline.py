"""Offline prequential evaluation: the stream's learning code over a finished dataset,
and River's own `progressive_val_score` on the same events for comparison."""

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from river import evaluate, metrics

from online_models.learning.learner import Learner
from online_models.models.registry import ModelSpec
from online_models.quality.evaluation import EvaluationConfig
from schemas import InputEvent, MetricsReport

#: River metric objects by the name riverrun reports them under.
RIVER_METRICS: dict[str, dict[str, type[metrics.base.Metric]]] = {
    "binary": {
        "logloss": metrics.LogLoss,
        "accuracy": metrics.Accuracy,
        "precision": metrics.Precision,
        "recall": metrics.Recall,
        "f1": metrics.F1,
    },
    "regression": {"mae": metrics.MAE, "rmse": metrics.RMSE, "r2": metrics.R2},
    "multiclass": {
        "logloss": metrics.CrossEntropy,
        "accuracy": metrics.Accuracy,
        "macro_precision": metrics.MacroPrecision,
        "macro_recall": metrics.MacroRecall,
        "macro_f1": metrics.MacroF1,
        "micro_f1": metrics.MicroF1,
    },
}


@dataclass(frozen=True)
class Evaluation:
    """What the stream would have published, and the values after the last event."""

    reports: list[MetricsReport]
    final: dict[str, dict[str, float | None]]  # segment -> metric -> value
    rejected: int


def _spec(model: ModelSpec, params: Mapping[str, Any] | None) -> ModelSpec:
    return model.with_params(**params) if params else model


def run_offline(
    events: Iterable[InputEvent],
    model: ModelSpec,
    *,
    params: Mapping[str, Any] | None = None,
    config: EvaluationConfig | None = None,
    batch_size: int = 500,
) -> Evaluation:
    """Run the worker's learner over `events` in order, exactly as the stream does.

    `model` is an app's `ModelSpec` (`app.models[name]`); `params` change it."""
    spec = _spec(model, params)
    learner = Learner([spec.name], registry={spec.name: spec}, evaluation=config)
    reports: list[MetricsReport] = []
    rejected = 0
    iterator = iter(events)
    while batch := list(itertools.islice(iterator, batch_size)):
        outputs = learner.process(batch)
        rejected += sum(1 for output in outputs if not hasattr(output, "prediction"))
        reports += learner.drain_reports()
    evaluator = learner.models[spec.name].evaluator
    return Evaluation(reports, evaluator.values(), rejected)


def river_progressive(
    events: Iterable[InputEvent],
    model: ModelSpec,
    params: Mapping[str, Any] | None = None,
) -> dict[str, float]:
    """River's `evaluate.progressive_val_score` with the same factory on the same events."""
    spec = _spec(model, params)
    chosen = {name: cls() for name, cls in RIVER_METRICS[spec.task].items()}
    union = metrics.base.Metrics(list(chosen.values()))
    target: Any = {"binary": bool, "regression": float}.get(spec.task, lambda label: label)
    dataset: list[tuple[dict[Any, Any], Any]] = [
        (dict(e.features), target(e.label)) for e in events if e.label is not None
    ]
    evaluate.progressive_val_score(dataset, spec.create(), union)
    return {name: metric.get() for name, metric in chosen.items()}


#: How close the stream's metrics and River's must be (they are the same computation).
AGREEMENT = 1e-9


def river_agreement(ours: Mapping[str, float | None], river: Mapping[str, float]) -> str:
    """One line saying whether every metric of segment `all` equals River's value.

    >>> river_agreement({"n": 9.0, "logloss": 0.4, "accuracy": 0.8},
    ...                 {"logloss": 0.4, "accuracy": 0.8})
    "logloss and accuracy equal River's progressive_val_score to 1e-9 (9 labelled events \
scored; predictions of a classifier that knew no class yet are not scored, in both)"
    >>> print(river_agreement({"n": 9.0, "logloss": 0.4}, {"logloss": 0.41}))
    logloss differs from River's progressive_val_score (0.4 against 0.41): a bug; please report it
    """
    compared = [name for name in river if name in ours]
    differ = [
        name
        for name in compared
        if (value := ours[name]) is None or abs(value - river[name]) > AGREEMENT
    ]
    if differ:
        shown = ", ".join(f"{ours[name]} against {river[name]}" for name in differ)
        return (
            f"{' and '.join(differ)} differs from River's progressive_val_score ({shown}): a "
            "bug; please report it"
        )
    n = ours.get("n")
    scored = f"{n:.0f} labelled events scored; " if n is not None else ""
    return (
        f"{', '.join(compared[:-1])}{' and ' if len(compared) > 1 else ''}{compared[-1]} equal "
        f"River's progressive_val_score to 1e-9 ({scored}predictions of a classifier that "
        "knew no class yet are not scored, in both)"
    )
