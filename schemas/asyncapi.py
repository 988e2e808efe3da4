"""The AsyncAPI 3.0 document of every Kafka topic riverrun reads or writes (committed as
schemas/asyncapi.json). No I/O.

Each topic is one channel, addressed by its default name (a `RIVERRUN_*_TOPIC` setting
renames it); its messages' payloads are the pydantic models' JSON Schemas, the same as
the committed schemas/json/*.json files (their `$defs` moved to `components/schemas`, so
that one document holds them all); each service of the worker and each command that
sends or receives on a topic is one operation. The topics themselves are listed once,
in `TOPICS`.
"""

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from schemas.activity import ActivityEvent
from schemas.checkpoint import MAGIC, CheckpointHeader
from schemas.control import ExperimentResult, ModelPlan, ModelStatus, PartitionOwner
from schemas.dead_letter import DeadLetter
from schemas.drift import DriftReport
from schemas.examples import example_json
from schemas.feedback import Click, Conversion, Impression, Outcome
from schemas.input_event import InputEvent
from schemas.metrics_report import MetricsReport
from schemas.prediction import ClassPrediction, Prediction
from schemas.serving import PredictRequest, RequestPrediction

#: The committed document, next to the JSON Schemas (schemas/json/).
ASYNCAPI_FILE = "asyncapi.json"
ASYNCAPI_VERSION = "3.0.0"
#: Version of the Kafka bindings used (channel, message and server bindings).
KAFKA_BINDING = "0.5.0"
#: The header every output written through a worker's outbox carries.
SOURCE_HEADER = "riverrun-source"
#: Where a payload's schema is in the document.
SCHEMA_REF = "#/components/schemas/{model}"
#: The document's own version: raise it when a channel or a message changes.
DOCUMENT_VERSION = "1.0.0"

#: Who sends or receives: id -> (name, description). The services run in every worker.
SERVICES: dict[str, tuple[str, str]] = {
    "events_service": (
        "events service",
        "Consumes the events topic in consumer group RIVERRUN_GROUP_ID: decode, validate, "
        "dedup, predict, learn (partition models), evaluate, drift; one replica of each "
        "partition model per input partition.",
    ),
    "learners": (
        "learners",
        "Consume the learn topic in group <group>-learner: each global model learns every "
        "partition's labelled examples in one order and publishes snapshots.",
    ),
    "join": (
        "feedback join",
        "With RIVERRUN_JOIN_ENABLED: consumes impressions, clicks, conversions and activity "
        "in group <group>-join, scores impressions, labels them when their windows close.",
    ),
    "activity_counter": (
        "activity counter",
        "With the join off: the worker's Faust agent validates and counts activity events.",
    ),
    "push_sinks": (
        "push sinks",
        "RIVERRUN_PUSH_SINKS: each sink consumes predictions in a consumer group of its own "
        "and POSTs them to its HTTP endpoint.",
    ),
    "control_followers": (
        "control followers",
        "Every worker reads the control topic from its beginning without a consumer group "
        "and follows it; it writes its versions' statuses, the input partitions it owns, "
        "its automatic promotions and rollbacks, and (the owner of input partition 0) the "
        "results of concluded experiments.",
    ),
    "snapshot_followers": (
        "snapshot followers",
        "Every worker follows the snapshots topic (no consumer group) and predicts with "
        "each global model's newest snapshot.",
    ),
    "partitioned_services": (
        "partitioned services",
        "The events service, the learners and the join: each checkpoints its partitions' "
        "state and restores it when it is assigned a partition.",
    ),
    "http_api": (
        "HTTP API",
        "/v1 on RIVERRUN_API_PORT (9465): POST /v1/events appends to the events topic; "
        "GET /v1/stream relays predictions, metrics and drift reports as server-sent events.",
    ),
    "replay": (
        "riverrun replay",
        "Produces a bundled dataset or a file as input events, then reads the dead letters "
        "they caused to summarise them.",
    ),
    "demo": (
        "riverrun demo",
        "Runs the whole system on the local broker: produces a dataset's events and a "
        "delayed-feedback stream (impressions, clicks, conversions, activity).",
    ),
    "model_commands": (
        "riverrun models / experiments",
        "Read the plans and statuses, and write signed plans.",
    ),
    "report": (
        "riverrun report",
        "Reads what the workers published into an HTML report.",
    ),
    "status": (
        "riverrun status",
        "Reads the statuses on the control topic and the checkpoints' headers.",
    ),
}


