"""The HTML report draws what it is given, inline, for the event-time range asked."""

from datetime import UTC, datetime, timedelta

from schemas import ClassPrediction, MetricsReport, Prediction
from schemas.drift import DriftReport
from streams.cli.report import RunData, render, within

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def data() -> RunData:
    run = RunData()
    for i in range(48):
        ts = T0 + timedelta(hours=i)
        run.predictions.append(
            (
                1_000 * i,
                Prediction(
                    event_id=f"e{i}",
                    key="k",
                    model="logreg",
                    model_version="logreg@1",
                    model_updates=i,
                    ts=ts,
                    prediction=0.3,
                    label=i % 3 == 0,
                    learned=True,
                    latency_seconds=0.001,
                ),
            )
        )
        run.metrics.append(
            (
                1_000 * i,
                MetricsReport(
                    model="logreg",
                    model_version="logreg@1",
                    segment="all",
                    trigger="events",
                    ts=ts,
                    period_start=ts,
                    period_end=ts,
                    metrics={"logloss": 0.5, "auc_window": 0.7},
                ),
            )
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
    run = RunData()
    for i in range(10):
        ts = T0 + timedelta(hours=i)
        run.predictions.append(
            (
                1_000 * i,
                ClassPrediction(
                    event_id=f"e{i}",
                    key="k",
                    model="regions",
                    model_version="regions@1",
                    model_updates=i,
                    ts=ts,
                    prediction="sky",
                    probabilities={"sky": 0.8, "path": 0.2},
                    label="sky" if i % 2 else "path",
                    learned=True,
                    latency_seconds=0.001,
                ),
            )
        )
        run.metrics.append(
            (
                1_000 * i,
                MetricsReport(
                    schema_version=2,
                    model="regions",
                    model_version="regions@1",
                    segment="all",
                    trigger="events",
                    ts=ts,
                    period_start=ts,
                    period_end=ts,
                    metrics={
                        "n": float(i + 1),
                        "logloss_window": 0.5,
                        "accuracy_window": 0.5,
                        "macro_f1": 0.3,
                    },
                    confusion={"path": {"sky": i // 2 + 1}, "sky": {"sky": (i + 1) // 2}},
                ),
            )
        )
    page = render(run)
    # The last report's matrix: rows actual, columns predicted (path, sky).
    assert "<tr><th>path</th><td>0</td><td>5</td></tr>" in page
    assert "<tr><th>sky</th><td>0</td><td>5</td></tr>" in page
    assert page.count("data:image/png;base64,") == 2  # quality, throughput: no sums of classes
