"""(e) Bytewax 0.21 + River: KafkaSource -> stateful_map (the model is the state of one
constant key) -> KafkaSink, one worker, run with `bytewax.testing.run_main`.

Bytewax's Kafka source is unbounded by default; this one is built with `tail=False`, so
it ends at the end of the topic, and is capped at the first N messages, so the dataflow
ends after N events; the sink flushes its producer after every batch and on close.
"""

import time
from typing import Any

import bytewax.operators as op
from bytewax.connectors.kafka import KafkaSink, KafkaSinkMessage, KafkaSource
from bytewax.dataflow import Dataflow
from bytewax.inputs import StatefulSourcePartition
from bytewax.testing import run_main

from bench.contenders.common import arguments, decode, done, encode, model, step


class FirstMessages(KafkaSource):
    """A `KafkaSource` that ends after its first `limit` messages (one worker)."""

    def __init__(self, limit: int, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.left = limit

    def build_part(self, step_id: str, for_part: str, resume_state: Any) -> Any:
        return _Capped(super().build_part(step_id, for_part, resume_state), self)


class _Capped(StatefulSourcePartition):  # type: ignore[type-arg]
    def __init__(self, part: Any, source: FirstMessages) -> None:
        self.part, self.source = part, source

    def next_batch(self) -> list[Any]:
        if self.source.left <= 0:
            raise StopIteration()
        batch = self.part.next_batch()[: self.source.left]
        self.source.left -= len(batch)
        return batch

    def snapshot(self) -> Any:
        return self.part.snapshot()

    def close(self) -> None:
        self.part.close()


args = arguments(__doc__ or "")
started: list[float] = []


def predict(river_model: Any, message: Any) -> tuple[Any, KafkaSinkMessage]:  # type: ignore[type-arg]
    if river_model is None:  # the first event of the (only) key
        river_model = model()
        started.append(time.perf_counter())
    output = step(river_model, decode(message.value))
    return river_model, KafkaSinkMessage(message.key, encode(output))


flow = Dataflow("riverrun-bench")
source = FirstMessages(
    args.events, [args.bootstrap], [args.input], tail=False, add_config={"group.id": args.group}
)
messages = op.input("in", flow, source)
predictions = op.stateful_map("predict", op.key_on("one-model", messages, lambda _: "all"), predict)
op.output("out", op.key_rm("unkey", predictions), KafkaSink([args.bootstrap], args.output))

if __name__ == "__main__":
    run_main(flow)
    done(args.events - source.left, time.perf_counter() - (started or [time.perf_counter()])[0])
