"""schemas.fast_codec: msgspec's paths give exactly what the pydantic models give.

Every message is decoded twice, by `schemas.codec.decode` as the worker calls it (msgspec
first) and with the fast path switched off (pydantic alone): the verdicts must be the
same, and so must the events, field by field and type by type.
"""

import json
import math
import random
import string
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from unittest import mock

import jsonschema
import msgspec
import pytest

from online_models import Learner
from schemas import ClassPrediction, ErrorType, InputEvent, Prediction, codec
from schemas.codec import InvalidMessage, decode
from schemas.fast_codec import _DECODER, _WireEvent, decode_input_event, encode_prediction
from schemas.input_event import MAX_FEATURES
from streams.cli.replay import dataset_events, encode
from tests.builtin import MODELS

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas" / "json"
MAX_BYTES = 100_000
T = "2026-01-01T12:00:00Z"


def event(**changes: Any) -> dict[str, Any]:
    """A valid event, as a producer writes it, with `changes` (None: remove the field)."""
    base = {
        "event_id": "e1",
        "ts": T,
        "model": "logreg",
        "key": "visitor-7",
        "features": {"device": "mobile", "price": 0.25, "position": 3, "returning": True},
        "label": True,
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None or (k == "label" and "label" in changes)}


def raw(**changes: Any) -> bytes:
    return json.dumps(event(**changes)).encode()


def without(field: str) -> bytes:
    return json.dumps({k: v for k, v in event().items() if k != field}).encode()


Verdict = tuple[str, Any, Any, Any]


def verdict(value: bytes | None, *, fast: bool) -> Verdict:
    """What `decode` makes of `value`: an event in full (repr shows types: 1 vs 1.0 vs
    True, -0.0, tzinfo, key order), or the dead letter's error type and reason."""
    try:
        if fast:
            decoded = decode(InputEvent, value, max_bytes=MAX_BYTES)
        else:
            with mock.patch.object(codec, "decode_input_event", lambda raw: None):
                decoded = decode(InputEvent, value, max_bytes=MAX_BYTES)
    except InvalidMessage as err:
        return ("refused", err.error_type, err.reason, None)
    assert decoded.ts.tzinfo is UTC
    extra = (decoded.__pydantic_extra__, decoded.__pydantic_private__)
    return ("accepted", repr(vars(decoded)), sorted(decoded.model_fields_set), extra)


def assert_same(value: bytes | None) -> Verdict:
    fast, slow = verdict(value, fast=True), verdict(value, fast=False)
    assert fast == slow, value
    return fast


