"""What a worker logs about itself: the banner, progress lines, checkpoint and commit
lines, and the warning of a worker without a partition."""

import logging
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import TopicPartition
from pydantic import ValidationError

from online_models import Learner
from online_models.versions import plans as control
from streams.runtime.metrics import WorkerMetrics
from streams.runtime.partitioned import (
    PartitionedService,
    PartitionState,
    checkpoint_line,
    idle_warning,
)
from streams.runtime.progress import (
    Progress,
    ProgressLog,
    ServedVersion,
    banner,
    broker_shown,
    progress_line,
    served_versions,
)
from streams.settings import Settings
from tests.builtin import MODELS

# Any: secrets are given as text, which pydantic turns into SecretStr as it would from the
# environment.
SECRETS: dict[str, Any] = {
    "sasl_password": "pw-secret-1",
    "api_tokens": "tok-secret-2",
    "checkpoint_key": "key-secret-3",
}


def sasl_settings(**values: Any) -> Settings:
    return Settings(
        app="mypkg.models:app",
        broker="b1:9093,b2:9093",
        security_protocol="SASL_SSL",
        sasl_mechanism="PLAIN",
        sasl_username="alice",
        group_id="fraud-workers",
        events_topic="tx",
        checkpoint_every_events=500,
        checkpoint_every_seconds=15,
        **SECRETS,
        **values,
    )


def test_the_banner_says_what_runs_where_and_never_a_secret() -> None:
    versions = [
        ServedVersion("fraud", "fraud@aa", "binary", "champion"),
        ServedVersion("fraud", "fraud@bb", "binary", "shadow"),
    ]
    text = banner(
        sasl_settings(),
        versions,
        metrics_url="http://127.0.0.1:9500/metrics",
        api_url="http://127.0.0.1:9501/v1",
        riverrun_version="1.2.3",
    )

    assert text.startswith("riverrun 1.2.3 worker started\n")
    for expected in [
        "mypkg.models:app",
        "fraud@aa (binary, champion)",
        "fraud@bb (binary, shadow)",
        "one replica per input partition",
        "tx -> predictions",
        "control control",
        "checkpoints checkpoints",
        "fraud-workers (events)",
        "b1:9093,b2:9093 (SASL_SSL)",
        "http://127.0.0.1:9500/metrics",
        "http://127.0.0.1:9501/v1",
        "every 500 events or 15 s per partition (at_least_once)",
        "a line every 30 s",
    ]:
        assert expected in text, expected
    for secret in [*SECRETS.values(), "alice"]:
        assert secret not in text
    off = banner(
        sasl_settings(progress_seconds=0), [], metrics_url="m", api_url=None, riverrun_version="1"
    )
    assert "api:           off" in off and "progress:      off" in off


def test_a_password_written_into_the_broker_address_is_not_shown() -> None:
    assert broker_shown("u:p@k1:9092,k2:9092") == "k1:9092,k2:9092"


def test_a_model_with_a_plan_shows_the_plan_versions_and_roles() -> None:
    spec, linreg = MODELS["logreg"], MODELS["linreg"]
    challenger = spec.with_params(lr=0.01)
    plan = control.deploy(control.initial_plan(spec, changed_by="test"), challenger)
    found = served_versions(Learner(["logreg", "linreg"], registry=MODELS), {"logreg": plan})
    assert found == [
        ServedVersion("logreg", spec.version, "binary", "champion"),
        ServedVersion("logreg", challenger.version, "binary", "shadow"),
        ServedVersion("linreg", linreg.version, "regression", "served"),
    ]


def test_a_plan_version_this_code_cannot_build_is_said_with_who_serves_instead() -> None:
    spec = MODELS["logreg"]
    plan = control.initial_plan(spec, changed_by="test")
    lost = plan.versions[0].model_copy(update={"version": "logreg@00000000"})  # older code's
    forged = plan.model_copy(update={"versions": [lost]})
    found = served_versions(Learner(["logreg"], registry=MODELS), {"logreg": forged})
    assert found == [
        ServedVersion("logreg", spec.version, "binary", "champion in place of logreg@00000000"),
        ServedVersion("logreg", "logreg@00000000", "binary", "champion, cannot build it"),
    ]


