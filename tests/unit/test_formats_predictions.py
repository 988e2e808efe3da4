"""Predictions in a team's format: the Avro schemas derived from the committed JSON
Schemas, the encoder of each output format, and decode_prediction reading all three."""

import json
from datetime import UTC, datetime
from io import BytesIO
from pathlib import Path
from typing import Any, cast

import fastavro
import pytest
from click.testing import CliRunner
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.schema_registry.json_schema import JSONDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext
from jsonschema import Draft202012Validator
from pydantic import ValidationError

from schemas import AnyPrediction, ClassPrediction, Prediction, decode_prediction, encode_prediction
from schemas.control import Routing
from schemas.formats.avro_files import AVRO_FILES, render_all
from schemas.formats.avro_schema import avro_schema
from schemas.formats.predictions import PredictionEncoder, registered_schema
from schemas.formats.wire import HEADER_BYTES, frame
from schemas.json_schema import SCHEMA_FILES
from schemas.prediction import _WIRE_HEADER, avro_prediction_schema
from streams.cli.main import main

AVRO_DIR = Path(__file__).resolve().parents[2] / "schemas" / "avro"
TS = datetime(2026, 3, 1, 12, 30, 5, 123456, tzinfo=UTC)
ROUTING = Routing(role="arm", served=True, arm="ctr@2", probability=0.25, experiment="x1")


def binary(**changes: Any) -> Prediction:
    fields: dict[str, Any] = {
        "event_id": "e1",
        "key": "visitor-7",
        "model": "logreg",
        "model_version": "logreg@3f2a1c9e",
        "model_updates": 41,
        "ts": TS,
        "prediction": 0.731,
        "label": True,
        "learned": True,
        "latency_seconds": 0.000125,
    }
    return Prediction(**(fields | changes))


def multiclass(**changes: Any) -> ClassPrediction:
    fields: dict[str, Any] = {
        "event_id": "e2",
        "key": "visitor-8",
        "model": "forest",
        "model_version": "forest@0a1b",
        "model_updates": 7,
        "ts": TS,
        "prediction": "sky",
        "probabilities": {"sky": 0.75, "path": 0.25},
        "label": "path",
        "learned": True,
        "latency_seconds": 0.002,
    }
    return ClassPrediction(**(fields | changes))


PREDICTIONS: list[AnyPrediction] = [
    binary(),
    binary(label=None, learned=False),
    binary(label=False),
    binary(label=1),
    binary(label=3.5, prediction=-12.25),  # a regressor
    binary(prediction=None, label=None),  # a classifier that knows no class yet
    binary(routing=ROUTING),
    binary(routing=Routing(role="shadow", served=False)),
    multiclass(),
    multiclass(label=None, prediction=None, probabilities={}),
    multiclass(prediction=True, label=False, probabilities={"true": 0.5, "false": 0.5}),
    multiclass(prediction=3, label=2, probabilities={"3": 0.9, "2": 0.1}),
    multiclass(routing=ROUTING),
]


# -- The Avro schemas -----------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(AVRO_FILES))
def test_the_committed_avro_schema_is_the_generated_one(name: str) -> None:
    committed = AVRO_DIR / name
    assert committed.exists(), f"{committed} missing: run `riverrun schemas export`"
    assert committed.read_text() == render_all()[name], (
        f"{committed} is stale: run `riverrun schemas export` and commit the result"
    )
    fastavro.parse_schema(json.loads(committed.read_text()))  # Avro's own checks


@pytest.mark.parametrize(
    "name", ["input_event.v1.json", "prediction.v1.json", "prediction.v2.json"]
)
def test_a_model_and_its_committed_json_schema_give_the_same_avro_schema(name: str) -> None:
    # The source of truth is the committed file; the model gives the same schema.
    committed = json.loads((AVRO_DIR.parent / "json" / name).read_text())
    assert avro_schema(committed) == avro_schema(SCHEMA_FILES[name])


def test_predictions_read_the_wire_formats_header_as_it_is_written() -> None:
    assert _WIRE_HEADER == HEADER_BYTES


