"""All configuration, read once from the environment (prefix `RIVERRUN_`)."""

import difflib
import json
import os
import re
import types
from collections.abc import Callable, Mapping
from pathlib import Path
from socket import gethostname
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveInt,
    PrivateAttr,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails, PydanticCustomError
from pydantic_settings import BaseSettings, SettingsConfigDict

from online_models.feedback.joiner import JoinConfig
from online_models.learning.dedup import DEFAULT_DEDUP_WINDOW
from online_models.models.registry import ModelSpec
from online_models.quality.drift import DriftConfig
from online_models.quality.evaluation import EvaluationConfig
from schemas.formats.mapping import EventMapping
from schemas.formats.wire import InputFormat, OutputFormat

ENV_PREFIX = "RIVERRUN_"

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"]
#: A callable returning a current OAUTHBEARER token (riverrun.App(oauth_token_provider=...)).
TokenProvider = Callable[[], str]


def user_cache_dir() -> Path:
    """riverrun's directory in the user's cache ($XDG_CACHE_HOME, else ~/.cache)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "riverrun"


class PushSink(BaseModel):
    """One HTTP endpoint predictions are pushed to (an item of RIVERRUN_PUSH_SINKS).

    >>> PushSink(name="audience", url="https://ads.example/v1/audience",
    ...          models=["propensity_shoes"], min_score=0.3).batch_size
    100
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="Names its consumer group.")
    url: str = Field(pattern=r"^https?://", description="Where batches are POSTed.")
    topic: str | None = Field(
        default=None, description="Topic of the predictions pushed. Unset: the predictions topic."
    )
    models: list[str] = Field(default_factory=list, description="Only these models (all: empty).")
    min_score: float | None = Field(
        default=None, description="Only predictions of at least this value (e.g. an audience)."
    )
    batch_size: PositiveInt = Field(default=100, description="Most predictions per request.")
    max_attempts: PositiveInt = Field(
        default=8, description="Attempts per batch before its predictions become dead letters."
    )
    backoff_seconds: float = Field(default=0.2, gt=0, description="First retry's wait.")
    max_backoff_seconds: float = Field(default=30.0, gt=0, description="Longest retry wait.")
    timeout_seconds: float = Field(default=10.0, gt=0, description="Timeout of one request.")
    token: SecretStr | None = Field(
        default=None, description="Sent as 'Authorization: Bearer <token>' when set."
    )


