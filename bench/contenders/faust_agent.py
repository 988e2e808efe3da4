"""(c) A naive per-event Faust agent, as the Faust documentation shows one."""

import tempfile

import faust

from bench.contenders.common import arguments, model

args = arguments(__doc__ or "")
app = faust.App(
    args.group,
    broker=f"kafka://{args.bootstrap}",
    datadir=tempfile.mkdtemp(prefix="faust-bench-"),
    web_enabled=False,
    consumer_auto_offset_reset="earliest",
)
source = app.topic(args.input)
sink = app.topic(args.output)
river_model = model()


@app.agent(source)
async def predict(stream):  # type: ignore[no-untyped-def]
    async for key, event in stream.items():
        x = event["features"]
        p = river_model.predict_proba_one(x).get(True, 0.0)
        if event.get("label") is not None:
            river_model.learn_one(x, bool(event["label"]))
        await sink.send(key=key, value={"event_id": event["event_id"], "prediction": p})


if __name__ == "__main__":
    faust.Worker(app, loglevel="warn").execute_from_commandline()
