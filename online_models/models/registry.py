"""Named model factories and their versions. An app (`riverrun.App`) registers them; the
code here takes the registry it serves as a parameter.

>>> from river import linear_model
>>> spec = model_spec("lin", "regression", lambda lr=0.1: linear_model.LinearRegression())
>>> spec.task, spec.params
('regression', {'lr': 0.1})
>>> model = spec.create()
"""

import ast
import contextvars
import difflib
import functools
import hashlib
import inspect
import json
import re
import textwrap
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal, cast, get_args

from river import base, compose

Task = Literal["binary", "multiclass", "regression"]
"""What a model learns: `binary` (a probability of the positive class), `multiclass`
(one of several classes) or `regression` (a number)."""
TASKS: tuple[str, ...] = get_args(Task)
Scope = Literal["global", "partition"]
SCOPES: tuple[str, ...] = get_args(Scope)


class ModelError(ValueError):
    """A model that cannot be served as registered; `str()` is one sentence saying why
    and what to do."""


@dataclass(frozen=True)
class ModelSpec:
    """A named factory: what kind of model it makes and with which parameters.

    `version` names what the factory builds: it changes when what the factory's code
    does, what the non-River classes and functions in the model it builds do, or the
    parameters change (comments, docstrings and formatting do not count), unless the
    user pins it (`pinned_version`).
    """

    name: str
    task: Task
    factory: Callable[..., base.Estimator]
    params: Mapping[str, Any] = field(default_factory=dict)
    pinned_version: str | None = None
    #: Other factories registered under the same name, each with its pinned version:
    #: other versions of the model a plan may deploy (`riverrun models deploy --version`).
    others: tuple["ModelSpec", ...] = ()
    #: "global": one learning state for the whole consumer group, fed by the learn topic
    #: and served from its snapshots; "partition": one replica per input partition,
    #: learning from that partition's events only. Not part of the version.
    scope: Scope = "global"

    def create(self) -> base.Estimator:
        """A fresh, untrained model."""
        return self.factory(**self.params)

    def with_params(self, **params: Any) -> "ModelSpec":
        """The same factory with some parameters changed (a pinned version says so)."""
        merged = {**self.params, **params}
        pinned = self.pinned_version
        if pinned is not None and _canonical(merged) != _canonical(self.params):
            pinned = f"{pinned}+{_digest(_canonical(merged))}"
        return replace(self, params=merged, pinned_version=pinned)

    def variants(self) -> tuple["ModelSpec", ...]:
        """This factory and the other versions registered under its name, in order."""
        return (replace(self, others=()), *self.others)

    def registered(self, version: str) -> "ModelSpec | None":
        """The factory registered under this name with pinned `version` (or `name@version`),
        with its own parameters; None when there is none."""
        for spec in self.variants():
            if spec.pinned_version is not None and version in (
                spec.pinned_version,
                f"{self.name}@{spec.pinned_version}",
            ):
                return spec
        return None

    def building(self, version: str, params: Mapping[str, Any]) -> "ModelSpec | None":
        """The factory registered under this name that builds `version` (`name@...`) with
        `params`, with them applied; None when this code builds no such version."""
        for spec in self.variants():
            try:
                candidate = spec.with_params(**params)
                if candidate.version == version:
                    return candidate
                if candidate.legacy_version == version:  # a plan of riverrun 0.1.0
                    return replace(candidate, pinned_version=version.partition("@")[2])
            except Exception:  # the user's factory cannot take these parameters
                continue
        return None

    def scoped(self, scope: str) -> "ModelSpec":
        """The same model with another scope (RIVERRUN_MODEL_SCOPES)."""
        if scope not in SCOPES:
            raise ModelError(
                f"model {self.name!r} has scope {scope!r}; choose one of {', '.join(SCOPES)}"
            )
        return replace(
            self, scope=cast(Scope, scope), others=tuple(o.scoped(scope) for o in self.others)
        )

    def renamed(self, name: str) -> "ModelSpec":
        """The same factory and parameters under another name (another replica)."""
        return replace(self, name=name)

    @property
    def version(self) -> str:
        """`name@hash` of the factory's code and parameters (or `name@<pinned>`): equal
        versions build equal models."""
        if self.pinned_version is not None:
            return f"{self.name}@{self.pinned_version}"
        return f"{self.name}@{_code_version(self.factory, self.params)}"

    @property
    def legacy_version(self) -> str | None:
        """The version riverrun 0.1.0 gave the same code (a hash of its source text, not of
        its syntax tree), so that checkpoints and plans written before the change are
        still this version's while the source is byte for byte the same; None when
        pinned (a pinned version never changed)."""
        if self.pinned_version is not None:
            return None
        return f"{self.name}@{_code_version(self.factory, self.params, legacy=True)}"

    def is_version(self, version: str) -> bool:
        """Whether `version` names what this spec builds (today's hash or, for the same
        source text, the hash of riverrun 0.1.0)."""
        return version in (self.version, self.legacy_version)

    def check(self) -> None:
        """Build the model once; raise ModelError when it cannot serve its task."""
        where = f"model {self.name!r} ({_qualified(self.factory)})"
        try:
            model = self.create()
        except TypeError as err:
            raise ModelError(
                f"{where} cannot be built with parameters {dict(self.params)} ({err}); fix "
                "RIVERRUN_MODEL_PARAMS or the factory's signature"
            ) from None
        except Exception as err:  # the user's code: say where it failed, not a traceback
            raise ModelError(
                f"{where} failed to build its model ({type(err).__name__}: {err}); fix the factory"
            ) from None
        if not isinstance(model, base.Estimator):
            raise ModelError(
                f"{where} returned {type(model).__name__}, not a River estimator; the "
                "factory must return a River model or pipeline (e.g. "
                "preprocessing.StandardScaler() | linear_model.LogisticRegression())"
            )
        final = model
        while isinstance(final, compose.Pipeline):
            final = final._last_step
        kind = type(final).__name__
        if self.task == "regression" and not isinstance(final, base.Regressor):
            raise ModelError(
                f"{where} is registered with task='regression' but its model ends with "
                f"{kind}, which is not a regressor; register it with the task it does"
            )
        if self.task in ("binary", "multiclass") and not isinstance(final, base.Classifier):
            raise ModelError(
                f"{where} is registered with task={self.task!r} but its model ends with "
                f"{kind}, which is not a classifier; use task='regression' for a regressor"
            )
        if self.task == "multiclass" and not getattr(model, "_multiclass", False):
            raise ModelError(
                f"{where} is registered with task='multiclass' but {kind} only tells two "
                "classes apart; wrap it in river.multiclass.OneVsRestClassifier or register "
                "it with task='binary'"
            )


