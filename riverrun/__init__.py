"""riverrun: online machine learning on Kafka streams, with River models.

The public API. Register your River pipelines on an `App` in your own package and serve
them with `riverrun worker --app mypkg.models:app`; everything not listed in `__all__`
may change between releases.
"""

from importlib.metadata import PackageNotFoundError, version

from online_models.models.registry import ModelError, ModelSpec, Task
from riverrun import builtin
from riverrun.app import App, AppError, load_app
from schemas import DeadLetter, ErrorType, InputEvent, MetricsReport, Prediction
from schemas.formats.mapping import EventMapping
from streams.settings import Settings

try:
    __version__ = version("riverrun")
    """The installed riverrun's version (what `riverrun --version` prints)."""
except PackageNotFoundError:  # pragma: no cover - running from a checkout without install
    __version__ = "0+unknown"

__all__ = [
    "App",
    "AppError",
    "DeadLetter",
    "ErrorType",
    "EventMapping",
    "InputEvent",
    "MetricsReport",
    "ModelError",
    "ModelSpec",
    "Prediction",
    "Settings",
    "Task",
    "__version__",
    "builtin",
    "load_app",
]
