"""The worker's /v1 API: request-time predictions, events over HTTP, a live stream.

A server of its own (aiohttp), beside Faust's web server that keeps /metrics, /healthz
and /readyz unauthenticated on RIVERRUN_METRICS_HOST:PORT:

- `POST /v1/models/{name}/predict` — `{key, features}` or a list of them: the prediction
  of the version serving each key now, from the live replica of the key's partition
  (`online_models.learning.request_time`). The replica lives on the worker that owns the
  partition; a request that reaches another worker is *forwarded* to the owner, whose
  URL every worker knows from the control topic (`PartitionOwner`, published by each
  worker for the partitions it owns). A forwarded request is never forwarded again:
  mid-rebalance it gets 503 with Retry-After, as does a partition being restored.
- `POST /v1/events` — one event or a list: validated as the stream validates them (400
  with a dead letter's reason: the schema, the model, the label for the model's task;
  what depends on a replica's state, a duplicate id, is left to the stream), appended
  to the events topic keyed by `key`, answered once the broker acknowledged every one
  (202). Learning happens from the log.
- `GET /v1/stream` — Server-Sent Events: the predictions and metrics reports (and drift
  reports) as they are published, for dashboards (`?model=` filters, `?topics=` chooses).
- `GET /v1/openapi.json` — the OpenAPI document of all of the above (`schemas.openapi`),
  rendered from the models the handlers decode and answer with.

Every /v1 route but the document needs `Authorization: Bearer <token>` when
RIVERRUN_API_TOKENS is set (the document holds no data, and ships in the wheel anyway);
HTTPS when RIVERRUN_API_SSL_CERTFILE is. Bodies over RIVERRUN_API_MAX_REQUEST_BYTES get
413. Tokens never appear in logs.
"""

import asyncio
import hmac
import json
import logging
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

from aiohttp import ClientError, ClientSession, ClientTimeout, TCPConnector, web
from confluent_kafka import KafkaException
from mode import Service

from online_models.learning.admission import refusal
from online_models.learning.learner import LearningError
from online_models.learning.request_time import Answer
from online_models.quality.evaluation import most_probable
from schemas import InputEvent
from schemas.codec import InvalidMessage, ModelT, decode_many
from schemas.control import PartitionOwner
from schemas.dead_letter import ErrorType
from schemas.formats.input_events import JSON, InputEventEncoder
from schemas.openapi import (
    EVENTS_PATH,
    OPENAPI_PATH,
    PREDICT_PATH,
    PUBLIC_PATHS,
    STREAM_PATH,
    openapi_text,
)
from schemas.prediction import class_text
from schemas.serving import Accepted, AcceptedEvent, PredictRequest, Problem
from streams.http.schema_registry import RegistryUnavailable
from streams.kafka.broker_health import BrokerHealth
from streams.kafka.clients import AsyncProducer, Follower, partition_of
from streams.runtime.metrics import WorkerMetrics
from streams.runtime.replicas import PartitionReplicas, PredictionSource, Unavailable
from streams.settings import Settings

log = logging.getLogger(__name__)

#: Header of a request forwarded by another worker (its URL): never forwarded again.
FORWARDED = "X-Riverrun-Forwarded-By"
#: Header of every answer: the URL of the worker whose replica answered.
SERVED_BY = "X-Riverrun-Served-By"
#: Header of a prediction answered during a broker outage: "stalled" (the replica learns
#: nothing new until the broker answers again).
STREAM = "X-Riverrun-Stream"
#: How often the owned partitions are checked (and re-advertised when they changed).
ADVERTISE_EVERY_SECONDS = 0.5
#: ... and re-advertised anyway, in case a claim was lost.
READVERTISE_SECONDS = 30.0
MAX_STREAMS = 32  # concurrent /v1/stream connections per worker
KEEPALIVE_SECONDS = 15.0
#: The `event:` of each topic's messages on /v1/stream.
EVENT_NAMES = {"predictions": "prediction", "metrics": "metrics", "drift": "drift"}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def problem(status: int, error: str, reason: str, **headers: str) -> web.Response:
    """A JSON error answer: a `Problem` (the reason says what to do)."""
    body = Problem(error=error, reason=reason).model_dump_json()
    return web.json_response(text=body, status=status, headers=headers)


