"""Avro records in: the payload of a record whose registered schema is Avro, as a dict.

fastavro parses the schema once per schema id and decodes each payload with it, values as
fastavro gives them (a nested record as a dict, an array as a list, a map as a dict, an
enum as its symbol, bytes as bytes, timestamp-millis and timestamp-micros as aware
datetimes in UTC, local-timestamp-* as naive ones, a `date` as a `datetime.date`), but for
two logical types: a `decimal` is read as the nearest float (the features and labels of an
event are floats; 12.34 then has the bits it has in a JSON event), and a `uuid` as the
string the producer wrote. A `float` (32 bits) is the Python float of that 32-bit value:
0.1 is read as 0.10000000149011612, so a feature that must equal the same event sent as
JSON bit for bit is a `double`.

>>> import io
>>> text = '''{"type": "record", "name": "Click", "namespace": "com.acme",
...   "fields": [{"name": "page", "type": "string"}, {"name": "price", "type": "double"},
...              {"name": "referrer", "type": ["null", "string"], "default": null}]}'''
>>> reader = AvroReader(RegisteredSchema(7, "AVRO", text))
>>> written = io.BytesIO()
>>> fastavro.schemaless_writer(written, fastavro.parse_schema(json.loads(text)),
...                            {"page": "/home", "price": 0.1, "referrer": None})
>>> reader.read(written.getvalue())
{'page': '/home', 'price': 0.1, 'referrer': None}
>>> try:
...     reader.read(written.getvalue()[:8])
... except InvalidMessage as err:
...     print(err.reason.split(". ")[0])
the 8 bytes after the header do not decode as Avro schema 7 (com.acme.Click): field 2 of 3, \
`price`, does not decode (the bytes end inside it); the fields before it do
"""

import io
import json
from decimal import Decimal
from typing import Any, cast

import fastavro
from fastavro.schema import SchemaParseException

from schemas.codec import InvalidMessage
from schemas.dead_letter import ErrorType
from schemas.formats.wire import RegisteredSchema

__all__ = ["AvroReader"]

# What fastavro raises on bytes its schema does not describe (found by feeding it random and
# damaged payloads; tested): the bytes end too soon (EOFError), a string that is not UTF-8
# (UnicodeDecodeError, a ValueError), a union branch or enum symbol beyond the schema's
# (IndexError), a varint beyond 64 bits or a time beyond datetime's range (OverflowError,
# ValueError).
_DECODE_ERRORS = (EOFError, ValueError, IndexError, OverflowError)
# What fastavro raises on a schema it refuses.
_SCHEMA_ERRORS = (SchemaParseException, ValueError, TypeError, KeyError, AttributeError)

# The record whose one field is a top-level union (a name no team's schema uses).
_UNION_RECORD = "riverrun.TopLevelUnion"

_WHAT_TO_DO = (
    "The producer wrote with another schema than the one its header names, or the value "
    "was altered after it was serialized: check the schema the producer's serializer writes "
    "with, and that nothing rewrites the values on the way"
)


class AvroReader:
    """Reads the payloads of one registered Avro schema: a record, or a union of records
    (one topic, several kinds of events).

    Raises InvalidMessage(ErrorType.UNDECODABLE) when fastavro refuses the schema or the
    schema is not a record, and, from `read`, when a payload does not decode. A payload with
    bytes left over after the record is refused too (Confluent's deserializer ignores them):
    no serializer writes them, and a record that ends early was most likely written with
    another schema, whose values would be read as the wrong fields.
    """

    def __init__(self, schema: RegisteredSchema) -> None:
        self.schema_id = schema.id
        references = [(reference, _loaded(reference)) for reference in _references(schema)]
        named: dict[str, Any] = {}
        for reference, loaded in references:
            if reference.schema_type != "AVRO":
                raise InvalidMessage(
                    ErrorType.UNDECODABLE,
                    f"Avro schema {schema.id} references schema {reference.id}, of type "
                    f"{reference.schema_type}: an Avro schema can only reference Avro "
                    "schemas; register the referenced types as Avro",
                )
            _parsed(reference, loaded, named)
        self._referenced = dict(named)  # the named types of the references only
        self._record = _loaded(schema)
        self._union = isinstance(self._record, list)
        if self._union:
            # fastavro resolves the named types of a parsed record, not of a parsed union: a
            # union is read as the one field of a record, whose bytes are the field's bytes.
            top = {
                "type": "record",
                "name": _UNION_RECORD,
                "fields": [{"name": "record", "type": self._record}],
            }
            self._parsed = _parsed(schema, top, named)
            self._name, not_a_record = _kind(self._record, named)
        else:
            self._parsed = _parsed(schema, self._record, named)
            self._name, not_a_record = _kind(self._parsed, named)
        if not_a_record is not None:
            raise InvalidMessage(
                ErrorType.UNDECODABLE,
                f"Avro schema {schema.id} is {not_a_record}, not a record: riverrun reads "
                "records (the fields of one event each); produce the topic's values with a "
                "record schema (or a union of records)",
            )
        self._decimals = _has_decimal([self._record, *(loaded for _, loaded in references)])
        self._prefixes: list[Any] | None = None  # built on the first failure

    def read(self, payload: bytes) -> dict[str, Any]:
        """The record in `payload` (after the wire format's header), as a dict."""
        stream = io.BytesIO(payload)
        try:
            record = fastavro.schemaless_reader(stream, self._parsed, None, False)
        except _DECODE_ERRORS as err:
            raise self._undecodable(payload, self._where(payload, err)) from None
        used = stream.tell()
        if used != len(payload):
            raise self._undecodable(
                payload,
                f"the record ends after {used} of them, leaving {len(payload) - used} bytes "
                "that no field reads",
            )
        if self._union:
            record = cast(dict[str, Any], record)["record"]
        if self._decimals:
            return cast(dict[str, Any], _without_decimals(record))
        return cast(dict[str, Any], record)

    def _undecodable(self, payload: bytes, what: str) -> InvalidMessage:
        return InvalidMessage(
            ErrorType.UNDECODABLE,
            f"the {len(payload)} bytes after the header do not decode as Avro schema "
            f"{self.schema_id} ({self._name}): {what}. {_WHAT_TO_DO}",
        )

    def _where(self, payload: bytes, err: Exception) -> str:
        """Which of the record's fields stops the decoding, found by decoding the first
        field, then the first two, and so on (on failures only: it costs a parse of each of
        these shorter schemas once, and a decoding of each per failure)."""
        fields = self._record.get("fields") if isinstance(self._record, dict) else None
        if not isinstance(fields, list):  # a union of records: which one is not known
            return f"the record does not decode ({_failure(err)})"
        if self._prefixes is None:
            self._prefixes = [
                fastavro.parse_schema(
                    {**self._record, "fields": fields[:count]}, dict(self._referenced)
                )
                for count in range(1, len(fields) + 1)
            ]
        for decoded, prefix in enumerate(self._prefixes):
            try:
                fastavro.schemaless_reader(io.BytesIO(payload), prefix, None, False)
            except _DECODE_ERRORS as failed:
                field = f"field {decoded + 1} of {len(fields)}, `{fields[decoded]['name']}`"
                before = "; the fields before it do" if decoded else ""
                return f"{field}, does not decode ({_failure(failed)}){before}"
        return f"the record does not decode ({_failure(err)})"  # (not reached)