# Every kind of event the topics reference (docs/reference/topics.md) documents.
GOOD = {
    "binary label true": raw(label=True),
    "binary label false": raw(label=False),
    "binary label 0/1": raw(label=0),
    "regression label": raw(label=-12.75),
    "regression label integer": raw(label=42),
    "multiclass label": raw(label="sky"),
    "multiclass label 256 chars": raw(label="é" * 256),
    "multiclass integer class": raw(label=7),
    "no label": without("label"),
    "label null": raw(label=None),
    "schema_version 1": raw(schema_version=1),
    "feature types": raw(
        features={
            "b": False,
            "i": -3,
            "f": 1e-7,
            "s": "mobile",
            "z": -0.0,
            "e": 1.5e300,
            "big": 10**30,
            "ints as floats": 2.0,
        }
    ),
    "string that looks like a number": raw(features={"price": "0.5"}),
    "no features": raw(features={}),
    "1000 features": raw(features={f"f{i}": i for i in range(MAX_FEATURES)}),
    "longest strings": raw(
        event_id="i" * 256,
        key="😀" * 256,
        model="m" * 256,
        features={"n" * 128: "v" * 1024, "😀" * 128: "😀" * 1024},
    ),
    "unicode and escapes": b'{"event_id": "\\u00e9\\ud83d\\ude00\\n\\"", "ts": 0, "model": "m",'
    b' "key": "\xc3\xa9", "features": {"\\t": "\\\\"}}',
    "ts with Z": raw(ts="2026-01-01T12:00:00Z"),
    "ts with offset": raw(ts="2026-01-01T12:00:00+02:00"),
    "ts with negative offset and microseconds": raw(ts="2026-01-01T12:00:00.123456-05:30"),
    "ts with milliseconds": raw(ts="2026-01-01T12:00:00.5Z"),
    "ts without zone": raw(ts="2026-01-01T12:00:00"),
    "ts lower case": raw(ts="2026-01-01t12:00:00z"),
    "ts with a space": raw(ts="2026-01-01 12:00:00"),
    "ts date only": raw(ts="2026-01-01"),
    "ts with 7 decimals": raw(ts="2026-01-01T12:00:00.1234567Z"),
    "ts offset without colon": raw(ts="2026-01-01T12:00:00+0200"),
    "ts epoch seconds": raw(ts=1_767_225_600),
    "ts epoch 0": raw(ts=0),
    "ts epoch negative": raw(ts=-86_400),
    "ts epoch fraction": raw(ts=1_767_225_600.25),
    "ts epoch milliseconds (pydantic's reading of numbers above 2e10)": raw(ts=1_767_225_600_000),
    "ts epoch as a string": raw(ts="86400"),
    "ts leap day": raw(ts="2024-02-29T00:00:00Z"),
    "ts first and last instants": raw(ts="0001-01-01T00:00:00Z"),
    "ts last instant": raw(ts="9999-12-31T23:59:59.999999Z"),
    "compact, as riverrun writes it": InputEvent(**event()).model_dump_json().encode(),
    "whitespace around": b"  \n" + raw() + b"\n",
    "fields in another order": json.dumps(dict(reversed(event().items()))).encode(),
    "duplicate feature": b'{"event_id": "e", "ts": 0, "model": "m", "key": "k",'
    b' "features": {"x": 1, "y": 2, "x": "last wins"}}',
}