@dataclass(frozen=True)
class Topic:
    """One topic: its setting, what its messages are, how they are keyed, who uses it."""

    setting: str  # the Settings field that renames it
    address: str  # its default name
    description: str
    messages: tuple[type[BaseModel], ...]  # JSON payloads; none: binary chunks
    key: str  # what the Kafka key is
    key_of: Callable[[dict[str, Any]], str]  # the key of an example payload
    senders: tuple[str, ...]
    receivers: tuple[str, ...]
    #: Whether its messages carry the `riverrun-source` header: "always", "some" or "".
    source_header: str = "always"
    compacted: bool = False

    @property
    def channel_id(self) -> str:
        return self.setting.removesuffix("_topic")

    @property
    def variable(self) -> str:
        return f"RIVERRUN_{self.setting.upper()}"


#: The chunk messages of checkpoints and snapshots: what a payload is.
CHUNK_LAYOUT = (
    f"The value is binary: the 4 bytes {MAGIC.decode()!r}, the header's length (4 bytes, "
    "big endian), the header as JSON (CheckpointHeader), then the chunk's bytes: a piece of "
    "the zlib-compressed pickled state, signed with HMAC-SHA256 (RIVERRUN_CHECKPOINT_KEY). "
    "Only riverrun reads it, and only once the signature checks."
)

