"""Input events written in the events topic's format (`RIVERRUN_EVENTS_FORMAT`), as
`riverrun replay` and the demo produce them, and as the worker reads them back without a
mapping (`schemas.formats.events.EventDecoder`).

- json: riverrun's own JSON, the bytes `InputEvent.model_dump_json` writes (the default).
- json_schema: those bytes in the Confluent wire format, naming the registered JSON Schema
  (the committed input_event.v1.json).
- avro: the event in Avro (the committed schemas/avro/input_event.avsc) in the Confluent
  wire format.

protobuf has no encoder: riverrun has no Protobuf schema of its events (a Protobuf topic
carries a team's own records, written by its producers).

>>> from datetime import UTC, datetime
>>> from schemas import InputEvent
>>> event = InputEvent(event_id="e1", ts=datetime(2026, 1, 1, tzinfo=UTC), model="logreg",
...                    key="k", features={"mobile": True, "visits": 3, "price": 0.5})
>>> framed = InputEventEncoder("avro", schema_id=7).encode(event)
>>> framed[:5], len(framed)
(b'\\x00\\x00\\x00\\x00\\x07', 62)
"""

import json
from collections.abc import Callable
from functools import cache
from io import BytesIO
from typing import Any

import fastavro

from schemas.formats.avro_schema import avro_text
from schemas.formats.wire import SCHEMA_TYPES, InputFormat, frame
from schemas.input_event import InputEvent
from schemas.json_schema import render

__all__ = ["JSON", "InputEventEncoder", "UnencodableEvent", "avro_payload", "registered_schema"]

#: The Avro branch of each value type a feature or a label has (InputEvent's types are
#: strict: a bool is never an int, an int never a float).
_BRANCHES: dict[type, str] = {bool: "boolean", int: "long", float: "double", str: "string"}
_LONG = range(-(2**63), 2**63)


class UnencodableEvent(ValueError):
    """An event the format cannot hold as it is (an integer beyond Avro's 64-bit long)."""


class InputEventEncoder:
    """The bytes of an input event on the events topic, in one format.

    `schema_id`: the id the registry gave `registered_schema(format)` under
    `<events_topic>-value`; none for json.
    """

    def __init__(self, format: InputFormat, schema_id: int | None = None) -> None:
        self.format = format
        self.schema_id = schema_id
        if format == "json":
            if schema_id is not None:
                raise ValueError("json events name no schema: schema_id must be None")
            self._encode: Callable[[InputEvent], bytes] = _json
            return
        if format not in ("avro", "json_schema"):
            raise ValueError(
                f"no input event format {format!r} riverrun writes: json, json_schema or avro"
            )
        if schema_id is None:
            raise ValueError(f"{format} events need the id of their registered schema")
        self._header = frame(schema_id, b"")
        self._encode = self._avro if format == "avro" else self._json_schema

    def encode(self, event: InputEvent) -> bytes:
        """The value of `event`'s message; UnencodableEvent when the format cannot hold
        it."""
        return self._encode(event)

    def _json_schema(self, event: InputEvent) -> bytes:
        return self._header + _json(event)

    def _avro(self, event: InputEvent) -> bytes:
        return self._header + avro_payload(event.__dict__)


def avro_payload(fields: dict[str, Any]) -> bytes:
    """The Avro bytes (without the wire format's header) of an event's fields:
    `InputEvent.__dict__`, or the fields of a record that is no valid event (the demo's
    bad messages). Raises UnencodableEvent for a value input_event.avsc cannot hold."""
    out = BytesIO()
    fastavro.schemaless_writer(out, _avro_parsed(), avro_fields(fields))
    return out.getvalue()


def avro_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """An event's fields as fastavro writes them with input_event.avsc: each feature value
    and the label as (branch, value), so that the union's branch is the value's type, never
    fastavro's guess (which makes an integer beyond 64 bits a double). Raises
    UnencodableEvent for an integer beyond 64 bits."""
    features = fields["features"]
    label = fields["label"]
    return {
        **fields,
        "features": {name: _branch(value, f"features.{name}") for name, value in features.items()},
        "label": None if label is None else _branch(label, "label"),
    }


def _branch(value: Any, name: str) -> tuple[str, Any]:
    kind = type(value)
    if kind is int and value not in _LONG:
        raise UnencodableEvent(
            f"{name}: the integer {value} is beyond Avro's long (64 bits); send it as a "
            "string or a float, or the events in json"
        )
    try:
        return _BRANCHES[kind], value
    except KeyError:
        raise UnencodableEvent(
            f"{name}: a {kind.__name__}, which input_event.avsc has no branch for"
        ) from None


def _json(event: InputEvent) -> bytes:
    return event.model_dump_json().encode()


@cache
def _avro_parsed() -> Any:
    return fastavro.parse_schema(json.loads(registered_schema("avro")[1]))


def registered_schema(format: InputFormat) -> tuple[str, str]:
    """(schemaType, schema text) to register under `<events_topic>-value` for events
    written in `format` (json_schema or avro): the committed schemas/json/input_event.v1.json
    or schemas/avro/input_event.avsc.

    >>> schema_type, text = registered_schema("avro")
    >>> schema_type, json.loads(text)["name"]
    ('AVRO', 'InputEvent')
    """
    if format == "avro":
        return SCHEMA_TYPES[format], avro_text(InputEvent)
    if format == "json_schema":
        return SCHEMA_TYPES[format], render(InputEvent)
    raise ValueError(f"{format} events are not registered by riverrun: only json_schema and avro")


#: riverrun's own JSON events (no registry, no state: one for every caller).
JSON = InputEventEncoder("json")
