"""Wire formats of every riverrun topic: pydantic v2 models, one per topic. No I/O."""

from schemas.activity import ActivityEvent
from schemas.dead_letter import DeadLetter, ErrorType
from schemas.input_event import FeatureValue, InputEvent
from schemas.metrics_report import MetricsReport
from schemas.prediction import Prediction

__all__ = [
    "ActivityEvent",
    "DeadLetter",
    "ErrorType",
    "FeatureValue",
    "InputEvent",
    "MetricsReport",
    "Prediction",
]
