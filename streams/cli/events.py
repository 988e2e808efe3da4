"""`riverrun replay` and `riverrun evaluate`: the two commands that read a stream of
events, a bundled dataset or a file named by the same options, the one to produce it to
Kafka, the other to learn it offline."""

import difflib
import functools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import click

from online_models.models.datasets import DATASETS
from online_models.models.registry import ModelError, ModelSpec
from streams.cli.options import app_option, event_format, load, require_broker

Command = Callable[..., Any]


@dataclass(frozen=True)
class EventSource:
    """What the options of `event_source` name: a bundled dataset or a file of events for
    a model, how to read the file, and how many events."""

    dataset: str | None
    path: Path | None
    model: str | None
    label_column: str
    key_column: str | None
    time_column: str | None
    limit: int | None
    seed: int

    def events(
        self, models: Mapping[str, ModelSpec], id_prefix: str = "", labelled: bool = True
    ) -> Iterable[Any]:
        """The input events for one of the app's `models` (refused before any event when
        the model is not one of them, or a label is one its task cannot learn);
        `labelled=False`: every column of a file is a feature."""
        model = self.model
        _known_model(
            models, model or (DATASETS[self.dataset].model if self.dataset in DATASETS else None)
        )
        return _events(
            self.dataset,
            self.path,
            model,
            self.label_column if labelled else None,
            self.limit,
            self.seed,
            id_prefix,
            key_column=self.key_column,
            time_column=self.time_column,
            task=_task(models, model),
        )


def event_source(limit_help: str) -> Callable[[Command], Command]:
    """The options naming a stream of events: a bundled dataset or a file, and its model;
    the command gets them as one `source: EventSource`."""
    options = [
        click.option("--dataset", help="A bundled dataset: " + ", ".join(DATASETS) + "."),
        click.option(
            "--file",
            "path",
            type=click.Path(exists=True, dir_okay=False, path_type=Path),
            help="A JSONL or CSV file of feature records.",
        ),
        click.option("--model", help="Model name for the events (default: the dataset's)."),
        click.option(
            "--label-column",
            default="label",
            show_default=True,
            help="(--file) The column of the labels; refused when not in the file.",
        ),
        click.option(
            "--key-column",
            help="(--file) The column of each event's key (its partition; the key to ask "
            "predictions for over HTTP). Default: the event id.",
        ),
        click.option(
            "--time-column",
            help="(--file) The column of each event's time: ISO 8601 (no zone: UTC) or "
            "seconds since the epoch (milliseconds beyond 2e10). Default: 1 s apart from "
            "2026-01-01.",
        ),
        click.option("--limit", type=int, help=limit_help),
        click.option(
            "--seed",
            type=int,
            default=42,
            show_default=True,
            help="Seed of the synthetic datasets (clicks, offers): same seed, same events.",
        ),
    ]

    names = [f.name for f in fields(EventSource)]

    def decorate(command: Command) -> Command:
        @functools.wraps(command)
        def with_source(**values: Any) -> Any:
            source = EventSource(**{name: values.pop(name) for name in names})
            return command(source=source, **values)

        for option in reversed(options):
            with_source = option(with_source)
        return with_source

    return decorate