TOPICS: tuple[Topic, ...] = (
    Topic(
        "events_topic",
        "events",
        "Input events: one JSON object per message, written by your producers (or POST "
        "/v1/events, or riverrun replay). Each is predicted by the model it names and, when "
        "it has a label, learnt. Invalid ones become dead letters. With "
        "RIVERRUN_EVENTS_FORMAT avro, json_schema or protobuf, the records are in the "
        "Confluent wire format (schemas from RIVERRUN_SCHEMA_REGISTRY_URL); with "
        "RIVERRUN_EVENT_MAPPING or an app's event decoder, they are the team's own records, "
        "made InputEvents as they are read.",
        (InputEvent,),
        "The event's `key` (the entity: visitor, offer...): one entity's events share a "
        "partition, hence a model replica.",
        lambda m: m["key"],
        ("http_api", "replay", "demo"),
        ("events_service",),
        source_header="",
    ),
    Topic(
        "predictions_topic",
        "predictions",
        "The served prediction of each event, before the model learnt from it: Prediction "
        "(version 1, binary and regression models) or ClassPrediction (version 2, multiclass "
        "models); dispatch on schema_version. The join writes its impressions' scores here. "
        "With RIVERRUN_PREDICTIONS_FORMAT avro or json_schema, in the Confluent wire format "
        "under the subject <topic>-value (schemas/avro/prediction.avsc, or these JSON "
        "Schemas).",
        (Prediction, ClassPrediction),
        "The event's `event_id`.",
        lambda m: m["event_id"],
        ("events_service", "join"),
        ("push_sinks", "http_api", "report"),
    ),
    Topic(
        "shadow_predictions_topic",
        "shadow-predictions",
        "The predictions of the versions that did not serve the event (shadows, the other "
        "arms), with routing.served false; the same schemas as predictions.",
        (Prediction, ClassPrediction),
        "The event's `event_id`.",
        lambda m: m["event_id"],
        ("events_service", "learners"),
        (),
    ),
    Topic(
        "dead_letters_topic",
        "dead-letters",
        "Rejected messages, each with its error_type and a reason a person can act on: "
        "invalid JSON or events, oversized messages, unknown models, invalid labels, "
        "learning errors, duplicate events, predictions a push sink could not deliver.",
        (DeadLetter,),
        "The rejected message's own key.",
        lambda m: "visitor-7",
        ("events_service", "learners", "join", "activity_counter", "push_sinks"),
        ("replay", "report"),
        source_header="some",
    ),
    Topic(
        "metrics_topic",
        "metrics",
        "The models' prequential metrics, every RIVERRUN_METRICS_EVERY_EVENTS labelled "
        "events and at the end of each period: MetricsReport version 1 (binary, regression, "
        "the join) or 2 (multiclass, with a confusion matrix). The version 1 schema as "
        "first published is kept as schemas/json/metrics_report.v1.json.",
        (MetricsReport,),
        "The report's `model`.",
        lambda m: m["model"],
        ("events_service", "learners", "join"),
        ("http_api", "report"),
    ),
    Topic(
        "drift_topic",
        "drift",
        "Drift reports: a detector's alarm on the loss, label, prediction or calibration "
        "signal, and each window's PSI or Jensen-Shannon comparison of a feature with the "
        "reference window.",
        (DriftReport,),
        "The report's `model`.",
        lambda m: m["model"],
        ("events_service", "learners"),
        ("http_api", "report"),
    ),
    Topic(
        "activity_topic",
        "activity",
        "Visitors' activity (page views, searches, add-to-carts, purchases), written by "
        "your producers: validated and counted, and with the join enabled the visitors' "
        "activity features.",
        (ActivityEvent,),
        "The `visitor`.",
        lambda m: m["visitor"],
        ("demo",),
        ("activity_counter", "join"),
        source_header="",
    ),
    Topic(
        "impressions_topic",
        "impressions",
        "The join's input (RIVERRUN_JOIN_ENABLED): items shown to visitors, scored at once "
        "by the click model and each product's propensity model.",
        (Impression,),
        "The `visitor` (every topic of the join is keyed by visitor and has the same "
        "partition count).",
        lambda m: m["visitor"],
        ("demo",),
        ("join",),
        source_header="",
    ),
    Topic(
        "clicks_topic",
        "clicks",
        "The join's input: a click on an impression up to RIVERRUN_CLICK_WINDOW_SECONDS "
        "after it labels it positive for the click model.",
        (Click,),
        "The visitor of the clicked impression.",
        lambda m: "visitor-7",
        ("demo",),
        ("join",),
        source_header="",
    ),
    Topic(
        "conversions_topic",
        "conversions",
        "The join's input: a purchase of a product up to RIVERRUN_CONVERSION_WINDOW_SECONDS "
        "after an impression labels it positive for that product's propensity model.",
        (Conversion,),
        "The `visitor`.",
        lambda m: m["visitor"],
        ("demo",),
        ("join",),
        source_header="",
    ),
    Topic(
        "outcomes_topic",
        "outcomes",
        "The join's output: each impression's label for each model once known (a click or "
        "conversion, or the window's end: a negative), with the prediction made at "
        "impression time.",
        (Outcome,),
        "The `impression_id`.",
        lambda m: m["impression_id"],
        ("join",),
        (),
    ),
    Topic(
        "learn_topic",
        "learn",
        "The labelled events of global models, copied from the events topic as they were "
        "(the same bytes), in the order their learner learns them.",
        (InputEvent,),
        "The model's name: all of one model's examples go to one partition.",
        lambda m: m["model"],
        ("events_service",),
        ("learners",),
    ),
    Topic(
        "snapshots_topic",
        "snapshots",
        "Compacted: each global model's newest two snapshots (its estimator, pickled), "
        "published by its learner every RIVERRUN_SNAPSHOT_EVERY_EVENTS examples or "
        f"RIVERRUN_SNAPSHOT_EVERY_SECONDS; every worker predicts with the newest. {CHUNK_LAYOUT}",
        (),
        "`<group>|snapshots|0|<model>|<slot>|<chunk>`: the slot alternates between 0 and 1, "
        "so compaction keeps the newest snapshot and the one before.",
        lambda m: "riverrun|snapshots|0|logreg|1|0",
        ("learners",),
        ("snapshot_followers",),
        compacted=True,
    ),
    Topic(
        "checkpoints_topic",
        "checkpoints",
        "Compacted: the newest two checkpoints of each model replica (one model, one input "
        "partition): its whole state, every RIVERRUN_CHECKPOINT_EVERY_EVENTS events or "
        "RIVERRUN_CHECKPOINT_EVERY_SECONDS, cut into chunks of at most "
        "RIVERRUN_CHECKPOINT_CHUNK_BYTES; restored when a worker is assigned the "
        "partition. A chunk goes to partition `input partition mod checkpoints "
        f"partitions`; segments roll every 10 minutes so that compaction cleans them. "
        f"{CHUNK_LAYOUT}",
        (),
        "`<group>|<topic>|<partition>|<model>|<slot>|<chunk>`: the slot alternates between "
        "0 and 1, so compaction keeps the newest checkpoint and the one before.",
        lambda m: "riverrun|events|0|logreg|1|0",
        ("partitioned_services",),
        ("partitioned_services", "status"),
        source_header="",
        compacted=True,
    ),
    Topic(
        "control_topic",
        "control",
        "Compacted: the models' plans (versions, roles, experiments, bandits, gates), "
        "written by riverrun models / experiments and by the workers' automatic promotions "
        "and rollbacks; each worker's statuses per model and partition; the owner of each "
        "input partition with its /v1 URL. Every message is signed with HMAC-SHA256 "
        "(RIVERRUN_CHECKPOINT_KEY): a message without a valid signature is refused.",
        (ModelPlan, ModelStatus, PartitionOwner),
        "`plan:<model>`, `status:<model>:<partition>` or `owner:<topic>:<partition>`.",
        lambda m: {
            "plan": f"plan:{m.get('model')}",
            "status": f"status:{m.get('model')}:{m.get('partition')}",
            "owner": f"owner:{m.get('topic')}:{m.get('partition')}",
        }[m["kind"]],
        ("control_followers", "model_commands", "http_api"),
        ("control_followers", "model_commands", "status"),
        source_header="",
        compacted=True,
    ),
    Topic(
        "experiments_topic",
        "experiments",
        "The result of each A/B test, published once when every arm has its planned "
        "sample (or a sequential test stopped), by the worker owning input partition 0.",
        (ExperimentResult,),
        "The `experiment_id`.",
        lambda m: m["experiment_id"],
        ("control_followers",),
        (),
        source_header="",
    ),
)


