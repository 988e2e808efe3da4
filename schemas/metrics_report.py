"""Streamed prequential metrics of one model (or one segment of its traffic)."""

from typing import Annotated, Literal

from pydantic import Field, StrictFloat, model_validator

from schemas.message import Record
from schemas.types import EventTime, ExactInt, Identifier, StrictNonNegativeInt


class MetricsReport(Record):
    """A message on the `metrics` topic, keyed by `model`.

    Metric names and their exact definitions are in the docs, Concepts > Model quality
    (docs/concepts/model-quality.md).
    Version 1: binary and regression models (unchanged since the first release); version
    2: multiclass models, the same fields plus `confusion`.
    """

    schema_version: Annotated[Literal[1, 2], ExactInt] = 1
    model: Identifier
    model_version: str
    partition: StrictNonNegativeInt | None = Field(
        default=None,
        description="Input partition of the model replica reported (each partition has its "
        "own); null from `riverrun evaluate`, which runs one replica over the whole dataset.",
    )
    segment: str = Field(
        description="'all', or '<feature>=<value>' for a configured segment feature; values "
        "beyond the cardinality cap are '<feature>=__other__'."
    )
    trigger: Literal["events", "period"] = Field(
        description="'events': every RIVERRUN_METRICS_EVERY_EVENTS labelled events; 'period': "
        "the first labelled event of a new event-time period closed the previous one."
    )
    ts: EventTime = Field(description="Event time of the last labelled event counted.")
    period_start: EventTime = Field(description="Start of the event-time period reported.")
    period_end: EventTime = Field(description="End (exclusive) of the event-time period.")
    metrics: dict[str, StrictFloat | None] = Field(
        description="Metric name -> value; null where undefined (e.g. AUC without negatives)."
    )
    confusion: dict[str, dict[str, StrictNonNegativeInt]] | None = Field(
        default=None,
        exclude_if=lambda value: value is None,  # version 1 reports stay byte for byte
        description="Version 2 (multiclass): actual class -> predicted class -> count of "
        "the labelled events scored, classes as text (as in ClassPrediction.probabilities).",
    )

    @model_validator(mode="after")
    def _confusion_is_version_2(self) -> "MetricsReport":
        if (self.confusion is not None) != (self.schema_version == 2):
            raise ValueError("a confusion matrix comes with schema_version 2, and only then")
        return self
