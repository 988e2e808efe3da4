"""The events topic's records as `InputEvent`s, in whatever format and shape a team
produces them: the decoder a worker runs on each record.

riverrun's own JSON events take today's path (`schemas.codec.decode`: the same events,
the same reasons). A registry format's record is read by its schema's reader; a record of
any shape is made an event by an `EventMapping` or by the app's event decoder (a
function); then it is validated as an InputEvent, strictly as JSON is.

>>> decoder = EventDecoder("json", readers={}, mapping=EventMapping(key="user", model="ctr"),
...                        max_bytes=10_000)
>>> event = decoder.decode(b'{"user": 7, "price": 0.2}', RecordMeta("clicks", 0, 5, 0))
>>> event.event_id, event.key, event.features, event.ts.isoformat()
('clicks:0:5', '7', {'price': 0.2}, '1970-01-01T00:00:00+00:00')
"""

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import msgspec
from pydantic import BaseModel, ValidationError

from schemas.codec import (
    InvalidMessage,
    decode,
    empty_message,
    invalid_message,
    not_json,
    oversized,
)
from schemas.dead_letter import ErrorType
from schemas.formats.json_records import JsonReader
from schemas.formats.mapping import (
    SETTING,
    EventMapping,
    RecordMeta,
    kafka_event_id,
    kafka_time,
)
from schemas.formats.wire import InputFormat, RecordReader, unframe
from schemas.input_event import InputEvent

__all__ = [
    "EventDecoder",
    "EventHook",
    "RecordMeta",
    "decode_record",
    "hook_name",
    "unknown_schema",
]

ModelT = TypeVar("ModelT", bound=BaseModel)

#: A function turning a team's record (a dict) into an InputEvent's fields.
EventHook = Callable[[dict[str, Any]], Mapping[str, Any]]

_NAME = InputEvent.__name__
_MAX_SHOWN = 200


def unknown_schema(schema_id: int, registry: str = "the schema registry") -> InvalidMessage:
    """The verdict on a record naming a schema id the registry does not have.

    >>> print(unknown_schema(42).reason)  # doctest: +ELLIPSIS
    the record names schema id 42, which the schema registry does not have: ...
    """
    return InvalidMessage(
        ErrorType.UNKNOWN_SCHEMA,
        f"the record names schema id {schema_id}, which {registry} does not have: the "
        "producer used another registry (point RIVERRUN_SCHEMA_REGISTRY_URL at it), or the "
        "schema was deleted since; replay the dead letters once the registry has it",
    )


def hook_name(hook: Callable[..., Any]) -> str:
    """`module.qualified_name` of an event decoder, as reasons name it."""
    module = getattr(hook, "__module__", None)
    name = getattr(hook, "__qualname__", None) or repr(hook)
    return f"{module}.{name}" if module else name


class EventDecoder:
    """Decodes the events topic's records, one `decode` per record.

    Parameters
    ----------
    format
        The topic's format (RIVERRUN_EVENTS_FORMAT).
    readers
        A reader for each schema id the records name, or the verdict on an id that cannot
        be read (filled by the registry cache with the ids of a batch's records before decoding).
    mapping, hook
        How a record becomes an InputEvent's fields, when it is not one: a mapping or a
        function (the app's event decoder), not both. Neither: a record must be an
        InputEvent as it is.
    max_bytes
        Records over this size are refused (RIVERRUN_MAX_EVENT_BYTES).
    """

    def __init__(
        self,
        format: InputFormat,
        *,
        readers: Mapping[int, RecordReader | InvalidMessage],
        mapping: EventMapping | None = None,
        hook: EventHook | None = None,
        max_bytes: int,
    ) -> None:
        if mapping is not None and hook is not None:
            raise ValueError(
                f"both an event mapping and an event decoder ({hook_name(hook)}) are set: "
                "records are made events by one of them; drop the other"
            )
        self.format = format
        self.readers = readers
        self.mapping = mapping
        self.hook = hook
        self.max_bytes = max_bytes
        # riverrun's own events, as JSON or framed JSON: today's decoding, byte for byte.
        events_as_they_are = mapping is None and hook is None
        self._json_events = events_as_they_are and format == "json"
        self._framed_json_events = events_as_they_are and format == "json_schema"
        self._located: Callable[[str], str] | None = None
        if mapping is not None:
            self._located = mapping.located
            self._fix = (
                f"The record was made an event by the mapping ({SETTING}): fix the producer, "
                "or the mapping (exclude a field that is no feature, or list the features)"
            )
        elif hook is not None:
            self._fix = (
                f"The record was made an event by the event decoder {hook_name(hook)}: fix "
                "it, or the producer"
            )
        else:
            self._fix = (
                "Fix the producer so that its records carry an InputEvent's fields "
                "(`riverrun schemas export --dir DIR` writes its schemas), or make records "
                f"events with a mapping ({SETTING}) or an @app.event_decoder"
            )

    def decode(self, raw: bytes | None, meta: RecordMeta) -> InputEvent:
        """The event in the record `raw` (read from `meta`); InvalidMessage with the
        reason when it is none."""
        if self._json_events:
            return decode(InputEvent, raw, max_bytes=self.max_bytes)
        raw = _sized(_NAME, raw, self.max_bytes)
        if self.format == "json":
            record = _json_object(raw)
        else:
            schema_id, payload = unframe(raw)
            reader = _reader(self.readers, schema_id)
            if self._framed_json_events:  # an InputEvent in JSON after the header
                return decode(InputEvent, payload, max_bytes=self.max_bytes)
            record = reader.read(payload)
        if self.mapping is not None:
            fields = self.mapping.mapped(record, meta)
        elif self.hook is not None:
            fields = self._hooked(self.hook, record, meta)
        else:
            fields = record
            _no_bytes(fields)
        try:
            return InputEvent.model_validate(fields)
        except ValidationError as err:
            raise invalid_message(_NAME, err, fix=self._fix, located=self._located) from None

    def _hooked(self, hook: EventHook, record: dict[str, Any], meta: RecordMeta) -> dict[str, Any]:
        try:
            returned = hook(record)
        # The decoder is the team's code: whatever it raises on a record is that record's
        # verdict (a dead letter with the decoder's words), never the worker's end.
        except Exception as err:
            message = str(err)
            if len(message) > _MAX_SHOWN:
                message = message[: _MAX_SHOWN - 3] + "..."
            raise InvalidMessage(
                ErrorType.INVALID_EVENT,
                f"the event decoder {hook_name(hook)} raised {type(err).__name__}"
                f"{': ' + message if message else ''}; fix the decoder for such records, or "
                "the producer",
            ) from err
        if not isinstance(returned, Mapping):
            raise InvalidMessage(
                ErrorType.INVALID_EVENT,
                f"the event decoder {hook_name(hook)} returned {type(returned).__name__}, not "
                "an InputEvent's fields (a dict: event_id, ts, model, key, features, label)",
            )
        fields = dict(returned)
        _no_bytes(fields)
        # As a mapping does: the Kafka record's position and time when it names none.
        if "event_id" not in fields:
            fields["event_id"] = kafka_event_id(meta)
        if "ts" not in fields:
            fields["ts"] = kafka_time(meta, f"the event decoder {hook_name(hook)}")
        return fields


