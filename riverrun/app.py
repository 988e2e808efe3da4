"""`riverrun.App`: the models a team serves, registered in the team's own package.

>>> import riverrun
>>> from river import linear_model, preprocessing
>>> app = riverrun.App()
>>> @app.model("ctr_adam", task="binary")
... def ctr_adam(lr: float = 0.01):
...     from river import optim
...     return preprocessing.StandardScaler() | linear_model.LogisticRegression(optim.Adam(lr))
>>> app.models["ctr_adam"].params
{'lr': 0.01}
>>> app.models["ctr_adam"].version.startswith("ctr_adam@")
True
"""

from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from types import MappingProxyType
from typing import Any, TypeVar

from online_models.models.registry import ModelError, ModelSpec, Scope, Task, model_spec
from schemas.formats.events import EventHook, hook_name
from schemas.formats.mapping import EventMapping
from streams.cli import app_loading
from streams.cli.app_loading import AppError
from streams.settings import Settings, TokenProvider

Factory = TypeVar("Factory", bound=Callable[..., Any])
Decoder = TypeVar("Decoder", bound=EventHook)

__all__ = ["App", "AppError", "load_app"]


class App:
    """A set of named River model factories, and the settings to serve them with.

    Parameters
    ----------
    settings
        The worker's settings. Unset: read from the `RIVERRUN_*` environment variables
        when first needed. Set: they are the defaults, and `RIVERRUN_*` variables still
        override them (a deployment changes settings without changing code).
    include
        Other apps whose models this one serves too, e.g. `riverrun.builtin.app`.
    oauth_token_provider
        For `RIVERRUN_SASL_MECHANISM=OAUTHBEARER`: a function returning a current access
        token (it is called again whenever a connection authenticates; cache the token
        and refresh it before it expires). It may block: riverrun calls it in a thread.
    event_mapping
        Which fields of the events topic's records are an event's id, time, key, label
        and model, and which are its features, for a topic that does not carry riverrun's
        own events. `RIVERRUN_EVENT_MAPPING` overrides it. For what a mapping cannot say,
        register a function with `event_decoder` instead.
    """

    def __init__(
        self,
        *,
        settings: Settings | None = None,
        include: Iterable["App"] = (),
        oauth_token_provider: TokenProvider | None = None,
        event_mapping: EventMapping | None = None,
    ) -> None:
        self._settings = settings
        self.oauth_token_provider = oauth_token_provider
        self._models: dict[str, ModelSpec] = {}
        self._event_mapping = event_mapping
        self._event_decoder: EventHook | None = None
        for other in include:
            self.include(other)

    def model(
        self,
        name: str,
        *,
        task: Task,
        version: str | None = None,
        scope: Scope = "global",
        **params: Any,
    ) -> Callable[[Factory], Factory]:
        """Register the decorated factory under `name`.

        The factory returns a fresh River estimator or pipeline. Its parameters are its
        signature's defaults, overridden by `params` here, then by
        `RIVERRUN_MODEL_PARAMS`. `task` is `binary`, `multiclass` or `regression`. The
        model's version is a hash of the factory's code, its parameters and the model it
        builds, unless `version` pins it: a checkpoint is restored only into the version
        that wrote it.

        Another factory registered under a name taken already, with a `version` of its
        own and the same task, is another version of that model (e.g. a second
        pipeline): a worker serves the first registered one until a plan says otherwise
        (`riverrun models deploy NAME --version V`).

        `scope="global"` (the default): one model learns from every partition of the
        events topic, in the order of the learn topic, and every worker predicts with its
        newest snapshot. `scope="partition"`: one replica per input partition, learning
        from that partition's events only (a model meant per shard).
        `RIVERRUN_MODEL_SCOPES` overrides it per model.
        """

        def register(factory: Factory) -> Factory:
            self._add(model_spec(name, task, factory, params, version, scope))
            return factory

        return register

    def event_decoder(self, function: Decoder) -> Decoder:
        """Register the decorated function to make each record of the events topic an
        event, for what an `event_mapping` cannot say.

        The function gets the record as a dict (a JSON object, or an Avro or Protobuf
        record as plain values: timestamps as datetimes) and returns an `InputEvent`'s
        fields: `model`, `key`, `features`, optionally `label`, `event_id` (default:
        `<topic>:<partition>:<offset>`) and `ts` (default: the record's Kafka
        timestamp). They are validated as an InputEvent's. Whatever it raises makes the
        record a dead letter whose reason names the function and says the error. One app
        has one way to make records events: a decoder or a mapping.

        >>> import riverrun
        >>> app = riverrun.App()
        >>> @app.event_decoder
        ... def click(record):
        ...     return {"model": "ctr", "key": record["visitor"],
        ...             "features": {"price": record["price_cents"] / 100}}
        >>> app.event_decoder_function is click
        True
        """
        taken = self._event_decoder
        if taken is not None and taken is not function:
            raise AppError(
                f"two event decoders are registered ({hook_name(taken)} and "
                f"{hook_name(function)}); records are made events by one function: keep one"
            )
        if self._event_mapping is not None:
            raise _mapping_and_decoder(function)
        self._event_decoder = function
        return function

    @property
    def event_mapping(self) -> EventMapping | None:
        """The mapping of the events topic's records to events, if the app has one."""
        return self._event_mapping

    @property
    def event_decoder_function(self) -> EventHook | None:
        """The function registered with `@app.event_decoder`, if any."""
        return self._event_decoder

    def include(self, other: "App") -> "App":
        """Serve `other`'s models too (a name in both apps is an error), and make records
        events with its mapping or event decoder when this app has none."""
        for spec in other.models.values():
            self._add(spec)
        if other.event_mapping is not None:
            self._map_events(other.event_mapping)
        if other.event_decoder_function is not None:
            self.event_decoder(other.event_decoder_function)
        return self

    def _map_events(self, mapping: EventMapping) -> None:
        if self._event_mapping is not None and self._event_mapping != mapping:
            raise AppError(
                "the app and an app it includes have different event mappings: records are "
                "made events by one mapping; keep one"
            )
        if self._event_decoder is not None:
            raise _mapping_and_decoder(self._event_decoder)
        self._event_mapping = mapping

    def _add(self, spec: ModelSpec) -> None:
        existing = self._models.get(spec.name)
        if existing is None:
            self._models[spec.name] = spec
            return
        for added in spec.variants():
            self._models[spec.name] = _another_version(self._models[spec.name], added)

    @property
    def models(self) -> Mapping[str, ModelSpec]:
        """The registered models by name (read-only)."""
        return MappingProxyType(self._models)

    @property
    def settings(self) -> Settings:
        """The settings this app is served with (see the class docstring)."""
        if self._settings is None:
            self._settings = Settings()
        return self._settings.with_token_provider(self.oauth_token_provider)

    def served_settings(self, environment: Settings) -> Settings:
        """The settings given in code, overridden by those set in `environment`, with
        the app's token provider."""
        served = (
            environment if self._settings is None else self._settings.overridden_by(environment)
        )
        return served.with_token_provider(self.oauth_token_provider)

    def __repr__(self) -> str:
        return f"<riverrun.App models={sorted(self._models)}>"


