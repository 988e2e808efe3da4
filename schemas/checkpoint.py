"""The header of a model checkpoint chunk on the `checkpoints` topic.

A checkpoint is the pickled state of one model replica (one model, one input partition),
compressed and cut into chunks. Every chunk is one Kafka message whose value is
`MAGIC`, the header's length (4 bytes, big endian), the header as JSON, then the chunk's
bytes. Every chunk carries the whole header, so a reader needs no other message to know
what it holds.
"""

from typing import Any, Literal

from pydantic import Field, StrictInt

from schemas.message import Record
from schemas.types import EventTime, Identifier, StrictNonNegativeInt, StrictPositiveInt

#: First bytes of every checkpoint chunk message.
MAGIC = b"RRCK"


class CheckpointHeader(Record):
    """What a checkpoint holds, what it covers, and its signature."""

    format_version: StrictInt = Field(
        description="Layout of header and payload; a worker refuses versions it does not know."
    )
    checkpoint_id: Identifier = Field(description="Unique per checkpoint; shared by its chunks.")
    sequence: StrictNonNegativeInt = Field(
        description="Checkpoints of this replica written before this one; the newest wins."
    )
    group_id: Identifier
    topic: Identifier = Field(description="Input topic of the replica.")
    partition: StrictNonNegativeInt = Field(description="Input partition of the replica.")
    model: Identifier
    model_version: str = Field(description="Model name and hash of factory and parameters.")
    factory: str = Field(description="Qualified name of the model's factory function.")
    params: dict[str, Any] = Field(description="The factory's parameters.")
    river_version: str
    python_version: str
    next_offset: StrictNonNegativeInt = Field(
        description="Offsets below this one are learnt into the state; it resumes here."
    )
    offsets: dict[str, StrictNonNegativeInt] | None = Field(
        default=None,
        description="State fed by several input topics (the delayed-feedback join): the next "
        "offset of each topic's partition `partition`.",
    )
    updates: StrictNonNegativeInt = Field(description="Events the model had learnt from.")
    created_at: EventTime
    compression: Literal["zlib"]
    state_bytes: StrictNonNegativeInt = Field(description="Size of the pickled state.")
    payload_bytes: StrictNonNegativeInt = Field(description="Size of the compressed state.")
    chunks: StrictPositiveInt
    chunk: StrictNonNegativeInt = Field(description="Index of this chunk (not signed).")
    hmac: str = Field(
        description="HMAC-SHA256 (hex) of the canonical header without 'chunk' and 'hmac', "
        "then the payload, with RIVERRUN_CHECKPOINT_KEY."
    )
