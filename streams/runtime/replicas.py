"""What the /v1 API asks of the service that holds the model replicas.

The API (`streams.http.server`) answers a request from the replicas of the key's input
partition when this worker owns it, and forwards it to the owner's URL otherwise. It
codes against `PredictionSource`, never against the events service's fields, so that the
service is free to keep its partitions as it likes; the events service implements it
(`streams.services.events.BatchedEvents`), a test implements it with a plain class.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from online_models.learning.request_time import Answer
from online_models.models.registry import ModelSpec
from schemas.control import PartitionOwner


class Unavailable(Exception):
    """The replica of a partition cannot answer here now: 503, retry after a second."""


@dataclass(frozen=True)
class Ownership:
    """The input partitions this worker owns, in which generation of the consumer group,
    as which member (a claim on the control topic says so)."""

    generation: int
    member: str
    partitions: frozenset[int]


class PartitionReplicas(Protocol):
    """The model replicas of one input partition, owned and caught up here."""

    def predict_now(self, model: str, key: str, features: Mapping[str, Any]) -> Answer:
        """What the stream would predict for `key` now; learns nothing."""
        ...

    def next_offset(self) -> int:
        """The replicas have learnt every event of the partition below this offset."""
        ...


class PredictionSource(Protocol):
    """The service holding the model replicas, one set per input partition."""

    @property
    def models(self) -> Mapping[str, ModelSpec]:
        """The app's models by name."""
        ...

    def partition_count(self) -> int:
        """The partitions of the events topic; raises Unavailable before it is known."""
        ...

    def replicas(self, partition: int) -> PartitionReplicas | None:
        """The replicas of `partition` when this worker owns it (None: another worker's);
        raises Unavailable while they are restored, re-run or the group rebalances."""
        ...

    def global_replicas(self, model: str) -> PartitionReplicas | None:
        """For a global model: its newest snapshot here, which answers for every key
        (`next_offset` is then the learn-topic offset it has learnt up to); None for a
        partition model."""
        ...

    def owner_url(self, partition: int) -> str | None:
        """The API URL another worker claimed `partition` with (None: no claim yet)."""
        ...

    def ownership(self) -> Ownership | None:
        """The partitions owned now (None: not consuming yet)."""
        ...

    async def advertise(self, producer: Any, claims: list[PartitionOwner]) -> list[Any]:
        """Publish ownership `claims` with `producer`; futures of their acknowledgements."""
        ...
