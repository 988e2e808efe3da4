"""msgspec fast paths for the hot topics: input events in, predictions out.

The pydantic models stay the contract; these functions only save time. On the
benchmark's events, `decode_input_event` takes about half the time of
`InputEvent.model_validate_json` (msgspec's own decoding is under 1 µs of it), and
`encode_prediction` about two thirds of the time of `model_dump_json`.

`decode_input_event` answers only when msgspec's strict decoding and the checks here
accept the message. The event it then returns equals, field by field and type by type,
the one pydantic would build. Otherwise it returns None and pydantic gives the verdict
and, for a refusal, its reason (`schemas.codec.decode` does both): a message is accepted
or refused, with the same reason, whichever path decides.

`encode_prediction` writes exactly the bytes of `model_dump_json()`. For a value that
msgspec would write differently, it calls `model_dump_json()`: a float of 1e16 or more
(msgspec writes `1e16`, pydantic `1e+16`), an integer or a boolean where a float is
expected (pydantic writes `1.0`), a time not in UTC.
"""

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal, TypeVar

import msgspec
from pydantic import BaseModel, TypeAdapter, ValidationError

from schemas.input_event import (
    MAX_CLASS_NAME,
    MAX_FEATURE_NAME,
    MAX_FEATURES,
    MAX_STRING_FEATURE,
    InputEvent,
)
from schemas.prediction import AnyPrediction, ClassPrediction, Prediction
from schemas.types import MAX_ID_LENGTH, EventTime, as_utc

__all__ = ["constructed", "decode_input_event", "encode_prediction"]

# InputEvent's fields and constraints, in msgspec's terms. msgspec is strict like the
# model: no bool for an int, no "1" for a number, no unknown field. It refuses numbers
# beyond the float range (1e999), so that every float it decodes is finite (tested).
_Identifier = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID_LENGTH)]
_FeatureName = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_FEATURE_NAME)]
_FeatureValue = bool | int | float | Annotated[str, msgspec.Meta(max_length=MAX_STRING_FEATURE)]
_Features = Annotated[dict[_FeatureName, _FeatureValue], msgspec.Meta(max_length=MAX_FEATURES)]
_Label = bool | int | float | Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_CLASS_NAME)]


class _WireEvent(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """An InputEvent as msgspec decodes it; UNSET marks a field the message left out.

    (gc=False: it holds plain values only, never a reference cycle.)"""

    event_id: _Identifier
    ts: str | int | float  # checked by _event_time
    model: _Identifier
    key: _Identifier
    features: _Features
    label: _Label | msgspec.UnsetType | None = msgspec.UNSET
    schema_version: Literal[1] | msgspec.UnsetType = msgspec.UNSET


_DECODER = msgspec.json.Decoder(_WireEvent)
_ENCODER = msgspec.json.Encoder()
_EVENT_TIME: TypeAdapter[datetime] = TypeAdapter(EventTime)
# What riverrun and most producers write: an ISO-8601 time with a 4-digit year, a "T",
# seconds, at most 6 decimals and a Z, an hh:mm offset or no zone. For these,
# datetime.fromisoformat reads what pydantic reads. Other forms are left to pydantic.
_PLAIN_TIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,6})?"
    r"(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])?"
)
# Whole seconds since the epoch up to 10 digits: pydantic reads numbers above 2e10 as
# milliseconds. Those, negative ones and fractions are left to pydantic.
_PLAIN_EPOCH_MAX = 9_999_999_999
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_REQUIRED = frozenset({"event_id", "ts", "model", "key", "features"})


def decode_input_event(raw: bytes) -> InputEvent | None:
    """The event in `raw`, or None when pydantic must decide (it may accept or refuse).

    >>> event = decode_input_event(b'{"event_id": "e1", "ts": "2026-01-01T12:00:00+02:00",'
    ...     b' "model": "logreg", "key": "k", "features": {"price": 0.2, "n": 3}}')
    >>> event.ts.isoformat(), event.features, event.label
    ('2026-01-01T10:00:00+00:00', {'price': 0.2, 'n': 3}, None)
    >>> decode_input_event(b'{"event_id": "e1", "lable": true}') is None
    True
    """
    try:
        wire = _DECODER.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError):  # the latter: a string not UTF-8
        return None
    ts = _event_time(wire.ts)
    if ts is None:
        return None
    fields_set = set(_REQUIRED)
    label = wire.label
    if label is msgspec.UNSET:
        label = None
    else:
        fields_set.add("label")
    if wire.schema_version is not msgspec.UNSET:
        fields_set.add("schema_version")
    values = {
        "schema_version": 1,
        "event_id": wire.event_id,
        "ts": ts,
        "model": wire.model,
        "key": wire.key,
        "features": wire.features,
        "label": label,
    }
    # As InputEvent.model_construct(**values) builds it, without its loop over fields,
    # which would cost more than msgspec's decoding (tested equal to model_construct).
    return constructed(InputEvent, values, fields_set)


