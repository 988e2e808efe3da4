"""Checkpoints of model replicas as signed, compressed, chunked bytes. No I/O.

A replica is one model learning from one input partition. Its checkpoint is the pickled
state (`ReplicaState`: estimator, update count, evaluator, classes, drift detectors,
recent event ids, lifecycle state of the model's versions), zlib-compressed, signed with
HMAC-SHA256 and cut into chunks small enough for Kafka's default message limit. Restoring checks, in
order: the layout, the signature, that the checkpoint belongs to this replica, that the
model's factory, parameters and River version are the ones running, and only then
unpickles. Bytes that fail the signature are never unpickled (unpickling runs code).

>>> from online_models.learning.learner import Learner
>>> from riverrun.builtin import app
>>> learner = Learner(["logreg"], registry=app.models)
>>> replica = Replica("group", "events", 0, "logreg")
>>> records = encode_checkpoint(learner.models["logreg"], replica, key=b"secret",
...                             next_offset=10, sequence=0)
>>> checkpoint = gather([value for _, value in records])[0][0]
>>> restore(checkpoint, replica, learner.models["logreg"].spec, key=b"secret").resume_offset
10
>>> restore(checkpoint, replica, learner.models["logreg"].spec, key=b"other")
Traceback (most recent call last):
...
online_models.learning.checkpoint.CheckpointRefused: unauthenticated: ...
"""

import hashlib
import hmac
import importlib
import io
import json
import pickle
import struct
import sys
import uuid
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Generic, TypeVar

import river
from pydantic import ValidationError

from online_models.learning.dedup import DEFAULT_DEDUP_WINDOW
from online_models.learning.served import ReplicaState, ServedModel
from online_models.models.registry import ModelSpec
from online_models.quality.drift import DriftConfig
from online_models.quality.evaluation import EvaluationConfig, Evaluator
from schemas.checkpoint import MAGIC, CheckpointHeader

#: The layout this code writes (header fields, zlib of a pickled `ReplicaState`, read by
#: name). It reads formats 4 and 3 too, which pickled the same state as a positional
#: tuple: estimator, updates, evaluator, classes, drift monitor, recent event ids and (4
#: only) the lifecycle state of the model's versions. Format 2 pickled the first four
#: (drift detectors started afresh after a restore), format 1 the first three.
FORMAT_VERSION = 5
READABLE_FORMATS = (3, 4, 5)
#: The formats that pickled a model's state as a tuple (`ReplicaState.from_parts`).
TUPLE_FORMATS = (3, 4)

#: Modules whose classes checkpoints name, by the name riverrun 0.1.0 gave them (a pickle
#: names each object's module): a checkpoint written before they moved still restores.
MOVED_MODULES: dict[str, tuple[str, ...]] = {
    "online_models.admission": ("online_models.learning.admission",),
    "online_models.bandits": ("online_models.versions.bandits",),
    "online_models.control": ("online_models.versions.plans",),
    "online_models.dedup": ("online_models.learning.dedup",),
    "online_models.drift": ("online_models.quality.drift",),
    "online_models.evaluation": ("online_models.quality.evaluation",),
    "online_models.experiments": ("online_models.versions.experiments",),
    "online_models.feedback_data": ("online_models.feedback.data",),
    "online_models.joiner": ("online_models.feedback.joiner",),
    "online_models.learner": ("online_models.learning.served", "online_models.learning.learner"),
    "online_models.lifecycle": ("online_models.versions.lifecycle",),
    "online_models.registry": ("online_models.models.features", "online_models.models.registry"),
    "online_models.models.registry": ("online_models.models.features",),
}

#: Modules of the factories checkpoints name (header `factory`) that moved since riverrun
#: 0.1.0: the built-in models' factories, the join's state.
MOVED_FACTORIES = {
    "online_models.registry": "riverrun.builtin",
    "online_models.models.registry": "riverrun.builtin",
    "online_models.joiner": "online_models.feedback.joiner",
}

#: Default largest chunk: half of Kafka's default 1 MB message limit leaves room for
#: the header and the record batch.
DEFAULT_CHUNK_BYTES = 512 * 1024

_LENGTH = struct.Struct(">I")
T = TypeVar("T")


