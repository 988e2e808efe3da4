"""The prediction made for one input event, before the model learnt from it."""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeFloat, NonNegativeInt

from schemas.input_event import Label
from schemas.types import EventTime, FiniteFloat, Identifier


class Prediction(BaseModel):
    """A message on the `predictions` topic, keyed by `event_id`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = 1
    event_id: Identifier
    key: Identifier = Field(description="The input event's entity key.")
    model: Identifier
    model_version: str = Field(
        description="Model name and a hash of its factory parameters, e.g. 'logreg@3f2a1c9e'."
    )
    model_updates: NonNegativeInt = Field(
        description="Events the model had learnt from when it made this prediction."
    )
    ts: EventTime = Field(description="The input event's event time.")
    prediction: FiniteFloat = Field(
        description="Probability of the positive class (classifiers) or the value (regressors)."
    )
    label: Label | None = None
    learned: bool = Field(description="Whether the model learnt from this event after predicting.")
    latency_seconds: NonNegativeFloat = Field(
        description="Time from the worker receiving the event to this prediction being built."
    )
