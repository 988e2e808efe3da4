"""schemas.formats.input_events: input events as `riverrun replay` and the demo write them
in each format. The worker's own decoder (EventDecoder, with the reader the registry's
schema gives) must read back exactly the event that was encoded: the same values of the
same types, floats to the bit, so that an Avro replay's predictions are its JSON twin's."""

import io
import json
import struct
from datetime import UTC, datetime
from typing import Any

import fastavro
import pytest

from schemas import ErrorType, InputEvent
from schemas.codec import InvalidMessage
from schemas.formats.avro_files import render_all
from schemas.formats.events import EventDecoder
from schemas.formats.input_events import (
    InputEventEncoder,
    UnencodableEvent,
    avro_payload,
    registered_schema,
)
from schemas.formats.mapping import RecordMeta
from schemas.formats.readers import reader_for
from schemas.formats.wire import RegisteredSchema, frame
from schemas.json_schema import render
from streams.cli.replay import event_writer

SCHEMA_ID = 12
MAX_BYTES = 100_000
META = RecordMeta("events", 0, 0, 0)

#: Every kind of feature value, and the floats whose bits a sloppy encoding would change
#: (a whole-number float, -0.0, the smallest subnormal, the largest double, 0.1).
FEATURES: dict[str, Any] = {
    "mobile": True,
    "returning": False,
    "visits": 3,
    "zero": 0,
    "one": 1,
    "negative": -(2**63),
    "largest": 2**63 - 1,
    "whole": 2.0,
    "minus_zero": -0.0,
    "tenth": 0.1,
    "subnormal": 5e-324,
    "huge": 1.7976931348623157e308,
    "device": "mobile",
    "empty": "",
    "unicode": "café ☕ 𝄞",
}
#: Every kind of label: none, a boolean, 0/1 as integers, a number, a class name.
LABELS: list[Any] = [None, True, False, 0, 1, 2.5, 1.0, -0.0, "sky"]


def event(label: Any = None, **changes: Any) -> InputEvent:
    fields: dict[str, Any] = {
        "event_id": "e-1",
        "ts": datetime(2026, 3, 1, 12, 30, 5, 123456, tzinfo=UTC),
        "model": "logreg",
        "key": "visitor-7",
        "features": FEATURES,
        "label": label,
    }
    return InputEvent(**(fields | changes))


def decoder(format: str) -> EventDecoder:
    """The worker's decoder of the events topic in `format`, without a mapping, its reader
    made from the schema riverrun registers (as the worker's schema cache makes it)."""
    readers: dict[int, Any] = {}
    if format != "json":
        schema_type, text = registered_schema(format)  # type: ignore[arg-type]
        readers[SCHEMA_ID] = reader_for(RegisteredSchema(SCHEMA_ID, schema_type, text))
    return EventDecoder(format, readers=readers, max_bytes=MAX_BYTES)  # type: ignore[arg-type]


def encoder(format: str) -> InputEventEncoder:
    return InputEventEncoder(format, None if format == "json" else SCHEMA_ID)  # type: ignore[arg-type]


def exactly(value: Any) -> Any:
    """`value` with its type and, for a float, its bits: True is not 1, -0.0 is not 0.0."""
    if isinstance(value, dict):
        return {name: exactly(item) for name, item in value.items()}
    if type(value) is float:
        return ("float", struct.pack("<d", value))
    return (type(value).__name__, value)


@pytest.mark.parametrize("format", ["json", "json_schema", "avro"])
@pytest.mark.parametrize("label", LABELS, ids=repr)
def test_the_worker_reads_back_exactly_the_event_encoded(format: str, label: Any) -> None:
    sent = event(label)
    read = decoder(format).decode(encoder(format).encode(sent), META)
    assert read == sent
    assert exactly(read.features) == exactly(sent.features)
    assert list(read.features) == list(sent.features)  # (the order models see them in)
    assert exactly(read.label) == exactly(sent.label)
    assert read.ts == sent.ts and read.ts.utcoffset() == sent.ts.utcoffset()
    assert read.model_dump_json() == sent.model_dump_json()


def test_json_is_todays_bytes_and_json_schema_frames_them() -> None:
    sent = event(True)
    assert encoder("json").encode(sent) == sent.model_dump_json().encode()
    assert encoder("json_schema").encode(sent) == frame(SCHEMA_ID, sent.model_dump_json().encode())


def test_avro_bytes_are_fastavros_for_the_branch_of_each_values_type() -> None:
    """The encoder names each union branch (fastavro would take the first a value fits);
    the bytes are fastavro's for those branches, after the wire format's header."""
    sent = event(1.0, features={"whole": 1.0, "flag": True, "count": 1})
    schema = fastavro.parse_schema(json.loads(registered_schema("avro")[1]))
    out = io.BytesIO()
    fastavro.schemaless_writer(
        out,
        schema,
        {
            **sent.__dict__,
            "features": {"whole": ("double", 1.0), "flag": ("boolean", True), "count": ("long", 1)},
            "label": ("double", 1.0),
        },
    )
    assert encoder("avro").encode(sent) == frame(SCHEMA_ID, out.getvalue())


def test_the_registered_schemas_are_the_committed_files() -> None:
    assert registered_schema("avro") == ("AVRO", render_all()["input_event.avsc"])
    assert registered_schema("json_schema") == ("JSON", render(InputEvent))
    with pytest.raises(ValueError, match="only json_schema and avro"):
        registered_schema("protobuf")


def test_an_integer_beyond_avros_long_is_refused_with_what_to_do() -> None:
    too_big = event(features={"id": 2**63})
    with pytest.raises(UnencodableEvent) as caught:
        encoder("avro").encode(too_big)
    assert str(caught.value) == (
        "features.id: the integer 9223372036854775808 is beyond Avro's long (64 bits); send it "
        "as a string or a float, or the events in json"
    )
    assert encoder("json").encode(too_big)  # JSON holds it
    # What riverrun replay says, before how many events it had written.
    with pytest.raises(UnencodableEvent, match=r"^event e-1: features.id: the integer"):
        event_writer(encoder("avro"))(too_big)


def test_a_record_that_is_no_valid_event_is_written_and_refused_by_the_worker() -> None:
    """The demo's bad messages in Avro: a NaN feature is valid Avro, an invalid event."""
    fields = {**event().__dict__, "features": {"x": float("nan")}}
    with pytest.raises(InvalidMessage) as caught:
        decoder("avro").decode(frame(SCHEMA_ID, avro_payload(fields)), META)
    assert caught.value.error_type is ErrorType.INVALID_EVENT


def test_formats_riverrun_does_not_write_are_refused() -> None:
    with pytest.raises(ValueError, match="json, json_schema or avro"):
        InputEventEncoder("protobuf", 1)
    with pytest.raises(ValueError, match="need the id"):
        InputEventEncoder("avro")
    with pytest.raises(ValueError, match="schema_id must be None"):
        InputEventEncoder("json", 1)
