"""Turn datasets and files into input events and produce them to Kafka, in the events
topic's format."""

import asyncio
import csv
import itertools
import json
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kafka import KafkaProducer
from pydantic import TypeAdapter, ValidationError
from tqdm import tqdm

from online_models.learning.admission import label_problem
from online_models.models.datasets import DATASETS, Sample
from schemas import ActivityEvent, InputEvent
from schemas.feedback import Click, Conversion, Impression
from schemas.formats.input_events import InputEventEncoder, UnencodableEvent
from schemas.input_event import EXPECTED_FEATURE, EXPECTED_LABEL
from schemas.types import EventTime
from streams.kafka.security import kafka_options
from streams.settings import Settings

if TYPE_CHECKING:
    from streams.cli.options import EventFormat
    from streams.cli.replay_aftermath import Produced

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


class FileError(ValueError):
    """A file that cannot be replayed as it is; the message names the file, the line and
    what to change."""


#: How a time column's values are read: as the `ts` of an input event.
_EVENT_TIME: TypeAdapter[datetime] = TypeAdapter(EventTime)


def file_events(
    path: Path,
    *,
    model: str,
    label_column: str | None = "label",
    key_column: str | None = None,
    time_column: str | None = None,
    id_prefix: str = "",
    limit: int | None = None,
    task: str | None = None,
) -> Iterator[InputEvent]:
    """Input events of a JSONL file (one object per line) or a CSV file with a header.

    Every column but the label, key and time columns is a feature; CSV cells that parse
    as numbers are numbers. Event ids are `<prefix><file stem>-<index>`. The key is the
    key column's value (else the event id); the event time the time column's (else one
    second after the previous event's, from 2026-01-01): ISO 8601 (no zone means UTC) or
    a number of seconds since the epoch, read as milliseconds beyond 2e10 (as pydantic
    reads them). A record without a label (an empty CSV cell, a JSON object without the
    column) is predicted, not learnt from. `label_column=None`: the file has no labels.
    `task`, the model's task: a label it cannot learn is refused as the stream would.

    Raises FileError for a column named but not in the file (a CSV header without it, or
    no JSON object with it: then only once the file is read to its end), a record without
    a key or with a time that does not parse, a line that is not a JSON object, an event
    the schema refuses, or a label the task refuses. `count_file_events` reads a file
    through before anything is sent.
    """
    named = {"label": label_column, "key": key_column, "time": time_column}
    not_features = {column for column in named.values() if column}
    csv_file = path.suffix.lower() == ".csv"
    records = _csv_records(path, named) if csv_file else _json_records(path)
    label_seen = label_column is None or csv_file  # (a CSV header was checked)
    columns: set[str] = set()
    for i, (line, record) in enumerate(itertools.islice(records, limit)):
        where = f"{path.name} line {line}"
        if not label_seen:
            label_seen = label_column in record
            columns.update(record)
        label = record.get(label_column) if label_column else None
        event_id = f"{id_prefix}{path.stem}-{i:08d}"
        try:
            event = InputEvent(
                event_id=event_id,
                ts=_event_time(record, time_column, where)
                if time_column
                else DEFAULT_START + timedelta(seconds=i),
                model=model,
                key=_key(record, key_column, where) if key_column else event_id,
                features={k: v for k, v in record.items() if k not in not_features},
                label=None if label == "" else label,
            )
        except ValidationError as err:
            reason = _refused(err)
            raise FileError(f"{where}: {reason}: fix the record or leave the column out") from None
        if task is not None and event.label is not None:
            problem = label_problem(model, task, event.label)
            if problem is not None:
                raise FileError(f"{where}: {problem} (is --label-column the column of labels?)")
        yield event
    if not label_seen:
        raise FileError(_missing(path.name, "label", label_column, columns))


def _refused(err: ValidationError) -> str:
    """The first thing the event schema refused, its location folded as dead letters fold
    it (`features.price: expected ..., got {...}`, not one error per member of a union)."""
    error = err.errors(include_url=False)[0]
    loc = error["loc"]
    if loc[0] == "features" and len(loc) == 3:
        return f"features.{loc[1]}: expected {EXPECTED_FEATURE}, got {error['input']!r}"
    if loc[0] == "label" and len(loc) == 2:
        return f"label: expected {EXPECTED_LABEL}, got {error['input']!r}"
    return f"{'.'.join(str(part) for part in loc)}: {error['msg']}"


def count_file_events(path: Path, **options: Any) -> int:
    """How many events `file_events(path, **options)` makes; raises its FileError before
    anything is sent."""
    return sum(1 for _ in file_events(path, **options))


def _csv_records(path: Path, named: dict[str, str | None]) -> Iterator[tuple[int, dict[str, Any]]]:
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        header = [name for name in reader.fieldnames or [] if name]
        for role, column in named.items():
            if column and column not in header:
                raise FileError(_missing(path.name, role, column, header))
        for row in reader:
            cells = len(header) + len(row.get(None) or ()) - sum(v is None for v in row.values())
            if cells != len(header):
                raise FileError(
                    f"{path.name} line {reader.line_num} has {cells} cells where the header "
                    f"names {len(header)} columns: give every row one cell per column"
                )
            yield reader.line_num, {k: _csv_value(v) for k, v in row.items()}


