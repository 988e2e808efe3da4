"""`riverrun replay --file` and `evaluate --file` against the real broker and a real
worker: a column that is not in the file stops them before any event, key and time
columns become the events' key and time, and a replay ends with the dead letters it
caused."""

from datetime import UTC, datetime

from schemas import InputEvent
from streams.http.server import partition_of
from tests.integration.conftest import replay_file
from tests.integration.conftest import riverrun_cli as riverrun


def test_a_label_column_not_in_the_file_is_refused_before_any_event(make_env, tmp_path) -> None:  # type: ignore[no-untyped-def]
    env = make_env(models=["logreg"])
    path = tmp_path / "offers.csv"
    path.write_text("device,price,label\nmobile,0.5,1\ndesktop,2,0\nmobile,1,1\n")
    for command in ("replay", "evaluate"):
        done = riverrun(
            env, command, "--file", str(path), "--model", "logreg", "--label-column", "WRONG"
        )
        # Before: replay said "replayed 3 events" with the label as a feature, evaluate
        # "0 reports".
        assert done.returncode == 1, done.stdout
        assert done.stderr.strip() == (
            "Error: offers.csv has no column 'WRONG' (its columns: device, label, price): "
            "pass --label-column with the column that holds the labels (or --unlabelled for "
            "a file without labels)"
        )
    # A label the model's task cannot learn: refused as the stream would, before any event.
    path.write_text("device,price,label\nmobile,0.5,1\ndesktop,2,maybe\n")
    done = replay_file(env, path, "logreg")
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "Error: offers.csv line 3: label 'maybe' is not a class of binary model 'logreg': send "
        "true/false or 0/1 (is --label-column the column of labels?)"
    )
    jsonl = tmp_path / "offers.jsonl"
    jsonl.write_text('{"device": "mobile", "clicked": true}\n{"device": "desktop"}\n')
    done = replay_file(env, jsonl, "logreg")
    assert done.returncode == 1 and "offers.jsonl has no column 'label'" in done.stderr
    assert env.count(env.settings.events_topic) == 0  # nothing produced


def test_key_and_time_columns_make_the_events_key_and_time(make_env, tmp_path) -> None:  # type: ignore[no-untyped-def]
    env = make_env(topic_partitions=2, models=["logreg"])
    path = tmp_path / "visits.csv"
    path.write_text(
        "visitor,when,price,clicked\n"
        "visitor-7,2026-03-01T10:00:00Z,0.5,1\n"
        "visitor-8,1772359200,2,0\n"  # epoch seconds: 2026-03-01T10:00:00Z
        "visitor-9,1772359200500,1,\n"  # epoch milliseconds
    )
    done = replay_file(
        env,
        path,
        "logreg",
        *("--quiet", "--label-column", "clicked", "--key-column", "visitor"),
        *("--time-column", "when", "--wait-seconds", "0"),
    )
    assert done.returncode == 0, done.stderr
    messages = env.read(env.settings.events_topic, 3)
    events = {
        InputEvent.model_validate_json(m.value).key: (m, InputEvent.model_validate_json(m.value))
        for m in messages
    }
    ten = datetime(2026, 3, 1, 10, tzinfo=UTC)
    assert {key: (e.ts, e.features, e.label) for key, (_, e) in events.items()} == {
        "visitor-7": (ten, {"price": 0.5}, 1),
        "visitor-8": (ten, {"price": 2}, 0),
        "visitor-9": (ten.replace(microsecond=500_000), {"price": 1}, None),
    }
    # Each on its key's partition: predictions over HTTP for that key see its events.
    for key, (message, _) in events.items():
        assert message.key == key.encode() and message.partition == partition_of(key, 2)

    path.write_text("visitor,when,price\nvisitor-7,yesterday,0.5\n")
    done = replay_file(
        env, path, "logreg", "--unlabelled", "--key-column", "visitor", "--time-column", "when"
    )
    assert done.returncode == 1
    assert "visits.csv line 2: the time column 'when' holds 'yesterday', which is not a time" in (
        done.stderr
    )
    assert env.count(env.settings.events_topic) == 3  # the bad file produced nothing


def test_a_replay_ends_with_the_dead_letters_it_caused(make_env, tmp_path) -> None:  # type: ignore[no-untyped-def]
    env = make_env(topic_partitions=2, models=["logreg"])
    path = tmp_path / "offers.csv"
    path.write_text("price,label\n" + "".join(f"{i / 10},{i % 2}\n" for i in range(100)))
    replay = ["replay", "--file", str(path), "--model", "logreg", "--quiet"]

    # No worker yet: said so, within the wait.
    done = riverrun(env, *replay, "--wait-seconds", "2")
    assert done.returncode == 0, done.stderr
    assert "no worker handled any of the 100 events within 2 s" in done.stdout

    env.start_worker()
    env.wait_for_group_members(1)
    env.read(env.settings.predictions_topic, 100)  # the first replay, learnt
    # The same file again: every id was processed before -> 100 duplicate_event.
    done = riverrun(env, *replay, "--wait-seconds", "60")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("replayed 100 events to ")
    assert lines[1].startswith("the worker handled all 100 events within ")
    assert lines[1].endswith(
        f": 100 became dead letters (`riverrun tail "
        f"{env.settings.dead_letters_topic} --from-beginning` shows them)"
    )
    assert lines[2].startswith("  100 duplicate_event, e.g. event_id 'offers-000000")
    assert "pass a new --id-prefix" in lines[3]

    # New ids, for a model of the app that this worker does not serve (RIVERRUN_MODELS).
    done = riverrun(
        env,
        *replay,
        "--id-prefix",
        "run2-",
        "--model",
        "linreg",
        "--limit",
        "3",
        "--wait-seconds",
        "60",
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[1].startswith("the worker handled all 3 events within ")
    assert lines[1].split(": ", 1)[1].startswith("3 became dead letters")
    assert lines[2].startswith("  3 unknown_model, e.g. no model named 'linreg' is served here")
    assert lines[3] == "    pass --model with a model the worker serves"
