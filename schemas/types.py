"""Field types shared by several topic schemas.

Numbers and booleans are strict everywhere: JSON `true` is not the integer 1, `1.0` is not
an integer, `"1"` is not a number and `1` is not `true`, so that a producer bug becomes a
dead letter instead of a silently different value. (JSON Schema's "integer" would take
1.0; riverrun refuses it: integers are written without a fraction or an exponent.)
"""

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, Field, StrictFloat, StrictInt
from pydantic_core import PydanticCustomError

MAX_ID_LENGTH = 256


def as_utc(value: datetime) -> datetime:
    """An event time in UTC; one without a zone is taken as UTC, so that the same bytes
    always mean the same instant whatever machine decodes them."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00:00+01:00 is in the year 0 in UTC
        raise PydanticCustomError(
            "datetime_utc_range", "Input should be a time in the years 1 to 9999 once in UTC"
        ) from None


def _exact_int(value: object) -> object:
    # pydantic matches an integer Literal by equality, so that `true` and `1.0` would pass
    # as 1: refuse them as StrictInt does, before the Literal's own check.
    if type(value) is not int:
        raise PydanticCustomError("int_type", "Input should be a valid integer")
    return value


EventTime = Annotated[
    datetime,
    AfterValidator(as_utc),
    Field(description="Event time: ISO-8601 (no zone means UTC) or seconds since the epoch."),
]
Identifier = Annotated[str, Field(min_length=1, max_length=MAX_ID_LENGTH)]
FiniteFloat = Annotated[StrictFloat, Field(allow_inf_nan=False)]
StrictNonNegativeFloat = Annotated[StrictFloat, Field(ge=0)]
StrictNonNegativeInt = Annotated[StrictInt, Field(ge=0)]
StrictPositiveInt = Annotated[StrictInt, Field(gt=0)]
#: Put on a `schema_version: Literal[...]`: only a JSON integer may be a version.
ExactInt = BeforeValidator(_exact_int)
