"""Delayed feedback: impressions to score, the clicks and conversions that label them
later, and the labelled outcomes riverrun publishes once a label is known.

Every topic of the join is keyed by visitor (clicks by the visitor of their impression),
so that one visitor's impressions, clicks, conversions and activity share a partition.
"""

from typing import Literal

from pydantic import Field, StrictBool

from schemas.input_event import MAX_FEATURES, FeatureName, FeatureValue
from schemas.message import Message
from schemas.types import (
    EventTime,
    FiniteFloat,
    Identifier,
    StrictNonNegativeFloat,
)


class Impression(Message):
    """A message on the `impressions` topic: an item shown to a visitor, to be scored now."""

    impression_id: Identifier
    ts: EventTime
    visitor: Identifier = Field(description="The visitor; the Kafka message key.")
    item: Identifier = Field(description="The item or product shown.")
    features: dict[FeatureName, FeatureValue] = Field(default_factory=dict, max_length=MAX_FEATURES)


class Click(Message):
    """A message on the `clicks` topic, keyed by the visitor of its impression."""

    click_id: Identifier
    impression_id: Identifier
    ts: EventTime


class Conversion(Message):
    """A message on the `conversions` topic, keyed by visitor: a purchase of a product."""

    visitor: Identifier
    product: Identifier
    ts: EventTime
    value: FiniteFloat | None = None


class Outcome(Message):
    """A message on the `outcomes` topic, keyed by impression id: the label an impression
    got for one model, and what the model had predicted for it."""

    impression_id: Identifier
    visitor: Identifier
    model: Identifier = Field(description="'ctr', or 'propensity_<product>'.")
    model_version: str
    label_type: Literal["click", "conversion"]
    label: StrictBool
    prediction: FiniteFloat | None = Field(
        description="The (recalibrated) prediction made at impression; null when the model "
        "knew no class yet (not scored)."
    )
    ts: EventTime = Field(description="The impression's event time.")
    resolved_ts: EventTime = Field(
        description="Event time of the click or conversion (positive), or the end of the "
        "window (negative)."
    )
    delay_seconds: StrictNonNegativeFloat | None = Field(
        default=None, description="Positive: time from impression to click or conversion."
    )
    learned: StrictBool = Field(
        description="Whether the model learnt from it (negatives may be down-sampled)."
    )
