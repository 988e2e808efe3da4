"""riverrun's schema registry client against a real registry (the local one: Conduit's).

What is whose fault decides what happens to a record: an id the registry does not know is
the record's (a dead letter's reason), a registry that does not answer or refuses the
credentials is not (the batch waits and asks again). No broker here.
"""

import asyncio
import base64
import json
import logging
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from google.protobuf import descriptor_pb2
from pydantic import SecretStr

from schemas.codec import InvalidMessage
from schemas.dead_letter import ErrorType
from schemas.formats.wire import frame
from streams.http.schema_registry import (
    RegistryUnavailable,
    SchemaCache,
    SchemaRegistry,
    UnknownSchema,
)
from streams.settings import Settings
from tests.ports import free_port
from tests.registry import LocalRegistry

CLICK = {
    "type": "record",
    "name": "Click",
    "namespace": "shop",
    "fields": [{"name": "id", "type": "string"}, {"name": "price", "type": "double"}],
}


def settings(url: str, **more: Any) -> Settings:
    return Settings(schema_registry_url=url, schema_registry_timeout_seconds=2, **more)


def post(url: str, subject: str, body: dict[str, Any]) -> int:
    request = urllib.request.Request(
        f"{url}/subjects/{subject.replace('/', '%2F')}/versions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/vnd.schemaregistry.v1+json"},
    )
    with urllib.request.urlopen(request, timeout=5) as answer:
        return int(json.load(answer)["id"])


@pytest.fixture
def registry() -> Iterator[LocalRegistry]:
    with LocalRegistry() as started:
        yield started


def test_a_schema_is_fetched_by_id_and_an_unknown_id_is_the_records_fault(
    registry: LocalRegistry,
) -> None:
    async def run() -> None:
        client = SchemaRegistry(settings(registry.url))
        try:
            schema_id = await client.register("clicks-value", "AVRO", json.dumps(CLICK))
            again = await client.register("clicks-value", "AVRO", json.dumps(CLICK))
            assert again == schema_id  # registering is idempotent
            fetched = await client.schema(schema_id)
            assert (fetched.schema_type, json.loads(fetched.text)) == ("AVRO", CLICK)
            with pytest.raises(UnknownSchema):
                await client.schema(schema_id + 100)
        finally:
            await client.close()

    asyncio.run(run())


def test_protobuf_references_are_fetched_by_subject_version(registry: LocalRegistry) -> None:
    """An imported file's subject has a slash in it (`shop/user.proto`)."""
    user = descriptor_pb2.FileDescriptorProto(name="shop/user.proto", package="shop")
    user.message_type.add(name="User").field.add(
        name="id", number=1, type=descriptor_pb2.FieldDescriptorProto.TYPE_STRING
    )
    click = descriptor_pb2.FileDescriptorProto(
        name="click.proto", package="shop", dependency=["shop/user.proto"], syntax="proto3"
    )
    message = click.message_type.add(name="Click")
    message.field.add(
        name="user",
        number=1,
        type=descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE,
        type_name=".shop.User",
    )

    def text(proto: descriptor_pb2.FileDescriptorProto) -> str:
        return base64.b64encode(proto.SerializeToString()).decode()

    post(registry.url, "shop/user.proto", {"schema": text(user), "schemaType": "PROTOBUF"})
    click_id = post(
        registry.url,
        "clicks-value",
        {
            "schema": text(click),
            "schemaType": "PROTOBUF",
            "references": [{"name": "shop/user.proto", "subject": "shop/user.proto", "version": 1}],
        },
    )

    async def run() -> None:
        client = SchemaRegistry(settings(registry.url))
        cache = SchemaCache(client)
        try:
            fetched = await client.schema(click_id)
            assert [name for name, _ in fetched.references] == ["shop/user.proto"]
            payload = b"\x00" + message_bytes(click_id)
            await cache.resolve([frame(click_id, payload)])
            reader = cache.readers[click_id]
            assert not isinstance(reader, InvalidMessage), reader
            assert reader.read(payload) == {"user": {"id": "u7"}}
        finally:
            await client.close()

    def message_bytes(_: int) -> bytes:
        # field 1 (user), length-delimited, holding field 1 (id) = "u7"
        inner = b"\x0a\x02u7"
        return b"\x0a" + bytes([len(inner)]) + inner

    asyncio.run(run())


