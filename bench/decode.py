"""CPU per event to turn a record's bytes into a validated `InputEvent`, for each input
format, beside confluent-kafka's own deserializers on the same bytes.

`python -m bench.decode [--events N] [--rounds R]` (a step of `make bench`; no broker, no
registry):

1. the seeded click stream of `bench.throughput` (`synthetic_clicks`, seed 42) becomes a
   team's flat 12-field click record: event id, time, user, session, country, device,
   category, merchant, hour, position, price, and the label `clicked`;
2. the same records are written in every format, by the serializers a team's producers
   use (confluent-kafka's, against its mock registry client `mock://`): JSON without a
   registry, Avro, JSON Schema and Protobuf in the Confluent wire format; and, as
   riverrun's own events, the InputEvent JSON the worker reads today and the same
   InputEvents in Avro (`schemas/avro/input_event.avsc`);
3. riverrun decodes each stream as the worker does: the InputEvent JSON by
   `schemas.codec.decode` (the fast path), every other one by an `EventDecoder` whose
   readers are filled in advance as the registry cache fills them (one reader per schema
   id), with an `EventMapping` for the click records. Before anything is timed, every
   stream must decode to the same InputEvents (else the bench stops);
4. the contenders decode the same bytes to a dict (or a message) and validate nothing
   beyond their schema: `json.loads`, and confluent-kafka's `AvroDeserializer`,
   `JSONDeserializer` (with its default validation against the JSON Schema, and
   without) and `ProtobufDeserializer` (a message; then `MessageToDict`);
5. each measurement runs over all N records with `time.process_time` (CPU, not wall: the
   machine is shared); a round measures every decoder once, each round in an order of
   its own (shuffled, seeded), and the median over the rounds is reported.

Printed as a table and written to .cache/bench/decode.json. A benchmark, not a test:
nothing is asserted but that the formats decode to the same events.
"""

import argparse
import gc
import json
import random
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import msgspec
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.json_schema import JSONDeserializer, JSONSerializer
from confluent_kafka.schema_registry.protobuf import ProtobufDeserializer, ProtobufSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from google.protobuf import descriptor_pb2, timestamp_pb2
from google.protobuf.descriptor_pb2 import FieldDescriptorProto
from google.protobuf.descriptor_pool import DescriptorPool
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass

from online_models.models.datasets import DATASETS
from schemas import InputEvent
from schemas.codec import decode
from schemas.formats.events import EventDecoder
from schemas.formats.mapping import EventMapping, RecordMeta
from schemas.formats.readers import reader_for
from schemas.formats.wire import InputFormat, RegisteredSchema, unframe
from streams.cli.replay import DEFAULT_START
from streams.settings import Settings

PROJECT_DIR = Path(__file__).resolve().parent.parent
RESULTS = PROJECT_DIR / ".cache" / "bench" / "decode.json"
AVRO_INPUT_EVENT = PROJECT_DIR / "schemas" / "avro" / "input_event.avsc"
#: The worker's default limit on a record's size (`RIVERRUN_MAX_EVENT_BYTES`).
MAX_BYTES: int = Settings.model_fields["max_event_bytes"].default
MODEL = "logreg"
COUNTRIES = ("FR", "DE", "GB", "US", "ES", "IT", "NL", "PL", "SE", "BR")

#: How riverrun maps the click record: the fields not named here (nor excluded) are the
#: features, so the events equal those built from the same samples directly.
MAPPING = EventMapping(
    event_id="event_id",
    ts="ts",
    key="user_id",
    label="clicked",
    model=MODEL,
    exclude=["session_id"],
)

CLICK_AVRO: dict[str, Any] = {
    "type": "record",
    "name": "Click",
    "namespace": "com.shop.events",
    "fields": [
        {"name": "event_id", "type": "string"},
        {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "user_id", "type": "string"},
        {"name": "session_id", "type": "string"},
        {"name": "country", "type": "string"},
        {"name": "device", "type": "string"},
        {"name": "category", "type": "string"},
        {"name": "merchant", "type": "string"},
        {"name": "hour", "type": "int"},
        {"name": "position", "type": "int"},
        {"name": "price", "type": "double"},
        {"name": "clicked", "type": "boolean"},
    ],
}