class Refusal(StrEnum):
    """Why a checkpoint was not used (the `reason` label of the refusal metric)."""

    MALFORMED = "malformed"  # not a checkpoint chunk, or chunks that disagree
    INCOMPLETE = "incomplete"  # a chunk is missing: the writer stopped half-way
    UNAUTHENTICATED = "unauthenticated"  # signature wrong: tampered, or another key
    FOREIGN = "foreign"  # another group, topic, partition or model
    INCOMPATIBLE = "incompatible"  # other format, factory, parameters or River version
    UNREADABLE = "unreadable"  # authentic, yet does not decompress or unpickle


class CheckpointRefused(Exception):
    """A checkpoint that must not be used; `str()` says why and what to do."""

    def __init__(self, reason: Refusal, message: str) -> None:
        super().__init__(f"{reason.value}: {message}")
        self.reason = reason


@dataclass(frozen=True)
class Replica:
    """Who owns a model state: a consumer group's model on one input partition."""

    group_id: str
    topic: str
    partition: int
    model: str

    @property
    def prefix(self) -> bytes:
        """Start of the Kafka key of every chunk of this replica's checkpoints."""
        return f"{self.group_id}|{self.topic}|{self.partition}|{self.model}|".encode()

    def key(self, sequence: int, chunk: int) -> bytes:
        """Kafka key of one chunk. Keys alternate between two slots, so that compaction
        always keeps the newest checkpoint and the one before it (the fallback)."""
        return self.prefix + f"{sequence % 2}|{chunk}".encode()


@dataclass
class Checkpoint:
    """The chunks of one checkpoint found on the topic (maybe not all of them)."""

    header: CheckpointHeader
    chunks: dict[int, bytes] = field(default_factory=dict)


def _signature(key: bytes, header: CheckpointHeader, payload: bytes) -> str:
    signed = header.model_dump(mode="json", exclude={"chunk", "hmac"})
    canonical = json.dumps(signed, sort_keys=True, separators=(",", ":")).encode()
    mac = hmac.new(key, _LENGTH.pack(len(canonical)) + canonical, hashlib.sha256)
    mac.update(payload)
    return mac.hexdigest()


def _params(spec: ModelSpec) -> dict[str, Any]:
    # As JSON would carry them (tuples become lists), so a restored header compares equal.
    return dict(json.loads(json.dumps(dict(spec.params), sort_keys=True, default=repr)))


def _factory(spec: ModelSpec) -> str:
    return f"{spec.factory.__module__}.{spec.factory.__qualname__}"


@dataclass(frozen=True)
class Identity:
    """What made a state: a checkpoint is refused when the running code differs."""

    factory: str
    params: dict[str, Any]
    version: str
    #: Other names of the same version a checkpoint may carry (the hash riverrun 0.1.0
    #: gave the same source text).
    aliases: tuple[str, ...] = ()

    @classmethod
    def of(cls, spec: ModelSpec) -> "Identity":
        legacy = spec.legacy_version
        aliases = (legacy,) if legacy is not None and legacy != spec.version else ()
        return cls(_factory(spec), _params(spec), spec.version, aliases)


def encode_checkpoint(
    served: ServedModel,
    replica: Replica,
    *,
    key: bytes,
    next_offset: int,
    sequence: int,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    created_at: datetime | None = None,
) -> list[tuple[bytes, bytes]]:
    """The (Kafka key, value) messages of a checkpoint of `served` covering every offset
    of the replica's partition below `next_offset`."""
    return encode_state(
        served.state(),
        replica,
        Identity.of(served.spec),
        key=key,
        next_offset=next_offset,
        sequence=sequence,
        updates=served.updates,
        chunk_bytes=chunk_bytes,
        created_at=created_at,
    )


def encode_state(
    state_object: Any,
    replica: Replica,
    identity: Identity,
    *,
    key: bytes,
    next_offset: int,
    sequence: int,
    updates: int = 0,
    offsets: dict[str, int] | None = None,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    created_at: datetime | None = None,
) -> list[tuple[bytes, bytes]]:
    """The messages of a checkpoint of any picklable state (see `encode_checkpoint`)."""
    state = pickle.dumps(state_object, protocol=pickle.HIGHEST_PROTOCOL)
    payload = zlib.compress(state, 1)
    pieces = [payload[i : i + chunk_bytes] for i in range(0, len(payload), chunk_bytes)] or [b""]
    unsigned = CheckpointHeader(
        format_version=FORMAT_VERSION,
        checkpoint_id=uuid.uuid4().hex,
        sequence=sequence,
        group_id=replica.group_id,
        topic=replica.topic,
        partition=replica.partition,
        model=replica.model,
        model_version=identity.version,
        factory=identity.factory,
        params=identity.params,
        river_version=river.__version__,
        python_version=f"{sys.version_info.major}.{sys.version_info.minor}",
        next_offset=next_offset,
        offsets=offsets,
        updates=updates,
        created_at=created_at or datetime.now(UTC),
        compression="zlib",
        state_bytes=len(state),
        payload_bytes=len(payload),
        chunks=len(pieces),
        chunk=0,
        hmac="",
    )
    header = unsigned.model_copy(update={"hmac": _signature(key, unsigned, payload)})
    records = []
    for index, piece in enumerate(pieces):
        text = header.model_copy(update={"chunk": index}).model_dump_json().encode()
        value = MAGIC + _LENGTH.pack(len(text)) + text + piece
        records.append((replica.key(sequence, index), value))
    return records


