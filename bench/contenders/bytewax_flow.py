"""(e) Bytewax 0.21 + River: Kafka source -> map -> Kafka sink, one worker.

Runs in the bench's own environment (.cache/bench-venv): Bytewax and Quix Streams need
versions of pydantic and others that riverrun does not use.
"""

import json

import bytewax.operators as op
from bytewax.connectors.kafka import KafkaSinkMessage
from bytewax.connectors.kafka import operators as kop
from bytewax.dataflow import Dataflow
from bytewax.testing import run_main

from bench.contenders.common import arguments, model

args = arguments(__doc__ or "")
river_model = model()


def predict(message):  # type: ignore[no-untyped-def]
    event = json.loads(message.value)
    x = event["features"]
    p = river_model.predict_proba_one(x).get(True, 0.0)
    if event.get("label") is not None:
        river_model.learn_one(x, bool(event["label"]))
    out = json.dumps({"event_id": event["event_id"], "prediction": p}).encode()
    return KafkaSinkMessage(message.key, out)


flow = Dataflow("riverrun-bench")
source = kop.input(
    "in", flow, brokers=[args.bootstrap], topics=[args.input], tail=True,
    add_config={"group.id": args.group},
)  # fmt: skip
kop.output(
    "out", op.map("predict", source.oks, predict), brokers=[args.bootstrap], topic=args.output
)

if __name__ == "__main__":
    run_main(flow)
