"""`riverrun demo`: broker, topics, worker, replay, wait, summary, clean-up."""

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

from online_models.models.datasets import DATASETS
from online_models.models.registry import ModelError, ModelSpec
from online_models.quality.offline import run_offline
from schemas import InputEvent, MetricsReport
from schemas.codec import decode
from schemas.formats.input_events import InputEventEncoder, avro_payload
from schemas.formats.wire import frame
from streams.cli.demo_outputs import Collector, Echo, number_text, summary
from streams.cli.options import EventFormat
from streams.cli.replay import (
    EventsFormatError,
    dataset_events,
    event_writer,
    events_encoder,
    produce,
)
from streams.kafka.local_broker import LocalKafka
from streams.kafka.topics import TopicReader, ensure_topics
from streams.runtime.served_models import served_models
from streams.settings import Settings

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
    "learn_topic",
    "snapshots_topic",
    "impressions_topic",
    "clicks_topic",
    "conversions_topic",
    "outcomes_topic",
)
#: Impressions of the delayed-feedback scenario.
FEEDBACK_IMPRESSIONS = 6_000
#: Events per dataset when the dataset is endless: 30 days of 300 offers.
DEFAULT_LIMITS = {"offers": 300 * 30, "clicks": 10_000}


#: The events topic without a mapping or an event decoder: riverrun's InputEvents.
RIVERRUN_EVENTS = EventFormat(mapping=None, decoder=None)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: A schema id no registry has given (they count up from 1): the demo's record that
#: names a schema the registry does not have.
UNREGISTERED_SCHEMA_ID = 2**31 - 1


def bad_messages(
    id_prefix: str, model: str, max_bytes: int, encoder: InputEventEncoder | None = None
) -> list[tuple[str, bytes]]:
    """One message of each kind the worker must dead-letter, with the error type expected,
    in the events topic's format (`encoder`'s; default: riverrun's JSON).

    In json_schema, riverrun's JSON after the header gets JSON's verdicts; in avro, records
    of the InputEvent schema that are no valid event (Avro cannot leave a field out nor
    make a label a list, as the JSON ones do; one cut short does not decode). Both add the
    wire format's own verdicts: a value not in it (riverrun's JSON without the header), and
    one naming a schema id the registry does not have."""

    def fields(name: str, **changes: object) -> dict[str, object]:
        base = {"event_id": f"{id_prefix}bad-{name}", "ts": 0, "model": model, "key": "k"}
        return {**base, **changes}

    def event(name: str, **changes: object) -> bytes:
        return json.dumps(fields(name, **changes)).encode()

    messages = [
        ("invalid_json", b"this is not json"),
        ("invalid_event", event("nan", features={"x": float("nan")})),  # json.dumps writes NaN
        ("invalid_event", event("no-features")),
        ("invalid_event", event("types", features={"x": "1"}, label=["yes"])),
        ("unknown_model", event("model", model="no-such-model", features={})),
        ("oversized", event("big", features={"pad": "x" * max_bytes})),
    ]
    if encoder is None or encoder.format == "json":
        return messages
    assert encoder.schema_id is not None
    registered = encoder.schema_id
    if encoder.format == "avro":

        def record(name: str, **changes: object) -> bytes:
            base = {"schema_version": 1, "features": {}, "label": None}
            return avro_payload({**base, **fields(name, ts=EPOCH), **changes})

        messages = [
            ("invalid_event", frame(registered, record("nan", features={"x": float("nan")}))),
            ("invalid_event", frame(registered, record("no-key", key=""))),
            ("invalid_event", frame(registered, record("label", label=""))),
            ("unknown_model", frame(registered, record("model", model="no-such-model"))),
            (
                "oversized",
                frame(registered, record("big", features={"pad": "x" * max_bytes})),
            ),
            # Its last field (ts) cut short.
            ("undecodable", frame(registered, record("cut")[:-1])),
        ]
        unknown = record("unknown-schema")
    else:
        messages = [(kind, frame(registered, value)) for kind, value in messages]
        unknown = event("unknown-schema", features={})
    return [
        *messages,
        ("undecodable", event("unframed", features={})),  # riverrun's JSON, without a header
        ("unknown_schema", frame(UNREGISTERED_SCHEMA_ID, unknown)),
    ]


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
    records: EventFormat = RIVERRUN_EVENTS,
) -> bool:
    """Run everything once with the app's `models`; True when every event has a
    prediction or a dead letter and the streamed metrics equal the offline evaluation.

    Events are written in RIVERRUN_EVENTS_FORMAT (`records`: the app's mapping or event
    decoder, which make the events topic a team's and are refused). Raises
    EventsFormatError before anything starts when the events cannot be written."""
    run = time.strftime("%Y%m%d%H%M%S")
    settings, env = demo_settings(settings, run)
    specs = demo_specs(settings, models, datasets)
    if settings.join_enabled and settings.join_format != "json":
        raise EventsFormatError(
            f"the demo writes its delayed-feedback scenario in JSON, which the join reads as "
            f"{settings.join_format} when RIVERRUN_JOIN_FORMAT is set: unset it, or set "
            "RIVERRUN_JOIN_ENABLED=false"
        )
    encoder = events_encoder(settings, settings.events_topic, records)
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
        events = demo_events(datasets, limit, id_prefix)
        collector = Collector(settings, set(specs))
        log_path = settings.data_dir / "demo" / "worker.log"
        echo(f"starting a worker (log: {log_path})")
        scenario = FeedbackScenario(settings, models, echo) if settings.join_enabled else None
        worker = start_worker(log_path, env)
        write = event_writer(encoder)
        messages = [write(e) for batch in events.values() for e in batch]
        model = DATASETS[datasets[0]].model
        bad = bad_messages(id_prefix, model, settings.max_event_bytes, encoder)
        middle = len(messages) // 2
        messages[middle:middle] = [(b"bad", value) for _, value in bad]
        described = ", ".join(f"{len(v)} {k}" for k, v in events.items())
        written = (
            ""
            if encoder.format == "json"
            else f" in {encoder.format} (schema id {encoder.schema_id} under "
            f"{settings.events_topic}-value)"
        )
        echo(f"replaying {described} events and {len(bad)} bad messages{written}")
        produce(settings, settings.events_topic, messages, progress=False)
        expected_reports = {
            DATASETS[name].model: run_offline(
                batch, specs[DATASETS[name].model], config=settings.evaluation()
            ).reports
            for name, batch in events.items()
        }
        n_reports = sum(len(r) for r in expected_reports.values())
        wait_for_outputs(
            collector, worker, log_path, len(messages), n_reports, id_prefix, timeout, echo
        )
        collector.close()
        kinds = Counter(kind for kind, _ in bad)
        ok = summary(collector, events, expected_reports, len(messages), kinds, specs, echo)
        if scenario is not None and worker.poll() is None:
            ok = scenario.summary(timeout, echo) and ok
        write_demo_report(settings, models, echo)
        return ok
    finally:
        if worker is not None:
            stop_worker(worker)
        delete_run_topics(settings, run, echo)
        if started_kafka and kafka is not None:
            echo(kafka.down())


