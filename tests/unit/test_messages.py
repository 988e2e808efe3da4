"""Messages a user acts on say what is true: where a schema is, why a model failed, where
a partition starts, what a CLI option compares with."""

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from schemas import ErrorType, InputEvent
from schemas.codec import InvalidMessage, decode
from streams.cli import main


def test_an_invalid_event_points_to_a_schema_file_an_installed_wheel_can_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A wheel user has no checkout, hence no schemas/json/: the reason names the file and
    # the command that writes it, and that command, run anywhere, does write it.
    with pytest.raises(InvalidMessage) as caught:
        decode(InputEvent, b'{"event_id": "e1", "ts": 0, "model": "m"}', max_bytes=1000)
    reason = caught.value.reason
    assert caught.value.error_type is ErrorType.INVALID_EVENT
    assert "schemas/json/" not in reason
    found = re.search(r"JSON Schema (\S+) \(`riverrun (schemas export) --dir DIR`", reason)
    assert found is not None, reason
    monkeypatch.chdir(tmp_path)
    done = CliRunner().invoke(main, ["schemas", "export", "--dir", "out"])
    assert done.exit_code == 0, done.output
    assert (tmp_path / "out" / found.group(1)).is_file()


def test_backfill_help_and_readme_say_record_timestamps_as_the_code_seeks() -> None:
    # The partition is sought with offsets_for_times: Kafka record timestamps, which
    # `riverrun replay` and most producers leave at the time of producing.
    shown = CliRunner().invoke(main, ["models", "deploy", "--help"], terminal_width=400)
    help_text = " ".join(shown.output.split())
    assert "record timestamps" in help_text and "event time" not in help_text
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    deploy = next(line for line in readme.splitlines() if "--backfill-from`:" in line)
    assert "record timestamps" in deploy and "event time" not in deploy


def test_a_fresh_partition_starts_at_the_beginning_and_a_resume_says_what_is_replayed() -> None:
    from aiokafka import TopicPartition

    from streams.partitioned import where_it_starts

    tp = TopicPartition("events", 3)
    assert where_it_starts(tp, 0, None, 0) == (
        "events[3]: starting at the beginning (nothing committed yet)"
    )
    # Retention deleted offsets 0-119: nothing committed, the log starts later.
    assert where_it_starts(tp, 120, None, 0) == (
        "events[3]: starting at offset 120, the first offset still in the log (nothing "
        "committed yet)"
    )
    resumed = where_it_starts(tp, 500, 800, 500)
    assert "None" not in resumed and "offset 500" in resumed and "offset 800" in resumed
    assert "events 500 to 799" in resumed and "not sent again" in resumed
