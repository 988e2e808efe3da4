"""Predictions written in a team's format (`RIVERRUN_PREDICTIONS_FORMAT`), and read back.

- json: riverrun's own JSON, the bytes `schemas.encode_prediction` writes (the default).
- json_schema: those bytes in the Confluent wire format, naming the registered JSON Schema
  (`registered_schema`: the committed JSON Schemas of both prediction formats as one
  document).
- avro: the prediction in Avro (schemas/avro/prediction.avsc: a union of the records
  riverrun.Prediction and riverrun.ClassPrediction) in the Confluent wire format.

`schemas.decode_prediction` reads all three, so that what reads the predictions topic
(`riverrun report`, the demo) does not need to know the format it was written in.

>>> from schemas import Prediction, decode_prediction
>>> p = Prediction(event_id="e1", key="k", model="logreg", model_version="logreg@1",
...                model_updates=3, ts=0, prediction=0.25, label=True, learned=True,
...                latency_seconds=1e-4)
>>> framed = PredictionEncoder("avro", schema_id=7).encode(p)
>>> framed[:5], decode_prediction(framed) == p
(b'\\x00\\x00\\x00\\x00\\x07', True)
"""

import json
from collections.abc import Callable
from functools import cache
from io import BytesIO
from typing import Any

import fastavro

from schemas.fast_codec import encode_prediction
from schemas.formats.avro_schema import avro_schema, avro_text
from schemas.formats.wire import SCHEMA_TYPES, OutputFormat, frame
from schemas.json_schema import render
from schemas.prediction import AVRO_RECORDS, AnyPrediction

__all__ = ["PredictionEncoder", "prediction_json_schema", "registered_schema"]


class PredictionEncoder:
    """The bytes of a prediction on the predictions topic, in one format.

    `schema_id`: the id the registry gave `registered_schema(format)` under
    `<predictions_topic>-value`; none for json.
    """

    def __init__(self, format: OutputFormat, schema_id: int | None = None) -> None:
        if format == "json":
            if schema_id is not None:
                raise ValueError("json predictions name no schema: schema_id must be None")
            self._encode: Callable[[AnyPrediction], bytes] = encode_prediction
            return
        if schema_id is None:
            raise ValueError(f"{format} predictions need the id of their registered schema")
        self._header = frame(schema_id, b"")
        if format == "json_schema":
            self._encode = self._json_schema
        elif format == "avro":
            # Per model: the header and its branch's index (a zigzag varint: 0, 2), then
            # the record in that branch's schema. The branch is the model's, never left
            # to fastavro's guess (the first record a dict fits); writing the index here
            # also saves fastavro's resolution of the union (2 µs of 8).
            self._avro_records = {
                model: (self._header + bytes((2 * index,)), schema)
                for index, (model, schema) in enumerate(_avro_records().items())
            }
            self._encode = self._avro
        else:
            raise ValueError(f"no prediction format {format!r}: json, json_schema or avro")

    def encode(self, prediction: AnyPrediction) -> bytes:
        """The value of `prediction`'s message."""
        return self._encode(prediction)

    def _json_schema(self, prediction: AnyPrediction) -> bytes:
        return self._header + encode_prediction(prediction)

    def _avro(self, prediction: AnyPrediction) -> bytes:
        fields = prediction.__dict__  # every field, by name, as the model holds it
        routing = fields["routing"]
        if routing is not None:
            # (name, record): fastavro takes the union's branch of that name, without
            # checking the record against each branch first (5 µs).
            fields = {**fields, "routing": ("riverrun.Routing", routing.__dict__)}
        prefix, schema = self._avro_records[type(prediction)]
        out = BytesIO()
        out.write(prefix)
        fastavro.schemaless_writer(out, schema, fields)
        return out.getvalue()


@cache
def _avro_records() -> dict[type, Any]:
    """Each record of the prediction union, parsed by fastavro, in the union's order: the
    second one names the types the first defines (riverrun.Routing)."""
    named: dict[str, Any] = {}
    union = avro_schema(*AVRO_RECORDS)
    return {
        model: fastavro.parse_schema(record, named_schemas=named)
        for model, record in zip(AVRO_RECORDS, union, strict=True)
    }


def registered_schema(format: OutputFormat) -> tuple[str, str]:
    """(schemaType, schema text) to register under `<predictions_topic>-value` for
    predictions written in `format` (json_schema or avro).

    >>> schema_type, text = registered_schema("avro")
    >>> schema_type, [record["name"] for record in json.loads(text)]
    ('AVRO', ['Prediction', 'ClassPrediction'])
    """
    if format == "avro":
        return SCHEMA_TYPES[format], avro_text(*AVRO_RECORDS)
    if format == "json_schema":
        return SCHEMA_TYPES[format], json.dumps(prediction_json_schema(), indent=2, sort_keys=True)
    raise ValueError(f"{format} predictions are not registered: only json_schema and avro are")


def prediction_json_schema() -> dict[str, Any]:
    """One JSON Schema for both formats of the predictions topic: anyOf the committed
    prediction.v1.json and prediction.v2.json, their $defs moved to the root (where
    their `#/$defs/...` references point once they are nested)."""
    defs: dict[str, Any] = {}
    branches = []
    for model in AVRO_RECORDS:
        branch = json.loads(render(model))
        for name, definition in branch.pop("$defs", {}).items():
            if defs.setdefault(name, definition) != definition:
                raise ValueError(f"$defs/{name} differs between the prediction formats")
        branches.append({key: value for key, value in branch.items() if key != "$schema"})
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$defs": defs,
        "title": "AnyPrediction",
        "description": "A message on the `predictions` topic: a Prediction (schema_version "
        "1: binary and regression models) or a ClassPrediction (schema_version 2: "
        "multiclass models).",
        "anyOf": branches,
    }
