"""A drift statistic of one model replica: a detector's alarm, or a window's comparison
with the reference window."""

from typing import Annotated, Literal

from pydantic import Field, StrictBool, model_validator

from schemas.message import Record
from schemas.types import (
    EventTime,
    ExactInt,
    FiniteFloat,
    Identifier,
    StrictNonNegativeInt,
)


class DriftReport(Record):
    """A message on the `drift` topic, keyed by model.

    Version 2: `statistic` is what the detector compares with `threshold` (drift when it
    is above), and `mean` the signal's mean over the window; ADWIN, which has no single
    statistic, gives its `delta` instead. Version 1 (still read) put the signal's mean in
    `statistic` and ADWIN's delta in `threshold` for ADWIN and Page-Hinkley: not
    comparable.
    """

    schema_version: Annotated[Literal[1, 2], ExactInt] = 2
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
    statistic: FiniteFloat | None = Field(
        description="The value the detector compares with `threshold`: page_hinkley: the "
        "cumulative sum of the signal's deviations from its running mean above the sum's "
        "minimum (at the alarm; for a 'window' report the largest in the window); psi: "
        "population stability index; jensen_shannon: divergence (base 2, 0 to 1); null for "
        "adwin (see `delta`). Version 1: the signal's mean for adwin and page_hinkley."
    )
    threshold: FiniteFloat | None = Field(
        description="`drift` is true when `statistic` is above it (page_hinkley: its "
        "lambda, 50; psi and jensen_shannon: their settings' thresholds); null "
        "for adwin. Version 1: adwin's delta."
    )
    mean: FiniteFloat | None = Field(
        default=None,
        exclude_if=lambda value: value is None,  # version 1 reports stay byte for byte
        description="adwin and page_hinkley: the signal's mean over the window so far "
        "(version 2; absent otherwise).",
    )
    delta: FiniteFloat | None = Field(
        default=None,
        exclude_if=lambda value: value is None,
        description="adwin (version 2): its confidence delta; it alarms when the means of two "
        "parts of its window differ by more than a bound this delta sets (absent otherwise).",
    )
    drift: StrictBool
    window_start: EventTime
    window_end: EventTime
    window_start_offset: StrictNonNegativeInt | None = None
    window_end_offset: StrictNonNegativeInt | None = None

    @model_validator(mode="after")
    def _fields_of_the_version(self) -> "DriftReport":
        if self.schema_version == 1 and (
            self.statistic is None
            or self.threshold is None
            or self.mean is not None
            or self.delta is not None
        ):
            raise ValueError("a version 1 report has a statistic and a threshold, no mean or delta")
        return self
