"""`riverrun report`: the command; the report itself is `streams.cli.report`'s (imported
when the command runs: it brings matplotlib)."""

from datetime import UTC, datetime
from pathlib import Path

import click

from streams.cli.options import app_option, load, require_broker


@click.command()
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("riverrun-report.html"),
    show_default=True,
    help="The HTML file to write.",
)
@click.option("--since", help="Only events from this event time (ISO-8601; no zone = UTC).")
@click.option("--until", help="Only events before this event time.")
@app_option
def report(out: Path, since: str | None, until: str | None, app_path: str | None) -> None:
    """Write one self-contained HTML report, with PNG charts, of what the models did.

    Charts of the metrics, drift, predictions and dead-letters topics, and each
    multiclass model's confusion matrix; --since and --until bound the events' time.
    """
    from streams.cli.report import write_report

    app, settings = load(app_path)
    require_broker(settings)
    bounds = []
    for name, value in (("--since", since), ("--until", until)):
        try:
            when = datetime.fromisoformat(value) if value else None
        except ValueError:
            raise click.UsageError(f"{name} {value!r} is not an ISO-8601 time") from None
        bounds.append(when.replace(tzinfo=when.tzinfo or UTC) if when else None)
    data = write_report(settings, out, bounds[0], bounds[1], models=app.models)
    counts = (
        f"{len(data.predictions)} predictions, {len(data.metrics)} metrics reports, "
        f"{len(data.drift)} drift reports, {len(data.dead_letters)} dead letters"
    )
    click.echo(f"wrote {out}: {counts}")