def _references(schema: RegisteredSchema, seen: set[int] | None = None) -> list[RegisteredSchema]:
    """The schemas `schema` references, each once, every one after those it references."""
    seen = set() if seen is None else seen
    found: list[RegisteredSchema] = []
    for _name, reference in schema.references:
        if reference.id in seen:
            continue
        seen.add(reference.id)
        found.extend(_references(reference, seen))
        found.append(reference)
    return found


def _loaded(schema: RegisteredSchema) -> Any:
    """The schema's JSON, its logical types made into what riverrun reads (`_readable`)."""
    try:
        return _readable(json.loads(schema.text))
    except json.JSONDecodeError as err:
        raise _refused(schema, f"not JSON: {err}") from None


def _parsed(schema: RegisteredSchema, loaded: Any, named: dict[str, Any]) -> Any:
    """The schema parsed by fastavro, its named types added to `named`."""
    try:
        return fastavro.parse_schema(loaded, named)
    except _SCHEMA_ERRORS as err:
        raise _refused(schema, f"{type(err).__name__}: {err}") from None


def _refused(schema: RegisteredSchema, why: str) -> InvalidMessage:
    return InvalidMessage(
        ErrorType.UNDECODABLE,
        f"fastavro refuses Avro schema {schema.id} ({why}), so the records written with it "
        "cannot be read: register a schema that follows the Avro specification (check that "
        "each default matches its field's type) and produce with it",
    )


def _readable(schema: Any) -> Any:
    """`schema` (JSON) with a uuid read as the string it is on the wire rather than as a
    uuid.UUID, and a decimal without a precision read as its bytes, as the Avro
    specification says of an invalid logical type (fastavro would fail on each record)."""
    if isinstance(schema, list):
        return [_readable(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    readable = {key: _readable(value) for key, value in schema.items()}
    logical = readable.get("logicalType")
    if (logical == "uuid" and readable.get("type") == "string") or (
        logical == "decimal" and not isinstance(readable.get("precision"), int)
    ):
        del readable["logicalType"]
    return readable


def _has_decimal(schema: Any) -> bool:
    if isinstance(schema, list):
        return any(_has_decimal(item) for item in schema)
    if isinstance(schema, dict):
        return schema.get("logicalType") == "decimal" or any(
            _has_decimal(value) for value in schema.values()
        )
    return False


def _without_decimals(value: Any) -> Any:
    """`value` with each Decimal replaced by the nearest float."""
    kind = type(value)
    if kind is Decimal:
        return float(value)
    if kind is dict:
        return {key: _without_decimals(item) for key, item in value.items()}
    if kind is list:
        return [_without_decimals(item) for item in value]
    return value


def _kind(parsed: Any, named: dict[str, Any]) -> tuple[str, str | None]:
    """The schema's name, and what it is when it is not a record (nor a union of records)."""
    if isinstance(parsed, list):
        branches = [
            named.get(branch, branch) if isinstance(branch, str) else branch for branch in parsed
        ]
        others = [_avro_type(branch) for branch in branches if _avro_type(branch) != "record"]
        if others:
            return "a union", f"a union with a branch of type {others[0]}"
        return "a union of " + ", ".join(branch["name"] for branch in branches), None
    kind = _avro_type(parsed)
    name = parsed.get("name", kind) if isinstance(parsed, dict) else kind
    return name, None if kind == "record" else f"of type {kind}"


def _avro_type(schema: Any) -> str:
    if isinstance(schema, dict):
        return str(schema.get("type"))
    return "union" if isinstance(schema, list) else str(schema)


def _failure(err: Exception) -> str:
    if isinstance(err, EOFError):
        return "the bytes end inside it"
    if isinstance(err, UnicodeDecodeError):
        return "a string in it is not UTF-8"
    if isinstance(err, IndexError):
        return "a union branch or enum symbol number its schema does not have"
    return f"a value out of its type's range: {err}"
