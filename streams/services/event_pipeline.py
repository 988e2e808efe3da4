"""The worker's per-batch path from message values to outputs, without any Kafka I/O.

The worker's batched events service and the benchmark both run exactly this code.
"""

import time
from collections.abc import Sequence

from online_models import Learner, Rejection
from schemas import AnyPrediction, InputEvent
from schemas.codec import InvalidMessage, decode


class EventPipeline:
    """Decode, validate, predict-then-learn: one output per message value, in order."""

    def __init__(self, learner: Learner, max_event_bytes: int) -> None:
        self.learner = learner
        self.max_event_bytes = max_event_bytes

    def run(
        self,
        values: Sequence[bytes | None],
        received_at: float | None = None,
        offsets: Sequence[int] | None = None,
    ) -> list[AnyPrediction | Rejection]:
        """Outputs for `values` (raw Kafka message values), position for position.

        `offsets` (the messages' offsets) let restored models skip learning again what
        their checkpoint holds."""
        if received_at is None:
            received_at = time.perf_counter()
        outputs: list[AnyPrediction | Rejection | None] = [None] * len(values)
        events: list[InputEvent] = []
        positions: list[int] = []
        for i, value in enumerate(values):
            try:
                events.append(decode(InputEvent, value, max_bytes=self.max_event_bytes))
                positions.append(i)
            except InvalidMessage as err:
                outputs[i] = Rejection(err.error_type, err.reason)
        event_offsets = [offsets[i] for i in positions] if offsets is not None else None
        processed = self.learner.process(events, received_at, event_offsets)
        for i, output in zip(positions, processed, strict=True):
            outputs[i] = output
        return outputs  # type: ignore[return-value]  # every position is filled above