class Settings(BaseSettings):
    """riverrun's settings. Every field can be set as `RIVERRUN_<FIELD>` (upper case).

    Created once at the edge (the CLI) and passed down; nothing else reads the environment.
    Each field belongs to one section of `SECTIONS`, as `riverrun config` groups them.
    """

    # Lists and objects are decoded by `_from_text`, not by pydantic-settings: its
    # SettingsError for malformed JSON is a traceback that names no variable.
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, frozen=True, extra="ignore", enable_decoding=False
    )

    _oauth_token_provider: TokenProvider | None = PrivateAttr(default=None)

    # --- the app -----------------------------------------------------------------------
    app: str = Field(
        default="riverrun.builtin:app",
        description="The riverrun.App whose models are served, as module:attribute "
        "(the command line's --app); default: riverrun's built-in models.",
    )

    # --- Kafka -------------------------------------------------------------------------
    broker: str | None = Field(
        default=None,
        description="Bootstrap servers of an existing cluster (host:port[,host:port]); when "
        "set, no local broker is ever started. Unset: the local broker (`riverrun kafka up`) "
        "on 127.0.0.1:RIVERRUN_KAFKA_PORT, started when needed.",
    )
    kafka_port: int = Field(
        default=19092,
        ge=1,
        le=65535,
        description="Port of the local broker (its KRaft controller uses the next one).",
    )
    kafka_cache_dir: Path = Field(
        default_factory=lambda: user_cache_dir() / "kafka",
        description="Where the local broker's jars, data, config, pid file and log live. "
        "Default: ~/.cache/riverrun/kafka ($XDG_CACHE_HOME/riverrun/kafka when that is set; "
        "a checkout's Makefile uses .cache/kafka).",
    )
    events_topic: str = Field(default="events", description="Input events.")
    predictions_topic: str = Field(
        default="predictions", description="Predictions, keyed by event_id."
    )
    dead_letters_topic: str = Field(
        default="dead-letters", description="Rejected messages with their reason."
    )
    activity_topic: str = Field(
        default="activity",
        description="Visitors' activity events: validated and counted, or "
        "consumed by the join when it runs.",
    )
    topic_partitions: int = Field(
        default=1, ge=1, description="Partitions of topics riverrun creates."
    )
    topic_replication: int = Field(
        default=1, ge=1, description="Replication factor of topics riverrun creates."
    )
    group_id: str = Field(
        default="riverrun",
        description="Consumer group of the events topic. The Faust app (the "
        "activity agent) uses this name with -app added as its own group and app id.",
    )
    session_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        description="Consumer session timeout: how soon a dead worker's partitions move to "
        "another.",
    )
    max_event_bytes: int = Field(
        default=100_000, gt=0, description="Larger input messages are dead-lettered as oversized."
    )
    batch_size: int = Field(
        default=1000, gt=0, description="Most events fetched and processed per batch."
    )
    batch_seconds: float = Field(
        default=0.05, gt=0, description="Longest wait for a batch when no event is available."
    )
    fetch_max_wait_ms: int = Field(
        default=10,
        ge=0,
        description="Longest the broker holds a fetch of the worker's consumers waiting for "
        "data (librdkafka's fetch.wait.max.ms): the floor of latency at low rates (Faust "
        "hard-codes 1500 ms for its own consumer, which the events path does not use).",
    )
    consumer_prefetch_kbytes: int = Field(
        default=4096,
        ge=1,
        description="Most kilobytes of fetched messages each of the worker's consumers "
        "holds ahead of processing (librdkafka's queued.max.messages.kbytes, 65536 by "
        "default there): a backlog costs this much memory per consumer, not 64 MB.",
    )
    producer_linger_ms: int = Field(
        default=5,
        ge=0,
        description="How long the producer gathers outputs into one request per partition "
        "before sending it: a batch's outputs go in a few requests instead of one each "
        "(0 costs the worker and the broker several times the CPU).",
    )
    producer_batch_bytes: int = Field(
        default=256 * 1024, gt=0, description="Largest producer batch per partition."
    )
    producer_compression: Literal["gzip"] | None = Field(
        default=None, description="Compression of produced batches: unset (none) or gzip."
    )

    # --- Kafka security (every client: worker, join, admin, checkpoints, CLI) ----------
    security_protocol: SecurityProtocol = Field(
        default="PLAINTEXT",
        description="How every client (worker, join, checkpoints, topic creation, replay, "
        "tail, report, demo) talks to the brokers: PLAINTEXT, SSL (TLS, mutual with a client "
        "certificate), SASL_PLAINTEXT or SASL_SSL (SASL authentication over TLS).",
    )
    sasl_mechanism: SaslMechanism = Field(
        default="PLAIN",
        description="SASL_* protocols: PLAIN (API keys), SCRAM-SHA-256, SCRAM-SHA-512 or "
        "OAUTHBEARER (a token from RIVERRUN_SASL_OAUTH_TOKEN or the App's token provider).",
    )
    sasl_username: str | None = Field(
        default=None,
        description="SASL PLAIN/SCRAM user name (an API key, for PLAIN); required by the "
        "SASL_* protocols with PLAIN or SCRAM.",
    )
    sasl_password: SecretStr | None = Field(
        default=None,
        description="SASL PLAIN/SCRAM password (an API secret, for PLAIN); required by the "
        "SASL_* protocols with PLAIN or SCRAM.",
    )
    sasl_oauth_token: SecretStr | None = Field(
        default=None,
        description="OAUTHBEARER: a static token, for simple cases; tokens that expire "
        "come from riverrun.App(oauth_token_provider=fn), a function returning a current "
        "token (called in a thread, so it may ask an identity service).",
    )
    ssl_cafile: Path | None = Field(
        default=None,
        description="PEM file of the CA certificates that sign the brokers' certificates. "
        "Unset: the system's trusted CAs.",
    )
    ssl_certfile: Path | None = Field(
        default=None, description="Mutual TLS: PEM file of this client's certificate chain."
    )
    ssl_keyfile: Path | None = Field(
        default=None,
        description="Mutual TLS: PEM file of the certificate's private key (unset: in "
        "RIVERRUN_SSL_CERTFILE).",
    )
    ssl_key_password: SecretStr | None = Field(
        default=None, description="Mutual TLS: password of an encrypted private key."
    )
    ssl_check_hostname: bool = Field(
        default=True,
        description="Check that each broker's certificate names the host connected to. "
        "Turn off only for a broker reached under a name its certificate lacks.",
    )

    # --- models ------------------------------------------------------------------------
    models: list[str] | None = Field(
        default=None,
        description="Model names this worker serves (separated by commas, or a JSON list); "
        "events for others are dead-lettered, and a name the app does not have is an error. "
        "Default: every model of the app.",
        examples=["ctr,fraud"],
    )
    model_params: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description='Factory parameters per model (JSON), e.g. {"ctr": {"alpha": 0.1}}; they '
        "change the model's version. A model the app does not have (or a "
        "propensity_PRODUCT of no product) is an error.",
        examples=['{"ctr": {"alpha": 0.1}}'],
    )
    model_scopes: dict[str, Literal["global", "partition"]] = Field(
        default_factory=dict,
        description="Scope per model (JSON), overriding the app's `@app.model(scope=...)`: "
        '"global" (one model learns from every partition through the learn topic, workers '
        'predict from its snapshots) or "partition" (a replica per input partition). The '
        'key "*" sets every model not named: {"*": "partition"} is riverrun 0.1\'s behaviour.',
        examples=['{"ctr": "partition"}', '{"*": "partition"}'],
    )
    learn_topic: str = Field(
        default="learn",
        description="The labelled examples of global models, in the order their learner "
        "learns them (all of one model's in one partition, keyed by the model's name).",
    )
    snapshots_topic: str = Field(
        default="snapshots",
        description="Compacted topic of the global models' snapshots, which every worker "
        "predicts with.",
    )
    snapshot_every_events: int = Field(
        default=250,
        gt=0,
        description="A global model's learner publishes a snapshot after this many learnt "
        "examples ... (measured on the click stream at 3,000 events/s over 4 partitions: "
        "served log loss +0.28 % of one live model's with 250, +1.2 % with 1,000; raise it "
        "for a model that takes long to serialise)",
    )
    snapshot_every_seconds: float = Field(
        default=1.0,
        gt=0,
        description="... or this long after the last one when it learnt since, whichever "
        "comes first.",
    )

    # --- model quality -----------------------------------------------------------------
    metrics_topic: str = Field(default="metrics", description="The models' metrics reports.")
    metrics_window: int = Field(
        default=10_000,
        gt=0,
        description="Labelled events in the rolling (`*_window`) metrics and the quality gauge.",
    )
    metrics_threshold: float = Field(
        default=0.5,
        gt=0,
        lt=1,
        description="Probability above which a binary prediction is positive (for accuracy, "
        "precision, recall and F1).",
    )
    metrics_every_events: int = Field(
        default=1_000, gt=0, description="Publish metrics every N labelled events per model."
    )
    metrics_period_seconds: float = Field(
        default=86_400.0,
        gt=0,
        description="...and when event time enters a new period of this length (periods are "
        "aligned to the epoch: days by default).",
    )
    segment_features: list[str] = Field(
        default_factory=list,
        description="Features whose values segment the metrics (separated by commas, or a "
        "JSON list), e.g. device,country.",
        examples=["device,country"],
    )
    max_segments: int = Field(
        default=50, gt=0, description="Values per segment feature; the rest are '__other__'."
    )
    baseline_window: int = Field(
        default=7, gt=0, description="Labels per key in the regressors' moving-average baseline."
    )
    baseline_max_keys: int = Field(
        default=EvaluationConfig.baseline_max_keys,
        gt=0,
        description="Keys the regressors' baseline keeps (the least recent is forgotten).",
    )
    auc_cells: int = Field(
        default=EvaluationConfig.auc_cells,
        gt=0,
        description="Score cells of the cumulative AUC per segment (24 bytes each): exact "
        "while a segment has seen no more distinct scores, then within the auc_bound it "
        "reports.",
    )

    # --- drift -------------------------------------------------------------------------
    drift_enabled: bool = Field(default=True, description="Run the drift detectors.")
    drift_topic: str = Field(default="drift", description="Drift reports.")
    drift_reference: int = Field(
        default=1000,
        gt=0,
        description="Labelled events of the reference window (feature bins and distributions).",
    )
    drift_window: int = Field(
        default=1000, gt=0, description="Labelled events per window compared with the reference."
    )
    drift_psi_threshold: float = Field(
        default=0.2, gt=0, description="PSI above which a numeric feature drifted."
    )
    drift_js_threshold: float = Field(
        default=0.1,
        gt=0,
        le=1,
        description="Jensen-Shannon divergence above which a categorical feature drifted.",
    )

    # --- delayed feedback --------------------------------------------------------------
    join_enabled: bool = Field(
        default=False,
        description="Run the delayed-feedback join: score impressions, label them with "
        "clicks and conversions, add activity features (it then consumes `activity` instead "
        "of the counting agent).",
    )
    impressions_topic: str = Field(
        default="impressions", description="The join's input: impressions to score."
    )
    clicks_topic: str = Field(default="clicks", description="The join's input: clicks.")
    conversions_topic: str = Field(
        default="conversions", description="The join's input: conversions."
    )
    outcomes_topic: str = Field(
        default="outcomes",
        description="The join's output: each impression's labels and prediction.",
    )
    click_window_seconds: float = Field(
        default=1800.0,
        gt=0,
        description="A click up to this long after its impression is a positive.",
    )
    conversion_window_seconds: float = Field(
        default=7 * 86400.0,
        gt=0,
        description="A conversion up to this long after an impression labels it for that product.",
    )
    join_lateness_seconds: float = Field(
        default=60.0,
        ge=0,
        description="Allowed disorder: windows close when the latest event time seen in the "
        "partition is this much past their end.",
    )
    ctr_model: str = Field(default="ctr", description="Registered model scoring clicks.")
    products: list[str] = Field(
        default_factory=list,
        description="Products with a propensity model each (separated by commas, or a JSON "
        "list), e.g. shoes,bags.",
        examples=["shoes,bags"],
    )
    propensity_model: str = Field(
        default="ctr", description="Registered model each product's propensity model is made of."
    )
    negative_sampling_rate: float = Field(
        default=1.0,
        gt=0,
        le=1,
        description="Share of negatives learnt; predictions are recalibrated for it.",
    )
    join_report_every: int = Field(
        default=1000, gt=0, description="Publish the join's figures every N resolved impressions."
    )
    join_max_pending: int = Field(
        default=JoinConfig.max_pending,
        gt=0,
        description="Pending impressions a partition's join keeps (~2.5 KB each with 18 "
        "features); beyond, the oldest one's windows close at once, as negatives "
        "(evicted_impressions in the join report).",
    )
    join_max_visitors: int = Field(
        default=JoinConfig.max_visitors,
        gt=0,
        description="Visitors whose activity a partition's join keeps (~0.4 KB each plus "
        "~0.1 KB an event); the least recently active is forgotten first "
        "(forgotten_visitors in the join report).",
    )
    activity_types: list[str] = Field(
        default_factory=lambda: list(JoinConfig.activity_types),
        min_length=1,
        description="Activity types counted as the visitors' activity features (separated "
        "by commas, or a JSON list).",
        examples=["view,cart"],
    )
    activity_hours: list[PositiveInt] = Field(
        default_factory=lambda: list(JoinConfig.activity_hours),
        min_length=1,
        description="Windows (hours) of the activity counts (separated by commas, or a JSON "
        "list); the longest is also the cap of activity_recency_hours and how long activity "
        "is kept.",
        examples=["1,24,168"],
    )

    # --- formats and schema registry ---------------------------------------------------
    events_format: InputFormat = Field(
        default="json",
        description="Format of the events topic's records: json (riverrun's InputEvent "
        "JSON, or a team's own JSON with RIVERRUN_EVENT_MAPPING), or avro, json_schema or "
        "protobuf in the Confluent wire format (magic byte, schema id, payload), their "
        "schemas fetched by id from RIVERRUN_SCHEMA_REGISTRY_URL.",
    )
    join_format: InputFormat = Field(
        default="json",
        description="Format of the join's input topics (impressions, clicks, conversions, "
        "activity), as RIVERRUN_EVENTS_FORMAT; each record's fields are those of its "
        "topic's JSON Schema.",
    )
    event_mapping: EventMapping | None = Field(
        default=None,
        description="Which fields of the events topic's records are an event's id, time, "
        "key, label and model, and which are its features (a JSON object: event_id, ts, key, "
        "label, model or model_field, features, exclude; dotted paths for nested fields), "
        "for a topic that carries a team's own records rather than riverrun's InputEvents. "
        "Overrides the App's event_mapping.",
        examples=['{"key": "user.id", "ts": "time", "label": "clicked", "model": "ctr"}'],
    )
    predictions_format: OutputFormat = Field(
        default="json",
        description="Format of the predictions topic: json, or avro or json_schema in the "
        "Confluent wire format, the schema (derived from the committed JSON Schema) "
        "registered under the subject <RIVERRUN_PREDICTIONS_TOPIC>-value.",
    )
    schema_registry_url: str | None = Field(
        default=None,
        pattern=r"^https?://[^@/\s]+(/\S*)?$",
        description="Base URL of the schema registry (Confluent's API: Confluent Cloud, "
        "Confluent Platform, Redpanda, Aiven's Karapace, Apicurio's ccompat API...); "
        "required by any format other than json. Credentials go in "
        "RIVERRUN_SCHEMA_REGISTRY_USERNAME and _PASSWORD, never in the URL.",
        examples=["https://psrc-123.eu-west-1.aws.confluent.cloud"],
    )
    schema_registry_username: str | None = Field(
        default=None,
        description="HTTP basic auth user of the schema registry (on Confluent Cloud: the "
        "registry's API key).",
    )
    schema_registry_password: SecretStr | None = Field(
        default=None,
        description="HTTP basic auth password of the schema registry (on Confluent Cloud: "
        "the registry's API secret).",
    )
    schema_registry_cafile: Path | None = Field(
        default=None,
        description="PEM file of the CA certificates that sign the registry's certificate. "
        "Unset: the system's trusted CAs.",
    )
    schema_registry_certfile: Path | None = Field(
        default=None,
        description="Mutual TLS with the registry: PEM file of this client's certificate chain.",
    )
    schema_registry_keyfile: Path | None = Field(
        default=None,
        description="Mutual TLS with the registry: PEM file of the certificate's private key "
        "(unset: in RIVERRUN_SCHEMA_REGISTRY_CERTFILE).",
    )
    schema_registry_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        description="Longest wait for one answer of the registry; a registry that does not "
        "answer is asked again (its records wait, they are neither lost nor dead-lettered).",
    )

    # --- delivery ----------------------------------------------------------------------
    processing_guarantee: Literal["at_least_once", "exactly_once"] = Field(
        default="at_least_once",
        description="at_least_once: outputs acknowledged, then offsets committed (batches "
        "pipelined); a crash can repeat the outputs of the batches in flight. "
        "exactly_once: each batch's outputs and offsets in one Kafka transaction; "
        "consumers reading with isolation.level=read_committed see each output once.",
    )
    transactional_id: str | None = Field(
        default=None,
        description="exactly_once: this worker's stable identity (e.g. a StatefulSet pod "
        "name); a restarted worker with the same id aborts its predecessor's open "
        "transaction at once. Unset: <group>-<host name>-<metrics port>.",
    )
    transaction_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        description="exactly_once: how long the open transaction of a worker that died or "
        "froze holds back read_committed consumers and the restore of its partitions by "
        "their next owner, which waits for the offsets that transaction holds (a transaction "
        "lasts ~0.1 s; Kafka Streams uses 10 s too).",
    )

    # --- model lifecycle ---------------------------------------------------------------
    control_topic: str = Field(
        default="control",
        description="Compacted topic of the models' plans (versions, roles, experiments, "
        "bandits, gate, breaker) and the workers' statuses, signed with "
        "RIVERRUN_CHECKPOINT_KEY.",
    )
    shadow_predictions_topic: str = Field(
        default="shadow-predictions",
        description="Predictions of the versions that did not serve the event (shadows, "
        "other arms).",
    )
    experiments_topic: str = Field(
        default="experiments", description="Results of A/B tests, once each arm has its sample."
    )
    status_every_seconds: float = Field(
        default=2.0,
        gt=0,
        description="How often a worker publishes each versioned model's status (gate "
        "figures, experiment counts, bandit shares) on the control topic.",
    )

    # --- serving over HTTP -------------------------------------------------------------
    api_enabled: bool = Field(
        default=True,
        description="Serve /v1 (request-time predictions, events in, the live stream) on "
        "RIVERRUN_API_HOST:RIVERRUN_API_PORT.",
    )
    api_host: str = Field(
        default="127.0.0.1",
        description="Address the /v1 API listens on (a server of its own: /metrics and the "
        "probes can stay on another address); 0.0.0.0 in containers.",
    )
    api_port: int = Field(
        default=9465,
        ge=0,
        le=65535,
        description="Port of the /v1 API. Unset and in use (a second worker on the machine): "
        "the next free port, and the URL advertised to the group carries it (with "
        "RIVERRUN_API_ADVERTISED_URL set, a taken default is refused instead: the URL names "
        "the port); 0: any free port.",
    )
    api_advertised_url: str | None = Field(
        default=None,
        description="How the other workers of the group reach this one's API (a request "
        "for a key another worker owns is forwarded there). Unset: http(s)://<api host, or "
        "the host name when it listens on every address>:<api port>.",
    )
    api_tokens: SecretStr | None = Field(
        default=None,
        description="Bearer tokens accepted on every /v1 route, separated by commas (two "
        "during a rotation). Unset: /v1 is open (bind it to a private address).",
    )
    api_max_request_bytes: int = Field(
        default=1024 * 1024, gt=0, description="Largest /v1 request body; larger ones get 413."
    )
    api_max_items: int = Field(
        default=1000, gt=0, description="Most predictions or events in one /v1 request."
    )
    api_forward_timeout_seconds: float = Field(
        default=2.0,
        gt=0,
        description="How long a forwarded request waits for the key's owner (then 503).",
    )
    api_events_timeout_seconds: float = Field(
        default=5.0,
        gt=0,
        description="How long POST /v1/events waits for the broker's acknowledgement (then 503).",
    )
    api_ssl_certfile: Path | None = Field(
        default=None, description="PEM certificate (chain) of the API: set, /v1 is HTTPS only."
    )
    api_ssl_keyfile: Path | None = Field(
        default=None,
        description="PEM private key of RIVERRUN_API_SSL_CERTFILE (unset: in the certificate "
        "file).",
    )
    api_ssl_key_password: SecretStr | None = Field(
        default=None, description="Password of RIVERRUN_API_SSL_KEYFILE, if it has one."
    )
    api_ssl_cafile: Path | None = Field(
        default=None,
        description="CA bundle a worker trusts when it forwards to another worker over "
        "HTTPS. Unset: the system's.",
    )
    push_sinks: list[PushSink] = Field(
        default_factory=list,
        description="HTTP endpoints the worker pushes predictions to (JSON list of objects: "
        "name, url, models, min_score, ...; see Serving over HTTP). A sink's token is a "
        "secret.",
        examples=['[{"name": "crm", "url": "https://crm.example/hook"}]'],
    )

    # --- durability --------------------------------------------------------------------
    checkpoints_topic: str = Field(
        default="checkpoints",
        description="Compacted topic of model checkpoints (created with the input topic's "
        "partition count; a replica's chunks go to its input partition number).",
    )
    dedup_window: int = Field(
        default=DEFAULT_DEDUP_WINDOW,
        ge=0,
        description="Event ids remembered per model and partition: an event whose id is "
        "among them is a `duplicate_event` dead letter, not predicted or learnt again "
        "(~150 bytes each: 7-8 MB per replica that receives events; 0 turns the check off).",
    )
    checkpoint_every_events: int = Field(
        default=10_000, gt=0, description="Checkpoint a partition's models after this many events."
    )
    checkpoint_every_seconds: float = Field(
        default=60.0,
        gt=0,
        description="...and at least this often while its events keep coming (also on "
        "revoke and on stop).",
    )
    checkpoint_chunk_bytes: int = Field(
        default=512 * 1024,
        gt=0,
        description="Largest checkpoint chunk (one message); keep it below the broker's "
        "message.max.bytes (1 MB by default) and the producer's 1 MB request limit.",
    )
    checkpoint_key: SecretStr | None = Field(
        default=None,
        description="HMAC key signing checkpoints (and the control topic's plans); set the "
        "same value on every worker of a group. Required when RIVERRUN_BROKER is set: a "
        "worker refuses to start without it, since with keys of their own, workers would "
        "refuse each other's checkpoints after every rebalance and start those models afresh. "
        "Unset with the local broker: a random key created once in "
        "RIVERRUN_DATA_DIR/checkpoint.key (one machine only).",
    )
    serialize_in_child: bool = Field(
        default=True,
        description="Serialise a checkpoint or snapshot that took over 100 ms on the event "
        "loop in a forked child instead (a copy-on-write image of the state, as Redis "
        "persists): the loop pauses only for the fork. False: always on the loop.",
    )
    checkpoint_fallback: Literal["previous", "fresh"] = Field(
        default="previous",
        description="When the newest checkpoint is refused: restore the newest valid older "
        "one ('previous') or start the model afresh from the committed offset ('fresh').",
    )

    # --- operations --------------------------------------------------------------------
    metrics_host: str = Field(
        default="127.0.0.1",
        description="Address of the worker's web server (/metrics, /healthz, /readyz); "
        "0.0.0.0 to scrape or probe it from elsewhere (containers).",
    )
    metrics_port: int = Field(
        default=9464,
        ge=0,
        le=65535,
        description="Port of the worker's web server (/metrics, /healthz, /readyz). Unset and "
        "in use (a second worker on the machine): the next free port, said in the worker's "
        "'listening:' start-up line; set and in use: the worker refuses to start, naming it; "
        "0: any free port.",
    )
    data_dir: Path = Field(
        default=Path(".riverrun"),
        description="Where a worker keeps local state (Faust's directory, the generated "
        "checkpoint key) and the demo its logs and report; relative to the working directory.",
    )
    log_level: Literal["debug", "info", "warn", "error"] = Field(
        default="info", description="Least severe log lines written: debug, info, warn or error."
    )
    progress_seconds: float = Field(
        default=30.0,
        ge=0,
        description="How often a worker logs a progress line (events/s, lag, partitions, "
        "checkpoint age); 0 turns it off.",
    )

    # --- validation ------------------------------------------------------------------
    @field_validator("*", mode="before")
    @classmethod
    def _from_text(cls, value: Any, info: ValidationInfo) -> Any:
        """A list or object given as text (an environment variable): JSON, or for a
        list of names or numbers also items separated by commas (`a,b`)."""
        if not isinstance(value, str) or info.field_name is None:
            return value
        annotation = cls.model_fields[info.field_name].annotation
        if not _is_complex(annotation):
            return value
        text = value.strip()
        if not text:  # `RIVERRUN_X=` in an env file: the default, as if unset
            return cls.model_fields[info.field_name].get_default(call_default_factory=True)
        if _is_scalar_list(annotation) and not text.startswith("["):
            return [item.strip() for item in text.split(",") if item.strip()]
        try:
            return json.loads(text)
        except ValueError as err:
            raise PydanticCustomError(
                "json_invalid", "not valid JSON ({error})", {"error": str(err)}
            ) from None

    @model_validator(mode="before")
    @classmethod
    def _no_unknown_variables(cls, data: Any) -> Any:
        """A misspelt RIVERRUN_* variable would silently keep the default: refuse it."""
        known = {env_name(name) for name in cls.model_fields}
        unknown = sorted(
            key.upper()
            for key in os.environ
            if key.upper().startswith(ENV_PREFIX) and key.upper() not in known
        )
        if unknown:
            raise ValueError("; ".join(_unknown_variable(name, known) for name in unknown))
        return data

    @model_validator(mode="after")
    def _consistent(self) -> "Settings":
        topics = self.topics()
        seen: dict[str, str] = {}
        for field_name, topic in topics.items():
            if topic in seen:
                raise ValueError(
                    f"{env_name(seen[topic])} and {env_name(field_name)} are both {topic!r}: "
                    "every topic riverrun reads or writes needs a name of its own"
                )
            seen[topic] = field_name
        if self.products and not self.join_enabled:
            raise ValueError(
                "RIVERRUN_PRODUCTS is set but RIVERRUN_JOIN_ENABLED is not: propensity "
                "models learn from conversions in the join; enable it or unset RIVERRUN_PRODUCTS"
            )
        if len(set(self.products)) != len(self.products):
            raise ValueError("RIVERRUN_PRODUCTS names a product twice; list each once")
        if self.uses_local_broker and self.metrics_port in (self.kafka_port, self.kafka_port + 1):
            raise ValueError(
                f"RIVERRUN_METRICS_PORT {self.metrics_port} is a port of the local broker "
                f"(RIVERRUN_KAFKA_PORT {self.kafka_port} and the controller on the next one); "
                "choose another"
            )
        self._consistent_security()
        self._consistent_api()
        self._consistent_formats()
        return self

    def _consistent_formats(self) -> None:
        formats = {
            "RIVERRUN_EVENTS_FORMAT": self.events_format,
            "RIVERRUN_JOIN_FORMAT": self.join_format,
            "RIVERRUN_PREDICTIONS_FORMAT": self.predictions_format,
        }
        registered = [f"{name}={value}" for name, value in formats.items() if value != "json"]
        if registered and self.schema_registry_url is None:
            raise ValueError(
                f"{' and '.join(registered)} needs a schema registry: set "
                "RIVERRUN_SCHEMA_REGISTRY_URL (and its credentials), or use json"
            )
        if (self.schema_registry_username is None) != (self.schema_registry_password is None):
            raise ValueError(
                "RIVERRUN_SCHEMA_REGISTRY_USERNAME and RIVERRUN_SCHEMA_REGISTRY_PASSWORD go "
                "together (HTTP basic auth); set both or neither"
            )
        if self.schema_registry_keyfile is not None and self.schema_registry_certfile is None:
            raise ValueError(
                "RIVERRUN_SCHEMA_REGISTRY_KEYFILE is set without "
                "RIVERRUN_SCHEMA_REGISTRY_CERTFILE: mutual TLS needs the certificate too; set "
                "it or unset the key"
            )
        for field_name in (
            "schema_registry_cafile",
            "schema_registry_certfile",
            "schema_registry_keyfile",
        ):
            path = getattr(self, field_name)
            if path is not None and not Path(path).is_file():
                raise ValueError(
                    f"{env_name(field_name)} {path} is not a file; give the path of a PEM file "
                    "readable by the worker"
                )

    def _consistent_api(self) -> None:
        if self.api_enabled and self.api_port == self.metrics_port != 0:  # 0: any free port
            raise ValueError(
                f"RIVERRUN_API_PORT and RIVERRUN_METRICS_PORT are both {self.api_port}: the API "
                "and /metrics are two servers; give each its own port"
            )
        if self.api_ssl_keyfile is not None and self.api_ssl_certfile is None:
            raise ValueError(
                "RIVERRUN_API_SSL_KEYFILE is set without RIVERRUN_API_SSL_CERTFILE: HTTPS needs "
                "the certificate; set it or unset the key"
            )
        for field_name in ("api_ssl_certfile", "api_ssl_keyfile", "api_ssl_cafile"):
            path = getattr(self, field_name)
            if path is not None and not Path(path).is_file():
                raise ValueError(
                    f"{env_name(field_name)} {path} is not a file; give the path of a PEM file "
                    "readable by the worker"
                )
        names = [sink.name for sink in self.push_sinks]
        if len(set(names)) != len(names):
            raise ValueError("RIVERRUN_PUSH_SINKS names a sink twice; give each its own name")

    def _consistent_security(self) -> None:
        protocol = self.security_protocol
        sasl = protocol.startswith("SASL_")
        tls = protocol in ("SSL", "SASL_SSL")
        set_fields = self.model_fields_set
        if sasl and self.sasl_mechanism != "OAUTHBEARER":
            missing = [f for f in ("sasl_username", "sasl_password") if getattr(self, f) is None]
            if missing:
                raise ValueError(
                    f"RIVERRUN_SECURITY_PROTOCOL {protocol} with RIVERRUN_SASL_MECHANISM "
                    f"{self.sasl_mechanism} needs {' and '.join(map(env_name, missing))}; set "
                    "them (a secret store or the deployment's Secret) or choose another mechanism"
                )
        unused_sasl = [f for f in _SASL_FIELDS if f in set_fields and getattr(self, f) is not None]
        if unused_sasl and not sasl:
            raise ValueError(
                f"{', '.join(map(env_name, unused_sasl))} set but RIVERRUN_SECURITY_PROTOCOL is "
                f"{protocol}, which does not authenticate with SASL; set it to SASL_SSL (or "
                "SASL_PLAINTEXT) or unset them"
            )
        unused_tls = [f for f in _TLS_FIELDS if f in set_fields and getattr(self, f) is not None]
        if unused_tls and not tls:
            raise ValueError(
                f"{', '.join(map(env_name, unused_tls))} set but RIVERRUN_SECURITY_PROTOCOL is "
                f"{protocol}, which does not use TLS; set it to SSL or SASL_SSL or unset them"
            )
        if self.ssl_keyfile is not None and self.ssl_certfile is None:
            raise ValueError(
                "RIVERRUN_SSL_KEYFILE is set without RIVERRUN_SSL_CERTFILE: mutual TLS needs the "
                "certificate too; set it or unset the key"
            )
        for field_name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            path = getattr(self, field_name)
            if path is not None and not Path(path).is_file():
                raise ValueError(
                    f"{env_name(field_name)} {path} is not a file; give the path of a PEM file "
                    "readable by the worker"
                )

    def worker_problems(self) -> list[str]:
        """What keeps these settings from running a worker safely (empty: nothing)."""
        problems = []
        if self.broker is not None and self.checkpoint_key is None:
            problems.append(
                "RIVERRUN_BROKER is set but RIVERRUN_CHECKPOINT_KEY is not: the workers of a "
                "group must share one checkpoint key, or each refuses the others' checkpoints "
                "after a rebalance and starts those models afresh; set the same secret on "
                "every worker"
            )
        oauth = self.sasl_mechanism == "OAUTHBEARER" and self.security_protocol.startswith("SASL_")
        if oauth and self.sasl_oauth_token is None and self.oauth_token_provider is None:
            problems.append(
                "RIVERRUN_SASL_MECHANISM is OAUTHBEARER but there is no token: set "
                "RIVERRUN_SASL_OAUTH_TOKEN or give the App an oauth_token_provider"
            )
        return problems

    def with_token_provider(self, provider: TokenProvider | None) -> "Settings":
        """These settings with an OAUTHBEARER token provider (from the App)."""
        copy = self.model_copy()
        copy._oauth_token_provider = provider
        return copy

    @property
    def oauth_token_provider(self) -> TokenProvider | None:
        return self._oauth_token_provider

    def topics(self) -> dict[str, str]:
        """Field name -> topic, for every topic this configuration reads or writes."""
        names = [name for name in type(self).model_fields if name.endswith("_topic")]
        join_only = {"impressions_topic", "clicks_topic", "conversions_topic", "outcomes_topic"}
        return {
            name: getattr(self, name)
            for name in names
            if self.join_enabled or name not in join_only
        }

    def overridden_by(self, other: "Settings") -> "Settings":
        """These settings with every field set in `other` (e.g. from the environment)
        replaced by `other`'s value."""
        values = {name: getattr(self, name) for name in self.model_fields_set}
        values.update({name: getattr(other, name) for name in other.model_fields_set})
        return type(self)(**values)

    def as_environment(self, names: "set[str] | None" = None) -> dict[str, str]:
        """`RIVERRUN_*` variables that give another process these settings: the fields
        set explicitly (or `names`), in the form the environment is read in."""
        chosen = self.model_fields_set if names is None else names
        return {env_name(name): _env_value(getattr(self, name)) for name in sorted(chosen)}

    def shown(self, environment: "Settings | None" = None) -> list[tuple[str, str, str]]:
        """(variable, value, where it comes from) of every setting, secrets masked: the
        source is `environment` when it set the field, `code` when these settings did
        (an App's), else `default`."""
        from_env = environment.model_fields_set if environment is not None else set()
        rows = []
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                text = MASK
            elif value is None:
                text = ""
            else:
                text = _env_value(value, reveal=False)
            source = (
                "environment"
                if name in from_env
                else "code"
                if name in self.model_fields_set
                else "default"
            )
            rows.append((env_name(name), text, source))
        return rows

    def scoped(self, models: Mapping[str, ModelSpec]) -> dict[str, ModelSpec]:
        """`models` with the scopes RIVERRUN_MODEL_SCOPES gives them."""
        scopes = self.model_scopes
        return {
            name: spec.scoped(scopes.get(name, scopes.get("*", spec.scope)))
            for name, spec in models.items()
        }

    def global_models(self, models: Mapping[str, ModelSpec]) -> list[str]:
        """The served models of scope "global" (after RIVERRUN_MODEL_SCOPES)."""
        scoped = self.scoped(models)
        return [n for n in self.model_names(models) if n in scoped and scoped[n].scope == "global"]

    def model_names(self, registry: Mapping[str, Any]) -> list[str]:
        """The models served: RIVERRUN_MODELS, else every model of `registry` (the app)."""
        return list(self.models) if self.models is not None else list(registry)

    @property
    def bootstrap_servers(self) -> str:
        """The cluster to use: RIVERRUN_BROKER, else the local broker."""
        return self.broker or f"127.0.0.1:{self.kafka_port}"

    @property
    def api_url(self) -> str:
        """Where the other workers reach this one's API (RIVERRUN_API_ADVERTISED_URL)."""
        if self.api_advertised_url:
            return self.api_advertised_url.rstrip("/")
        scheme = "https" if self.api_ssl_certfile is not None else "http"
        host = gethostname() if self.api_host in ("0.0.0.0", "::", "") else self.api_host
        return f"{scheme}://{host}:{self.api_port}"

    @property
    def exactly_once(self) -> bool:
        return self.processing_guarantee == "exactly_once"

    def worker_transactional_id(self, service: str = "events") -> str:
        """The transactional id of a service's producer under exactly_once (the events
        path's is RIVERRUN_TRANSACTIONAL_ID itself, the join's has `-join` added)."""
        base = self.transactional_id or f"{self.group_id}-{gethostname()}-{self.metrics_port}"
        return base if service == "events" else f"{base}-{service}"

    @property
    def uses_local_broker(self) -> bool:
        return self.broker is None

    def join(self) -> JoinConfig:
        """How the delayed-feedback join labels impressions."""
        return JoinConfig(
            click_window_seconds=self.click_window_seconds,
            conversion_window_seconds=self.conversion_window_seconds,
            lateness_seconds=self.join_lateness_seconds,
            ctr_model=self.ctr_model,
            products=tuple(self.products),
            propensity_model=self.propensity_model,
            negative_rate=self.negative_sampling_rate,
            report_every=self.join_report_every,
            activity_types=tuple(self.activity_types),
            activity_hours=tuple(self.activity_hours),
            max_pending=self.join_max_pending,
            max_visitors=self.join_max_visitors,
        )

    def drift(self) -> DriftConfig | None:
        """The drift detectors' parameters (None: disabled)."""
        if not self.drift_enabled:
            return None
        return DriftConfig(
            reference=self.drift_reference,
            window=self.drift_window,
            psi_threshold=self.drift_psi_threshold,
            js_threshold=self.drift_js_threshold,
        )

    def evaluation(self) -> EvaluationConfig:
        """How the learner computes and schedules its metrics reports."""
        return EvaluationConfig(
            window=self.metrics_window,
            threshold=self.metrics_threshold,
            every_events=self.metrics_every_events,
            period_seconds=self.metrics_period_seconds,
            segment_features=tuple(self.segment_features),
            max_segments=self.max_segments,
            baseline_window=self.baseline_window,
            baseline_max_keys=self.baseline_max_keys,
            auc_cells=self.auc_cells,
        )


