"""The HTML report draws what it is given, inline, for the event-time range asked."""

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from schemas import AnyPrediction, ClassPrediction, MetricsReport, Prediction
from schemas.drift import DriftReport
from streams.cli.report import RunData, render, within

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def hours(
    n: int, predicted: Callable[[int], AnyPrediction], reported: Callable[[int], MetricsReport]
) -> RunData:
    """A run of `n` hours: at hour i (offset 1,000 i) prediction `predicted(i)` and metrics
    report `reported(i)`."""
    run = RunData()
    for i in range(n):
        run.predictions.append((1_000 * i, predicted(i)))
        run.metrics.append((1_000 * i, reported(i)))
    return run


def prediction_fields(model: str, i: int) -> dict[str, Any]:
    """What hour i's prediction of `model` has whatever its task."""
    return {
        "event_id": f"e{i}",
        "key": "k",
        "model": model,
        "model_version": f"{model}@1",
        "model_updates": i,
        "ts": T0 + timedelta(hours=i),
        "learned": True,
        "latency_seconds": 0.001,
    }


def report_fields(model: str, i: int) -> dict[str, Any]:
    """What hour i's metrics report of `model` has whatever its metrics."""
    ts = T0 + timedelta(hours=i)
    return {
        "model": model,
        "model_version": f"{model}@1",
        "segment": "all",
        "trigger": "events",
        "ts": ts,
        "period_start": ts,
        "period_end": ts,
    }


def data() -> RunData:
    run = hours(
        48,
        lambda i: Prediction(**prediction_fields("logreg", i), prediction=0.3, label=i % 3 == 0),
        lambda i: MetricsReport(
            **report_fields("logreg", i), metrics={"logloss": 0.5, "auc_window": 0.7}
        ),
    )
    run.drift.append(
        (
            0,
            DriftReport(
                model="logreg",
                model_version="logreg@1",
                detector="adwin",
                signal="loss",
                trigger="alarm",
                statistic=0.6,
                threshold=0.002,
                drift=True,
                window_start=T0,
                window_end=T0 + timedelta(hours=30),
            ),
        )
    )
    return run


def test_the_report_is_one_page_with_its_charts_inline() -> None:
    page = render(data())
    assert page.startswith("<!doctype html>") and "src='http" not in page
    assert page.count("data:image/png;base64,") == 3  # quality, predicted vs actual, throughput
    assert "<td>logreg</td><td>adwin</td><td>loss</td><td>1</td>" in page


def test_an_event_time_range_keeps_only_what_falls_in_it() -> None:
    part = within(data(), T0 + timedelta(hours=10), T0 + timedelta(hours=20))
    assert len(part.predictions) == 10 and len(part.metrics) == 10 and not part.drift


def test_a_multiclass_model_gets_its_confusion_matrix_and_no_sum_chart() -> None:
    run = hours(
        10,
        lambda i: ClassPrediction(
            **prediction_fields("regions", i),
            prediction="sky",
            probabilities={"sky": 0.8, "path": 0.2},
            label="sky" if i % 2 else "path",
        ),
        lambda i: MetricsReport(
            **report_fields("regions", i),
            schema_version=2,
            metrics={
                "n": float(i + 1),
                "logloss_window": 0.5,
                "accuracy_window": 0.5,
                "macro_f1": 0.3,
            },
            confusion={"path": {"sky": i // 2 + 1}, "sky": {"sky": (i + 1) // 2}},
        ),
    )
    page = render(run)
    # The last report's matrix: rows actual, columns predicted (path, sky).
    assert "<tr><th>path</th><td>0</td><td>5</td></tr>" in page
    assert "<tr><th>sky</th><td>0</td><td>5</td></tr>" in page
    assert page.count("data:image/png;base64,") == 2  # quality, throughput: no sums of classes