def test_a_progress_line_gives_the_rate_since_the_last_one() -> None:
    line = progress_line(
        Progress(events=4500, seconds=30.0, lag=7, partitions=3, checkpoint_age=12.4, unsaved=800)
    )
    assert line == (
        "progress: 150.0 events/s over 30 s, lag 7, 3 partition(s), oldest "
        "checkpoint 12 s ago (800 events since)"
    )


class _Consumer:
    def __init__(self, highwaters: dict[TopicPartition, int | None]) -> None:
        self.highwaters = highwaters

    def highwater(self, tp: TopicPartition) -> int | None:
        return self.highwaters[tp]


def _state(tp: TopicPartition, position: int, since: int, age: float) -> PartitionState:
    import time

    state = PartitionState()
    state.positions[tp] = position
    state.since_checkpoint = since
    state.checkpointed_at = time.monotonic() - age
    return state


def test_progress_sums_the_lag_of_owned_partitions_and_ages_the_oldest_unsaved_checkpoint() -> None:
    a, b, c = (TopicPartition("events", p) for p in range(3))
    owned = {
        a: _state(a, 100, 0, 90.0),  # checkpointed long ago, nothing new since
        b: _state(b, 40, 25, 20.0),
        c: _state(c, 5, 3, 8.0),
    }  # not fetched yet: no high watermark
    events = SimpleNamespace(owned=owned, consumer=_Consumer({a: 130, b: 40, c: None}))
    service = ProgressLog(Settings(), events, lambda: 0.0, lambda: ("m", None))

    p = service.figures(events=600, seconds=30.0)

    assert (p.lag, p.partitions, p.unsaved) == (30, 3, 28)  # 130-100 + 40-40
    assert p.checkpoint_age == pytest.approx(20.0, abs=1.0)  # b's: a has nothing unsaved
    idle = ProgressLog(
        Settings(), SimpleNamespace(owned={}, consumer=None), lambda: 0.0, lambda: ("m", None)
    ).figures(0, 30.0)
    assert (idle.lag, idle.partitions, idle.checkpoint_age) == (0, 0, None)


def test_progress_seconds_zero_turns_it_off_and_negative_is_refused() -> None:
    assert Settings().progress_seconds == 30.0
    assert Settings(progress_seconds=0).progress_seconds == 0
    with pytest.raises(ValidationError):
        Settings(progress_seconds=-1)


def test_the_checkpoint_line_names_partition_offset_size_and_time() -> None:
    positions = {TopicPartition("events", 2): 1200}
    assert checkpoint_line("events", positions, 46_500, 0.012) == (
        "events: checkpoint written for events[2] up to offset 1200: 46500 bytes in 12 ms"
    )


def test_the_idle_warning_says_how_many_partitions_and_members_and_what_to_do() -> None:
    assert idle_warning("tx", 4, 6) == (
        "this worker got no partition of tx (4 partitions, 6 members): add partitions or "
        "run fewer workers"
    )


def test_the_offsets_committed_are_logged_once_per_partition_then_forgotten(
    caplog: pytest.LogCaptureFixture,
) -> None:
    service: PartitionedService = PartitionedService(Settings(), WorkerMetrics(), {})  # type: ignore[type-arg]
    a, b = TopicPartition("events", 0), TopicPartition("events", 1)
    service.committed[a] = 300
    with caplog.at_level(logging.INFO, logger="streams.runtime.partitioned"):
        service.log_committed({a, b}, "on stop")
        service.log_committed({a}, "handing over")
    assert caplog.messages == [
        "partitioned: offsets committed on stop: events[0] at 300, events[1] as before "
        "(nothing processed here since)",
        # Given up: a later line must not claim a commit this worker no longer owns.
        "partitioned: offsets committed handing over: events[0] as before (nothing processed "
        "here since)",
    ]
    assert not service.committed
