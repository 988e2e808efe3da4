"""`riverrun models`: the versions of each model and what each does (champion, canary,
shadow), as plans on the signed control topic every worker follows. What a command
changes is `streams.cli.plan_edits`'s, what it prints `streams.cli.models_render`'s
(both imported when a command runs)."""

from typing import TYPE_CHECKING

import click

from online_models.models.registry import ModelSpec
from streams.cli.options import app_option, load, require_broker, served
from streams.settings import Settings

if TYPE_CHECKING:
    from streams.cli.plan_edits import Edit


def served_model(app_path: str | None, name: str) -> tuple[ModelSpec, Settings]:
    """The app's served model `name` (one sentence if it has none) and the settings."""
    from streams.cli.plan_edits import served_spec

    app, settings = load(app_path)
    return served_spec(served(app, settings), name), settings


def apply_edit(settings: Settings, spec: ModelSpec, edit: "Edit") -> None:
    """Apply `edit` to the model's plan on the control topic; print what changed."""
    from streams.cli import plan_edits
    from streams.kafka.topics import TopicError

    require_broker(settings)
    try:
        warnings, changes = plan_edits.change(settings, spec, edit)
    except TopicError as err:  # the control topic not compacted: no plan written there
        raise click.ClickException(str(err)) from None
    for line in warnings:
        click.echo(line, err=True)
    for line in changes:
        click.echo(line)


@click.group()
def models() -> None:
    """The versions of each model and what each does (champion, canary, shadow).

    The plans are on the signed control topic every worker follows. Each change prints
    what changed, and exits 1 with the reason when it cannot apply.
    """


@models.command("list")
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the plans and statuses as JSON.")
@app_option
def models_list(name: str | None, as_json: bool, app_path: str | None) -> None:
    """Show each version of the served models and its figures.

    NAME: only that model's versions. Per version: role, share, learning, provenance
    (params, the revision it joined, backfill) and its figures summed over the
    partitions (labelled events since it joined, its mean loss against the champion's
    on them, events served, headline metric); then the gate, the experiment or bandit
    and the plan's last change.
    """
    from streams.cli import models_render, plan_edits

    app, settings = load(app_path)
    specs = served(app, settings)
    if name is not None:
        specs = {name: plan_edits.served_spec(specs, name)}
    require_broker(settings)
    state = plan_edits.read_control(settings)
    for line in plan_edits.refused_lines(state):
        click.echo(line, err=True)
    if as_json:
        click.echo(models_render.models_json(specs, state))
    else:
        click.echo("\n".join(models_render.describe_models(specs, state)))


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
    from streams.cli import plan_edits as lc

    spec, settings = served_model(app_path, name)
    if registered is None and params_json is None:
        raise click.UsageError("pass --params JSON (other parameters) or --version VERSION")
    factory = spec if registered is None else lc.registered_version(spec, registered)
    params = lc.parse_params(params_json) if params_json is not None else {}
    version = lc.new_version(factory, params)
    when = lc.parse_time(backfill_from, "--backfill-from")
    apply_edit(settings, spec, lc.deploying(version, role, share, when))


@models.command("promote")
@click.argument("target", metavar="NAME@VERSION")
@app_option
def models_promote(target: str, app_path: str | None) -> None:
    """Move a version one step up, once past the gate.

    Shadow to canary (the gate's canary share), canary to champion (the old champion
    stays in shadow, learning, for a rollback). NAME@VERSION: the model and its version,
    e.g. logreg@d79eff0f (`riverrun models list` shows them).
    """
    from streams.cli import plan_edits as lc

    name, version = lc.parse_target(target)
    spec, settings = served_model(app_path, name)
    apply_edit(settings, spec, lc.promoting(version))


@models.command("rollback")
@click.argument("name")
@click.option("--reason", default="by hand", show_default=True, help="Recorded in the plan.")
@app_option
def models_rollback(name: str, reason: str, app_path: str | None) -> None:
    """Let the previous champion serve again.

    The current champion of model NAME goes to shadow, learning.
    """
    from streams.cli import plan_edits as lc

    spec, settings = served_model(app_path, name)
    apply_edit(settings, spec, lc.rolling_back(reason))


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

    NAME@VERSION: the model and its version, e.g. logreg@d79eff0f. Not the champion
    (promote another or roll back first), not an arm (stop the experiment or bandit
    first), unless --force: then the champion's place goes to the latest previous
    champion the app's code builds, else to the app's version (what a worker of this
    code serves); an arm's experiment or bandit stops.
    """
    from streams.cli import plan_edits as lc

    name, version = lc.parse_target(target)
    spec, settings = served_model(app_path, name)
    apply_edit(settings, spec, lc.retiring(version, force=force, app=spec))


@models.command("pause-learning")
@click.argument("target", metavar="NAME[@VERSION]")
@click.option("--reason", default="by hand", show_default=True, help="Recorded in the plan.")
@app_option
def models_pause_learning(target: str, reason: str, app_path: str | None) -> None:
    """Stop a version learning (it still predicts).

    NAME alone: every version of the model.
    """
    from streams.cli import plan_edits as lc

    name, version = lc.parse_target(target, every=True)
    spec, settings = served_model(app_path, name)
    apply_edit(settings, spec, lc.learning(version, False, reason))


@models.command("resume-learning")
@click.argument("target", metavar="NAME[@VERSION]")
@app_option
def models_resume_learning(target: str, app_path: str | None) -> None:
    """Let a paused version learn again.

    NAME alone: every version of the model.
    """
    from streams.cli import plan_edits as lc

    name, version = lc.parse_target(target, every=True)
    spec, settings = served_model(app_path, name)
    apply_edit(settings, spec, lc.learning(version, True, "by hand"))


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

    A challenger of model NAME passes after --min-labelled labelled events since it joined, with a
    mean loss at most the champion's (on the same events) plus --delta. Without
    options, print the gate.
    """
    from streams.cli import plan_edits as lc

    spec, settings = served_model(app_path, name)
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
    apply_edit(settings, spec, lc.gating(**changes))
