"""Soak: does a replica's memory or checkpoint grow with the stream?

`python -m bench.soak [--events N] [--every M]` pushes N events (default 5,000,000) of
the seeded synthetic click stream (`online_models.models.datasets.synthetic_clicks`, every
event labelled) through the learning core, exactly as the worker builds it for one
partition (`streams.services.events.BatchedEvents.new_learner`: the settings' evaluation
and drift; see bench/throughput.py, contender (a)):
`streams.services.event_pipeline.EventPipeline.run` on batches of encoded messages, reports
and drift reports drained after every batch as the worker does.
Metrics are segmented (`--segments`, default device and category: 1 + 3 + 20 segments,
each full — window and AUC cells — within the first million events; `merchant` adds 50
more and an `__other__` bucket, RIVERRUN_MAX_SEGMENTS) and drift detection is on (the
default). Events are generated batch by batch: nothing but the replica grows.

Every M events (default 1,000,000) it samples the process's resident memory (VmRSS) and
the size of each model's compressed checkpoint (`online_models.learning.checkpoint.
encode_checkpoint`, as the worker writes it), then prints a table and the least-squares
slope, in MB per million events, of both over the samples from the first million on.
A benchmark, not a test: nothing is asserted.
"""

import argparse
import gc
import itertools
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from operator import attrgetter
from pathlib import Path

from online_models import Learner
from online_models.learning.checkpoint import Replica, encode_checkpoint
from riverrun.builtin import app as builtin
from streams.cli.replay import dataset_events
from streams.services.event_pipeline import EventPipeline
from streams.settings import Settings

MODELS = builtin.models

MB = 1024 * 1024
MILLION = 1_000_000


@dataclass(frozen=True)
class Sample:
    events: int
    rss_mb: float
    checkpoint_mb: float
    seconds: float


def rss_mb() -> float:
    """This process's resident memory now (VmRSS), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status: the soak needs Linux")


def checkpoint_mb(learner: Learner, next_offset: int) -> float:
    """Total size of the messages of one checkpoint of every model of `learner`."""
    total = 0
    for name, served in learner.models.items():
        records = encode_checkpoint(
            served,
            Replica("soak", "events", 0, name),
            key=b"soak",
            next_offset=next_offset,
            sequence=0,
        )
        total += sum(len(key) + len(value) for key, value in records)
    return total / MB


def slope(samples: list[Sample], mb: Callable[[Sample], float]) -> float | None:
    """Least-squares MB per million events over the samples from the first million on."""
    points = [s for s in samples if s.events >= MILLION]
    if len(points) < 2:
        return None
    fit = statistics.linear_regression([s.events / MILLION for s in points], list(map(mb, points)))
    return fit.slope


def show(sample: Sample) -> None:
    print(
        f"{sample.events:>10,} {sample.rss_mb:>9.1f} {sample.checkpoint_mb:>14.2f} "
        f"{sample.seconds:>8.0f}",
        flush=True,
    )


def soak(events: int, every: int, model: str, segments: list[str], batch: int) -> list[Sample]:
    settings = Settings(models=[model], segment_features=segments)
    # As the worker builds a partition's replicas (BatchedEvents.new_learner).
    learner = Learner(
        settings.model_names(MODELS),
        registry=MODELS,
        params=settings.model_params,
        evaluation=settings.evaluation(),
        drift=settings.drift(),
    )
    pipeline = EventPipeline(learner, settings.max_event_bytes)
    stream = dataset_events("clicks", limit=events, model=model, seed=42)
    samples = [Sample(0, rss_mb(), checkpoint_mb(learner, 0), 0.0)]
    print(f"{'events':>10} {'RSS MB':>9} {'checkpoint MB':>14} {'seconds':>8}", flush=True)
    show(samples[0])
    started = time.perf_counter()
    done = 0
    while chunk := list(itertools.islice(stream, batch)):
        values = [event.model_dump_json().encode() for event in chunk]
        pipeline.run(values, offsets=range(done, done + len(values)))
        learner.drain_reports()  # the worker publishes them after every batch
        learner.drain_drift()
        done += len(values)
        if done % every == 0 or done == events:
            gc.collect()
            sample = Sample(
                done, rss_mb(), checkpoint_mb(learner, done), time.perf_counter() - started
            )
            samples.append(sample)
            show(sample)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=5 * MILLION, help="events to process")
    parser.add_argument("--every", type=int, default=MILLION, help="events between samples")
    parser.add_argument("--model", default="ctr", help="the served model (a registered name)")
    parser.add_argument(
        "--segments", default="device,category", help="segment features, comma-separated"
    )
    parser.add_argument("--batch", type=int, default=1000, help="messages per pipeline run")
    args = parser.parse_args()
    if args.every % args.batch:
        parser.error("--every must be a multiple of --batch")
    segments = [name for name in args.segments.split(",") if name]
    samples = soak(args.events, args.every, args.model, segments, args.batch)
    for label, mb in (("RSS", attrgetter("rss_mb")), ("checkpoint", attrgetter("checkpoint_mb"))):
        fitted = slope(samples, mb)
        text = (
            "n/a (needs two samples from the first million on)"
            if fitted is None
            else (f"{fitted:+.2f} MB per million events")
        )
        print(f"slope {label:<10} {text}")


if __name__ == "__main__":
    main()
