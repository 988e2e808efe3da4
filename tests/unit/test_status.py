"""`riverrun status`: how the group's status reads, and an unreachable broker is one
sentence and a non-zero exit (against a port where nothing listens)."""

import json
from datetime import UTC, datetime

from click.testing import CliRunner

from streams.cli.main import main
from streams.cli.status import (
    Checkpoint,
    GroupStatus,
    LearnPartition,
    Member,
    Partition,
    status_json,
    status_lines,
)
from tests.ports import free_port


def group() -> GroupStatus:
    members = [
        Member("g-events-1a2b3c4d", "g-events", "10.0.0.5", [0, 1], "http://w1:9465"),
        Member("g-events-5e6f7a8b", "g-events", "10.0.0.6", []),
    ]
    saved = Checkpoint("fraud", "fraud@aa", 1200, 1180, "2026-12-06T12:00:00+00:00")
    versions = ["fraud@aa champion", "fraud@bb shadow"]
    partitions = [
        Partition(0, 1250, 1300, 50, "g-events-1a2b3c4d", versions, [saved]),
        Partition(1, None, 40, 40, "g-events-1a2b3c4d"),
    ]
    learners = [LearnPartition(2, 900, 1000, 100, "g-events-5e6f7a8b")]
    return GroupStatus("b1:9092", "g", "Stable", "tx", members, partitions, [], learners)


def test_status_lists_members_partitions_lag_versions_and_checkpoints() -> None:
    now = datetime(2026, 12, 6, 12, 1, 30, tzinfo=UTC)
    lines = status_lines(group(), now)
    assert lines[0] == "group g on b1:9092: Stable, 2 member(s), 2 partition(s) of tx, lag 90"
    assert "  g-events-1a2b3c4d  host 10.0.0.5, partitions 0,1, api http://w1:9465" in lines
    assert "  g-events-5e6f7a8b  host 10.0.0.6, partitions none" in lines
    rows = lines[lines.index("partitions:") + 2 :][:2]
    assert rows[0].split() == ["0", "1250", "1300", "50", "g-events-1a2b3c4d"]
    assert rows[1].split() == ["1", "-", "40", "40", "g-events-1a2b3c4d"]  # nothing committed
    assert "  partition 0: fraud@aa champion, fraud@bb shadow" in lines
    assert "  partition 0: fraud@aa at offset 1200, 1180 updates, 90 s ago" in lines
    learning = lines[
        lines.index("learners of the global models (learn partitions with examples):") + 2
    ]
    assert learning.split() == ["2", "900", "1000", "100", "g-events-5e6f7a8b"]


def test_status_json_holds_the_same_and_the_total_lag() -> None:
    found = json.loads(status_json(group()))
    assert found["lag"] == 90
    assert found["partitions"][1]["committed"] is None
    assert found["members"][0]["partitions"] == [0, 1]
    assert found["partitions"][0]["checkpoints"][0]["next_offset"] == 1200
    assert found["learners"][0]["lag"] == 100


def test_an_unreachable_broker_is_one_sentence_and_exit_1(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    port = free_port()  # nothing listens there
    monkeypatch.setenv("RIVERRUN_BROKER", f"127.0.0.1:{port}")
    monkeypatch.setenv("RIVERRUN_CHECKPOINT_KEY", "key-secret-9")
    result = CliRunner().invoke(main, ["status", "--json"])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith(f"Error: broker 127.0.0.1:{port} unreachable: ")
    assert "Traceback" not in result.output and "key-secret-9" not in result.output
