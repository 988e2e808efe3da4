"""All configuration, read once from the environment (prefix `RIVERRUN_`)."""

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

#: The repository checkout this package runs from (deploy/, .cache/ live there).
PROJECT_DIR = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    """riverrun's settings. Every field can be set as `RIVERRUN_<FIELD>` (upper case).

    Created once at the edge (the CLI) and passed down; nothing else reads the environment.
    """

    model_config = SettingsConfigDict(env_prefix="RIVERRUN_", frozen=True, extra="ignore")

    # --- Kafka -------------------------------------------------------------------------
    broker: str | None = Field(
        default=None,
        description="Bootstrap servers of an existing cluster. Unset: the local broker "
        "(`riverrun kafka up`) on 127.0.0.1:KAFKA_PORT is used and started when needed.",
    )
    kafka_port: int = Field(default=19092, description="Port of the local broker.")
    kafka_cache_dir: Path = Field(
        default=PROJECT_DIR / ".cache" / "kafka",
        description="Where the local broker's jars, data and log live.",
    )
    events_topic: str = "events"
    predictions_topic: str = "predictions"
    dead_letters_topic: str = "dead-letters"
    activity_topic: str = "activity"
    topic_partitions: int = Field(
        default=1, ge=1, description="Partitions of topics riverrun creates."
    )
    topic_replication: int = Field(default=1, ge=1)
    group_id: str = Field(default="riverrun", description="Consumer group (and Faust app id).")
    session_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        description="Consumer session timeout: how fast a dead worker's partitions move.",
    )
    max_event_bytes: int = Field(
        default=100_000, gt=0, description="Larger input messages are dead-lettered as oversized."
    )
    batch_size: int = Field(default=500, gt=0, description="Events taken per batch by the agent.")
    batch_seconds: float = Field(default=0.05, gt=0, description="Longest wait to fill a batch.")

    # --- models ------------------------------------------------------------------------
    models: list[str] = Field(
        default=["logreg", "linreg"],
        description="Model names this worker serves (JSON list); events for others are "
        "dead-lettered.",
    )
    quality_window: int = Field(
        default=1000, gt=0, description="Events in the rolling quality gauge."
    )

    # --- operations --------------------------------------------------------------------
    metrics_host: str = Field(default="127.0.0.1", description="Address /metrics listens on.")
    metrics_port: int = Field(
        default=9464, description="Port of the worker's web server (/metrics)."
    )
    data_dir: Path = Field(
        default=PROJECT_DIR / ".cache" / "worker", description="Faust's local state directory."
    )
    log_level: Literal["debug", "info", "warn", "error"] = "info"

    @property
    def bootstrap_servers(self) -> str:
        """The cluster to use: RIVERRUN_BROKER, else the local broker."""
        return self.broker or f"127.0.0.1:{self.kafka_port}"

    @property
    def uses_local_broker(self) -> bool:
        return self.broker is None
