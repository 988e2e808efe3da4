"""The Avro schemas of riverrun's records, derived from their committed JSON Schemas.

The JSON Schema stays the contract; the Avro schema says the same in Avro's terms, for
the teams whose topics are Avro (`RIVERRUN_PREDICTIONS_FORMAT=avro` writes predictions in
it). The generated files are committed as schemas/avro/*.avsc by `riverrun schemas
export`, and a test fails when they drift from the JSON Schemas.

The mapping, JSON Schema -> Avro:

- string -> string; a `date-time` string -> long with logicalType timestamp-micros (an
  event time keeps its microseconds); integer -> long; number -> double; boolean.
- anyOf -> a union, null first when it is one of the branches, the others in the anyOf's
  order (boolean before long: a writer takes the first branch that fits, and True is an
  int in Python).
- an object with additionalProperties -> a map; an object with properties -> a record
  (fields in the JSON Schema's order: alphabetical, as committed); $ref -> the named
  record of that $defs entry, defined where it first occurs, named after.
- enum -> string, not an Avro enum: a reader whose schema lacks a new symbol (a new role)
  fails on it, a string never does. The field's doc lists the values.
- description -> doc; default -> default. Constraints (lengths, bounds, const) have no
  Avro equivalent: the pydantic models check them.

>>> schema = avro_schema({"title": "Click", "type": "object", "properties": {
...     "label": {"anyOf": [{"type": "boolean"}, {"type": "null"}], "default": None},
...     "ts": {"type": "string", "format": "date-time"}}})
>>> [(f["name"], f["type"]) for f in schema["fields"]]
[('label', ['null', 'boolean']), ('ts', {'type': 'long', 'logicalType': 'timestamp-micros'})]
"""

import json
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

__all__ = ["NAMESPACE", "AvroSchema", "avro_schema", "avro_text"]

#: The namespace of every named Avro type riverrun defines.
NAMESPACE = "riverrun"
#: A record (a dict), or a union of records (a list).
AvroSchema = dict[str, Any] | list[Any]

_TIMESTAMP = {"type": "long", "logicalType": "timestamp-micros"}
_PRIMITIVES = {"integer": "long", "number": "double", "boolean": "boolean", "null": "null"}


def avro_schema(*sources: type[BaseModel] | Mapping[str, Any]) -> AvroSchema:
    """The Avro schema of one model or JSON Schema (a record), or of several (a union of
    their records, sharing the named types they have in common)."""
    if not sources:
        raise ValueError("avro_schema needs at least one model or JSON Schema")
    defined: set[str] = set()
    records = [_Converter(_json_schema(source), defined).record() for source in sources]
    return records[0] if len(records) == 1 else records


def avro_text(*sources: type[BaseModel] | Mapping[str, Any]) -> str:
    """`avro_schema(*sources)` as the exact text of a committed .avsc file."""
    return json.dumps(avro_schema(*sources), indent=2) + "\n"


def _json_schema(source: type[BaseModel] | Mapping[str, Any]) -> Mapping[str, Any]:
    if isinstance(source, Mapping):
        return source
    # As committed (schemas.json_schema.render, which this module cannot import: the
    # models' module reads Avro with it): keys sorted, so properties in the same order.
    schema = source.model_json_schema(mode="validation")
    parsed: dict[str, Any] = json.loads(json.dumps(schema, sort_keys=True))
    return parsed


class _Converter:
    """One JSON Schema document to Avro: its $defs are resolved against its own root."""

    def __init__(self, document: Mapping[str, Any], defined: set[str]) -> None:
        self.defs: Mapping[str, Any] = document.get("$defs", {})
        self.document = document
        #: Full names of the named types written already (shared by a union's records).
        self.defined = defined

    def record(self) -> dict[str, Any]:
        name = self.document.get("title")
        if not name:
            raise ValueError("a JSON Schema needs a title to name its Avro record")
        return self._record(name, self.document, {"namespace": NAMESPACE})

    def _record(
        self, name: str, schema: Mapping[str, Any], namespace: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        self.defined.add(f"{NAMESPACE}.{name}")
        record: dict[str, Any] = {"type": "record", "name": name, **(namespace or {})}
        if "description" in schema:
            record["doc"] = schema["description"]
        record["fields"] = [
            self._field(field, spec) for field, spec in schema.get("properties", {}).items()
        ]
        return record

    def _field(self, name: str, spec: Mapping[str, Any]) -> dict[str, Any]:
        field: dict[str, Any] = {"name": name, "type": self._type(spec)}
        doc = [spec["description"]] if "description" in spec else []
        if "enum" in spec:
            doc.append(f"One of: {', '.join(spec['enum'])}.")
        if doc:
            field["doc"] = " ".join(doc)
        if "default" in spec:
            default = spec["default"]
            if isinstance(field["type"], list) and default is not None:
                # Avro takes a union's default from its first branch, which is null here.
                raise ValueError(f"field {name}: a union's default must be null, not {default}")
            field["default"] = default
        return field

    def _type(self, spec: Mapping[str, Any]) -> Any:
        if "$ref" in spec:
            return self._named(spec["$ref"])
        if "anyOf" in spec:
            branches = [self._type(branch) for branch in spec["anyOf"]]
            nulls = [b for b in branches if b == "null"]
            return nulls + [b for b in branches if b != "null"]
        kind = spec.get("type")
        if kind == "string":
            # enum: a string too (see the module's docstring).
            return dict(_TIMESTAMP) if spec.get("format") == "date-time" else "string"
        if kind in _PRIMITIVES:
            return _PRIMITIVES[kind]
        if kind == "object" and isinstance(spec.get("additionalProperties"), Mapping):
            return {"type": "map", "values": self._type(spec["additionalProperties"])}
        raise ValueError(f"no Avro type for the JSON Schema {json.dumps(spec)}")

    def _named(self, ref: str) -> Any:
        prefix = "#/$defs/"
        if not ref.startswith(prefix) or ref[len(prefix) :] not in self.defs:
            raise ValueError(f"$ref {ref}: only references to the document's $defs are mapped")
        name = ref[len(prefix) :]
        if f"{NAMESPACE}.{name}" in self.defined:
            return f"{NAMESPACE}.{name}"
        return self._record(name, self.defs[name])
