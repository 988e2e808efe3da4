"""`riverrun serve`: /v1 predictions of the global models from their snapshots, in a
process that holds no partition (see `streams.runtime.serving`)."""

import click

from streams.cli.options import app_option, load, require_broker, served


@click.command()
@app_option
def serve(app_path: str | None) -> None:
    """Answer POST /v1/models/{name}/predict for the global models from their newest
    snapshots, on RIVERRUN_API_HOST:RIVERRUN_API_PORT (with /metrics, /healthz and
    /readyz); no partition, no consumer group: run as many as the requests need."""
    import mode

    from streams.runtime.serving import Serving

    app, settings = load(app_path)
    problems = settings.worker_problems()
    if problems:
        raise click.ClickException("; ".join(problems))
    served(app, settings)
    require_broker(settings)
    try:
        service = Serving(settings, app.models)
    except ValueError as err:
        raise click.ClickException(str(err)) from None
    mode.Worker(service, loglevel=settings.log_level).execute_from_commandline()
