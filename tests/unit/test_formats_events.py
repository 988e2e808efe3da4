"""schemas.formats.events: the decoder the worker runs on each record of the events topic.

riverrun's own JSON events must take today's path (the same events, the same reasons); a
team's record, mapped or made an event by the app's function, must give the event its
JSON twin gives (the same values, types and feature order: predictions follow bit for
bit), and each refusal a reason that says what to change. Registry readers are stand-ins
here, but for one real Avro reader (timestamps as datetimes).
"""

import io
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import fastavro
import orjson
import pytest

import riverrun
from schemas import ErrorType, InputEvent
from schemas.codec import InvalidMessage, decode
from schemas.feedback import Click
from schemas.formats.avro import AvroReader
from schemas.formats.events import EventDecoder, decode_record, unknown_schema
from schemas.formats.mapping import EventMapping, RecordMeta
from schemas.formats.wire import RegisteredSchema, frame

MAX_BYTES = 10_000
META = RecordMeta("clicks", 0, 17, 1_767_225_600_000)
T = "2026-01-01T12:00:00Z"

#: A team's click record, and the mapping that makes it an event.
CLICK = {
    "click_id": 991,
    "time": T,
    "user": {"id": 7, "country": "FR", "premium": True, "email": None},
    "device": "mobile",
    "price": 0.1,
    "position": 3,
    "clicked": True,
}
MAPPING = EventMapping(event_id="click_id", ts="time", key="user.id", model="ctr", label="clicked")
#: The same event as riverrun's own JSON, features in the record's order.
TWIN = {
    "event_id": "991",
    "ts": T,
    "model": "ctr",
    "key": "7",
    "features": {
        "user.country": "FR",
        "user.premium": True,
        "device": "mobile",
        "price": 0.1,
        "position": 3,
    },
    "label": True,
}


class Reader:
    """A registry reader stand-in: the record it was given, whatever the payload."""

    def __init__(self, record: dict[str, Any]) -> None:
        self.record = record

    def read(self, payload: bytes) -> dict[str, Any]:
        return dict(self.record)


def json_decoder(**options: Any) -> EventDecoder:
    return EventDecoder("json", readers={}, max_bytes=MAX_BYTES, **options)


def verdict(decoder: EventDecoder, raw: bytes | None, meta: RecordMeta = META) -> InvalidMessage:
    with pytest.raises(InvalidMessage) as caught:
        decoder.decode(raw, meta)
    return caught.value


def same_event(got: InputEvent, expected: InputEvent) -> None:
    """Equal, field by field and type by type, features in the same order."""
    assert got == expected
    assert list(got.features.items()) == list(expected.features.items())
    assert [type(v) for v in got.features.values()] == [type(v) for v in expected.features.values()]
    assert type(got.label) is type(expected.label)
    assert got.ts.tzinfo is UTC


# --- riverrun's own JSON: today's path -------------------------------------------------

OWN: list[bytes | None] = [
    orjson.dumps(TWIN),
    b'{"event_id": "e1", "ts": 1767225600, "model": "m", "key": "k", "features": {}}',
    b'{"event_id": "e1", "ts": "2026-01-01", "model": "m", "key": "k", "features": {"a": 1e400}}',
]
BAD: list[bytes | None] = [
    None,
    b"x" * (MAX_BYTES + 1),
    b"{not json",
    b"[1, 2]",
    b'{"event_id": "e1", "ts": 0, "model": "m"}',
    b'{"event_id": "e1", "ts": 0, "model": "m", "key": "k", "features": {"a": "1"}, "label": "1"}',
    b'{"event_id": "e1", "ts": 0, "model": "m", "key": "k", "features": {"a": true}, "lable": 1}',
]


@pytest.mark.parametrize("raw", OWN + BAD)
def test_json_events_take_todays_path_with_its_verdicts(raw: bytes | None) -> None:
    decoder = json_decoder()
    try:
        expected = decode(InputEvent, raw, max_bytes=MAX_BYTES)
    except InvalidMessage as err:
        got = verdict(decoder, raw)
        assert (got.error_type, got.reason) == (err.error_type, err.reason)
    else:
        same_event(decoder.decode(raw, META), expected)


def test_framed_json_events_are_decoded_as_json() -> None:
    decoder = EventDecoder("json_schema", readers={5: Reader({})}, max_bytes=MAX_BYTES)
    for raw in [*OWN, *BAD[2:]]:
        assert raw is not None
        try:
            expected = decode(InputEvent, raw, max_bytes=MAX_BYTES)
        except InvalidMessage as err:
            assert verdict(decoder, frame(5, raw)).reason == err.reason
        else:
            same_event(decoder.decode(frame(5, raw), META), expected)


# --- a team's JSON, mapped ---------------------------------------------------------------


