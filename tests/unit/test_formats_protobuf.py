"""schemas.formats.protobuf: records written by Confluent's own ProtobufSerializer (against
its mock registry client) read into dicts as the module's doc says.

No protoc here: the test's .proto files are FileDescriptorProtos built in Python, and
their message classes come from a pool of the test's own (not from the reader's).
"""

import base64
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.protobuf import ProtobufSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from google.protobuf import descriptor_pb2, timestamp_pb2, wrappers_pb2
from google.protobuf.descriptor_pb2 import FieldDescriptorProto as F
from google.protobuf.descriptor_pool import DescriptorPool
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass

from schemas.codec import InvalidMessage
from schemas.dead_letter import ErrorType
from schemas.formats.protobuf import ProtobufReader, message_indexes
from schemas.formats.wire import RegisteredSchema, frame, unframe

PACKAGE = "shop.events"


def field(
    name: str,
    number: int,
    kind: int,
    type_name: str = "",
    *,
    repeated: bool = False,
    oneof: int | None = None,
    proto3_optional: bool = False,
) -> F:
    proto = F(
        name=name,
        number=number,
        type=kind,  # type: ignore[arg-type]
        label=F.LABEL_REPEATED if repeated else F.LABEL_OPTIONAL,
    )
    if type_name:
        proto.type_name = type_name
    if proto3_optional:
        proto.proto3_optional = True
    if oneof is not None:
        proto.oneof_index = oneof
    return proto


def common_file() -> descriptor_pb2.FileDescriptorProto:
    """shop/common.proto: a message another file imports (a reference in the registry)."""
    return descriptor_pb2.FileDescriptorProto(
        name="shop/common.proto",
        package="shop.common",
        syntax="proto3",
        message_type=[
            descriptor_pb2.DescriptorProto(
                name="Money",
                field=[field("currency", 1, F.TYPE_STRING), field("amount", 2, F.TYPE_DOUBLE)],
            )
        ],
    )


def clicks_file() -> descriptor_pb2.FileDescriptorProto:
    """shop/clicks.proto: Click (index [0]) with every kind of field, Session (index [1])
    and Session.Event (index [1, 0])."""
    click = descriptor_pb2.DescriptorProto(
        name="Click",
        # Declared out of field-number order: the record follows the declaration.
        field=[
            field("event_id", 1, F.TYPE_STRING),
            field("ts", 3, F.TYPE_MESSAGE, ".google.protobuf.Timestamp"),
            field("user_id", 2, F.TYPE_STRING),
            field("price", 4, F.TYPE_DOUBLE),
            field("quantity", 5, F.TYPE_INT64),
            field("big", 6, F.TYPE_UINT64),
            field("score", 7, F.TYPE_FLOAT),
            field("clicked", 8, F.TYPE_BOOL),
            field("device", 9, F.TYPE_ENUM, f".{PACKAGE}.Device"),
            field("tags", 10, F.TYPE_STRING, repeated=True),
            field("attrs", 11, F.TYPE_MESSAGE, f".{PACKAGE}.Click.AttrsEntry", repeated=True),
            field("discount", 12, F.TYPE_DOUBLE, oneof=1, proto3_optional=True),
            field("page", 13, F.TYPE_MESSAGE, f".{PACKAGE}.Click.Page"),
            field("referrer", 14, F.TYPE_MESSAGE, ".google.protobuf.StringValue"),
            field("rating", 15, F.TYPE_MESSAGE, ".google.protobuf.DoubleValue"),
            field("coupon", 16, F.TYPE_STRING, oneof=0),
            field("gift", 17, F.TYPE_BOOL, oneof=0),
            field("payload", 18, F.TYPE_BYTES),
            field("price_paid", 19, F.TYPE_MESSAGE, ".shop.common.Money"),
            field("pages", 20, F.TYPE_MESSAGE, f".{PACKAGE}.Click.Page", repeated=True),
            field("devices", 21, F.TYPE_ENUM, f".{PACKAGE}.Device", repeated=True),
            field("by_page", 22, F.TYPE_MESSAGE, f".{PACKAGE}.Click.ByPageEntry", repeated=True),
        ],
        nested_type=[
            descriptor_pb2.DescriptorProto(
                name="Page",
                field=[field("url", 1, F.TYPE_STRING), field("position", 2, F.TYPE_INT32)],
            ),
            descriptor_pb2.DescriptorProto(
                name="AttrsEntry",
                field=[field("key", 1, F.TYPE_STRING), field("value", 2, F.TYPE_DOUBLE)],
                options=descriptor_pb2.MessageOptions(map_entry=True),
            ),
            descriptor_pb2.DescriptorProto(
                name="ByPageEntry",
                field=[
                    field("key", 1, F.TYPE_INT32),
                    field("value", 2, F.TYPE_MESSAGE, f".{PACKAGE}.Click.Page"),
                ],
                options=descriptor_pb2.MessageOptions(map_entry=True),
            ),
        ],
        oneof_decl=[
            descriptor_pb2.OneofDescriptorProto(name="reward"),
            descriptor_pb2.OneofDescriptorProto(name="_discount"),  # proto3 optional's own
        ],
    )
    session = descriptor_pb2.DescriptorProto(
        name="Session",
        field=[field("session_id", 1, F.TYPE_STRING)],
        nested_type=[
            descriptor_pb2.DescriptorProto(
                name="Event",
                field=[
                    field("name", 1, F.TYPE_STRING),
                    field("value", 2, F.TYPE_DOUBLE),
                    field("at", 3, F.TYPE_MESSAGE, ".google.protobuf.Timestamp"),
                ],
            )
        ],
    )
    return descriptor_pb2.FileDescriptorProto(
        name="shop/clicks.proto",
        package=PACKAGE,
        syntax="proto3",
        dependency=[
            "google/protobuf/timestamp.proto",
            "google/protobuf/wrappers.proto",
            "shop/common.proto",
        ],
        message_type=[click, session],
        enum_type=[
            descriptor_pb2.EnumDescriptorProto(
                name="Device",
                value=[
                    descriptor_pb2.EnumValueDescriptorProto(name="DEVICE_UNKNOWN", number=0),
                    descriptor_pb2.EnumValueDescriptorProto(name="MOBILE", number=1),
                    descriptor_pb2.EnumValueDescriptorProto(name="DESKTOP", number=2),
                ],
            )
        ],
    )


