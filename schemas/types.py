"""Field types shared by several topic schemas."""

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, Field

MAX_ID_LENGTH = 256


def _as_utc(value: datetime) -> datetime:
    # An event time without a zone is taken as UTC, so that the same bytes always
    # mean the same instant whatever machine decodes them.
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


EventTime = Annotated[
    datetime,
    AfterValidator(_as_utc),
    Field(description="Event time: ISO-8601 (no zone means UTC) or seconds since the epoch."),
]
Identifier = Annotated[str, Field(min_length=1, max_length=MAX_ID_LENGTH)]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