def model_spec(
    name: str,
    task: str,
    factory: Callable[..., Any],
    params: Mapping[str, Any] | None = None,
    version: str | None = None,
    scope: str = "global",
) -> ModelSpec:
    """A spec of `factory`: its parameters are its signature's defaults, overridden by
    `params`. Raises ModelError for what can never work (an unknown task, a parameter
    without a value, a version that is not a short name)."""
    where = f"model {name!r} ({_qualified(factory)})"
    if task not in TASKS:
        raise ModelError(f"{where} has task {task!r}; choose one of {', '.join(TASKS)}")
    if not callable(factory):
        raise ModelError(f"{where} is not a function that builds a River model")
    if version is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", version):
        raise ModelError(
            f"{where} has version {version!r}; a version is 1-64 letters, digits, '.', '_' or '-'"
        )
    defaults: dict[str, Any] = {}
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        signature = None
    if signature is not None:
        for parameter in signature.parameters.values():
            if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
                continue
            if parameter.default is not parameter.empty:
                defaults[parameter.name] = parameter.default
        merged = {**defaults, **(params or {})}
        missing = [
            p.name
            for p in signature.parameters.values()
            if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
            and p.default is p.empty
            and p.name not in merged
        ]
        if missing:
            raise ModelError(
                f"{where} has parameters without a value ({', '.join(missing)}); give them "
                "defaults in the factory's signature or in the decorator"
            )
    else:
        merged = dict(params or {})
    spec = ModelSpec(name, task, factory, merged, version)  # type: ignore[arg-type]
    return spec.scoped(scope)


# --- versions ----------------------------------------------------------------------------
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def _canonical(params: Mapping[str, Any]) -> str:
    return json.dumps(_describe(dict(params)), sort_keys=True)


