"""`riverrun experiments`: A/B tests (planned up front, read once) and bandits among a
model's versions, as plans on the control topic like `riverrun models`' changes."""

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import click

from streams.cli.models import apply_edit, served_model
from streams.cli.options import app_option, load, require_broker, served

F = TypeVar("F", bound=Callable[..., Any])


@click.group()
def experiments() -> None:
    """A/B tests (planned up front, read once) and bandits among a model's versions."""


_learn_option = click.option(
    "--learn",
    type=click.Choice(["routed", "all"]),
    default="all",
    show_default=True,
    help="routed: an arm learns only the events routed to it; all: every arm learns every event.",
)


def _arms_option(help: str) -> Callable[[F], F]:
    """--arms V1,V2[,...]: the versions of an experiment or a bandit, `help` saying which."""
    return click.option("--arms", required=True, metavar="V1,V2[,...]", help=help)


@experiments.command("start")
@click.argument("name")
@_arms_option("The versions compared ('name@hash' or the hash), the control first.")
@click.option(
    "--metric",
    type=click.Choice(["ctr", "logloss", "mae"]),
    required=True,
    help="ctr: the label (higher is better); logloss, mae: the per-event loss.",
)
@click.option(
    "--alpha",
    type=float,
    default=0.05,
    show_default=True,
    help="False-positive rate over all comparisons (Bonferroni).",
)
@click.option(
    "--power",
    type=float,
    default=0.8,
    show_default=True,
    help="Chance of finding a difference of --mde when there is one.",
)
@click.option(
    "--mde",
    type=float,
    required=True,
    help="Smallest difference worth finding, in the metric's units.",
)
@click.option(
    "--baseline",
    type=float,
    required=True,
    help="ctr: the control arm's expected click rate; logloss, mae: the standard "
    "deviation of the per-event loss (from past traffic).",
)
@click.option(
    "--sequential",
    is_flag=True,
    help="Always-valid p-values (mSPRT): may be read and stopped at any time.",
)
@_learn_option
@click.option("--id", "experiment_id", help="Experiment id (default: NAME-REVISION).")
@app_option
def experiments_start(
    name: str,
    arms: str,
    metric: str,
    learn: str,
    experiment_id: str | None,
    app_path: str | None,
    **design_options: Any,
) -> None:
    """Start an A/B test among versions of a model.

    The versions (--arms) of model NAME. Prints the labelled outcomes each arm needs,
    computed up front from --mde, --baseline, --alpha and --power: no result before
    every arm has them (unless --sequential).
    """
    from streams.cli import plan_edits as lc

    spec, settings = served_model(app_path, name)
    # --alpha, --power, --mde, --baseline, --sequential: as experiment_design names them
    design = lc.experiment_design(lc.parse_arms(arms), metric, **design_options)
    click.echo(lc.sample_size_line(design))
    edit = lc.experimenting(
        design, learn=learn, experiment_id=experiment_id, started=datetime.now(UTC)
    )
    apply_edit(settings, spec, edit)


@experiments.command("status")
@click.argument("name", required=False)
@app_option
def experiments_status(name: str | None, app_path: str | None) -> None:
    """Show the progress or result of experiments.

    NAME: only that model's. Labelled outcomes per arm against the plan; effects and
    p-values only once every arm has its planned outcomes (always-valid ones, when
    sequential), then the result.
    """
    from streams.cli import models_render, plan_edits

    app, settings = load(app_path)
    specs = served(app, settings)
    require_broker(settings)
    state = plan_edits.read_control(settings)
    for line in plan_edits.refused_lines(state):
        click.echo(line, err=True)
    click.echo("\n".join(models_render.describe_experiments(specs, state, name)))


@experiments.command("bandit")
@click.argument("name")
@_arms_option("The versions to route among ('name@hash' or the hash).")
@click.option(
    "--policy",
    type=click.Choice(["thompson", "epsilon_greedy", "ucb"]),
    required=True,
    help="River's bandit policy: Thompson sampling, epsilon-greedy or UCB.",
)
@click.option(
    "--seed", type=int, default=0, show_default=True, help="Seed of the policy's random draws."
)
@click.option(
    "--param",
    "params",
    multiple=True,
    metavar="K=V",
    help="A policy parameter (repeatable): epsilon, decay, delta, burn_in.",
)
@_learn_option
@app_option
def experiments_bandit(
    name: str,
    arms: str,
    policy: str,
    seed: int,
    params: tuple[str, ...],
    learn: str,
    app_path: str | None,
) -> None:
    """Route a model's events among versions by a bandit.

    The events of model NAME go to one of its versions (--arms) each: a River policy
    chooses the version of each event; its reward is the label.
    """
    from streams.cli import plan_edits as lc

    spec, settings = served_model(app_path, name)
    edit = lc.banditing(
        lc.parse_arms(arms), policy, seed=seed, params=lc.parse_policy_params(params), learn=learn
    )
    apply_edit(settings, spec, edit)


@experiments.command("stop")
@click.argument("name")
@app_option
def experiments_stop(name: str, app_path: str | None) -> None:
    """End a model's experiment or bandit (its arms go back to shadow).

    NAME: the model whose experiment or bandit ends.
    """
    from streams.cli import plan_edits as lc

    spec, settings = served_model(app_path, name)
    apply_edit(settings, spec, lc.stopping())