#: The message of checkpoints and snapshots, whose values are binary.
CHUNK = "CheckpointChunk"
#: Committed JSON Schemas that no topic carries: the /v1 API's bodies (schemas.openapi).
NOT_TOPIC_MESSAGES: frozenset[type[BaseModel]] = frozenset({PredictRequest, RequestPrediction})


def payload_models() -> set[type[BaseModel]]:
    """Every model a topic's messages are (a chunk's header among them)."""
    return {m for t in TOPICS for m in t.messages} | {CheckpointHeader}


def message_names(topic: Topic) -> list[str]:
    """The names of `topic`'s messages in its channel."""
    return [model.__name__ for model in topic.messages] or [CHUNK]


def _schemas() -> dict[str, Any]:
    """components/schemas: every message model's JSON Schema, named after the model, and
    its nested models' (the committed files' `$defs`)."""
    models = [m for t in TOPICS for m in t.messages] + [CheckpointHeader]
    schemas: dict[str, Any] = {}
    for model in dict.fromkeys(models):
        schema = model.model_json_schema(mode="validation", ref_template=SCHEMA_REF)
        found = {**schema.pop("$defs", {}), model.__name__: schema}
        for name, part in found.items():
            if schemas.setdefault(name, part) != part:
                raise ValueError(f"two different schemas are named {name!r}")
    return dict(sorted(schemas.items()))