#: Every setting's section, in the order `riverrun config` and the docs list them: a
#: section's title -> its fields. A field missing here (or listed twice) fails a unit test.
SECTIONS: dict[str, tuple[str, ...]] = {
    "Connection and security": (
        "broker",
        "kafka_port",
        "kafka_cache_dir",
        "group_id",
        "session_timeout_seconds",
        "security_protocol",
        "sasl_mechanism",
        "sasl_username",
        "sasl_password",
        "sasl_oauth_token",
        "ssl_cafile",
        "ssl_certfile",
        "ssl_keyfile",
        "ssl_key_password",
        "ssl_check_hostname",
    ),
    "Topics": (
        "events_topic",
        "predictions_topic",
        "dead_letters_topic",
        "activity_topic",
        "metrics_topic",
        "drift_topic",
        "checkpoints_topic",
        "control_topic",
        "shadow_predictions_topic",
        "experiments_topic",
        "learn_topic",
        "snapshots_topic",
        "impressions_topic",
        "clicks_topic",
        "conversions_topic",
        "outcomes_topic",
        "topic_partitions",
        "topic_replication",
    ),
    "Models": (
        "app",
        "models",
        "model_params",
        "model_scopes",
        "snapshot_every_events",
        "snapshot_every_seconds",
    ),
    "Quality (evaluation, drift)": (
        "metrics_window",
        "metrics_threshold",
        "metrics_every_events",
        "metrics_period_seconds",
        "segment_features",
        "max_segments",
        "baseline_window",
        "baseline_max_keys",
        "auc_cells",
        "drift_enabled",
        "drift_reference",
        "drift_window",
        "drift_psi_threshold",
        "drift_js_threshold",
    ),
    "Checkpoints and durability": (
        "checkpoint_every_events",
        "checkpoint_every_seconds",
        "checkpoint_chunk_bytes",
        "checkpoint_key",
        "checkpoint_fallback",
        "serialize_in_child",
        "dedup_window",
    ),
    "Delivery (batches, guarantee)": (
        "max_event_bytes",
        "batch_size",
        "batch_seconds",
        "fetch_max_wait_ms",
        "consumer_prefetch_kbytes",
        "producer_linger_ms",
        "producer_batch_bytes",
        "producer_compression",
        "processing_guarantee",
        "transactional_id",
        "transaction_timeout_seconds",
    ),
    "API (/v1)": (
        "api_enabled",
        "api_host",
        "api_port",
        "api_advertised_url",
        "api_tokens",
        "api_max_request_bytes",
        "api_max_items",
        "api_forward_timeout_seconds",
        "api_events_timeout_seconds",
        "api_ssl_certfile",
        "api_ssl_keyfile",
        "api_ssl_key_password",
        "api_ssl_cafile",
    ),
    "Push sinks": ("push_sinks",),
    "Formats and schema registry": (
        "events_format",
        "join_format",
        "event_mapping",
        "predictions_format",
        "schema_registry_url",
        "schema_registry_username",
        "schema_registry_password",
        "schema_registry_cafile",
        "schema_registry_certfile",
        "schema_registry_keyfile",
        "schema_registry_timeout_seconds",
    ),
    "Join (delayed feedback)": (
        "join_enabled",
        "click_window_seconds",
        "conversion_window_seconds",
        "join_lateness_seconds",
        "ctr_model",
        "products",
        "propensity_model",
        "negative_sampling_rate",
        "join_report_every",
        "join_max_pending",
        "join_max_visitors",
        "activity_types",
        "activity_hours",
    ),
    "Model lifecycle": ("status_every_seconds",),
    "Operations (metrics, logging, ports, progress)": (
        "metrics_host",
        "metrics_port",
        "data_dir",
        "log_level",
        "progress_seconds",
    ),
}