def _mapping_and_decoder(decoder: EventHook) -> AppError:
    return AppError(
        f"the app has both an event mapping and an event decoder ({hook_name(decoder)}): "
        "records are made events one way; keep the mapping (App(event_mapping=...)) or the "
        "function (@app.event_decoder)"
    )


def _another_version(served: ModelSpec, added: ModelSpec) -> ModelSpec:
    """`served` (the model a worker serves) with `added`, a factory registered later under
    the same name, as another version; ModelError unless `added` pins a version of its own
    and has the same task."""
    both = f"({_where(served.factory)} and {_where(added.factory)})"
    if added.pinned_version is None:
        raise ModelError(
            f"model name {added.name!r} is registered twice {both}; give one of them another "
            f'name, or pin a version on the later one (e.g. version="2") to make it another '
            f"version of {added.name!r}"
        )
    taken = [s.pinned_version for s in served.variants()]
    if added.pinned_version in taken:
        raise ModelError(
            f"model {added.name!r} has version {added.pinned_version!r} twice {both}; give "
            "each factory its own version"
        )
    if added.task != served.task:
        raise ModelError(
            f"model {added.name!r} is registered with task {served.task!r} and "
            f"{added.task!r} {both}; versions of one model serve one task: give the other "
            "one another name"
        )
    if added.scope != served.scope:
        raise ModelError(
            f"model {added.name!r} is registered with scope {served.scope!r} and "
            f"{added.scope!r} {both}; versions of one model share one scope"
        )
    return replace(served, others=(*served.others, added))


def _where(factory: Callable[..., Any]) -> str:
    code = getattr(factory, "__code__", None)
    module = getattr(factory, "__module__", "?")
    name = getattr(factory, "__qualname__", repr(factory))
    return f"{module}.{name}" + (f", line {code.co_firstlineno}" if code else "")


def load_app(path: str) -> App:
    """The App at `module:attribute` (like uvicorn's and Faust's -A), importing the module
    with the working directory on the import path. Raises AppError or ModelError."""
    app = app_loading.load_app(path)
    if not isinstance(app, App):
        raise AppError(app_loading.not_an_app(path, app))
    return app
