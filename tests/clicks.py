"""Input events of the synthetic click stream, for tests that feed a model of their own."""

import itertools
from datetime import UTC, datetime, timedelta

from online_models.models.datasets import synthetic_clicks
from schemas import InputEvent

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def click_events(
    model: str,
    n: int,
    start: int = 0,
    *,
    seed: int,
    id_prefix: str,
    key_prefix: str,
    keys: int,
    poisoned: bool = False,
) -> list[InputEvent]:
    """Events `start` to `start + n` of `synthetic_clicks(seed)` for `model`, one a second
    from T0, ids `<id_prefix><i>`, keys cycling over `keys` visitors; `poisoned`: every
    label True (a model that learns them degrades)."""
    stream = itertools.islice(synthetic_clicks(seed=seed), start, start + n)
    return [
        InputEvent(
            event_id=f"{id_prefix}{start + i}",
            ts=T0 + timedelta(seconds=start + i),
            model=model,
            key=f"{key_prefix}{(start + i) % keys}",
            features=x,
            label=True if poisoned else y,
        )
        for i, (x, y) in enumerate(stream)
    ]
