"""The topics' AsyncAPI document: committed as rendered, valid for the AsyncAPI project's
own parser, one channel per topic setting, and its payloads and examples the committed
JSON Schemas' and the models'."""

import json
import shutil
import subprocess
import time
from typing import Any

import jsonschema
import pytest
from pydantic import BaseModel

from schemas.asyncapi import (
    ASYNCAPI_FILE,
    CHUNK,
    NOT_TOPIC_MESSAGES,
    SOURCE_HEADER,
    TOPICS,
    asyncapi_text,
    example_payload,
    message_names,
    payload_models,
    render_asyncapi,
)
from schemas.examples import EXAMPLES, example_json
from schemas.input_event import InputEvent
from schemas.json_schema import SCHEMA_FILES
from streams.kafka.topics import compacted_topics, topic_names
from streams.settings import Settings
from tests.paths import PROJECT_DIR

COMMITTED = PROJECT_DIR / "schemas" / ASYNCAPI_FILE
VALIDATE = PROJECT_DIR / "deploy" / "asyncapi" / "validate.mjs"
PARSER = PROJECT_DIR / ".cache" / "asyncapi" / "node_modules" / "@asyncapi" / "parser"
DOCUMENT = render_asyncapi()


def test_the_committed_document_is_the_rendered_one() -> None:
    assert COMMITTED.exists(), f"{COMMITTED} missing: run `riverrun schemas export`"
    assert COMMITTED.read_text() == asyncapi_text(), (
        f"{COMMITTED} is stale: run `riverrun schemas export` and commit the result"
    )


def test_the_asyncapi_parser_finds_no_error_or_warning() -> None:
    node = shutil.which("node")
    if node is None or not PARSER.is_dir():
        pytest.fail(
            "the AsyncAPI parser is not installed: run `make asyncapi` (it needs Node.js "
            "18+ and npm, and installs @asyncapi/parser into .cache/asyncapi)"
        )
    started = time.perf_counter()
    run = subprocess.run(
        [node, str(VALIDATE), str(COMMITTED)],
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        timeout=120,
    )
    seconds = time.perf_counter() - started
    assert run.returncode == 0, f"{run.stdout}{run.stderr}"
    # Its own count, from the parsed document: every topic is a channel.
    assert f"{len(TOPICS)} channels" in run.stdout, run.stdout
    assert seconds < 60, f"the parser took {seconds:.1f} s"


def test_the_validator_fails_on_an_invalid_document(tmp_path: Any) -> None:
    """validate.mjs exits non-zero on an error: the test above could fail."""
    if shutil.which("node") is None or not PARSER.is_dir():
        pytest.fail("the AsyncAPI parser is not installed: run `make asyncapi`")
    broken = {
        "asyncapi": "3.0.0",
        "info": {"title": "broken", "version": "1"},
        "channels": {"events": {"address": "events", "partitions": 3}},
    }
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(broken))
    run = subprocess.run(
        ["node", str(VALIDATE), str(path)], cwd=PROJECT_DIR, capture_output=True, text=True
    )
    assert run.returncode == 1, run.stdout + run.stderr
    assert "error: channels.events.partitions" in run.stdout, run.stdout


def test_every_topic_setting_is_a_channel_named_by_its_default() -> None:
    fields = Settings.model_fields
    settings = [name for name in fields if name.endswith("_topic")]
    assert sorted(t.setting for t in TOPICS) == sorted(settings), (
        "a topic setting without a channel (or a channel without a setting): add it to "
        "schemas.asyncapi.TOPICS"
    )
    for topic in TOPICS:
        assert topic.address == fields[topic.setting].default, topic.setting
        channel = DOCUMENT["channels"][topic.channel_id]
        assert channel["address"] == topic.address
        assert channel["x-riverrun-setting"] == f"RIVERRUN_{topic.setting.upper()}"


def test_the_channels_are_the_topics_a_worker_creates() -> None:
    settings = Settings(broker="kafka:9092", join_enabled=True)
    addresses = {c["address"] for c in DOCUMENT["channels"].values()}
    assert addresses == set(topic_names(settings))
    compacted = {
        c["address"]
        for c in DOCUMENT["channels"].values()
        if "topicConfiguration" in c["bindings"]["kafka"]
    }
    assert compacted == set(compacted_topics(settings))


