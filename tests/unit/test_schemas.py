"""Wire formats: committed JSON Schemas, strict validation, readable rejections."""

import base64
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from pydantic import ValidationError

from online_models import Learner
from online_models.quality.evaluation import EvaluationConfig
from schemas import ClassPrediction, DeadLetter, ErrorType, InputEvent, decode_prediction
from schemas.checkpoint import CheckpointHeader
from schemas.codec import InvalidMessage, decode
from schemas.drift import DriftReport
from schemas.json_schema import SCHEMA_FILES, render_all
from streams.cli.replay import dataset_events
from tests.builtin import MODELS

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas" / "json"
GOOD = {
    "event_id": "e1",
    "ts": "2026-01-01T12:00:00+02:00",
    "model": "logreg",
    "key": "visitor-7",
    "features": {"device": "mobile", "price": 0.25, "position": 3, "returning": True},
    "label": True,
}


def as_bytes(**changes: object) -> bytes:
    return json.dumps({**GOOD, **changes}).encode()


@pytest.mark.parametrize("file_name", sorted(SCHEMA_FILES))
def test_committed_json_schema_is_up_to_date(file_name: str) -> None:
    committed = SCHEMA_DIR / file_name
    assert committed.exists(), f"{committed} missing: run `riverrun schemas export`"
    assert committed.read_text() == render_all()[file_name], (
        f"{committed} is stale: run `riverrun schemas export` and commit the result"
    )


def test_every_schema_has_a_version() -> None:
    for name, model in SCHEMA_FILES.items():
        if model is CheckpointHeader:  # a required field: a reader refuses unknown formats
            assert model.model_fields["format_version"].is_required()
        else:  # what a new message of the model is (metrics reports: v2 for multiclass)
            default = 2 if model in (ClassPrediction, DriftReport) else 1
            assert model.model_fields["schema_version"].default == default, name