@click.command()
@event_source("Replay at most this many events.")
@click.option("--rate", type=float, help="At most this many events per second.")
@click.option("--id-prefix", default="", help="Prefix of the deterministic event ids.")
@click.option("--topic", help="Target topic (default: RIVERRUN_EVENTS_TOPIC).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option(
    "--unlabelled",
    is_flag=True,
    help="(--file) The file has no labels: every column is a feature (events are predicted, "
    "nothing is learnt).",
)
@click.option(
    "--wait-seconds",
    type=click.FloatRange(min=0),
    default=5.0,
    show_default=True,
    help="Wait this long for the worker to handle the events, then summarise the dead "
    "letters they caused (0: do not wait).",
)
@app_option
def replay(
    source: EventSource,
    rate: float | None,
    id_prefix: str,
    topic: str | None,
    quiet: bool,
    unlabelled: bool,
    wait_seconds: float,
    app_path: str | None,
) -> None:
    """Produce a dataset or a file as events, in order; then say what became of them.

    The bundled datasets (--dataset) and the model each is for:

    \b
    - phishing, bananas: logreg
    - segments (River's ImageSegments, 7 classes): softmax
    - trump: linreg
    - clicks (seeded synthetic ad impressions, ~4 % clicks, 1 s apart): ctr
    - offers (seeded synthetic daily clicks of 300 offers, 300 events a day, keyed by
      offer): clicks

    The endless clicks and offers replay 10,000 events unless --limit. Event ids are
    deterministic: --id-prefix, then the dataset's name (or the file's stem), a dash
    and the event's index; event times run from 2026-01-01T00:00Z.

    A file (--file, with --model) is JSONL (one object of features per line) or CSV
    with a header (cells that parse as numbers are numbers). Every column is a feature
    but the label, key and time columns; an empty label cell or a missing label field:
    that event is predicted, not learnt. The file is read through before any event is
    sent: a named column that is not in the file, a row without a key, a time that does
    not parse, a record the event schema refuses or a label the model's task cannot
    learn ("yes" for a binary model) stops the replay with one sentence naming the
    file, the line and the columns it has. So does a --model the app does not have.

    After sending, it waits up to --wait-seconds for the worker's group
    (RIVERRUN_GROUP_ID) to commit every replayed offset, then reads the dead letters of
    the replayed messages and says what they were, by reason, with what to do. Replays
    to another --topic are not followed.

    Events are written in RIVERRUN_EVENTS_FORMAT: json, or avro or json_schema with
    riverrun's InputEvent schema, registered under <topic>-value first. A topic of a team's
    own records (protobuf, RIVERRUN_EVENT_MAPPING, the app's mapping or event decoder) is
    refused: the team's producers write those.
    """
    from schemas.formats.input_events import UnencodableEvent
    from streams.cli.replay import EventsFormatError, event_writer, events_encoder, produce
    from streams.cli.replay_aftermath import Produced, aftermath, dead_letter_ends
    from streams.kafka.topics import TopicError, ensure_topics

    app, settings = load(app_path)
    events = source.events(app.models, id_prefix, labelled=not unlabelled)
    target = topic or settings.events_topic
    try:
        write = event_writer(events_encoder(settings, target, event_format(app, settings)))
    except EventsFormatError as err:
        raise click.ClickException(str(err)) from None
    require_broker(settings)
    try:  # the broker creates no topic: a missing one gets RIVERRUN_TOPIC_PARTITIONS
        ensure_topics(settings, [target])
    except TopicError as err:
        raise click.ClickException(str(err)) from None
    follow = wait_seconds > 0 and target == settings.events_topic
    dead_letters_from = dead_letter_ends(settings) if follow else {}
    produced = Produced(target)
    try:
        sent = produce(
            settings,
            target,
            map(write, events),
            rate=rate,
            total=source.limit,
            progress=not quiet,
            produced=produced,
        )
    except UnencodableEvent as err:
        raise click.ClickException(
            f"{err} ({produced.count()} events before it were written to {target})"
        ) from None
    click.echo(f"replayed {sent} events to {target} on {settings.bootstrap_servers}")
    if follow and produced.count():
        for line in aftermath(settings, produced, dead_letters_from, wait_seconds).lines():
            click.echo(line)


