"""Avro and JSON Schema records read into dicts, from the bytes Confluent's own serializers
write (against an in-memory registry client: these are unit tests; the integration tests
use a real registry), and the reasons of the records that do not decode."""

import base64
import json
import random
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from confluent_kafka.schema_registry import Schema, SchemaReference, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.json_schema import JSONSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from google.protobuf import timestamp_pb2

from schemas.codec import InvalidMessage
from schemas.dead_letter import ErrorType
from schemas.formats.avro import AvroReader
from schemas.formats.json_records import JsonReader
from schemas.formats.readers import reader_for
from schemas.formats.wire import RegisteredSchema, unframe

CONTEXT = SerializationContext("clicks", MessageField.VALUE)

# A team's click stream as it might be: 12 fields, a timestamp, an enum, optional fields.
CLICK: dict[str, Any] = {
    "type": "record",
    "name": "Click",
    "namespace": "com.acme.web",
    "fields": [
        {"name": "event_id", "type": "string"},
        {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "user_id", "type": "string"},
        {"name": "session_id", "type": "string"},
        {"name": "page", "type": "string"},
        {"name": "referrer", "type": ["null", "string"], "default": None},
        {
            "name": "device",
            "type": {"type": "enum", "name": "Device", "symbols": ["DESKTOP", "MOBILE", "TABLET"]},
        },
        {"name": "country", "type": "string"},
        {"name": "price", "type": "double"},
        {"name": "position", "type": "int"},
        {"name": "is_mobile", "type": "boolean"},
        {"name": "clicked", "type": ["null", "boolean"], "default": None},
    ],
}
A_CLICK = {
    "event_id": "c-000123456",
    "ts": datetime(2026, 12, 7, 6, 0, 0, 123000, tzinfo=UTC),
    "user_id": "u-98765",
    "session_id": "s-5551212",
    "page": "/products/shoes/42",
    "referrer": None,
    "device": "MOBILE",
    "country": "DE",
    "price": 59.99,
    "position": 3,
    "is_mobile": True,
    "clicked": False,
}


def registry() -> SchemaRegistryClient:
    """A fresh in-memory registry client (its store is its own)."""
    return SchemaRegistryClient.new_client({"url": "mock://readers"})


def registered(client: SchemaRegistryClient, schema_id: int) -> RegisteredSchema:
    """The schema `schema_id` with its references, as riverrun's registry client gives it."""
    schema = client.get_schema(schema_id)
    references = []
    for reference in schema.references or []:
        assert reference.name and reference.subject and reference.version
        version = client.get_version(reference.subject, reference.version)
        assert version.schema_id is not None
        references.append((reference.name, registered(client, version.schema_id)))
    assert schema.schema_str is not None
    return RegisteredSchema(
        schema_id, schema.schema_type or "AVRO", schema.schema_str, tuple(references)
    )


def avro_record(
    schema: dict[str, Any],
    record: dict[str, Any],
    *,
    client: SchemaRegistryClient | None = None,
    references: list[SchemaReference] | None = None,
) -> tuple[RegisteredSchema, bytes]:
    """`record` as Confluent's AvroSerializer writes it: the schema it names, its payload."""
    client = client or registry()
    serializer = AvroSerializer(client, Schema(json.dumps(schema), "AVRO", references or []))
    schema_id, payload = unframe(serializer(record, CONTEXT))
    return registered(client, schema_id), payload


def record_schema(*fields: dict[str, Any], name: str = "Record") -> dict[str, Any]:
    return {"type": "record", "name": name, "namespace": "com.acme", "fields": list(fields)}


def refusal(reader: AvroReader | JsonReader, payload: bytes) -> InvalidMessage:
    with pytest.raises(InvalidMessage) as raised:
        reader.read(payload)
    return raised.value


