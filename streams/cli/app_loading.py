"""The app a command serves, found by its `module:attribute` path (like uvicorn's and
Faust's -A): any object with the models by name and the settings to serve them with.

`riverrun.App` is one; the built-in models are the app `riverrun.builtin:app`, imported
by name like any user's, so that `streams` never imports `riverrun` (which builds on it).
"""

import importlib
import sys
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from online_models.models.registry import ModelError, ModelSpec
from schemas.formats.mapping import EventMapping
from streams.settings import Settings

#: The app served when neither --app nor RIVERRUN_APP names one.
DEFAULT_APP = "riverrun.builtin:app"


class AppError(Exception):
    """An `--app` that cannot be served; `str()` is one sentence saying what to do."""


@runtime_checkable
class ServedApp(Protocol):
    """What a command needs of an app (`riverrun.App` has it)."""

    @property
    def models(self) -> Mapping[str, ModelSpec]:
        """The registered models by name."""
        ...

    def served_settings(self, environment: Settings) -> Settings:
        """The settings given in code, overridden by those set in `environment`."""
        ...

    @property
    def event_mapping(self) -> EventMapping | None:
        """The mapping of the events topic's records to events, if the app has one."""
        ...

    @property
    def event_decoder_function(self) -> Callable[[dict[str, Any]], Mapping[str, Any]] | None:
        """The function making each record of the events topic an event, if any."""
        ...


def load_app(path: str = DEFAULT_APP) -> ServedApp:
    """The app at `module:attribute`, importing the module with the working directory on
    the import path. Raises AppError or ModelError.

    >>> sorted(load_app("riverrun.builtin:app").models)[:2]
    ['clicks', 'ctr']
    >>> load_app("riverrun.builtin")
    Traceback (most recent call last):
    ...
    streams.cli.app_loading.AppError: --app 'riverrun.builtin' is not of the form ...
    """
    module_name, _, attribute = path.partition(":")
    if not module_name or not attribute:
        raise AppError(
            f"--app {path!r} is not of the form module:attribute (e.g. mypkg.models:app)"
        )
    cwd = str(Path.cwd())
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ModelError:
        raise
    except ModuleNotFoundError as err:
        if err.name is not None and module_name.startswith(err.name):
            raise AppError(
                f"cannot import {module_name!r} for --app {path} (no module named "
                f"{err.name!r}): install its package or run riverrun from the directory "
                "that holds it"
            ) from None
        raise AppError(_import_failure(module_name, err)) from None
    except Exception as err:  # the user's module failed while importing: where and why
        raise AppError(_import_failure(module_name, err)) from None
    try:
        app = getattr(module, attribute)
    except AttributeError:
        raise AppError(
            f"module {module_name!r} has no attribute {attribute!r}; --app names the App "
            f"object, e.g. {module_name}:app"
        ) from None
    if not isinstance(app, ServedApp):
        raise AppError(not_an_app(path, app))
    return app


def not_an_app(path: str, found: object) -> str:
    """The sentence for an `--app` path that names something else than an app."""
    return (
        f"{path} is a {type(found).__name__}, not a riverrun.App; create one with "
        "`app = riverrun.App()` and register models with @app.model(...)"
    )


def _import_failure(module_name: str, err: BaseException) -> str:
    frames = traceback.extract_tb(err.__traceback__)
    user = [f for f in frames if "importlib" not in f.filename]
    at = f" at {user[-1].filename}:{user[-1].lineno}" if user else ""
    return (
        f"importing {module_name!r} failed{at} ({type(err).__name__}: {err}); fix the module "
        "and start again"
    )
