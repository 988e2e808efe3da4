"""What every schema shares: a frozen value with exactly its declared fields, and a
message that starts with its `schema_version` (1 until a format says otherwise)."""

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict

from schemas.types import ExactInt


class Record(BaseModel):
    """A value of the contract: immutable, and an unknown field is an error (a producer's
    typo becomes a dead letter, not a silently dropped value). Fields may start with
    `model_` (`model_version`, `model_updates`): the topics' own names."""

    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())


class Message(Record):
    """A message of a topic or of the /v1 API, in version 1 of its format.

    A format at another version derives from `Record` and declares its own
    `schema_version` first.
    """

    schema_version: Annotated[Literal[1], ExactInt] = 1