def test_a_click_reads_as_confluents_deserializer_reads_it() -> None:
    client = registry()
    schema, payload = avro_record(CLICK, A_CLICK, client=client)
    record = AvroReader(schema).read(payload)
    assert record == A_CLICK
    framed = AvroSerializer(client, Schema(json.dumps(CLICK), "AVRO"))(A_CLICK, CONTEXT)
    assert record == AvroDeserializer(client)(framed, CONTEXT)
    assert list(record) == [field["name"] for field in CLICK["fields"]]  # the schema's order
    assert record["ts"].tzinfo is UTC


def test_floats_keep_their_bits_and_integers_stay_exact() -> None:
    schema = record_schema(
        *({"name": f"d{i}", "type": "double"} for i in range(4)),
        {"name": "big", "type": "long"},
        {"name": "single", "type": "float"},
    )
    values = {
        "d0": 0.1,
        "d1": 1e-300,
        "d2": 5e-324,
        "d3": 1.7976931348623157e308,
        "big": 2**53 + 1,
        "single": 0.1,
    }
    registered_schema, payload = avro_record(schema, values)
    record = AvroReader(registered_schema).read(payload)
    for name in ("d0", "d1", "d2", "d3"):
        assert record[name].hex() == values[name].hex()
    assert record["big"] == 2**53 + 1 and type(record["big"]) is int  # not a float (2**53)
    # A 32-bit float holds the float32 nearest 0.1, not 0.1: a feature that must equal the
    # same event sent as JSON is a double.
    assert record["single"] == 0.10000000149011612


def test_types_come_out_as_plain_python_values() -> None:
    address = record_schema(
        {"name": "city", "type": "string"},
        {"name": "zip", "type": ["null", "string"]},
        name="Address",
    )
    schema = record_schema(
        {"name": "flag", "type": "boolean"},
        {"name": "nothing", "type": ["null", "double"]},
        {"name": "address", "type": address},
        {"name": "either", "type": ["null", "long", "string", "com.acme.Address"]},
        {"name": "counts", "type": {"type": "map", "values": "long"}},
        {"name": "tags", "type": {"type": "array", "items": "string"}},
        {"name": "kind", "type": {"type": "enum", "name": "Kind", "symbols": ["AD", "ORGANIC"]}},
        {"name": "raw", "type": "bytes"},
        {"name": "day", "type": {"type": "int", "logicalType": "date"}},
        {"name": "at_micros", "type": {"type": "long", "logicalType": "timestamp-micros"}},
        {"name": "local", "type": {"type": "long", "logicalType": "local-timestamp-millis"}},
        {
            "name": "amount",
            "type": {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2},
        },
        {"name": "request_id", "type": {"type": "string", "logicalType": "uuid"}},
    )
    values = {
        "flag": True,
        "nothing": None,
        "address": {"city": "Köln", "zip": None},
        "either": {"city": "Paris", "zip": "75001"},
        "counts": {"views": 3, "carts": 0},
        "tags": ["new", "sale"],
        "kind": "ORGANIC",
        "raw": b"\x00\xff",
        "day": date(2026, 12, 7),
        "at_micros": datetime(2026, 12, 7, 6, 0, 0, 123456, tzinfo=UTC),
        "local": datetime(2026, 12, 7, 7, 0, 0, 123000),  # no zone: the producer's wall clock
        "amount": Decimal("12.34"),
        "request_id": "7B0A1C1E-0000-4000-8000-000000000001",
    }
    registered_schema, payload = avro_record(schema, values)
    record = AvroReader(registered_schema).read(payload)
    assert record == values | {"amount": 12.34}
    assert type(record["flag"]) is bool
    assert type(record["amount"]) is float and record["amount"].hex() == (12.34).hex()
    assert type(record["request_id"]) is str  # as the producer wrote it, capitals and all
    assert record["at_micros"].tzinfo is UTC


