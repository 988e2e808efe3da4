"""One example message of every schema, as the documentation and the AsyncAPI document
show it. No I/O.

Each example is validated by its model when this module is imported, and shown as the
model writes it (`example_json`): an example that drifts from its schema fails at once,
and a schema without an example fails the docs build.

>>> example_json(Click)
{'schema_version': 1, 'click_id': 'click-1', 'impression_id': 'imp-1', 'ts': '2026-01-01T12:00:04Z'}
"""

import json
from typing import Any

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

#: An example signature: real ones are HMAC-SHA256 with RIVERRUN_CHECKPOINT_KEY.
_SIGNATURE = "9f2c" * 16

_EXAMPLES: dict[type[BaseModel], dict[str, Any]] = {
    InputEvent: {
        "event_id": "imp-1",
        "ts": "2026-01-01T12:00:00Z",
        "model": "logreg",
        "key": "visitor-7",
        "features": {"device": "mobile", "category": "c3", "position": 2, "price": 19.9},
        "label": False,
    },
    Prediction: {
        "event_id": "imp-1",
        "key": "visitor-7",
        "model": "logreg",
        "model_version": "logreg@d79eff0f",
        "model_updates": 1800,
        "ts": "2026-01-01T12:00:00Z",
        "prediction": 0.53,
        "label": False,
        "learned": True,
        "latency_seconds": 0.0004,
    },
    ClassPrediction: {
        "event_id": "segments-00000042",
        "key": "segments-00000042",
        "model": "softmax",
        "model_version": "softmax@787a0b73",
        "model_updates": 42,
        "ts": "2026-01-01T00:00:42Z",
        "prediction": "sky",
        "probabilities": {"sky": 0.91, "cement": 0.05, "path": 0.04},
        "label": "sky",
        "learned": True,
        "latency_seconds": 0.0004,
    },
    DeadLetter: {
        "payload": '{"event_id": "e9", "model": "logreg", "key": "visitor-7"}',
        "payload_encoding": "utf-8",
        "payload_bytes": 57,
        "source_topic": "events",
        "source_partition": 0,
        "source_offset": 1803,
        "error_type": "invalid_event",
        "reason": "invalid InputEvent v1: ts: Field required. Fix the producer so that it "
        "sends messages matching the JSON Schema input_event.v1.json (`riverrun schemas "
        "export --dir DIR` writes it)",
        "ts": "2026-01-01T12:00:01Z",
    },
    ActivityEvent: {
        "visitor": "visitor-7",
        "ts": "2026-01-01T11:59:30Z",
        "type": "add_to_cart",
        "item": "sku-42",
        "category": "shoes",
        "value": 59.9,
    },
    MetricsReport: {
        "model": "logreg",
        "model_version": "logreg@d79eff0f",
        "partition": 0,
        "segment": "all",
        "trigger": "events",
        "ts": "2026-01-01T12:00:00Z",
        "period_start": "2026-01-01T00:00:00Z",
        "period_end": "2026-01-02T00:00:00Z",
        "metrics": {"logloss": 0.52, "logloss_window": 0.5, "auc": 0.71, "accuracy": 0.76},
    },
    DriftReport: {
        "model": "logreg",
        "model_version": "logreg@d79eff0f",
        "partition": 0,
        "detector": "psi",
        "signal": "feature:price",
        "trigger": "window",
        "statistic": 0.27,
        "threshold": 0.2,
        "drift": True,
        "window_start": "2026-01-01T11:40:00Z",
        "window_end": "2026-01-01T12:00:00Z",
        "window_start_offset": 800,
        "window_end_offset": 1799,
    },
    Impression: {
        "impression_id": "imp-1",
        "ts": "2026-01-01T12:00:00Z",
        "visitor": "visitor-7",
        "item": "sku-42",
        "features": {"position": 2, "device": "mobile"},
    },
    Click: {"click_id": "click-1", "impression_id": "imp-1", "ts": "2026-01-01T12:00:04Z"},
    Conversion: {
        "visitor": "visitor-7",
        "product": "shoes",
        "ts": "2026-01-01T15:20:00Z",
        "value": 59.9,
    },
    Outcome: {
        "impression_id": "imp-1",
        "visitor": "visitor-7",
        "model": "ctr",
        "model_version": "ctr@0c1d2e3f",
        "label_type": "click",
        "label": True,
        "prediction": 0.031,
        "ts": "2026-01-01T12:00:00Z",
        "resolved_ts": "2026-01-01T12:00:04Z",
        "delay_seconds": 4.0,
        "learned": True,
    },
    ModelPlan: {
        "model": "logreg",
        "revision": 2,
        "versions": [
            {
                "version": "logreg@d79eff0f",
                "params": {"lr": 0.05, "l2": 0.0},
                "role": "champion",
                "joined_revision": 1,
            },
            {
                "version": "logreg@5a6b7c8d",
                "params": {"lr": 0.02, "l2": 0.0},
                "role": "shadow",
                "joined_revision": 2,
            },
        ],
        "change": "deployed logreg@5a6b7c8d as a shadow",
        "changed_by": "cli",
        "changed_at": "2026-01-01T12:00:00Z",
        "signature": _SIGNATURE,
    },
    ModelStatus: {
        "model": "logreg",
        "partition": 0,
        "revision": 2,
        "offset": 1804,
        "versions": [
            {
                "version": "logreg@d79eff0f",
                "role": "champion",
                "learning": True,
                "updates": 1800,
                "labelled": 1200,
                "loss": 0.52,
                "champion_loss": 0.52,
                "served": 1800,
            },
            {
                "version": "logreg@5a6b7c8d",
                "role": "shadow",
                "learning": True,
                "updates": 1200,
                "labelled": 1200,
                "loss": 0.49,
                "champion_loss": 0.52,
                "served": 0,
            },
        ],
        "serving": "logreg@d79eff0f",
        "at": "2026-01-01T12:00:02Z",
        "signature": _SIGNATURE,
    },
    PartitionOwner: {
        "topic": "events",
        "partition": 0,
        "url": "http://10.0.0.12:9465",
        "generation": 3,
        "worker": "riverrun-0",
        "at": "2026-01-01T12:00:00Z",
        "signature": _SIGNATURE,
    },
    ExperimentResult: {
        "experiment_id": "lr-test",
        "model": "logreg",
        "metric": "ctr",
        "sequential": False,
        "alpha": 0.05,
        "power": 0.8,
        "mde": 0.01,
        "sample_size": 5000,
        "counts": {"logreg@d79eff0f": 5000, "logreg@5a6b7c8d": 5000},
        "means": {"logreg@d79eff0f": 0.031, "logreg@5a6b7c8d": 0.044},
        "comparisons": [
            {
                "arm": "logreg@5a6b7c8d",
                "control": "logreg@d79eff0f",
                "effect": 0.013,
                "ci_low": 0.006,
                "ci_high": 0.02,
                "p_value": 0.0004,
                "decision": "better",
            }
        ],
        "decision": "logreg@5a6b7c8d",
        "at": "2026-01-03T09:00:00Z",
    },
    CheckpointHeader: {
        "format_version": 5,
        "checkpoint_id": "3f9a0c2e5b7d4e1f",
        "sequence": 7,
        "group_id": "riverrun",
        "topic": "events",
        "partition": 0,
        "model": "logreg",
        "model_version": "logreg@d79eff0f",
        "factory": "riverrun.builtin.logreg",
        "params": {"lr": 0.05, "l2": 0.0},
        "river_version": "0.26.1",
        "python_version": "3.11",
        "next_offset": 10000,
        "updates": 6500,
        "created_at": "2026-01-01T12:10:00Z",
        "compression": "zlib",
        "state_bytes": 48213,
        "payload_bytes": 11876,
        "chunks": 1,
        "chunk": 0,
        "hmac": _SIGNATURE,
    },
    PredictRequest: {"key": "visitor-7", "features": {"device": "mobile", "price": 19.9}},
    RequestPrediction: {
        "model": "logreg",
        "key": "visitor-7",
        "prediction": 0.53,
        "model_version": "logreg@d79eff0f",
        "role": "champion",
        "model_updates": 1800,
        "partition": 0,
        "next_offset": 1801,
    },
}

#: Model -> its example, validated (a wrong example fails the import of this module).
EXAMPLES: dict[type[BaseModel], BaseModel] = {
    model: model.model_validate(example) for model, example in _EXAMPLES.items()
}


def example_json(model: type[BaseModel]) -> dict[str, Any]:
    """The example message of `model` as riverrun writes it (JSON values); KeyError when
    the model has none."""
    return dict(json.loads(EXAMPLES[model].model_dump_json()))
