"""(f) Quix Streams 3.28 + River: a StreamingDataFrame with one `apply` step, Quix's
default JSON (de)serializers, `app.run(count=N)`.

`run(count=N, collect=False)` stops after N outputs (checked after every message, so
exactly N), commits and flushes the producer before it returns.

One step a plain app would not have: `to_topic` gives each output the timestamp of its
input message, so the outputs' Kafka timestamps would time the producer that filled the
input topic, not this app. `set_timestamp` stamps outputs with the processing time, as
every other contender's producer does.
"""

import shutil
import tempfile
import time
from typing import Any

from quixstreams import Application

from bench.contenders.common import arguments, done, model, step

args = arguments(__doc__ or "")
river_model = model()
state_dir = tempfile.mkdtemp(prefix="quix-bench-")  # Quix's default is ./state
app = Application(
    broker_address=args.bootstrap,
    consumer_group=args.group,
    auto_offset_reset="earliest",
    state_dir=state_dir,
)
source = app.topic(args.input)  # value_deserializer="json" (the default)
sink = app.topic(args.output)  # value_serializer="json" (the default)
started: list[float] = []


def predict(event: dict[str, Any]) -> dict[str, Any]:
    if not started:
        started.append(time.perf_counter())
    return step(river_model, event)


sdf = app.dataframe(source)
sdf = sdf.apply(predict)
sdf = sdf.set_timestamp(lambda value, key, timestamp, headers: time.time_ns() // 1_000_000)
sdf.to_topic(sink)

if __name__ == "__main__":
    try:
        app.run(count=args.events, collect=False)
        done(args.events, time.perf_counter() - (started or [time.perf_counter()])[0])
    finally:
        shutil.rmtree(state_dir, ignore_errors=True)