def decode_record(
    model: type[ModelT],
    raw: bytes | None,
    readers: Mapping[int, RecordReader | InvalidMessage],
    *,
    max_bytes: int,
) -> ModelT:
    """A record in a registry format (a join input topic's) as `model`, its fields being
    the model's (no mapping); InvalidMessage with the reason when it is none.

    >>> from schemas.formats.wire import frame
    >>> try:
    ...     decode_record(InputEvent, frame(9, b"..."), {}, max_bytes=100)
    ... except InvalidMessage as err:
    ...     print(err.error_type.value)
    unknown_schema
    """
    name = model.__name__
    schema_id, payload = unframe(_sized(name, raw, max_bytes))
    reader = _reader(readers, schema_id)
    if isinstance(reader, JsonReader):  # JSON after the header: read as the JSON topic's
        return decode(model, payload, max_bytes=max_bytes)
    record = reader.read(payload)
    _no_bytes(record, name)
    try:
        return model.model_validate(record)
    except ValidationError as err:
        raise invalid_message(
            name,
            err,
            fix=f"Fix the producer so that its records carry a {name}'s fields "
            "(`riverrun schemas export --dir DIR` writes its schemas)",
        ) from None


def _sized(name: str, raw: bytes | None, max_bytes: int) -> bytes:
    """`raw`, when there is one and it is not over `max_bytes` (as `schemas.codec.decode`
    checks them, with its reasons)."""
    if raw is None:
        raise empty_message(name)
    if len(raw) > max_bytes:
        raise oversized(len(raw), max_bytes)
    return raw


def _reader(readers: Mapping[int, RecordReader | InvalidMessage], schema_id: int) -> RecordReader:
    reader = readers.get(schema_id)
    if reader is None:
        raise unknown_schema(schema_id)
    if isinstance(reader, InvalidMessage):
        raise reader
    return reader


# msgspec, as riverrun's own events are read (`schemas.fast_codec`): an integer beyond 64
# bits stays an integer, as pydantic reads it (orjson would make it a float).
_JSON = msgspec.json.Decoder()


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        record = _JSON.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError) as err:  # the latter: not UTF-8
        raise not_json(str(err)) from None
    if type(record) is not dict:
        raise InvalidMessage(
            ErrorType.INVALID_EVENT,
            f"a JSON {_json_type(record)}, not an object: send one JSON object per message",
        )
    return record


def _json_type(value: Any) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool) or value is None:
        return "true, false or null"
    return "number"


def _no_bytes(fields: Mapping[str, Any], model: str = _NAME) -> None:
    """Refuse bytes, which pydantic would take as UTF-8 text from a Python value (never from
    JSON): a record means what its JSON would."""
    for name, value in fields.items():
        if type(value) is not str and isinstance(value, bytes | bytearray):
            raise InvalidMessage(
                ErrorType.INVALID_EVENT,
                f"invalid {model} v1: {name}: bytes, not a string. Produce it as a string "
                "(an Avro or Protobuf string)"
                + (", or make records events with an @app.event_decoder" if model == _NAME else ""),
            )
