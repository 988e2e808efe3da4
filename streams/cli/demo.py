"""`riverrun demo`: broker, topics, worker, replay, wait, summary, clean-up."""

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path

from online_models.models.datasets import DATASETS
from online_models.models.registry import ModelError, ModelSpec
from online_models.quality.offline import run_offline
from schemas import AnyPrediction, DeadLetter, InputEvent, MetricsReport, decode_prediction
from schemas.codec import decode
from streams.cli.replay import dataset_events, encode, produce
from streams.kafka.local_broker import LocalKafka
from streams.kafka.topics import TopicReader, ensure_topics
from streams.runtime.served_models import served_models
from streams.settings import Settings

Echo = Callable[[str], None]

#: Settings the demo gives its worker unless the user set them: frequent reports and
#: per-device segments make a short run show the whole metric set; the delayed-feedback
#: join runs with a click window short enough (2 minutes, clicks come after 1 minute on
#: average) that some clicks arrive too late.
DEMO_SETTINGS: dict[str, object] = {
    "metrics_every_events": 250,
    "segment_features": ["device"],
    "join_enabled": True,
    "products": ["shoes", "bags"],
    "click_window_seconds": 120.0,
    "conversion_window_seconds": 86_400.0,
    "join_report_every": 500,
}
#: Fields named after the run unless the user set them: each demo starts from nothing
#: (no committed offsets, no checkpoint of an earlier run) and deletes them at the end.
RUN_FIELDS = (
    "group_id",
    "events_topic",
    "predictions_topic",
    "dead_letters_topic",
    "activity_topic",
    "metrics_topic",
    "checkpoints_topic",
    "drift_topic",
    "impressions_topic",
    "clicks_topic",
    "conversions_topic",
    "outcomes_topic",
)
#: Impressions of the delayed-feedback scenario.
FEEDBACK_IMPRESSIONS = 6_000
#: Events per dataset when the dataset is endless: 30 days of 300 offers.
DEFAULT_LIMITS = {"offers": 300 * 30, "clicks": 10_000}


def bad_messages(id_prefix: str, model: str, max_bytes: int) -> list[tuple[str, bytes]]:
    """One message of each kind the worker must dead-letter, with the error type expected."""

    def event(name: str, **fields: object) -> bytes:
        base = {"event_id": f"{id_prefix}bad-{name}", "ts": 0, "model": model, "key": "k"}
        return json.dumps({**base, **fields}).encode()

    return [
        ("invalid_json", b"this is not json"),
        ("invalid_event", event("nan", features={"x": float("nan")})),  # json.dumps writes NaN
        ("invalid_event", event("no-features")),
        ("invalid_event", event("types", features={"x": "1"}, label=["yes"])),
        ("unknown_model", event("model", model="no-such-model", features={})),
        ("oversized", event("big", features={"pad": "x" * max_bytes})),
    ]


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


def start_worker(log_path: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "streams.cli.main", "worker"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )


def stop_worker(process: subprocess.Popen[bytes], timeout: float = 30.0) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def demo_settings(settings: Settings, run: str = "") -> tuple[Settings, dict[str, str]]:
    """The user's settings with the demo's defaults where the user set nothing (topics
    and group named `demo-<run>-...`), and the environment that gives the worker those."""
    chosen = {k: v for k, v in DEMO_SETTINGS.items() if k not in settings.model_fields_set}
    if run:
        for name in RUN_FIELDS:
            if name not in settings.model_fields_set:
                chosen[name] = f"demo-{run}-{getattr(settings, name)}"
    updated = settings.model_copy(update=chosen)
    env = {**os.environ, **updated.as_environment({*chosen, "app"})}
    return updated, env


