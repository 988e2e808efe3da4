"""Request-time predictions: what the live replica says for a key now, learning nothing.

A worker's HTTP API (`streams.http.server`) answers `POST /v1/models/{name}/predict` with
`predict_now` on the learner of the key's partition. The version that answers is the one
the stream would route the key to at this point (champion, canary or experiment arm; see
`ModelGroup.route_now` for bandits); its prediction is the one the stream would make for
an event with these features now. Nothing changes: no learning, no metrics, no drift, no
de-duplication window, no bandit draw.

>>> from datetime import UTC, datetime
>>> from online_models import Learner
>>> from schemas import InputEvent
>>> from riverrun.builtin import app
>>> learner = Learner(["logreg"], registry=app.models)
>>> before = predict_now(learner, "logreg", "visitor-7", {"device": "mobile"})
>>> before.prediction, before.role, before.updates
(0.5, 'champion', 0)
>>> event = InputEvent(event_id="e1", ts=datetime(2026, 1, 1, tzinfo=UTC), model="logreg",
...                    key="visitor-7", features={"device": "mobile"}, label=True)
>>> unlabelled = event.model_copy(update={"event_id": "e2", "label": None})
>>> stream = learner.process([event, unlabelled])
>>> after = predict_now(learner, "logreg", "visitor-7", {"device": "mobile"})
>>> after.prediction == stream[1].prediction, after.updates
(True, 1)
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from online_models.learning.learner import Learner, LearningError
from online_models.models.registry import Task
from schemas.control import Role
from schemas.dead_letter import ErrorType


@dataclass(frozen=True)
class Answer:
    """One request-time prediction and who made it."""

    model: str
    version: str
    role: Role
    task: Task
    #: Binary: P(true); regression: the value; multiclass: class -> probability.
    prediction: Any
    updates: int
    arm: str | None = None
    experiment: str | None = None


def predict_now(learner: Learner, model: str, key: str, features: Mapping[str, Any]) -> Answer:
    """`model`'s prediction for `key` with `features` from `learner`'s replicas as they
    are; raises LearningError (the reason a dead letter of the same event would carry)
    when the model is not served or the serving version cannot predict."""
    served = learner.models.get(model)
    if served is None:
        raise LearningError(
            ErrorType.UNKNOWN_MODEL,
            f"no model named {model!r} is served here (served: {', '.join(learner.models)}); "
            "fix the model in the URL or add the model to RIVERRUN_MODELS",
        )
    group = learner.groups.get(model)
    if group is None:
        return Answer(
            model,
            served.version,
            "champion",
            served.task,
            served.predict(dict(features)),
            served.updates,
        )
    version, routing = group.route_now(key)
    member = group.versions.get(version)
    if member is None:  # a version this worker cannot build: the champion serves
        member, routing = served, routing.model_copy(update={"role": "champion", "arm": None})
    return Answer(
        model,
        member.version,
        routing.role,
        member.task,
        member.predict(dict(features)),
        member.updates,
        routing.arm,
        routing.experiment,
    )
