"""Snapshots of a global model: what its learner learnt so far, for every worker to
predict with. No I/O.

A snapshot is the estimator (and the classes a multiclass model knows) in the
checkpoint format (`online_models.learning.checkpoint`): pickled, compressed, signed
with the checkpoint key, chunked. Its keys alternate between two slots per model, so a
compacted topic keeps the newest two. A snapshot is decoded only once its signature
checks, and only into the code that builds its version.

>>> from online_models.learning.learner import Learner
>>> from riverrun.builtin import app
>>> served = Learner(["logreg"], registry=app.models).models["logreg"]
>>> records = encode_snapshot(served, "logreg", group_id="g", key=b"k", learnt_until=7,
...                           sequence=0)
>>> [checkpoint], _ = gather(value for _, value in records)
>>> decode_snapshot(checkpoint, app.models["logreg"], group_id="g", key=b"k").learnt_until
7
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from online_models.learning.checkpoint import (
    DEFAULT_CHUNK_BYTES,
    Checkpoint,
    CheckpointRefused,
    Identity,
    Refusal,
    Replica,
    encode_state,
    gather,
    restore_state,
)
from online_models.learning.served import ServedModel
from online_models.models.registry import ModelSpec

__all__ = ["Snapshot", "decode_snapshot", "encode_snapshot", "gather", "snapshot_replica"]

#: The `topic` snapshots name in their header (they belong to no input partition).
SNAPSHOTS = "snapshots"


@dataclass(frozen=True)
class SnapshotState:
    """What a snapshot pickles: the model, not the learner's metrics or event ids."""

    estimator: Any
    classes: dict[str, bool | int | str]


@dataclass(frozen=True)
class Snapshot:
    """A global model as its learner had it after `updates` learnt examples."""

    model: str
    version: str
    estimator: Any
    classes: dict[str, bool | int | str]
    updates: int
    #: The learner had learnt every example of its learn partition below this offset.
    learnt_until: int
    created_at: datetime
    checkpoint_id: str


def snapshot_replica(group_id: str, model: str) -> Replica:
    """Whose snapshots these are: a consumer group's global model."""
    return Replica(group_id, SNAPSHOTS, 0, model)


def encode_snapshot(
    served: ServedModel,
    model: str,
    *,
    group_id: str,
    key: bytes,
    learnt_until: int,
    sequence: int,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
) -> list[tuple[bytes, bytes]]:
    """The (Kafka key, value) messages of a snapshot of `served`, global model `model`."""
    return encode_state(
        SnapshotState(served.estimator, dict(served.classes)),
        snapshot_replica(group_id, model),
        Identity.of(served.spec),
        key=key,
        next_offset=learnt_until,
        sequence=sequence,
        updates=served.updates,
        chunk_bytes=chunk_bytes,
    )


def decode_snapshot(
    checkpoint: Checkpoint, spec: ModelSpec, *, group_id: str, key: bytes
) -> Snapshot:
    """The snapshot in `checkpoint` of global model `spec.name` (any version this code
    builds); raises CheckpointRefused when it must not be used."""
    h = checkpoint.header
    version = spec if spec.is_version(h.model_version) else spec.building(h.model_version, h.params)
    if version is None:
        raise CheckpointRefused(
            Refusal.INCOMPATIBLE,
            f"snapshot of {spec.name} is version {h.model_version}, which this worker's code "
            "does not build: deploy the code that does on every worker",
        )
    state = restore_state(
        checkpoint, snapshot_replica(group_id, spec.name), Identity.of(version), key=key
    )
    if not isinstance(state, SnapshotState):
        raise CheckpointRefused(
            Refusal.UNREADABLE, f"snapshot of {spec.name} holds a {type(state).__name__}"
        )
    return Snapshot(
        model=spec.name,
        version=h.model_version,
        estimator=state.estimator,
        classes=state.classes,
        updates=h.updates,
        learnt_until=h.next_offset,
        created_at=h.created_at,
        checkpoint_id=h.checkpoint_id,
    )
