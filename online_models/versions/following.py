"""What a worker decides as plans and statuses arrive, without Kafka.

A partition's replicas follow the plans newer than those they run, from the partition's
position on; a version that joins with `backfill_from` learns the events produced since
then, so the partition re-reads them and only the joining versions learn them (their
outputs were delivered). An experiment is over once its arms have their samples, summed
over every partition's status. `streams.runtime.versions` reads and publishes.
"""

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from online_models.learning.learner import Learner
from online_models.versions.lifecycle import experiment_verdict
from online_models.versions.plans import stop_routing
from schemas.control import ExperimentResult, ModelPlan, ModelStatus


@dataclass(frozen=True)
class Backfill:
    """A version that joined with `backfill_from`: it learns from `since` on."""

    model: str
    version: str
    since: datetime


def newer_plans(learner: Learner, plans: Mapping[str, ModelPlan]) -> list[ModelPlan]:
    """The plans of served models newer than those `learner`'s replicas run."""
    newer = []
    for name, plan in plans.items():
        group = learner.groups.get(name)
        if name in learner.models and (group is None or group.state.revision < plan.revision):
            newer.append(plan)
    return newer


def apply_plans(learner: Learner, plans: Iterable[ModelPlan], position: int) -> list[Backfill]:
    """Apply `plans` from offset `position` on; the joining versions that backfill."""
    backfills = []
    for plan in plans:
        joined = learner.apply_plan(plan, position)
        group = learner.groups[plan.model]
        for version in joined:
            since = group.roles[version].backfill_from
            if since is not None:
                backfills.append(Backfill(plan.model, version, since))
    return backfills


def rewind(learner: Learner, starts: Mapping[Backfill, int], position: int) -> int | None:
    """Where the partition re-reads from for the joining versions starting at `starts`
    (None: none starts below `position`); only they learn the events below `position`."""
    first: int | None = None
    for backfill, start in starts.items():
        if start < position:
            group = learner.groups[backfill.model]
            group.versions[backfill.version].resume_offset = start
            group.state.joined_at[backfill.version] = start
            first = start if first is None else min(first, start)
    if first is None:
        return None
    # Every replica learnt what lies below the position: only the joining versions
    # learn the re-run events; their outputs were delivered (replay_until).
    for served in learner.replicas().values():
        if served.resume_offset > first:
            served.resume_offset = max(served.resume_offset, position)
        elif served.resume_offset < first:
            served.resume_offset = position
    for group in learner.groups.values():
        group.resume_offset = max(group.resume_offset, position)
    return first


def concluded(
    plans: Mapping[str, ModelPlan],
    statuses_of: Callable[[str], list[ModelStatus]],
    changed_by: str,
) -> list[tuple[ExperimentResult, ModelPlan]]:
    """The result of each experiment whose every arm has its sample (summed over the
    partitions' statuses), with the plan that stops it."""
    found = []
    for name, plan in plans.items():
        if plan.experiment is None or plan.experiment.result is not None:
            continue
        result = experiment_verdict(plan, statuses_of(name))
        if result is not None:
            stopped = stop_routing(
                plan, result=result.model_dump(mode="json"), changed_by=changed_by
            )
            found.append((result, stopped))
    return found
