"""Files as input events (`streams.cli.replay.file_events`) and the replay's summary
(`Aftermath`, `Produced`), without a broker."""

from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from schemas import DeadLetter, ErrorType
from streams.cli.replay import FileError, count_file_events, file_events
from streams.cli.replay_aftermath import Aftermath, Produced


def events(path: Path, **options: Any) -> list[Any]:
    return list(file_events(path, model="logreg", **options))


def test_a_wrong_label_column_is_refused_instead_of_becoming_a_feature(tmp_path: Path) -> None:
    csv_file = tmp_path / "offers.csv"
    csv_file.write_text("device,price,label\nmobile,0.5,1\n")
    with pytest.raises(FileError) as raised:
        events(csv_file, label_column="clicked")
    assert str(raised.value) == (
        "offers.csv has no column 'clicked' (its columns: device, label, price): pass "
        "--label-column with the column that holds the labels (or --unlabelled for a file "
        "without labels)"
    )
    # A JSONL file: refused once no record has the column (an unlabelled record is fine).
    jsonl = tmp_path / "offers.jsonl"
    jsonl.write_text('{"price": 1, "y": true}\n\n{"price": 2}\n')
    with pytest.raises(FileError, match=r"offers.jsonl has no column 'label' .*: price, y"):
        count_file_events(jsonl, model="logreg")
    assert [(e.features, e.label) for e in events(jsonl, label_column="y")] == [
        ({"price": 1}, True),
        ({"price": 2}, None),
    ]
    assert [e.features for e in events(jsonl, label_column=None)] == [
        {"price": 1, "y": True},
        {"price": 2},
    ]


def test_key_and_time_columns(tmp_path: Path) -> None:
    path = tmp_path / "visits.jsonl"
    path.write_text(
        '{"visitor": "v1", "when": "2026-03-01T11:00:00+01:00", "price": 1, "label": 1}\n'
        '{"visitor": 7, "when": 1772359200, "price": 2}\n'
        '{"visitor": "v1", "when": "2026-03-01 10:00:00.250", "price": 3, "label": 0}\n'
    )
    made = events(path, key_column="visitor", time_column="when", id_prefix="r-")
    ten = datetime(2026, 3, 1, 10, tzinfo=UTC)
    assert [(e.event_id, e.key, e.ts, e.features) for e in made] == [
        ("r-visits-00000000", "v1", ten, {"price": 1}),
        ("r-visits-00000001", "7", ten, {"price": 2}),
        ("r-visits-00000002", "v1", ten.replace(microsecond=250_000), {"price": 3}),
    ]
    # Without them: the id is the key, one second apart from 2026-01-01.
    made = events(path, limit=2)
    assert [(e.key, e.ts.isoformat()) for e in made] == [
        ("visits-00000000", "2026-01-01T00:00:00+00:00"),
        ("visits-00000001", "2026-01-01T00:00:01+00:00"),
    ]


@pytest.mark.parametrize(
    ("text", "options", "message"),
    [
        (
            "a,t\n1,2026-01-01\n",
            {"time_column": "ts"},
            "f.csv has no column 'ts' (its columns: a, t): pass --time-column",
        ),
        (
            "a,t\n1,soon\n",
            {"time_column": "t"},
            "f.csv line 2: the time column 't' holds 'soon', which is not a time: write ISO 8601",
        ),
        ("a,k\n1,\n", {"key_column": "k"}, "f.csv line 2: the key column 'k' is empty"),
        ("a,b\n1,2,3\n", {}, "f.csv line 2 has 3 cells where the header names 2 columns"),
        ("a,b\n1,2\n1\n", {}, "f.csv line 3 has 1 cells where the header names 2 columns"),
    ],
)
def test_one_sentence_per_mistake_in_a_csv(
    tmp_path: Path, text: str, options: dict[str, Any], message: str
) -> None:
    path = tmp_path / "f.csv"
    path.write_text(text)
    with pytest.raises(FileError) as raised:
        count_file_events(path, model="logreg", label_column=None, **options)
    assert str(raised.value).startswith(message), raised.value


def test_a_line_that_is_not_a_json_object_or_not_flat(tmp_path: Path) -> None:
    path = tmp_path / "f.jsonl"
    path.write_text('{"a": 1}\n[1, 2]\n')
    with pytest.raises(FileError, match=r"^f.jsonl line 2: not a JSON object \(\[1, 2\]\)"):
        count_file_events(path, model="logreg", label_column=None)
    path.write_text('{"a": 1}\n{"a": {"b": 2}}\n')
    with pytest.raises(FileError, match=r"^f.jsonl line 2: features.a: .* leave the column out$"):
        count_file_events(path, model="logreg", label_column=None)


def test_produced_knows_which_messages_are_the_replays() -> None:
    produced = Produced("events")
    for partition, offset in [(0, 5), (1, 3), (0, 6), (0, 9), (1, 4)]:
        produced.written(SimpleNamespace(partition=partition, offset=offset))
    assert produced.count() == 5 and produced.ends() == {0: 10, 1: 5}
    assert produced.below({0: 7, 1: 0}) == 2  # 5 and 6 were committed on partition 0
    assert (0, 9) in produced and (0, 7) not in produced and (2, 5) not in produced


def letter(error_type: ErrorType, reason: str) -> DeadLetter:
    return DeadLetter(
        payload="{}",
        payload_encoding="utf-8",
        payload_bytes=2,
        source_topic="events",
        source_partition=0,
        source_offset=0,
        error_type=error_type,
        reason=reason,
        ts=datetime.fromtimestamp(0, UTC),
    )


def test_the_summary_groups_dead_letters_by_reason_with_a_hint() -> None:
    after = Aftermath(sent=10, handled=7, waited=5.0, dead_letters_topic="dl")
    for i in range(3):
        after.count(letter(ErrorType.DUPLICATE_EVENT, f"event_id 'e{i}' was already processed"))
    after.count(letter(ErrorType.INVALID_LABEL, "label 'x' is not a class"))
    assert after.lines() == [
        "the worker had handled 7 of the 10 events after 5 s (wait longer with "
        "--wait-seconds): 4 became dead letters (`riverrun tail dl --from-beginning` shows "
        "them)",
        "  3 duplicate_event, e.g. event_id 'e0' was already processed",
        "    these event ids were replayed before: pass a new --id-prefix (e.g. --id-prefix "
        "run2-) to send the records as new events",
        "  1 invalid_label, e.g. label 'x' is not a class",
        "    check --label-column and that the labels suit the model's task",
    ]


def test_a_label_the_models_task_cannot_learn_is_refused_as_the_stream_would(
    tmp_path: Path,
) -> None:
    path = tmp_path / "f.csv"
    path.write_text("price,label\n1,true\n2,0\n3,yes\n")
    assert len(events(path, task="regression", limit=1)) == 1  # (True is a number)
    with pytest.raises(FileError) as raised:
        count_file_events(path, model="logreg", task="binary")
    assert str(raised.value) == (
        "f.csv line 4: label 'yes' is not a class of binary model 'logreg': send true/false or "
        "0/1 (is --label-column the column of labels?)"
    )
    assert len(events(path)) == 3  # without a task: left to the stream
