"""Render the committed JSON Schema files (schemas/json/*.json) from the models."""

import json

from pydantic import BaseModel

from schemas.activity import ActivityEvent
from schemas.checkpoint import CheckpointHeader
from schemas.control import ExperimentResult, ModelPlan, ModelStatus, PartitionOwner
from schemas.dead_letter import DeadLetter
from schemas.drift import DriftReport
from schemas.feedback import Click, Conversion, Impression, Outcome
from schemas.input_event import InputEvent
from schemas.metrics_report import MetricsReport
from schemas.prediction import ClassPrediction, Prediction
from schemas.serving import PredictRequest, RequestPrediction

#: Schemas of versions no model renders any more, kept as they were published: version 1
#: messages still match them (tested).
FROZEN_FILES = ("metrics_report.v1.json", "drift_report.v1.json")
#: File name (without directory) -> the model whose JSON Schema it holds.
SCHEMA_FILES: dict[str, type[BaseModel]] = {
    "input_event.v1.json": InputEvent,
    "prediction.v1.json": Prediction,
    "prediction.v2.json": ClassPrediction,
    "dead_letter.v1.json": DeadLetter,
    "activity.v1.json": ActivityEvent,
    "metrics_report.v2.json": MetricsReport,
    "checkpoint_header.v1.json": CheckpointHeader,
    "impression.v1.json": Impression,
    "click.v1.json": Click,
    "conversion.v1.json": Conversion,
    "outcome.v1.json": Outcome,
    "drift_report.v2.json": DriftReport,
    "model_plan.v1.json": ModelPlan,
    "model_status.v1.json": ModelStatus,
    "experiment_result.v1.json": ExperimentResult,
    "partition_owner.v1.json": PartitionOwner,
    "predict_request.v1.json": PredictRequest,
    "request_prediction.v1.json": RequestPrediction,
}


def render(model: type[BaseModel]) -> str:
    """The JSON Schema of `model`, as the exact text committed to the repository."""
    schema = model.model_json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def render_all() -> dict[str, str]:
    """Every committed schema file name and its expected text."""
    return {name: render(model) for name, model in SCHEMA_FILES.items()}
