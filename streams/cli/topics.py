"""What the topics hold: `riverrun tail` prints a topic's messages, `riverrun schemas
export` writes the JSON Schema of every topic's messages (and the Avro schemas of
predictions and input events, the /v1 API's OpenAPI document, and the topics' AsyncAPI
document)."""

import contextlib
from pathlib import Path

import click

from streams.cli.options import app_option, load, require_broker


@click.command()
@click.argument("topic")
@click.option("--from-beginning", is_flag=True, help="Read the topic from its first message.")
@click.option("--limit", type=int, help="Stop after this many messages.")
@click.option("--timeout", type=float, default=None, help="Stop after this many idle seconds.")
@app_option
def tail(
    topic: str, from_beginning: bool, limit: int | None, timeout: float | None, app_path: str | None
) -> None:
    """Print the messages of TOPIC as they arrive: key, a tab, value.

    With --app, the App's settings and OAUTHBEARER token provider are used.
    """
    from kafka import KafkaConsumer

    from streams.kafka.security import kafka_options

    _, settings = load(app_path)
    require_broker(settings)
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=settings.bootstrap_servers,
        **kafka_options(settings),
        auto_offset_reset="earliest" if from_beginning else "latest",
        enable_auto_commit=False,
        consumer_timeout_ms=int(timeout * 1000) if timeout else float("inf"),
    )
    try:
        for count, message in enumerate(consumer, 1):
            key = message.key.decode(errors="replace") if message.key else ""
            value = _shown(message.value, predictions=topic == settings.predictions_topic)
            click.echo(f"{key}\t{value}")
            if limit and count >= limit:
                break
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()


def _shown(value: bytes | None, *, predictions: bool) -> str:
    """A message's value as text: a prediction written in Avro or JSON Schema
    (RIVERRUN_PREDICTIONS_FORMAT) as its JSON, anything else as it is."""
    if not value:
        return ""
    if predictions and value[:1] == b"\x00":
        from schemas import decode_prediction

        with contextlib.suppress(ValueError):
            return decode_prediction(value).model_dump_json()
    return value.decode(errors="replace")


@click.group()
def schemas() -> None:
    """The committed JSON Schema files of every topic, the Avro schemas of predictions and
    input events, the /v1 API's OpenAPI document and the topics' AsyncAPI document."""


@schemas.command("export")
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where to write them (schemas/json, and the Avro schemas schemas/avro, of the "
    "working directory by default: in a checkout, the committed files; DIR/*.json and "
    "DIR/*.avsc with --dir).",
)
@click.option(
    "--openapi",
    "openapi_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where to write the OpenAPI document of the /v1 API (schemas/openapi.json of the "
    "working directory by default; DIR/openapi.json with --dir).",
)
@click.option(
    "--asyncapi",
    "asyncapi_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where to write the AsyncAPI document of every topic (schemas/asyncapi.json of the "
    "working directory by default; DIR/asyncapi.json with --dir).",
)
def schemas_export(
    directory: Path | None, openapi_file: Path | None, asyncapi_file: Path | None
) -> None:
    """Write the JSON Schema of every topic's messages, the Avro schemas of predictions and
    input events, the OpenAPI document of the /v1 API and the AsyncAPI document of the
    topics, from the pydantic models."""
    from schemas import json_schema
    from schemas.asyncapi import ASYNCAPI_FILE, asyncapi_text
    from schemas.formats import avro_files
    from schemas.openapi import OPENAPI_FILE, openapi_text

    documents = directory or Path("schemas")
    json_schemas = directory or Path("schemas") / "json"
    avro_schemas = directory or Path("schemas") / "avro"
    files = {json_schemas / name: text for name, text in json_schema.render_all().items()}
    files |= {avro_schemas / name: text for name, text in avro_files.render_all().items()}
    files[openapi_file or documents / OPENAPI_FILE] = openapi_text()
    files[asyncapi_file or documents / ASYNCAPI_FILE] = asyncapi_text()
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        click.echo(f"wrote {path}")