# Every kind of dead letter of the topics reference's table that decoding gives.
BAD = {
    "not JSON": (b"not json", ErrorType.INVALID_JSON),
    "empty value": (b"", ErrorType.INVALID_JSON),
    "no value": (None, ErrorType.INVALID_JSON),
    "truncated": (raw()[:-3], ErrorType.INVALID_JSON),
    "trailing garbage": (raw() + b" x", ErrorType.INVALID_JSON),
    "not UTF-8": (raw(key="\udcff").replace(b'"\\udcff"', b'"\xff"'), ErrorType.INVALID_JSON),
    "lone surrogate": (raw().replace(b'"visitor-7"', b'"\\ud800"'), ErrorType.INVALID_JSON),
    "byte order mark": (b"\xef\xbb\xbf" + raw(), ErrorType.INVALID_JSON),
    "NaN literal": (raw(features={"x": math.nan}), ErrorType.INVALID_EVENT),
    "Infinity literal": (raw(label=math.inf), ErrorType.INVALID_EVENT),
    "number beyond float range": (raw().replace(b"0.25", b"1e999"), ErrorType.INVALID_EVENT),
    "label beyond float range": (raw().replace(b"true}", b"-1e400}"), ErrorType.INVALID_EVENT),
    "long number beyond float range": (
        raw().replace(b"0.25", b"9" * 400 + b".0"),
        ErrorType.INVALID_EVENT,
    ),
    "oversized": (raw(features={"pad": "x" * MAX_BYTES}), ErrorType.OVERSIZED),
    "an array": (b"[1, 2]", ErrorType.INVALID_EVENT),
    "a string": (b'"event"', ErrorType.INVALID_EVENT),
    "null": (b"null", ErrorType.INVALID_EVENT),
    "missing ts": (without("ts"), ErrorType.INVALID_EVENT),
    "missing event_id": (without("event_id"), ErrorType.INVALID_EVENT),
    "missing model": (without("model"), ErrorType.INVALID_EVENT),
    "missing key": (without("key"), ErrorType.INVALID_EVENT),
    "missing features": (without("features"), ErrorType.INVALID_EVENT),
    "extra field": (raw(lable=True), ErrorType.INVALID_EVENT),
    "many errors": (b'{"a": 1, "b": 2, "c": 3, "d": 4, "e": 5, "f": 6}', ErrorType.INVALID_EVENT),
    "event_id a number": (raw(event_id=1), ErrorType.INVALID_EVENT),
    "key null": (raw(key=None).replace(b"}", b', "key": null}', 1), ErrorType.INVALID_EVENT),
    "features a list": (raw(features=[1, 2]), ErrorType.INVALID_EVENT),
    "features a string": (raw(features="x=1"), ErrorType.INVALID_EVENT),
    "nested object feature": (raw(features={"x": {"y": 1}}), ErrorType.INVALID_EVENT),
    "list feature": (raw(features={"x": [1]}), ErrorType.INVALID_EVENT),
    "null feature": (raw(features={"x": None}), ErrorType.INVALID_EVENT),
    "1001 features": (
        raw(features={f"f{i}": i for i in range(MAX_FEATURES + 1)}),
        ErrorType.INVALID_EVENT,
    ),
    "empty feature name": (raw(features={"": 1}), ErrorType.INVALID_EVENT),
    "feature name of 129": (raw(features={"n" * 129: 1}), ErrorType.INVALID_EVENT),
    "string feature of 1025": (raw(features={"x": "😀" * 1025}), ErrorType.INVALID_EVENT),
    "event_id of 257": (raw(event_id="😀" * 257), ErrorType.INVALID_EVENT),
    "empty model": (raw(model=""), ErrorType.INVALID_EVENT),
    "empty label": (raw(label=""), ErrorType.INVALID_EVENT),
    "label of 257": (raw(label="x" * 257), ErrorType.INVALID_EVENT),
    "label a list": (raw(label=["yes"]), ErrorType.INVALID_EVENT),
    "label an object": (raw(label={"y": 1}), ErrorType.INVALID_EVENT),
    "schema_version true": (raw(schema_version=True), ErrorType.INVALID_EVENT),
    "schema_version false": (raw(schema_version=False), ErrorType.INVALID_EVENT),
    "schema_version 1.0": (raw(schema_version=1.0), ErrorType.INVALID_EVENT),
    "schema_version 1e0": (
        raw(schema_version=1).replace(b'"schema_version": 1', b'"schema_version": 1e0'),
        ErrorType.INVALID_EVENT,
    ),
    "schema_version string": (raw(schema_version="1"), ErrorType.INVALID_EVENT),
    "schema_version 2": (raw(schema_version=2), ErrorType.INVALID_EVENT),
    "schema_version null": (
        raw().replace(b"{", b'{"schema_version": null, ', 1),
        ErrorType.INVALID_EVENT,
    ),
    "ts not a time": (raw(ts="yesterday"), ErrorType.INVALID_EVENT),
    "ts a boolean": (raw(ts=True), ErrorType.INVALID_EVENT),
    "ts null": (raw().replace(b'"2026-01-01T12:00:00Z"', b"null"), ErrorType.INVALID_EVENT),
    "ts an object": (raw(ts={"s": 0}), ErrorType.INVALID_EVENT),
    "ts 30 February": (raw(ts="2026-02-30T00:00:00Z"), ErrorType.INVALID_EVENT),
    "ts 24:00": (raw(ts="2026-01-01T24:00:00Z"), ErrorType.INVALID_EVENT),
    "ts leap second": (raw(ts="2026-12-31T23:59:60Z"), ErrorType.INVALID_EVENT),
    "ts offset of 24 hours": (raw(ts="2026-01-01T00:00:00+24:00"), ErrorType.INVALID_EVENT),
    "ts offset of 60 minutes": (raw(ts="2026-01-01T00:00:00+05:60"), ErrorType.INVALID_EVENT),
    "ts year 0": (raw(ts="0000-01-01T00:00:00Z"), ErrorType.INVALID_EVENT),
    "ts before the year 1 in UTC": (raw(ts="0001-01-01T00:00:00+01:00"), ErrorType.INVALID_EVENT),
    "ts after 9999 in UTC": (raw(ts="9999-12-31T23:30:00-01:00"), ErrorType.INVALID_EVENT),
    "ts ISO week date": (raw(ts="2026-W01-1T00:00:00Z"), ErrorType.INVALID_EVENT),
    "ts non-ASCII digits": (raw(ts="\uff12026-01-01T00:00:00Z"), ErrorType.INVALID_EVENT),
    "ts epoch beyond 9999": (raw(ts=10**20), ErrorType.INVALID_EVENT),
    "ts epoch huge integer": (raw(ts=10**30), ErrorType.INVALID_EVENT),
    "deeply nested": (
        raw(features={"x": 0}).replace(b"0}", b"[" * 5000 + b"]" * 5000 + b"}"),
        ErrorType.INVALID_JSON,
    ),  # pydantic's recursion limit
    "duplicate field, last one wrong": (raw()[:-1] + b', "key": 1}', ErrorType.INVALID_EVENT),
}