def test_a_mapped_record_is_its_json_twin() -> None:
    event = json_decoder(mapping=MAPPING).decode(orjson.dumps(CLICK), META)
    same_event(event, InputEvent.model_validate_json(orjson.dumps(TWIN)))


def test_a_mapped_records_ints_floats_and_bools_stay_apart() -> None:
    record = {"user": {"id": "u"}, "n": 1, "x": 1.0, "b": True, "zero": 0.0, "big": 2**70 + 1}
    raw = json.dumps(record).encode()  # (orjson writes no integer beyond 64 bits)
    event = json_decoder(mapping=EventMapping(key="user.id", model="m")).decode(raw, META)
    assert [(k, type(v)) for k, v in event.features.items()] == [
        ("n", int),
        ("x", float),
        ("b", bool),
        ("zero", float),
        ("big", int),
    ]
    twin = {**TWIN, "features": {k: v for k, v in record.items() if k != "user"}}
    assert event.features == InputEvent.model_validate_json(json.dumps(twin)).features


@pytest.mark.parametrize(
    ("label", "expected"), [(1, 1), (1.0, 1.0), (True, True), ("buy", "buy"), (None, None)]
)
def test_a_mapped_label_is_typed_as_in_json(label: Any, expected: Any) -> None:
    record = {**CLICK, "clicked": label}
    event = json_decoder(mapping=MAPPING).decode(orjson.dumps(record), META)
    assert event.label == expected and type(event.label) is type(expected)


def test_event_times_as_json_gives_them() -> None:
    decoder = json_decoder(mapping=MAPPING)
    for ts in (T, "2026-01-01T13:00:00+01:00", "2026-01-01T12:00:00", 1_767_268_800):
        event = decoder.decode(orjson.dumps({**CLICK, "time": ts}), META)
        assert event.ts == datetime(2026, 1, 1, 12, tzinfo=UTC)


def test_a_mapped_record_not_json_or_not_an_object() -> None:
    decoder = json_decoder(mapping=MAPPING)
    for raw in (b"{nope", b'{"a": "\xff"}', b'{"user": {"id": 1}, "a": 1e999}'):
        err = verdict(decoder, raw)
        assert err.error_type is ErrorType.INVALID_JSON
        assert err.reason.startswith("not valid JSON (")
        assert err.reason.endswith(
            "send one JSON object per message, UTF-8 encoded, without NaN or Infinity"
        )
    for raw, kind in (
        (b"[1]", "array"),
        (b'"x"', "string"),
        (b"3", "number"),
        (b"null", "true, false or null"),
    ):
        err = verdict(decoder, raw)
        assert (err.error_type, err.reason) == (
            ErrorType.INVALID_EVENT,
            f"a JSON {kind}, not an object: send one JSON object per message",
        )


def test_empty_and_oversized_records_get_codecs_verdicts() -> None:
    for options in ({"mapping": MAPPING}, {"hook": lambda record: record}):
        decoder = json_decoder(**options)
        for raw in (None, b" " * (MAX_BYTES + 1)):
            with pytest.raises(InvalidMessage) as expected:
                decode(InputEvent, raw, max_bytes=MAX_BYTES)
            got = verdict(decoder, raw)
            assert (got.error_type, got.reason) == (
                expected.value.error_type,
                expected.value.reason,
            )


def test_a_mapped_records_invalid_fields_are_named_as_the_records() -> None:
    decoder = json_decoder(mapping=MAPPING)
    err = verdict(decoder, orjson.dumps({**CLICK, "time": "yesterday", "device": "x" * 2000}))
    assert err.error_type is ErrorType.INVALID_EVENT
    assert err.reason.startswith(
        "invalid InputEvent v1: field `time` (ts): Input should be a valid datetime"
    )
    assert (
        "; field `device` (features.device): expected a finite number, a boolean or a string of at most 1024 characters, got 'xxx"
        in err.reason
    )
    assert err.reason.endswith(
        "The record was made an event by the mapping (RIVERRUN_EVENT_MAPPING): fix the "
        "producer, or the mapping (exclude a field that is no feature, or list the features)"
    )
    assert "input_event.v1.json" not in err.reason


def test_a_mapping_refusal_comes_through() -> None:
    err = verdict(json_decoder(mapping=MAPPING), orjson.dumps({**CLICK, "user": {}}))
    assert err.reason.startswith(
        "the record has no field `user.id` (the key in RIVERRUN_EVENT_MAPPING)"
    )


# --- the app's event decoder -------------------------------------------------------------


def to_event(record: dict[str, Any]) -> Mapping[str, Any]:
    return {
        "model": "ctr",
        "key": str(record["user"]["id"]),
        "features": {"price": record["price"]},
    }


