"""`riverrun serve`: /v1 predictions of the global models from their snapshots, in a
process that holds no partition (see `streams.runtime.serving`)."""

import click

from streams.cli.options import app_option, load_runnable


@click.command()
@app_option
def serve(app_path: str | None) -> None:
    """Answer POST /v1/models/{name}/predict for the global models from their newest
    snapshots, on RIVERRUN_API_HOST:RIVERRUN_API_PORT (with /metrics, /healthz and
    /readyz); no partition, no consumer group: run as many as the requests need."""
    import mode

    from streams.runtime.serving import Serving

    app, settings = load_runnable(app_path)
    try:
        service = Serving(settings, app.models)
    except ValueError as err:
        raise click.ClickException(str(err)) from None
    mode.Worker(service, loglevel=settings.log_level).execute_from_commandline()