def click_features_file() -> descriptor_pb2.FileDescriptorProto:
    """A typical 12-field click-stream record: the one the cost is measured on."""
    return descriptor_pb2.FileDescriptorProto(
        name="shop/click_features.proto",
        package="shop.features",
        syntax="proto3",
        dependency=["google/protobuf/timestamp.proto"],
        message_type=[
            descriptor_pb2.DescriptorProto(
                name="ClickEvent",
                field=[
                    field("event_id", 1, F.TYPE_STRING),
                    field("ts", 2, F.TYPE_MESSAGE, ".google.protobuf.Timestamp"),
                    field("user_id", 3, F.TYPE_STRING),
                    field("model", 4, F.TYPE_STRING),
                    field("country", 5, F.TYPE_STRING),
                    field("device", 6, F.TYPE_STRING),
                    field("price", 7, F.TYPE_DOUBLE),
                    field("position", 8, F.TYPE_INT32),
                    field("dwell_seconds", 9, F.TYPE_DOUBLE),
                    field("n_views", 10, F.TYPE_INT64),
                    field("ctr_7d", 11, F.TYPE_DOUBLE),
                    field("clicked", 12, F.TYPE_BOOL),
                ],
            )
        ],
    )


def message_classes(*files: descriptor_pb2.FileDescriptorProto) -> dict[str, type[Message]]:
    """The producer's side: message classes of `files` (added in order), by full name."""
    pool = DescriptorPool()
    for well_known in (timestamp_pb2, wrappers_pb2):
        pool.AddSerializedFile(well_known.DESCRIPTOR.serialized_pb)
    classes = {}
    for proto in files:
        pool.AddSerializedFile(proto.SerializeToString())
        file = pool.FindFileByName(proto.name)

        def collect(descriptor: Any) -> None:
            classes[descriptor.full_name] = GetMessageClass(descriptor)
            for nested in descriptor.nested_types:
                collect(nested)

        for descriptor in file.message_types_by_name.values():
            collect(descriptor)
    return classes


