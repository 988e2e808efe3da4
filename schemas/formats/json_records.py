"""JSON Schema records in: the payload of a record whose registered schema is a JSON
Schema, as a dict.

The payload is not validated against its schema (about 22 µs per event, ten times the
decoding): the event mapping and the event's own validation judge the fields. msgspec reads
it, as it reads riverrun's own JSON events (`schemas.fast_codec`): a number has the same
bits in both, and an integer beyond 64 bits stays an exact int.

>>> reader = JsonReader(RegisteredSchema(9, "JSON", '{"type": "object"}'))
>>> reader.read(b'{"page": "/home", "price": 0.1, "user": {"id": "u1"}}')
{'page': '/home', 'price': 0.1, 'user': {'id': 'u1'}}
>>> try:
...     reader.read(b'[1, 2]')
... except InvalidMessage as err:
...     print(err.error_type.value, err.reason.split(":")[0])
undecodable a JSON array after the header naming JSON Schema 9, not an object
"""

from typing import Any

import msgspec

from schemas.codec import InvalidMessage
from schemas.dead_letter import ErrorType
from schemas.formats.wire import RegisteredSchema

__all__ = ["JsonReader"]

_DECODER = msgspec.json.Decoder()
_JSON_KINDS = {list: "array", str: "string", int: "number", float: "number", bool: "boolean"}


class JsonReader:
    """Reads the payloads of one registered JSON Schema: each must be a JSON object.

    Raises InvalidMessage from `read`: ErrorType.INVALID_JSON for bytes that are not JSON,
    ErrorType.UNDECODABLE for JSON that is not an object.
    """

    def __init__(self, schema: RegisteredSchema) -> None:
        self.schema_id = schema.id

    def read(self, payload: bytes) -> dict[str, Any]:
        """The record in `payload` (after the wire format's header), as a dict."""
        try:
            record = _DECODER.decode(payload)
        except (msgspec.DecodeError, UnicodeDecodeError) as err:  # the latter: not UTF-8
            raise InvalidMessage(
                ErrorType.INVALID_JSON,
                f"not valid JSON after the header naming JSON Schema {self.schema_id} ({err}): "
                "send one JSON object per record, UTF-8 encoded, without NaN or Infinity, "
                "as a JSON Schema serializer writes it",
            ) from None
        if type(record) is not dict:
            kind = _JSON_KINDS.get(type(record), "null")
            raise InvalidMessage(
                ErrorType.UNDECODABLE,
                f"a JSON {kind} after the header naming JSON Schema {self.schema_id}, not an "
                "object: riverrun reads records (the fields of one event each); produce the "
                'topic\'s values with an object schema ("type": "object")',
            )
        return record