def test_a_union_member_and_a_decimal_deep_inside_are_read_too() -> None:
    price = {"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 3}
    schema = record_schema(
        {"name": "lines", "type": {"type": "array", "items": {"type": "map", "values": price}}},
        {"name": "total", "type": ["null", price]},
    )
    values = {"lines": [{"a": Decimal("0.100")}], "total": Decimal("-1.5")}
    registered_schema, payload = avro_record(schema, values)
    assert AvroReader(registered_schema).read(payload) == {"lines": [{"a": 0.1}], "total": -1.5}


def test_a_decimal_without_precision_is_read_as_its_bytes() -> None:
    """The Avro specification: an invalid logical type is ignored (fastavro would raise a
    KeyError on each record)."""
    schema = RegisteredSchema(
        1,
        "AVRO",
        json.dumps(
            record_schema({"name": "amount", "type": {"type": "bytes", "logicalType": "decimal"}})
        ),
    )
    assert AvroReader(schema).read(b"\x04\x04\xd2") == {"amount": b"\x04\xd2"}


def test_a_record_that_references_another_registered_type() -> None:
    """The references of a schema, and theirs (a diamond: two references to one type), are
    parsed before it."""
    client = registry()
    geo = record_schema({"name": "country", "type": "string"}, name="Geo")
    user = record_schema(
        {"name": "id", "type": "string"}, {"name": "geo", "type": "com.acme.Geo"}, name="User"
    )
    page = record_schema(
        {"name": "path", "type": "string"}, {"name": "geo", "type": "com.acme.Geo"}, name="Page"
    )
    client.register_schema("com.acme.Geo", Schema(json.dumps(geo), "AVRO"))
    geo_ref = SchemaReference("com.acme.Geo", "com.acme.Geo", 1)
    client.register_schema("com.acme.User", Schema(json.dumps(user), "AVRO", [geo_ref]))
    client.register_schema("com.acme.Page", Schema(json.dumps(page), "AVRO", [geo_ref]))
    click = record_schema(
        {"name": "user", "type": "com.acme.User"},
        {"name": "page", "type": "com.acme.Page"},
        {"name": "price", "type": "double"},
        name="Click",
    )
    references = [SchemaReference(name, name, 1) for name in ("com.acme.User", "com.acme.Page")]
    values = {
        "user": {"id": "u1", "geo": {"country": "FR"}},
        "page": {"path": "/", "geo": {"country": "DE"}},
        "price": 0.5,
    }
    schema, payload = avro_record(click, values, client=client, references=references)
    assert len(schema.references) == 2
    assert AvroReader(schema).read(payload) == values


def test_a_union_of_records_at_the_top_reads_the_record_written() -> None:
    client = registry()
    view = record_schema({"name": "page", "type": "string"}, name="View")
    cart = record_schema(
        {"name": "sku", "type": "string"}, {"name": "qty", "type": "int"}, name="Cart"
    )
    for subject, schema in (("com.acme.View", view), ("com.acme.Cart", cart)):
        client.register_schema(subject, Schema(json.dumps(schema), "AVRO"))
    references = [SchemaReference(name, name, 1) for name in ("com.acme.View", "com.acme.Cart")]
    serializer = AvroSerializer(
        client, Schema(json.dumps(["com.acme.View", "com.acme.Cart"]), "AVRO", references)
    )
    schema_id, payload = unframe(serializer(("com.acme.Cart", {"sku": "s1", "qty": 2}), CONTEXT))
    reader = AvroReader(registered(client, schema_id))
    assert reader.read(payload) == {"sku": "s1", "qty": 2}
    assert refusal(reader, payload[:-1]).reason.startswith(
        f"the {len(payload) - 1} bytes after the header do not decode as Avro schema {schema_id} (a union of com.acme.View, com.acme.Cart): "
        "the record does not decode (the bytes end inside it). The producer wrote"
    )


@pytest.mark.parametrize(
    ("text", "what"),
    [
        ('"string"', "of type string"),
        ('{"type": "array", "items": "double"}', "of type array"),
        (
            '["null", {"type": "record", "name": "R", "fields": []}]',
            "a union with a branch of type null",
        ),
    ],
)
def test_a_schema_that_is_not_a_record_has_a_reason(text: str, what: str) -> None:
    with pytest.raises(InvalidMessage) as raised:
        reader_for(RegisteredSchema(12, "AVRO", text))
    assert raised.value.error_type is ErrorType.UNDECODABLE
    assert raised.value.reason.startswith(
        f"Avro schema 12 is {what}, not a record: riverrun reads records"
    )


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("{not json", "not JSON: "),
        (
            '{"type": "record", "name": "R", "fields": [{"name": "a", "type": "Nope"}]}',
            "UnknownType: Nope",
        ),
        (
            '{"type": "record", "name": "R", "fields": [{"name": "a", "type": "int", "default": "x"}]}',
            "must match schema type",
        ),
        ('{"type": "fixed", "name": "F"}', "KeyError"),
    ],
)
def test_a_schema_fastavro_refuses_has_a_reason(text: str, why: str) -> None:
    with pytest.raises(InvalidMessage) as raised:
        reader_for(RegisteredSchema(13, "AVRO", text))
    assert raised.value.error_type is ErrorType.UNDECODABLE
    assert raised.value.reason.startswith("fastavro refuses Avro schema 13 (")
    assert why in raised.value.reason
    assert "register a schema that follows the Avro specification" in raised.value.reason