def _headers(topic: Topic) -> dict[str, Any] | None:
    if not topic.source_header:
        return None
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {
            SOURCE_HEADER: {
                "type": "string",
                "pattern": "^.+:[0-9]+:[0-9]+$",
                "description": "`topic:partition:offset` of the input message this output "
                "comes from (a report or a drift alarm: the labelled event that made it "
                "due). A worker taking over a partition reads it to skip the outputs its "
                "predecessor had delivered already.",
            }
        },
    }
    if topic.source_header == "always":
        schema["required"] = [SOURCE_HEADER]
    else:
        schema["description"] = (
            "Every dead letter carries riverrun-source (the message rejected), but those "
            "of the activity counter (join off)."
        )
    return schema


def example_headers(topic: Topic, payload: dict[str, Any]) -> dict[str, str]:
    """The headers of `topic`'s example message `payload`."""
    if not topic.source_header:
        return {}
    if "source_offset" in payload:  # a dead letter: the message rejected
        source = f"{payload['source_topic']}:{payload['source_partition']}:"
        return {SOURCE_HEADER: source + str(payload["source_offset"])}
    source = "learn:0:1799" if topic.setting == "snapshots_topic" else "events:0:1800"
    return {SOURCE_HEADER: source}


def example_payload(topic: Topic, name: str) -> dict[str, Any]:
    """The example of message `name` of `topic` (of a chunk: its header)."""
    if name != CHUNK:
        return example_json(next(m for m in topic.messages if m.__name__ == name))
    header = example_json(CheckpointHeader)
    if topic.setting == "snapshots_topic":
        header.update(topic="snapshots", partition=0, next_offset=1800, updates=1800)
    return header


def _message(topic: Topic, name: str) -> dict[str, Any]:
    example = example_payload(topic, name)
    key = topic.key_of(example)
    message: dict[str, Any] = {
        "name": name,
        "title": name,
        "bindings": {
            "kafka": {
                "key": {"type": "string", "description": topic.key},
                "bindingVersion": KAFKA_BINDING,
            }
        },
    }
    if name == CHUNK:
        message.update(
            contentType="application/octet-stream",
            payload={"type": "string", "format": "binary", "description": CHUNK_LAYOUT},
            summary="A chunk of a signed, pickled state: binary, with a JSON header.",
            description=CHUNK_LAYOUT,
        )
        message["x-riverrun-chunk-header"] = {"$ref": SCHEMA_REF.format(model="CheckpointHeader")}
        summary = f"Kafka key {key}; the chunk's header (the value itself is binary)."
    else:
        model = next(m for m in topic.messages if m.__name__ == name)
        doc = (model.__doc__ or "").strip().split("\n\n")[0]
        message.update(
            contentType="application/json",
            payload={"$ref": SCHEMA_REF.format(model=name)},
            summary=" ".join(doc.split()),
        )
        summary = f"Kafka key {key}."
    shown: dict[str, Any] = {"name": name, "summary": summary, "payload": example}
    headers = _headers(topic)
    if headers is not None:
        message["headers"] = headers
        shown["headers"] = example_headers(topic, example)
    message["examples"] = [shown]
    return message


def _channel(topic: Topic) -> dict[str, Any]:
    binding: dict[str, Any] = {"bindingVersion": KAFKA_BINDING}
    if topic.compacted:
        binding["topicConfiguration"] = {"cleanup.policy": ["compact"]}
    return {
        "address": topic.address,
        "title": topic.address,
        "summary": f"Renamed by {topic.variable}.",
        "description": topic.description,
        "messages": {name: _message(topic, name) for name in message_names(topic)},
        "bindings": {"kafka": binding},
        "x-riverrun-setting": topic.variable,
    }