def run_demo(
    settings: Settings,
    models: Mapping[str, ModelSpec],
    *,
    datasets: list[str],
    limit: int | None,
    timeout: float,
    echo: Echo,
) -> bool:
    """Run everything once with the app's `models`; True when every event has a
    prediction or a dead letter and the streamed metrics equal the offline evaluation."""
    unknown = [name for name in datasets if name not in DATASETS]
    if unknown:
        raise ValueError(f"unknown dataset {unknown[0]!r}: choose among {', '.join(DATASETS)}")
    run = time.strftime("%Y%m%d%H%M%S")
    settings, env = demo_settings(settings, run)
    names = [DATASETS[name].model for name in datasets]
    # The worker's models, each built once: a mistake is one sentence here, not in the
    # worker; the offline runs compare with the very same specs.
    served = served_models(settings, models)
    missing = [name for name in names if name not in served]
    if missing:
        raise ModelError(
            f"the demo replays events for model {missing[0]!r}, which RIVERRUN_MODELS does not "
            "serve; add it there or choose other --dataset names"
        )
    specs = {name: served[name] for name in names}
    kafka = LocalKafka.for_settings(settings) if settings.uses_local_broker else None
    started_kafka = False
    if kafka is not None:
        running, _ = kafka.status()
        if not running:
            echo(kafka.up())
            started_kafka = True
    else:
        echo(f"using the cluster at {settings.broker}")
    worker = None
    try:
        ensure_topics(settings)
        id_prefix = f"demo-{run}-"
        events: dict[str, list[InputEvent]] = {
            name: list(
                dataset_events(
                    name,
                    limit=limit or DATASETS[name].size or DEFAULT_LIMITS.get(name, 10_000),
                    model=None,
                    seed=42,
                    id_prefix=id_prefix,
                )
            )
            for name in datasets
        }
        collector = Collector(settings, set(names))
        log_path = settings.data_dir / "demo" / "worker.log"
        echo(f"starting a worker (log: {log_path})")
        scenario = FeedbackScenario(settings, models, echo) if settings.join_enabled else None
        worker = start_worker(log_path, env)
        messages = [encode(e) for batch in events.values() for e in batch]
        bad = bad_messages(id_prefix, DATASETS[datasets[0]].model, settings.max_event_bytes)
        middle = len(messages) // 2
        messages[middle:middle] = [(b"bad", value) for _, value in bad]
        described = ", ".join(f"{len(v)} {k}" for k, v in events.items())
        echo(f"replaying {described} events and {len(bad)} bad messages")
        produce(settings, settings.events_topic, messages, progress=False)
        expected_reports = {
            DATASETS[name].model: run_offline(
                batch, specs[DATASETS[name].model], config=settings.evaluation()
            ).reports
            for name, batch in events.items()
        }
        n_reports = sum(len(r) for r in expected_reports.values())
        last_progress, seen = time.monotonic(), 0
        while collector.outputs < len(messages) or len(collector.reports) < n_reports:
            collector.poll(id_prefix)
            now_seen = collector.outputs + len(collector.reports)
            if now_seen != seen:
                seen, last_progress = now_seen, time.monotonic()
            if worker.poll() is not None:
                echo(f"the worker exited with code {worker.returncode}; see {log_path}")
                break
            if time.monotonic() - last_progress > timeout:
                echo(f"no new output for {timeout:.0f} s; see {log_path}")
                break
        collector.close()
        ok = summary(collector, events, expected_reports, len(messages), len(bad), specs, echo)
        if scenario is not None and worker.poll() is None:
            ok = scenario.summary(timeout, echo) and ok
        from streams.cli.report import write_report

        report = settings.data_dir / "demo" / "riverrun-report.html"
        write_report(settings, report.absolute(), models=models)
        echo(
            f"\nreport (quality with drift alarms, predicted vs actual, dead letters, "
            f"throughput): {report}"
        )
        return ok
    finally:
        if worker is not None:
            stop_worker(worker)
        delete_run_topics(settings, run, echo)
        if started_kafka and kafka is not None:
            echo(kafka.down())


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
    bad: int,
    models: Mapping[str, ModelSpec],
    echo: Echo,
) -> bool:
    """Print the run's summary; True when nothing is missing and metrics match offline."""
    letters = Counter(letter.error_type.value for letter in collector.dead_letters)
    n_letters = sum(letters.values())
    span = (
        (max(collector.timestamps) - min(collector.timestamps)) / 1000
        if collector.timestamps
        else 0
    )
    complete = len(collector.predictions) + n_letters == expected and n_letters == bad
    by_reason = ", ".join(f"{k}={v}" for k, v in sorted(letters.items()))
    lines = [
        "",
        "riverrun demo summary",
        f"  events in          {expected}",
        f"  predictions out    {len(collector.predictions)}",
        f"  dead letters       {n_letters}  {by_reason}",
    ]
    if span > 0:
        rate = len(collector.predictions) / span
        lines.append(f"  events/s           {rate:,.0f}  (first to last prediction)")
    matching = 0
    for dataset, batch in events.items():
        model = DATASETS[dataset].model
        task = models[model].task
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
        overall = [r for r in streamed if r.segment == "all"]
        if overall:
            last = overall[-1]
            lines.append(f"    last report ({last.trigger}, event time {last.ts:%Y-%m-%d %H:%M}):")
            for name in SHOWN[task]:
                value = last.metrics.get(name)
                lines.append(f"      {name:<30} {_number(value)}")
            key = PER_SEGMENT[task]
            for report in [r for r in streamed if r.segment != "all" and r.ts == last.ts]:
                label = f"{key} [{report.segment}]"
                lines.append(f"      {label:<30} {_number(report.metrics.get(key))}")
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


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:,.4f}"


