"""The /v1 API's bodies: a request-time prediction asked for, and the answer.

`POST /v1/models/{name}/predict` takes one `PredictRequest` or a JSON list of them and
answers one `RequestPrediction` (or a list, in the same order). Features are validated
exactly as an event's are (`schemas.input_event`): a request that would be a dead letter
as an event gets the same reason, with status 400. `POST /v1/events` answers `Accepted`;
every error answer of /v1 is a `Problem`.
"""

from pydantic import Field, StrictFloat, StrictStr

from schemas.control import Role
from schemas.input_event import MAX_FEATURES, FeatureName, FeatureValue
from schemas.message import Message, Record
from schemas.types import Identifier, StrictNonNegativeInt


class PredictRequest(Message):
    """What to predict: the entity's key (it picks the partition, hence the replica,
    and the version serving it) and its features now.

    >>> PredictRequest.model_validate_json('{"key": "visitor-7", "features": {"price": 0.2}}').key
    'visitor-7'
    """

    key: Identifier = Field(description="Entity id, as the events' `key`.")
    features: dict[FeatureName, FeatureValue] = Field(max_length=MAX_FEATURES)


class RequestPrediction(Message):
    """A request-time prediction from the live replica of the key's partition; nothing
    was learnt from the request."""

    model: Identifier
    key: Identifier
    prediction: bool | StrictFloat | int | StrictStr | None = Field(
        description="Binary: the probability of true; regression: the value; multiclass: "
        "the most probable class. Null for a classifier before any class is learnt (it "
        "knows nothing yet)."
    )
    probabilities: dict[str, StrictFloat] | None = Field(
        default=None, description="Multiclass only: each class's probability, by its text."
    )
    model_version: StrictStr = Field(description="The version that answered.")
    role: Role = Field(description="Why that version serves the key: champion, canary or arm.")
    arm: StrictStr | None = Field(default=None, description="The experiment or bandit arm.")
    experiment: StrictStr | None = None
    model_updates: StrictNonNegativeInt = Field(description="Labelled events it has learnt.")
    partition: StrictNonNegativeInt = Field(description="Input partition of the key.")
    next_offset: StrictNonNegativeInt = Field(
        description="The replica has learnt every event of the partition below this offset "
        "and none from it on."
    )


class Problem(Record):
    """Every /v1 error answer: what went wrong, as a code, and what to do about it.

    >>> Problem(error="unknown_model", reason="no model named 'nope' is served here").error
    'unknown_model'
    """

    error: StrictStr = Field(
        description="What went wrong, as a code: a dead letter's `error_type` for a request "
        "the stream would refuse (`invalid_json`, `invalid_event`, `unknown_model`, "
        "`invalid_label`, ...), else `unauthorized`, `oversized`, `unavailable`, "
        "`broker_unreachable`, `unacknowledged`, `invalid_request`, `team_format`, `http` "
        "or `internal`."
    )
    reason: StrictStr = Field(description="What was wrong and what to do about it.")


class AcceptedEvent(Record):
    """Where the broker wrote one event of `POST /v1/events`."""

    event_id: Identifier
    partition: StrictNonNegativeInt = Field(description="Partition of the events topic.")
    offset: StrictNonNegativeInt = Field(
        description="Its offset there: a prediction whose `next_offset` is above it has "
        "learnt from it."
    )


class Accepted(Record):
    """The answer of `POST /v1/events` once the broker acknowledged every event, in the
    order sent.

    >>> Accepted(accepted=[AcceptedEvent(event_id="e1", partition=0, offset=41)]).model_dump()
    {'accepted': [{'event_id': 'e1', 'partition': 0, 'offset': 41}]}
    """

    accepted: list[AcceptedEvent]
