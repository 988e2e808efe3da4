"""What an event must be for a model to learn from it, as far as it is known before the
event reaches a replica: the model is served, the label suits the model's task.

What depends on a replica's state is left to the stream: a multiclass label whose text
equals a class already learnt with another type (`"3"` after `3`), and an event id the
replica processed lately (`duplicate_event`).
"""

from collections.abc import Mapping, Sequence

from online_models.models.registry import ModelSpec
from schemas import ErrorType, InputEvent

#: A model's task: "binary", "multiclass" or "regression".
Task = str


def label_problem(model: str, task: Task, label: bool | float | str) -> str | None:
    """Why `model` (a model of `task`) cannot learn `label`, or None when it can.

    >>> label_problem("logreg", "binary", True), label_problem("logreg", "binary", 0)
    (None, None)
    >>> label_problem("logreg", "binary", "true")
    "label 'true' is not a class of binary model 'logreg': send true/false or 0/1"
    >>> label_problem("softmax", "multiclass", 2.5).split(":")[0]
    "label 2.5 is not a class of multiclass model 'softmax'"
    >>> label_problem("linreg", "regression", "3.2")
    "label '3.2' is not a number: regression model 'linreg' learns finite numbers"
    """
    if task == "binary":
        if not isinstance(label, str) and label in (0, 1):  # True/False, 0/1, 0.0/1.0
            return None
        return f"label {label!r} is not a class of binary model {model!r}: send true/false or 0/1"
    if task == "multiclass":
        if not isinstance(label, float):
            return None
        return (
            f"label {label!r} is not a class of multiclass model {model!r}: send a string, an "
            "integer or true/false"
        )
    if isinstance(label, str):
        return f"label {label!r} is not a number: regression model {model!r} learns finite numbers"
    return None


def refusal(
    events: Sequence[InputEvent], served: Sequence[str], models: Mapping[str, ModelSpec]
) -> tuple[ErrorType, str] | None:
    """The dead-letter type and reason of the first event of `events` the stream would
    refuse whatever its state (the reason of an item of a list starts with `[i]: `), or
    None when every one may be learnt."""
    for i, event in enumerate(events):
        where = f"[{i}]: " if len(events) > 1 else ""
        spec = models.get(event.model)
        if event.model not in served or spec is None:
            return ErrorType.UNKNOWN_MODEL, (
                f"{where}no model named {event.model!r} is served here (served: "
                f"{', '.join(served)}); fix the event's 'model' field"
            )
        if event.label is not None:
            problem = label_problem(event.model, spec.task, event.label)
            if problem is not None:
                return ErrorType.INVALID_LABEL, where + problem
    return None
