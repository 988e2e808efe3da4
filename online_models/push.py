"""Push sinks without I/O: which predictions a sink takes, what it sends, when it retries.

A push sink (`streams.services.push`) delivers predictions to an HTTP endpoint in batches,
at least once. An endpoint sees a prediction again only after a failure or a crash, and
then with the same idempotency key, so it can drop the repeat:

>>> prediction = {"event_id": "e1", "model": "propensity_shoes", "prediction": 0.42}
>>> takes(prediction, models=("propensity_shoes",), min_score=0.3)
True
>>> idempotency_key(prediction)
'propensity_shoes:e1'
>>> [round(backoff(n, base=0.2, cap=30.0, jitter=1.0), 2) for n in (1, 2, 3, 9)]
[0.2, 0.4, 0.8, 30.0]
"""

import hashlib
import json
from collections.abc import Collection, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit


def score(prediction: Mapping[str, Any]) -> float | None:
    """The value `min_score` compares: the prediction of a binary model (the probability
    of true) or a regressor, the top probability of a multiclass one; None when there is
    none (a multiclass model that knows no class yet)."""
    probabilities = prediction.get("probabilities")
    if isinstance(probabilities, dict):
        return max(probabilities.values()) if probabilities else None
    value = prediction.get("prediction")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def takes(
    prediction: Mapping[str, Any], *, models: Collection[str], min_score: float | None
) -> bool:
    """Whether a sink with these filters delivers `prediction` (no `models`: every model)."""
    if models and prediction.get("model") not in models:
        return False
    if min_score is None:
        return True
    value = score(prediction)
    return value is not None and value >= min_score


def idempotency_key(prediction: Mapping[str, Any]) -> str:
    """The same for every delivery of one event's prediction by one model (a retry, a
    re-run after a crash): `model:event_id`."""
    return f"{prediction['model']}:{prediction['event_id']}"


def batch_key(keys: Sequence[str]) -> str:
    """The `Idempotency-Key` header of a batch: the same for every attempt of it."""
    return hashlib.sha256("\n".join(keys).encode()).hexdigest()[:32]


def batch_body(sink: str, predictions: Sequence[Mapping[str, Any]]) -> bytes:
    """`{"sink": ..., "items": [{"idempotency_key": ..., "prediction": {...}}, ...]}`, each
    prediction as published on its topic."""
    items = [{"idempotency_key": idempotency_key(p), "prediction": p} for p in predictions]
    return json.dumps({"sink": sink, "items": items}, separators=(",", ":")).encode()


def retryable(status: int) -> bool:
    """Whether an answer may succeed if sent again: 408, 429 and 5xx. Other 4xx say the
    endpoint refuses these predictions; sending them again would not help."""
    return status in (408, 429) or status >= 500


def backoff(
    attempt: int,
    *,
    base: float,
    cap: float,
    jitter: float,
    retry_after: float | None = None,
) -> float:
    """Seconds to wait after failed attempt number `attempt` (1, 2, ...): `base` doubled
    per attempt, capped at `cap`, times `jitter` (a draw in [0.5, 1]: retries of many
    workers spread); at least the endpoint's Retry-After when it gave one (capped too)."""
    wait = min(cap, base * 2 ** (attempt - 1)) * jitter
    if retry_after is not None:
        wait = max(wait, min(cap, retry_after))
    return wait


def parse_retry_after(value: str | None) -> float | None:
    """A Retry-After header in seconds (its HTTP-date form is not used by APIs we push to).

    >>> parse_retry_after("3"), parse_retry_after(None), parse_retry_after("soon")
    (3.0, None, None)
    """
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def shown_url(url: str) -> str:
    """`url` as logs and dead letters show it: no user, password or query (which may hold
    credentials).

    >>> shown_url("https://user:secret@ads.example/v1/audience?key=abc")
    'https://ads.example/v1/audience'
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def failure_reason(sink: str, url: str, last: str, attempts: int, gave_up: bool) -> str:
    """The dead letter's reason for a prediction a sink could not deliver; `last` is the
    last answer (`HTTP 503`) or error (`TimeoutError`)."""
    where = f"push sink {sink!r}: {shown_url(url)} answered {last}"
    if gave_up:
        return (
            f"{where} on each of {attempts} attempts: the endpoint is down or overloaded; "
            "check it (or raise the sink's max_attempts), then re-send the prediction in "
            "this dead letter's payload"
        )
    return (
        f"{where}, which refuses this prediction: check the sink's url, token and the body "
        "the endpoint expects, then re-send the prediction in this dead letter's payload"
    )
