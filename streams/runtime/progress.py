"""What a worker tells its log about itself: a start-up banner, and a progress line now
and then (events/s, lag, partitions, checkpoint age), as Faust, Quix Streams and Bytewax
workers do.

The lines are built by pure functions (`banner`, `progress_line`); `ProgressLog` is the
service that gathers their figures from the worker and logs them.
"""

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Protocol

from mode import Service

from online_models import Learner
from online_models.versions import plans as control
from schemas.control import ModelPlan
from streams.kafka.security import broker_shown
from streams.runtime.partitioned import PartitionState
from streams.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServedVersion:
    """One version a worker serves: what the banner says of it."""

    model: str
    version: str
    task: str
    role: str  # "served" (no plan), else its role in the model's plan


def served_versions(learner: Learner, plans: Mapping[str, ModelPlan]) -> list[ServedVersion]:
    """The versions `learner` (a fresh one) serves once `plans` apply: a model's plan
    versions with their roles (one this code cannot build as such, and who serves in its
    place), else the app's version.

    >>> from riverrun.builtin import app
    >>> learner = Learner(["logreg"], registry=app.models)
    >>> [(v.model, v.task, v.role) for v in served_versions(learner, {})]
    [('logreg', 'binary', 'served')]
    """
    for plan in plans.values():
        learner.apply_plan(plan, 0)
    out = []
    for name, served in learner.models.items():
        group = learner.groups.get(name)
        if group is None or group.plan is None:
            out.append(ServedVersion(name, served.version, served.task, "served"))
            continue
        roles = {v.version: v.role for v in group.plan.versions}
        instead = f"champion in place of {control.champion(group.plan).version}"
        for version in group.versions:
            role = roles.get(version, "")
            if version == group.stand_in:
                role = f"{role}, {instead}" if role else instead
            out.append(ServedVersion(name, version, served.task, role))
        out += [
            ServedVersion(name, version, served.task, f"{roles[version]}, cannot build it")
            for version in group.unbuildable
        ]
    return out


def installed_version() -> str:
    """The version of the installed riverrun package ("0+unknown" in a checkout that was
    not installed)."""
    try:
        return metadata.version("riverrun")
    except metadata.PackageNotFoundError:  # pragma: no cover - a checkout without install
        return "0+unknown"


def banner(
    settings: Settings,
    versions: Iterable[ServedVersion],
    *,
    metrics_url: str,
    api_url: str | None,
    riverrun_version: str,
) -> str:
    """The block a worker logs once started: which app, versions, topics, group, broker,
    URLs and checkpoint interval it runs with (never a secret)."""
    s = settings
    served = [f"{v.version} ({v.task}, {v.role})" for v in versions] or ["(none)"]
    outputs = [
        s.predictions_topic,
        s.shadow_predictions_topic,
        s.dead_letters_topic,
        s.metrics_topic,
        s.drift_topic,
    ]
    lines = [
        f"riverrun {riverrun_version} worker started",
        f"  app:           {s.app or 'riverrun built-in models'}",
        f"  models:        {served[0]}",
        *(f"                 {line}" for line in served[1:]),
        "                 (one replica per input partition, learning that partition's events)",
        f"  topics:        {s.events_topic} -> {', '.join(outputs)}; "
        f"control {s.control_topic}, checkpoints {s.checkpoints_topic}, "
        f"activity {s.activity_topic}",
        f"  group:         {s.group_id} (events), {s.group_id}-app (activity)",
        f"  broker:        {broker_shown(s.bootstrap_servers)} ({s.security_protocol})",
        f"  metrics:       {metrics_url} (health: /healthz, /readyz)",
        f"  api:           {api_url or 'off (RIVERRUN_API_ENABLED=false)'}",
        f"  checkpoints:   every {s.checkpoint_every_events} events or "
        f"{s.checkpoint_every_seconds:g} s per partition ({s.processing_guarantee})",
        "  progress:      "
        + (f"a line every {s.progress_seconds:g} s" if s.progress_seconds else "off")
        + " (RIVERRUN_PROGRESS_SECONDS)",
    ]
    return "\n".join(lines)


