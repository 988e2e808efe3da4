"""`riverrun report`: one self-contained HTML file with PNG charts of what the topics hold.

Reads the metrics, drift, predictions and dead-letters topics (all of them, or the event
times between `since` and `until`) and draws: quality over time with drift alarms,
predicted vs actual per period, dead letters by reason, and throughput.
"""

import base64
import html
import io
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from matplotlib.dates import date2num
from matplotlib.figure import Figure

from online_models.models.registry import ModelSpec
from schemas import AnyPrediction, DeadLetter, MetricsReport, Prediction, decode_prediction
from schemas.drift import DriftReport
from streams.kafka.topics import read_to_end
from streams.settings import Settings

T = TypeVar("T")


@dataclass
class RunData:
    """What the topics hold, as (Kafka timestamp in ms, message) pairs."""

    metrics: list[tuple[int, MetricsReport]] = field(default_factory=list)
    drift: list[tuple[int, DriftReport]] = field(default_factory=list)
    predictions: list[tuple[int, AnyPrediction]] = field(default_factory=list)
    dead_letters: list[tuple[int, DeadLetter]] = field(default_factory=list)


def read_topic(settings: Settings, topic: str, decode: Callable[[bytes], T]) -> list[tuple[int, T]]:
    """Every message of `topic` up to its current end, decoded (undecodable ones skipped:
    not riverrun's)."""
    out: list[tuple[int, T]] = []
    for message in read_to_end(settings, topic):
        try:
            out.append((message.timestamp, decode(message.value)))
        except ValueError:
            continue
    return out


def read_run(settings: Settings) -> RunData:
    return RunData(
        metrics=read_topic(settings, settings.metrics_topic, MetricsReport.model_validate_json),
        drift=read_topic(settings, settings.drift_topic, DriftReport.model_validate_json),
        predictions=read_topic(settings, settings.predictions_topic, decode_prediction),
        dead_letters=read_topic(
            settings, settings.dead_letters_topic, DeadLetter.model_validate_json
        ),
    )


def within(data: RunData, since: datetime | None, until: datetime | None) -> RunData:
    """The part of `data` whose event times are in [since, until)."""

    def keep(ts: datetime) -> bool:
        return (since is None or ts >= since) and (until is None or ts < until)

    return RunData(
        metrics=[(k, r) for k, r in data.metrics if keep(r.ts)],
        drift=[(k, r) for k, r in data.drift if keep(r.window_end)],
        predictions=[(k, p) for k, p in data.predictions if keep(p.ts)],
        dead_letters=[(k, d) for k, d in data.dead_letters if keep(d.ts)],
    )


def _figure(height: float = 3.2, width: float = 9) -> tuple[Figure, Any]:
    """A figure drawn off-screen (no pyplot, no display) and its axes."""
    fig = Figure(figsize=(width, height))
    return fig, fig.subplots()


def _png(fig: Figure) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode()


def task_of(model: str, reports: list[MetricsReport], models: Mapping[str, ModelSpec]) -> str:
    """The model's task: the app's, else what its metrics say (a model of another app)."""
    if model in models:
        return models[model].task
    names = reports[0].metrics if reports else {}
    if "macro_f1" in names:
        return "multiclass"
    return "regression" if "mae" in names or "mae_window" in names else "binary"


#: The headline metrics charted over event time, per task.
CHARTED = {
    "binary": ["logloss", "auc_window"],
    "multiclass": ["logloss_window", "accuracy_window"],
    "regression": ["mae_window", "baseline_mae_window"],
}


def quality_chart(data: RunData, model: str, task: str) -> str | None:
    """The model's headline rolling metrics over event time, drift alarms as lines."""
    reports = [r for _, r in data.metrics if r.model == model and r.segment == "all"]
    if not reports:
        return None
    names = CHARTED[task]
    fig, ax = _figure()
    for name in names:
        points = [(date2num(r.ts), v) for r in reports if (v := r.metrics.get(name)) is not None]
        if points:
            ax.plot([t for t, _ in points], [v for _, v in points], marker=".", label=name)
    alarms = [
        r for _, r in data.drift if r.model == model and r.trigger == "alarm" and r.signal == "loss"
    ]
    for i, alarm in enumerate(alarms):
        ax.axvline(
            date2num(alarm.window_end),
            color="red",
            alpha=0.4,
            linestyle="--",
            label="concept drift alarm (loss)" if i == 0 else None,
        )
    ax.xaxis_date()
    ax.set_title(f"{model}: quality over event time")
    ax.legend(loc="best", fontsize=8)
    fig.autofmt_xdate()
    return _png(fig)


