"""What a push sink takes, sends and retries (online_models.push), without I/O."""

import json

import pytest

from online_models.push import (
    backoff,
    batch_body,
    batch_key,
    failure_reason,
    idempotency_key,
    retryable,
    score,
    takes,
)

BINARY = {"event_id": "e1", "model": "propensity_shoes", "prediction": 0.31}
MULTICLASS = {
    "event_id": "e2",
    "model": "segment",
    "prediction": "sky",
    "probabilities": {"sky": 0.6, "grass": 0.4},
}


@pytest.mark.parametrize(
    ("prediction", "models", "min_score", "taken"),
    [
        (BINARY, (), None, True),
        (BINARY, ("propensity_shoes",), 0.3, True),
        (BINARY, ("propensity_shoes",), 0.32, False),
        (BINARY, ("propensity_bags",), None, False),
        (MULTICLASS, (), 0.6, True),
        (MULTICLASS, (), 0.61, False),
        ({**MULTICLASS, "probabilities": {}, "prediction": None}, (), 0.0, False),
        ({**BINARY, "prediction": True}, (), 0.0, False),
    ],
)
def test_a_sink_takes_the_models_it_names_at_or_above_its_score(
    prediction: dict[str, object], models: tuple[str, ...], min_score: float | None, taken: bool
) -> None:
    assert takes(prediction, models=models, min_score=min_score) is taken


def test_the_score_of_each_task() -> None:
    assert (score(BINARY), score(MULTICLASS), score({"prediction": -3})) == (0.31, 0.6, -3.0)


def test_a_batch_carries_each_prediction_with_its_key_and_one_key_for_every_attempt() -> None:
    body = json.loads(batch_body("audience", [BINARY, MULTICLASS]))
    assert body == {
        "sink": "audience",
        "items": [
            {"idempotency_key": "propensity_shoes:e1", "prediction": BINARY},
            {"idempotency_key": "segment:e2", "prediction": MULTICLASS},
        ],
    }
    keys = [idempotency_key(BINARY), idempotency_key(MULTICLASS)]
    assert batch_key(keys) == batch_key(list(keys)) != batch_key(keys[::-1])
    assert idempotency_key({**BINARY, "prediction": 0.9, "model_version": "v2"}) == keys[0]


def test_retries_back_off_exponentially_to_the_cap_and_respect_retry_after() -> None:
    waits = [backoff(n, base=0.2, cap=5.0, jitter=1.0) for n in range(1, 8)]
    assert waits == [0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]
    assert backoff(1, base=0.2, cap=5.0, jitter=0.5) == 0.1
    assert backoff(1, base=0.2, cap=5.0, jitter=1.0, retry_after=3.0) == 3.0
    assert backoff(1, base=0.2, cap=5.0, jitter=1.0, retry_after=600.0) == 5.0


@pytest.mark.parametrize(
    ("status", "again"),
    [
        (500, True),
        (503, True),
        (429, True),
        (408, True),
        (400, False),
        (401, False),
        (404, False),
        (422, False),
    ],
)
def test_which_answers_are_worth_sending_again(status: int, again: bool) -> None:
    assert retryable(status) is again


def test_a_dead_letters_reason_says_what_to_do_and_no_credential() -> None:
    url = "https://user:pw-secret@ads.example:8443/v1/audience?api_key=k-secret"
    gave_up = failure_reason("audience", url, "HTTP 503", 8, gave_up=True)
    refused = failure_reason("audience", url, "HTTP 401", 1, gave_up=False)
    for reason in (gave_up, refused):
        assert "secret" not in reason and "https://ads.example:8443/v1/audience" in reason
        assert "re-send the prediction in this dead letter's payload" in reason
    assert "on each of 8 attempts" in gave_up and "max_attempts" in gave_up
    assert "refuses this prediction: check the sink's url, token" in refused
