"""A team's click stream served as it is: the same click events sent as riverrun's own
InputEvent JSON, as the team's own JSON through a mapping, and as Avro, JSON Schema and
Protobuf through the local schema registry (written by confluent-kafka's own serializers,
as the team's producers write them) get the same predictions, bit for bit; every kind of
bad record is a dead letter with a reason; a registry that is away or refuses the
credentials makes records wait, never dead letters.

The team's record is a typical click: `id`, `time`, a nested `user` {`id`, `country`},
`device`, `price`, `position` and the label `clicked` (null: predict only). The mapping
takes `id`, `time`, `user.id` and `clicked` and leaves the other fields, in the record's
order, as the features `user.country`, `device`, `price` and `position`: the reference
events list their features in that order, which is the order a model sums them in.

Every worker serves `logreg` with one replica per partition (deterministic), on topics of
one partition of its own. The workers of all the tests start at once, in the module's
`runs` fixture (their start-ups overlap); each test reads what its own run's workers did.
"""

import json
import subprocess
import time
import urllib.error
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.json_schema import JSONSerializer
from confluent_kafka.schema_registry.protobuf import ProtobufSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from google.protobuf import descriptor_pb2, timestamp_pb2
from google.protobuf.descriptor_pb2 import FieldDescriptorProto as F
from google.protobuf.descriptor_pool import DescriptorPool
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass

from online_models.models.datasets import DATASETS
from schemas import DeadLetter, InputEvent
from schemas.formats.mapping import EventMapping
from schemas.formats.wire import frame
from schemas.prediction import decode_prediction
from streams.cli.replay import encode
from streams.settings import MASK
from tests.integration.conftest import Env, WorkerProcess, env_factory, riverrun_cli
from tests.integration.test_http_api import call
from tests.registry import LocalRegistry

MODEL = "logreg"
EVENTS = 400
T0 = datetime(2026, 12, 1, tzinfo=UTC)
COUNTRIES = ("FR", "DE", "GB", "US", "ES")
MAPPING = EventMapping(event_id="id", ts="time", key="user.id", label="clicked", model=MODEL)
#: What every test's worker runs: logreg alone, one replica per partition (make_env's).
SERVED: dict[str, Any] = {"models": [MODEL], "model_scopes": {MODEL: "partition"}}

Record = dict[str, Any]
Messages = list[tuple[bytes | None, bytes]]

# --- the team's click record in each format --------------------------------------------

USER_AVRO = {
    "type": "record",
    "name": "User",
    "fields": [{"name": "id", "type": "string"}, {"name": "country", "type": "string"}],
}