CLICK_JSON_SCHEMA: dict[str, Any] = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "title": "Click",
    "type": "object",
    "properties": {
        "event_id": {"type": "string"},
        "ts": {"type": "string", "format": "date-time"},
        "user_id": {"type": "string"},
        "session_id": {"type": "string"},
        "country": {"type": "string"},
        "device": {"type": "string"},
        "category": {"type": "string"},
        "merchant": {"type": "string"},
        "hour": {"type": "integer", "minimum": 0, "maximum": 23},
        "position": {"type": "integer", "minimum": 1},
        "price": {"type": "number", "minimum": 0},
        "clicked": {"type": "boolean"},
    },
    "required": [
        "event_id",
        "ts",
        "user_id",
        "session_id",
        "country",
        "device",
        "category",
        "merchant",
        "hour",
        "position",
        "price",
        "clicked",
    ],
    "additionalProperties": False,
}


def click_records(n: int, seed: int = 42) -> list[dict[str, Any]]:
    """A team's click records: the first `n` samples of the seeded click stream, each with
    a user, a session and a country (from a generator of their own, seeded too)."""
    rng = random.Random(seed)
    dataset = DATASETS["clicks"]
    step = timedelta(seconds=dataset.seconds_per_event)
    records = []
    for i, (features, clicked) in enumerate(dataset.samples(n, seed)):
        user = rng.randrange(20_000)
        records.append(
            {
                "event_id": f"click-{i:08d}",
                "ts": DEFAULT_START + i * step,
                "user_id": f"u{user:05d}",
                "session_id": f"s{user:05d}-{rng.randrange(1_000_000):06d}",
                "country": rng.choice(COUNTRIES),
                **features,
                "clicked": clicked,
            }
        )
    return records


def expected_event(record: dict[str, Any]) -> InputEvent:
    """The InputEvent the mapping makes of a click record, built directly."""
    taken = {"event_id", "ts", "user_id", "session_id", "clicked"}
    return InputEvent(
        event_id=record["event_id"],
        ts=record["ts"],
        model=MODEL,
        key=record["user_id"],
        features={name: value for name, value in record.items() if name not in taken},
        label=record["clicked"],
    )


def json_record(record: dict[str, Any]) -> dict[str, Any]:
    """The record as a JSON producer writes it: the time as an ISO-8601 string."""
    return {**record, "ts": record["ts"].isoformat().replace("+00:00", "Z")}


# --- Protobuf: the click record's message, built without protoc -------------------------


def click_file() -> descriptor_pb2.FileDescriptorProto:
    """shop/click.proto: the click record as a Protobuf message (`Click`)."""
    F = FieldDescriptorProto
    kinds = {
        "string": F.TYPE_STRING,
        "int": F.TYPE_INT32,
        "double": F.TYPE_DOUBLE,
        "boolean": F.TYPE_BOOL,
    }
    fields = []
    for number, avro in enumerate(CLICK_AVRO["fields"], start=1):
        if avro["name"] == "ts":
            proto = F(
                name="ts",
                number=number,
                type=F.TYPE_MESSAGE,
                type_name=".google.protobuf.Timestamp",
            )
        else:
            proto = F(name=avro["name"], number=number, type=kinds[avro["type"]])
        proto.label = F.LABEL_OPTIONAL
        fields.append(proto)
    return descriptor_pb2.FileDescriptorProto(
        name="shop/click.proto",
        package="shop.events",
        syntax="proto3",
        dependency=["google/protobuf/timestamp.proto"],
        message_type=[descriptor_pb2.DescriptorProto(name="Click", field=fields)],
    )


def click_message_class() -> type[Message]:
    """The producer's generated class for `Click` (from a pool of its own)."""
    pool = DescriptorPool()
    pool.AddSerializedFile(timestamp_pb2.DESCRIPTOR.serialized_pb)
    pool.AddSerializedFile(click_file().SerializeToString())
    return GetMessageClass(pool.FindMessageTypeByName("shop.events.Click"))


