"""Idempotent input: an event id processed within the window is a `duplicate_event`
dead letter, neither predicted nor learnt again, across checkpoints and restores."""

import pickle
import tracemalloc

from online_models import Learner, Rejection
from online_models.learning.checkpoint import Replica, encode_checkpoint, gather, restore
from online_models.learning.dedup import DEFAULT_DEDUP_WINDOW, RecentEvents
from schemas import ErrorType, InputEvent, Prediction
from streams.cli.replay import dataset_events
from tests.builtin import MODELS
from tests.fingerprint import fingerprint

KEY = b"test key"
REPLICA = Replica("group", "events", 0, "logreg")


def clicks(n: int, seed: int = 5) -> list[InputEvent]:
    return list(dataset_events("clicks", limit=n, model="logreg", seed=seed))


def test_a_re_sent_event_is_a_duplicate_naming_the_first_offset_and_is_not_learnt() -> None:
    events = clicks(50)
    learner = Learner(["logreg"], registry=MODELS)
    learner.process(events, offsets=range(100, 150))
    before = fingerprint(
        learner.models["logreg"].state().parts()[:3]
    )  # estimator, updates, evaluator

    (output,) = learner.process([events[7]], offsets=[150])

    assert isinstance(output, Rejection) and output.error_type is ErrorType.DUPLICATE_EVENT
    assert f"{events[7].event_id!r}" in output.reason and "at offset 107" in output.reason
    assert "RIVERRUN_DEDUP_WINDOW" in output.reason
    assert fingerprint(learner.models["logreg"].state().parts()[:3]) == before  # nothing learnt


def test_the_window_forgets_the_oldest_ids_and_zero_turns_the_check_off() -> None:
    events = clicks(30)
    small = Learner(["logreg"], dedup_window=10, registry=MODELS)
    small.process(events, offsets=range(30))
    again = small.process([events[5], events[25]], offsets=[30, 31])
    assert isinstance(again[0], Prediction)  # left the window: predicted (and learnt) again
    assert isinstance(again[1], Rejection) and again[1].error_type is ErrorType.DUPLICATE_EVENT
    assert len(small.models["logreg"].recent) == 10

    off = Learner(["logreg"], dedup_window=0, registry=MODELS)
    off.process(events, offsets=range(30))
    assert all(isinstance(o, Prediction) for o in off.process(events[:3], offsets=[30, 31, 32]))
    assert len(off.models["logreg"].recent) == 0


def test_ids_are_per_model_and_rejected_events_are_not_remembered() -> None:
    learner = Learner(["logreg", "ctr"], registry=MODELS)
    first = clicks(1)[0]
    for_ctr = first.model_copy(update={"model": "ctr"})
    bad = first.model_copy(update={"event_id": "bad", "label": "x"})  # not a binary label
    outputs = learner.process([first, for_ctr, bad, bad.model_copy(update={"label": True})])
    assert [type(o).__name__ for o in outputs] == [
        "Prediction",
        "Prediction",
        "Rejection",
        "Prediction",
    ]


def test_without_offsets_positions_count_and_repeats_are_refused() -> None:
    events = clicks(3)
    outputs = Learner(["logreg"], registry=MODELS).process([*events, events[1]])
    assert isinstance(outputs[3], Rejection)
    assert "at offset 1" in outputs[3].reason


def test_the_window_is_checkpointed_and_a_restored_replica_refuses_what_the_last_did() -> None:
    events = clicks(400)
    uninterrupted = Learner(["logreg"], registry=MODELS)
    expected = uninterrupted.process([*events, events[10], events[390]], offsets=range(402))

    first = Learner(["logreg"], registry=MODELS)
    first.process(events[:300], offsets=range(300))
    records = encode_checkpoint(
        first.models["logreg"], REPLICA, key=KEY, next_offset=300, sequence=0
    )
    restored = Learner(["logreg"], registry=MODELS)
    restored.models["logreg"] = restore(
        gather(v for _, v in records)[0][0], REPLICA, first.models["logreg"].spec, key=KEY
    )
    # The new owner re-runs from the checkpoint's offset (here also 250..299, which a
    # lower checkpoint of another model would make it re-run: predicted, not learnt).
    rerun = restored.process([*events[250:], events[10], events[390]], offsets=range(250, 402))

    assert [type(o).__name__ for o in rerun] == [type(o).__name__ for o in expected[250:]]
    assert [getattr(o, "reason", None) for o in rerun[-2:]] == [o.reason for o in expected[-2:]]  # type: ignore[union-attr]
    assert fingerprint(restored.models["logreg"].state()) == fingerprint(
        uninterrupted.models["logreg"].state()
    )


def test_a_smaller_window_after_a_restore_keeps_the_newest_ids() -> None:
    recent = RecentEvents(5)
    for i in range(5):
        recent.add(f"e{i}", i)
    smaller = pickle.loads(pickle.dumps(recent)).resized(2)
    assert [smaller.first_offset(f"e{i}") for i in range(5)] == [None, None, None, 3, 4]
    smaller.add("e5", 5)
    assert smaller.first_offset("e3") is None and len(smaller) == 2


def test_memory_of_the_default_window_is_as_documented() -> None:
    tracemalloc.start()
    try:
        recent = RecentEvents(DEFAULT_DEDUP_WINDOW)
        for i in range(DEFAULT_DEDUP_WINDOW):
            recent.add(f"clicks-{i:08d}", 10_000_000 + i)
        used, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    per_id = used / DEFAULT_DEDUP_WINDOW
    assert 100 < per_id < 170, per_id  # docs, Guarantees: ~145 bytes per 15-character id, 7-8 MB
