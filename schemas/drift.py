"""A drift statistic of one model replica: a detector's alarm, or a window's comparison
with the reference window."""

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from schemas.types import (
    EventTime,
    ExactInt,
    FiniteFloat,
    Identifier,
    StrictNonNegativeInt,
)


class DriftReport(BaseModel):
    """A message on the `drift` topic, keyed by model."""

    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())

    schema_version: Annotated[Literal[1], ExactInt] = 1
    model: Identifier
    model_version: str
    partition: StrictNonNegativeInt | None = Field(
        default=None, description="Input partition of the replica; null offline."
    )
    detector: Literal["adwin", "page_hinkley", "psi", "jensen_shannon"]
    signal: str = Field(
        description="'loss', 'label', 'prediction', 'calibration' (prediction - label), or "
        "'feature:<name>'."
    )
    trigger: Literal["alarm", "window"] = Field(
        description="'alarm': the detector fired on this event; 'window': the periodic "
        "statistic of a window of RIVERRUN_DRIFT_WINDOW labelled events."
    )
    statistic: FiniteFloat = Field(
        description="adwin/page_hinkley: mean of the signal over the window; psi: population "
        "stability index; jensen_shannon: divergence (base 2, 0 to 1)."
    )
    threshold: FiniteFloat = Field(
        description="adwin: delta; page_hinkley: threshold; psi/jensen_shannon: the value "
        "above which `drift` is true."
    )
    drift: StrictBool
    window_start: EventTime
    window_end: EventTime
    window_start_offset: StrictNonNegativeInt | None = None
    window_end_offset: StrictNonNegativeInt | None = None
