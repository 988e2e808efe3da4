"""What POST /v1/events refuses at once is exactly what a replica refuses for any state:
`online_models.learning.admission` against `ServedModel.target`, label by label, task by task."""

from typing import Any

import pytest

from online_models.learning.admission import label_problem, refusal
from online_models.learning.learner import LearningError, ServedModel
from online_models.quality.evaluation import EvaluationConfig
from schemas import ErrorType, InputEvent
from tests.builtin import MODELS

LABELS: list[Any] = [True, False, 0, 1, 2, -1, 0.0, 1.0, 0.5, 3.2, "true", "0", "cat", "3.2"]


@pytest.mark.parametrize("name", ["logreg", "linreg", "softmax"])
def test_the_same_labels_are_refused_with_the_same_reason_as_a_fresh_replica(name: str) -> None:
    spec = MODELS[name]
    for label in LABELS:
        replica = ServedModel(spec, EvaluationConfig())  # fresh: no class learnt yet
        try:
            replica.target(label)
            expected = None
        except LearningError as err:
            assert err.error_type is ErrorType.INVALID_LABEL
            expected = err.reason
        assert label_problem(name, spec.task, label) == expected, label


def test_a_multiclass_type_clash_depends_on_state_and_is_left_to_the_replica() -> None:
    replica = ServedModel(MODELS["softmax"], EvaluationConfig())
    replica.target(3)
    with pytest.raises(LearningError, match="already learns a class that equals it"):
        replica.target("3")
    assert label_problem("softmax", "multiclass", "3") is None  # not known at admission


def test_refusal_names_the_first_refused_item_of_a_list() -> None:
    def event(model: str, label: Any) -> InputEvent:
        return InputEvent.model_validate(
            {"event_id": "e", "ts": 0, "model": model, "key": "k", "features": {}, "label": label}
        )

    served = ["logreg", "linreg"]
    assert refusal([event("logreg", True), event("linreg", 2.5)], served, MODELS) is None
    error_type, reason = refusal(
        [event("logreg", True), event("logreg", "yes")], served, MODELS
    ) or (None, "")
    assert error_type is ErrorType.INVALID_LABEL
    assert (
        reason == "[1]: label 'yes' is not a class of binary model 'logreg': send true/false or 0/1"
    )
    assert refusal([event("softmax", "cat")], served, MODELS) == (
        ErrorType.UNKNOWN_MODEL,
        "no model named 'softmax' is served here (served: logreg, linreg); fix the event's "
        "'model' field",
    )
