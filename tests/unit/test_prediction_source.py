"""The /v1 API needs only `PredictionSource` of the service holding the replicas: two real
API servers, each over a plain class implementing the protocol and nothing more (no
consumer, no owned states, no control log), answer, forward and refuse as over the
events service."""

import asyncio
from collections.abc import Mapping
from typing import Any

from aiohttp import ClientSession

from online_models.learning.learner import Learner
from online_models.learning.request_time import Answer, predict_now
from online_models.models.registry import ModelSpec
from schemas.control import PartitionOwner
from streams.http.server import SERVED_BY, Api, partition_of
from streams.runtime.metrics import WorkerMetrics
from streams.runtime.replicas import Ownership, PartitionReplicas, Unavailable
from streams.settings import Settings
from tests.builtin import MODELS
from tests.ports import free_port
from tests.unit.test_lifecycle import clicks, run


class Replicas:
    """One partition's replicas: a learner's, caught up to `until`."""

    def __init__(self, learner: Learner, until: int) -> None:
        self.learner, self.until = learner, until

    def predict_now(self, model: str, key: str, features: Mapping[str, Any]) -> Answer:
        return predict_now(self.learner, model, key, features)

    def next_offset(self) -> int:
        return self.until


class Source:
    """A `PredictionSource` and nothing else: the replicas of the partitions in `here`,
    the other partitions claimed by the URLs in `owners`, those in `restoring` not ready."""

    def __init__(
        self,
        models: Mapping[str, ModelSpec],
        here: dict[int, Replicas],
        owners: dict[int, str],
        restoring: frozenset[int] = frozenset(),
    ) -> None:
        self._models, self.here, self.owners, self.restoring = models, here, owners, restoring

    @property
    def models(self) -> Mapping[str, ModelSpec]:
        return self._models

    def partition_count(self) -> int:
        return 2

    def global_replicas(self, model: str) -> PartitionReplicas | None:
        return None  # (partition models only)

    def replicas(self, partition: int) -> PartitionReplicas | None:
        if partition in self.restoring:
            raise Unavailable(f"partition {partition} is being restored from its checkpoint")
        return self.here.get(partition)

    def owner_url(self, partition: int) -> str | None:
        return self.owners.get(partition)

    def ownership(self) -> Ownership | None:
        return Ownership(generation=1, member="fake", partitions=frozenset(self.here))

    async def advertise(self, producer: Any, claims: list[PartitionOwner]) -> list[Any]:
        return []


def key_in(partition: int) -> str:
    return next(f"k{i}" for i in range(1000) if partition_of(f"k{i}", 2) == partition)


def test_the_api_answers_and_forwards_over_a_plain_prediction_source() -> None:
    first, second = Learner(["logreg"], registry=MODELS), Learner(["logreg"], registry=MODELS)
    run(first, clicks(300))
    run(second, clicks(100, seed=5))
    models = {"logreg": first.models["logreg"].spec}
    a, b = (Settings(api_port=free_port(), metrics_port=0) for _ in range(2))
    k0, k1 = key_in(0), key_in(1)
    features = clicks(1, start=900)[0].features

    async def ask(restoring: frozenset[int]) -> tuple[int, Any, str]:
        here = Source(models, {0: Replicas(first, 40)}, {1: b.api_url})
        there = Source(models, {1: Replicas(second, 70)}, {0: a.api_url}, restoring)
        apis = [Api(a, WorkerMetrics(), here), Api(b, WorkerMetrics(), there)]
        try:
            for api in apis:
                await api.serve()
            body = [{"key": k0, "features": features}, {"key": k1, "features": features}]
            async with (
                ClientSession() as session,
                session.post(f"{a.api_url}/v1/models/logreg/predict", json=body) as answer,
            ):
                return answer.status, await answer.json(), answer.headers.get(SERVED_BY, "")
        finally:
            for api in apis:
                await api.on_stop()

    status, found, served_by = asyncio.run(ask(frozenset()))
    assert status == 200, found
    assert served_by == ", ".join(sorted([a.api_url, b.api_url]))  # one answered, one forwarded
    expected = [  # each key from its own partition's replicas, which say how far they learnt
        (k0, 0, 40, predict_now(first, "logreg", k0, features).prediction),
        (k1, 1, 70, predict_now(second, "logreg", k1, features).prediction),
    ]
    assert [(f["key"], f["partition"], f["next_offset"], f["prediction"]) for f in found] == (
        expected
    )
    assert found[0]["model_updates"] == 300 and found[1]["model_updates"] == 100

    status, found, _ = asyncio.run(ask(frozenset({1})))  # the owner restores partition 1
    assert status == 503, found
    assert "being restored" in found["reason"]
