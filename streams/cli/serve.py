"""`riverrun serve`: /v1 predictions of the global models from their snapshots, in a
process that holds no partition (see `streams.runtime.serving`)."""

import click

from streams.cli.options import app_option, event_format, load_runnable


@click.command()
@app_option
def serve(app_path: str | None) -> None:
    """Serve /v1 predictions of the global models from snapshots, with no partition.

    Answers POST /v1/models/{name}/predict for the app's global models from their
    newest snapshots (and POST /v1/events, GET /v1/stream), with /metrics, /healthz and
    /readyz (200 once the snapshots topic was read to its end), on
    RIVERRUN_API_HOST:RIVERRUN_API_PORT. A model of partition scope is not served here
    (404). It joins no consumer group: a web tier of its own, run as many as the
    requests need.
    """
    import mode

    from streams.runtime.serving import Serving
    from streams.services.formats import Formats

    app, settings = load_runnable(app_path)
    try:
        events = event_format(app, settings)
        formats = Formats(settings, mapping=events.mapping, hook=events.decoder)
        service = Serving(settings, app.models, formats=formats)
    except ValueError as err:
        raise click.ClickException(str(err)) from None
    mode.Worker(service, loglevel=settings.log_level).execute_from_commandline()