def _json_records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with path.open() as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                record = err
            if not isinstance(record, dict):
                raise FileError(
                    f"{path.name} line {line_no}: not a JSON object ({record}); write one "
                    "object of features per line"
                )
            yield line_no, record


def _missing(where: str, role: str, column: str | None, columns: Iterable[str]) -> str:
    shown = ", ".join(sorted(columns)[:30]) or "none"
    return (
        f"{where} has no column {column!r} (its columns: {shown}): pass "
        f"--{role}-column with the column that holds the {_ROLES[role]}"
    )


_ROLES = {
    "label": "labels (or --unlabelled for a file without labels)",
    "key": "keys (e.g. a visitor id)",
    "time": "event times",
}


def _value(record: dict[str, Any], role: str, column: str, where: str) -> Any:
    if column not in record:
        raise FileError(_missing(where, role, column, record))
    return record[column]


def _key(record: dict[str, Any], column: str, where: str) -> str:
    value = _value(record, "key", column, where)
    if value is None or value == "":
        raise FileError(f"{where}: the key column {column!r} is empty: give every record a key")
    return str(value)


def _event_time(record: dict[str, Any], column: str, where: str) -> datetime:
    value = _value(record, "time", column, where)
    try:
        return _EVENT_TIME.validate_python(value)
    except ValidationError:
        raise FileError(
            f"{where}: the time column {column!r} holds {value!r}, which is not a time: "
            "write ISO 8601 (2026-01-01T09:30:00Z; no zone means UTC) or seconds (or "
            "milliseconds) since the epoch"
        ) from None


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
    """Events of a named dataset (see `online_models.models.datasets.DATASETS`)."""
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
    produced: "Produced | None" = None,
) -> int:
    """Send (key, value) messages in order; at most `rate` per second if given. Returns count.

    `produced` records where each acknowledged message was written."""
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
            future = producer.send(topic, key=key, value=value)
            if produced is not None:
                future.add_callback(produced.written)
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
    """An input event as a Kafka (key, value) pair, in riverrun's JSON."""
    return event.key.encode(), event.model_dump_json().encode()


#: An input event as a Kafka (key, value) pair, in the format of the topic it goes to.
EventWriter = Callable[[InputEvent], tuple[bytes, bytes]]


class EventsFormatError(Exception):
    """Events cannot be written to the topic in its format; the message says why and what
    to do, in one sentence."""


def events_encoder(settings: Settings, topic: str, records: "EventFormat") -> InputEventEncoder:
    """How riverrun's input events are written to `topic`, the events topic: in
    RIVERRUN_EVENTS_FORMAT, with avro and json_schema the InputEvent schema registered
    under `<topic>-value` (TopicNameStrategy) first.

    Raises EventsFormatError when riverrun cannot write the topic's records (protobuf, a
    mapping or an event decoder: the topic carries a team's own records), and when the
    registry does not register the schema."""
    from streams.http.schema_registry import RegistryUnavailable
    from streams.services.formats import Formats

    formats = Formats(settings, mapping=records.mapping, hook=records.decoder)
    team = formats.team_records()
    if team is not None:
        raise EventsFormatError(
            f"{team}, so the events topic carries the team's own records, which the team's "
            "producers write (riverrun has no schema of them): replay to a topic read as "
            "riverrun's events (RIVERRUN_EVENTS_FORMAT json, avro or json_schema, no mapping)"
        )

    async def registered() -> InputEventEncoder:
        try:
            return await formats.input_event_encoder(topic)
        finally:
            await formats.close()

    try:
        return asyncio.run(registered())
    except RegistryUnavailable as err:
        raise EventsFormatError(
            f"the schema registry at {settings.schema_registry_url} did not register the "
            f"InputEvent schema under {topic}-value ({err}): start it, or check "
            "RIVERRUN_SCHEMA_REGISTRY_URL and its credentials"
        ) from None


def event_writer(encoder: InputEventEncoder) -> EventWriter:
    """Each event as a Kafka (key, value) pair, its value in `encoder`'s format; an event
    the format cannot hold raises UnencodableEvent naming the event."""
    if encoder.format == "json":
        return encode

    def write(event: InputEvent) -> tuple[bytes, bytes]:
        try:
            return event.key.encode(), encoder.encode(event)
        except UnencodableEvent as err:
            raise UnencodableEvent(f"event {event.event_id}: {err}") from None

    return write


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
    producer = KafkaProducer(
        bootstrap_servers=settings.bootstrap_servers,
        acks="all",
        linger_ms=5,
        client_id="riverrun-replay",
        **kafka_options(settings),
    )
    sent = 0
    try:
        for topic, key, value in messages:
            producer.send(topic, key=key, value=value)
            sent += 1
        producer.flush()
    finally:
        producer.close()
    return sent