@dataclass(frozen=True)
class Progress:
    """The figures of one progress line."""

    events: float  # consumed since the last line
    seconds: float  # since the last line
    lag: int | None  # summed over the owned partitions; None: no high watermark known yet
    partitions: int  # owned input partitions
    checkpoint_age: float | None  # of the oldest partition with events not checkpointed
    unsaved: int  # events handled since those partitions' checkpoints


def progress_line(p: Progress) -> str:
    """One line saying how the worker is doing.

    >>> print(progress_line(Progress(3000, 30.0, 12, 2, 41.6, 1500)))
    progress: 100.0 events/s over 30 s, lag 12, 2 partition(s), oldest checkpoint 42 s \
ago (1500 events since)
    >>> print(progress_line(Progress(0, 30.0, None, 1, None, 0)))
    progress: 0.0 events/s over 30 s, lag unknown, 1 partition(s), checkpoints up to date
    """
    rate = p.events / p.seconds if p.seconds > 0 else 0.0
    lag = "unknown" if p.lag is None else str(p.lag)
    if p.checkpoint_age is None:
        checkpoint = "checkpoints up to date"
    else:
        checkpoint = f"oldest checkpoint {p.checkpoint_age:.0f} s ago ({p.unsaved} events since)"
    return (
        f"progress: {rate:.1f} events/s over {p.seconds:.0f} s, lag {lag}, "
        f"{p.partitions} partition(s), {checkpoint}"
    )


class EventsView(Protocol):
    """What the progress log reads of the events service (`BatchedEvents`)."""

    @property
    def owned(self) -> Mapping[Any, PartitionState]: ...

    @property
    def consumer(self) -> Any: ...  # (its public `highwater(tp)`)

    def new_learner(self, partition: int | None = None) -> Learner: ...

    def plans(self) -> dict[str, ModelPlan]: ...


class ProgressLog(Service):
    """Logs the banner once the worker's services started, then a progress line every
    RIVERRUN_PROGRESS_SECONDS (0: none).

    `events` is the worker's events service; `consumed` the count of events consumed so
    far; `urls` where /metrics and /v1 answer (None: /v1 is off).
    """

    def __init__(
        self,
        settings: Settings,
        events: EventsView,
        consumed: Callable[[], float],
        urls: Callable[[], tuple[str, str | None]],
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.events = events
        self.consumed = consumed
        self.urls = urls

    async def on_started(self) -> None:
        versions = served_versions(self.events.new_learner(), self.events.plans())
        metrics_url, api_url = self.urls()
        log.info(
            "%s",
            banner(
                self.settings,
                versions,
                metrics_url=metrics_url,
                api_url=api_url,
                riverrun_version=installed_version(),
            ),
        )

    @Service.task
    async def _progress(self) -> None:
        every = self.settings.progress_seconds
        if not every:
            return
        count, at = self.consumed(), time.monotonic()
        while not self.should_stop:
            await self.sleep(every)
            if self.should_stop:
                break
            now_count, now = self.consumed(), time.monotonic()
            log.info("%s", progress_line(self.figures(now_count - count, now - at)))
            count, at = now_count, now

    def figures(self, events: float, seconds: float) -> Progress:
        """The progress of the events service's owned partitions now."""
        consumer = self.events.consumer
        states = list(self.events.owned.values())
        lags = []
        for state in states:
            for tp, position in state.positions.items():
                highwater = consumer.highwater(tp) if consumer is not None else None
                if highwater is not None:
                    lags.append(max(highwater - position, 0))
        unsaved = [state for state in states if state.since_checkpoint]
        now = time.monotonic()
        oldest = max((now - state.checkpointed_at for state in unsaved), default=None)
        return Progress(
            events=events,
            seconds=seconds,
            lag=sum(lags) if lags or not states else None,
            partitions=len(states),
            checkpoint_age=oldest,
            unsaved=sum(state.since_checkpoint for state in unsaved),
        )
