"""(c) A naive per-event Faust agent, as the Faust documentation shows one: default
settings, Faust's default JSON value codec, `await topic.send(...)` for every event.

It stops itself after N events: it flushes the producer, then sends itself SIGTERM, the
worker's own graceful shutdown (the same path as Ctrl-C or `kill`), and exits 0. The
worker redirects `print` to its log and draws a spinner on stdout, so the final
`processed N events in S s` line is written to the real stdout at exit.
"""

import atexit
import os
import shutil
import signal
import sys
import tempfile
import time
from typing import Any

import faust

from bench.contenders.common import arguments, done, model, step

args = arguments(__doc__ or "")
datadir = tempfile.mkdtemp(prefix="faust-bench-")
atexit.register(shutil.rmtree, datadir, ignore_errors=True)
app = faust.App(
    args.group,
    broker=f"kafka://{args.bootstrap}",
    datadir=datadir,
    web_enabled=False,
    consumer_auto_offset_reset="earliest",
)
source = app.topic(args.input)  # value_type None: values are decoded by the default "json" codec
sink = app.topic(args.output)
river_model = model()
result: list[tuple[int, float]] = []


@atexit.register
def report() -> None:
    if result:
        stdout = sys.__stdout__ or sys.stdout
        stdout.write("\n")  # the spinner leaves the cursor mid-line
        done(*result[0], file=stdout)


@app.agent(source)
async def predict(stream: faust.StreamT[Any]) -> None:
    count = 0
    started = 0.0
    async for event in stream:
        if count == 0:
            started = time.perf_counter()
        output = step(river_model, event)
        await sink.send(key=event["event_id"], value=output)
        count += 1
        if count == args.events:
            await app.producer.flush()
            result.append((count, time.perf_counter() - started))
            os.kill(os.getpid(), signal.SIGTERM)  # the worker's graceful shutdown
            break


if __name__ == "__main__":
    faust.Worker(app, loglevel="warn").execute_from_commandline()
