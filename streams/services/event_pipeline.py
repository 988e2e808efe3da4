"""The worker's per-batch path from message values to outputs, without any Kafka I/O.

The worker's batched events service and the benchmark both run exactly this code.
"""

import time
from collections.abc import Sequence

from online_models import Learner, Rejection
from schemas import AnyPrediction, InputEvent
from schemas.codec import InvalidMessage, decode
from schemas.formats.events import EventDecoder, RecordMeta


class EventPipeline:
    """Decode, validate, predict-then-learn: one output per message value, in order.

    `decoder` reads records in a team's format (`RIVERRUN_EVENTS_FORMAT`, a mapping or an
    event decoder); None: riverrun's InputEvent JSON."""

    def __init__(
        self, learner: Learner, max_event_bytes: int, decoder: EventDecoder | None = None
    ) -> None:
        self.learner = learner
        self.max_event_bytes = max_event_bytes
        self.decoder = decoder
        #: With a decoder: the events decoded so far, by offset (their InputEvent JSON is
        #: what the learn topic carries).
        self.decoded: dict[int, InputEvent] = {}

    def run(
        self,
        values: Sequence[bytes | None],
        received_at: float | None = None,
        offsets: Sequence[int] | None = None,
        metas: Sequence[RecordMeta] | None = None,
    ) -> list[AnyPrediction | Rejection]:
        """Outputs for `values` (raw Kafka message values), position for position.

        `offsets` (the messages' offsets) let restored models skip learning again what
        their checkpoint holds. `metas` (each message's topic, partition, offset and
        timestamp) are what a mapping without `event_id` or `ts` takes them from."""
        if received_at is None:
            received_at = time.perf_counter()
        outputs: list[AnyPrediction | Rejection | None] = [None] * len(values)
        events: list[InputEvent] = []
        positions: list[int] = []
        decoder = self.decoder
        for i, value in enumerate(values):
            try:
                if decoder is None:
                    events.append(decode(InputEvent, value, max_bytes=self.max_event_bytes))
                else:
                    meta = metas[i] if metas is not None else RecordMeta("", 0, i, 0)
                    event = decoder.decode(value, meta)
                    events.append(event)
                    if offsets is not None:
                        self.decoded[offsets[i]] = event
                positions.append(i)
            except InvalidMessage as err:
                outputs[i] = Rejection(err.error_type, err.reason)
        event_offsets = [offsets[i] for i in positions] if offsets is not None else None
        processed = self.learner.process(events, received_at, event_offsets)
        for i, output in zip(positions, processed, strict=True):
            outputs[i] = output
        return outputs  # type: ignore[return-value]  # every position is filled above
