"""What every contender shares: its command line, the model, the per-event step, the JSON.

Every contender runs as
`python -m bench.contenders.<name> --bootstrap HOST:PORT --input T --output T --group G --events N`,
processes exactly the first N messages of the input topic, produces N outputs, flushes,
prints `processed N events in S s` (first message consumed to last output flushed) and
exits 0.

Per message: decode the JSON event, predict the click probability, learn from the label,
produce `{"event_id", "prediction"}` as JSON keyed by the event id. That is less than
riverrun does per event (no validation, no dead letters, no metrics): the comparison
favours the contenders.
"""

import argparse
import json
import sys
from typing import IO, Any

from riverrun.builtin import app as builtin

MODELS = builtin.models


def arguments(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--bootstrap", required=True, help="host:port of a Kafka broker")
    parser.add_argument("--input", required=True, help="topic to read events from")
    parser.add_argument("--output", required=True, help="topic to write predictions to")
    parser.add_argument("--group", required=True, help="consumer group / application id")
    parser.add_argument("--events", type=int, required=True, help="stop after N events")
    return parser.parse_args()


def model() -> Any:
    """The same River model the riverrun worker serves for these events."""
    return MODELS["logreg"].create()


def step(river_model: Any, event: dict[str, Any]) -> dict[str, Any]:
    """Predict, then learn from the label if there is one; the output for the event."""
    x = event["features"]
    p = river_model.predict_proba_one(x).get(True, 0.0)
    if event.get("label") is not None:
        river_model.learn_one(x, bool(event["label"]))
    return {"event_id": event["event_id"], "prediction": p}


def decode(value: bytes) -> Any:
    return json.loads(value)


def encode(output: dict[str, Any]) -> bytes:
    return json.dumps(output).encode()


def done(n: int, seconds: float, file: IO[str] | None = None) -> None:
    print(f"processed {n} events in {seconds:.3f} s", file=file or sys.stdout, flush=True)