def _operations() -> dict[str, Any]:
    operations: dict[str, Any] = {}
    for topic in TOPICS:
        channel = topic.channel_id
        messages = [
            {"$ref": f"#/channels/{channel}/messages/{name}"} for name in message_names(topic)
        ]
        for action, services in (("send", topic.senders), ("receive", topic.receivers)):
            for service in services:
                operations[f"{service}.{action}.{channel}"] = {
                    "action": action,
                    "channel": {"$ref": f"#/channels/{channel}"},
                    "messages": messages,
                    "summary": f"{SERVICES[service][0]} → {topic.address}"
                    if action == "send"
                    else f"{topic.address} → {SERVICES[service][0]}",
                    "tags": [{"$ref": f"#/components/tags/{service}"}],
                }
    return operations


def render_asyncapi() -> dict[str, Any]:
    """The AsyncAPI document of riverrun's topics.

    >>> document = render_asyncapi()
    >>> document["channels"]["events"]["address"], document["asyncapi"]
    ('events', '3.0.0')
    """
    security = [{"$ref": f"#/components/securitySchemes/{name}"} for name in _SECURITY]
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "riverrun topics",
            "version": DOCUMENT_VERSION,
            "description": "Every Kafka topic a riverrun worker and its commands read or "
            "write: online machine learning on Kafka streams with River. Channels are "
            "addressed by the topics' default names; the RIVERRUN_*_TOPIC settings rename "
            "them. Payloads are the JSON Schemas committed in schemas/json/ "
            "(`riverrun schemas export`). Operations are named "
            "<service>.<send|receive>.<channel>, each tagged with its service.",
            "license": {"name": "riverrun's license"},
        },
        "defaultContentType": "application/json",
        "servers": {
            "local": {
                "host": "127.0.0.1:19092",
                "protocol": "kafka",
                "description": "The local broker riverrun starts when RIVERRUN_BROKER is unset "
                "(`riverrun kafka up`; port RIVERRUN_KAFKA_PORT).",
                "bindings": {"kafka": {"bindingVersion": KAFKA_BINDING}},
            },
            "cluster": {
                "host": "{bootstrap}",
                "protocol": "kafka",
                "description": "An existing cluster (RIVERRUN_BROKER), reached with "
                "RIVERRUN_SECURITY_PROTOCOL: PLAINTEXT, or TLS and SASL as the security "
                "schemes say.",
                "variables": {
                    "bootstrap": {
                        "default": "kafka:9092",
                        "description": "RIVERRUN_BROKER: the bootstrap servers.",
                    }
                },
                "security": security,
                "bindings": {"kafka": {"bindingVersion": KAFKA_BINDING}},
            },
        },
        "channels": {topic.channel_id: _channel(topic) for topic in TOPICS},
        "operations": _operations(),
        "components": {
            "schemas": _schemas(),
            "securitySchemes": _SECURITY,
            "tags": {
                service: {"name": name, "description": description}
                for service, (name, description) in SERVICES.items()
            },
        },
    }


_SECURITY: dict[str, Any] = {
    "plain": {
        "type": "plain",
        "description": "SASL PLAIN (RIVERRUN_SASL_MECHANISM=PLAIN): RIVERRUN_SASL_USERNAME "
        "and RIVERRUN_SASL_PASSWORD, e.g. an API key and secret.",
    },
    "scramSha256": {
        "type": "scramSha256",
        "description": "SASL SCRAM-SHA-256: RIVERRUN_SASL_USERNAME and RIVERRUN_SASL_PASSWORD.",
    },
    "scramSha512": {
        "type": "scramSha512",
        "description": "SASL SCRAM-SHA-512: RIVERRUN_SASL_USERNAME and RIVERRUN_SASL_PASSWORD.",
    },
    "mutualTls": {
        "type": "X509",
        "description": "Mutual TLS (RIVERRUN_SECURITY_PROTOCOL=SSL): RIVERRUN_SSL_CERTFILE "
        "and RIVERRUN_SSL_KEYFILE.",
    },
}


def asyncapi_text() -> str:
    """The exact text committed as schemas/asyncapi.json."""
    return json.dumps(render_asyncapi(), indent=2, sort_keys=True) + "\n"