def test_an_avro_schema_referencing_another_kind_of_schema_has_a_reason() -> None:
    json_schema = RegisteredSchema(2, "JSON", '{"type": "object"}')
    schema = RegisteredSchema(3, "AVRO", json.dumps(CLICK), (("Other", json_schema),))
    with pytest.raises(InvalidMessage, match=r"^Avro schema 3 references schema 2, of type JSON"):
        AvroReader(schema)


def test_the_reason_of_truncated_bytes_names_the_field_where_they_end() -> None:
    schema, payload = avro_record(CLICK, A_CLICK)
    cut = len(payload) - 10  # inside the 8 bytes of `price`, after the 7 fields before it
    error = refusal(AvroReader(schema), payload[:cut])
    assert error.error_type is ErrorType.UNDECODABLE
    assert error.reason == (
        f"the {cut - 0} bytes after the header do not decode as Avro schema {schema.id} (com.acme.web.Click): "
        "field 9 of 12, `price`, does not decode (the bytes end inside it); the fields before it do. "
        "The producer wrote with another schema than the one its header names, or the value was altered "
        "after it was serialized: check the schema the producer's serializer writes with, and that nothing "
        "rewrites the values on the way"
    )
    assert (
        "field 1 of 12, `event_id`, does not decode (the bytes end inside it)."
        in refusal(AvroReader(schema), b"").reason
    )


def test_bytes_left_over_after_the_record_are_refused() -> None:
    """Confluent's deserializer ignores them; a record that ends early was most likely
    written with another schema, so riverrun refuses it rather than learn wrong features."""
    schema, payload = avro_record(CLICK, A_CLICK)
    error = refusal(AvroReader(schema), payload + b"\x00\x01")
    assert error.error_type is ErrorType.UNDECODABLE
    assert (
        f"the record ends after {len(payload)} of them, leaving 2 bytes that no field reads. The producer wrote"
        in error.reason
    )


def test_a_record_written_with_a_newer_schema_than_its_header_names_is_refused() -> None:
    """The producer added a field (`campaign`) but its header names the schema without it:
    the twelve fields decode, the new one is left over. Read anyway, as Confluent's
    deserializer does, a change of a field's type would go unnoticed the same way."""
    newer = CLICK | {"fields": [*CLICK["fields"], {"name": "campaign", "type": "string"}]}
    _, payload = avro_record(newer, A_CLICK | {"campaign": "winter-sale"})
    schema, written = avro_record(CLICK, A_CLICK)
    error = refusal(AvroReader(schema), payload)
    assert error.error_type is ErrorType.UNDECODABLE
    assert (
        f"the record ends after {len(written)} of them, leaving 12 bytes that no field reads. "
        "The producer wrote with another schema than the one its header names"
    ) in error.reason