CLASSES = message_classes(common_file(), clicks_file(), click_features_file())
Click = CLASSES[f"{PACKAGE}.Click"]
SessionEvent = CLASSES[f"{PACKAGE}.Session.Event"]
ClickEvent = CLASSES["shop.features.ClickEvent"]


def registered(client: SchemaRegistryClient, schema_id: int) -> RegisteredSchema:
    """The schema as riverrun gets it from a registry: by id, with its references."""
    return _registered(schema_id, client.get_schema(schema_id), client)


def _registered(schema_id: int, schema: Schema, client: SchemaRegistryClient) -> RegisteredSchema:
    references = []
    for reference in schema.references or []:
        assert reference.name and reference.subject and reference.version is not None
        version = client.get_version(reference.subject, reference.version)
        assert version.schema_id is not None
        references.append((reference.name, _registered(version.schema_id, version.schema, client)))
    assert schema.schema_str is not None
    return RegisteredSchema(
        id=schema_id,
        schema_type="PROTOBUF",
        text=schema.schema_str,
        references=tuple(references),
    )


def serialized(message: Message, topic: str = "clicks") -> tuple[RegisteredSchema, bytes]:
    """(the schema, the payload after the header) of `message` as Confluent's
    ProtobufSerializer writes it to `topic`."""
    client = SchemaRegistryClient.new_client({"url": "mock://riverrun-tests"})
    serializer = ProtobufSerializer(type(message), client)
    raw = serializer(message, SerializationContext(topic, MessageField.VALUE))
    assert raw is not None
    schema_id, payload = unframe(raw)
    return registered(client, schema_id), payload


def read(message: Message) -> dict[str, Any]:
    schema, payload = serialized(message)
    return ProtobufReader(schema).read(payload)


T = datetime(2026, 1, 1, 12, 0, 0, 123456, tzinfo=UTC)


