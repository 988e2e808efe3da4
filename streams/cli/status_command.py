"""`riverrun status`: the command; what it reads and prints is `streams.cli.status`'s
(imported when the command runs: it brings the Kafka client)."""

import click

from streams.cli.options import app_option, load


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@app_option
def status(as_json: bool, app_path: str | None) -> None:
    """Show the worker group: members, partitions and lag, versions served, last
    checkpoints (exit 1, with one sentence, when the broker is unreachable)."""
    from streams.cli.status import BrokerUnreachable, read_status, status_json, status_lines
    from streams.kafka.security import SecurityError

    _, settings = load(app_path)  # (an App's settings in code may name the group)
    try:
        found = read_status(settings)
    except (BrokerUnreachable, SecurityError) as err:
        raise click.ClickException(str(err)) from None
    click.echo(status_json(found) if as_json else "\n".join(status_lines(found)))