def test_predictions_are_a_union_of_two_records_that_share_routing() -> None:
    union = avro_schema(Prediction, ClassPrediction)
    assert isinstance(union, list)
    assert [(r["namespace"], r["name"]) for r in union] == [
        ("riverrun", "Prediction"),
        ("riverrun", "ClassPrediction"),
    ]
    first, second = ({f["name"]: f for f in record["fields"]} for record in union)
    # Routing is defined once, in the first record, and named by the second (Avro refuses
    # a name defined twice).
    assert first["routing"]["type"][0] == "null" and first["routing"]["default"] is None
    routing = first["routing"]["type"][1]
    assert routing["name"] == "Routing"
    assert second["routing"]["type"] == ["null", "riverrun.Routing"]
    role = next(f for f in routing["fields"] if f["name"] == "role")
    assert role["type"] == "string"  # not an enum: a new role does not break readers
    assert "champion" in role["doc"]
    assert first["ts"]["type"] == {"type": "long", "logicalType": "timestamp-micros"}
    assert first["schema_version"] == {"name": "schema_version", "type": "long", "default": 1}
    assert second["schema_version"]["default"] == 2
    # null first, then boolean before long: True is an int in Python, and a writer takes
    # the first branch that fits.
    assert first["label"]["type"] == ["null", "boolean", "long", "double"]
    assert "default" not in first["prediction"]  # required, null allowed
    assert second["prediction"]["type"] == ["null", "boolean", "long", "string"]
    assert second["probabilities"]["type"] == {"type": "map", "values": "double"}
    assert first["latency_seconds"]["doc"].startswith("Time from the worker")


def test_input_events() -> None:
    record = avro_schema(*AVRO_FILES["input_event.avsc"])
    assert isinstance(record, dict) and record["name"] == "InputEvent"
    fields = {f["name"]: f for f in record["fields"]}
    assert fields["features"]["type"] == {
        "type": "map",
        "values": ["boolean", "long", "double", "string"],
    }
    assert fields["label"]["type"] == ["null", "boolean", "long", "double", "string"]
    assert fields["label"]["default"] is None


@pytest.mark.parametrize(
    ("schema", "refused"),
    [
        ({"title": "T", "properties": {"a": {"type": "array"}}}, "no Avro type"),
        ({"properties": {}}, "needs a title"),
        ({"title": "T", "properties": {"a": {"$ref": "other.json#/X"}}}, r"\$ref"),
        (
            {"title": "T", "properties": {"a": {"anyOf": [{"type": "null"}], "default": 3}}},
            "default must be null",
        ),
    ],
)
def test_what_has_no_avro_mapping_is_refused(schema: dict[str, Any], refused: str) -> None:
    with pytest.raises(ValueError, match=refused):
        avro_schema(schema)


