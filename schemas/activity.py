"""A visitor activity event: page view, search, add-to-cart, purchase..."""

from pydantic import Field

from schemas.message import Message
from schemas.types import EventTime, FiniteFloat, Identifier


class ActivityEvent(Message):
    """A message on the `activity` topic, keyed by visitor."""

    visitor: Identifier
    ts: EventTime
    type: Identifier = Field(description="page_view, search, add_to_cart, purchase...")
    item: Identifier | None = None
    category: Identifier | None = None
    value: FiniteFloat | None = None