def test_the_cache_asks_for_each_id_once_and_for_an_unknown_one_again(
    registry: LocalRegistry,
) -> None:
    schema_id = post(registry.url, "clicks-value", {"schema": json.dumps(CLICK)})
    asked: list[int] = []

    async def run() -> None:
        client = SchemaRegistry(settings(registry.url))
        original = client.schema

        async def counted(i: int) -> Any:
            asked.append(i)
            return await original(i)

        client.schema = counted  # type: ignore[method-assign,assignment]
        cache = SchemaCache(client)
        try:
            records = [frame(schema_id, b""), frame(schema_id, b""), frame(999, b""), None]
            await cache.resolve(records)
            await cache.resolve(records)
            unknown = cache.readers[999]
            assert isinstance(unknown, InvalidMessage)
            assert unknown.error_type is ErrorType.UNKNOWN_SCHEMA
            assert (
                registry.url in unknown.reason and "RIVERRUN_SCHEMA_REGISTRY_URL" in unknown.reason
            )
        finally:
            await client.close()

    asyncio.run(run())
    assert asked == [schema_id, 999, 999]  # a known id once; an unknown one every batch


def test_an_unreachable_registry_makes_the_batch_wait_not_a_dead_letter(
    registry: LocalRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    """Nothing listens at first: the cache waits and asks again; once the registry
    answers, the record's schema is read."""
    schema_id = post(registry.url, "clicks-value", {"schema": json.dumps(CLICK)})
    failures: list[int] = []

    async def run() -> None:
        client = SchemaRegistry(settings(f"http://127.0.0.1:{free_port()}"))

        async def sleep(seconds: float) -> None:
            if len(failures) == 3:  # the registry comes back
                client.url = registry.url

        cache = SchemaCache(client, on_unavailable=lambda: failures.append(1), sleep=sleep)
        try:
            await cache.resolve([frame(schema_id, b"")])
        finally:
            await client.close()
        assert not isinstance(cache.readers[schema_id], InvalidMessage)

    with caplog.at_level(logging.WARNING):
        asyncio.run(run())
    assert len(failures) == 3
    assert "unavailable" in caplog.text and f"schema id {schema_id}" in caplog.text


def test_credentials_and_tls(
    secured_schema_registry: LocalRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    """Basic auth and mutual TLS from the settings; refused credentials are the registry's
    side (unavailable, asked again), and the password is in no message."""
    registry = secured_schema_registry
    good = Settings.model_validate(  # as a worker reads them from its environment
        {
            name.removeprefix("RIVERRUN_").lower(): value
            for name, value in registry.riverrun_env().items()
        }
    )
    wrong = good.model_copy(update={"schema_registry_password": SecretStr("not-the-password")})
    no_certificate = good.model_copy(
        update={"schema_registry_certfile": None, "schema_registry_keyfile": None}
    )

    async def run() -> None:
        client = SchemaRegistry(good)
        try:
            schema_id = await client.register("clicks-value", "AVRO", json.dumps(CLICK))
            assert (await client.schema(schema_id)).schema_type == "AVRO"
        finally:
            await client.close()
        for refused, expected in ((wrong, "401"), (no_certificate, "")):
            client = SchemaRegistry(refused)
            try:
                with pytest.raises(RegistryUnavailable) as err:
                    await client.schema(schema_id)
            finally:
                await client.close()
            assert expected in str(err.value)
            assert "registry-secret" not in str(err.value)
            assert "not-the-password" not in str(err.value)

    asyncio.run(run())
    assert "registry-secret" not in caplog.text