def click_message(cls: type[Message], record: dict[str, Any]) -> Message:
    message = cls(**{name: value for name, value in record.items() if name != "ts"})
    message.ts.FromDatetime(record["ts"])  # type: ignore[attr-defined]
    return message


# --- the streams -------------------------------------------------------------------------


@dataclass
class Stream:
    """One format's records (the same events), riverrun's decoder of them, and the
    contenders that decode the same bytes."""

    name: str
    record: str  # what the records are
    raws: list[bytes]
    #: bytes -> validated InputEvent, as the worker decodes them
    riverrun: Callable[[bytes, RecordMeta], InputEvent]
    #: bytes -> dict by riverrun's reader alone (the wire header taken off), if separable
    reader: Callable[[bytes], Any] | None = None
    #: bytes -> the InputEvent's fields, not validated (the reader, then the mapping)
    fields: Callable[[bytes, RecordMeta], Any] | None = None
    #: label -> bytes -> a dict (or a message)
    contenders: dict[str, Callable[[bytes], Any]] = field(default_factory=dict)


def registered(client: SchemaRegistryClient, schema_id: int) -> RegisteredSchema:
    """The schema as riverrun's registry cache holds it (no references here)."""
    schema = client.get_schema(schema_id)
    assert schema.schema_str is not None
    return RegisteredSchema(
        id=schema_id, schema_type=schema.schema_type or "AVRO", text=schema.schema_str
    )


def wire_stream(
    name: str,
    record: str,
    fmt: InputFormat,
    raws: list[bytes],
    client: SchemaRegistryClient,
    mapping: EventMapping | None,
    contenders: dict[str, Callable[[bytes], Any]],
) -> Stream:
    """A stream in the wire format, decoded by an EventDecoder whose reader was made once
    for its schema id, as the registry cache makes it when it first sees the id."""
    (schema_id,) = {unframe(raw)[0] for raw in raws}
    reader = reader_for(registered(client, schema_id))
    decoder = EventDecoder(
        fmt, readers={schema_id: reader}, mapping=mapping, hook=None, max_bytes=MAX_BYTES
    )

    def read(raw: bytes) -> Any:
        return reader.read(unframe(raw)[1])

    def fields(raw: bytes, meta: RecordMeta) -> Any:
        record = read(raw)
        return record if mapping is None else mapping.mapped(record, meta)

    return Stream(name, record, raws, decoder.decode, read, fields, contenders)


