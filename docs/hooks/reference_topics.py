"""The topics reference (docs/reference/topics.md) and the AsyncAPI overview
(docs/reference/asyncapi.md), rendered from schemas.asyncapi: the same table of topics,
schemas and examples as the committed AsyncAPI document.

A topic whose messages have no example, or a committed JSON Schema that is no topic's
message and not known to be something else, fails the build with PluginError.
"""

import json
from pathlib import Path

from mkdocs.exceptions import PluginError

from schemas.asyncapi import (
    CHUNK,
    NOT_TOPIC_MESSAGES,
    SERVICES,
    TOPICS,
    Topic,
    example_headers,
    example_payload,
    message_names,
    payload_models,
    render_asyncapi,
)
from schemas.examples import EXAMPLES
from schemas.json_schema import SCHEMA_FILES

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas" / "json"


def _schema_file(name: str) -> str | None:
    """The committed JSON Schema file of message `name` (None for a binary chunk)."""
    model_name = "CheckpointHeader" if name == CHUNK else name
    return next((f for f, m in SCHEMA_FILES.items() if m.__name__ == model_name), None)


def _check() -> None:
    payloads = payload_models()
    for file_name, model in SCHEMA_FILES.items():
        if model not in payloads and model not in NOT_TOPIC_MESSAGES:
            raise PluginError(
                f"schemas/json/{file_name} ({model.__name__}) is no topic's message: add it "
                "to schemas.asyncapi.TOPICS (or to its NOT_TOPIC_MESSAGES)"
            )
        if model not in EXAMPLES:
            raise PluginError(f"{model.__name__} has no example: add one to schemas/examples.py")


def _services(ids: tuple[str, ...]) -> str:
    return ", ".join(SERVICES[i][0] for i in ids) if ids else "none in riverrun (your consumers)"


def _topic(topic: Topic) -> str:
    lines = [
        f"### `{topic.address}`",
        "",
        topic.description,
        "",
        "| | |",
        "|---|---|",
        f"| setting | `{topic.variable}` (default `{topic.address}`) |",
        f"| Kafka key | {topic.key} |",
    ]
    if topic.source_header == "always":
        lines.append("| headers | `riverrun-source` = `topic:partition:offset` of its input |")
    elif topic.source_header:
        lines.append(
            "| headers | `riverrun-source` = `topic:partition:offset` of the rejected message "
            "(not on the activity counter's dead letters) |"
        )
    else:
        lines.append("| headers | none |")
    if topic.compacted:
        lines.append("| cleanup | compacted (`cleanup.policy=compact`) |")
    lines += [
        f"| written by | {_services(topic.senders)} |",
        f"| read by | {_services(topic.receivers)} |",
        "",
    ]
    for name in message_names(topic):
        file_name = _schema_file(name)
        if name == CHUNK:
            lines.append(
                "**Message: a binary chunk** (`application/octet-stream`); its header is "
                f"`CheckpointHeader`, JSON Schema `{file_name}`."
            )
        else:
            lines.append(f"**Message: `{name}`**, JSON Schema `{file_name}`.")
        try:
            example = example_payload(topic, name)
        except KeyError:
            raise PluginError(
                f"topic {topic.address}: message {name} has no example: add one to "
                "schemas/examples.py"
            ) from None
        key = topic.key_of(example)
        headers = example_headers(topic, example)
        shown = "".join(f", header `{h}: {v}`" for h, v in headers.items())
        what = "its header" if name == CHUNK else "the value"
        lines += [
            "",
            f"Example: key `{key}`{shown}, {what}:",
            "",
            "```json",
            json.dumps(example, indent=2),
            "```",
            "",
        ]
        if file_name is not None:
            schema = (SCHEMA_DIR / file_name).read_text().rstrip("\n")
            lines += [
                f'??? note "JSON Schema `{file_name}`"',
                "",
                "    ```json",
                *("    " + line if line else "" for line in schema.splitlines()),
                "    ```",
                "",
            ]
    return "\n".join(lines)


def render_topics() -> str:
    """Every topic: its setting, key, headers, writers and readers, schema and example."""
    _check()
    summary = [
        "| topic | setting | messages | written by | read by |",
        "|---|---|---|---|---|",
    ]
    for t in TOPICS:
        messages = ", ".join(f"`{n}`" for n in message_names(t))
        summary.append(
            f"| [`{t.address}`](#{t.address}) | `{t.variable}` | {messages} | "
            f"{_services(t.senders)} | {_services(t.receivers)} |"
        )
    return "\n".join(summary) + "\n\n" + "\n\n".join(_topic(t) for t in TOPICS)


def render_asyncapi_overview() -> str:
    """The AsyncAPI document's channels and operations, as tables."""
    document = render_asyncapi()
    lines = [
        f"AsyncAPI {document['asyncapi']}, document version {document['info']['version']}: "
        f"{len(document['channels'])} channels, {len(document['operations'])} operations, "
        f"{len(document['components']['schemas'])} schemas.",
        "",
        "| channel | address | messages | setting |",
        "|---|---|---|---|",
    ]
    for channel_id, channel in document["channels"].items():
        messages = ", ".join(f"`{name}`" for name in channel["messages"])
        lines.append(
            f"| `{channel_id}` | [`{channel['address']}`](topics.md#{channel['address']}) | "
            f"{messages} | `{channel['x-riverrun-setting']}` |"
        )
    lines += ["", "| operation | action | channel | who |", "|---|---|---|---|"]
    for operation_id, operation in document["operations"].items():
        service = operation["tags"][0]["$ref"].rsplit("/", 1)[1]
        channel = operation["channel"]["$ref"].rsplit("/", 1)[1]
        lines.append(
            f"| `{operation_id}` | {operation['action']} | `{channel}` | {SERVICES[service][0]} |"
        )
    return "\n".join(lines)