def sections() -> dict[str, dict[str, FieldInfo]]:
    """Every setting by section (SECTIONS' order): title -> field name -> its field (type
    `annotation`, `default`, `description`), e.g. for a reference generated from the code.

    >>> api = sections()["API (/v1)"]["api_port"]
    >>> env_name("api_port"), api.annotation, api.default
    ('RIVERRUN_API_PORT', <class 'int'>, 9465)
    """
    fields = Settings.model_fields
    return {title: {name: fields[name] for name in names} for title, names in SECTIONS.items()}


#: What a secret's value is shown as.
MASK = "**********"

_SASL_FIELDS = ("sasl_username", "sasl_password", "sasl_oauth_token")
_TLS_FIELDS = ("ssl_cafile", "ssl_certfile", "ssl_keyfile", "ssl_key_password")


def env_name(field_name: str) -> str:
    """The environment variable of a settings field."""
    return f"{ENV_PREFIX}{field_name.upper()}"


def _env_value(value: Any, reveal: bool = True) -> str:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, list | dict | tuple | BaseModel):  # (a model: RIVERRUN_EVENT_MAPPING)
        return json.dumps(_plain(value, reveal))
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _plain(value: Any, reveal: bool) -> Any:
    """`value` as JSON data; secrets inside it (a push sink's token) as they are, or masked."""
    if isinstance(value, SecretStr):
        return value.get_secret_value() if reveal else MASK
    if isinstance(value, BaseModel):
        value = {name: getattr(value, name) for name in value.model_fields_set}
    if isinstance(value, dict):
        return {k: _plain(v, reveal) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v, reveal) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def _unknown_variable(name: str, known: set[str]) -> str:
    # Compared without the prefix, which every name shares.
    suffixes = sorted(k.removeprefix(ENV_PREFIX) for k in known)
    close = difflib.get_close_matches(name.removeprefix(ENV_PREFIX), suffixes, n=1, cutoff=0.7)
    hint = f"did you mean {ENV_PREFIX}{close[0]}?" if close else "see the docs' Settings reference"
    return f"{name} is not a riverrun setting ({hint}); rename or unset it"