def calibration_chart(data: RunData, model: str) -> str | None:
    """Sum of predictions vs sum of labels per event-time period (day, or hour if the
    run spans less than three days)."""
    labelled = [
        p
        for _, p in data.predictions
        if isinstance(p, Prediction) and p.model == model and p.label is not None
    ]
    if not labelled:  # (class predictions have no sum: see the confusion matrix)
        return None
    span = max(p.ts for p in labelled) - min(p.ts for p in labelled)
    fmt = "%Y-%m-%d" if span.days >= 3 else "%Y-%m-%d %H:00"
    predicted: dict[str, float] = defaultdict(float)
    actual: dict[str, float] = defaultdict(float)
    for p in labelled:
        if p.prediction is None:  # a model that knew no class yet predicted nothing
            continue
        period = p.ts.strftime(fmt)
        predicted[period] += p.prediction
        actual[period] += float(p.label)  # type: ignore[arg-type]
    periods = sorted(predicted)
    fig, ax = _figure()
    xs = range(len(periods))
    ax.bar([x - 0.2 for x in xs], [predicted[p] for p in periods], width=0.4, label="predicted")
    ax.bar([x + 0.2 for x in xs], [actual[p] for p in periods], width=0.4, label="actual")
    step = max(1, len(periods) // 12)
    ax.set_xticks(list(xs)[::step], periods[::step], rotation=30, ha="right", fontsize=7)
    ax.set_title(f"{model}: predicted vs actual per {'day' if span.days >= 3 else 'hour'}")
    ax.legend(fontsize=8)
    return _png(fig)


def confusion_table(data: RunData, model: str) -> str | None:
    """The confusion matrix of a multiclass model's last overall report, as HTML."""
    reports = [
        r
        for _, r in data.metrics
        if r.model == model and r.segment == "all" and r.confusion is not None
    ]
    if not reports:
        return None
    last = reports[-1]
    confusion = last.confusion or {}
    classes = sorted(set(confusion) | {p for row in confusion.values() for p in row})
    head = "".join(f"<th>{html.escape(c)}</th>" for c in classes)
    rows = "".join(
        f"<tr><th>{html.escape(actual)}</th>"
        + "".join(f"<td>{confusion.get(actual, {}).get(c, 0)}</td>" for c in classes)
        + "</tr>"
        for actual in classes
    )
    n = int(last.metrics.get("n") or 0)
    return (
        f"<p>{n} labelled events up to {last.ts:%Y-%m-%d %H:%M}; rows: actual class, "
        f"columns: predicted class.</p><table><tr><th></th>{head}</tr>{rows}</table>"
    )


def dead_letter_chart(data: RunData) -> str | None:
    reasons = Counter(d.error_type.value for _, d in data.dead_letters)
    if not reasons:
        return None
    fig, ax = _figure(2.6, 6)
    names = sorted(reasons)
    ax.barh(names, [reasons[n] for n in names], color="tab:red")
    ax.set_title("dead letters by reason")
    return _png(fig)


def throughput_chart(data: RunData) -> str | None:
    """Predictions per second of processing time (their Kafka timestamps)."""
    if len(data.predictions) < 2:
        return None
    seconds = Counter(ts // 1000 for ts, _ in data.predictions)
    start = min(seconds)
    xs = list(range(start, max(seconds) + 1))
    fig, ax = _figure(2.6)
    ax.plot([x - start for x in xs], [seconds.get(x, 0) for x in xs])
    ax.set_xlabel("seconds since the first prediction")
    ax.set_ylabel("predictions/s")
    ax.set_title("throughput")
    return _png(fig)


def render(
    data: RunData, title: str = "riverrun report", models: Mapping[str, ModelSpec] | None = None
) -> str:
    """The HTML page: every chart inline (base64 PNG), a table of counts, no external file."""
    names = sorted(
        {r.model for _, r in data.metrics if r.model != "join"}
        | {p.model for _, p in data.predictions}
    )
    sections: list[tuple[str, str | None]] = []
    tables: list[tuple[str, str | None]] = []
    for model in names:
        reports = [r for _, r in data.metrics if r.model == model]
        task = task_of(model, reports, models or {})
        sections.append((f"{model}: quality", quality_chart(data, model, task)))
        tables.append((f"{model}: confusion matrix", confusion_table(data, model)))
        sections.append((f"{model}: predicted vs actual", calibration_chart(data, model)))
    sections.append(("dead letters", dead_letter_chart(data)))
    sections.append(("throughput", throughput_chart(data)))
    alarms = Counter((r.model, r.detector, r.signal) for _, r in data.drift if r.trigger == "alarm")
    rows = (
        "".join(
            f"<tr><td>{html.escape(m)}</td><td>{d}</td><td>{html.escape(s)}</td><td>{n}</td></tr>"
            for (m, d, s), n in sorted(alarms.items())
        )
        or "<tr><td colspan=4>none</td></tr>"
    )
    body = [
        f"<h1>{html.escape(title)}</h1>",
        f"<p>{len(data.predictions)} predictions, {len(data.metrics)} metrics reports, "
        f"{len(data.drift)} drift reports, {len(data.dead_letters)} dead letters.</p>",
        "<h2>drift alarms</h2><table><tr><th>model</th><th>detector</th><th>signal</th>"
        f"<th>alarms</th></tr>{rows}</table>",
    ]
    for name, png in sections:
        if png is not None:
            body.append(
                f"<h2>{html.escape(name)}</h2><img alt='{html.escape(name)}' "
                f"src='data:image/png;base64,{png}'>"
            )
    for name, table in tables:
        if table is not None:
            body.append(f"<h2>{html.escape(name)}</h2>{table}")
    style = (
        "body{font-family:sans-serif;max-width:960px;margin:2em auto}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px}"
    )
    head = f"<meta charset='utf-8'><title>{html.escape(title)}</title><style>{style}</style>"
    return f"<!doctype html><html><head>{head}</head><body>{''.join(body)}</body></html>\n"


def write_report(
    settings: Settings,
    path: Path,
    since: datetime | None = None,
    until: datetime | None = None,
    *,
    models: Mapping[str, ModelSpec] | None = None,
) -> RunData:
    """Read the topics, write the HTML file; return what was drawn. `models` (the app's)
    say each model's task; models it does not have are told by their metrics."""
    data = within(read_run(settings), since, until)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(data, models=models))
    return data
