"""Pure learning: model registry, predict-then-learn, quality. No Kafka, no environment."""

from online_models.learner import Learner, Rejection
from online_models.registry import MODELS, ModelSpec, Task

__all__ = ["MODELS", "Learner", "ModelSpec", "Rejection", "Task"]
