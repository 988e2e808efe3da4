"""What every `riverrun` command shares: the --app option, the app and settings it names
(each mistake one sentence), and the check that the configured broker answers."""

from dataclasses import dataclass

import click
from pydantic import ValidationError

from online_models.models.registry import ModelError, ModelSpec
from schemas.formats.mapping import EventMapping
from streams.cli.app_loading import AppError, ServedApp, load_app
from streams.services.formats import EventHook
from streams.settings import Settings, describe_error


def load_settings() -> Settings:
    """The settings of the RIVERRUN_* environment; one sentence per mistake if invalid."""
    try:
        return Settings()
    except ValidationError as err:
        raise click.ClickException(
            f"invalid settings: {describe_error(err)} (see the docs' Settings reference)"
        ) from None


def load(app_path: str | None) -> tuple[ServedApp, Settings]:
    """The app named by --app (else RIVERRUN_APP, else the built-in models) and the
    settings it is served with."""
    environment = load_settings()
    path = app_path or environment.app
    try:
        app = load_app(path)
    except (AppError, ModelError) as err:
        raise click.ClickException(str(err)) from None
    try:
        settings = app.served_settings(environment)
    except ValidationError as err:
        raise click.ClickException(
            f"invalid settings of {path}: {describe_error(err)} (see the docs' Settings reference)"
        ) from None
    if app_path is not None:  # processes started from here (the demo's worker) serve it too
        settings = settings.model_copy(update={"app": app_path})
    return app, settings


@dataclass(frozen=True)
class EventFormat:
    """How the events topic's records become events: the mapping (RIVERRUN_EVENT_MAPPING,
    else the app's) or the app's event decoder; neither: riverrun's InputEvents."""

    mapping: EventMapping | None
    decoder: EventHook | None


def event_format(app: ServedApp, settings: Settings) -> EventFormat:
    """The app's and the settings' way of making records events; one sentence when they
    name two."""
    decoder = app.event_decoder_function
    if settings.event_mapping is not None and decoder is not None:
        raise click.ClickException(
            f"RIVERRUN_EVENT_MAPPING is set and the app registers an event decoder "
            f"({getattr(decoder, '__qualname__', decoder)}); records are made events one way: "
            "unset the variable or drop the decoder"
        )
    return EventFormat(settings.event_mapping or app.event_mapping, decoder)


def served(app: ServedApp, settings: Settings) -> dict[str, ModelSpec]:
    """The models a worker serves, each built once: a mistake is one sentence here,
    not a traceback inside the worker."""
    from streams.runtime.served_models import served_models

    try:
        return served_models(settings, app.models)
    except ModelError as err:
        raise click.ClickException(str(err)) from None


app_option = click.option(
    "--app",
    "app_path",
    metavar="MODULE:ATTRIBUTE",
    help="The riverrun.App to serve, e.g. mypkg.models:app (default: RIVERRUN_APP, else "
    "riverrun's built-in models).",
)


def require_broker(settings: Settings, timeout: float = 15.0) -> None:
    """Fail with one sentence when the configured cluster does not answer."""
    from streams.kafka.local_broker import LocalKafkaError, wait_until_ready
    from streams.kafka.security import SecurityError, check_connection, describe, kafka_options

    try:
        check_connection(settings, timeout)
        wait_until_ready(
            settings.bootstrap_servers, timeout, kafka_options(settings), describe(settings)
        )
    except SecurityError as err:
        raise click.ClickException(str(err)) from None
    except LocalKafkaError as err:
        hint = (
            "start the local broker with `riverrun kafka up`"
            if settings.uses_local_broker
            else "check RIVERRUN_BROKER"
        )
        raise click.ClickException(f"{err} — {hint}") from None


def load_runnable(app_path: str | None) -> tuple[ServedApp, Settings]:
    """`load`, then what a long-running process checks before it starts (`worker`,
    `serve`): settings it can run with, models that build, a broker that answers."""
    app, settings = load(app_path)
    problems = settings.worker_problems()
    if problems:
        raise click.ClickException("; ".join(problems))
    served(app, settings)
    event_format(app, settings)
    require_broker(settings)
    return app, settings