def server_tls(settings: Settings) -> ssl.SSLContext | None:
    """The API's TLS context (RIVERRUN_API_SSL_*), None for plain HTTP."""
    if settings.api_ssl_certfile is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    password = settings.api_ssl_key_password
    context.load_cert_chain(
        settings.api_ssl_certfile,
        settings.api_ssl_keyfile,
        password.get_secret_value() if password is not None else None,
    )
    return context


def client_tls(settings: Settings) -> ssl.SSLContext:
    """How a worker checks another's certificate when it forwards (RIVERRUN_API_SSL_CAFILE,
    else the system's CAs)."""
    return ssl.create_default_context(
        cafile=str(settings.api_ssl_cafile) if settings.api_ssl_cafile else None
    )


def bearer_check(settings: Settings) -> Callable[[str | None], bool]:
    """Whether an Authorization header carries one of RIVERRUN_API_TOKENS (always true
    when none is set); compared in constant time."""
    secret = settings.api_tokens
    tokens = [t.strip().encode() for t in secret.get_secret_value().split(",")] if secret else []
    tokens = [t for t in tokens if t]

    def check(header: str | None) -> bool:
        if not tokens:
            return True
        scheme, _, given = (header or "").partition(" ")
        if scheme.lower() != "bearer":
            return False
        offered = given.strip().encode()
        return any(hmac.compare_digest(offered, token) for token in tokens)

    return check


class EventsFormat(Protocol):
    """The events topic's format, as POST /v1/events writes it (`streams.services.formats`)."""

    def team_records(self) -> str | None:
        """What makes the topic's records a team's own, which riverrun cannot write; None:
        riverrun's InputEvents."""
        ...

    async def input_event_encoder(self, topic: str | None = None) -> InputEventEncoder:
        """How an InputEvent is written there; RegistryUnavailable when its schema cannot
        be registered now."""
        ...