@pytest.mark.parametrize("value", GOOD.values(), ids=GOOD.keys())
def test_good_events_are_the_same_by_both_paths(value: bytes) -> None:
    assert assert_same(value)[0] == "accepted"
    # ... and msgspec's path decided: it is not only falling back to pydantic.
    assert decode_input_event(value) is not None


# Accepted, but left to pydantic: msgspec refuses a first value of a field given twice.
LEFT_TO_PYDANTIC = {
    "duplicate field, last one right": raw().replace(b"{", b'{"key": 1, ', 1),
}


@pytest.mark.parametrize("value", LEFT_TO_PYDANTIC.values(), ids=LEFT_TO_PYDANTIC.keys())
def test_what_msgspec_refuses_and_pydantic_accepts_is_left_to_pydantic(value: bytes) -> None:
    assert decode_input_event(value) is None
    assert assert_same(value)[0] == "accepted"


@pytest.mark.parametrize(("value", "error_type"), BAD.values(), ids=BAD.keys())
def test_bad_messages_are_refused_alike_with_the_same_reason(
    value: bytes | None, error_type: ErrorType
) -> None:
    outcome, got_type, reason, _ = assert_same(value)
    assert (outcome, got_type) == ("refused", error_type), reason


def test_the_fast_path_builds_what_model_construct_builds() -> None:
    """decode_input_event fills a model's slots itself (model_construct costs ~2 µs): the
    result must equal model_construct's and model_validate_json's in every attribute. It
    relies on InputEvent having no aliases, private attributes or post-init hook."""
    assert not InputEvent.__private_attributes__
    assert InputEvent.__pydantic_post_init__ is None
    assert all(
        f.alias is None and f.validation_alias is None for f in InputEvent.model_fields.values()
    )
    assert set(_WireEvent.__struct_fields__) == set(InputEvent.model_fields)
    for value in (raw(), without("label"), raw(schema_version=1, label=None)):
        fast = decode_input_event(value)
        assert fast is not None
        built = InputEvent.model_construct(_fields_set=fast.model_fields_set, **vars(fast))
        validated = InputEvent.model_validate_json(value)
        for other in (built, validated):
            assert fast == other
            assert repr(vars(fast)) == repr(vars(other))
            assert fast.model_fields_set == other.model_fields_set
            assert (fast.__pydantic_extra__, fast.__pydantic_private__) == (None, None)
            assert fast.model_dump_json() == other.model_dump_json()
        with pytest.raises(ValueError, match="frozen"):
            fast.key = "changed"  # type: ignore[misc]


@pytest.mark.parametrize("number", [b"1e309", b"-1e309", b"1e999", b"9" * 400 + b".0"])
def test_msgspec_refuses_numbers_beyond_the_float_range(number: bytes) -> None:
    """The fast path relies on it: every float it decodes is finite, as pydantic requires."""
    message = raw(features={"x": 0}).replace(b'"x": 0', b'"x": ' + number)
    with pytest.raises(msgspec.ValidationError, match="out of range"):
        _DECODER.decode(message)


def test_codec_decode_takes_the_fast_path() -> None:
    with mock.patch.object(InputEvent, "model_validate_json", side_effect=AssertionError):
        assert decode(InputEvent, raw(), max_bytes=MAX_BYTES).features["position"] == 3