def _known_model(models: Mapping[str, ModelSpec], name: str | None) -> None:
    """Refuse to produce events for a model the app does not have (all dead letters)."""
    if name is None or name in models:
        return
    close = difflib.get_close_matches(name, list(models), n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise click.UsageError(
        f"the app has no model {name!r} ({hint}it has: {', '.join(sorted(models))}); pass "
        "--model NAME or --app with the app that serves it"
    )


def _task(models: Mapping[str, ModelSpec], name: str | None) -> str | None:
    """The task of the app's model `name` (None: not one of the app's)."""
    spec = models.get(name) if name is not None else None
    return spec.task if spec is not None else None


def _events(
    dataset: str | None,
    path: Path | None,
    model: str | None,
    label_column: str | None,
    limit: int | None,
    seed: int,
    id_prefix: str = "",
    key_column: str | None = None,
    time_column: str | None = None,
    task: str | None = None,
):  # type: ignore[no-untyped-def]
    """Input events from exactly one of a bundled dataset or a file (see `replay`); a file
    is read through first, so that a mistake in it (a label `task` cannot learn too) stops
    the command before any event."""
    from streams.cli.replay import FileError, count_file_events, dataset_events, file_events

    if (dataset is None) == (path is None):
        raise click.UsageError("give exactly one of --dataset NAME or --file PATH")
    if path is not None:
        if not model:
            raise click.UsageError("--file needs --model NAME")
        options: dict[str, Any] = dict(
            model=model,
            label_column=label_column,
            limit=limit,
            key_column=key_column,
            time_column=time_column,
            id_prefix=id_prefix,
            task=task,
        )
        try:
            count_file_events(path, **options)
        except FileError as err:
            raise click.ClickException(str(err)) from None
        return file_events(path, **options)
    if key_column or time_column:
        raise click.UsageError("--key-column and --time-column are for --file")
    assert dataset is not None
    if dataset in DATASETS and DATASETS[dataset].size is None and limit is None:
        limit = 10_000
    try:
        return dataset_events(dataset, limit=limit, model=model, seed=seed, id_prefix=id_prefix)
    except ValueError as err:
        raise click.UsageError(str(err)) from None


@click.command()
@event_source("Evaluate on at most this many events.")
@click.option(
    "--compare-river/--no-compare-river",
    default=True,
    show_default=True,
    help="Also run River's progressive_val_score on the same events.",
)
@click.option(
    "--reports",
    "reports_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write every metrics report the stream would publish, as JSONL.",
)
@app_option
def evaluate(
    source: EventSource,
    compare_river: bool,
    reports_path: Path | None,
    app_path: str | None,
) -> None:
    """Run the stream's learning code offline over events; print its metrics.

    Every metric, overall and per segment, in event order; those of segment all beside
    River's progressive_val_score on the same events, and whether they are equal (to
    1e-9). A file is read and checked as by `riverrun replay --file`.

    Uses the same settings as the worker (RIVERRUN_MODEL_PARAMS, RIVERRUN_METRICS_*,
    RIVERRUN_SEGMENT_FEATURES) and the same --app, so its reports equal what the worker
    publishes for the same events in the same order.
    """
    from online_models.models.registry import resolve
    from online_models.quality.offline import river_agreement, river_progressive, run_offline

    app, settings = load(app_path)
    events = list(source.events(app.models))
    if not events:
        raise click.UsageError("no events to evaluate")
    name = events[0].model
    try:
        spec = resolve(app.models, [name], settings.model_params)[name]
    except ModelError as err:
        raise click.ClickException(str(err)) from None
    result = run_offline(events, spec, config=settings.evaluation())
    reference = river_progressive(events, spec) if compare_river else {}
    click.echo(
        f"{len(events)} events, model {name}, {result.rejected} rejected, "
        f"{len(result.reports)} reports"
    )
    for line in _metric_lines(result.final, reference):
        click.echo(line)
    if reference:
        click.echo("\n" + river_agreement(result.final.get("all", {}), reference))
    if reports_path is not None:
        reports_path.write_text("".join(r.model_dump_json() + "\n" for r in result.reports))
        click.echo(f"\nwrote {len(result.reports)} reports to {reports_path}")


def _metric_lines(
    final: Mapping[str, Mapping[str, float | None]], reference: Mapping[str, float | None]
) -> list[str]:
    """Each segment's final metrics, River's beside segment `all`'s where it has them."""
    lines = []
    for segment, values in final.items():
        lines.append(f"\nsegment {segment}")
        for metric, value in values.items():
            line = f"  {metric:<28} {_fmt(value)}"
            if segment == "all" and metric in reference:  # River's run has no segments
                line += f"   river {_fmt(reference[metric])}"
            lines.append(line)
    return lines


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.6f}"
