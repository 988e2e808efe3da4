"""`riverrun status`: the command; what it reads and prints is `streams.cli.status`'s
(imported when the command runs: it brings the Kafka client)."""

import click

from streams.cli.options import app_option, load


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@app_option
def status(as_json: bool, app_path: str | None) -> None:
    """Show the worker group: members, lag, versions, checkpoints.

    As the broker sees it: its members (client id, host, partitions, /v1 URL); each
    partition of the events topic with its committed offset, end offset and lag, and
    the same for each learn partition that holds examples, with the worker whose
    learner has it (global models); the versions each partition serves (the workers'
    statuses on the control topic); each model's newest checkpoint (version, offset,
    updates, age). A broker that does not answer within 5 s: one sentence, and exit 1.
    """
    from streams.cli.status import BrokerUnreachable, read_status, status_json, status_lines
    from streams.kafka.security import SecurityError

    _, settings = load(app_path)  # (an App's settings in code may name the group)
    try:
        found = read_status(settings)
    except (BrokerUnreachable, SecurityError) as err:
        raise click.ClickException(str(err)) from None
    click.echo(status_json(found) if as_json else "\n".join(status_lines(found)))
