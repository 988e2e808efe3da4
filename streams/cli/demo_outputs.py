"""What `riverrun demo` reads back from the output topics, and the summary it prints of
them: every event accounted for, the streamed metrics against the offline ones."""

import time
from collections import Counter
from collections.abc import Callable, Mapping

from online_models.models.datasets import DATASETS
from online_models.models.registry import ModelSpec
from schemas import AnyPrediction, DeadLetter, InputEvent, MetricsReport, decode_prediction
from schemas.codec import decode
from streams.kafka.topics import TopicReader
from streams.settings import Settings

Echo = Callable[[str], None]


class Collector:
    """Reads the predictions, dead letters and metrics written after it was created."""

    def __init__(self, settings: Settings, models: set[str]) -> None:
        self.predictions_topic = settings.predictions_topic
        self.models = models  # those replayed (the join's models report too)
        self.metrics_topic = settings.metrics_topic
        topics = (settings.predictions_topic, settings.dead_letters_topic, settings.metrics_topic)
        self.reader = TopicReader(settings, topics, from_beginning=False)
        self.predictions: dict[str, AnyPrediction] = {}
        self.dead_letters: list[DeadLetter] = []
        self.reports: list[MetricsReport] = []
        self.timestamps: list[int] = []
        self.started_ms = time.time() * 1000

    def poll(self, id_prefix: str) -> None:
        for message in self.reader.poll(timeout_ms=500):
            if message.topic == self.predictions_topic:
                prediction = decode_prediction(message.value)
                if prediction.event_id.startswith(id_prefix):
                    self.predictions[prediction.event_id] = prediction
                    self.timestamps.append(message.timestamp)
            elif message.topic == self.metrics_topic:
                report = decode(MetricsReport, message.value, max_bytes=1 << 24)
                if report.model in self.models:  # not the join's reports
                    self.reports.append(report)
            else:
                letter = decode(DeadLetter, message.value, max_bytes=1 << 24)
                if letter.ts.timestamp() * 1000 >= self.started_ms:
                    self.dead_letters.append(letter)

    @property
    def outputs(self) -> int:
        return len(self.predictions) + len(self.dead_letters)

    def close(self) -> None:
        self.reader.close()


#: What the summary shows of each model's last overall report, and per segment, by task.
SHOWN = {
    "binary": [
        "logloss",
        "normalized_entropy",
        "auc",
        "auc_window",
        "accuracy",
        "precision",
        "recall",
        "f1",
        "lift_5_window",
        "lift_20_window",
        "mean_predicted",
        "observed_rate",
        "predicted_positives",
        "actual_positives",
    ],
    "regression": [
        "mae",
        "rmse",
        "r2",
        "mae_window",
        "baseline_mae",
        "baseline_mae_window",
        "predicted_total",
        "actual_total",
        "period_predicted_total",
        "period_actual_total",
    ],
    "multiclass": [
        "logloss",
        "accuracy",
        "accuracy_window",
        "macro_precision",
        "macro_recall",
        "macro_f1",
        "micro_f1",
        "classes",
    ],
}


PER_SEGMENT = {"binary": "auc", "regression": "mae", "multiclass": "accuracy"}


def summary(
    collector: Collector,
    events: dict[str, list[InputEvent]],
    expected_reports: dict[str, list[MetricsReport]],
    expected: int,
    bad: Mapping[str, int],
    models: Mapping[str, ModelSpec],
    echo: Echo,
) -> bool:
    """Print the run's summary; True when nothing is missing, the dead letters are those
    `bad` expects (a count per error type) and metrics match offline."""
    letters = Counter(letter.error_type.value for letter in collector.dead_letters)
    n_letters = sum(letters.values())
    span = (
        (max(collector.timestamps) - min(collector.timestamps)) / 1000
        if collector.timestamps
        else 0
    )
    complete = len(collector.predictions) + n_letters == expected and letters == Counter(bad)
    lines = [
        "",
        "riverrun demo summary",
        f"  events in          {expected}",
        f"  predictions out    {len(collector.predictions)}",
        f"  dead letters       {n_letters}  {by_type(letters)}",
    ]
    if letters != Counter(bad):
        lines.append(f"    expected         {sum(bad.values())}  {by_type(bad)}")
    if span > 0:
        rate = len(collector.predictions) / span
        lines.append(f"  events/s           {rate:,.0f}  (first to last prediction)")
    matching = 0
    for dataset, batch in events.items():
        model = DATASETS[dataset].model
        streamed = [r for r in collector.reports if r.model == model]
        offline = expected_reports[model]
        # The worker names the input partition of the replica; offline there is none.
        same = [r.model_dump_json(exclude={"partition"}) for r in streamed] == [
            r.model_dump_json(exclude={"partition"}) for r in offline
        ]
        matching += len(streamed) if same else 0
        predictions = [
            collector.predictions[e.event_id] for e in batch if e.event_id in collector.predictions
        ]
        labelled = sum(1 for p in predictions if p.label is not None)
        lines.append(
            f"  model {model} on {dataset}: {len(predictions)} predictions, {labelled} labelled"
        )
        lines += last_report_lines(streamed, models[model].task)
    total_reports = sum(len(r) for r in expected_reports.values())
    lines.append(
        f"  metrics topic      {len(collector.reports)} reports; {matching} of "
        f"{total_reports} identical to the offline evaluation"
    )
    ok = complete and matching == total_reports == len(collector.reports)
    verdict = (
        "OK: events in = predictions out + dead letters; streamed metrics = offline"
        if ok
        else "MISSING OUTPUT OR MISMATCHED METRICS"
    )
    lines.append(f"  result             {verdict}")
    for line in lines:
        echo(line)
    return ok


def by_type(counts: Mapping[str, int]) -> str:
    """Counts of dead letters by error type, as the summary shows them.

    >>> by_type({"oversized": 1, "invalid_event": 3})
    'invalid_event=3, oversized=1'
    """
    return ", ".join(f"{kind}={count}" for kind, count in sorted(counts.items()))


def last_report_lines(streamed: list[MetricsReport], task: str) -> list[str]:
    """The last overall report's metrics shown for `task`, and its segments' headline."""
    overall = [r for r in streamed if r.segment == "all"]
    if not overall:
        return []
    last = overall[-1]
    lines = [f"    last report ({last.trigger}, event time {last.ts:%Y-%m-%d %H:%M}):"]
    for name in SHOWN[task]:
        value = last.metrics.get(name)
        lines.append(f"      {name:<30} {number_text(value)}")
    key = PER_SEGMENT[task]
    for report in [r for r in streamed if r.segment != "all" and r.ts == last.ts]:
        label = f"{key} [{report.segment}]"
        lines.append(f"      {label:<30} {number_text(report.metrics.get(key))}")
    return lines


def number_text(value: float | None) -> str:
    return "-" if value is None else f"{value:,.4f}"
