"""The local schema registry holds what a team's producers register: confluent-kafka's own
serializers write Avro, JSON Schema and Protobuf records against it and read them back, and
it refuses wrong credentials and clients without a certificate as a production one does.

It is Conduit's registry, which implements registering and reading schemas but not every
endpoint; `test_what_the_local_registry_leaves_out` lists the gaps the tests live with.
"""

import base64
import datetime
import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
import uuid
from typing import Any

import pytest
from confluent_kafka.schema_registry import (
    Schema,
    SchemaReference,
    SchemaRegistryClient,
    SchemaRegistryError,
)
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.json_schema import JSONDeserializer, JSONSerializer
from confluent_kafka.schema_registry.protobuf import ProtobufDeserializer, ProtobufSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from tests.registry import LocalRegistry

CLICK_AVRO = json.dumps(
    {
        "type": "record",
        "name": "Click",
        "namespace": "shop",
        "fields": [
            {"name": "id", "type": "string"},
            {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
            {"name": "price", "type": ["null", "double"], "default": None},
        ],
    }
)
CLICK = {
    "id": "e1",
    "ts": datetime.datetime(2026, 12, 7, 6, 0, tzinfo=datetime.UTC),
    "price": 2.5,
}
CLICK_JSON_SCHEMA = json.dumps(
    {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "Click",
        "type": "object",
        "properties": {"id": {"type": "string"}, "price": {"type": "number"}},
        "required": ["id"],
    }
)


def _protobuf_click() -> Any:
    """A Click message class importing google/protobuf/timestamp.proto, as protoc makes it."""
    field = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(
        name="tests/registry_smoke/click.proto",
        package="registry_smoke",
        syntax="proto3",
        dependency=["google/protobuf/timestamp.proto"],
    )
    message = proto.message_type.add(name="Click")
    message.field.add(name="id", number=1, type=field.TYPE_STRING)
    message.field.add(
        name="ts", number=2, type=field.TYPE_MESSAGE, type_name=".google.protobuf.Timestamp"
    )
    message.field.add(name="price", number=3, type=field.TYPE_DOUBLE)
    pool = descriptor_pool.Default()
    try:
        descriptor = pool.FindMessageTypeByName("registry_smoke.Click")
    except KeyError:
        pool.Add(proto)
        descriptor = pool.FindMessageTypeByName("registry_smoke.Click")
    return message_factory.GetMessageClass(descriptor)


def _context() -> SerializationContext:
    """The value of a fresh topic (subject `<topic>-value`: tests share one registry)."""
    return SerializationContext(f"clicks-{uuid.uuid4().hex[:8]}", MessageField.VALUE)


def _schema_id(record: bytes) -> int:
    assert record[0] == 0, "not the Confluent wire format"
    return int.from_bytes(record[1:5], "big")


def _get(registry_url: str, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(registry_url + path, timeout=5) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def test_avro_round_trip(schema_registry: str) -> None:
    client = SchemaRegistryClient({"url": schema_registry})
    context = _context()
    record = AvroSerializer(client, CLICK_AVRO)(CLICK, context)
    assert record is not None
    assert client.get_schema(_schema_id(record)).schema_type == "AVRO"
    assert AvroDeserializer(client)(record, context) == CLICK


def test_json_schema_round_trip(schema_registry: str) -> None:
    client = SchemaRegistryClient({"url": schema_registry})
    context = _context()
    click = {"id": "e1", "price": 2.5}
    record = JSONSerializer(CLICK_JSON_SCHEMA, client)(click, context)
    assert record is not None
    assert json.loads(record[5:]) == click  # the JSON text itself after the header
    assert client.get_schema(_schema_id(record)).schema_type == "JSON"
    assert JSONDeserializer(None, schema_registry_client=client)(record, context) == click


def test_protobuf_is_registered_as_a_base64_file_descriptor(schema_registry: str) -> None:
    """What a Protobuf reader gets by id: the serialized FileDescriptorProto in base64 (as
    confluent-kafka's serializer registers it), no reference for a well-known import, and
    records whose message index is the single byte 0 (the file's first message)."""
    click_class = _protobuf_click()
    client = SchemaRegistryClient({"url": schema_registry})
    context = _context()
    click = click_class(id="e1", price=2.5)
    click.ts.FromSeconds(1_796_623_200)
    record = ProtobufSerializer(click_class, client)(click, context)
    assert record is not None
    assert record[5] == 0  # message index [0]
    assert click_class.FromString(record[6:]) == click

    status, body = _get(schema_registry, f"/schemas/ids/{_schema_id(record)}?format=serialized")
    answer = json.loads(body)
    assert status == 200 and answer["schemaType"] == "PROTOBUF"
    assert "references" not in answer
    proto = descriptor_pb2.FileDescriptorProto.FromString(base64.b64decode(answer["schema"]))
    assert proto.name == "tests/registry_smoke/click.proto"
    assert list(proto.dependency) == ["google/protobuf/timestamp.proto"]
    assert ProtobufDeserializer(click_class, {})(record, context) == click


def test_protobuf_references_registered_by_hand(schema_registry: str) -> None:
    """An import of the team's own file is a reference (name = the import path, subject,
    version), returned with the schema; the imported file is read by subject and version.
    (confluent-kafka's serializer registers such imports itself but then looks them up
    with an endpoint this registry lacks, so here they are registered by hand.)"""
    client = SchemaRegistryClient({"url": schema_registry})
    suffix = uuid.uuid4().hex[:8]
    user = descriptor_pb2.FileDescriptorProto(name=f"shop/user_{suffix}.proto", package="shop")
    user.message_type.add(name="User")
    visit = descriptor_pb2.FileDescriptorProto(
        name=f"shop/visit_{suffix}.proto", package="shop", dependency=[user.name]
    )
    visit.message_type.add(name="Visit")

    def text(proto: descriptor_pb2.FileDescriptorProto) -> str:
        return base64.b64encode(proto.SerializeToString()).decode()

    client.register_schema(user.name, Schema(text(user), "PROTOBUF"))
    reference = SchemaReference(user.name, user.name, 1)
    visit_id = client.register_schema(
        f"visits-{suffix}-value", Schema(text(visit), "PROTOBUF", [reference])
    )

    _, body = _get(schema_registry, f"/schemas/ids/{visit_id}")
    assert json.loads(body)["references"] == [
        {"name": user.name, "subject": user.name, "version": 1}
    ]
    subject = urllib.parse.quote(user.name, safe="")
    _, body = _get(schema_registry, f"/subjects/{subject}/versions/1")
    assert json.loads(body)["schema"] == text(user)


def test_what_the_local_registry_leaves_out(schema_registry: str) -> None:
    """Conduit's registry answers 501 where a production registry lists subjects, says its
    configuration and schema types, looks a schema up or checks compatibility; and it knows
    no `latest` version. Tests that need these belong against a production registry."""
    unimplemented = [
        ("GET", "/subjects"),
        ("GET", "/config"),
        ("GET", "/schemas/types"),
        ("POST", "/subjects/clicks-value"),
        ("POST", "/compatibility/subjects/clicks-value/versions/1"),
    ]
    for method, path in unimplemented:
        data = b"{}" if method == "POST" else None
        request = urllib.request.Request(schema_registry + path, data=data, method=method)
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=5)
        assert refused.value.code == 501, (method, path)
    client = SchemaRegistryClient({"url": schema_registry})
    context = _context()
    AvroSerializer(client, CLICK_AVRO)(CLICK, context)
    status, _ = _get(schema_registry, f"/subjects/{context.topic}-value/versions/latest")
    assert status == 404
    status, body = _get(schema_registry, "/schemas/ids/999999")
    assert status == 404 and json.loads(body)["error_code"] == 40403


def test_basic_auth_and_tls(secured_schema_registry: LocalRegistry) -> None:
    registry = secured_schema_registry
    config = registry.confluent_config()
    assert config["url"].startswith("https://")

    wrong = SchemaRegistryClient({**config, "basic.auth.user.info": "riverrun:wrong"})
    with pytest.raises(SchemaRegistryError) as refused:
        wrong.get_schema(1)
    assert refused.value.http_status_code == 401
    assert refused.value.error_code == 401

    client = SchemaRegistryClient(config)
    context = _context()
    record = AvroSerializer(client, CLICK_AVRO)(CLICK, context)
    assert AvroDeserializer(client)(record, context) == CLICK


def test_tls_refuses_a_client_without_certificate(
    secured_schema_registry: LocalRegistry,
) -> None:
    registry = secured_schema_registry
    assert registry.ca_file is not None
    no_certificate = ssl.create_default_context(cafile=str(registry.ca_file))
    request = urllib.request.Request(
        f"{registry.url}/schemas/ids/1", headers=registry.authorization()
    )
    with pytest.raises(OSError, match=r"(?i)certificate"):  # SSLError: certificate required
        urllib.request.urlopen(request, timeout=5, context=no_certificate)
