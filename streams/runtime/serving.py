"""`riverrun serve`: a process that answers /v1 predictions of the global models from
their snapshots, and holds no partition.

It follows the snapshots topic as every worker does (`streams.runtime.snapshots`) and
serves the worker's /v1 API (`streams.http.server.Api`) over a `PredictionSource` that
has no partition of its own: a global model is answered here, from the newest snapshot;
a partition model is not served (its replicas live on the workers). It joins no consumer
group, so it scales like any web tier: run as many as the request rate needs, behind a
load balancer. /metrics, /healthz and /readyz are on the same port.
"""

import asyncio
import gc
import logging
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from aiohttp import web
from mode import Service

from online_models.models.registry import ModelSpec
from schemas.control import PartitionOwner
from streams.http.server import Api
from streams.kafka import clients
from streams.kafka.clients import METADATA_TIMEOUT_SECONDS
from streams.runtime.checkpoints import checkpoint_key
from streams.runtime.metrics import WorkerMetrics
from streams.runtime.replicas import Ownership, PartitionReplicas, Unavailable
from streams.runtime.snapshots import SnapshotFollower
from streams.services.formats import Formats
from streams.settings import Settings

log = logging.getLogger(__name__)


class SnapshotSource:
    """The `PredictionSource` of a process without partitions: global models only."""

    def __init__(self, models: Mapping[str, ModelSpec], snapshots: SnapshotFollower) -> None:
        self._models = MappingProxyType({n: models[n] for n in snapshots.names})
        self.snapshots = snapshots
        self.count: int | None = None  # partitions of the events topic, once known

    @property
    def models(self) -> Mapping[str, ModelSpec]:
        return self._models

    def partition_count(self) -> int:
        if not self.count:
            raise Unavailable("the events topic's partitions are not known yet")
        return self.count

    def replicas(self, partition: int) -> PartitionReplicas | None:
        return None

    def global_replicas(self, model: str) -> PartitionReplicas | None:
        return self.snapshots.replicas(model)

    def owner_url(self, partition: int) -> str | None:
        return None

    def ownership(self) -> Ownership | None:
        return None  # (nothing to advertise)

    async def advertise(self, producer: Any, claims: list[PartitionOwner]) -> list[Any]:
        return []


class ServingApi(Api):
    """The /v1 API with /metrics, /healthz and /readyz beside it."""

    def __init__(self, *args: Any, snapshots: SnapshotFollower, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.snapshots = snapshots

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/metrics", self.metrics_page)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)

    async def metrics_page(self, request: web.Request) -> web.Response:
        return web.Response(body=self.metrics.exposition(), content_type="text/plain")

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "alive"})

    async def readyz(self, request: web.Request) -> web.Response:
        """Ready once the snapshots topic was read to its end: every answer then comes
        from the newest snapshot there is (a model without one yet answers as a fresh
        model, and says so with `model_updates` 0)."""
        ready = self.snapshots.caught_up
        models = {
            name: (snapshot.updates if (snapshot := self.snapshots.snapshot(name)) else None)
            for name in sorted(self.snapshots.names)
        }
        body = {"ready": ready, "snapshot_updates": models}
        if not ready:
            body["reason"] = "reading the snapshots topic"
        return web.json_response(body, status=200 if ready else 503)


class Serving(Service):
    """`riverrun serve`: the snapshot follower and the API, in one process."""

    def __init__(
        self,
        settings: Settings,
        models: Mapping[str, ModelSpec],
        *,
        formats: Formats | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.metrics = WorkerMetrics()
        names = settings.global_models(models)
        if not names:
            raise ValueError(
                "riverrun serve answers for global models, and this app serves none (every "
                "model has scope partition): ask the workers' /v1 instead"
            )
        self.snapshots = SnapshotFollower(
            settings, self.metrics, models, names, checkpoint_key(settings)
        )
        self.source = SnapshotSource(models, self.snapshots)
        #: The topics' formats: POST /v1/events writes the events topic's.
        self.formats = formats if formats is not None else Formats(settings)
        self.api = ServingApi(
            settings, self.metrics, self.source, snapshots=self.snapshots, formats=self.formats
        )

    def on_init_dependencies(self) -> list[Service]:
        return [self.snapshots, self.api]

    async def on_start(self) -> None:
        self.source.count = await asyncio.to_thread(self._partition_count)
        # What start-up imported and built never becomes garbage: out of the collector's
        # sight, a full collection no longer stalls the answers (as in the worker).
        gc.freeze()
        log.info(
            "serving %s from their snapshots on %s",
            ", ".join(sorted(self.snapshots.names)),
            self.settings.api_url,
        )

    def _partition_count(self) -> int:
        topic = self.settings.events_topic
        admin = clients.admin(self.settings, client_id=f"{self.settings.group_id}-serve")
        found = admin.list_topics(topic, timeout=METADATA_TIMEOUT_SECONDS).topics.get(topic)
        return len(found.partitions) if found is not None and found.partitions else 1
