"""The input event: one observation for one named model, optionally labelled."""

from typing import Annotated

from pydantic import (
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
)

from schemas.message import Message
from schemas.types import EventTime, Identifier

MAX_FEATURES = 1_000
MAX_FEATURE_NAME = 128
MAX_STRING_FEATURE = 1_024
MAX_CLASS_NAME = 256


#: What a feature value or a label may be, as said in rejection reasons.
EXPECTED_FEATURE = (
    f"a finite number, a boolean or a string of at most {MAX_STRING_FEATURE} characters"
)
EXPECTED_LABEL = (
    f"true/false, a finite number or a class name (a string of 1-{MAX_CLASS_NAME} characters)"
)

# Plain strict unions, validated in pydantic-core without a Python call per value (a
# wrap validator per feature cost ~3 µs per event); schemas.codec turns a failed union's
# one-error-per-member into one sentence.
FeatureValue = (
    StrictBool
    | StrictInt
    | Annotated[StrictFloat, Field(allow_inf_nan=False)]
    | Annotated[StrictStr, Field(max_length=MAX_STRING_FEATURE)]
)
FeatureName = Annotated[str, Field(min_length=1, max_length=MAX_FEATURE_NAME)]
ClassName = Annotated[StrictStr, Field(min_length=1, max_length=MAX_CLASS_NAME)]
#: A class of a multiclass model: a name, an integer or a boolean.
ClassLabel = StrictBool | StrictInt | ClassName
#: The label of a binary or regression model (all a label could be in schema version 1).
NumericLabel = StrictBool | StrictInt | Annotated[StrictFloat, Field(allow_inf_nan=False)]
Label = NumericLabel | ClassName


class InputEvent(Message):
    """An event on the `events` topic.

    Types are strict: `"3"` is not a number and `1` is not `true`, so that a producer
    bug becomes a dead letter instead of a silently different feature. Unknown fields
    are refused for the same reason (a misspelt `lable` would otherwise never be learnt).

    Examples
    --------
    >>> InputEvent.model_validate_json(
    ...     '{"event_id": "e1", "ts": "2026-01-01T00:00:00Z", "model": "logreg",'
    ...     ' "key": "visitor-7", "features": {"device": "mobile", "price": 0.2}, "label": true}'
    ... ).label
    True
    """

    event_id: Identifier = Field(description="Unique id of the event; predictions are keyed by it.")
    ts: EventTime
    model: Identifier = Field(description="Name of the model this event is for.")
    key: Identifier = Field(description="Entity id (visitor, offer...); the Kafka message key.")
    features: dict[FeatureName, FeatureValue] = Field(max_length=MAX_FEATURES)
    label: Label | None = Field(
        default=None,
        description="true/false or 0/1 for binary models, a number for regressors, a class "
        "(a string, an integer or true/false) for multiclass models; absent: predict only.",
    )
