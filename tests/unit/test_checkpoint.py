"""Checkpoints: a restored replica continues exactly as an uninterrupted one; tampered,
foreign, incomplete or incompatible checkpoints are refused before anything is unpickled."""

import pickle
import zlib
from pathlib import Path
from typing import TypeGuard

import pytest

from online_models import Learner, Rejection
from online_models.learning.checkpoint import (
    CheckpointRefused,
    Refusal,
    Replica,
    encode_checkpoint,
    gather,
    parse_chunk,
    restore,
)
from online_models.quality.drift import DriftConfig
from online_models.quality.evaluation import EvaluationConfig
from schemas import ClassPrediction, InputEvent, Prediction
from schemas.checkpoint import MAGIC
from streams.cli.replay import dataset_events
from tests.builtin import MODELS
from tests.fingerprint import fingerprint

KEY = b"test key"
REPLICA = Replica("group", "events", 3, "ctr_tree")
CONFIG = EvaluationConfig(every_events=100)


def clicks(model: str, n: int) -> list[InputEvent]:
    return list(dataset_events("clicks", limit=n, model=model, seed=7))


def trained(model: str, events: list[InputEvent]) -> Learner:
    learner = Learner([model], evaluation=CONFIG, registry=MODELS)
    learner.process(events)
    return learner


def checkpoint_of(learner: Learner, model: str, replica: Replica = REPLICA, **kw):  # type: ignore[no-untyped-def]
    options = {"key": KEY, "next_offset": 5000, "sequence": 4, **kw}
    return encode_checkpoint(learner.models[model], replica, **options)


def only(records: list[tuple[bytes, bytes]]):  # type: ignore[no-untyped-def]
    checkpoints, refused = gather([value for _, value in records])
    assert not refused and len(checkpoints) == 1
    return checkpoints[0]


def binary_predictions(
    outputs: list[Prediction | ClassPrediction | Rejection],
) -> TypeGuard[list[Prediction]]:
    return all(isinstance(o, Prediction) for o in outputs)


def refusal(checkpoint, replica: Replica = REPLICA, model: str = "ctr_tree", **kw) -> Refusal:  # type: ignore[no-untyped-def]
    with pytest.raises(CheckpointRefused) as caught:
        restore(checkpoint, replica, MODELS[model], key=kw.pop("key", KEY), **kw)
    return caught.value.reason


def test_a_restored_tree_over_1_mb_continues_exactly_like_the_uninterrupted_one() -> None:
    events = clicks("ctr_tree", 12_000)
    first, second = events[:8_000], events[8_000:]
    uninterrupted = Learner(["ctr_tree"], evaluation=CONFIG, registry=MODELS)
    expected = uninterrupted.process(first) + uninterrupted.process(second)
    expected_reports = uninterrupted.drain_reports()

    before = trained("ctr_tree", first)
    reports = before.drain_reports()
    records = checkpoint_of(before, "ctr_tree", next_offset=8_000, chunk_bytes=256 * 1024)
    payload = sum(len(value) for _, value in records)
    assert payload > 1_000_000  # larger than Kafka's default message limit...
    assert all(len(value) < 300 * 1024 for _, value in records)  # ...yet every chunk fits
    assert len({key for key, _ in records}) == len(records)  # compaction keeps every chunk

    served = restore(only(records), REPLICA, MODELS["ctr_tree"], key=KEY, evaluation=CONFIG)
    assert served.resume_offset == 8_000
    after = Learner(["ctr_tree"], evaluation=CONFIG, registry=MODELS)
    after.models["ctr_tree"] = served
    outputs = after.process(second)
    assert [o.prediction for o in outputs] == [o.prediction for o in expected[8_000:]]  # type: ignore[union-attr]
    assert [o.model_updates for o in outputs] == [o.model_updates for o in expected[8_000:]]  # type: ignore[union-attr]
    assert reports + after.drain_reports() == expected_reports  # metrics continue too
    assert fingerprint(served.state()) == fingerprint(uninterrupted.models["ctr_tree"].state())


def test_events_below_the_resume_offset_are_predicted_but_not_learnt_again() -> None:
    events = clicks("logreg", 400)
    learner = trained("logreg", events[:300])
    replica = Replica("group", "events", 3, "logreg")
    records = checkpoint_of(learner, "logreg", replica, next_offset=300)
    served = restore(only(records), replica, MODELS["logreg"], key=KEY)
    replay = Learner(["logreg"], evaluation=CONFIG, registry=MODELS)
    replay.models["logreg"] = served
    outputs = replay.process(events[250:], offsets=range(250, 400))
    assert binary_predictions(outputs)
    assert [o.learned for o in outputs] == [False] * 50 + [
        e.label is not None for e in events[300:]
    ]
    assert served.updates == learner.models["logreg"].updates + 100


def test_a_restored_multiclass_replica_continues_exactly_and_keeps_its_classes() -> None:
    events = list(dataset_events("segments", limit=None, model=None, seed=42))
    uninterrupted = Learner(["softmax"], evaluation=CONFIG, registry=MODELS)
    expected = uninterrupted.process(events)
    before = trained("softmax", events[:1200])
    replica = Replica("group", "events", 0, "softmax")
    records = checkpoint_of(before, "softmax", replica, next_offset=1200)
    served = restore(only(records), replica, MODELS["softmax"], key=KEY, evaluation=CONFIG)
    assert set(served.classes) == set(before.models["softmax"].classes) and served.classes
    after = Learner(["softmax"], evaluation=CONFIG, registry=MODELS)
    after.models["softmax"] = served

    def without_latency(outputs: list) -> list:  # type: ignore[type-arg]
        return [o.model_copy(update={"latency_seconds": 0.0}) for o in outputs]

    assert without_latency(after.process(events[1200:])) == without_latency(expected[1200:])
    assert fingerprint(served.state()) == fingerprint(uninterrupted.models["softmax"].state())