def test_the_export_command_writes_the_avro_schemas(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    done = CliRunner().invoke(main, ["schemas", "export"])
    assert done.exit_code == 0, done.output
    for name, text in render_all().items():
        assert (tmp_path / "schemas" / "avro" / name).read_text() == text
    done = CliRunner().invoke(main, ["schemas", "export", "--dir", "out"])
    assert done.exit_code == 0, done.output
    for name, text in render_all().items():
        assert (tmp_path / "out" / name).read_text() == text  # beside the *.json


# -- Encoding and decoding ------------------------------------------------------------


@pytest.mark.parametrize("prediction", PREDICTIONS)
@pytest.mark.parametrize("output", ["json", "json_schema", "avro"])
def test_decode_prediction_reads_what_each_format_writes(
    prediction: AnyPrediction, output: Any
) -> None:
    encoder = PredictionEncoder(output, None if output == "json" else 1234)
    decoded = decode_prediction(encoder.encode(prediction))
    assert type(decoded) is type(prediction)
    assert decoded == prediction
    assert decoded.model_dump_json() == prediction.model_dump_json()  # types too (1 vs 1.0)


@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_json_formats_write_todays_bytes(prediction: AnyPrediction) -> None:
    assert PredictionEncoder("json").encode(prediction) == encode_prediction(prediction)
    framed = PredictionEncoder("json_schema", 9).encode(prediction)
    assert framed == frame(9, encode_prediction(prediction))


@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_avro_bytes_are_those_of_the_union_with_the_models_branch(
    prediction: AnyPrediction,
) -> None:
    # The encoder writes the branch index itself; fastavro, told the branch by name,
    # writes the same bytes.
    out = BytesIO()
    fields = prediction.model_dump()
    name = f"riverrun.{type(prediction).__name__}"
    fastavro.schemaless_writer(out, avro_prediction_schema(), (name, fields))
    assert PredictionEncoder("avro", 3).encode(prediction) == frame(3, out.getvalue())


def test_avro_names_the_record_of_each_prediction() -> None:
    # A team's consumer with the committed .avsc sees which record each one is: the
    # union's branch is chosen by the model, never guessed from the fields.
    schema = fastavro.parse_schema(json.loads((AVRO_DIR / "prediction.avsc").read_text()))
    named: list[tuple[AnyPrediction, str]] = [
        (binary(), "Prediction"),
        (multiclass(), "ClassPrediction"),
    ]
    for prediction, name in named:
        raw = PredictionEncoder("avro", 5).encode(prediction)
        assert raw[:5] == b"\x00\x00\x00\x00\x05"
        decoded = fastavro.schemaless_reader(
            BytesIO(raw[5:]), schema, None, return_record_name=True
        )
        record_name, record = cast(tuple[str, dict[str, Any]], decoded)
        assert record_name == f"riverrun.{name}"
        assert record["ts"] == TS and record["ts"].tzinfo is not None


@pytest.mark.parametrize(
    "ts",
    [
        datetime(1970, 1, 1, tzinfo=UTC),
        datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        TS,
    ],
)
def test_event_times_keep_their_microseconds_in_avro(ts: datetime) -> None:
    decoded = decode_prediction(PredictionEncoder("avro", 1).encode(binary(ts=ts)))
    assert decoded.ts == ts and decoded.ts.utcoffset() == UTC.utcoffset(None)


def test_confluents_deserializers_read_them_with_the_registered_schemas() -> None:
    # As a team's consumers would: the registered schema fetched by the record's id.
    registry = SchemaRegistryClient.new_client({"url": "mock://predictions"})
    context = SerializationContext("predictions", MessageField.VALUE)
    ids = {}
    for output in ("avro", "json_schema"):
        schema_type, text = registered_schema(output)
        schema = Schema(schema_str=text, schema_type=schema_type)
        ids[output] = registry.register_schema(f"{output}-value", schema)
    read_avro = AvroDeserializer(registry)
    read_json = JSONDeserializer(None, schema_registry_client=registry)
    for prediction in PREDICTIONS:
        dumped = prediction.model_dump(mode="json")
        from_json = read_json(
            PredictionEncoder("json_schema", ids["json_schema"]).encode(prediction), context
        )
        assert from_json == dumped
        from_avro = read_avro(PredictionEncoder("avro", ids["avro"]).encode(prediction), context)
        assert type(prediction).model_validate(from_avro) == prediction


def test_the_registered_json_schema_takes_both_formats_and_refuses_others() -> None:
    schema_type, text = registered_schema("json_schema")
    assert schema_type == "JSON"
    document = json.loads(text)
    Draft202012Validator.check_schema(document)
    validator = Draft202012Validator(document)
    for prediction in PREDICTIONS:
        validator.validate(json.loads(encode_prediction(prediction)))
    wrong = json.loads(encode_prediction(multiclass()))
    del wrong["probabilities"]
    assert not validator.is_valid(wrong)
    assert not validator.is_valid(json.loads(encode_prediction(binary())) | {"prediction": "x"})
    with pytest.raises(ValueError, match="not registered"):
        registered_schema("json")


def test_an_encoder_needs_a_schema_id_exactly_when_its_format_is_registered() -> None:
    with pytest.raises(ValueError, match="registered schema"):
        PredictionEncoder("avro")
    with pytest.raises(ValueError, match="no schema"):
        PredictionEncoder("json", 3)
    with pytest.raises(ValueError, match="no prediction format"):
        PredictionEncoder("protobuf", 3)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"not json", "Invalid JSON"),  # as before
        (b"", "Invalid JSON"),
        (b"\x00\x00\x01", "wire format"),  # shorter than the header
        (frame(1, b""), "Avro"),
        (frame(1, b"\x04"), "Avro"),  # a union branch the schema does not have
        (frame(1, b"\x00\x02e"), "Avro"),  # cut short
        (PredictionEncoder("avro", 1).encode(binary()) + b"\x00", "bytes after the record"),
        (frame(1, b'{"schema_version": 3}'), "schema_version"),  # JSON, validated
    ],
)
def test_what_is_no_prediction_is_a_validation_error(raw: bytes, reason: str) -> None:
    # A ValueError, as callers (riverrun report) expect of a message that is not riverrun's.
    with pytest.raises(ValidationError, match=reason):
        decode_prediction(raw)
