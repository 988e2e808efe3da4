"""(f) Quix Streams 3.28 + River: a StreamingDataFrame with one apply step.

Runs in the bench's own environment (.cache/bench-venv), like Bytewax.
"""

from quixstreams import Application

from bench.contenders.common import arguments, model

args = arguments(__doc__ or "")
river_model = model()
app = Application(
    broker_address=args.bootstrap, consumer_group=args.group, auto_offset_reset="earliest"
)
source = app.topic(args.input, value_deserializer="json")
sink = app.topic(args.output, value_serializer="json")


def predict(event: dict) -> dict:  # type: ignore[type-arg]
    x = event["features"]
    p = river_model.predict_proba_one(x).get(True, 0.0)
    if event.get("label") is not None:
        river_model.learn_one(x, bool(event["label"]))
    return {"event_id": event["event_id"], "prediction": p}


sdf = app.dataframe(source).apply(predict)
sdf.to_topic(sink)

if __name__ == "__main__":
    app.run()
