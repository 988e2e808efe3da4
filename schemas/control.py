"""The `control` topic: which versions of a model exist and what each one does.

The topic is compacted and keyed by model name (`plan:<name>`) for plans, and by model
and input partition (`status:<name>:<partition>`) for what the workers report back.
Every message is signed with HMAC-SHA256 (`signature`, over the message's JSON without
it): nobody without the key steers the models. Signing and checking live in
`online_models.versions.plans`.

- `ModelPlan` (written by `riverrun models ...`, `riverrun experiments ...` and by the
  workers' automatic promotions, rollbacks and learning breakers): the versions of one
  model, the role of each, the experiment or bandit running, the gate. Each revision
  replaces the one before as a whole (`revision` increases by one).
- `ModelStatus` (written by the worker owning an input partition): per version, how many
  labelled events it was scored on since it joined and its mean loss on them next to
  the champion's over the same events (the gate's figures), and the experiment's counts.
- `PartitionOwner` (written by the worker that owns an input partition, keyed
  `owner:<topic>:<partition>`): where that worker's HTTP API answers for the partition's
  keys, so that another worker forwards a request for one of them there.
"""

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field, StrictBool, StrictFloat, StrictInt, StrictStr

from schemas.message import Message, Record
from schemas.types import (
    EventTime,
    Identifier,
    StrictNonNegativeFloat,
    StrictNonNegativeInt,
    StrictPositiveInt,
)

#: What a version does. champion: serves every key nothing else takes; canary: serves the
#: keys whose hash falls in its share; shadow: predicts and learns, never serves; arm: one
#: of the versions an experiment or a bandit routes among.
Role = Literal["champion", "canary", "shadow", "arm"]
ROLES: tuple[str, ...] = ("champion", "canary", "shadow", "arm")


class Routing(Record):
    """Why a prediction came from its version (on every prediction of a model that has a
    plan): the version's role and, for experiments and bandits, the arm."""

    role: Role
    served: StrictBool = Field(
        description="Whether this prediction is the one served for the event (false on "
        "the shadow-predictions topic)."
    )
    arm: str | None = Field(default=None, description="The arm (a version) it was routed to.")
    probability: Annotated[StrictFloat, Field(ge=0, le=1)] | None = Field(
        default=None,
        description="Bandits: the probability with which the policy chose this arm for "
        "this event (off-policy evaluation needs it); experiments and roles: null.",
    )
    experiment: str | None = None


class VersionPlan(Record):
    """One version of a model: built by the app's factory with `params`."""

    version: str = Field(description="'name@hash' of the factory's code and parameters.")
    params: dict[str, Any] = Field(description="Factory parameters (JSON values).")
    role: Role
    share: Annotated[StrictFloat, Field(ge=0, le=1)] = Field(
        default=0.0, description="Canary: the share of keys it serves."
    )
    learning: StrictBool = Field(
        default=True, description="False: it predicts but learns nothing (paused)."
    )
    paused_reason: str | None = None
    backfill_from: EventTime | None = Field(
        default=None,
        description="Before it joins, it learns the events of each partition from this "
        "event time on (the events topic is replayed from the first offset at or after it).",
    )
    joined_revision: StrictNonNegativeInt = Field(
        description="The plan revision that deployed it, or last changed its role (the "
        "gate counts from there)."
    )


class ExperimentPlan(Record):
    """An A/B test among versions: keys are assigned to arms by a hash of the key."""

    experiment_id: Identifier
    arms: list[str] = Field(min_length=2, description="Versions; the first is the control.")
    metric: Literal["ctr", "logloss", "mae"]
    alpha: Annotated[StrictFloat, Field(gt=0, lt=1)]
    power: Annotated[StrictFloat, Field(gt=0, lt=1)]
    mde: Annotated[StrictFloat, Field(gt=0)]
    baseline: Annotated[StrictFloat, Field(gt=0)]
    sequential: StrictBool = False
    sample_size: StrictPositiveInt = Field(description="Planned labelled outcomes per arm.")
    learn: Literal["routed", "all"] = "all"
    started: EventTime
    result: dict[str, Any] | None = Field(
        default=None, description="The published result, once every arm had its sample."
    )


class BanditPlan(Record):
    """Routing among versions by a River bandit policy, rewarded by the label."""

    policy: Literal["thompson", "epsilon_greedy", "ucb"]
    arms: list[str] = Field(min_length=2)
    seed: StrictNonNegativeInt = 0
    params: dict[str, StrictFloat | int] = Field(default_factory=dict)
    learn: Literal["routed", "all"] = "all"


class GatePlan(Record):
    """When a challenger may serve: after `min_labelled` labelled events since it joined,
    with a mean loss at most the champion's (on the same events) plus `delta`."""

    min_labelled: StrictPositiveInt = 1000
    delta: StrictNonNegativeFloat = 0.0
    auto_promote: StrictBool = False
    canary_share: Annotated[StrictFloat, Field(gt=0, le=1)] = 0.1