def parse_chunk(value: bytes | None) -> tuple[CheckpointHeader, bytes]:
    """Header and bytes of one chunk message; raises CheckpointRefused (malformed)."""
    if not value or not value.startswith(MAGIC) or len(value) < len(MAGIC) + _LENGTH.size:
        raise CheckpointRefused(
            Refusal.MALFORMED,
            "a message on the checkpoints topic is not a riverrun checkpoint chunk; only "
            "workers should write there",
        )
    start = len(MAGIC) + _LENGTH.size
    (length,) = _LENGTH.unpack_from(value, len(MAGIC))
    try:
        header = CheckpointHeader.model_validate_json(value[start : start + length])
    except ValidationError as err:
        raise CheckpointRefused(
            Refusal.MALFORMED, f"a checkpoint chunk's header is invalid ({err.errors()[0]['msg']})"
        ) from err
    return header, value[start + length :]


def gather(values: Iterable[bytes | None]) -> tuple[list[Checkpoint], list[CheckpointRefused]]:
    """Group the chunk messages of one replica (in topic order) by checkpoint, newest
    sequence first; malformed messages are returned as refusals."""
    found: dict[str, Checkpoint] = {}
    refused: list[CheckpointRefused] = []
    for value in values:
        try:
            header, data = parse_chunk(value)
        except CheckpointRefused as err:
            refused.append(err)
            continue
        checkpoint = found.setdefault(header.checkpoint_id, Checkpoint(header))
        if header.model_copy(update={"chunk": 0}) != checkpoint.header.model_copy(
            update={"chunk": 0}
        ):
            reason = f"chunks of checkpoint {header.checkpoint_id} disagree on what it holds"
            refused.append(CheckpointRefused(Refusal.MALFORMED, reason))
            continue
        checkpoint.chunks[header.chunk] = data
    newest_first = sorted(found.values(), key=lambda c: c.header.sequence, reverse=True)
    return newest_first, refused


@dataclass
class Choice(Generic[T]):
    """What `choose` found on the topic for one replica."""

    restored: T | None  # None: no usable checkpoint
    refusals: list[CheckpointRefused]
    next_sequence: int  # of the next checkpoint: the newest, never in the slot in use


def choose(
    values: Iterable[bytes | None],
    load: Callable[[Checkpoint], T],
    *,
    fresh_on_refusal: bool = False,
) -> Choice[T]:
    """The newest checkpoint among a replica's chunk messages that `load` accepts (it
    raises CheckpointRefused for the others). With `fresh_on_refusal`, the first refusal
    ends the search: no older checkpoint is trusted."""
    checkpoints, refusals = gather(values)
    restored, restored_sequence = None, -1
    for checkpoint in checkpoints:  # newest first
        try:
            restored = load(checkpoint)
        except CheckpointRefused as err:
            refusals.append(err)
            if fresh_on_refusal:
                break
        else:
            restored_sequence = checkpoint.header.sequence
            break
    following = checkpoints[0].header.sequence + 1 if checkpoints else 0
    if following % 2 == restored_sequence % 2:
        following += 1  # never overwrite the slot of the checkpoint in use
    return Choice(restored, refusals, following)