# -- Fuzzing: seeded random mutations of good messages ------------------------------

TRICKY: list[Any] = [
    True,
    False,
    None,
    0,
    1,
    -1,
    2,
    1.0,
    0.5,
    -0.0,
    1e-7,
    1e308,
    2**63,
    10**20,
    9_999_999_999,
    10_000_000_000,
    20_000_000_001,
    -5,
    "",
    "x",
    "1",
    "0.5",
    "true",
    "2026-01-01",
    "2026-01-01T00:00:00",
    "2026-13-01T00:00:00Z",
    "2026-01-01T00:00:00+05:60",
    "2026-01-01T00:00:00.1234567+01:00",
    "x" * 256,
    "x" * 257,
    "😀" * 128,
    "😀" * 129,
    "y" * 1024,
    "y" * 1025,
    [],
    [1],
    {},
    {"a": 1},
    {"": 1},
    {"a": [1]},
    {"a": None},
    {"a": {"b": 1}},
    {"a" * 129: 1},
    {"é": True, "n": 3, "f": 0.1, "s": "v"},
]
FIELDS = [*event(), "schema_version", "lable", "features"]


def mutated(rng: random.Random, message: dict[str, Any]) -> bytes:
    """One random change or a few to a valid message: a field removed or set to a tricky
    value, a feature added, a key repeated, then maybe one byte changed."""
    message = dict(message)
    for _ in range(rng.choice((1, 1, 2, 3))):
        field = rng.choice(FIELDS)
        if rng.random() < 0.2:
            message.pop(field, None)
        elif field == "features" and isinstance(message.get(field), dict):
            name = rng.choice(["a", "", "n" * 128, "n" * 129, "é", "price"])
            message[field] = {**message[field], name: rng.choice(TRICKY)}
        else:
            message[field] = rng.choice(TRICKY)
    text = json.dumps(message, ensure_ascii=rng.random() < 0.5)
    if rng.random() < 0.1:  # the same field twice: the last one counts
        again = json.dumps({rng.choice(FIELDS): rng.choice(TRICKY)})[1:]
        text = text[:-1] + (", " if len(message) else "") + again
    value = bytearray(text.encode())
    if rng.random() < 0.15:
        i = rng.randrange(len(value) or 1)
        change = rng.random()
        if change < 0.3 and value:
            value[i] = rng.randrange(256)
        elif change < 0.6 and value:
            del value[i]
        else:
            value.insert(i, rng.choice(b'"\\{}[],:0123456789eE.-+ tfnu\xff\xc3'))
    return bytes(value)


def fuzzed(count: int, seed: int) -> Iterator[bytes]:
    rng = random.Random(seed)
    starts = [
        event(),
        event(label="sky", ts=86_400),
        event(label=2.5, ts="2026-01-01T00:00:00.1+01:00"),
        event(features={}, label=None, schema_version=1),
    ]
    for _ in range(count):
        yield mutated(rng, rng.choice(starts))


def test_fuzzed_messages_get_the_same_verdict_and_reason() -> None:
    outcomes: Counter[Any] = Counter()
    decided_fast = 0
    for value in fuzzed(6_000, seed=20260101):
        outcome, error_type, _, _ = assert_same(value)
        outcomes[outcome, error_type if outcome == "refused" else None] += 1
        decided_fast += outcome == "accepted" and decode_input_event(value) is not None
    # The mutations reach every verdict, often enough to mean something.
    accepted = outcomes["accepted", None]
    assert accepted > 600 and outcomes["refused", ErrorType.INVALID_EVENT] > 2_000
    assert outcomes["refused", ErrorType.INVALID_JSON] > 200
    # msgspec decides nearly all that is accepted (not all: a field twice, first one wrong).
    assert decided_fast > 0.95 * accepted


# -- encode_prediction: the bytes of model_dump_json ---------------------------------


