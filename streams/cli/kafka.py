"""`riverrun kafka up|down|status`: the local single-node broker (KRaft) for development,
tests and the demo; nothing is managed when RIVERRUN_BROKER names another cluster."""

import sys

import click

from streams.cli.options import load_settings
from streams.settings import Settings


@click.group()
def kafka() -> None:
    """The local single-node Kafka broker (KRaft) for development, tests and the demo.

    Its files and its log (server.log) are in RIVERRUN_KAFKA_CACHE_DIR. Nothing is
    managed when RIVERRUN_BROKER names another cluster.
    """


def _no_local_when_external(settings: Settings) -> None:
    if not settings.uses_local_broker:
        click.echo(f"RIVERRUN_BROKER is set ({settings.broker}): no local broker is managed")
        sys.exit(0)


@kafka.command("up")
def kafka_up() -> None:
    """Start the local broker in the background and wait until it answers."""
    from streams.kafka.local_broker import LocalKafka, LocalKafkaError

    settings = load_settings()
    _no_local_when_external(settings)
    try:
        click.echo(LocalKafka.for_settings(settings).up())
    except LocalKafkaError as err:
        raise click.ClickException(str(err)) from None


@kafka.command("down")
def kafka_down() -> None:
    """Stop the local broker cleanly."""
    from streams.kafka.local_broker import LocalKafka

    settings = load_settings()
    _no_local_when_external(settings)
    click.echo(LocalKafka.for_settings(settings).down())


@kafka.command("status")
def kafka_status() -> None:
    """Say whether the local broker is running and answering (exit 1 when not)."""
    from streams.kafka.local_broker import LocalKafka

    settings = load_settings()
    _no_local_when_external(settings)
    running, message = LocalKafka.for_settings(settings).status()
    click.echo(message)
    sys.exit(0 if running else 1)
