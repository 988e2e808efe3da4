"""A visitor activity event: page view, search, add-to-cart, purchase..."""

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.types import EventTime, ExactInt, FiniteFloat, Identifier


class ActivityEvent(BaseModel):
    """A message on the `activity` topic, keyed by visitor."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Annotated[Literal[1], ExactInt] = 1
    visitor: Identifier
    ts: EventTime
    type: Identifier = Field(description="page_view, search, add_to_cart, purchase...")
    item: Identifier | None = None
    category: Identifier | None = None
    value: FiniteFloat | None = None
