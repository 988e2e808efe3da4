"""Why a model could not predict or learn, in one sentence a person can act on.

Two different faults look alike from the outside: the model's code (a feature function, a
pipeline step, River itself fed a wrong value) raised an exception, which the event's
features or the code caused; or the model's numbers grew past what a float holds (it
diverged), which only its learning rate or the scale of its inputs can cure.
"""

import os
import sys
import sysconfig
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import river
from river import base, optim

#: Faults of numbers, not of code: the model diverged.
NUMERIC_FAULTS = (OverflowError, FloatingPointError)

_RIVER = Path(river.__file__).resolve().parent
_OURS = tuple(
    Path(__file__).resolve().parents[1] / name
    for name in ("online_models", "schemas", "streams", "riverrun")
)
_STDLIB = Path(sysconfig.get_paths()["stdlib"]).resolve()
_INSTALLED = {Path(sysconfig.get_paths()[k]).resolve() for k in ("purelib", "platlib")}


def raised(version: str, err: BaseException, doing: str) -> str:
    """The reason of an exception the model's code raised while `doing` ("predicting"
    or "learning"), naming the innermost line of the user's code it passed through (else
    River's line that raised).

    >>> def to_features(x):
    ...     return {"amount": float(x["amount"])}
    >>> try:
    ...     to_features({"amount": "12,5"})
    ... except ValueError as err:
    ...     print(raised("fraud@1", err, "predicting"))  # doctest: +ELLIPSIS
    model fraud@1's code raised ValueError("could not convert string to float: '12,5'") at \
<doctest ...>:2 (in to_features) while predicting: fix the feature function, or the features \
sent
    """
    where = _where(err)
    at = f" {where}" if where else ""
    return (
        f"model {version}'s code raised {err!r}{at} while {doing}: fix the feature function, "
        "or the features sent"
    )


def diverged(version: str, value: Any, estimator: Any) -> str:
    """The reason of a non-finite prediction (or a numeric overflow): the model diverged.
    Its learning rate is named only when it has one.

    >>> from river import linear_model
    >>> print(diverged("linreg@1", float("nan"), linear_model.LinearRegression()))
    model linreg@1 predicted nan: it has diverged; lower its learning rate or scale the \
features, then restart it
    >>> print(diverged("blr@1", float("inf"), linear_model.BayesianLinearRegression()))
    model blr@1 predicted inf: it has diverged; scale the features (or bound the values its \
feature function returns), then restart it
    """
    what = f"overflowed ({value!r})" if isinstance(value, BaseException) else f"predicted {value}"
    if has_learning_rate(estimator):
        advice = "lower its learning rate or scale the features"
    else:
        advice = "scale the features (or bound the values its feature function returns)"
    return f"model {version} {what}: it has diverged; {advice}, then restart it"


def summary(reason: str) -> str:
    """A reason without its advice: up to the last ": " before the first "; " or ": fix".

    >>> summary(raised("m@1", TypeError("a: b"), "predicting"))
    "model m@1's code raised TypeError('a: b') while predicting"
    >>> summary("model m@1 predicted nan: it has diverged; lower its learning rate")
    'model m@1 predicted nan'
    """
    for end in (": fix the feature function", ": it has diverged"):
        if end in reason:
            return reason.split(end)[0]
    return reason.split(";")[0]


def has_learning_rate(estimator: Any) -> bool:
    """Whether a River estimator (a pipeline, a wrapper) holds an optimizer somewhere.

    >>> from river import linear_model, preprocessing, tree
    >>> has_learning_rate(preprocessing.StandardScaler() | linear_model.LogisticRegression())
    True
    >>> has_learning_rate(tree.HoeffdingTreeClassifier())
    False
    """
    return any(isinstance(part, optim.base.Optimizer) for part in _parts(estimator, 5))


def _parts(obj: Any, depth: int) -> Iterator[Any]:
    """`obj` and the River objects among its public attributes (steps, wrapped models,
    lists of them), `depth` levels down."""
    yield obj
    if depth == 0:
        return
    if isinstance(obj, dict):
        children = list(obj.values())
    elif isinstance(obj, list | tuple):
        children = list(obj)
    elif isinstance(obj, base.Base):
        children = [v for k, v in vars(obj).items() if not k.startswith("_")]
        steps = getattr(obj, "steps", None)  # a Pipeline keeps its steps in a public dict
        if isinstance(steps, dict):
            children += list(steps.values())
    else:
        return
    for child in children:
        if isinstance(child, base.Base | dict | list | tuple):
            yield from _parts(child, depth - 1)


def _where(err: BaseException) -> str:
    """`at path:line (in function)` of the innermost frame of the user's code the
    exception passed through, else `in River's path:line`; empty when neither."""
    frames = traceback.extract_tb(err.__traceback__)
    river_frame = None
    for frame in reversed(frames):
        path = Path(frame.filename)
        if not path.is_absolute():  # <doctest ...>, <string>: the user's all the same
            return f"at {frame.filename}:{frame.lineno} (in {frame.name})"
        path = path.resolve()
        if path.is_relative_to(_RIVER):
            river_frame = river_frame or frame
            continue
        if any(path.is_relative_to(ours) for ours in _OURS) or _is_stdlib(path):
            continue
        return f"at {_shown(path)}:{frame.lineno} (in {frame.name})"
    if river_frame is not None:
        shown = Path(river_frame.filename).resolve().relative_to(_RIVER.parent)
        return f"in River's {shown.as_posix()}:{river_frame.lineno} (in {river_frame.name})"
    return ""


def _is_stdlib(path: Path) -> bool:
    return path.is_relative_to(_STDLIB) and not any(path.is_relative_to(p) for p in _INSTALLED)


def _shown(path: Path) -> str:
    """`path` relative to the import root it was found under (a package's own path, as
    in `mypkg/models.py`), else as it is."""
    roots = [Path(p).resolve() for p in sys.path if p and os.path.isdir(p)]
    under = [root for root in roots if path.is_relative_to(root)]
    if not under:
        return str(path)
    return path.relative_to(max(under, key=lambda root: len(root.parts))).as_posix()