def test_an_event_decoders_fields_with_the_kafka_records_id_and_time() -> None:
    event = json_decoder(hook=to_event).decode(orjson.dumps(CLICK), META)
    assert (event.event_id, event.ts, event.key, event.features) == (
        "clicks:0:17",
        datetime(2026, 1, 1, tzinfo=UTC),
        "7",
        {"price": 0.1},
    )


def test_what_an_event_decoder_raises_is_the_records_verdict() -> None:
    err = verdict(json_decoder(hook=to_event), b'{"price": 1}')
    assert (err.error_type, err.reason) == (
        ErrorType.INVALID_EVENT,
        f"the event decoder {__name__}.to_event raised KeyError: 'user'; fix the decoder "
        "for such records, or the producer",
    )

    def failing(record: dict[str, Any]) -> Mapping[str, Any]:
        raise RuntimeError("x" * 500)

    err = verdict(json_decoder(hook=failing), b"{}")
    assert (
        "test_what_an_event_decoder_raises_is_the_records_verdict.<locals>.failing raised RuntimeError: xxx"
        in err.reason
    )
    assert len(err.reason) < 400


def test_an_event_decoder_must_return_fields() -> None:
    err = verdict(json_decoder(hook=lambda record: [record]), b"{}")
    assert err.reason == (
        f"the event decoder {__name__}.test_an_event_decoder_must_return_fields.<locals>."
        "<lambda> returned list, not an InputEvent's fields "
        "(a dict: event_id, ts, model, key, features, label)"
    )


def test_an_event_decoders_invalid_fields_name_it() -> None:
    def typo(record: dict[str, Any]) -> Mapping[str, Any]:
        return {**to_event(record), "lable": True, "key": 7}

    err = verdict(json_decoder(hook=typo), orjson.dumps(CLICK))
    assert err.reason.startswith(
        "invalid InputEvent v1: key: Input should be a valid string; lable: Extra inputs are not permitted. "
    )
    assert err.reason.endswith(
        f"made an event by the event decoder {__name__}.test_an_event_decoders_invalid_fields_name_it.<locals>.typo: fix it, or the producer"
    )


def test_a_mapping_and_an_event_decoder_are_one_too_many() -> None:
    with pytest.raises(ValueError, match="both an event mapping and an event decoder"):
        json_decoder(mapping=MAPPING, hook=to_event)


# --- registry formats ----------------------------------------------------------------


def test_a_record_in_the_wire_format_is_read_by_its_schemas_reader_and_mapped() -> None:
    decoder = EventDecoder(
        "protobuf", readers={3: Reader(CLICK)}, mapping=MAPPING, max_bytes=MAX_BYTES
    )
    same_event(
        decoder.decode(frame(3, b"..."), META), InputEvent.model_validate_json(orjson.dumps(TWIN))
    )


def test_an_unknown_schema_id_an_unreadable_schema_and_an_unframed_record() -> None:
    unusable = InvalidMessage(ErrorType.UNDECODABLE, "schema 4 is .proto text: ...")
    decoder = EventDecoder(
        "avro", readers={3: Reader(CLICK), 4: unusable}, mapping=MAPPING, max_bytes=MAX_BYTES
    )
    err = verdict(decoder, frame(9, b""))
    assert (err.error_type, err.reason) == (ErrorType.UNKNOWN_SCHEMA, unknown_schema(9).reason)
    assert "schema id 9" in err.reason and "RIVERRUN_SCHEMA_REGISTRY_URL" in err.reason
    assert verdict(decoder, frame(4, b"")) is unusable
    err = verdict(decoder, orjson.dumps(CLICK))
    assert (
        err.error_type is ErrorType.UNDECODABLE and "not in the Confluent wire format" in err.reason
    )


def test_an_avro_record_with_a_timestamp_is_its_json_twin() -> None:
    text = json.dumps(
        {
            "type": "record",
            "name": "Click",
            "fields": [
                {"name": "click_id", "type": "long"},
                {"name": "time", "type": {"type": "long", "logicalType": "timestamp-millis"}},
                {
                    "name": "user",
                    "type": {
                        "type": "record",
                        "name": "User",
                        "fields": [
                            {"name": "id", "type": "long"},
                            {"name": "country", "type": "string"},
                            {"name": "premium", "type": "boolean"},
                            {"name": "email", "type": ["null", "string"], "default": None},
                        ],
                    },
                },
                {"name": "device", "type": "string"},
                {"name": "price", "type": "double"},
                {"name": "position", "type": "long"},
                {"name": "clicked", "type": ["null", "boolean"]},
            ],
        }
    )
    written = io.BytesIO()
    record = {**CLICK, "time": datetime(2026, 1, 1, 12, tzinfo=UTC)}
    fastavro.schemaless_writer(written, fastavro.parse_schema(json.loads(text)), record)
    reader = AvroReader(RegisteredSchema(11, "AVRO", text))
    decoder = EventDecoder("avro", readers={11: reader}, mapping=MAPPING, max_bytes=MAX_BYTES)
    event = decoder.decode(frame(11, written.getvalue()), META)
    same_event(event, InputEvent.model_validate_json(orjson.dumps(TWIN)))