def streams(n: int, seed: int = 42) -> list[Stream]:
    """Every format's stream of the same `n` events, checked to decode to them."""
    records = click_records(n, seed)
    events = [expected_event(record) for record in records]
    as_json = [json_record(record) for record in records]
    client = SchemaRegistryClient.new_client({"url": "mock://riverrun-bench"})
    clicks_avro = SerializationContext("clicks-avro", MessageField.VALUE)
    events_avro = SerializationContext("events-avro", MessageField.VALUE)
    clicks_json = SerializationContext("clicks-json", MessageField.VALUE)
    clicks_proto = SerializationContext("clicks-protobuf", MessageField.VALUE)

    # The producers' side.
    own_json = [event.model_dump_json().encode() for event in events]  # as `riverrun replay`
    compact = json.JSONEncoder(separators=(",", ":"))
    team_json = [compact.encode(record).encode() for record in as_json]
    avro = _written(AvroSerializer(client, json.dumps(CLICK_AVRO)), records, clicks_avro)
    avro_events = _written(
        AvroSerializer(client, AVRO_INPUT_EVENT.read_text()),
        [event.model_dump() for event in events],
        events_avro,
    )
    json_schema = _written(
        JSONSerializer(json.dumps(CLICK_JSON_SCHEMA), client), as_json, clicks_json
    )
    click_class = click_message_class()
    protobuf = _written(
        ProtobufSerializer(click_class, client, {"use.deprecated.format": False}),
        [click_message(click_class, record) for record in records],
        clicks_proto,
    )

    # The contenders: confluent-kafka's deserializers, their schemas from the same client.
    avro_deserializer = AvroDeserializer(client)
    json_deserializer = JSONDeserializer(None, schema_registry_client=client)
    json_unvalidated = JSONDeserializer(
        None, schema_registry_client=client, conf={"validate": False}
    )
    proto_deserializer = ProtobufDeserializer(click_class, {"use.deprecated.format": False})

    def proto_dict(raw: bytes) -> Any:
        message = proto_deserializer(raw, clicks_proto)
        return MessageToDict(message, preserving_proto_field_name=True)

    def fast_path(raw: bytes, meta: RecordMeta) -> InputEvent:
        return decode(InputEvent, raw, max_bytes=MAX_BYTES)

    read_json = msgspec.json.Decoder().decode  # what the decoder reads plain JSON with
    json_mapped = EventDecoder("json", readers={}, mapping=MAPPING, max_bytes=MAX_BYTES)

    def json_fields(raw: bytes, meta: RecordMeta) -> Any:
        return MAPPING.mapped(read_json(raw), meta)

    found = [
        Stream(
            "json", "InputEvent JSON", own_json, fast_path, None, None, {"json.loads": json.loads}
        ),
        Stream(
            "json, mapped",
            "click record JSON",
            team_json,
            json_mapped.decode,
            read_json,
            json_fields,
            {"json.loads": json.loads},
        ),
        wire_stream(
            "avro",
            "InputEvent",
            "avro",
            avro_events,
            client,
            None,
            {"AvroDeserializer": lambda raw: avro_deserializer(raw, events_avro)},
        ),
        wire_stream(
            "avro, mapped",
            "click record",
            "avro",
            avro,
            client,
            MAPPING,
            {"AvroDeserializer": lambda raw: avro_deserializer(raw, clicks_avro)},
        ),
        wire_stream(
            "json_schema, mapped",
            "click record",
            "json_schema",
            json_schema,
            client,
            MAPPING,
            {
                "JSONDeserializer": lambda raw: json_deserializer(raw, clicks_json),
                "JSONDeserializer, validate=False": lambda raw: json_unvalidated(raw, clicks_json),
            },
        ),
        wire_stream(
            "protobuf, mapped",
            "click record",
            "protobuf",
            protobuf,
            client,
            MAPPING,
            {
                "ProtobufDeserializer": lambda raw: proto_deserializer(raw, clicks_proto),
                "ProtobufDeserializer + MessageToDict": proto_dict,
            },
        ),
    ]
    check(found, events)
    return found


def _written(
    serialize: Callable[[Any, SerializationContext], bytes | None],
    values: Sequence[Any],
    ctx: SerializationContext,
) -> list[bytes]:
    written = [serialize(value, ctx) for value in values]
    return [raw for raw in written if raw is not None]


def metas(n: int, topic: str = "clicks") -> list[RecordMeta]:
    start_ms = int(DEFAULT_START.timestamp() * 1000)
    return [RecordMeta(topic, 0, offset, start_ms + offset) for offset in range(n)]


def check(found: Sequence[Stream], events: Sequence[InputEvent]) -> None:
    """Every stream decodes to the same events (else its figure would not be comparable)."""
    for stream in found:
        decoded = [
            stream.riverrun(raw, meta)
            for raw, meta in zip(stream.raws, metas(len(stream.raws)), strict=True)
        ]
        if decoded != list(events):
            wrong = next(i for i, (a, b) in enumerate(zip(decoded, events, strict=True)) if a != b)
            raise SystemExit(
                f"{stream.name}: event {wrong} decodes to {decoded[wrong]!r}, not {events[wrong]!r}"
            )


# --- timing ------------------------------------------------------------------------------


@dataclass
class Figure:
    """CPU µs per event of one decoder over one stream, a sample per round."""

    stream: str
    label: str  # "riverrun", "reader", "fields" or a contender's
    run: Callable[[], None]
    samples: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)