def test_a_changed_byte_anywhere_is_refused_as_unauthenticated() -> None:
    records = checkpoint_of(trained("ctr_tree", clicks("ctr_tree", 500)), "ctr_tree")
    value = bytearray(records[0][1])
    value[-10] ^= 0x01  # in the payload
    tampered = only([(records[0][0], bytes(value))])
    assert refusal(tampered) == Refusal.UNAUTHENTICATED

    header, data = parse_chunk(records[0][1])
    forged = header.model_copy(update={"updates": header.updates + 1}).model_dump_json().encode()
    value2 = MAGIC + len(forged).to_bytes(4, "big") + forged + data
    assert refusal(only([(records[0][0], value2)])) == Refusal.UNAUTHENTICATED


def test_another_key_is_refused() -> None:
    checkpoint = only(checkpoint_of(trained("ctr_tree", clicks("ctr_tree", 200)), "ctr_tree"))
    assert refusal(checkpoint, key=b"another key") == Refusal.UNAUTHENTICATED


def test_unauthenticated_bytes_are_never_unpickled(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (marker.write_text, ("code ran",))

    records = checkpoint_of(trained("ctr_tree", clicks("ctr_tree", 200)), "ctr_tree")
    header, _ = parse_chunk(records[0][1])
    evil = zlib.compress(pickle.dumps(Exploit()))
    header = header.model_copy(update={"chunks": 1, "payload_bytes": len(evil)})
    text = header.model_dump_json().encode()
    value = MAGIC + len(text).to_bytes(4, "big") + text + evil
    assert refusal(only([(b"k", value)])) == Refusal.UNAUTHENTICATED
    assert not marker.exists()


def test_foreign_and_incompatible_checkpoints_are_refused() -> None:
    learner = trained("ctr_tree", clicks("ctr_tree", 200))
    checkpoint = only(checkpoint_of(learner, "ctr_tree"))
    other_partition = Replica("group", "events", 4, "ctr_tree")
    assert refusal(checkpoint, replica=other_partition) == Refusal.FOREIGN
    assert refusal(checkpoint, replica=Replica("other", "events", 3, "ctr_tree")) == Refusal.FOREIGN
    changed = {"ctr_tree": MODELS["ctr_tree"].with_params(max_depth=3)}
    with pytest.raises(CheckpointRefused) as caught:
        restore(checkpoint, REPLICA, changed["ctr_tree"], key=KEY)
    assert caught.value.reason == Refusal.INCOMPATIBLE
    assert "max_depth" in str(caught.value)
    assert refusal(checkpoint, river_version="0.1.0") == Refusal.INCOMPATIBLE


def test_a_missing_chunk_is_refused_as_incomplete() -> None:
    learner = trained("ctr_tree", clicks("ctr_tree", 3000))
    records = checkpoint_of(learner, "ctr_tree", chunk_bytes=4096)
    assert len(records) > 2
    checkpoint = only(records[:1] + records[2:])
    assert refusal(checkpoint) == Refusal.INCOMPLETE


def test_gather_orders_newest_first_and_reports_foreign_bytes() -> None:
    learner = trained("ctr_tree", clicks("ctr_tree", 200))
    old = checkpoint_of(learner, "ctr_tree", sequence=1, next_offset=100)
    new = checkpoint_of(learner, "ctr_tree", sequence=2, next_offset=200)
    checkpoints, refused = gather([v for _, v in new] + [b"not a checkpoint"] + [v for _, v in old])
    assert [c.header.next_offset for c in checkpoints] == [200, 100]
    assert [r.reason for r in refused] == [Refusal.MALFORMED]
    # Slots alternate so that compaction keeps the newest checkpoint and the one before.
    assert old[0][0] != new[0][0] and REPLICA.key(1, 0) == REPLICA.key(3, 0)


def test_changed_metrics_settings_keep_the_model_and_restart_the_metrics() -> None:
    learner = trained("ctr_tree", clicks("ctr_tree", 500))
    checkpoint = only(checkpoint_of(learner, "ctr_tree"))
    other = EvaluationConfig(window=50)
    served = restore(checkpoint, REPLICA, MODELS["ctr_tree"], key=KEY, evaluation=other)
    assert served.updates == learner.models["ctr_tree"].updates
    assert served.evaluator.config == other and served.evaluator.n == 0


def test_a_corrupt_signed_payload_is_refused_as_unreadable() -> None:
    # Signed with the right key but not a state this code wrote (e.g. a bug, a downgrade).
    learner = trained("ctr_tree", clicks("ctr_tree", 100))
    served = learner.models["ctr_tree"]
    served.state = lambda: ("only", "two")  # type: ignore[method-assign, assignment, return-value]
    checkpoint = only(checkpoint_of(learner, "ctr_tree"))
    assert refusal(checkpoint) == Refusal.UNREADABLE


def test_a_restored_model_keeps_drift_detection_when_the_worker_has_it() -> None:
    learner = trained("ctr_tree", clicks("ctr_tree", 100))
    checkpoint = only(checkpoint_of(learner, "ctr_tree"))
    served = restore(checkpoint, REPLICA, MODELS["ctr_tree"], key=KEY, drift=DriftConfig())
    assert served.drift is not None and served.drift.n == 0  # detectors start afresh
    assert served.estimator is not learner.models["ctr_tree"].estimator  # the unpickled one
    assert restore(checkpoint, REPLICA, MODELS["ctr_tree"], key=KEY).drift is None
