"""Pure learning: model registry, predict-then-learn, quality. No Kafka, no environment."""

from online_models.learning.learner import Learner, Rejection
from online_models.models.registry import ModelError, ModelSpec, Task, model_spec

__all__ = ["Learner", "ModelError", "ModelSpec", "Rejection", "Task", "model_spec"]