class Api(Service):
    """The /v1 API server of one worker, over the service holding its model replicas
    (the events service, seen through `PredictionSource` only)."""

    def __init__(
        self,
        settings: Settings,
        metrics: WorkerMetrics,
        events: PredictionSource,
        health: BrokerHealth | None = None,
        formats: EventsFormat | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.metrics = metrics
        self.events = events
        self.health = health  # the broker's reachability (None: not watched)
        #: The events topic's format, which POST /v1/events writes (None: riverrun's JSON).
        self.formats = formats
        self.url = settings.api_url
        self.authorized = bearer_check(settings)
        self.producer: AsyncProducer | None = None
        self.session: ClientSession | None = None
        self.runner: web.AppRunner | None = None
        self.streams = 0  # open /v1/stream connections
        self.advertised: tuple[int, frozenset[int]] | None = None
        self.advertised_at = 0.0
        self.children: dict[tuple[Any, tuple[str, ...]], Any] = {}  # see _child
        self.document: bytes | None = None  # GET /v1/openapi.json, rendered once asked

    # --- lifecycle -------------------------------------------------------------------
    async def on_start(self) -> None:
        s = self.settings
        # (built in a thread: an OAUTHBEARER client waits for its first token)
        self.producer = await asyncio.to_thread(
            AsyncProducer, s, client_id=f"{s.group_id}-api", linger_ms=1
        )
        await self.serve()

    async def serve(self) -> None:
        """Listen on RIVERRUN_API_HOST:PORT (a forwarding client too)."""
        s = self.settings
        self.session = ClientSession(
            connector=TCPConnector(limit=64, ssl=client_tls(s)),
            timeout=ClientTimeout(total=s.api_forward_timeout_seconds),
        )
        self.runner = web.AppRunner(self.application(), access_log=None, handle_signals=False)
        await self.runner.setup()
        site = web.TCPSite(self.runner, s.api_host, s.api_port, ssl_context=server_tls(s))
        try:
            await site.start()
        except OSError as err:
            raise RuntimeError(
                f"the /v1 API cannot listen on {s.api_host}:{s.api_port} ({err.strerror}): "
                "set RIVERRUN_API_PORT to a free port, or RIVERRUN_API_ENABLED=false"
            ) from None
        log.info("/v1 API on %s (advertised as %s)", site.name, self.url)

    def application(self) -> web.Application:
        """The aiohttp application: the /v1 routes (each an operation of the OpenAPI
        document, tested) and those of `add_routes`."""
        app = web.Application(
            client_max_size=self.settings.api_max_request_bytes, middlewares=[self._middleware]
        )
        app.router.add_post(PREDICT_PATH, self.predict)
        app.router.add_post(EVENTS_PATH, self.post_events)
        # (no HEAD: a stream's would start a follower for nothing)
        app.router.add_get(STREAM_PATH, self.stream, allow_head=False)
        app.router.add_get(OPENAPI_PATH, self.openapi, allow_head=False)
        self.add_routes(app)
        return app

    def add_routes(self, app: web.Application) -> None:
        """Other routes on the same server (`riverrun serve` adds /metrics, /readyz)."""

    async def on_stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
        if self.session is not None:
            await self.session.close()
        if self.producer is not None:
            await self.producer.stop()

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        route = request.match_info.route.resource
        name = route.canonical if route is not None else "unknown"
        started = time.perf_counter()
        if name not in PUBLIC_PATHS and not self.authorized(request.headers.get("Authorization")):
            response: web.StreamResponse = problem(
                401,
                "unauthorized",
                "missing or wrong bearer token: send 'Authorization: "
                "Bearer <token>' with one of RIVERRUN_API_TOKENS",
                **{"WWW-Authenticate": "Bearer"},
            )
        else:
            try:
                response = await handler(request)
            except web.HTTPRequestEntityTooLarge:
                response = problem(
                    413,
                    "oversized",
                    f"the body is over the {self.settings.api_max_request_bytes}"
                    "-byte limit: send fewer items per request, or raise "
                    "RIVERRUN_API_MAX_REQUEST_BYTES",
                )
            except web.HTTPException as err:  # (unknown routes, wrong methods)
                response = problem(err.status, "http", err.reason)
            except Exception:
                log.exception("%s %s failed", request.method, request.path)
                response = problem(
                    500,
                    "internal",
                    "the worker failed to answer (its log says "
                    "why); retry, and report it if it persists",
                )
        self._child(self.metrics.api_requests, name, str(response.status)).inc()
        self._child(self.metrics.api_latency, name).observe(time.perf_counter() - started)
        return response

    def _child(self, metric: Any, *labels: str) -> Any:
        """`metric.labels(*labels)`, looked up once: labels() costs a request as much as
        the rest of its bookkeeping."""
        child = self.children.get((metric, labels))
        if child is None:
            child = self.children[metric, labels] = metric.labels(*labels)
        return child

    # --- where a key's replica is ----------------------------------------------------
    def partitions(self) -> int:
        return self.events.partition_count()

    def local(self, partition: int) -> PartitionReplicas | None:
        """The replicas of `partition` when this worker owns it; raises Unavailable while
        they are restored or re-run (behind the delivered outputs)."""
        return self.events.replicas(partition)

    def next_offset(self, replicas: PartitionReplicas) -> int:
        return replicas.next_offset()

    def owner(self, partition: int) -> str:
        """The API URL of the worker owning `partition` (from the control topic)."""
        url = self.events.owner_url(partition)
        if url is None or url == self.url:
            raise Unavailable(f"no worker owns partition {partition} right now")
        return url

    def _decoded(self, model: type[ModelT], raw: bytes) -> list[ModelT] | web.Response:
        """A request body's items, or the 400 answer saying what is wrong with it."""
        s = self.settings
        try:
            return decode_many(
                model, raw, max_bytes=s.api_max_request_bytes, max_items=s.api_max_items
            )
        except InvalidMessage as err:
            return problem(400, err.error_type.value, err.reason)

    # --- POST /v1/models/{name}/predict ----------------------------------------------
    async def predict(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        raw = await request.read()
        s = self.settings
        asked = self._decoded(PredictRequest, raw)
        if isinstance(asked, web.Response):
            return asked
        names = [n for n in s.model_names(self.events.models) if n in self.events.models]
        if name not in names:
            served = ", ".join(names)
            return problem(
                404,
                ErrorType.UNKNOWN_MODEL.value,
                f"no model named {name!r} is served here (served: {served}); fix "
                "the model in the URL or add it to RIVERRUN_MODELS",
            )
        forwarded = request.headers.get(FORWARDED)
        snapshot = self.events.global_replicas(name)
        try:
            count = self.partitions()
            answers: list[Any] = [None] * len(asked)
            served_by: set[str] = set()
            remote: dict[str, list[int]] = {}
            by_partition: dict[int, list[int]] = {}
            for i, item in enumerate(asked):
                partition = partition_of(item.key, count)
                if snapshot is not None:  # a global model: any worker answers, no forwarding
                    answers[i] = self._answer(snapshot, name, item, partition)
                    served_by.add(self.url)
                else:
                    by_partition.setdefault(partition, []).append(i)
            for partition, positions in by_partition.items():
                state = self.local(partition)
                if state is not None:
                    for i in positions:
                        answers[i] = self._answer(state, name, asked[i], partition)
                    served_by.add(self.url)
                elif forwarded is not None:
                    raise Unavailable(f"partition {partition} is not here any more (it moved)")
                else:
                    remote.setdefault(self.owner(partition), []).extend(positions)
            if remote:
                found = await asyncio.gather(
                    *(
                        self._forward(url, request, name, [asked[i] for i in positions])
                        for url, positions in remote.items()
                    )
                )
                for (url, positions), (status, body) in zip(remote.items(), found, strict=True):
                    if status != 200:
                        return web.json_response(body, status=status, headers=_retry(status))
                    for i, answer in zip(positions, body, strict=True):
                        answers[i] = answer
                    served_by.add(url)
        except Unavailable as err:
            return problem(503, "unavailable", f"{err}; retry in a second", **{"Retry-After": "1"})
        except LearningError as err:
            return problem(500, err.error_type.value, err.reason)
        body = answers if raw.lstrip().startswith(b"[") else answers[0]
        headers = {SERVED_BY: ", ".join(sorted(served_by))}
        if self.health is not None and not self.health.reachable:
            headers[STREAM] = "stalled"  # answered from memory: next_offset stays where it is
        return web.json_response(body, headers=headers)

    def _answer(
        self, state: PartitionReplicas, model: str, item: PredictRequest, partition: int
    ) -> dict[str, Any]:
        answer = state.predict_now(model, item.key, item.features)
        self._child(self.metrics.api_predictions, model).inc()
        return answer_json(answer, item.key, partition, state.next_offset())

    async def _forward(
        self, url: str, request: web.Request, name: str, items: list[PredictRequest]
    ) -> tuple[int, Any]:
        """POST `items` to the owner at `url`; its status and JSON answer (503 when it
        cannot be reached)."""
        assert self.session is not None
        headers = {FORWARDED: self.url, "Content-Type": "application/json"}
        if "Authorization" in request.headers:
            headers["Authorization"] = request.headers["Authorization"]
        body = json.dumps([item.model_dump(mode="json") for item in items])
        try:
            async with self.session.post(
                f"{url}/v1/models/{name}/predict", data=body, headers=headers
            ) as answer:
                found = await answer.json()
                self.metrics.api_forwarded.labels("answered").inc()
                return answer.status, found
        except (ClientError, TimeoutError, ValueError) as err:
            self.metrics.api_forwarded.labels("unreachable").inc()
            log.warning("forwarding to the owner at %s failed: %r", url, err)
            reason = (
                f"the key's owner at {url} did not answer ({type(err).__name__}); retry in a second"
            )
            return 503, Problem(error="unavailable", reason=reason).model_dump(mode="json")

    # --- POST /v1/events -------------------------------------------------------------
    async def post_events(self, request: web.Request) -> web.Response:
        raw = await request.read()
        s = self.settings
        team = self.formats.team_records() if self.formats is not None else None
        if team is not None:
            return problem(  # an InputEvent would be a foreign record there
                409,
                "team_format",
                f"the events topic {s.events_topic} carries your own records ({team}): append "
                "events with your producers, in that format; /v1/predict answers without "
                "appending",
            )
        events = self._decoded(InputEvent, raw)
        if isinstance(events, web.Response):
            return events
        refused = refusal(events, s.model_names(self.events.models), self.events.models)
        if refused is not None:  # what the stream would dead-letter whatever its state
            return problem(400, refused[0].value, refused[1])
        assert self.producer is not None
        if self.health is not None and not self.health.reachable:
            return self._unacknowledged(len(events), sent=[])  # not produced: not written later
        try:  # in the topic's format (avro, json_schema: its schema registered first)
            encoder = await self.formats.input_event_encoder() if self.formats is not None else JSON
        except RegistryUnavailable as err:
            log.warning("registering the events' schema failed: %s", err)
            return problem(
                503,
                "unavailable",
                f"the schema registry did not register the events' schema ({err}); send them again",
                **{"Retry-After": "1"},
            )
        single = len(events) == 1 and not raw.lstrip().startswith(b"[") and encoder.format == "json"
        values = [raw] if single else [encoder.encode(e) for e in events]
        sent: list[asyncio.Future[Any]] = []
        try:
            async with asyncio.timeout(s.api_events_timeout_seconds):
                for e, value in zip(events, values, strict=True):
                    sent.append(
                        await self.producer.send(s.events_topic, key=e.key.encode(), value=value)
                    )
                written = await self._acknowledged(sent)
        except TimeoutError:
            return self._unacknowledged(len(events), sent=sent)
        except Exception as err:  # the broker away or refusing: nothing is claimed accepted
            log.warning("appending %d events over HTTP failed: %r", len(events), err)
            return problem(
                503,
                "unavailable",
                f"the broker did not acknowledge the events "
                f"({type(err).__name__}); send them again (ids make it safe)",
                **{"Retry-After": "1"},
            )
        accepted = Accepted(
            accepted=[
                AcceptedEvent(event_id=e.event_id, partition=w.partition, offset=w.offset)
                for e, w in zip(events, written, strict=True)
            ]
        )
        return web.json_response(text=accepted.model_dump_json(), status=202)

    async def _acknowledged(self, sent: list[asyncio.Future[Any]]) -> list[Any]:
        """The broker's acknowledgements of `sent`, or TimeoutError at the events' deadline
        (sends go on: they cannot be taken back once handed to the producer)."""
        together = asyncio.gather(*sent)
        together.add_done_callback(_retrieved)  # a failure after the deadline is not an error
        return await asyncio.shield(together)

    def _unacknowledged(self, count: int, sent: list[asyncio.Future[Any]]) -> web.Response:
        """503 for events the broker did not acknowledge: during a known outage none was
        produced; after the deadline those handed to the producer may still be written."""
        health, s = self.health, self.settings
        outage = health.outage if health is not None else None
        if health is not None:
            health.refused_events()
        if not sent:  # nothing handed to the producer: nothing is written later
            why = (
                f"has been unreachable since {outage.since:%H:%M:%S} UTC ({outage.error})"
                if outage is not None
                else f"did not answer within {s.api_events_timeout_seconds:g} s"
            )
            reason = (
                f"the Kafka broker {why}, so the events were not written: send them "
                "again once GET /readyz/broker answers 200"
            )
            return problem(503, "broker_unreachable", reason, **{"Retry-After": "5"})
        log.warning(
            "the broker did not acknowledge %d events over HTTP within %g s",
            count,
            s.api_events_timeout_seconds,
        )
        bound = s.api_events_timeout_seconds
        reason = (
            f"the broker did not acknowledge the events within {bound:g} s "
            "(RIVERRUN_API_EVENTS_TIMEOUT_SECONDS) and they may still be written once "
            "it answers: send them again with the same event ids, which the stream "
            "learns from once"
        )
        return problem(503, "unacknowledged", reason, **{"Retry-After": "5"})

    # --- GET /v1/stream --------------------------------------------------------------
    async def stream(self, request: web.Request) -> web.StreamResponse:
        s = self.settings
        kinds = {
            "predictions": s.predictions_topic,
            "metrics": s.metrics_topic,
            "drift": s.drift_topic,
        }
        chosen = request.query.get("topics", "predictions,metrics").split(",")
        unknown = [k for k in chosen if k not in kinds]
        if unknown:
            return problem(
                400,
                "invalid_request",
                f"unknown topics {unknown}: choose among {', '.join(kinds)} (comma-separated)",
            )
        if self.streams >= MAX_STREAMS:
            return problem(
                503,
                "unavailable",
                f"{MAX_STREAMS} streams are open on this worker; connect to another or retry later",
                **{"Retry-After": "5"},
            )
        model = request.query.get("model")
        names = {kinds[k]: EVENT_NAMES[k] for k in chosen}
        follower = Follower(s, names, start="end", client_id=f"{s.group_id}-sse")
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            }
        )
        self.streams += 1
        try:
            try:
                found = await follower.start()
            except KafkaException as err:
                why = f"the broker did not answer ({err.args[0].str()}); retry once it does"
                return problem(503, "unavailable", why, **{"Retry-After": "5"})
            if not found:
                return problem(
                    503,
                    "unavailable",
                    f"the topics {sorted(names)} do not exist "
                    "yet; retry once the worker has created them",
                    **{"Retry-After": "5"},
                )
            await response.prepare(request)
            await response.write(b": riverrun stream\n\n")
            quiet_since = time.monotonic()
            async for batch in follower.batches(idle=1.0):
                if self.should_stop:
                    break
                lines = [
                    b"event: %s\ndata: %s\n\n" % (names[m.topic() or ""].encode(), m.value())
                    for m in batch
                    if model is None or _model_of(m.value()) == model
                ]
                if lines:
                    await response.write(b"".join(lines))
                    quiet_since = time.monotonic()
                elif time.monotonic() - quiet_since > KEEPALIVE_SECONDS:
                    await response.write(b": keepalive\n\n")
                    quiet_since = time.monotonic()
        except (ConnectionResetError, asyncio.CancelledError):
            pass  # the client went away (or the worker stops)
        finally:
            self.streams -= 1
            await follower.stop()
        return response

    # --- GET /v1/openapi.json -------------------------------------------------------
    async def openapi(self, request: web.Request) -> web.Response:
        """The OpenAPI document of /v1: the text of schemas/openapi.json."""
        if self.document is None:
            self.document = openapi_text().encode()
        return web.Response(body=self.document, content_type="application/json")

    # --- telling the group where this worker's partitions are ------------------------
    @Service.task
    async def _advertise(self) -> None:
        """Publish a `PartitionOwner` claim for each partition this worker owns, at once
        when they change, and every READVERTISE_SECONDS anyway."""
        while not self.should_stop:
            await self.sleep(ADVERTISE_EVERY_SECONDS)
            ownership = self.events.ownership()
            if ownership is None or self.producer is None:
                continue
            generation, member = ownership.generation, ownership.member
            owned = ownership.partitions
            now = time.monotonic()
            if (generation, owned) == self.advertised and now - self.advertised_at < (
                READVERTISE_SECONDS
            ):
                continue
            at = datetime.now(UTC)
            claims = [
                PartitionOwner(
                    topic=self.settings.events_topic,
                    partition=p,
                    url=self.url,
                    generation=generation,
                    worker=member or self.url,
                    at=at,
                )
                for p in sorted(owned)
            ]
            try:
                await asyncio.gather(*await self.events.advertise(self.producer, claims))
            except Exception:  # the broker away: the next round tries again
                log.exception("advertising the owned partitions failed; retrying")
                continue
            self.advertised, self.advertised_at = (generation, owned), now