def _qualified(obj: Any) -> str:
    return f"{getattr(obj, '__module__', None) or '?'}.{getattr(obj, '__qualname__', repr(obj))}"


#: riverrun's own code that moved since riverrun 0.1.0, by module: its new module, the
#: module it had in 0.1.0 and the decorator it was registered with there. A version hashes
#: such code under its 0.1.0 name and text, so that moving code (the built-in models went
#: from `online_models.registry`'s `@register(...)` to `riverrun.builtin`'s
#: `@app.model(...)`) never changes a version: every checkpoint and plan of the built-in
#: models stays theirs.
FORMER_NAMES: dict[str, tuple[str, tuple[str, str] | None]] = {
    "riverrun.builtin": ("online_models.registry", ("@app.model(", "@register(")),
    "online_models.models.features": ("online_models.registry", None),
    "online_models.models.registry": ("online_models.registry", None),
}


def code_name(obj: Any) -> str:
    """`module.qualname` of a function or class, with the module riverrun 0.1.0 gave it
    when it moved since (`FORMER_NAMES`): the name its version hashes.

    >>> from online_models.models.features import MixedFeatures
    >>> code_name(MixedFeatures)
    'online_models.registry.MixedFeatures'
    """
    module = getattr(obj, "__module__", None)
    former = FORMER_NAMES.get(module or "")
    if former is None:
        return _qualified(obj)
    return f"{former[0]}.{getattr(obj, '__qualname__', repr(obj))}"


def _source(obj: Any) -> str | None:
    """The source of a function or class that is not River's own (River's is covered by
    the River version every checkpoint records), as it read where it was in riverrun 0.1.0
    (`FORMER_NAMES`); None when there is none to read."""
    module = getattr(obj, "__module__", None) or ""
    if module == "river" or module.startswith("river."):
        return None
    try:
        source = inspect.getsource(obj)
    except (OSError, TypeError):
        return None
    former = FORMER_NAMES.get(module)
    if former is not None and former[1] is not None and source.startswith(former[1][0]):
        source = former[1][1] + source[len(former[1][0]) :]
    return source


#: Set while a version is computed as riverrun 0.1.0 did (hash of the source text).
_SOURCE_TEXT: contextvars.ContextVar[bool] = contextvars.ContextVar("source_text", default=False)


def _code(obj: Any) -> Any:
    """A function or class as its name and, where readable, a hash of what its source
    does (`_syntax`: comments, docstrings and formatting left out)."""
    source = _source(obj)
    name = code_name(obj)
    if source is None:
        return [name]
    return [name, _digest(source if _SOURCE_TEXT.get() else _syntax(source))]


_DEFINITIONS = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)


def _syntax(source: str) -> str:
    """The syntax tree of `source` as text, without docstrings, comments, line numbers or
    formatting: the same for code that does the same, whatever its layout, and the same
    in every supported Python (empty fields, as a newer Python's additions are in older
    code, are left out). Source that does not parse alone (a lambda's line) stays text.

    >>> _syntax('def f(x):\\n    "Doc."\\n    return x + 1  # one more') == _syntax(
    ...     "def f(x): return (x\\n    + 1)")
    True
    >>> _syntax("def f(x): return x + 1") == _syntax("def f(x): return x + 2")
    False
    """
    try:
        tree = ast.parse(textwrap.dedent(source))
    except SyntaxError:
        return source
    return json.dumps(_shape(tree), separators=(",", ":"))


def _shape(node: Any) -> Any:
    """A syntax tree as JSON-able lists: node type, then each non-empty field."""
    if isinstance(node, ast.AST):
        fields: list[Any] = [type(node).__name__]
        for name, value in ast.iter_fields(node):
            if name == "body" and isinstance(node, _DEFINITIONS) and _docstring(value):
                value = value[1:]
            if name == "values" and isinstance(node, ast.JoinedStr):
                value = _text_parts(value)
            if name == "type_comment" or value is None or value == []:
                continue
            fields.append([name, _shape(value)])
        return fields
    if isinstance(node, list):
        return [_shape(item) for item in node]
    return [type(node).__name__, repr(node)]  # a constant: 1, 1.0 and True differ