def restore(
    checkpoint: Checkpoint,
    replica: Replica,
    spec: ModelSpec,
    *,
    key: bytes,
    evaluation: EvaluationConfig | None = None,
    drift: DriftConfig | None = None,
    dedup_window: int = DEFAULT_DEDUP_WINDOW,
    river_version: str = river.__version__,
) -> ServedModel:
    """The model replica in `checkpoint`, resuming at its `next_offset`; raises
    CheckpointRefused when it must not be used.

    With `evaluation` given and different from the checkpoint's (the metrics settings
    changed), the model keeps what it learnt and its metrics start afresh.
    """
    state = restore_state(
        checkpoint, replica, Identity.of(spec), key=key, river_version=river_version
    )
    name = f"checkpoint {checkpoint.header.sequence} of {replica.model}"
    try:
        if checkpoint.header.format_version in TUPLE_FORMATS:
            state = ReplicaState.from_parts(state)
        if not isinstance(state, ReplicaState):
            raise TypeError(f"it holds a {type(state).__name__}, not a model's state")
        next_offset = checkpoint.header.next_offset
        served = ServedModel.from_state(
            spec, state, resume_offset=next_offset, drift=drift, dedup_window=dedup_window
        )
    except Exception as err:  # authentic bytes this code cannot read: refuse, never crash
        raise CheckpointRefused(
            Refusal.UNREADABLE, f"{name} is signed but cannot be loaded ({err!r})"
        ) from err
    if evaluation is not None and served.evaluator.config != evaluation:
        served.evaluator = Evaluator(spec.name, served.version, served.task, evaluation)
    return served


def restore_state(
    checkpoint: Checkpoint,
    replica: Replica,
    identity: Identity,
    *,
    key: bytes,
    river_version: str = river.__version__,
) -> Any:
    """The unpickled state in `checkpoint` once every check passed (see `restore`)."""
    h = checkpoint.header
    name = f"checkpoint {h.sequence} of {replica.model} on {replica.topic}[{replica.partition}]"
    if h.format_version not in READABLE_FORMATS:
        raise CheckpointRefused(
            Refusal.INCOMPATIBLE,
            f"{name} has format {h.format_version}; this worker reads formats "
            f"{', '.join(map(str, READABLE_FORMATS))}: run the riverrun version that wrote it",
        )
    missing = sorted(set(range(h.chunks)) - set(checkpoint.chunks))
    if missing:
        raise CheckpointRefused(
            Refusal.INCOMPLETE,
            f"{name} lacks chunks {missing} of {h.chunks}: its writer stopped while writing it",
        )
    payload = b"".join(checkpoint.chunks[i] for i in range(h.chunks))
    if not hmac.compare_digest(_signature(key, h, payload), h.hmac):
        raise CheckpointRefused(
            Refusal.UNAUTHENTICATED,
            f"{name} fails its signature: it was altered, or written with another "
            "RIVERRUN_CHECKPOINT_KEY; give every worker of the group the same key",
        )
    theirs = (h.group_id, h.topic, h.partition, h.model)
    ours = (replica.group_id, replica.topic, replica.partition, replica.model)
    if theirs != ours:
        raise CheckpointRefused(Refusal.FOREIGN, f"{name} belongs to {theirs}, not {ours}")
    expected = (identity.factory, identity.params, identity.version, river_version)
    version = identity.version if h.model_version in identity.aliases else h.model_version
    if (_moved(h.factory), h.params, version, h.river_version) != expected:
        raise CheckpointRefused(
            Refusal.INCOMPATIBLE,
            f"{name} was made by {h.factory} {h.params} on River {h.river_version}; this "
            f"worker runs {expected[0]} {expected[1]} on River {river_version}: the model "
            "checkpoint is usable again with the old parameters or River version",
        )
    try:
        state = zlib.decompress(payload)
        if len(state) != h.state_bytes:
            raise ValueError(f"{len(state)} bytes, not {h.state_bytes}")
        return _Unpickler(io.BytesIO(state)).load()
    except Exception as err:  # authentic bytes this code cannot read: refuse, never crash
        raise CheckpointRefused(
            Refusal.UNREADABLE, f"{name} is signed but cannot be loaded ({err!r})"
        ) from err


def _moved(factory: str) -> str:
    """Where the factory a checkpoint names is now (`MOVED_FACTORIES`)."""
    module, _, name = factory.rpartition(".")
    return f"{MOVED_FACTORIES[module]}.{name}" if module in MOVED_FACTORIES else factory


class _Unpickler(pickle.Unpickler):
    """Unpickles, finding each class that moved since it was pickled (`MOVED_MODULES`)."""

    def find_class(self, module: str, name: str) -> Any:
        for moved in MOVED_MODULES.get(module, ()):
            found = getattr(importlib.import_module(moved), name.partition(".")[0], None)
            if found is not None:
                return super().find_class(moved, name)
        return super().find_class(module, name)
