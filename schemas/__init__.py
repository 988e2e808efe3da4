"""Wire formats of every riverrun topic: pydantic v2 models, one per topic. No I/O."""

from schemas.activity import ActivityEvent
from schemas.dead_letter import DeadLetter, ErrorType
from schemas.fast_codec import encode_prediction
from schemas.input_event import FeatureValue, InputEvent
from schemas.metrics_report import MetricsReport
from schemas.prediction import AnyPrediction, ClassPrediction, Prediction, decode_prediction

__all__ = [
    "ActivityEvent",
    "AnyPrediction",
    "ClassPrediction",
    "DeadLetter",
    "ErrorType",
    "FeatureValue",
    "InputEvent",
    "MetricsReport",
    "Prediction",
    "decode_prediction",
    "encode_prediction",
]