def test_a_field_written_as_another_type_is_refused_where_it_breaks() -> None:
    """The producer wrote `position` as a string where the header's schema has an int: the
    string's length is read as the int, its characters as the next fields."""
    older = CLICK | {
        "fields": [
            f | {"type": "string"} if f["name"] == "position" else f for f in CLICK["fields"]
        ]
    }
    _, payload = avro_record(older, A_CLICK | {"position": "3rd"})
    schema, _ = avro_record(CLICK, A_CLICK)
    error = refusal(AvroReader(schema), payload)
    assert error.error_type is ErrorType.UNDECODABLE
    assert (
        "field 12 of 12, `clicked`, does not decode (a union branch or enum symbol number"
        in error.reason
    )


@pytest.mark.parametrize(
    ("payload", "failure"),
    [
        (b"\x02\xff", "field 1 of 2, `name`, does not decode (a string in it is not UTF-8)"),
        (
            b"\x02a\x06",
            "field 2 of 2, `kind`, does not decode (a union branch or enum symbol number its schema does not have); the fields before it do",
        ),
        (
            b"\x02a\x02" + b"\xff" * 10 + b"\x01",
            "field 2 of 2, `kind`, does not decode (a value out of its type's range: ",
        ),
        (
            b"\x02a\x02" + b"\xff" * 8 + b"\x01",
            "field 2 of 2, `kind`, does not decode (a value out of its type's range: date value out of range)",
        ),
    ],
)
def test_the_reason_says_what_is_wrong_with_the_bytes(payload: bytes, failure: str) -> None:
    millis = {"type": "long", "logicalType": "timestamp-millis"}
    schema = record_schema(
        {"name": "name", "type": "string"}, {"name": "kind", "type": ["null", millis]}
    )
    reader = AvroReader(RegisteredSchema(5, "AVRO", json.dumps(schema)))
    assert failure in refusal(reader, payload).reason


def test_damaged_and_random_bytes_are_read_or_refused_never_raised() -> None:
    """Whatever the bytes, a dict or InvalidMessage(UNDECODABLE): no other exception
    reaches the consume loop. The damage is the kind a wrong schema or a broken producer
    does: bytes changed, cut, or random."""
    schema = record_schema(
        *CLICK["fields"],
        {"name": "at", "type": {"type": "long", "logicalType": "timestamp-micros"}},
        {"name": "day", "type": {"type": "int", "logicalType": "date"}},
        {
            "name": "amount",
            "type": {"type": "bytes", "logicalType": "decimal", "precision": 6, "scale": 2},
        },
        {
            "name": "counts",
            "type": {
                "type": "map",
                "values": ["null", "float", {"type": "array", "items": "double"}],
            },
        },
        {"name": "code", "type": {"type": "fixed", "name": "Code", "size": 3}},
    )
    values = A_CLICK | {
        "at": A_CLICK["ts"],
        "day": date(2026, 1, 1),
        "amount": Decimal("9.99"),
        "counts": {"a": [1.0], "b": 0.5, "c": None},
        "code": b"abc",
    }
    registered_schema, payload = avro_record(schema, values)
    reader = AvroReader(registered_schema)
    rng = random.Random(31)
    verdicts = {"read": 0, "refused": 0}
    for attempt in range(3000):
        if attempt % 3 == 0:
            damaged = bytes(rng.randrange(256) for _ in range(rng.randrange(90)))
        else:
            changed = bytearray(payload)
            for _ in range(rng.randrange(1, 4)):
                changed[rng.randrange(len(changed))] = rng.randrange(256)
            damaged = bytes(
                changed[: rng.randrange(len(changed) + 1)] if attempt % 3 == 1 else changed
            )
        try:
            assert type(reader.read(damaged)) is dict
            verdicts["read"] += 1
        except InvalidMessage as err:
            assert err.error_type is ErrorType.UNDECODABLE
            verdicts["refused"] += 1
    assert verdicts["refused"] > 2000  # most damage is seen


# JSON Schema records


def json_record(
    record: Any, schema: dict[str, Any] | None = None
) -> tuple[RegisteredSchema, bytes]:
    """`record` as Confluent's JSONSerializer writes it: the schema it names, its payload."""
    client = registry()
    serializer = JSONSerializer(json.dumps(schema or {"type": "object"}), client)
    schema_id, payload = unframe(serializer(record, CONTEXT))
    return registered(client, schema_id), payload


