"""Wire formats: committed JSON Schemas, strict validation, readable rejections."""

import base64
import json
from datetime import UTC, datetime
from pathlib import Path

import jsonschema
import pytest

from online_models import Learner
from online_models.evaluation import EvaluationConfig
from schemas import ClassPrediction, DeadLetter, ErrorType, InputEvent, decode_prediction
from schemas.checkpoint import CheckpointHeader
from schemas.codec import InvalidMessage, decode
from schemas.json_schema import SCHEMA_FILES, render_all
from streams.replay import dataset_events

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
            default = 2 if model is ClassPrediction else 1
            assert model.model_fields["schema_version"].default == default, name


def validator(file_name: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(json.loads((SCHEMA_DIR / file_name).read_text()))


def test_old_consumers_are_not_broken_silently() -> None:
    """Binary and regression outputs still match the version 1 schemas published before
    multiclass models existed (prediction.v1.json is unchanged, metrics_report.v1.json is
    kept as it was); multiclass outputs match version 2 and fail version 1 loudly."""
    phishing = list(dataset_events("phishing", limit=300, model=None, seed=42))
    segments = list(dataset_events("segments", limit=1000, model=None, seed=42))
    learner = Learner(["logreg", "softmax"], evaluation=EvaluationConfig(every_events=100))
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
        (b'{"event_id": "e", "ts": 0, "model": "m", "key": "k", "features": {"x": 1e999}}',
         ErrorType.INVALID_EVENT, "features.x"),
        (as_bytes(features={"x": [1, 2]}), ErrorType.INVALID_EVENT, "features.x"),
        (as_bytes(features={"x": "1" * 2000}), ErrorType.INVALID_EVENT, "features.x"),
        (as_bytes(label=["yes"]), ErrorType.INVALID_EVENT, "label"),
        (as_bytes(label=""), ErrorType.INVALID_EVENT, "label"),
        (as_bytes(ts="yesterday"), ErrorType.INVALID_EVENT, "ts"),
        (as_bytes(event_id=""), ErrorType.INVALID_EVENT, "event_id"),
        (as_bytes(lable=True), ErrorType.INVALID_EVENT, "lable"),
        (json.dumps({k: v for k, v in GOOD.items() if k != "key"}).encode(),
         ErrorType.INVALID_EVENT, "key: Field required"),
        (as_bytes(features={"pad": "x" * 20_000}), ErrorType.OVERSIZED, "RIVERRUN_MAX_EVENT_BYTES"),
        (b"[1, 2]", ErrorType.INVALID_EVENT, "InputEvent"),
    ],
)  # fmt: skip
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
