"""Turn datasets and files into input events and produce them to Kafka."""

import csv
import json
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from kafka import KafkaProducer
from tqdm import tqdm

from online_models.datasets import DATASETS, Sample
from schemas import ActivityEvent, InputEvent
from schemas.feedback import Click, Conversion, Impression
from streams.kafka_security import kafka_options
from streams.settings import Settings

#: Event time of the first replayed event; each next one is one second later.
DEFAULT_START = datetime(2026, 1, 1, tzinfo=UTC)


def build_events(
    samples: Iterable[Sample],
    *,
    model: str,
    source: str,
    id_prefix: str = "",
    start: datetime = DEFAULT_START,
    step: timedelta = timedelta(seconds=1),
    key_feature: str | None = None,
) -> Iterator[InputEvent]:
    """Input events with deterministic ids `<prefix><source>-<index>` and event times.

    The key is the value of `key_feature` when given (e.g. the offer id), else the event id.
    """
    for i, (features, label) in enumerate(samples):
        event_id = f"{id_prefix}{source}-{i:08d}"
        yield InputEvent(
            event_id=event_id,
            ts=start + i * step,
            model=model,
            key=str(features[key_feature]) if key_feature else event_id,
            features=features,
            label=label,
        )


def file_samples(path: Path, label_column: str = "label") -> Iterator[Sample]:
    """Samples from a JSONL file (one object per line) or a CSV file with a header.

    Every column but `label_column` is a feature; CSV cells that parse as numbers are numbers.
    """
    if path.suffix.lower() == ".csv":
        with path.open(newline="") as f:
            for row in csv.DictReader(f):
                features: dict[str, Any] = {k: _csv_value(v) for k, v in row.items()}
                label = features.pop(label_column, None)
                yield features, (None if label == "" else label)
    else:
        with path.open() as f:
            for line_no, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as err:
                    raise ValueError(f"{path}:{line_no}: not a JSON object ({err})") from err
                label = record.pop(label_column, None)
                yield record, label


def _csv_value(cell: str) -> Any:
    for cast in (int, float):
        try:
            return cast(cell)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(cell.lower(), cell)


def dataset_events(
    name: str, *, limit: int | None, model: str | None, seed: int, id_prefix: str = ""
) -> Iterator[InputEvent]:
    """Events of a named dataset (see `online_models.datasets.DATASETS`)."""
    try:
        dataset = DATASETS[name]
    except KeyError:
        raise ValueError(
            f"unknown dataset {name!r}: choose among {', '.join(sorted(DATASETS))}"
        ) from None
    return build_events(
        dataset.samples(limit, seed),
        model=model or dataset.model,
        source=name,
        id_prefix=id_prefix,
        step=timedelta(seconds=dataset.seconds_per_event),
        key_feature=dataset.key_feature,
    )


def produce(
    settings: Settings,
    topic: str,
    messages: Iterable[tuple[bytes, bytes]],
    *,
    rate: float | None = None,
    total: int | None = None,
    progress: bool = True,
) -> int:
    """Send (key, value) messages in order; at most `rate` per second if given. Returns count."""
    producer = KafkaProducer(
        bootstrap_servers=settings.bootstrap_servers,
        **kafka_options(settings),
        acks="all",
        linger_ms=5,
        batch_size=256 * 1024,
        max_request_size=4 * 1024 * 1024,
        client_id="riverrun-replay",
    )
    sent = 0
    started = time.perf_counter()
    try:
        for key, value in tqdm(messages, total=total, disable=not progress, unit="ev"):
            producer.send(topic, key=key, value=value)
            sent += 1
            if rate:
                ahead = sent / rate - (time.perf_counter() - started)
                if ahead > 0:
                    time.sleep(ahead)
        producer.flush()
    finally:
        producer.close()
    return sent


def encode(event: InputEvent) -> tuple[bytes, bytes]:
    """An input event as a Kafka (key, value) pair."""
    return event.key.encode(), event.model_dump_json().encode()


def feedback_messages(
    events: Iterable[Impression | Click | Conversion | ActivityEvent], settings: Settings
) -> Iterator[tuple[str, bytes, bytes]]:
    """(topic, key, value) of each event of a delayed-feedback stream, in the given
    order, keyed by visitor (a click by the visitor of its impression)."""
    visitor_of: dict[str, str] = {}
    topics = {
        Impression: settings.impressions_topic,
        Click: settings.clicks_topic,
        Conversion: settings.conversions_topic,
        ActivityEvent: settings.activity_topic,
    }
    for event in events:
        if isinstance(event, Impression):
            visitor_of[event.impression_id] = event.visitor
        if isinstance(event, Click):
            visitor = visitor_of.get(event.impression_id, event.impression_id)
        else:
            visitor = event.visitor
        yield topics[type(event)], visitor.encode(), event.model_dump_json().encode()


def produce_to_topics(settings: Settings, messages: Iterable[tuple[str, bytes, bytes]]) -> int:
    """Send (topic, key, value) messages in order. Returns the count."""
    producer = KafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all",
                             linger_ms=5, client_id="riverrun-replay",
                             **kafka_options(settings))  # fmt: skip
    sent = 0
    try:
        for topic, key, value in messages:
            producer.send(topic, key=key, value=value)
            sent += 1
        producer.flush()
    finally:
        producer.close()
    return sent