class BreakerPlan(Record):
    """The learning breaker: learning pauses when, over the last `window` events, the
    share of labelled events or the mean label exceeds `factor` times its level over the
    events before (after at least `reference` events)."""

    enabled: StrictBool = True
    window: StrictPositiveInt = 500
    reference: StrictPositiveInt = 2000
    factor: Annotated[StrictFloat, Field(gt=1)] = 5.0


class ModelPlan(Message):
    """A message on the `control` topic, keyed `plan:<model>`: the whole plan of a model."""

    kind: Literal["plan"] = "plan"
    model: Identifier
    revision: StrictPositiveInt
    versions: list[VersionPlan] = Field(min_length=1)
    previous_champions: list[str] = Field(
        default_factory=list, description="Champions before this one, newest last."
    )
    experiment: ExperimentPlan | None = None
    bandit: BanditPlan | None = None
    gate: GatePlan = Field(default_factory=GatePlan)
    breaker: BreakerPlan = Field(default_factory=BreakerPlan)
    change: StrictStr = Field(description="What this revision changed, in one sentence.")
    changed_by: StrictStr = Field(description="'cli', or 'worker <partition>' (automatic).")
    changed_at: datetime
    signature: StrictStr = ""


class VersionStatus(Record):
    """One version on one input partition, as its worker saw it."""

    version: str
    role: Role
    learning: StrictBool
    updates: StrictNonNegativeInt
    labelled: StrictNonNegativeInt = Field(
        description="Labelled events it was scored on since it joined (its role's revision)."
    )
    loss: StrictFloat | None = Field(description="Its mean per-event loss on them.")
    champion_loss: StrictFloat | None = Field(
        description="The champion's mean per-event loss on the same events."
    )
    served: StrictNonNegativeInt = Field(description="Events it served since it joined.")
    headline: dict[str, StrictFloat] = Field(
        default_factory=dict, description="Its rolling quality: metric name -> value."
    )


class ArmStatus(Record):
    """One experiment arm's outcomes on one partition (mergeable across partitions)."""

    n: StrictNonNegativeInt
    mean: StrictFloat
    m2: StrictNonNegativeFloat


class ModelStatus(Message):
    """A message on the `control` topic, keyed `status:<model>:<partition>`."""

    kind: Literal["status"] = "status"
    model: Identifier
    partition: StrictNonNegativeInt
    revision: StrictNonNegativeInt = Field(description="The plan revision applied.")
    offset: StrictNonNegativeInt = Field(description="Next input offset of the partition.")
    versions: list[VersionStatus]
    experiment_id: str | None = None
    arms: dict[str, ArmStatus] = Field(default_factory=dict)
    bandit_shares: dict[str, StrictFloat] = Field(default_factory=dict)
    bandit_reward: StrictFloat | None = None
    bandit_decisions: StrictNonNegativeInt = 0
    breaker_trips: StrictNonNegativeInt = 0
    rollbacks: StrictNonNegativeInt = 0
    unbuildable: dict[str, str] = Field(
        default_factory=dict,
        description="Versions of the plan this partition's code cannot build, with why.",
    )
    serving: str | None = Field(
        default=None,
        description="The version serving as champion (another than the plan's while the "
        "plan's champion is unbuildable).",
    )
    at: datetime
    signature: StrictStr = ""


class PartitionOwner(Message):
    """A message on the `control` topic, keyed `owner:<topic>:<partition>`: the worker
    holding the partition's replicas and the URL of its /v1 API. Of two claims, the one
    of the newer consumer group generation wins (then the later one)."""

    kind: Literal["owner"] = "owner"
    topic: Identifier
    partition: StrictNonNegativeInt
    url: StrictStr = Field(description="The owner's RIVERRUN_API_ADVERTISED_URL.")
    generation: StrictInt = Field(description="Consumer group generation of the assignment.")
    worker: StrictStr = Field(description="The owner's client id (for people reading logs).")
    at: datetime
    signature: StrictStr = ""


ControlMessage = ModelPlan | ModelStatus | PartitionOwner


class ComparisonResult(Record):
    """One arm against the control arm."""

    arm: str
    control: str
    effect: StrictFloat = Field(description="The arm's mean outcome minus the control's.")
    ci_low: StrictFloat
    ci_high: StrictFloat
    p_value: Annotated[StrictFloat, Field(ge=0, le=1)]
    decision: Literal["better", "worse", "no_difference"]


class ExperimentResult(Message):
    """A message on the `experiments` topic, keyed by experiment id: published once,
    when every arm has its planned labelled outcomes (or, sequential, when it stopped)."""

    experiment_id: Identifier
    model: Identifier
    metric: Literal["ctr", "logloss", "mae"]
    sequential: StrictBool
    alpha: StrictFloat
    power: StrictFloat
    mde: StrictFloat
    sample_size: StrictPositiveInt
    counts: dict[str, StrictNonNegativeInt]
    means: dict[str, StrictFloat]
    comparisons: list[ComparisonResult]
    decision: str = Field(description="The winning arm, or 'keep_control'.")
    at: datetime