def describe_error(err: ValidationError) -> str:
    """A settings ValidationError as one sentence per mistake, each naming the variable,
    what it got (secrets masked) and the form it wants.

    >>> try:
    ...     Settings(batch_size="many")
    ... except ValidationError as err:
    ...     print(describe_error(err))
    RIVERRUN_BATCH_SIZE is 'many', not a whole number: it wants a whole number greater than 0
    """
    return "; ".join(_mistake(error) for error in err.errors(include_url=False))


#: Why a value was refused, by pydantic's error type (else pydantic's own message).
_REASONS = {
    "int_parsing": "not a whole number",
    "int_type": "not a whole number",
    "int_from_float": "not a whole number",
    "float_parsing": "not a number",
    "float_type": "not a number",
    "bool_parsing": "not true or false",
    "bool_type": "not true or false",
    "greater_than": "out of range",
    "greater_than_equal": "out of range",
    "less_than": "out of range",
    "less_than_equal": "out of range",
    "finite_number": "not a finite number",
    "literal_error": "not one of the choices",
    "list_type": "not a list",
    "dict_type": "not a JSON object",
    "model_type": "not a JSON object",
    "model_attributes_type": "not a JSON object",
    "string_type": "not text",
    "too_short": "too short",
    "string_pattern_mismatch": "not of the expected form",
}