def click_avro(user: Any = USER_AVRO, extra: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The click record's Avro schema (`user`: its user field's type; `extra`: fields added
    at the end, as another version of the producer adds them)."""
    return {
        "type": "record",
        "name": "Click",
        "namespace": "shop.events",
        "fields": [
            {"name": "id", "type": "string"},
            {"name": "time", "type": {"type": "long", "logicalType": "timestamp-millis"}},
            {"name": "user", "type": user},
            {"name": "device", "type": "string"},
            {"name": "price", "type": "double"},
            {"name": "position", "type": "long"},
            {"name": "clicked", "type": ["null", "boolean"], "default": None},
            *(extra or []),
        ],
    }


CLICK_JSON_SCHEMA = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "title": "Click",
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "time": {"type": "string", "format": "date-time"},
        "user": {
            "type": "object",
            "properties": {"id": {"type": "string"}, "country": {"type": "string"}},
            "required": ["id", "country"],
        },
        "device": {"type": "string"},
        "price": {"type": "number"},
        "position": {"type": "integer"},
        "clicked": {"type": ["boolean", "null"]},
    },
    "required": ["id", "time", "user", "device", "price", "position"],
}


def click_proto() -> descriptor_pb2.FileDescriptorProto:
    """shop/click.proto, as protoc would describe it: `clicked` is `optional bool` (absent:
    predict only), `price` a double (a float would not be the JSON value's bits)."""

    def field(name: str, number: int, kind: int, type_name: str = "") -> F:
        proto = F(name=name, number=number, type=kind, label=F.LABEL_OPTIONAL)  # type: ignore[arg-type]
        if type_name:
            proto.type_name = type_name
        return proto

    clicked = field("clicked", 7, F.TYPE_BOOL)
    clicked.proto3_optional = True
    clicked.oneof_index = 0
    click = descriptor_pb2.DescriptorProto(
        name="Click",
        field=[
            field("id", 1, F.TYPE_STRING),
            field("time", 2, F.TYPE_MESSAGE, ".google.protobuf.Timestamp"),
            field("user", 3, F.TYPE_MESSAGE, ".shop.events.Click.User"),
            field("device", 4, F.TYPE_STRING),
            field("price", 5, F.TYPE_DOUBLE),
            field("position", 6, F.TYPE_INT64),
            clicked,
        ],
        nested_type=[
            descriptor_pb2.DescriptorProto(
                name="User",
                field=[field("id", 1, F.TYPE_STRING), field("country", 2, F.TYPE_STRING)],
            )
        ],
        oneof_decl=[descriptor_pb2.OneofDescriptorProto(name="_clicked")],
    )
    return descriptor_pb2.FileDescriptorProto(
        name="shop/click.proto",
        package="shop.events",
        syntax="proto3",
        dependency=["google/protobuf/timestamp.proto"],
        message_type=[click],
    )


def click_message_class() -> type[Message]:
    """The producer's generated class for Click (from a pool of its own)."""
    pool = DescriptorPool()
    pool.AddSerializedFile(timestamp_pb2.DESCRIPTOR.serialized_pb)
    pool.AddSerializedFile(click_proto().SerializeToString())
    return GetMessageClass(pool.FindMessageTypeByName("shop.events.Click"))


def click_records(n: int, prefix: str) -> list[Record]:
    """A team's click records: the seeded click stream's device, position and price (a
    third of it: a double with all its bits), a user among 7, a time to the millisecond,
    and every fifth record without its label."""
    records = []
    for i, (x, y) in enumerate(DATASETS["clicks"].samples(n, seed=7)):
        records.append(
            {
                "id": f"{prefix}{i}",
                "time": T0 + timedelta(milliseconds=1_237 * i),
                "user": {"id": f"u{i % 7}", "country": COUNTRIES[i * 3 % len(COUNTRIES)]},
                "device": x["device"],
                "price": x["price"] / 3,
                "position": x["position"],
                "clicked": None if i % 5 == 4 else y,
            }
        )
    return records


def reference_event(record: Record) -> InputEvent:
    """The InputEvent the mapping makes of `record`, written out: its features in the
    record's order."""
    return InputEvent(
        event_id=record["id"],
        ts=record["time"],
        model=MODEL,
        key=record["user"]["id"],
        features={
            "user.country": record["user"]["country"],
            "device": record["device"],
            "price": record["price"],
            "position": record["position"],
        },
        label=record["clicked"],
    )


def as_json(record: Record) -> Record:
    """The record as a JSON producer writes it: the time as an ISO-8601 string."""
    return {**record, "time": record["time"].isoformat(timespec="milliseconds")}


def keyed(records: list[Record], values: list[bytes]) -> Messages:
    """(Kafka key, value) pairs: a team's producer keys a click by its user."""
    return [(r["user"]["id"].encode(), v) for r, v in zip(records, values, strict=True)]


def value_of(topic: str) -> SerializationContext:
    return SerializationContext(topic, MessageField.VALUE)


def avro_values(client: SchemaRegistryClient, topic: str, records: list[Record]) -> list[bytes]:
    serialize = AvroSerializer(client, json.dumps(click_avro()))
    return [serialize(record, value_of(topic)) for record in records]  # type: ignore[misc]


def json_schema_values(
    client: SchemaRegistryClient, topic: str, records: list[Record]
) -> list[bytes]:
    serialize = JSONSerializer(json.dumps(CLICK_JSON_SCHEMA), client)
    return [serialize(as_json(record), value_of(topic)) for record in records]  # type: ignore[misc]


def protobuf_values(client: SchemaRegistryClient, topic: str, records: list[Record]) -> list[bytes]:
    cls = click_message_class()
    serialize = ProtobufSerializer(cls, client, {"use.deprecated.format": False})
    values = []
    for record in records:
        message: Any = cls(
            id=record["id"],
            user=record["user"],
            device=record["device"],
            price=record["price"],
            position=record["position"],
        )
        message.time.FromDatetime(record["time"])
        if record["clicked"] is not None:
            message.clicked = record["clicked"]
        values.append(serialize(message, value_of(topic)))
    return values


# --- predictions -------------------------------------------------------------------------


def outcome(p: Any) -> tuple[Any, ...]:
    """What must be equal between runs: all but the latency (the prediction's bits, a
    label's type too, as True == 1); `p` is a Prediction or the dict of one read from Avro."""
    get = p.get if isinstance(p, dict) else lambda name: getattr(p, name)
    label, prediction = get("label"), get("prediction")
    return (
        get("event_id"),
        get("key"),
        get("model"),
        get("ts"),
        prediction.hex() if isinstance(prediction, float) else prediction,
        label,
        type(label).__name__,
        get("learned"),
        get("model_updates"),
    )


def predictions(env: Env, count: int) -> list[tuple[Any, ...]]:
    messages = env.read(env.settings.predictions_topic, count)
    assert env.count(env.settings.predictions_topic) == count, "predictions sent twice"
    return [outcome(decode_prediction(m.value)) for m in messages]


def dead_letters(env: Env, count: int) -> list[DeadLetter]:
    messages = env.read(env.settings.dead_letters_topic, count)
    assert env.count(env.settings.dead_letters_topic) == count
    return [DeadLetter.model_validate_json(m.value) for m in messages]


def started(env: Env) -> Env:
    """`env` with its worker started: at once, before the ports chosen for it are taken
    (by a client's connection, say)."""
    env.start_worker()
    return env


def team_env(make_env: Callable[..., Env], **settings: Any) -> Env:
    """A test's env (make_env's) whose worker, started, maps the team's records
    (RIVERRUN_EVENT_MAPPING)."""
    env = make_env(**SERVED, event_mapping=MAPPING, **settings)
    assert json.loads(env.env["RIVERRUN_EVENT_MAPPING"]) == MAPPING.model_dump(exclude_unset=True)
    return started(env)


def registry_env(make_env: Callable[..., Env], url: str, **settings: Any) -> Env:
    """team_env of a worker reading the team's Avro topic through the registry at `url`."""
    return team_env(make_env, **{"events_format": "avro", "schema_registry_url": url, **settings})


def wait_for(condition: Callable[[], bool], what: str, workers: list[WorkerProcess]) -> None:
    deadline = time.monotonic() + 60
    while not condition():
        for worker in workers:
            worker.assert_alive()
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within 60 s\n" + "\n".join(w.tail() for w in workers))
        time.sleep(0.05)


def stop_all(workers: list[WorkerProcess]) -> None:
    """SIGTERM to each of `workers` at once; each must stop cleanly."""
    with ThreadPoolExecutor(len(workers)) as pool:
        codes = list(pool.map(WorkerProcess.stop, workers))
    assert codes == [0] * len(workers), "\n".join(w.tail() for w in workers)


def registry_failures(worker: WorkerProcess) -> float:
    try:
        return worker.scrape().get("riverrun_schema_registry_failures_total", 0.0)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0.0  # not serving /metrics yet


# --- the runs: every test's workers start at once ----------------------------------------


@dataclass
class Run:
    """One test's envs (each a worker's topics, group and ports) and what was produced."""

    envs: dict[str, Env]
    records: list[Record]
    #: The bad records, among the good ones.
    bad: Messages = field(default_factory=list)
    #: A registry of the run's own, which the test stops and starts.
    registry: LocalRegistry | None = None
    #: `riverrun config` run with the first env's settings, in the background.
    config: "Future[subprocess.CompletedProcess[str]] | None" = None

    @property
    def workers(self) -> list[WorkerProcess]:
        return [worker for env in self.envs.values() for worker in env.workers]


def formats_run(make_env: Callable[..., Env], url: str) -> Run:
    """The same events as riverrun's JSON (the reference), as the team's JSON mapped, and as
    Avro (predictions written in Avro), JSON Schema and Protobuf through the registry."""
    records = click_records(EVENTS, "click-")
    client = SchemaRegistryClient({"url": url})
    envs = {
        "reference": started(make_env(**SERVED)),
        "team json": team_env(make_env),
        "avro": registry_env(make_env, url, predictions_format="avro"),
        "json_schema": registry_env(make_env, url, events_format="json_schema"),
        "protobuf": registry_env(make_env, url, events_format="protobuf"),
    }
    topic = {name: env.settings.events_topic for name, env in envs.items()}
    compact = json.JSONEncoder(separators=(",", ":"))
    values = {
        "team json": [compact.encode(as_json(r)).encode() for r in records],
        "avro": avro_values(client, topic["avro"], records),
        "json_schema": json_schema_values(client, topic["json_schema"], records),
        "protobuf": protobuf_values(client, topic["protobuf"], records),
    }
    envs["reference"].produce([encode(reference_event(r)) for r in records])
    for name, written in values.items():
        envs[name].produce(keyed(records, written))
    return Run(envs, records)


def bad_records_run(make_env: Callable[..., Env], url: str) -> Run:
    """Among a team's Avro clicks: a JSON value, a schema id the registry does not have, a
    truncated payload, a record without the key field (an older schema), one with a list
    field (a newer one) and one with a NaN price."""
    env = registry_env(make_env, url)
    topic = env.settings.events_topic
    client = SchemaRegistryClient({"url": url})
    records = click_records(300, "good-")
    good = keyed(records, avro_values(client, topic, records))
    sample = click_records(1, "bad-")[0]
    (valid,) = avro_values(client, topic, [sample])
    # Other versions of the producer's schema, registered under the same subject.
    anonymous = AvroSerializer(
        client, json.dumps(click_avro(user={**USER_AVRO, "fields": USER_AVRO["fields"][1:]}))
    )
    tags = {"name": "tags", "type": {"type": "array", "items": "string"}}
    tagged = AvroSerializer(client, json.dumps(click_avro(extra=[tags])))
    bad: Messages = [
        (b"u0", json.dumps(as_json(sample)).encode()),
        (b"u0", frame(999_999, valid[5:])),
        (b"u0", valid[: 5 + (len(valid) - 5) // 2]),
        (b"u0", anonymous({**sample, "user": {"country": "FR"}}, value_of(topic))),  # type: ignore[list-item]
        (b"u0", tagged({**sample, "tags": ["sale", "new"]}, value_of(topic))),  # type: ignore[list-item]
        (b"u0", avro_values(client, topic, [{**sample, "price": float("nan")}])[0]),
    ]
    env.produce(good[:150] + bad + good[150:])
    return Run({"avro": env}, records, bad)


#: The topic the producer of the registry-away run names (its subject: <topic>-value).
AWAY_TOPIC = "clicks"


def registry_away_run(make_env: Callable[..., Env]) -> Run:
    """Avro records registered in a registry of their own, which is then stopped (its
    port kept)."""
    registry = LocalRegistry().start()
    client = SchemaRegistryClient({"url": registry.url})
    records = click_records(300, "waited-")
    written = avro_values(client, AWAY_TOPIC, records)
    assert {value[1:5] for value in written} == {(1).to_bytes(4, "big")}  # the first schema
    registry.stop()
    env = registry_env(make_env, registry.url)
    env.produce(keyed(records, written))
    return Run({"avro": env}, records, registry=registry)


#: The password the secured registry is asked with by the worker that has it wrong.
WRONG_PASSWORD = "not-the-registry-password-5f1c"


def credentials_run(make_env: Callable[..., Env], registry: LocalRegistry) -> Run:
    """Avro records in the registry behind basic auth and mutual TLS, for a worker with
    the right credentials, one with a wrong password, and one with a wrong password that
    writes its predictions in Avro (it waits to register their schema as it starts)."""
    secured = {
        "schema_registry_username": registry.username,
        "schema_registry_password": registry.password,
        "schema_registry_cafile": registry.ca_file,
        "schema_registry_certfile": registry.client_cert,
        "schema_registry_keyfile": registry.client_key,
    }
    envs = {
        "right": registry_env(make_env, registry.url, **secured),
        "wrong": registry_env(
            make_env, registry.url, **{**secured, "schema_registry_password": WRONG_PASSWORD}
        ),
        "wrong at start": registry_env(
            make_env,
            registry.url,
            **{**secured, "schema_registry_password": WRONG_PASSWORD, "predictions_format": "avro"},
        ),
    }
    client = SchemaRegistryClient(registry.confluent_config())
    records = click_records(200, "secured-")
    for env in envs.values():
        env.produce(keyed(records, avro_values(client, env.settings.events_topic, records)))
    background = ThreadPoolExecutor(1)
    config = background.submit(riverrun_cli, envs["right"], "config")
    background.shutdown(wait=False)
    return Run(envs, records, config=config)


@pytest.fixture(scope="module")
def runs(  # type: ignore[no-untyped-def]
    bootstrap: str, schema_registry: str, secured_schema_registry: LocalRegistry, tmp_path_factory
) -> Iterator[dict[str, Run]]:
    """The runs of this module's tests, all their workers started at once, each as soon
    as its env is made (most of a worker's start is waiting: together they take little
    more than one): each test then reads what its own run's workers did."""
    made = env_factory(bootstrap, tmp_path_factory.mktemp("team-formats"))
    make_env = next(made)
    runs: dict[str, Run] = {}
    try:
        runs["formats"] = formats_run(make_env, schema_registry)
        runs["bad records"] = bad_records_run(make_env, schema_registry)
        runs["registry away"] = registry_away_run(make_env)
        runs["credentials"] = credentials_run(make_env, secured_schema_registry)
        yield runs
    finally:
        for run in runs.values():
            if run.registry is not None:
                run.registry.stop()
        # Those a test did not stop (it failed), each given 10 s; then the topics go.
        left = [w for run in runs.values() for w in run.workers if not w.stopped]
        if left:
            with ThreadPoolExecutor(len(left)) as pool:
                list(pool.map(lambda worker: worker.stop(10.0), left))
        next(made, None)


# --- the tests ---------------------------------------------------------------------------


def test_every_format_predicts_what_riverrun_json_does(
    runs: dict[str, Run], schema_registry: str
) -> None:
    """The Done-when of a team's topics: the same events as riverrun's JSON (the
    reference), as the team's JSON mapped without a registry, and as Avro, JSON Schema and
    Protobuf through the registry give equal predictions, bit for bit; the Avro run writes
    its predictions in Avro, read back by confluent-kafka's AvroDeserializer."""
    run = runs["formats"]
    records, envs = run.records, run.envs
    reference = predictions(envs["reference"], EVENTS)
    # What the reference itself must be: every event predicted in order, the labelled
    # ones learnt (model_updates counts them), the others predicted only.
    assert [row[0] for row in reference] == [r["id"] for r in records]
    assert [row[7] for row in reference] == [r["clicked"] is not None for r in records]
    assert reference[-1][8] == sum(r["clicked"] is not None for r in records[:-1])
    assert len({row[4] for row in reference}) > EVENTS // 2  # a model that learns

    for name in ("team json", "json_schema", "protobuf"):
        assert predictions(envs[name], EVENTS) == reference, name
    avro = envs["avro"]
    messages = avro.read(avro.settings.predictions_topic, EVENTS)
    assert avro.count(avro.settings.predictions_topic) == EVENTS
    assert all(m.value[0] == 0 for m in messages)  # the wire format, not JSON
    read_avro = AvroDeserializer(SchemaRegistryClient({"url": schema_registry}))
    context = value_of(avro.settings.predictions_topic)
    assert [outcome(read_avro(m.value, context)) for m in messages] == reference
    for env in envs.values():
        assert env.count(env.settings.dead_letters_topic) == 0
    # POST /v1/events never puts riverrun's JSON among a team's records.
    (mapped,) = envs["team json"].workers
    status, answer, _ = call(
        f"http://127.0.0.1:{mapped.api_port}/v1/events",
        raw=reference_event(records[0]).model_dump_json().encode(),
    )
    assert (status, answer["error"]) == (409, "team_format"), answer
    assert envs["team json"].count(envs["team json"].settings.events_topic) == EVENTS
    stop_all(run.workers)


def test_each_bad_record_gets_its_verdict_and_the_others_are_predicted(
    runs: dict[str, Run],
) -> None:
    """Each bad record is a dead letter whose reason says what to fix; every other record
    of the same run is predicted, in order."""
    run = runs["bad records"]
    env = run.envs["avro"]
    verdicts = [
        ("undecodable", ["Confluent wire format", "RIVERRUN_EVENTS_FORMAT"]),
        ("unknown_schema", ["schema id 999999", "RIVERRUN_SCHEMA_REGISTRY_URL"]),
        ("undecodable", ["do not decode as Avro schema", "the bytes end inside it"]),
        ("invalid_event", ["no field `user.id`", "RIVERRUN_EVENT_MAPPING"]),
        ("invalid_event", ["`tags` is a list", "exclude"]),
        ("invalid_event", ["`price` (features.price)", "finite"]),
    ]
    predicted = predictions(env, len(run.records))
    letters = dead_letters(env, len(run.bad))
    assert [row[0] for row in predicted] == [r["id"] for r in run.records]
    assert [d.source_offset for d in letters] == list(range(150, 150 + len(run.bad)))
    assert [d.original_payload() for d in letters] == [value for _, value in run.bad]
    for letter, (error_type, words) in zip(letters, verdicts, strict=True):
        assert letter.error_type.value == error_type, letter.reason
        for word in words:
            assert word in letter.reason, (word, letter.reason)
    stop_all(run.workers)


def test_a_registry_away_makes_records_wait_not_dead_letters(runs: dict[str, Run]) -> None:
    """While the registry that holds the records' schema is away, the worker predicts
    nothing and dead-letters nothing, and counts each time it asks in vain; a fresh
    registry on the same port, given the same schema (the first schema of an empty
    registry: the same id), and every record is predicted."""
    run = runs["registry away"]
    env, (worker,), registry = run.envs["avro"], run.workers, run.registry
    assert registry is not None
    wait_for(lambda: registry_failures(worker) >= 3, "three registry failures", [worker])
    assert env.count(env.settings.predictions_topic) == 0
    assert env.count(env.settings.dead_letters_topic) == 0
    assert f"the schema registry at {registry.url} is unavailable" in worker.tail(200)

    # From the third failure on, the worker waits 2 s or more before it asks again: time
    # enough to bring the registry back, with the schema, just after a failure.
    failures = registry_failures(worker)
    wait_for(lambda: registry_failures(worker) > failures, "another failure", [worker])
    registry.start(port=registry.port)
    client = SchemaRegistryClient({"url": registry.url})
    subject = f"{AWAY_TOPIC}-value"
    assert client.register_schema(subject, Schema(json.dumps(click_avro()), "AVRO")) == 1

    predicted = predictions(env, len(run.records))
    assert [row[0] for row in predicted] == [r["id"] for r in run.records]
    assert env.count(env.settings.dead_letters_topic) == 0
    stop_all([worker])


def test_registry_credentials_are_used_and_never_shown(
    runs: dict[str, Run], secured_schema_registry: LocalRegistry
) -> None:
    """Behind basic auth and mutual TLS: with the right settings the worker predicts, and
    neither its log nor `riverrun config` shows the password; with a wrong password the
    records wait (no dead letter) and the log says 401 and what to check."""
    registry, run = secured_schema_registry, runs["credentials"]
    assert registry.password is not None
    right, wrong = run.envs["right"], run.envs["wrong"]
    (worker,), (refused,) = right.workers, wrong.workers

    assert run.config is not None
    config = run.config.result(timeout=60)
    assert config.returncode == 0, config.stderr
    shown = {
        line.split()[0]: line.split()[1] for line in config.stdout.splitlines() if " [" in line
    }
    assert shown["RIVERRUN_SCHEMA_REGISTRY_PASSWORD"] == MASK
    assert shown["RIVERRUN_SCHEMA_REGISTRY_USERNAME"] == registry.username
    assert registry.password not in config.stdout + config.stderr

    predicted = predictions(right, len(run.records))
    assert [row[0] for row in predicted] == [r["id"] for r in run.records]
    wait_for(lambda: "answered 401" in refused.tail(200), "the 401 in the log", [refused])
    assert registry_failures(refused) > 0
    assert wrong.count(wrong.settings.predictions_topic) == 0
    assert wrong.count(wrong.settings.dead_letters_topic) == 0
    assert "RIVERRUN_SCHEMA_REGISTRY_USERNAME and _PASSWORD" in refused.tail(200)
    stop_all([worker])
    for password in (registry.password, WRONG_PASSWORD):
        for written in (worker.log_path.read_text(), refused.log_path.read_text()):
            assert password not in written


def test_a_worker_waiting_for_its_registry_stops_when_asked(runs: dict[str, Run]) -> None:
    """SIGTERM stops a worker whose records wait for the registry (its password is wrong)
    within seconds, as it stops any worker: the waiting batch is not committed, so the
    next worker reads its records again."""
    (refused,) = runs["credentials"].envs["wrong"].workers
    wait_for(lambda: "answered 401" in refused.tail(200), "the 401 in the log", [refused])
    asked = time.monotonic()
    assert refused.stop(timeout=5.0) == 0, refused.tail()
    assert time.monotonic() - asked < 5.0


def test_a_worker_waiting_to_register_its_predictions_schema_stops_when_asked(
    runs: dict[str, Run],
) -> None:
    """Predictions in Avro: their schema is registered before the first prediction, and a
    worker whose registry refuses it waits there (nothing predicted, nothing dead-lettered,
    the failures counted) and stops on SIGTERM within seconds."""
    env = runs["credentials"].envs["wrong at start"]
    (waiting,) = env.workers
    subject = f"{env.settings.predictions_topic}-value"
    wait_for(
        lambda: "answered 401" in waiting.tail(200) and subject in waiting.tail(200),
        "the predictions' schema refused, in the log",
        [waiting],
    )
    assert "RIVERRUN_SCHEMA_REGISTRY_USERNAME and _PASSWORD" in waiting.tail(200)
    asked = time.monotonic()
    assert waiting.stop(timeout=5.0) == 0, waiting.tail()
    assert time.monotonic() - asked < 5.0
    assert env.count(env.settings.predictions_topic) == 0
    assert env.count(env.settings.dead_letters_topic) == 0
