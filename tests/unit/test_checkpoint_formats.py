"""Checkpoint formats: this code writes a typed state (format 5, read by name) and still
restores the positional tuples of formats 4 and 3, including those written before
riverrun's modules moved into subpackages (a pickle names each class's module)."""

import pickle
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

import pytest

from online_models import Learner
from online_models.learning import checkpoint
from online_models.learning.checkpoint import (
    Checkpoint,
    Identity,
    Replica,
    encode_checkpoint,
    encode_state,
    gather,
    restore,
)
from online_models.learning.served import ReplicaState, ServedModel
from online_models.quality.drift import DriftConfig
from online_models.versions.lifecycle import GroupState
from online_models.versions.plans import initial_plan
from streams.cli.replay import dataset_events
from tests.builtin import MODELS
from tests.fingerprint import fingerprint

KEY = b"test key"
REPLICA = Replica("group", "events", 1, "logreg")
DRIFT = DriftConfig()

#: Where the classes a model's state pickles lived in riverrun 0.1.0 (git log --follow).
MODULES_OF_0_1_0 = {
    "online_models.quality.evaluation": "online_models.evaluation",
    "online_models.quality.drift": "online_models.drift",
    "online_models.learning.dedup": "online_models.dedup",
    "online_models.models.features": "online_models.registry",
    "online_models.versions.lifecycle": "online_models.lifecycle",
    "online_models.versions.experiments": "online_models.experiments",
    "online_models.versions.bandits": "online_models.bandits",
}


def trained(with_plan: bool = False) -> ServedModel:
    """A logreg replica after 300 events, with drift detectors (and a lifecycle state)."""
    learner = Learner(["logreg"], registry=MODELS, drift=DRIFT)
    if with_plan:
        learner.apply_plan(initial_plan(MODELS["logreg"], changed_by="test"), 0)
    learner.process(list(dataset_events("clicks", limit=300, model="logreg", seed=3)))
    (served,) = learner.replicas().values()
    return served


@contextmanager
def written_as(format_version: int, payload: bytes | None = None) -> Iterator[None]:
    """Checkpoints encoded inside are stamped `format_version`; with `payload`, those
    bytes are what was pickled (as an older riverrun pickled its state)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(checkpoint, "FORMAT_VERSION", format_version)
        if payload is not None:
            fake = SimpleNamespace(dumps=lambda *_, **__: payload, HIGHEST_PROTOCOL=5)
            patch.setattr(checkpoint, "pickle", fake)
        yield


def the_one(records: list[tuple[bytes, bytes]]) -> Checkpoint:
    found, refused = gather(value for _, value in records)
    assert not refused and len(found) == 1
    return found[0]


def old_checkpoint(served: ServedModel, parts: tuple[Any, ...], version: int) -> Checkpoint:
    """A format 3 or 4 checkpoint of `parts` as this code pickles them (module paths of
    today)."""
    with written_as(version):
        records = encode_state(
            parts,
            REPLICA,
            Identity.of(served.spec),
            key=KEY,
            next_offset=300,
            sequence=0,
            updates=served.updates,
        )
    return the_one(records)


def restored(found: Checkpoint) -> ServedModel:
    return restore(found, REPLICA, MODELS["logreg"], key=KEY, drift=DRIFT)


def test_this_code_writes_format_5_a_typed_state_read_by_name() -> None:
    served = trained()
    found = the_one(encode_checkpoint(served, REPLICA, key=KEY, next_offset=300, sequence=0))
    assert found.header.format_version == 5
    state = pickle.loads(zlib.decompress(found.chunks[0]))
    assert isinstance(state, ReplicaState) and state.updates == served.updates
    again = restored(found)
    assert fingerprint(again.state()) == fingerprint(served.state())
    assert again.resume_offset == 300 and again.drift is not None


@pytest.mark.parametrize("with_plan", [False, True])
def test_a_format_4_checkpoint_of_seven_parts_restores_exactly(with_plan: bool) -> None:
    served = trained(with_plan)
    parts = served.state().parts()
    assert len(parts) == 7 and isinstance(parts[6], GroupState if with_plan else type(None))
    again = restored(old_checkpoint(served, parts, 4))
    assert fingerprint(again.state()) == fingerprint(served.state())
    assert fingerprint(again.lifecycle) == fingerprint(served.lifecycle)


def test_a_format_3_checkpoint_of_six_parts_restores_without_a_lifecycle_state() -> None:
    served = trained()
    again = restored(old_checkpoint(served, served.state().parts()[:6], 3))
    assert fingerprint(again.state()) == fingerprint(served.state())
    assert again.lifecycle is None


def test_a_checkpoint_of_riverrun_0_1_0_restores_into_the_moved_code() -> None:
    """Format 4 as riverrun 0.1.0 wrote it: its factory named `online_models.registry`,
    its classes named by their modules of then, the version that code had."""
    served = trained(with_plan=True)
    raw = pickle.dumps(served.state().parts(), protocol=2)  # GLOBAL opcodes: module\nname\n
    for today, then in MODULES_OF_0_1_0.items():
        raw = raw.replace(f"c{today}\n".encode(), f"c{then}\n".encode())
    assert b"online_models.quality" not in raw and b"conline_models.evaluation\n" in raw
    with pytest.raises(ModuleNotFoundError):
        pickle.loads(raw)  # the names of 0.1.0 are gone: only a mapping finds the classes
    params = Identity.of(served.spec).params
    identity = Identity("online_models.registry.logreg", params, "logreg@d79eff0f")
    with written_as(4, payload=raw):
        records = encode_state(
            served.state().parts(), REPLICA, identity, key=KEY, next_offset=300, sequence=0
        )
    again = restored(the_one(records))
    assert again.version == "logreg@d79eff0f"
    assert fingerprint(again.state()) == fingerprint(served.state())
    assert isinstance(again.lifecycle, GroupState)


def test_a_state_of_another_shape_is_refused_as_unreadable() -> None:
    served = trained()
    for version, state in [(4, ("only", "two")), (5, ("a", "tuple", "in", "format", 5))]:
        with pytest.raises(checkpoint.CheckpointRefused, match="cannot be loaded") as caught:
            restored(old_checkpoint(served, state, version))
        assert caught.value.reason == checkpoint.Refusal.UNREADABLE