def random_text(rng: random.Random) -> str:
    alphabet = (
        string.printable
        + 'é😀\u2028\u0000\u001f\u007f"\\/'
        + "".join(chr(rng.randrange(0x80, 0x110000)) for _ in range(8))
    )
    text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 20)))
    return "".join(c for c in text if not 0xD800 <= ord(c) <= 0xDFFF)


def random_float(rng: random.Random) -> float:
    kind = rng.random()
    if kind < 0.3:
        return rng.random()
    if kind < 0.5:
        return rng.choice([0.0, -0.0, 1e-7, 0.1, 1e-5, 0.3, 2 / 3, 1.0, 5e-324, 1e15, 1e16 - 2])
    return rng.uniform(-1, 1) * 10.0 ** rng.randrange(-300, 16)


def random_predictions(rng: random.Random, count: int) -> Iterator[Prediction | ClassPrediction]:
    for _ in range(count):
        fields: dict[str, Any] = {
            "event_id": random_text(rng),
            "key": random_text(rng),
            "model": random_text(rng),
            "model_version": random_text(rng) + "@3f2a1c9e",
            "model_updates": rng.choice([0, 1, rng.randrange(10**6), 2**63, 2**70]),
            "ts": datetime(2026, 1, 1, tzinfo=UTC)
            + timedelta(seconds=rng.randrange(10**9), microseconds=rng.randrange(10**6)),
            "learned": rng.random() < 0.5,
            "latency_seconds": abs(random_float(rng)),
        }
        if rng.random() < 0.5:
            label = rng.choice([None, True, False, 0, 1, -3, random_float(rng)])
            yield Prediction.model_construct(prediction=random_float(rng), label=label, **fields)
        else:
            classes = [
                rng.choice([random_text(rng), rng.randrange(-5, 5), True, False])
                for _ in range(rng.randrange(5))
            ]
            weights = [rng.random() for _ in classes]
            probabilities = {
                ("true" if c is True else "false" if c is False else str(c)): w / sum(weights)
                for c, w in zip(classes, weights, strict=True)
            }
            yield ClassPrediction.model_construct(
                schema_version=2,
                prediction=rng.choice(classes) if classes else None,
                probabilities=probabilities,
                label=rng.choice([None, *classes]),
                **fields,
            )


def test_encoded_predictions_are_model_dump_json_byte_for_byte() -> None:
    rng = random.Random(7)
    schemas = {1: validator("prediction.v1.json"), 2: validator("prediction.v2.json")}
    with_fast_path = mock.patch.object(Prediction, "model_dump_json", side_effect=AssertionError)
    for prediction in random_predictions(rng, 5_000):
        expected = prediction.model_dump_json().encode()
        with (
            with_fast_path,
            mock.patch.object(ClassPrediction, "model_dump_json", side_effect=AssertionError),
        ):
            assert encode_prediction(prediction) == expected
        schemas[prediction.schema_version].validate(json.loads(expected))


def test_learner_outputs_are_encoded_byte_for_byte() -> None:
    """Binary and multiclass predictions as the worker makes them (real floats)."""
    clicks = list(dataset_events("clicks", limit=2_000, model="logreg", seed=42))
    segments = list(dataset_events("segments", limit=500, model="softmax", seed=42))
    outputs = Learner(["logreg", "softmax"], registry=MODELS).process(clicks + segments)
    kinds = Counter(type(output).__name__ for output in outputs)
    assert kinds == {"Prediction": 2_000, "ClassPrediction": 500}
    for output in outputs:
        assert isinstance(output, Prediction | ClassPrediction)  # counted above: no rejection
        assert encode_prediction(output) == output.model_dump_json().encode()


def test_learner_outputs_are_what_model_construct_builds() -> None:
    """The learner builds predictions with `constructed`: the same objects, defaults and
    fields set as model_construct's."""
    clicks = list(dataset_events("clicks", limit=50, model="logreg", seed=1))
    segments = list(dataset_events("segments", limit=50, model="softmax", seed=1))
    for output in Learner(["logreg", "softmax"], registry=MODELS).process(clicks + segments):
        assert isinstance(output, Prediction | ClassPrediction)
        given = {k: v for k, v in vars(output).items() if k in output.model_fields_set}
        expected = type(output).model_construct(**given)
        assert vars(output) == vars(expected) and list(vars(output)) == list(vars(expected))
        assert output.model_fields_set == expected.model_fields_set
        assert output.model_dump_json() == expected.model_dump_json()
        assert type(output).model_validate_json(output.model_dump_json()) == output


