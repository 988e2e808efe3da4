"""`riverrun worker` runs a worker; `riverrun config` prints and checks the settings it
would run with, by section."""

import asyncio
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING

import click

from online_models.models.registry import ModelSpec
from streams.cli.options import (
    app_option,
    event_format,
    load,
    load_runnable,
    load_settings,
    require_broker,
    served,
)
from streams.settings import Settings

if TYPE_CHECKING:
    from streams.http.schema_registry import SchemaRegistry


@click.command()
@app_option
def worker(app_path: str | None) -> None:
    """Run a worker: consume events, predict, learn, publish predictions.

    Serves the app's models (default: the built-in ones): consumes the events and
    activity topics, publishes predictions, dead letters and metrics, and serves
    /metrics, /healthz, /readyz and the /v1 API. Creates missing topics. Restores each
    assigned partition's models from their newest valid checkpoint. Stops cleanly on
    SIGTERM or Ctrl-C, committing its offsets and checkpointing its models.
    """
    from streams.http.ports import PortError, choose_ports
    from streams.kafka.topics import TopicError, ensure_topics
    from streams.runtime.worker import FaustWorker, Worker

    app, settings = load_runnable(app_path)
    try:  # created compacted where they must be; an existing one checked
        ensure_topics(settings)
    except TopicError as err:
        raise click.ClickException(str(err)) from None
    try:  # just before the servers bind: the ports free now, a taken one in one sentence
        ports = choose_ports(settings)
    except PortError as err:
        raise click.ClickException(str(err)) from None
    settings = ports.settings
    click.echo(ports.line, err=True)
    events = event_format(app, settings)
    runtime = Worker(settings, app.models, mapping=events.mapping, event_decoder=events.decoder)
    FaustWorker(
        runtime.app, loglevel=settings.log_level, log_filters=[runtime.broker.quiet]
    ).execute_from_commandline()


@click.command()
@click.option(
    "--env",
    "as_env",
    is_flag=True,
    help="Print the settings that differ from the defaults as an env file (RIVERRUN_*=value "
    "lines under a comment naming their section, for docker --env-file, compose env_file or "
    "kubectl create configmap --from-env-file); secrets are left out, as comments.",
)
@click.option(
    "--connect",
    is_flag=True,
    help="Also connect to the cluster and authenticate (and to the schema registry, when set).",
)
@app_option
def config(as_env: bool, connect: bool, app_path: str | None) -> None:
    """Print and check the effective settings, by section.

    Each setting's value and where it comes from (environment; code: the App's; or
    default), secrets masked. Exits 1 with the reasons when a worker could not start
    with them: a missing shared checkpoint key, TLS files that do not load, OAUTHBEARER
    without a token, a served model that cannot be built.

    With --app, it also lists the app's models: name, task, version (with
    RIVERRUN_MODEL_PARAMS applied), scope (with RIVERRUN_MODEL_SCOPES applied), whether
    this worker serves it (RIVERRUN_MODELS) and its parameters.
    """
    from streams.http.schema_registry import RegistryUnavailable, SchemaRegistry
    from streams.kafka.security import SecurityError, aiokafka_options
    from streams.settings import MASK

    environment = load_settings()
    app, settings = load(app_path)
    problems = settings.worker_problems()
    try:
        aiokafka_options(settings)  # the TLS files load, a token source exists
    except SecurityError as err:
        problems.append(str(err))
    try:
        served(app, settings)  # each served model builds with its parameters
    except click.ClickException as err:
        problems.append(err.message)
    try:
        event_format(app, settings)  # one way of making records events
    except click.ClickException as err:
        problems.append(err.message)
    registry = None
    if settings.schema_registry_url is not None:
        try:  # its TLS files load
            registry = SchemaRegistry(settings)
        except (OSError, ValueError) as err:
            problems.append(f"the schema registry's TLS files do not load: {err}")
    by_section = _by_section(settings.shown(environment))
    if as_env:
        blocks = []
        for title, rows in by_section.items():
            lines = [
                f"# {variable} is a secret: set it from your secret store"
                if value == MASK
                else f"{variable}={value}"
                for variable, value, source in rows
                if source != "default"
            ]
            if lines:
                blocks.append("\n".join([f"# {title}", *lines]))
        if blocks:
            click.echo("\n\n".join(blocks))
    else:
        width = max(len(row[0]) for rows in by_section.values() for row in rows)
        for title, rows in by_section.items():
            click.echo(f"{title}:")
            for variable, value, source in rows:
                click.echo(f"  {variable:<{width}}  {value or '(unset)'}  [{source}]")
            click.echo()
        if app_path is not None:
            click.echo(f"models of {app_path}:")  # after the last section's blank line
            click.echo(_columns(_model_rows(app.models, settings)))
    if connect and not problems:
        require_broker(settings)
        click.echo(f"connected to {settings.bootstrap_servers} as configured", err=True)
        if registry is not None:
            try:
                asyncio.run(_checked(registry))
            except RegistryUnavailable as err:
                problems.append(f"the schema registry at {registry.url} does not answer: {err}")
            else:
                click.echo(f"the schema registry at {registry.url} answers", err=True)
    if problems:
        for problem in problems:
            click.echo(f"error: {problem}", err=True)
        sys.exit(1)


async def _checked(registry: "SchemaRegistry") -> None:
    try:
        await registry.check()
    finally:
        await registry.close()


def _by_section(rows: list[tuple[str, str, str]]) -> dict[str, list[tuple[str, str, str]]]:
    """`Settings.shown()`'s rows under their sections' titles, in the sections' order."""
    from streams.settings import SECTIONS, env_name

    by_variable = {row[0]: row for row in rows}
    return {
        title: [by_variable[env_name(name)] for name in names] for title, names in SECTIONS.items()
    }


def _model_rows(models: Mapping[str, ModelSpec], settings: Settings) -> list[list[str]]:
    """name, task, version, scope, served, params of each model registered in an app
    (each version of it), with RIVERRUN_MODEL_PARAMS (and _SCOPES) applied."""
    import json

    served_names = set(settings.model_names(models))
    scopes = settings.scoped(models)
    rows = [["name", "task", "version", "scope", "served", "params"]]
    for name, spec in models.items():
        versions = [spec, *getattr(spec, "others", ())]
        for number, version in enumerate(versions):
            if number == 0:  # the one a worker builds, with its parameters
                version = version.with_params(**settings.model_params.get(name, {}))
            try:
                label = version.version
            except Exception:  # the user's factory, with these parameters (said below)
                label = "(cannot build)"
            serves = name in served_names and number == 0
            rows.append(
                [
                    name,
                    version.task,
                    label,
                    scopes[name].scope,
                    "yes" if serves else "no",
                    json.dumps(dict(version.params), default=repr),
                ]
            )
    return rows


def _columns(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in rows
    ]
    return "\n".join("  " + line.rstrip() for line in lines)
