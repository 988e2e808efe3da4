"""`riverrun`: the command line. Settings come from RIVERRUN_* variables (see README)."""

from datetime import UTC, datetime
from typing import TYPE_CHECKING

import click

from online_models.models.registry import ModelSpec
from streams.cli.demo_command import demo
from streams.cli.events import evaluate, replay
from streams.cli.kafka import kafka
from streams.cli.options import app_option, load, require_broker, served
from streams.cli.report_command import report
from streams.cli.status_command import status
from streams.cli.topics import schemas, tail
from streams.cli.worker import config, worker
from streams.settings import Settings


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="riverrun")
def main() -> None:
    """riverrun: online machine learning on Kafka streams."""


for command in (worker, config, kafka, tail, schemas, replay, evaluate, status, report, demo):
    main.add_command(command)


# --- models and experiments: plans on the signed control topic ------------------------
if TYPE_CHECKING:
    from streams.cli.models import Edit


def _served_model(app_path: str | None, name: str) -> tuple[ModelSpec, Settings]:
    """The app's served model `name` (one sentence if it has none) and the settings."""
    from streams.cli.models import served_spec

    app, settings = load(app_path)
    return served_spec(served(app, settings), name), settings


def _apply(settings: Settings, spec: ModelSpec, edit: "Edit") -> None:
    """Apply `edit` to the model's plan on the control topic; print what changed."""
    from streams.cli import models as lifecycle_cli
    from streams.kafka.topics import TopicError

    require_broker(settings)
    try:
        warnings, changes = lifecycle_cli.change(settings, spec, edit)
    except TopicError as err:  # the control topic not compacted: no plan written there
        raise click.ClickException(str(err)) from None
    for line in warnings:
        click.echo(line, err=True)
    for line in changes:
        click.echo(line)


@main.group()
def models() -> None:
    """The versions of each model and what each does (champion, canary, shadow), on the
    signed control topic every worker follows."""


@models.command("list")
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the plans and statuses as JSON.")
@app_option
def models_list(name: str | None, as_json: bool, app_path: str | None) -> None:
    """Show each version of the served models and its figures.

    Per version: role, share, learning, provenance (params, the revision it joined,
    backfill) and its figures summed over the partitions (labelled events since it
    joined, its mean loss against the champion's on them, events served, headline
    metric); then the gate, the experiment or bandit and the plan's last change.
    """
    from streams.cli import models as lifecycle_cli

    app, settings = load(app_path)
    specs = served(app, settings)
    if name is not None:
        specs = {name: lifecycle_cli.served_spec(specs, name)}
    require_broker(settings)
    state = lifecycle_cli.read_control(settings)
    for line in lifecycle_cli.refused_lines(state):
        click.echo(line, err=True)
    if as_json:
        click.echo(lifecycle_cli.models_json(specs, state))
    else:
        click.echo("\n".join(lifecycle_cli.describe_models(specs, state)))


@models.command("deploy")
@click.argument("name")
@click.option(
    "--params",
    "params_json",
    metavar="JSON",
    help="Factory parameters over the app's served ones, e.g. '{\"lr\": 0.1}'.",
)
@click.option(
    "--version",
    "registered",
    metavar="VERSION",
    help="Deploy the factory registered under NAME with this pinned version (another "
    'pipeline of the model, e.g. @app.model(NAME, ..., version="2")).',
)
@click.option(
    "--role",
    type=click.Choice(["shadow", "canary"]),
    default="shadow",
    show_default=True,
    help="shadow: predicts and learns, never serves; canary: serves --share of keys.",
)
@click.option("--share", type=float, help="A canary's share of the keys, in (0, 1].")
@click.option(
    "--backfill-from",
    metavar="TIME",
    help="Before it joins, learn each partition's events from the first record written "
    "at or after TIME (Kafka record timestamps, i.e. when each event was produced, not its "
    "'ts'; ISO-8601; no zone = UTC).",
)
@app_option
def models_deploy(
    name: str,
    params_json: str | None,
    registered: str | None,
    role: str,
    share: float | None,
    backfill_from: str | None,
    app_path: str | None,
) -> None:
    """Deploy another version of a model.

    The app's factory of NAME (or, with --version, the one registered under NAME with
    that version) with --params over its parameters, in shadow (predicts and learns,
    never serves) or as a canary (serves --share of the keys).
    """
    from streams.cli import models as lc

    spec, settings = _served_model(app_path, name)
    if registered is None and params_json is None:
        raise click.UsageError("pass --params JSON (other parameters) or --version VERSION")
    factory = spec if registered is None else lc.registered_version(spec, registered)
    params = lc.parse_params(params_json) if params_json is not None else {}
    version = lc.new_version(factory, params)
    when = lc.parse_time(backfill_from, "--backfill-from")
    _apply(settings, spec, lc.deploying(version, role, share, when))