def test_every_schema_is_a_payload_or_not_a_topic_message() -> None:
    payloads = payload_models()
    for name, model in SCHEMA_FILES.items():
        assert model in payloads or model in NOT_TOPIC_MESSAGES, (
            f"{name} ({model.__name__}) is no topic's message: add it to a channel in "
            "schemas.asyncapi.TOPICS, or to its NOT_TOPIC_MESSAGES if no topic carries it"
        )
    assert not payloads & NOT_TOPIC_MESSAGES


def committed_schema(model: type[BaseModel]) -> dict[str, Any]:
    name = next(n for n, m in SCHEMA_FILES.items() if m is model)
    return dict(json.loads((PROJECT_DIR / "schemas" / "json" / name).read_text()))


TOPIC_SCHEMA_FILES = sorted(n for n, m in SCHEMA_FILES.items() if m not in NOT_TOPIC_MESSAGES)


@pytest.mark.parametrize("file_name", TOPIC_SCHEMA_FILES)
def test_payload_schemas_are_the_committed_json_schemas(file_name: str) -> None:
    model = SCHEMA_FILES[file_name]
    text = json.dumps(committed_schema(model)).replace('"#/$defs/', '"#/components/schemas/')
    committed = json.loads(text)
    committed.pop("$schema")
    components = DOCUMENT["components"]["schemas"]
    for name, part in committed.pop("$defs", {}).items():
        assert components[name] == part, name
    assert components[model.__name__] == committed


def test_every_schema_has_an_example_that_its_committed_json_schema_accepts() -> None:
    for name, model in SCHEMA_FILES.items():
        assert model in EXAMPLES, f"{model.__name__} has no example in schemas/examples.py"
        example = example_json(model)
        jsonschema.Draft202012Validator(committed_schema(model)).validate(example)
        assert model.model_validate(example) == EXAMPLES[model], name


def test_every_message_example_matches_its_payload_and_headers() -> None:
    root = {"components": DOCUMENT["components"]}
    for topic in TOPICS:
        channel = DOCUMENT["channels"][topic.channel_id]
        for name in message_names(topic):
            message = channel["messages"][name]
            [example] = message["examples"]
            assert example["payload"] == example_payload(topic, name)
            payload = message["payload"] if name != CHUNK else message["x-riverrun-chunk-header"]
            jsonschema.Draft202012Validator({**root, **payload}).validate(example["payload"])
            if "headers" in message:
                jsonschema.Draft202012Validator(message["headers"]).validate(example["headers"])
            else:
                assert "headers" not in example


def test_keys_are_what_the_examples_say() -> None:
    """Each topic's key as its producers make it (see the senders' code)."""
    keys = {t.channel_id: t.key_of(example_payload(t, message_names(t)[0])) for t in TOPICS}
    assert keys["events"] == example_json(InputEvent)["key"] == "visitor-7"
    assert keys["predictions"] == keys["shadow_predictions"] == "imp-1"
    assert keys["learn"] == keys["metrics"] == keys["drift"] == "logreg"
    assert keys["control"] == "plan:logreg"
    assert keys["checkpoints"].split("|")[:4] == ["riverrun", "events", "0", "logreg"]


def test_outputs_carry_the_source_header() -> None:
    """The outbox's outputs carry riverrun-source; what commands and the API write does not."""
    headers = {}
    for topic in TOPICS:
        message = DOCUMENT["channels"][topic.channel_id]["messages"][message_names(topic)[0]]
        headers[topic.channel_id] = SOURCE_HEADER in message.get("headers", {}).get(
            "properties", {}
        )
    assert not headers["events"] and not headers["control"] and not headers["checkpoints"]
    assert headers["predictions"] and headers["learn"] and headers["snapshots"]


def test_operations_name_their_service_and_channel() -> None:
    tags = DOCUMENT["components"]["tags"]
    for operation_id, operation in DOCUMENT["operations"].items():
        service, action, channel = operation_id.split(".")
        assert operation["action"] == action
        assert operation["channel"] == {"$ref": f"#/channels/{channel}"}
        assert operation["tags"] == [{"$ref": f"#/components/tags/{service}"}]
        assert service in tags
    # Every topic has a writer and the topics riverrun reads a reader.
    for topic in TOPICS:
        assert topic.senders, topic.setting
    assert {"events_service"} <= set(
        next(t for t in TOPICS if t.setting == "events_topic").receivers
    )