def _mistake(error: ErrorDetails) -> str:
    loc = error["loc"]
    message = error["msg"].removeprefix("Value error, ")
    if not loc or loc[0] not in Settings.model_fields:
        return message  # a model validator's own sentence
    field = Settings.model_fields[str(loc[0])]
    where = env_name(str(loc[0])) + "".join(
        f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc[1:]
    )
    annotation = _annotation_at(field.annotation, loc[1:])
    if error["type"] == "missing":
        parent = where.rpartition(".")[0]
        wanted = _wanted(_annotation_at(field.annotation, loc[1:-1]))
        return f"{parent} has no {loc[-1]!r}: it wants {wanted}"
    if error["type"] == "extra_forbidden":
        parent = _unwrapped(_annotation_at(field.annotation, loc[1:-1]))
        known = ", ".join(parent.model_fields) if _is_model(parent) else ""
        return f"{where} is not a field it knows: rename or remove it (fields: {known})"
    got = MASK if _has_secret(annotation) else _shown(error["input"])
    reason = (
        error["msg"] if error["type"] == "json_invalid" else _REASONS.get(error["type"], message)
    )
    example = f", e.g. {field.examples[0]}" if field.examples and len(loc) == 1 else ""
    return f"{where} is {got}, {reason}: it wants {_wanted(annotation, field.metadata)}{example}"