@models.command("promote")
@click.argument("target", metavar="NAME@VERSION")
@app_option
def models_promote(target: str, app_path: str | None) -> None:
    """Move a version one step up, once past the gate.

    Shadow to canary (the gate's canary share), canary to champion (the old champion
    stays in shadow, learning, for a rollback). VERSION: 'name@hash' or the hash.
    """
    from streams.cli import models as lc

    name, version = lc.parse_target(target)
    spec, settings = _served_model(app_path, name)
    _apply(settings, spec, lc.promoting(version))


@models.command("rollback")
@click.argument("name")
@click.option("--reason", default="by hand", show_default=True, help="Recorded in the plan.")
@app_option
def models_rollback(name: str, reason: str, app_path: str | None) -> None:
    """Let the previous champion serve again.

    The current champion goes to shadow, learning.
    """
    from streams.cli import models as lc

    spec, settings = _served_model(app_path, name)
    _apply(settings, spec, lc.rolling_back(reason))


@models.command("retire")
@click.argument("target", metavar="NAME@VERSION")
@click.option(
    "--force",
    is_flag=True,
    help="Retire even the champion or an arm (e.g. a version the code can no longer build).",
)
@app_option
def models_retire(target: str, force: bool, app_path: str | None) -> None:
    """Remove a version that does not serve.

    Not the champion (promote another or roll back first), not an arm (stop the
    experiment or bandit first), unless --force: then the champion's place goes to the
    latest previous champion the app's code builds, else to the app's version (what a
    worker of this code serves); an arm's experiment or bandit stops.
    """
    from streams.cli import models as lc

    name, version = lc.parse_target(target)
    spec, settings = _served_model(app_path, name)
    _apply(settings, spec, lc.retiring(version, force=force, app=spec))


@models.command("pause-learning")
@click.argument("target", metavar="NAME[@VERSION]")
@click.option("--reason", default="by hand", show_default=True, help="Recorded in the plan.")
@app_option
def models_pause_learning(target: str, reason: str, app_path: str | None) -> None:
    """Stop a version learning (it still predicts).

    NAME alone: every version of the model.
    """
    from streams.cli import models as lc

    name, version = lc.parse_target(target, every=True)
    spec, settings = _served_model(app_path, name)
    _apply(settings, spec, lc.learning(version, False, reason))


@models.command("resume-learning")
@click.argument("target", metavar="NAME[@VERSION]")
@app_option
def models_resume_learning(target: str, app_path: str | None) -> None:
    """Let a paused version learn again.

    NAME alone: every version of the model.
    """
    from streams.cli import models as lc

    name, version = lc.parse_target(target, every=True)
    spec, settings = _served_model(app_path, name)
    _apply(settings, spec, lc.learning(version, True, "by hand"))


