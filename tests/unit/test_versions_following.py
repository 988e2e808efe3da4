"""Plans followed by a partition's replicas (`streams.runtime.versions.Versions` over
`online_models.versions.following`), without Kafka: the control topic's view is filled by
hand, the offset lookup is a function."""

import asyncio
from datetime import UTC, datetime

from online_models.versions import plans as control
from schemas.control import ModelPlan
from streams.runtime.control import ControlLog
from streams.runtime.metrics import WorkerMetrics
from streams.runtime.versions import Versions
from streams.settings import Settings
from tests.unit.test_lifecycle import GOOD, clicks, learner_with, run

SINCE = datetime(2026, 1, 1, tzinfo=UTC)


def test_a_version_joining_with_a_backfill_rewinds_the_partition_for_itself_only() -> None:
    learner, plan = learner_with()
    run(learner, clicks(100))  # offsets 0-99: the partition's position is 100
    spec = learner.models["logreg"].spec.with_params(**GOOD)
    deployed = control.deploy(plan, spec, backfill_from=SINCE)
    log = ControlLog(Settings(), WorkerMetrics())  # not started: its view, filled by hand
    log.state.keep(deployed)
    versions = Versions(Settings(), WorkerMetrics(), log)
    asked: list[tuple[datetime, int]] = []

    async def offset_at(when: datetime, default: int) -> int:
        asked.append((when, default))
        return 40  # the first event produced since SINCE

    async def follow() -> int | None:
        return await versions.follow(learner, "events", 0, 100, offset_at)

    assert asyncio.run(follow()) == 40  # re-read from 40 ...
    assert asked == [(SINCE, 100)]
    group = learner.groups["logreg"]
    joined = next(v for v in group.versions if v != plan.versions[0].version)
    assert group.versions[joined].resume_offset == 40 == group.state.joined_at[joined]
    champion = group.versions[plan.versions[0].version]
    assert champion.resume_offset == 100  # ... which only the joining version learns
    assert group.state.revision == deployed.revision
    assert asyncio.run(follow()) is None  # the plan in force: nothing newer to follow


def test_a_backfill_from_after_the_position_rewinds_nothing() -> None:
    learner, plan = learner_with()
    run(learner, clicks(100))
    spec = learner.models["logreg"].spec.with_params(**GOOD)
    log = ControlLog(Settings(), WorkerMetrics())
    log.state.keep(control.deploy(plan, spec, backfill_from=SINCE))
    versions = Versions(Settings(), WorkerMetrics(), log)

    async def nothing_since(when: datetime, default: int) -> int:
        return default  # no event produced since: the lookup answers the position

    async def follow() -> int | None:
        return await versions.follow(learner, "events", 0, 100, nothing_since)

    assert asyncio.run(follow()) is None
    assert len(learner.groups["logreg"].versions) == 2  # joined all the same, from 100


def test_plans_of_models_not_served_here_are_not_followed() -> None:
    learner, plan = learner_with()
    other = ModelPlan.model_validate({**plan.model_dump(), "model": "elsewhere"})
    log = ControlLog(Settings(), WorkerMetrics())
    log.state.keep(other)
    versions = Versions(Settings(), WorkerMetrics(), log)

    async def never(when: datetime, default: int) -> int:
        raise AssertionError("no lookup for a plan not followed")

    assert asyncio.run(versions.follow(learner, "events", 0, 0, never)) is None
    assert set(learner.groups) == {"logreg"}