def validator(file_name: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(json.loads((SCHEMA_DIR / file_name).read_text()))


def test_old_consumers_are_not_broken_silently() -> None:
    """Binary and regression outputs still match the version 1 schemas published before
    multiclass models existed (prediction.v1.json is unchanged but for a null `prediction`
    while a classifier knows no class yet, metrics_report.v1.json is kept as it was); multiclass outputs match version 2 and fail version 1 loudly."""
    phishing = list(dataset_events("phishing", limit=300, model=None, seed=42))
    segments = list(dataset_events("segments", limit=1000, model=None, seed=42))
    learner = Learner(
        ["logreg", "softmax"], evaluation=EvaluationConfig(every_events=100), registry=MODELS
    )
    binary, multiclass = learner.process(phishing), learner.process(segments)
    reports = learner.drain_reports()
    old_prediction, old_report = (
        validator("prediction.v1.json"),
        validator("metrics_report.v1.json"),
    )
    new_prediction, new_report = (
        validator("prediction.v2.json"),
        validator("metrics_report.v2.json"),
    )
    for output in binary:
        old_prediction.validate(json.loads(output.model_dump_json()))  # type: ignore[union-attr]
    for report in reports:
        message = json.loads(report.model_dump_json())
        if report.model == "logreg":
            old_report.validate(message)
        else:
            new_report.validate(message)
            assert not old_report.is_valid(message)
    for output in multiclass:
        message = json.loads(output.model_dump_json())  # type: ignore[union-attr]
        new_prediction.validate(message)
        assert not old_prediction.is_valid(message)
        assert decode_prediction(output.model_dump_json()) == output  # type: ignore[union-attr]
    assert {r.model for r in reports} == {"logreg", "softmax"}


def test_string_labels_are_classes() -> None:
    event = decode(InputEvent, as_bytes(label="sky"), max_bytes=10_000)
    assert event.label == "sky"
    too_long = as_bytes(label="x" * 257)
    with pytest.raises(InvalidMessage, match=r"label: expected true/false, a finite number or a"):
        decode(InputEvent, too_long, max_bytes=10_000)


def test_valid_event_keeps_types_and_normalises_time_to_utc() -> None:
    event = decode(InputEvent, as_bytes(), max_bytes=10_000)
    assert event.features == GOOD["features"]
    assert event.ts.isoformat() == "2026-01-01T10:00:00+00:00"  # 12:00 at +02:00
    assert event.label is True


def test_epoch_seconds_are_event_times() -> None:
    event = decode(InputEvent, as_bytes(ts=86_400), max_bytes=10_000)
    assert event.ts.isoformat() == "1970-01-02T00:00:00+00:00"


@pytest.mark.parametrize(
    ("raw", "error_type", "mentions"),
    [
        (b"not json", ErrorType.INVALID_JSON, "not valid JSON"),
        (b"", ErrorType.INVALID_JSON, "not valid JSON"),
        (as_bytes(features={"x": float("nan")}), ErrorType.INVALID_EVENT, "features.x"),
        (as_bytes(features={"x": float("inf")}), ErrorType.INVALID_EVENT, "features.x"),
        (
            b'{"event_id": "e", "ts": 0, "model": "m", "key": "k", "features": {"x": 1e999}}',
            ErrorType.INVALID_EVENT,
            "features.x",
        ),
        (as_bytes(features={"x": [1, 2]}), ErrorType.INVALID_EVENT, "features.x"),
        (as_bytes(features={"x": "1" * 2000}), ErrorType.INVALID_EVENT, "features.x"),
        (as_bytes(label=["yes"]), ErrorType.INVALID_EVENT, "label"),
        (as_bytes(label=""), ErrorType.INVALID_EVENT, "label"),
        (as_bytes(ts="yesterday"), ErrorType.INVALID_EVENT, "ts"),
        (as_bytes(event_id=""), ErrorType.INVALID_EVENT, "event_id"),
        (as_bytes(lable=True), ErrorType.INVALID_EVENT, "lable"),
        (
            json.dumps({k: v for k, v in GOOD.items() if k != "key"}).encode(),
            ErrorType.INVALID_EVENT,
            "key: Field required",
        ),
        (as_bytes(features={"pad": "x" * 20_000}), ErrorType.OVERSIZED, "RIVERRUN_MAX_EVENT_BYTES"),
        (b"[1, 2]", ErrorType.INVALID_EVENT, "InputEvent"),
    ],
)
def test_invalid_messages_are_rejected_with_an_actionable_reason(
    raw: bytes, error_type: ErrorType, mentions: str
) -> None:
    with pytest.raises(InvalidMessage) as caught:
        decode(InputEvent, raw, max_bytes=10_000)
    assert caught.value.error_type is error_type
    assert mentions in caught.value.reason
    # Every reason tells the producer what to do, not only what went wrong.
    assert any(word in caught.value.reason for word in ("Fix", "send", "raise")), (
        caught.value.reason
    )


def test_strict_types_refuse_coercion() -> None:
    # "0.5" as a string stays a (categorical) string feature, never a number.
    event = decode(InputEvent, as_bytes(features={"price": "0.5"}), max_bytes=10_000)
    assert event.features["price"] == "0.5"


def test_missing_value_is_invalid_json() -> None:
    with pytest.raises(InvalidMessage) as caught:
        decode(InputEvent, None, max_bytes=1000)
    assert caught.value.error_type is ErrorType.INVALID_JSON


@pytest.mark.parametrize(
    ("raw", "encoding"), [("héllo".encode(), "utf-8"), (b"\xff\xfe\x00bin", "base64")]
)
def test_dead_letter_keeps_the_exact_payload(raw: bytes, encoding: str) -> None:
    letter = dead_letter(raw, max_payload_bytes=1000)
    assert letter.payload_encoding == encoding
    again = DeadLetter.model_validate_json(letter.model_dump_json())
    assert again.original_payload() == raw
    assert (again.payload_bytes, again.payload_truncated) == (len(raw), False)
    if encoding == "base64":
        assert base64.b64decode(again.payload) == raw


def test_dead_letter_of_a_huge_message_keeps_its_start() -> None:
    raw = b'{"pad": "' + b"x" * 5_000_000 + b'"}'
    letter = dead_letter(raw, max_payload_bytes=100)
    assert letter.original_payload() == raw[:100]
    assert (letter.payload_bytes, letter.payload_truncated) == (len(raw), True)
    assert len(letter.model_dump_json()) < 2000  # fits in any Kafka message


def dead_letter(raw: bytes, max_payload_bytes: int) -> DeadLetter:
    return DeadLetter.for_message(
        value=raw,
        topic="events",
        partition=0,
        offset=7,
        error_type=ErrorType.INVALID_JSON,
        reason="r",
        ts=datetime(2026, 1, 1, tzinfo=UTC),
        max_payload_bytes=max_payload_bytes,
    )


# One valid message of every topic model, with every optional numeric field present, so
# that every integer, number and boolean field of every schema can be spoilt below.
T = "2026-01-01T00:00:00Z"
VALID: dict[str, dict[str, object]] = {
    "input_event.v1.json": {**GOOD, "schema_version": 1},
    "prediction.v1.json": {
        "schema_version": 1,
        "event_id": "e",
        "key": "k",
        "model": "m",
        "model_version": "m@1",
        "model_updates": 3,
        "ts": T,
        "prediction": 0.5,
        "label": 1,
        "learned": True,
        "latency_seconds": 0.01,
    },
    "prediction.v2.json": {
        "schema_version": 2,
        "event_id": "e",
        "key": "k",
        "model": "m",
        "model_version": "m@1",
        "model_updates": 3,
        "ts": T,
        "prediction": "sky",
        "probabilities": {"sky": 0.9, "path": 0.1},
        "label": "sky",
        "learned": True,
        "latency_seconds": 0.01,
    },
    "dead_letter.v1.json": {
        "schema_version": 1,
        "payload": "x",
        "payload_encoding": "utf-8",
        "payload_bytes": 1,
        "payload_truncated": False,
        "source_topic": "events",
        "source_partition": 0,
        "source_offset": 7,
        "error_type": "invalid_json",
        "reason": "r",
        "ts": T,
    },
    "activity.v1.json": {
        "schema_version": 1,
        "visitor": "v",
        "ts": T,
        "type": "purchase",
        "item": "i",
        "category": "c",
        "value": 9.5,
    },
    "metrics_report.v2.json": {
        "schema_version": 2,
        "model": "m",
        "model_version": "m@1",
        "partition": 0,
        "segment": "all",
        "trigger": "events",
        "ts": T,
        "period_start": T,
        "period_end": T,
        "metrics": {"accuracy": 0.5, "auc": None},
        "confusion": {"sky": {"sky": 3, "path": 1}},
    },
    "checkpoint_header.v1.json": {
        "format_version": 2,
        "checkpoint_id": "c",
        "sequence": 0,
        "group_id": "g",
        "topic": "events",
        "partition": 0,
        "model": "m",
        "model_version": "m@1",
        "factory": "f",
        "params": {"lr": 0.1},
        "river_version": "0.26",
        "python_version": "3.11",
        "next_offset": 10,
        "offsets": {"events": 10},
        "updates": 9,
        "created_at": T,
        "compression": "zlib",
        "state_bytes": 100,
        "payload_bytes": 50,
        "chunks": 1,
        "chunk": 0,
        "hmac": "ab",
    },
    "impression.v1.json": {
        "schema_version": 1,
        "impression_id": "i",
        "ts": T,
        "visitor": "v",
        "item": "x",
        "features": {"position": 2, "mobile": True},
    },
    "click.v1.json": {"schema_version": 1, "click_id": "c", "impression_id": "i", "ts": T},
    "conversion.v1.json": {
        "schema_version": 1,
        "visitor": "v",
        "product": "p",
        "ts": T,
        "value": 19.9,
    },
    "outcome.v1.json": {
        "schema_version": 1,
        "impression_id": "i",
        "visitor": "v",
        "model": "ctr",
        "model_version": "ctr@1",
        "label_type": "click",
        "label": True,
        "prediction": 0.1,
        "ts": T,
        "resolved_ts": T,
        "delay_seconds": 4.5,
        "learned": True,
    },
    "drift_report.v2.json": {
        "schema_version": 2,
        "model": "m",
        "model_version": "m@1",
        "partition": 0,
        "detector": "page_hinkley",
        "signal": "loss",
        "trigger": "alarm",
        "statistic": 50.4,
        "threshold": 50.0,
        "mean": 0.46,
        "drift": True,
        "window_start": T,
        "window_end": T,
        "window_start_offset": 0,
        "window_end_offset": 99,
    },
    "model_plan.v1.json": {
        "schema_version": 1,
        "kind": "plan",
        "model": "m",
        "revision": 2,
        "versions": [
            {
                "version": "m@1",
                "params": {"lr": 0.1},
                "role": "champion",
                "share": 0.0,
                "learning": True,
                "joined_revision": 1,
            }
        ],
        "previous_champions": [],
        "change": "c",
        "changed_by": "cli",
        "changed_at": T,
        "signature": "s",
        "gate": {"min_labelled": 10, "delta": 0.0, "auto_promote": False, "canary_share": 0.1},
        "breaker": {"enabled": True, "window": 5, "reference": 10, "factor": 5.0},
    },
    "model_status.v1.json": {
        "schema_version": 1,
        "kind": "status",
        "model": "m",
        "partition": 0,
        "revision": 2,
        "offset": 9,
        "versions": [
            {
                "version": "m@1",
                "role": "champion",
                "learning": True,
                "updates": 3,
                "labelled": 3,
                "loss": 0.5,
                "champion_loss": 0.5,
                "served": 3,
            }
        ],
        "arms": {"m@1": {"n": 2, "mean": 0.5, "m2": 0.5}},
        "bandit_decisions": 0,
        "breaker_trips": 0,
        "rollbacks": 0,
        "at": T,
        "signature": "s",
    },
    "experiment_result.v1.json": {
        "schema_version": 1,
        "experiment_id": "x",
        "model": "m",
        "metric": "ctr",
        "sequential": False,
        "alpha": 0.05,
        "power": 0.8,
        "mde": 0.01,
        "sample_size": 10,
        "counts": {"a": 10},
        "means": {"a": 0.5},
        "comparisons": [
            {
                "arm": "b",
                "control": "a",
                "effect": 0.1,
                "ci_low": 0.0,
                "ci_high": 0.2,
                "p_value": 0.04,
                "decision": "better",
            }
        ],
        "decision": "b",
        "at": T,
    },
    "partition_owner.v1.json": {
        "schema_version": 1,
        "kind": "owner",
        "topic": "events",
        "partition": 0,
        "url": "http://w1:9465",
        "generation": 3,
        "worker": "w1",
        "at": T,
        "signature": "ab",
    },
    "predict_request.v1.json": {
        "schema_version": 1,
        "key": "visitor-7",
        "features": {"price": 0.2, "device": "mobile"},
    },
    "request_prediction.v1.json": {
        "schema_version": 1,
        "model": "segment",
        "key": "k",
        "prediction": "sky",
        "probabilities": {"sky": 0.7},
        "model_version": "segment@1",
        "role": "arm",
        "arm": "b",
        "experiment": "x",
        "model_updates": 4,
        "partition": 1,
        "next_offset": 9,
    },
}


def typed_fields(file_name: str, wanted: str) -> list[tuple[tuple[str, ...], str]]:
    """(path, JSON type) of every field of the committed schema whose value is `wanted`
    ("numeric": an integer or a number; "boolean": a boolean only), values of objects
    included (a path element "k" stands for any key). Fields that take booleans among
    other types (features, labels) are left out: they take booleans on purpose."""
    found: list[tuple[tuple[str, ...], str]] = []

    def walk(node: dict[str, Any], path: tuple[str, ...]) -> None:
        members = node.get("anyOf", [node])
        types = {member.get("type") for member in members}
        if wanted == "boolean" and types <= {"boolean", "null"} and "boolean" in types:
            found.append((path, "boolean"))
        if "boolean" in types:
            return
        for member in members:
            if wanted == "numeric" and member.get("type") in ("integer", "number"):
                found.append((path, member["type"]))
            if member.get("type") == "object" and isinstance(
                member.get("additionalProperties"), dict
            ):
                walk(member["additionalProperties"], (*path, "k"))

    schema = json.loads((SCHEMA_DIR / file_name).read_text())
    for name, node in schema["properties"].items():
        walk(node, (name,))
    return found


def spoilt(file_name: str, path: tuple[str, ...], value: object) -> bytes:
    """The valid message of `file_name` with the field at `path` set to `value`."""
    message = dict(VALID[file_name])
    nested: object = value
    for key in reversed(path[1:]):
        nested = {key: nested}
    message[path[0]] = nested
    return json.dumps(message).encode()


def every_field(wanted: str) -> Any:
    """Parameters (file name, path, JSON type) of every `wanted` field of every schema."""
    return [
        pytest.param(f, path, kind, id=f"{f.removesuffix('.json')}:{'.'.join(path)}")
        for f in sorted(SCHEMA_FILES)
        for path, kind in typed_fields(f, wanted)
    ]


def test_every_schema_has_a_valid_example_here() -> None:
    assert set(VALID) == set(SCHEMA_FILES)
    for file_name, message in VALID.items():
        decode(SCHEMA_FILES[file_name], json.dumps(message).encode(), max_bytes=10_000)
        validator(file_name).validate(message)
    # The walk finds what it should: these fields must be among those spoilt below.
    numeric = {(f, ".".join(p)) for f in SCHEMA_FILES for p, _ in typed_fields(f, "numeric")}
    assert {
        ("input_event.v1.json", "schema_version"),
        ("metrics_report.v2.json", "confusion.k.k"),
        ("checkpoint_header.v1.json", "offsets.k"),
        ("prediction.v2.json", "probabilities.k"),
        ("outcome.v1.json", "delay_seconds"),
        ("dead_letter.v1.json", "source_offset"),
    } <= numeric
    assert ("input_event.v1.json", "features.k") not in numeric  # booleans are features
    assert ("prediction.v1.json", "label") not in numeric  # and labels


def rejection(file_name: str, raw: bytes) -> str:
    with pytest.raises(InvalidMessage) as caught:
        decode(SCHEMA_FILES[file_name], raw, max_bytes=10_000)
    assert caught.value.error_type is ErrorType.INVALID_EVENT
    assert "Fix the producer" in caught.value.reason
    return caught.value.reason


@pytest.mark.parametrize(("file_name", "path", "kind"), every_field("numeric"))
def test_a_boolean_is_not_a_number(file_name: str, path: tuple[str, ...], kind: str) -> None:
    """`true` used to be taken as 1 (`"schema_version": true` as version 1): every integer
    and number field of every schema refuses it, as its JSON Schema does, and the reason
    names the field."""
    where = ".".join(path)
    for value in (True, False):
        reason = rejection(file_name, spoilt(file_name, path, value))
        assert f"{where}: Input should be a valid " in reason, reason
        assert not validator(file_name).is_valid(json.loads(spoilt(file_name, path, value)))


@pytest.mark.parametrize(("file_name", "path", "kind"), every_field("numeric"))
def test_strings_and_fractions_are_not_integers(
    file_name: str, path: tuple[str, ...], kind: str
) -> None:
    """A string of digits is refused wherever a number is required, as JSON Schema does.
    An integer field also refuses 1.0, which JSON Schema's "integer" would accept: integers
    are written without a fraction (or an exponent, 1e0) everywhere in riverrun."""
    where = ".".join(path)
    good = 2 if path == ("schema_version",) and "v2" in file_name else 1
    assert f"{where}: " in rejection(file_name, spoilt(file_name, path, str(good)))
    assert not validator(file_name).is_valid(json.loads(spoilt(file_name, path, str(good))))
    if kind == "integer":
        assert f"{where}: " in rejection(file_name, spoilt(file_name, path, float(good)))
        assert validator(file_name).is_valid(json.loads(spoilt(file_name, path, float(good))))
    else:  # a JSON integer is a number: read as a float
        model = SCHEMA_FILES[file_name]
        decoded = decode(model, spoilt(file_name, path, good), max_bytes=10_000)
        value: object = getattr(decoded, path[0])
        for key in path[1:]:
            value = value[key]  # type: ignore[index]
        assert type(value) is float and value == good


@pytest.mark.parametrize(("file_name", "path", "kind"), every_field("boolean"))
def test_a_number_is_not_a_boolean(file_name: str, path: tuple[str, ...], kind: str) -> None:
    """`1`, `0` and `"true"` used to be taken as booleans: refused, as JSON Schema does."""
    for value in (1, 0, "true", "yes"):
        assert f"{'.'.join(path)}: Input should be a valid boolean" in rejection(
            file_name, spoilt(file_name, path, value)
        )


def test_a_boolean_version_is_not_a_prediction_version() -> None:
    for version in (True, 1.0, "1"):
        message = {**VALID["prediction.v1.json"], "schema_version": version}
        with pytest.raises(ValidationError, match="schema_version"):
            decode_prediction(json.dumps(message))
    assert decode_prediction(json.dumps(VALID["prediction.v1.json"])).schema_version == 1


def test_a_time_out_of_range_in_utc_is_a_dead_letter_not_a_crash() -> None:
    # 00:00 on 1 January of the year 1 at +01:00 is in the year 0 in UTC: the conversion
    # raised OverflowError, which no consumer catches.
    for ts in ("0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"):
        reason = rejection("input_event.v1.json", as_bytes(ts=ts))
        assert "ts: Input should be a time in the years 1 to 9999 once in UTC" in reason