# Values msgspec writes otherwise than pydantic: encode_prediction must leave them to it.
WRITTEN_OTHERWISE: list[dict[str, Any]] = [
    {"prediction": 1e16},  # msgspec writes 1e16, pydantic 1e+16
    {"prediction": -2.5e300},
    {"label": 1e20},
    {"latency_seconds": 1e17},
    {"prediction": 1},  # an integer where a float is expected: pydantic writes 1.0
    {"prediction": True},
    {"latency_seconds": 0},
    {"model_updates": True},  # pydantic writes 1
    {"ts": datetime(2026, 1, 1, tzinfo=timezone(timedelta(seconds=30)))},  # "+00:00", "Z"
]
# Values msgspec writes as pydantic does, but that encode_prediction is not sure of.
NOT_CERTAIN: list[dict[str, Any]] = [
    {"prediction": math.nan},
    {"model_updates": 3.0},
    {"ts": datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=2)))},
    {"ts": datetime(2026, 1, 1)},
    {"label": "sky"},  # not a label of a binary model
    {"learned": 1},
]


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydantic's, on a value of another type
@pytest.mark.parametrize("changes", WRITTEN_OTHERWISE + NOT_CERTAIN, ids=repr)
def test_what_msgspec_may_write_otherwise_is_written_by_pydantic(changes: dict[str, Any]) -> None:
    fields = {
        "event_id": "e",
        "key": "k",
        "model": "m",
        "model_version": "m@1",
        "model_updates": 3,
        "ts": datetime(2026, 1, 1, tzinfo=UTC),
        "prediction": 0.5,
        "label": None,
        "learned": True,
        "latency_seconds": 0.1,
        **changes,
    }
    prediction = Prediction.model_construct(**fields)
    expected = prediction.model_dump_json().encode()
    written = {k: v for k, v in prediction.__dict__.items() if k != "routing"}  # left out when null
    plain_msgspec = msgspec.json.encode(written)
    assert (plain_msgspec != expected) is (changes in WRITTEN_OTHERWISE)
    assert encode_prediction(prediction) == expected


#: The fields of a prediction of a fresh model, unlabelled, whatever its format.
FRESH: dict[str, Any] = {
    "event_id": "e",
    "key": "k",
    "model": "m",
    "model_version": "m@1",
    "model_updates": 0,
    "ts": datetime(2026, 1, 1, tzinfo=UTC),
    "label": None,
    "learned": False,
    "latency_seconds": 0.0,
}


def test_a_multiclass_prediction_with_a_huge_probability_is_written_by_pydantic() -> None:
    prediction = ClassPrediction.model_construct(
        **FRESH, schema_version=2, prediction="a", probabilities={"a": 1e16, "b": 0.0}
    )
    assert msgspec.json.encode(prediction.__dict__) != prediction.model_dump_json().encode()
    assert encode_prediction(prediction) == prediction.model_dump_json().encode()


def test_a_lone_surrogate_fails_as_model_dump_json_does() -> None:
    prediction = Prediction.model_construct(**{**FRESH, "event_id": "\ud800"}, prediction=0.5)
    with pytest.raises(ValueError, match="surrogates not allowed"):
        prediction.model_dump_json()
    with pytest.raises(ValueError, match="surrogates not allowed"):
        encode_prediction(prediction)


def test_bench_events_round_trip() -> None:
    """The benchmark's messages (streams.cli.replay.encode) decode fast, to the same events."""
    for original in dataset_events("clicks", limit=500, model="logreg", seed=42):
        value = encode(original)[1]
        decoded = decode_input_event(value)
        assert decoded == original == InputEvent.model_validate_json(value)


def validator(file_name: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(json.loads((SCHEMA_DIR / file_name).read_text()))