def answer_json(answer: Answer, key: str, partition: int, next_offset: int) -> dict[str, Any]:
    """The JSON of a `RequestPrediction` (built as a dict: no validation on the way out)."""
    multiclass = answer.task == "multiclass"
    prediction = answer.prediction
    body: dict[str, Any] = {
        "schema_version": 1,
        "model": answer.model,
        "key": key,
        "prediction": (most_probable(prediction) if prediction else None)
        if multiclass
        else prediction,
        "model_version": answer.version,
        "role": answer.role,
        "model_updates": answer.updates,
        "partition": partition,
        "next_offset": next_offset,
    }
    if multiclass:
        body["probabilities"] = {class_text(c): p for c, p in prediction.items()}
    if answer.arm is not None:
        body["arm"] = answer.arm
    if answer.experiment is not None:
        body["experiment"] = answer.experiment
    return body


def _retrieved(future: "asyncio.Future[Any]") -> None:
    if not future.cancelled():
        future.exception()  # retrieved: no "Future exception was never retrieved" at exit


def _retry(status: int) -> Mapping[str, str]:
    return {"Retry-After": "1"} if status == 503 else {}


def _model_of(value: bytes | None) -> str | None:
    try:
        found = json.loads(value or b"null")
    except ValueError:
        return None
    return found.get("model") if isinstance(found, dict) else None