def _shown(value: Any, limit: int = 60) -> str:
    text = repr(value) if isinstance(value, str) else json.dumps(_plain(value, False), default=str)
    text = _CREDENTIALS_IN_URL.sub(r"\1" + MASK + "@", text)  # a password put in a URL
    return text if len(text) <= limit else text[: limit - 3] + "..."


_CREDENTIALS_IN_URL = re.compile(r"(://)[^/@\s'\"]*@")


def _wanted(annotation: Any, metadata: "list[Any] | tuple[Any, ...]" = ()) -> str:
    """The form a value of `annotation` takes, in words (bounds from `metadata`)."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return _wanted(args[0], [*metadata, *args[1:]])
    if origin in (Union, types.UnionType):
        chosen = [arg for arg in args if arg is not type(None)]
        return " or ".join(_wanted(arg, metadata) for arg in chosen)
    if origin is Literal:
        return "one of " + ", ".join(str(arg) for arg in args)
    if origin is list:
        item = args[0] if args else Any
        if _is_model(item):
            return f"a JSON list of objects, each {_wanted(item)}"
        return f"a JSON list or items separated by commas, each {_wanted(item)}" + _bounds(
            metadata, "list"
        )
    if origin is dict:
        return "a JSON object"
    if _is_model(annotation):
        required = [name for name, f in annotation.model_fields.items() if f.is_required()]
        optional = [name for name in annotation.model_fields if name not in required]
        return f"an object with {' and '.join(required)} (optional: {', '.join(optional)})"
    words = {
        bool: "true or false",
        int: "a whole number",
        float: "a number",
        str: "text",
        Path: "a file path",
        SecretStr: "a secret",
    }
    return words.get(annotation, "any JSON value") + _bounds(metadata)


def _bounds(metadata: "list[Any] | tuple[Any, ...]", of: str = "") -> str:
    parts = []
    for bound in metadata:
        if of:  # a list's own bounds: its length
            if isinstance(bound, annotated_types.MinLen) and bound.min_length:
                parts.append(f"at least {bound.min_length} of them")
            continue
        if getattr(bound, "pattern", None):
            parts.append(f"matching {bound.pattern}")
        if isinstance(bound, annotated_types.Gt):
            parts.append(f"greater than {bound.gt}")
        elif isinstance(bound, annotated_types.Ge):
            parts.append(f"at least {bound.ge}")
        elif isinstance(bound, annotated_types.Lt):
            parts.append(f"less than {bound.lt}")
        elif isinstance(bound, annotated_types.Le):
            parts.append(f"at most {bound.le}")
    return (", with " if of else " ") + " and ".join(parts) if parts else ""


def _annotation_at(annotation: Any, path: "tuple[int | str, ...]") -> Any:
    """The type of the part of a value that `path` (a pydantic error's loc) points at."""
    for part in path:
        annotation = _unwrapped(annotation)
        origin, args = get_origin(annotation), get_args(annotation)
        if origin is list and args:
            annotation = args[0]
        elif origin is dict and args:
            annotation = args[1]
        elif _is_model(annotation) and part in annotation.model_fields:
            annotation = annotation.model_fields[str(part)].annotation
        else:
            return Any
    return annotation


def _unwrapped(annotation: Any) -> Any:
    """`annotation` without Annotated and without `| None`."""
    while True:
        origin, args = get_origin(annotation), get_args(annotation)
        if origin is Annotated:
            annotation = args[0]
        elif origin in (Union, types.UnionType):
            chosen = [arg for arg in args if arg is not type(None)]
            if len(chosen) != 1:
                return annotation
            annotation = chosen[0]
        else:
            return annotation


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _is_complex(annotation: Any) -> bool:
    """Given as JSON (or a comma list) in the environment: a list, an object or a model."""
    bare = _unwrapped(annotation)
    return get_origin(bare) in (list, dict) or _is_model(bare)


def _is_scalar_list(annotation: Any) -> bool:
    bare = _unwrapped(annotation)
    args = get_args(bare)
    return get_origin(bare) is list and bool(args) and not _is_complex(args[0])


def _has_secret(annotation: Any) -> bool:
    """Whether a value of `annotation` can hold a secret (then it is never shown)."""
    if annotation is SecretStr:
        return True
    if _is_model(annotation):
        return any(_has_secret(f.annotation) for f in annotation.model_fields.values())
    return any(_has_secret(arg) for arg in get_args(annotation))