def timestamp(at: datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(at)
    return stamp


def test_a_full_click_reads_every_field_in_declaration_order() -> None:
    click = Click(
        event_id="e1",
        ts=T,
        user_id="u1",
        price=9.99,
        quantity=2**40,
        big=2**64 - 1,
        score=0.1,
        clicked=True,
        device=2,
        tags=["a", "b"],
        attrs={"w": 0.5},
        discount=0.0,
        page={"url": "/p", "position": 3},
        referrer={"value": "search"},
        rating={"value": 0.0},
        gift=False,
        payload=b"\x00\xff",
        price_paid={"currency": "EUR", "amount": 9.99},
        pages=[{"url": "/a"}, {"url": "/b", "position": 2}],
        devices=[1, 2, 7],
        by_page={1: {"url": "/x", "position": 1}},
    )
    record = read(click)
    assert record == {
        "event_id": "e1",
        "ts": T,
        "user_id": "u1",
        "price": 9.99,
        "quantity": 2**40,  # int64 as int, not MessageToDict's string
        "big": 2**64 - 1,
        # a 32-bit float: the float nearest 0.1 in 32 bits, not 0.1
        "score": 0.10000000149011612,
        "clicked": True,
        "device": "DESKTOP",
        "tags": ["a", "b"],
        "attrs": {"w": 0.5},
        "discount": 0.0,  # set: present, though 0
        "page": {"url": "/p", "position": 3},
        "referrer": "search",
        "rating": 0.0,  # a set wrapper of 0: present
        "gift": False,  # a set oneof member: present, though false
        "payload": b"\x00\xff",
        "price_paid": {"currency": "EUR", "amount": 9.99},
        "pages": [{"url": "/a", "position": 0}, {"url": "/b", "position": 2}],
        "devices": ["MOBILE", "DESKTOP", 7],  # 7: a number the enum does not name
        "by_page": {1: {"url": "/x", "position": 1}},
    }
    assert list(record) == [f.name for f in Click.DESCRIPTOR.fields if f.name in record]
    assert list(record)[:3] == ["event_id", "ts", "user_id"]  # not field-number order
    assert record["ts"].tzinfo is UTC
    assert type(record["quantity"]) is int and type(record["payload"]) is bytes


def test_zero_values_are_present_and_unset_presence_fields_are_absent() -> None:
    record = read(Click())
    # proto3 scalars without presence give their zero value: a 0.0 feature is kept.
    assert record == {
        "event_id": "",
        "user_id": "",
        "price": 0.0,
        "quantity": 0,
        "big": 0,
        "score": 0.0,
        "clicked": False,
        "device": "DEVICE_UNKNOWN",
        "tags": [],
        "attrs": {},
        "payload": b"",
        "pages": [],
        "devices": [],
        "by_page": {},
    }
    # ts, discount (optional), page, referrer, rating, coupon and gift (oneof), price_paid:
    # fields with presence that are not set are left out.


def test_a_oneof_gives_the_member_that_is_set() -> None:
    record = read(Click(coupon="SPRING"))
    assert record["coupon"] == "SPRING" and "gift" not in record


def test_a_nested_message_at_index_1_0_reads_as_itself() -> None:
    event = SessionEvent(name="view", value=0.0, at=T)
    schema, payload = serialized(event)
    # Confluent's serializer names it by the indexes [1, 0]: count 2, then 1 and 0, zigzag.
    assert payload[:3] == b"\x04\x02\x00"
    assert message_indexes(payload) == ((1, 0), 3)
    assert ProtobufReader(schema).read(payload) == {"name": "view", "value": 0.0, "at": T}


def test_the_first_message_is_the_single_byte_0() -> None:
    schema, payload = serialized(Click(event_id="e1"))
    assert payload[:1] == b"\x00"
    # The long form of the same indexes, [0] counted, reads the same.
    reader = ProtobufReader(schema)
    assert reader.read(b"\x02\x00" + payload[1:]) == reader.read(payload)


def test_the_reference_is_registered_and_resolved() -> None:
    schema, _ = serialized(Click())
    assert [name for name, _ in schema.references] == ["shop/common.proto"]


def test_a_timestamp_before_1970_and_its_microseconds() -> None:
    at = datetime(1969, 12, 31, 23, 59, 59, 500000, tzinfo=UTC)
    assert read(SessionEvent(at=at))["at"] == at


def test_features_read_as_the_same_floats_as_json() -> None:
    """Doubles come back as the very floats that went in, as JSON's would."""
    values = [0.1, 1 / 3, 1e-300, -0.0, 123456.789e10]
    for value in values:
        got = read(ClickEvent(ctr_7d=value))["ctr_7d"]
        assert got == value and str(got) == str(value)


@pytest.mark.parametrize(
    ("payload", "says"),
    [
        (b"", "message indexes do not decode"),
        (b"\x80", "message indexes do not decode"),  # a varint cut short
        (b"\x04\x06\x00", "name no message (index 3 of 2 in the file's top-level messages)"),
        (b"\x04\x02\x02", "name no message (index 1 of 1 in Session's nested messages)"),
        (b"\x01", "a count of -1 message indexes"),
        (b"\x00\x0a\x05ab", "do not decode as shop.events.Click"),  # truncated string
        (b"\x00\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", "do not decode"),  # garbage
    ],
)
def test_undecodable_bytes_say_so_with_the_schema_id(payload: bytes, says: str) -> None:
    schema, _ = serialized(Click())
    with pytest.raises(InvalidMessage) as caught:
        ProtobufReader(schema).read(payload)
    assert caught.value.error_type is ErrorType.UNDECODABLE
    assert says in caught.value.reason
    assert f"schema {schema.id}" in caught.value.reason
    assert "ProtobufSerializer" in caught.value.reason


def test_a_timestamp_out_of_datetime_s_years_is_undecodable() -> None:
    schema, _ = serialized(SessionEvent())
    event = SessionEvent(at={"seconds": 10**12})  # year ~33658
    payload = b"\x04\x02\x00" + event.SerializeToString()
    with pytest.raises(InvalidMessage, match="out of range"):
        ProtobufReader(schema).read(payload)


PROTO_TEXT = """syntax = "proto3";
package shop.events;
message Click { string event_id = 1; double price = 2; }
"""


def test_a_schema_as_proto_text_says_what_to_do() -> None:
    schema = RegisteredSchema(id=7, schema_type="PROTOBUF", text=PROTO_TEXT)
    with pytest.raises(InvalidMessage) as caught:
        ProtobufReader(schema)
    assert caught.value.error_type is ErrorType.UNDECODABLE
    reason = caught.value.reason
    assert reason.startswith("Protobuf schema 7 is .proto source text")
    assert "?format=serialized" in reason and "ProtobufSerializer" in reason


def test_a_missing_reference_says_which_import() -> None:
    text = base64.b64encode(clicks_file().SerializeToString()).decode()
    schema = RegisteredSchema(id=8, schema_type="PROTOBUF", text=text)
    with pytest.raises(InvalidMessage, match=r"schema 8 imports shop/common.proto, which is not"):
        ProtobufReader(schema)


def test_an_invalid_file_descriptor_is_refused() -> None:
    broken = click_features_file()
    broken.message_type[0].field[1].type_name = ".google.protobuf.Nowhere"
    text = base64.b64encode(broken.SerializeToString()).decode()
    with pytest.raises(InvalidMessage, match="schema 9 is not a valid file descriptor"):
        ProtobufReader(RegisteredSchema(id=9, schema_type="PROTOBUF", text=text))


def test_reading_a_12_field_click_costs_a_few_microseconds() -> None:
    """The cost per event of the reader (bench/ measures it beside JSON): parse and walk."""
    event = ClickEvent(
        event_id="e-000123",
        ts=T,
        user_id="u-42",
        model="ctr",
        country="FR",
        device="mobile",
        price=19.9,
        position=3,
        dwell_seconds=0.0,
        n_views=12,
        ctr_7d=0.031,
        clicked=True,
    )
    schema, payload = serialized(event)
    reader = ProtobufReader(schema)
    record = reader.read(payload)
    assert record["dwell_seconds"] == 0.0 and len(record) == 12
    n = 20_000
    start = time.process_time()
    for _ in range(n):
        reader.read(payload)
    per_event = (time.process_time() - start) / n
    print(f"protobuf read: {per_event * 1e6:.2f} µs per event")
    assert per_event < 50e-6  # a loose bound on a shared machine; the bench has the number


def test_frame_round_trip_with_the_reader() -> None:
    schema, payload = serialized(ClickEvent(event_id="e1"))
    schema_id, again = unframe(frame(schema.id, payload))
    assert schema_id == schema.id
    assert ProtobufReader(schema).read(again)["event_id"] == "e1"


def test_two_versions_of_one_message_each_read_with_their_own_schema() -> None:
    """Each reader has a pool of its own: a second version of shop.features.ClickEvent,
    with a field more, lives beside the first in one process."""
    v2 = click_features_file()
    v2.message_type[0].field.append(field("campaign", 13, F.TYPE_STRING))
    text = base64.b64encode(v2.SerializeToString()).decode()
    reader_v2 = ProtobufReader(RegisteredSchema(id=2, schema_type="PROTOBUF", text=text))
    schema_v1, payload = serialized(ClickEvent(event_id="e1", price=1.5))
    reader_v1 = ProtobufReader(schema_v1)
    assert "campaign" not in reader_v1.read(payload)
    assert reader_v2.read(payload)["campaign"] == ""  # (a proto3 scalar: its zero value)
    assert reader_v2.read(payload)["price"] == reader_v1.read(payload)["price"] == 1.5


def test_a_reference_of_a_reference_is_resolved() -> None:
    """shop/clicks.proto imports shop/common.proto, which imports shop/base.proto: the
    registry lists the second reference on the first's schema."""
    base = descriptor_pb2.FileDescriptorProto(
        name="shop/base.proto",
        package="shop.base",
        syntax="proto3",
        message_type=[
            descriptor_pb2.DescriptorProto(name="Id", field=[field("value", 1, F.TYPE_STRING)])
        ],
    )
    common = common_file()
    common.dependency.append("shop/base.proto")
    common.message_type[0].field.append(field("owner", 3, F.TYPE_MESSAGE, ".shop.base.Id"))

    def registered_file(schema_id: int, proto: Any, *references: Any) -> RegisteredSchema:
        text = base64.b64encode(proto.SerializeToString()).decode()
        return RegisteredSchema(schema_id, "PROTOBUF", text, tuple(references))

    base_schema = registered_file(1, base)
    common_schema = registered_file(2, common, ("shop/base.proto", base_schema))
    clicks = registered_file(3, clicks_file(), ("shop/common.proto", common_schema))
    money = {"currency": "EUR", "amount": 2.0}
    payload = b"\x00" + Click(price_paid=money).SerializeToString()
    assert ProtobufReader(clicks).read(payload)["price_paid"] == money
