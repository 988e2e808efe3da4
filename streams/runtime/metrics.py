"""Prometheus metrics of one worker, in a registry of their own."""

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

#: Latency buckets (seconds) from 0.1 ms to 5 s: a batched worker sits in the low ms.
LATENCY_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
)

#: Checkpoint and restore durations (seconds): from a small linear model to a large tree.
DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

#: Join delays (seconds): from a second to a week.
JOIN_DELAY_BUCKETS = (1, 10, 60, 300, 900, 1800, 3600, 6 * 3600, 86400, 3 * 86400, 7 * 86400)


class WorkerMetrics:
    """Every metric a worker exports. A fresh `CollectorRegistry` unless one is given."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.consumed = Counter(
            "riverrun_events_consumed_total",
            "Messages consumed, valid or not.",
            ["topic"],
            registry=r,
        )
        self.predicted = Counter(
            "riverrun_predictions_total", "Predictions produced.", ["model"], registry=r
        )
        self.learned = Counter(
            "riverrun_events_learned_total",
            "Labelled events the model learnt from.",
            ["model"],
            registry=r,
        )
        self.dead_lettered = Counter(
            "riverrun_dead_letters_total",
            "Messages sent to the dead-letter topic, by source topic and error type.",
            ["topic", "error_type"],
            registry=r,
        )
        self.activity = Counter(
            "riverrun_activity_events_total",
            "Valid activity events, by activity type.",
            ["type"],
            registry=r,
        )
        self.latency = Histogram(
            "riverrun_predict_latency_seconds",
            "Time from a batch reaching the worker to each event's prediction being built "
            "(decode, validate, predict, learn).",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.lag = Gauge(
            "riverrun_consumer_lag_messages",
            "Messages in the partition after the last one processed "
            "(high watermark - next offset).",
            ["topic", "partition"],
            registry=r,
        )
        self.quality = Gauge(
            "riverrun_model_quality",
            "Rolling quality of each model over the last RIVERRUN_METRICS_WINDOW labelled "
            "events, updated every batch (logloss for classifiers, mae for regressors), per "
            "input partition (each partition has its own replica of the model). For a "
            "global model, `served_<metric>` scores the snapshots' predictions of each "
            "events partition; its learner's own is per learn partition.",
            ["model", "partition", "metric"],
            registry=r,
        )
        self.model_metric = Gauge(
            "riverrun_model_metric",
            "Every streamed prequential metric, as of the last report on the metrics topic "
            "(see the docs, Concepts > Model quality: docs/concepts/model-quality.md).",
            ["model", "partition", "segment", "metric"],
            registry=r,
        )
        replica = ["model", "partition"]
        self.checkpoints = Counter(
            "riverrun_checkpoints_total",
            "Checkpoints written and acknowledged.",
            replica,
            registry=r,
        )
        self.checkpoint_age = Gauge(
            "riverrun_checkpoint_age_seconds",
            "Seconds since the replica's last acknowledged checkpoint (or since its restore).",
            replica,
            registry=r,
        )
        self.checkpoint_bytes = Gauge(
            "riverrun_checkpoint_bytes",
            "Size of the replica's last checkpoint (compressed, all chunks).",
            replica,
            registry=r,
        )
        self.checkpoint_duration = Histogram(
            "riverrun_checkpoint_duration_seconds",
            "Time to serialize, compress, sign and write one checkpoint until acknowledged.",
            ["model"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.checkpoint_refused = Counter(
            "riverrun_checkpoints_refused_total",
            "Checkpoints not restored, by reason: malformed, incomplete, unauthenticated "
            "(tampered or another key), foreign, incompatible, unreadable.",
            ["model", "partition", "reason"],
            registry=r,
        )
        self.snapshots_published = Counter(
            "riverrun_snapshots_published_total",
            "Snapshots of a global model its learner published.",
            ["model"],
            registry=r,
        )
        self.snapshot_updates = Gauge(
            "riverrun_snapshot_updates",
            "Learnt examples in the snapshot a global model is predicted with here.",
            ["model"],
            registry=r,
        )
        self.snapshot_age = Gauge(
            "riverrun_snapshot_age_seconds",
            "Seconds since the learner made the snapshot a global model is predicted with "
            "here (since start while there is none).",
            ["model"],
            registry=r,
        )
        self.snapshot_lag = Gauge(
            "riverrun_snapshot_lag_events",
            "Examples on the learn topic the snapshot predicted with here has not learnt "
            "(of its partition, which other global models may share).",
            ["model"],
            registry=r,
        )
        self.snapshots_refused = Counter(
            "riverrun_snapshots_refused_total",
            "Snapshots not used, by reason: malformed, incomplete, unauthenticated "
            "(tampered or another key), foreign, incompatible, unreadable.",
            ["model", "reason"],
            registry=r,
        )
        self.restore_duration = Histogram(
            "riverrun_restore_duration_seconds",
            "Time to read and restore the checkpoints of one assigned partition.",
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.restored_offset = Gauge(
            "riverrun_restored_offset",
            "Input offset the replica resumed learning at after its last restore "
            "(-1: no checkpoint, the model started afresh).",
            replica,
            registry=r,
        )

        self.drift = Counter(
            "riverrun_drift_detected_total",
            "Drift found: a detector's alarm (adwin, page_hinkley) or a window over its "
            "threshold (psi, jensen_shannon), by signal (loss, label, prediction, "
            "calibration, feature:<name>).",
            ["model", "partition", "detector", "signal"],
            registry=r,
        )
        self.drift_statistic = Gauge(
            "riverrun_drift_statistic",
            "The last window's drift statistic (see the drift topic's schema).",
            ["model", "partition", "detector", "signal"],
            registry=r,
        )
        # --- model lifecycle ---
        version = ["model", "version", "partition"]
        self.control_refused = Counter(
            "riverrun_control_refused_total",
            "Control messages not applied, by reason: unsigned, bad_signature, malformed.",
            ["reason"],
            registry=r,
        )
        self.plan_revision = Gauge(
            "riverrun_plan_revision",
            "Revision of the model's plan applied.",
            ["model"],
            registry=r,
        )
        self.version_role = Gauge(
            "riverrun_version_info",
            "1 for each version of a model with a plan, with its role and whether it learns.",
            ["model", "version", "role", "learning"],
            registry=r,
        )
        self.versions_unbuildable = Gauge(
            "riverrun_model_versions_unbuildable",
            "Versions of the model's plan this partition's code cannot build: it serves the "
            "others (see `riverrun models list`, `models retire --force`).",
            ["model", "partition"],
            registry=r,
        )
        self.version_quality = Gauge(
            "riverrun_version_quality",
            "Rolling quality of each version (as riverrun_model_quality), per partition.",
            [*version, "metric"],
            registry=r,
        )
        self.version_served = Counter(
            "riverrun_version_predictions_total",
            "Predictions served (served=true) or sent to shadow-predictions, per version.",
            ["model", "version", "served"],
            registry=r,
        )
        self.rollbacks = Counter(
            "riverrun_rollbacks_total",
            "Automatic rollbacks to the previous champion (loss alarm, divergence).",
            ["model", "partition"],
            registry=r,
        )
        self.breaker_trips = Counter(
            "riverrun_learning_breaker_trips_total",
            "Times the learning breaker paused a model's learning (label rate or mean label "
            "shock).",
            ["model", "partition"],
            registry=r,
        )
        self.learning_paused = Gauge(
            "riverrun_learning_paused",
            "1 while the version's learning is paused (breaker or by hand).",
            ["model", "version"],
            registry=r,
        )
        self.experiment_outcomes = Gauge(
            "riverrun_experiment_outcomes",
            "Labelled outcomes of each arm of the running experiment, per partition.",
            ["model", "experiment", "arm", "partition"],
            registry=r,
        )
        self.bandit_share = Gauge(
            "riverrun_bandit_share",
            "Share of the bandit's decisions that went to each arm, per partition.",
            ["model", "arm", "partition"],
            registry=r,
        )
        # --- delayed-feedback join ---
        self.join_counts = Counter(
            "riverrun_join_events_total",
            "Join counters by kind: impressions, click_positives, late_positives (clicks "
            "for unknown, expired or out-of-window impressions), duplicate_clicks, "
            "conversions, conversions_joined, negatives_learnt, negatives_skipped "
            "(down-sampled), features_missing and features_stale (activity defaults used).",
            ["kind"],
            registry=r,
        )
        self.join_delay = Histogram(
            "riverrun_join_delay_seconds",
            "Event time from impression to the click or conversion that labelled it.",
            ["label_type"],
            buckets=JOIN_DELAY_BUCKETS,
            registry=r,
        )
        self.join_pending = Gauge(
            "riverrun_join_pending_impressions",
            "Impressions waiting for a label (the join's state size), per partition.",
            ["partition"],
            registry=r,
        )
        self.join_coverage = Gauge(
            "riverrun_join_label_coverage",
            "Share of impressions whose click label is known, per partition.",
            ["partition"],
            registry=r,
        )
        # --- the /v1 API (streams.http.server)
        self.api_requests = Counter(
            "riverrun_api_requests_total",
            "Requests to the /v1 API, by route and HTTP status.",
            ["route", "status"],
            registry=r,
        )
        self.api_latency = Histogram(
            "riverrun_api_request_seconds",
            "Time to answer a /v1 request, forwards included.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.api_forwarded = Counter(
            "riverrun_api_forwarded_total",
            "Requests for keys another worker owns, by outcome (answered, unreachable).",
            ["outcome"],
            registry=r,
        )
        self.api_predictions = Counter(
            "riverrun_api_predictions_total",
            "Request-time predictions answered by this worker's replicas.",
            ["model"],
            registry=r,
        )
        # --- push sinks (streams.services.push)
        self.push_delivered = Counter(
            "riverrun_push_delivered_total",
            "Predictions a push sink's endpoint acknowledged (2xx).",
            ["sink"],
            registry=r,
        )
        self.push_attempts = Counter(
            "riverrun_push_attempts_total",
            "Requests of a push sink, by outcome: ok, retry (failed, sent again unless it was "
            "the last attempt), refused (a 4xx: dead-lettered at once).",
            ["sink", "outcome"],
            registry=r,
        )
        self.push_dead_letters = Counter(
            "riverrun_push_dead_letters_total",
            "Predictions a push sink could not deliver, sent to the dead-letter topic.",
            ["sink"],
            registry=r,
        )
        self.push_lag = Gauge(
            "riverrun_push_lag_messages",
            "Messages of a partition a push sink has not handled yet (high watermark - position).",
            ["sink", "partition"],
            registry=r,
        )
        self.push_request_seconds = Histogram(
            "riverrun_push_request_seconds",
            "Duration of one request of a push sink, failed ones included.",
            ["sink"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        # --- the broker's reachability (streams.kafka.broker_health)
        self.schema_registry_failures = Counter(
            "riverrun_schema_registry_failures_total",
            "Requests to the schema registry that got no usable answer (unreachable, an error "
            "status, refused credentials); the records naming the schema wait meanwhile.",
            registry=r,
        )
        self.broker_reachable = Gauge(
            "riverrun_broker_reachable",
            "1 while a broker of the cluster answers the worker's probe, 0 during an outage.",
            registry=r,
        )
        self.broker_outage_seconds = Gauge(
            "riverrun_broker_outage_seconds",
            "How long the current broker outage has lasted (0 when the broker answers).",
            registry=r,
        )
        self.broker_outages = Counter(
            "riverrun_broker_outages_total",
            "Broker outages the worker saw (a probe failing after one answered).",
            registry=r,
        )

    def exposition(self) -> bytes:
        """The registry in Prometheus text format."""
        return generate_latest(self.registry)
