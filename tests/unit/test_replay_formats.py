"""`riverrun replay` and `riverrun demo` in the events topic's format, before anything is
sent (no broker needed): what they refuse to write, and a registry that does not answer,
each in one sentence."""

import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from streams.cli.main import main

#: A port nothing listens on: the registry there refuses connections at once.
NO_REGISTRY = "http://127.0.0.1:1"
REPLAY = ["replay", "--dataset", "phishing", "--limit", "3", "--quiet"]


@pytest.fixture
def environment(clean_environment: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    clean_environment.setenv("RIVERRUN_DATA_DIR", str(tmp_path / "data"))
    clean_environment.setenv("RIVERRUN_SCHEMA_REGISTRY_URL", NO_REGISTRY)
    return clean_environment


def refusal(*args: str) -> str:
    done = CliRunner().invoke(main, list(args))
    assert done.exit_code == 1, done.output
    assert "Traceback" not in done.output
    lines = done.output.strip().splitlines()
    assert len(lines) == 1, done.output
    return lines[0]


def test_protobuf_is_refused_as_a_topic_of_the_teams_own_records(
    environment: pytest.MonkeyPatch,
) -> None:
    environment.setenv("RIVERRUN_EVENTS_FORMAT", "protobuf")
    assert refusal(*REPLAY) == (
        "Error: RIVERRUN_EVENTS_FORMAT is protobuf, so the events topic carries the team's own "
        "records, which the team's producers write (riverrun has no schema of them): replay "
        "to a topic read as riverrun's events (RIVERRUN_EVENTS_FORMAT json, avro or "
        "json_schema, no mapping)"
    )


@pytest.mark.parametrize("format", ["json", "avro"])
def test_a_mapping_is_refused_in_every_format(environment: pytest.MonkeyPatch, format: str) -> None:
    environment.setenv("RIVERRUN_EVENTS_FORMAT", format)
    environment.setenv("RIVERRUN_EVENT_MAPPING", '{"key": "user", "model": "logreg"}')
    assert refusal(*REPLAY).startswith(
        "Error: RIVERRUN_EVENT_MAPPING maps records to events, so the events topic carries "
        "the team's own records"
    )


def test_an_apps_mapping_or_event_decoder_is_refused(
    environment: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "clickapp.py").write_text(
        textwrap.dedent(
            """
            import riverrun
            import riverrun.builtin
            from schemas.formats.mapping import EventMapping

            mapping = EventMapping(key="user", model="logreg")
            mapped = riverrun.App(event_mapping=mapping).include(riverrun.builtin.app)
            decoded = riverrun.App().include(riverrun.builtin.app)

            @decoded.event_decoder
            def click_event(record):
                return {"key": record["user"], "model": "logreg", "features": {}}
            """
        )
    )
    environment.chdir(tmp_path)
    environment.setattr(sys, "path", [str(tmp_path), *sys.path])
    assert "the app maps records to events (App(event_mapping=...))" in refusal(
        *REPLAY, "--app", "clickapp:mapped"
    )
    assert "the app makes records events with its event decoder click_event" in refusal(
        *REPLAY, "--app", "clickapp:decoded"
    )


@pytest.mark.parametrize("format", ["avro", "json_schema"])
def test_a_registry_that_does_not_answer_is_named_in_one_sentence(
    environment: pytest.MonkeyPatch, format: str
) -> None:
    environment.setenv("RIVERRUN_EVENTS_FORMAT", format)
    environment.setenv("RIVERRUN_EVENTS_TOPIC", "clicks")
    environment.setenv("RIVERRUN_SCHEMA_REGISTRY_USERNAME", "team")
    environment.setenv("RIVERRUN_SCHEMA_REGISTRY_PASSWORD", "s3cret-registry-password")
    said = refusal(*REPLAY)
    assert said.startswith(
        f"Error: the schema registry at {NO_REGISTRY} did not register the InputEvent schema "
        "under clicks-value ("
    )
    assert said.endswith("): start it, or check RIVERRUN_SCHEMA_REGISTRY_URL and its credentials")
    assert "s3cret" not in said


def test_the_demo_refuses_before_it_starts_anything(environment: pytest.MonkeyPatch) -> None:
    environment.setenv("RIVERRUN_EVENTS_FORMAT", "protobuf")
    assert "RIVERRUN_EVENTS_FORMAT is protobuf" in refusal("demo", "--limit", "10")
    environment.setenv("RIVERRUN_EVENTS_FORMAT", "avro")
    assert f"the schema registry at {NO_REGISTRY} did not register" in refusal(
        "demo", "--limit", "10"
    )
    environment.setenv("RIVERRUN_JOIN_FORMAT", "avro")
    assert refusal("demo", "--limit", "10") == (
        "Error: the demo writes its delayed-feedback scenario in JSON, which the join reads "
        "as avro when RIVERRUN_JOIN_FORMAT is set: unset it, or set RIVERRUN_JOIN_ENABLED=false"
    )