def test_an_input_event_as_a_record_is_validated_as_json_is() -> None:
    fields = {**TWIN, "ts": datetime(2026, 1, 1, 12, tzinfo=UTC)}
    decoder = EventDecoder("avro", readers={1: Reader(fields)}, max_bytes=MAX_BYTES)
    same_event(
        decoder.decode(frame(1, b""), META), InputEvent.model_validate_json(orjson.dumps(TWIN))
    )

    def refused(record: dict[str, Any]) -> str:
        decoder = EventDecoder("avro", readers={1: Reader(record)}, max_bytes=MAX_BYTES)
        return verdict(decoder, frame(1, b"")).reason

    # strict as JSON: no bool for an int, no int where a string is expected, no bytes
    reason = refused({**TWIN, "key": 7, "label": "1", "features": {"a": [1]}})
    assert reason.startswith(
        "invalid InputEvent v1: key: Input should be a valid string; features.a: expected a finite number"
    )
    assert reason.endswith(
        "Fix the producer so that its records carry an InputEvent's fields (`riverrun "
        "schemas export --dir DIR` writes its schemas), or make records events with a "
        "mapping (RIVERRUN_EVENT_MAPPING) or an @app.event_decoder"
    )
    assert refused({**TWIN, "event_id": b"e1"}).startswith(
        "invalid InputEvent v1: event_id: bytes, not a string. Produce it as a string"
    )
    assert refused({**TWIN, "schema_version": True}).startswith(
        "invalid InputEvent v1: schema_version: Input should be a valid integer"
    )


def test_a_join_record_in_a_registry_format() -> None:
    click = {"click_id": "c1", "impression_id": "i1", "ts": datetime(2026, 1, 1, tzinfo=UTC)}
    expected = Click.model_validate_json(
        '{"click_id": "c1", "impression_id": "i1", "ts": "2026-01-01T00:00:00Z"}'
    )
    assert decode_record(Click, frame(2, b""), {2: Reader(click)}, max_bytes=MAX_BYTES) == expected
    with pytest.raises(InvalidMessage) as caught:
        decode_record(Click, frame(2, b""), {2: Reader({**click, "extra": 1})}, max_bytes=MAX_BYTES)
    assert caught.value.reason.endswith(
        "Fix the producer so that its records carry a Click's fields (`riverrun schemas "
        "export --dir DIR` writes its schemas)"
    )
    with pytest.raises(InvalidMessage) as caught:
        decode_record(Click, frame(3, b""), {}, max_bytes=MAX_BYTES)
    assert caught.value.error_type is ErrorType.UNKNOWN_SCHEMA


# --- the App --------------------------------------------------------------------------


def test_an_apps_mapping_or_event_decoder() -> None:
    app = riverrun.App(event_mapping=MAPPING)
    assert (app.event_mapping, app.event_decoder_function) == (MAPPING, None)
    other = riverrun.App()
    assert other.event_decoder(to_event) is to_event
    assert (other.event_mapping, other.event_decoder_function) == (None, to_event)
    assert riverrun.EventMapping is EventMapping


def test_an_app_makes_records_events_one_way() -> None:
    app = riverrun.App(event_mapping=MAPPING)
    with pytest.raises(
        riverrun.AppError,
        match=r"both an event mapping and an event decoder \(.*to_event\).*keep the mapping",
    ):
        app.event_decoder(to_event)
    app = riverrun.App()
    app.event_decoder(to_event)
    app.event_decoder(to_event)  # the same function again: one way still
    with pytest.raises(riverrun.AppError, match="two event decoders are registered"):
        app.event_decoder(lambda record: record)


def test_an_included_apps_mapping_or_decoder_is_taken_when_the_app_has_none() -> None:
    mapped = riverrun.App(event_mapping=MAPPING)
    assert riverrun.App(include=[mapped]).event_mapping == MAPPING
    assert riverrun.App(include=[mapped], event_mapping=MAPPING).event_mapping == MAPPING
    with pytest.raises(riverrun.AppError, match="different event mappings"):
        riverrun.App(include=[mapped], event_mapping=MAPPING.model_copy(update={"model": "b"}))
    decoded = riverrun.App()
    decoded.event_decoder(to_event)
    assert riverrun.App(include=[decoded]).event_decoder_function is to_event
    with pytest.raises(riverrun.AppError, match="both an event mapping and an event decoder"):
        riverrun.App(include=[decoded, mapped])
