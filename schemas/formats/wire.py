"""The Confluent wire format: magic byte 0, the schema's id (4 bytes, big-endian), then the
payload (for Protobuf, preceded by the message indexes).

>>> framed = frame(7, b"payload")
>>> framed[:5], schema_id_of(framed), unframe(framed)
(b'\\x00\\x00\\x00\\x00\\x07', 7, (7, b'payload'))
>>> schema_id_of(b'{"event_id": "e1"}') is None
True
"""

from dataclasses import dataclass
from typing import Any, Literal, Protocol

from schemas.codec import InvalidMessage
from schemas.dead_letter import ErrorType

MAGIC = 0
HEADER_BYTES = 5

#: The formats of input topics: riverrun's JSON, or a team's records through a registry.
InputFormat = Literal["json", "avro", "json_schema", "protobuf"]
#: The formats predictions can be written in.
OutputFormat = Literal["json", "avro", "json_schema"]
#: A registry's name for each registered format (its `schemaType`; absent means AVRO).
SCHEMA_TYPES: dict[str, str] = {"avro": "AVRO", "json_schema": "JSON", "protobuf": "PROTOBUF"}


def frame(schema_id: int, payload: bytes) -> bytes:
    """`payload` in the wire format, naming the schema `schema_id`."""
    return bytes((MAGIC,)) + schema_id.to_bytes(4, "big") + payload


def schema_id_of(raw: bytes | None) -> int | None:
    """The schema id a record in the wire format names; None when it is not in it."""
    if raw is None or len(raw) < HEADER_BYTES or raw[0] != MAGIC:
        return None
    return int.from_bytes(raw[1:HEADER_BYTES], "big")


def unframe(raw: bytes) -> tuple[int, bytes]:
    """(schema id, payload) of a record in the wire format; InvalidMessage when it is not.

    >>> try:
    ...     unframe(b'{"a": 1}')
    ... except InvalidMessage as err:
    ...     print(err.error_type.value)
    undecodable
    """
    schema_id = schema_id_of(raw)
    if schema_id is None:
        first = f"starts with byte {raw[0]:#04x}" if raw else "is empty"
        raise InvalidMessage(
            ErrorType.UNDECODABLE,
            f"not in the Confluent wire format (the value {first}, not the magic byte 0 "
            "and a 4-byte schema id): produce it with a schema registry serializer (Avro, "
            "JSON Schema or Protobuf), or set the topic's format (RIVERRUN_EVENTS_FORMAT, "
            "RIVERRUN_JOIN_FORMAT) to json if it carries plain JSON",
        )
    return schema_id, raw[HEADER_BYTES:]


@dataclass(frozen=True)
class RegisteredSchema:
    """A schema as a registry holds it, with the schemas it references (by name)."""

    id: int
    #: The registry's `schemaType`: AVRO, JSON or PROTOBUF.
    schema_type: str
    #: The schema's text (Avro or JSON Schema JSON; Protobuf: the base64 of a serialized
    #: FileDescriptorProto, as a registry gives with `?format=serialized`).
    text: str
    #: Referenced schemas: the name each reference is imported under -> that schema.
    references: tuple[tuple[str, "RegisteredSchema"], ...] = ()


class RecordReader(Protocol):
    """Decodes the payloads of one registered schema into plain Python values."""

    def read(self, payload: bytes) -> dict[str, Any]:
        """The record in `payload` (after the 5-byte header): a dict of field values
        (str, int, float, bool, None, datetime, nested dicts and lists). Raises
        InvalidMessage(ErrorType.UNDECODABLE, reason) when the bytes do not decode."""
        ...
