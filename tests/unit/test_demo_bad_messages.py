"""The demo's bad messages: in each events format, each one gets the verdict the demo
expects of the worker (its summary compares the dead letters' types with them), decided
by the worker's own decoder; an unknown model is the learner's verdict, after decoding."""

from typing import Any

import pytest

from schemas.codec import InvalidMessage
from schemas.formats.events import EventDecoder
from schemas.formats.input_events import InputEventEncoder, registered_schema
from schemas.formats.mapping import RecordMeta
from schemas.formats.readers import reader_for
from schemas.formats.wire import RegisteredSchema
from streams.cli.demo import bad_messages

SCHEMA_ID = 3
MAX_BYTES = 4_000
META = RecordMeta("events", 0, 0, 0)


def verdicts(format: str) -> list[tuple[str, str]]:
    """(expected, given) error type of each bad message in `format`."""
    readers: dict[int, Any] = {}
    encoder = InputEventEncoder("json")
    if format != "json":
        schema_type, text = registered_schema(format)  # type: ignore[arg-type]
        readers[SCHEMA_ID] = reader_for(RegisteredSchema(SCHEMA_ID, schema_type, text))
        encoder = InputEventEncoder(format, SCHEMA_ID)  # type: ignore[arg-type]
    decoder = EventDecoder(format, readers=readers, max_bytes=MAX_BYTES)  # type: ignore[arg-type]
    given = []
    for expected, value in bad_messages("run-", "logreg", MAX_BYTES, encoder):
        try:
            event = decoder.decode(value, META)
        except InvalidMessage as err:
            given.append((expected, err.error_type.value))
        else:
            given.append((expected, "unknown_model" if event.model == "no-such-model" else "ok"))
    return given


@pytest.mark.parametrize("format", ["json", "json_schema", "avro"])
def test_each_bad_message_gets_the_verdict_the_demo_expects(format: str) -> None:
    given = verdicts(format)
    assert [verdict for verdict, _ in given] == [verdict for _, verdict in given]


def test_json_keeps_its_six_kinds_and_registry_formats_add_the_wire_formats() -> None:
    assert sorted({kind for kind, _ in verdicts("json")}) == [
        "invalid_event",
        "invalid_json",
        "oversized",
        "unknown_model",
    ]
    assert len(verdicts("json")) == 6
    # Avro has no invalid JSON: its own undecodable record (and JSON without the header).
    assert {kind for kind, _ in verdicts("avro")} == {
        "invalid_event",
        "oversized",
        "unknown_model",
        "undecodable",
        "unknown_schema",
    }
    assert {kind for kind, _ in verdicts("json_schema")} >= {"invalid_json", "unknown_schema"}