def demo_specs(
    settings: Settings, models: Mapping[str, ModelSpec], datasets: list[str]
) -> dict[str, ModelSpec]:
    """The served models the `datasets`' events are for, each built once: a mistake is
    one sentence here, not in the worker; the offline runs compare with the same specs."""
    unknown = [name for name in datasets if name not in DATASETS]
    if unknown:
        raise ValueError(f"unknown dataset {unknown[0]!r}: choose among {', '.join(DATASETS)}")
    names = [DATASETS[name].model for name in datasets]
    served = served_models(settings, models)
    missing = [name for name in names if name not in served]
    if missing:
        raise ModelError(
            f"the demo replays events for model {missing[0]!r}, which RIVERRUN_MODELS does not "
            "serve; add it there or choose other --dataset names"
        )
    return {name: served[name] for name in names}


def demo_events(
    datasets: list[str], limit: int | None, id_prefix: str
) -> dict[str, list[InputEvent]]:
    """Each dataset's events (all of a finite one, else its default number)."""
    return {
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


def wait_for_outputs(
    collector: Collector,
    worker: subprocess.Popen[bytes],
    log_path: Path,
    outputs: int,
    reports: int,
    id_prefix: str,
    timeout: float,
    echo: Echo,
) -> None:
    """Collect until there are `outputs` outputs and `reports` reports, the worker exits
    (its log: `log_path`), or nothing new arrives for `timeout` seconds."""
    last_progress, seen = time.monotonic(), 0
    while collector.outputs < outputs or len(collector.reports) < reports:
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


def write_demo_report(settings: Settings, models: Mapping[str, ModelSpec], echo: Echo) -> None:
    """`riverrun report` of the run, in the demo's data directory."""
    from streams.cli.report import write_report

    report = settings.data_dir / "demo" / "riverrun-report.html"
    write_report(settings, report.absolute(), models=models)
    echo(
        f"\nreport (quality with drift alarms, predicted vs actual, dead letters, "
        f"throughput): {report}"
    )


class FeedbackScenario:
    """A seeded click and conversion scenario with delayed labels, produced to the join's
    topics before the worker starts, so that its four topics are read in event-time order
    (produced while a worker reads them, a topic can lag the others by more than the
    join's lateness: see the docs, Guides > Delayed feedback,
    docs/guides/delayed-feedback.md)."""

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
            f"  label coverage       {number_text(figures.get('label_coverage'))}"
            f"  (click labels known; the rest wait for windows still open)",
            f"  late positives       {figures.get('late_positives') or 0:.0f} clicks after a "
            f"{settings.click_window_seconds:.0f} s window (rate "
            f"{number_text(figures.get('late_positive_rate'))})",
            f"  conversions joined   {number_text(figures.get('conversion_join_rate'))} of "
            f"conversions inside a {settings.conversion_window_seconds / 3600:.0f} h window",
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
