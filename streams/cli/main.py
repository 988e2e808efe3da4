"""`riverrun`: the command line. Settings come from RIVERRUN_* variables (docs: Settings)."""

import click

from streams.cli.demo_command import demo
from streams.cli.events import evaluate, replay
from streams.cli.experiments import experiments
from streams.cli.kafka import kafka
from streams.cli.models import models
from streams.cli.report_command import report
from streams.cli.serve import serve
from streams.cli.status_command import status
from streams.cli.topics import schemas, tail
from streams.cli.worker import config, worker


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="riverrun")
def main() -> None:
    """riverrun: online machine learning on Kafka streams."""


for command in (
    worker,
    serve,
    config,
    kafka,
    tail,
    schemas,
    replay,
    evaluate,
    status,
    report,
    demo,
    models,
    experiments,
):
    main.add_command(command)


if __name__ == "__main__":
    main()