def _text_parts(values: list[ast.expr]) -> list[Any]:
    """An f-string's parts with adjacent text joined and empty text left out (Pythons
    split and pad them differently: 3.12.1 adds an empty one after a format spec)."""
    parts: list[Any] = []
    for value in values:
        if isinstance(value, ast.Constant) and isinstance(value.value, str):
            if parts and isinstance(parts[-1], str):
                parts[-1] += value.value
            elif value.value:
                parts.append(value.value)
        else:
            parts.append(value)
    return [ast.Constant(p) if isinstance(p, str) else p for p in parts]


def _docstring(body: list[ast.stmt]) -> bool:
    first = body[0] if body else None
    return (
        isinstance(first, ast.Expr)
        and isinstance(first.value, ast.Constant)
        and isinstance(first.value.value, str)
    )


def _describe(value: Any) -> Any:
    """`value` as JSON-able data that is the same in every process (sets sorted, no
    memory addresses) and names the code behind it."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, compose.Pipeline):
        return {"pipeline": [[name, _describe(step)] for name, step in value.steps.items()]}
    if isinstance(value, compose.TransformerUnion):
        return {"union": [[name, _describe(t)] for name, t in value.transformers.items()]}
    if isinstance(value, base.Base):
        params: dict[str, Any] = {}
        for name in inspect.signature(type(value).__init__).parameters:
            if name != "self":
                params[name] = _describe(getattr(value, name, None))
        return {"class": _code(type(value)), "params": params}
    if isinstance(value, Mapping):
        return sorted([[_describe(k), _describe(v)] for k, v in value.items()], key=repr)
    if isinstance(value, set | frozenset):
        return sorted((_describe(v) for v in value), key=repr)
    if isinstance(value, list | tuple):
        return [_describe(v) for v in value]
    if isinstance(value, functools.partial):
        return {
            "partial": _describe(value.func),
            "args": _describe(value.args),
            "keywords": _describe(value.keywords),
        }
    if inspect.isroutine(value) or inspect.isclass(value):
        return {"code": _code(value)}
    return _ADDRESS.sub("", repr(value))


#: Versions already computed, by (factory, canonical parameters, legacy): computing one
#: builds the model once.
_VERSIONS: dict[tuple[Any, str, bool], str] = {}


def _code_version(
    factory: Callable[..., Any], params: Mapping[str, Any], *, legacy: bool = False
) -> str:
    """Hash of the factory's code, its parameters and the model it builds with them
    (`legacy`: of the code's source text, as riverrun 0.1.0 hashed it)."""
    canonical = _canonical(params)
    key = (factory, canonical, legacy)
    version = _VERSIONS.get(key)
    if version is None:
        token = _SOURCE_TEXT.set(legacy)
        try:
            built = _describe(factory(**params))
            blob = json.dumps([_code(factory), canonical, built], sort_keys=True)
        finally:
            _SOURCE_TEXT.reset(token)
        version = _VERSIONS[key] = _digest(blob)
    return version


def resolve(
    registry: Mapping[str, ModelSpec],
    names: list[str],
    params: Mapping[str, Mapping[str, Any]],
    *,
    other_names: tuple[str, ...] = (),
) -> dict[str, ModelSpec]:
    """The specs of the models `names`, with their `params` applied, each built once to
    check it can serve its task. `other_names` may have parameters too (the join's
    propensity models). Raises ModelError naming the first problem.

    >>> from river import linear_model
    >>> registry = {"logreg": model_spec("logreg", "binary", linear_model.LogisticRegression)}
    >>> resolve(registry, ["logreg"], {"logreg": {"l2": 0.1}})["logreg"].params["l2"]
    0.1
    >>> resolve(registry, ["logrge"], {})
    Traceback (most recent call last):
    ...
    online_models.models.registry.ModelError: no model named 'logrge' (did you mean 'logreg'?) ...
    """
    known = sorted(registry)
    for name in [*names, *(n for n in params if n not in other_names)]:
        if name not in registry:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ModelError(
                f"no model named {name!r}{hint} in the app (it has: {', '.join(known)}); fix "
                "RIVERRUN_MODELS or RIVERRUN_MODEL_PARAMS, or register the model"
            )
    specs = {name: registry[name].with_params(**params.get(name, {})) for name in names}
    for spec in specs.values():
        for variant in spec.variants():  # other versions registered under its name too
            variant.check()
    return specs