def _event_time(value: str | int | float) -> datetime | None:
    """`ts` as InputEvent validates it, or None when it refuses it."""
    try:
        if type(value) is str and _PLAIN_TIME.fullmatch(value):
            ts = datetime.fromisoformat(value)
            return ts if ts.tzinfo is UTC else as_utc(ts)  # as_utc(ts) is ts in UTC
        if type(value) is int and 0 <= value <= _PLAIN_EPOCH_MAX:
            return _EPOCH + timedelta(seconds=value)
    except ValueError:  # 2026-02-30T00:00:00Z: pydantic refuses it, with its own reason
        return None
    try:  # the same value as JSON again: pydantic reads it exactly as in the message
        return _EVENT_TIME.validate_json(_ENCODER.encode(value))
    except ValidationError:
        return None


_new, _set = object.__new__, object.__setattr__

ModelT = TypeVar("ModelT", bound=BaseModel)


def constructed(model: type[ModelT], values: dict[str, Any], fields_set: set[str]) -> ModelT:
    """`model.model_construct(**given)` without its loop over fields (~0.5 µs instead of
    ~2.8): `values` holds every field of `model`, defaults too, in the model's order, and
    `fields_set` the names that were given. Only for models without aliases, private
    attributes or extra fields (tested equal to model_construct for input events and
    predictions)."""
    built = _new(model)
    _set(built, "__dict__", values)
    _set(built, "__pydantic_fields_set__", fields_set)
    _set(built, "__pydantic_extra__", None)
    _set(built, "__pydantic_private__", None)
    return built


# msgspec and pydantic write a float alike (shortest round trip) but for the exponent of
# one of 1e16 or more: 1e16 and 1e+16.
_FLOAT_LIMIT = 1e16
_V1_FIELDS = tuple(Prediction.model_fields)
_V2_FIELDS = tuple(ClassPrediction.model_fields)
_NO_ROUTING = b',"routing":null}'
assert _V1_FIELDS[-1] == _V2_FIELDS[-1] == "routing"


def encode_prediction(prediction: AnyPrediction) -> bytes:
    """`prediction.model_dump_json().encode()`, byte for byte, faster.

    >>> p = Prediction(event_id="e1", key="k", model="logreg", model_version="logreg@1",
    ...                model_updates=3, ts=0, prediction=0.25, label=True, learned=True,
    ...                latency_seconds=1e-4)
    >>> encode_prediction(p) == p.model_dump_json().encode()
    True
    """
    fields = prediction.__dict__
    if type(prediction) is Prediction:
        alike = (
            tuple(fields) == _V1_FIELDS
            and _plain_float(fields["prediction"])
            and _plain_number_label(fields["label"])
        )
    elif type(prediction) is ClassPrediction:
        alike = (
            tuple(fields) == _V2_FIELDS
            and _plain_class(fields["prediction"])
            and _plain_class(fields["label"])
            and _probabilities(fields["probabilities"])
        )
    else:
        alike = False
    if alike and fields["routing"] is None and _common_fields(fields):
        try:
            encoded = _ENCODER.encode(fields)
        except UnicodeEncodeError:  # a lone surrogate: model_dump_json raises its own error
            pass
        else:  # `routing` is the last field, left out when null (exclude_if)
            return encoded[: -len(_NO_ROUTING)] + b"}"
    return prediction.model_dump_json().encode()


def _common_fields(fields: dict[str, Any]) -> bool:
    ts = fields["ts"]
    return (
        type(fields["schema_version"]) is int
        and type(fields["event_id"]) is str
        and type(fields["key"]) is str
        and type(fields["model"]) is str
        and type(fields["model_version"]) is str
        and type(fields["model_updates"]) is int
        and type(ts) is datetime
        and ts.tzinfo is UTC
        and type(fields["learned"]) is bool
        and _plain_float(fields["latency_seconds"])
    )


def _plain_float(value: Any) -> bool:
    """Whether `value` is a float msgspec writes as pydantic does. (NaN fails: pydantic
    and msgspec both write null, but a prediction is never NaN.)"""
    return type(value) is float and -_FLOAT_LIMIT < value < _FLOAT_LIMIT


def _plain_number_label(value: Any) -> bool:
    """Whether `value` is a label of a binary or regression model msgspec writes as
    pydantic does."""
    kind = type(value)
    return value is None or kind is bool or kind is int or _plain_float(value)


def _plain_class(value: Any) -> bool:
    """Whether `value` is a label or class msgspec writes as pydantic does."""
    kind = type(value)
    return value is None or kind is str or kind is bool or kind is int


def _probabilities(probabilities: Any) -> bool:
    if type(probabilities) is not dict:
        return False
    return all(type(name) is str and _plain_float(p) for name, p in probabilities.items())