class FeedbackScenario:
    """A seeded click and conversion scenario with delayed labels, produced to the join's
    topics before the worker starts, so that its four topics are read in event-time order
    (produced while a worker reads them, a topic can lag the others by more than the
    join's lateness: see README, Delayed feedback)."""

    def __init__(self, settings: Settings, models: Mapping[str, ModelSpec], echo: Echo) -> None:
        from online_models.feedback.data import delayed_feedback
        from online_models.feedback.joiner import FeedbackJoiner
        from schemas.feedback import Outcome
        from streams.cli.replay import feedback_messages, produce_to_topics

        self.settings = settings
        stream = delayed_feedback(
            FEEDBACK_IMPRESSIONS, seed=42, visitors=400, products=tuple(settings.products)
        )
        offline = FeedbackJoiner(
            settings.join(), settings.evaluation(), registry=models, params=settings.model_params
        )
        self.expected = [
            o for out in offline.process(stream.events) for o in out if isinstance(o, Outcome)
        ]
        topics = [settings.outcomes_topic, settings.metrics_topic]
        self.reader = TopicReader(settings, topics, from_beginning=False)  # this run's only
        echo(
            f"producing a delayed-feedback scenario: {FEEDBACK_IMPRESSIONS} impressions, "
            f"their clicks and conversions of {', '.join(settings.products)}, visitor "
            f"activity ({len(stream.events)} events)"
        )
        produce_to_topics(settings, feedback_messages(stream.events, settings))

    def summary(self, timeout: float, echo: Echo) -> bool:
        """Wait for the outcomes; print coverage, late positives and calibration. True
        when the streamed labels are the offline join's."""
        from schemas.feedback import Outcome

        settings, expected, reader = self.settings, self.expected, self.reader
        streamed: list[Outcome] = []
        join_reports: list[MetricsReport] = []
        last = time.monotonic()
        while len(streamed) < len(expected) and time.monotonic() - last < timeout:
            for m in reader.poll(timeout_ms=500):
                last = time.monotonic()
                if m.topic == settings.outcomes_topic:
                    streamed.append(decode(Outcome, m.value, max_bytes=1 << 20))
                else:
                    report = decode(MetricsReport, m.value, max_bytes=1 << 24)
                    if report.model == "join":
                        join_reports.append(report)
        reader.close()
        clicks = [o for o in streamed if o.label_type == "click"]
        late = clicks[len(clicks) // 2 :]
        predicted = sum(o.prediction for o in late if o.prediction is not None)
        same = sorted((o.impression_id, o.model, o.label) for o in streamed) == sorted(
            (o.impression_id, o.model, o.label) for o in expected
        )
        figures = join_reports[-1].metrics if join_reports else {}
        lines = [
            "",
            "delayed feedback summary",
            f"  impressions          {FEEDBACK_IMPRESSIONS}",
            f"  outcomes             {len(streamed)} (offline join: {len(expected)})",
            f"  label coverage       {_number(figures.get('label_coverage'))}"
            f"  (click labels known; the rest wait for windows still open)",
            f"  late positives       {figures.get('late_positives') or 0:.0f} clicks after a "
            f"{settings.click_window_seconds:.0f} s window (rate "
            f"{_number(figures.get('late_positive_rate'))})",
            f"  conversions joined   {_number(figures.get('conversion_join_rate'))} of conversions "
            f"inside a {settings.conversion_window_seconds / 3600:.0f} h window",
            f"  calibration          {predicted:,.1f} predicted clicks vs "
            f"{sum(o.label for o in late)} actual (last {len(late)} click labels)",
            "  result               "
            + (
                "OK: labels identical to the offline join" if same else "LABELS DIFFER FROM OFFLINE"
            ),
        ]
        for line in lines:
            echo(line)
        return same


def delete_run_topics(settings: Settings, run: str, echo: Echo) -> None:
    """Delete the topics the demo named after its run (see RUN_FIELDS)."""
    from kafka import KafkaAdminClient

    from streams.kafka.security import kafka_options

    names = [getattr(settings, f) for f in RUN_FIELDS if f.endswith("_topic")]
    names = [n for n in names if n.startswith(f"demo-{run}-")]
    if not names:
        return
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=settings.bootstrap_servers, **kafka_options(settings)
        )
        try:
            existing = set(admin.list_topics())
            admin.delete_topics([n for n in names if n in existing])
        finally:
            admin.close()
    except Exception as err:  # the demo's verdict stands; say what is left behind
        echo(f"could not delete the demo's topics ({err}); delete demo-{run}-* yourself")
