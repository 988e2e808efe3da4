"""The input event: one observation for one named model, optionally labelled."""

from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
    WrapValidator,
)
from pydantic_core import PydanticCustomError

from schemas.types import EventTime, Identifier

MAX_FEATURES = 1_000
MAX_FEATURE_NAME = 128
MAX_STRING_FEATURE = 1_024


def _one_message(expected: str) -> WrapValidator:
    """Report a failed union as one sentence instead of one error per member."""

    def validate(value: Any, handler: Callable[[Any], Any]) -> Any:
        try:
            return handler(value)
        except ValidationError:
            raise PydanticCustomError(
                "invalid_value",
                "expected {expected}, got {got}",
                {"expected": expected, "got": repr(value)[:80]},
            ) from None

    return WrapValidator(validate)


FeatureValue = Annotated[
    StrictBool
    | StrictInt
    | Annotated[StrictFloat, Field(allow_inf_nan=False)]
    | Annotated[StrictStr, Field(max_length=MAX_STRING_FEATURE)],
    _one_message(
        f"a finite number, a boolean or a string of at most {MAX_STRING_FEATURE} characters"
    ),
]
FeatureName = Annotated[str, Field(min_length=1, max_length=MAX_FEATURE_NAME)]
Label = Annotated[
    StrictBool | StrictInt | Annotated[StrictFloat, Field(allow_inf_nan=False)],
    _one_message("true/false or a finite number"),
]


class InputEvent(BaseModel):
    """An event on the `events` topic.

    Types are strict: `"3"` is not a number and `1` is not `true`, so that a producer
    bug becomes a dead letter instead of a silently different feature. Unknown fields
    are refused for the same reason (a misspelt `lable` would otherwise never be learnt).

    >>> InputEvent.model_validate_json(
    ...     '{"event_id": "e1", "ts": "2026-01-01T00:00:00Z", "model": "logreg",'
    ...     ' "key": "visitor-7", "features": {"device": "mobile", "price": 0.2}, "label": true}'
    ... ).label
    True
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = 1
    event_id: Identifier = Field(description="Unique id of the event; predictions are keyed by it.")
    ts: EventTime
    model: Identifier = Field(description="Name of the model this event is for.")
    key: Identifier = Field(description="Entity id (visitor, offer...); the Kafka message key.")
    features: dict[FeatureName, FeatureValue] = Field(max_length=MAX_FEATURES)
    label: Label | None = Field(
        default=None,
        description="true/false or 0/1 for classifiers, a number for regressors; "
        "absent: predict only.",
    )