def test_a_json_schema_record_reads_as_written() -> None:
    values = {
        "event_id": "c-1",
        "ts": "2026-12-07T06:00:00.123Z",
        "price": 0.1,
        "tiny": 1e-300,
        "subnormal": 5e-324,
        "big": 2**53 + 1,
        "flag": True,
        "nothing": None,
        "user": {"id": "u1", "tags": ["a", "b"]},
    }
    schema = {
        "type": "object",
        "properties": {"price": {"type": "number"}, "flag": {"type": "boolean"}},
    }
    registered_schema, payload = json_record(values, schema)
    assert registered_schema.schema_type == "JSON"
    record = reader_for(registered_schema).read(payload)
    assert record == values
    assert [record[name].hex() for name in ("price", "tiny", "subnormal")] == [
        (0.1).hex(),
        (1e-300).hex(),
        (5e-324).hex(),
    ]
    assert type(record["big"]) is int and type(record["flag"]) is bool


def test_an_integer_beyond_64_bits_stays_exact() -> None:
    """Confluent's Python serializer cannot write one (orjson), a Java producer can; its
    JSONDeserializer would read it as a float."""
    assert JsonReader(RegisteredSchema(9, "JSON", "{}")).read(b'{"id": 18446744073709551617}') == {
        "id": 2**64 + 1
    }


@pytest.mark.parametrize(
    "payload", [b"{", b'{"price": NaN}', b'{"a": "\xff"}', b'{"a": 1} {"b": 2}', b""]
)
def test_bytes_that_are_not_json_are_invalid_json(payload: bytes) -> None:
    error = refusal(JsonReader(RegisteredSchema(9, "JSON", "{}")), payload)
    assert error.error_type is ErrorType.INVALID_JSON
    assert error.reason.startswith("not valid JSON after the header naming JSON Schema 9 (")
    assert error.reason.endswith(
        "send one JSON object per record, UTF-8 encoded, without NaN or Infinity, as a JSON Schema serializer writes it"
    )


@pytest.mark.parametrize(
    ("payload", "kind"),
    [
        (b"[1]", "array"),
        (b'"a"', "string"),
        (b"1.5", "number"),
        (b"3", "number"),
        (b"true", "boolean"),
        (b"null", "null"),
    ],
)
def test_json_that_is_not_an_object_is_undecodable(payload: bytes, kind: str) -> None:
    error = refusal(JsonReader(RegisteredSchema(9, "JSON", "{}")), payload)
    assert error.error_type is ErrorType.UNDECODABLE
    assert error.reason.startswith(
        f"a JSON {kind} after the header naming JSON Schema 9, not an object: riverrun reads records"
    )


# The dispatch


def test_each_schema_type_has_its_reader() -> None:
    assert isinstance(reader_for(RegisteredSchema(1, "AVRO", json.dumps(CLICK))), AvroReader)
    assert isinstance(reader_for(RegisteredSchema(2, "JSON", '{"type": "object"}')), JsonReader)
    from schemas.formats.protobuf import ProtobufReader

    file = base64.b64encode(timestamp_pb2.DESCRIPTOR.serialized_pb).decode()
    assert isinstance(reader_for(RegisteredSchema(3, "PROTOBUF", file)), ProtobufReader)


def test_a_schema_type_riverrun_does_not_read_has_a_reason() -> None:
    with pytest.raises(InvalidMessage) as raised:
        reader_for(RegisteredSchema(4, "XML", "<schema/>"))
    assert raised.value.error_type is ErrorType.UNDECODABLE
    assert raised.value.reason == (
        "schema 4 is of type XML, which riverrun does not read: produce the topic's values with an AVRO, "
        "JSON (JSON Schema) or PROTOBUF schema"
    )


def test_readers_keep_no_state_between_records() -> None:
    """A refused record leaves the reader as it was: the next one reads."""
    schema, payload = avro_record(CLICK, A_CLICK)
    reader = AvroReader(schema)
    refusal(reader, payload[:5])
    assert reader.read(payload) == A_CLICK