def figures(found: Sequence[Stream]) -> list[Figure]:
    """One figure per decoder of each stream, each a loop over all its records."""
    made = []
    for stream in found:
        raws, at = stream.raws, metas(len(stream.raws))
        made.append(Figure(stream.name, "riverrun", _loop_with_meta(stream.riverrun, raws, at)))
        if stream.reader is not None:
            made.append(Figure(stream.name, "reader", _loop(stream.reader, raws)))
        if stream.fields is not None:
            made.append(Figure(stream.name, "fields", _loop_with_meta(stream.fields, raws, at)))
        for label, contender in stream.contenders.items():
            made.append(Figure(stream.name, label, _loop(contender, raws)))
    return made


def _loop(decode: Callable[[bytes], Any], raws: list[bytes]) -> Callable[[], None]:
    def run() -> None:
        for raw in raws:
            decode(raw)

    return run


def _loop_with_meta(
    decode: Callable[[bytes, RecordMeta], Any], raws: list[bytes], at: list[RecordMeta]
) -> Callable[[], None]:
    def run() -> None:
        for raw, meta in zip(raws, at, strict=True):
            decode(raw, meta)

    return run


def measure(made: Sequence[Figure], n: int, rounds: int) -> None:
    """`rounds` samples of each figure: every round runs each once, in an order of its own
    (shuffled with the round's number as the seed), so that no figure always runs first,
    nor always after the same one (caches, allocator, a neighbour's load)."""
    for figure in made:  # warm-up: schemas parsed, validators compiled, caches filled
        figure.run()
    # As the worker does after start-up: the collector leaves the long-lived objects (the
    # records, River and its libraries) alone, and each collection between two figures
    # takes milliseconds, not a tenth of a second.
    gc.collect()
    gc.freeze()
    for r in range(rounds):
        order = list(made)
        random.Random(r).shuffle(order)
        for figure in order:
            gc.collect()
            began = time.process_time()
            figure.run()
            figure.samples.append((time.process_time() - began) / n * 1e6)


# --- report ------------------------------------------------------------------------------


def table(found: Sequence[Stream], made: Sequence[Figure]) -> str:
    """The medians as a Markdown table, one line per format."""
    by = {(figure.stream, figure.label): figure.median for figure in made}

    def us(stream: Stream, label: str) -> str:
        value = by.get((stream.name, label))
        return "" if value is None else f"{value:.2f}"

    lines = [
        "| format | records | bytes → dict (riverrun's reader) | + mapping: the event's fields "
        "| **bytes → validated InputEvent** | contender, bytes → dict | riverrun ÷ contender |",
        "|---|---|---|---|---|---|---|",
    ]
    for stream in found:
        ours = by[(stream.name, "riverrun")]
        theirs = [(label, by[(stream.name, label)]) for label in stream.contenders]
        contenders = "; ".join(f"{label} {value:.2f}" for label, value in theirs)
        ratio = f"{ours / theirs[0][1]:.2f}\u00d7" if theirs else ""
        lines.append(
            f"| {stream.name} | {stream.record} | {us(stream, 'reader')} | "
            f"{us(stream, 'fields')} | **{ours:.2f}** | {contenders} | {ratio} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--events", type=int, default=20_000, help="records per format")
    parser.add_argument("--rounds", type=int, default=7, help="samples of each decoder")
    parser.add_argument("--output", type=Path, default=RESULTS, help="the results' JSON")
    args = parser.parse_args(argv)
    began = time.monotonic()
    found = streams(args.events)
    made = figures(found)
    print(
        f"decode: {args.events:,} events per format, {len(made)} decoders, "
        f"{args.rounds} rounds (median CPU µs per event)"
    )
    measure(made, args.events, args.rounds)
    print(table(found, made))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    summary = {
        "events": args.events,
        "rounds": args.rounds,
        "us_per_event": {
            stream.name: {
                figure.label: {"median": figure.median, "samples": figure.samples}
                for figure in made
                if figure.stream == stream.name
            }
            for stream in found
        },
    }
    args.output.write_text(json.dumps(summary, indent=2))
    print(f"\nresults: {args.output}; {time.monotonic() - began:.0f} s")


if __name__ == "__main__":
    main()