@models.command("gate")
@click.argument("name")
@click.option(
    "--min-labelled",
    type=int,
    help="Labelled events a challenger is scored on, since it joined, before it may serve.",
)
@click.option(
    "--delta", type=float, help="How much worse than the champion's its mean loss may be."
)
@click.option(
    "--auto-promote/--no-auto-promote",
    default=None,
    help="Whether workers promote a challenger as soon as it passes.",
)
@click.option("--canary-share", type=float, help="The share of keys a promoted shadow serves.")
@app_option
def models_gate(
    name: str,
    min_labelled: int | None,
    delta: float | None,
    auto_promote: bool | None,
    canary_share: float | None,
    app_path: str | None,
) -> None:
    """Set when a challenger may serve.

    A challenger passes after --min-labelled labelled events since it joined, with a
    mean loss at most the champion's (on the same events) plus --delta. Without
    options, print the gate.
    """
    from streams.cli import models as lc

    spec, settings = _served_model(app_path, name)
    changes = {
        "min_labelled": min_labelled,
        "delta": delta,
        "auto_promote": auto_promote,
        "canary_share": canary_share,
    }
    if all(value is None for value in changes.values()):
        require_broker(settings)
        plan, _ = lc.current_plan(lc.read_control(settings), spec)
        click.echo(f"{name}: gate {lc.describe_gate(plan.gate)} (pass an option to change it)")
        return
    _apply(settings, spec, lc.gating(**changes))


@main.group()
def experiments() -> None:
    """A/B tests (planned up front, read once) and bandits among a model's versions."""


_learn_option = click.option(
    "--learn",
    type=click.Choice(["routed", "all"]),
    default="all",
    show_default=True,
    help="routed: an arm learns only the events routed to it; all: every arm learns every event.",
)


@experiments.command("start")
@click.argument("name")
@click.option(
    "--arms",
    required=True,
    metavar="V1,V2[,...]",
    help="The versions compared ('name@hash' or the hash), the control first.",
)
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
@click.option("--power", type=float, default=0.8, show_default=True)
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
    alpha: float,
    power: float,
    mde: float,
    baseline: float,
    sequential: bool,
    learn: str,
    experiment_id: str | None,
    app_path: str | None,
) -> None:
    """Start an A/B test among versions of a model.

    Prints the labelled outcomes each arm needs, computed up front from --mde,
    --baseline, --alpha and --power: no result before every arm has them (unless
    --sequential).
    """
    from streams.cli import models as lc

    spec, settings = _served_model(app_path, name)
    design = lc.experiment_design(
        lc.parse_arms(arms),
        metric,
        alpha=alpha,
        power=power,
        mde=mde,
        baseline=baseline,
        sequential=sequential,
    )
    click.echo(lc.sample_size_line(design))
    edit = lc.experimenting(
        design, learn=learn, experiment_id=experiment_id, started=datetime.now(UTC)
    )
    _apply(settings, spec, edit)


@experiments.command("status")
@click.argument("name", required=False)
@app_option
def experiments_status(name: str | None, app_path: str | None) -> None:
    """Show the progress or result of experiments.

    Labelled outcomes per arm against the plan; effects and p-values only once every
    arm has its planned outcomes (always-valid ones, when sequential), then the result.
    """
    from streams.cli import models as lifecycle_cli

    app, settings = load(app_path)
    specs = served(app, settings)
    require_broker(settings)
    state = lifecycle_cli.read_control(settings)
    for line in lifecycle_cli.refused_lines(state):
        click.echo(line, err=True)
    click.echo("\n".join(lifecycle_cli.describe_experiments(specs, state, name)))


@experiments.command("bandit")
@click.argument("name")
@click.option(
    "--arms",
    required=True,
    metavar="V1,V2[,...]",
    help="The versions to route among ('name@hash' or the hash).",
)
@click.option("--policy", type=click.Choice(["thompson", "epsilon_greedy", "ucb"]), required=True)
@click.option("--seed", type=int, default=0, show_default=True)
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

    A River policy chooses the version of each event; its reward is the label.
    """
    from streams.cli import models as lc

    spec, settings = _served_model(app_path, name)
    edit = lc.banditing(
        lc.parse_arms(arms), policy, seed=seed, params=lc.parse_policy_params(params), learn=learn
    )
    _apply(settings, spec, edit)


@experiments.command("stop")
@click.argument("name")
@app_option
def experiments_stop(name: str, app_path: str | None) -> None:
    """End a model's experiment or bandit (its arms go back to shadow)."""
    from streams.cli import models as lc

    spec, settings = _served_model(app_path, name)
    _apply(settings, spec, lc.stopping())


if __name__ == "__main__":
    main()
