"""`riverrun demo`: the command; the run itself is `streams.cli.demo`'s (imported when the
command runs: it brings the Kafka clients and River)."""

import sys

import click

from online_models.models.registry import ModelError
from streams.cli.options import app_option, event_format, load


@click.command()
@click.option(
    "--dataset",
    "datasets",
    default="phishing,offers,segments",
    show_default=True,
    help="Comma-separated bundled datasets to replay, one after the other.",
)
@click.option(
    "--limit",
    type=int,
    help="Events per dataset (default: all of a finite one; 30 days of offers).",
)
@click.option(
    "--timeout",
    type=float,
    default=180.0,
    show_default=True,
    help="Give up when predictions stop arriving for this long.",
)
@app_option
def demo(datasets: str, limit: int | None, timeout: float, app_path: str | None) -> None:
    """Run the whole system once, end to end, and print a summary.

    Replays each --dataset in turn (--limit events of each) to a worker of the app
    (--app: the datasets' models must be in it), then checks that every event has a
    prediction or a dead letter and that the streamed metrics equal the offline
    evaluation's; exits 1 when not.

    With RIVERRUN_EVENTS_FORMAT=avro or json_schema, the events (and the bad messages) are
    written in that format through RIVERRUN_SCHEMA_REGISTRY_URL (`make demo` starts a local
    registry when it is unset).
    """
    from streams.cli.demo import run_demo
    from streams.cli.replay import EventsFormatError
    from streams.kafka.topics import TopicError

    app, settings = load(app_path)
    try:
        ok = run_demo(
            settings,
            app.models,
            datasets=datasets.split(","),
            limit=limit,
            timeout=timeout,
            echo=click.echo,
            records=event_format(app, settings),
        )
    except (ValueError, ModelError) as err:
        raise click.UsageError(str(err)) from None
    except (TopicError, EventsFormatError) as err:
        raise click.ClickException(str(err)) from None
    sys.exit(0 if ok else 1)
