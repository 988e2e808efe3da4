"""Soak: does a replica's memory or checkpoint grow with the stream?

`python -m bench.soak [--events N] [--every M] [--only core|worker]` (`make soak`) runs N
events (default 5,000,000) of the seeded synthetic click stream
(`online_models.models.datasets.synthetic_clicks`, seed 42, every event labelled, model
`ctr`) twice, one run after the other (`--only` picks one):

core    through the learning core in process, exactly as the worker builds it for one
        partition (`streams.services.events.BatchedEvents.new_learner`: the settings'
        evaluation and drift; see bench/throughput.py, contender (a)):
        `streams.services.event_pipeline.EventPipeline.run` on batches of encoded
        messages, reports and drift reports drained after every batch as the worker does.
        Events are generated batch by batch: nothing but the replica grows.
worker  through a `riverrun worker` process on the local Kafka broker (started for the
        soak when it does not run: RIVERRUN_KAFKA_PORT, RIVERRUN_KAFKA_CACHE_DIR; or
        RIVERRUN_BROKER), with the same settings. The built-in model is global: the
        worker's events service predicts with its snapshots and scores them, writes each
        labelled event to the learn topic, and the learner service in the same process
        learns them, with its own evaluation and drift. The stream is produced from a
        generator while the worker consumes, at most `--ahead` events ahead of what it
        consumed (`riverrun_events_consumed_total` on its /metrics): the soak holds no
        more than the producer's buffer, and the broker's log grows with the worker.

Metrics are segmented (`--segments`, default device and category: 1 + 3 + 20 segments,
each full — window and AUC cells — within the first million events; `merchant` adds 50
more and an `__other__` bucket, RIVERRUN_MAX_SEGMENTS) and drift detection is on (the
default), in both runs and both of the worker's services.

Every M events (default 1,000,000) each run samples resident memory (VmRSS: the soak's
own after a `gc.collect()` for the core, the worker process's for the worker) and
checkpoint size. The core's is its checkpoint's messages
(`online_models.learning.checkpoint.encode_checkpoint`, as the worker writes them); the
worker's is the compressed state (the chunk header's `payload_bytes`) of each replica's
newest checkpoint on the worker's checkpoints topic, the events service's and the
learner's apart (the worker's `riverrun_checkpoint_bytes` cannot tell them apart: both
services set it under the same model and partition number). The worker's last sample
waits for the learner to have learnt every event. Each run then prints a table and the
least-squares slope, in MB per million events, over the samples from `--settled` events
on (default the first million; the learner's checkpoint against the examples it had
learnt by then).
A benchmark, not a test: nothing is asserted.
"""

import argparse
import gc
import itertools
import statistics
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from kafka import KafkaConsumer, TopicPartition

from bench.throughput import LOG_DIR, WORKER, create_topic, local_broker, start, stop, worker_env
from online_models import Learner
from online_models.learning.checkpoint import (
    CheckpointRefused,
    Replica,
    encode_checkpoint,
    parse_chunk,
)
from riverrun.builtin import app as builtin
from streams.cli.replay import dataset_events, encode, produce
from streams.services.event_pipeline import EventPipeline
from streams.settings import Settings

MODELS = builtin.models

MB = 1024 * 1024
MILLION = 1_000_000
#: The worker run gives up when neither its events nor its learner moved for this long.
STALL_SECONDS = 180.0


@dataclass(frozen=True)
class Sample:
    events: int
    rss_mb: float
    checkpoint_mb: float
    seconds: float


@dataclass(frozen=True)
class WorkerSample:
    events: int  # consumed by the worker's events service
    learnt: int  # examples its learner had learnt
    rss_mb: float
    events_checkpoint_mb: float  # the events service's replicas
    learner_checkpoint_mb: float  # the learner's
    seconds: float


def rss_mb(pid: int | None = None) -> float:
    """A process's resident memory now (VmRSS), in MB: this one's unless `pid` is given."""
    status = Path("/proc", "self" if pid is None else str(pid), "status")
    for line in status.read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS in {status}: the soak needs Linux")


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


#: What a run fits a slope to: (events, MB) points by label.
Fits = dict[str, list[tuple[int, float]]]


def core_fits(samples: list[Sample], settled: int) -> Fits:
    """The samples from `settled` events on."""
    kept = [s for s in samples if s.events >= settled]
    return {
        "RSS": [(s.events, s.rss_mb) for s in kept],
        "checkpoint": [(s.events, s.checkpoint_mb) for s in kept],
    }


def worker_fits(samples: list[WorkerSample], settled: int) -> Fits:
    """The samples from `settled` consumed events on; the learner's checkpoint against the
    examples it had learnt (it follows the events service by tens of thousands)."""
    kept = [s for s in samples if s.events >= settled]
    return {
        "worker RSS": [(s.events, s.rss_mb) for s in kept],
        "events checkpoint": [(s.events, s.events_checkpoint_mb) for s in kept],
        "learner checkpoint": [(s.learnt, s.learner_checkpoint_mb) for s in kept],
    }


def slope(points: list[tuple[int, float]]) -> float | None:
    """Least-squares MB per million events through (events, MB) points."""
    if len(points) < 2:
        return None
    xs, ys = zip(*((events / MILLION, mb) for events, mb in points), strict=True)
    return statistics.linear_regression(xs, ys).slope


def show_slopes(fits: Fits, settled: int) -> None:
    for label, points in fits.items():
        fitted = slope(points)
        text = (
            f"n/a (needs two samples from {settled:,} events on)"
            if fitted is None
            else f"{fitted:+.2f} MB per million events"
        )
        print(f"slope {label:<18} {text}", flush=True)


def show(sample: Sample) -> None:
    print(
        f"{sample.events:>10,} {sample.rss_mb:>9.1f} {sample.checkpoint_mb:>14.2f} "
        f"{sample.seconds:>8.0f}",
        flush=True,
    )


def soak(events: int, every: int, model: str, segments: list[str], batch: int) -> list[Sample]:
    """The core run (see the module's docstring)."""
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


class NewestCheckpoints:
    """The newest checkpoint of each replica on a checkpoints topic, read from the topic's
    tail at each call: the newest are last, and until the broker compacts the older ones
    (segments roll every ten minutes) reading the whole topic would grow with the run."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.topic = topic
        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)

    def payload_mb(self, inputs: Iterable[str]) -> dict[str, float]:
        """MB of compressed state in the newest checkpoints, summed over the replicas of
        each input topic of `inputs` (0 for one with no checkpoint yet)."""
        wanted = set(inputs)
        newest: dict[tuple[str, int, str], tuple[int, int]] = {}  # replica: sequence, bytes
        for tp in [TopicPartition(self.topic, p) for p in self._partitions()]:
            first = self.consumer.beginning_offsets([tp])[tp]
            end = self.consumer.end_offsets([tp])[tp]
            window = 64  # messages: a few checkpoints' chunks
            while True:
                self._read(tp, max(first, end - window), end, newest)
                if wanted <= {topic for topic, _, _ in newest} or end - window <= first:
                    break
                window *= 4
        sizes = dict.fromkeys(wanted, 0.0)
        for (topic, _, _), (_, size) in newest.items():
            if topic in sizes:
                sizes[topic] += size / MB
        return sizes

    def _partitions(self) -> list[int]:
        # (the worker creates the topic at start; the broker creates none on request)
        if self.topic not in self.consumer.topics():
            return []
        return sorted(self.consumer.partitions_for_topic(self.topic) or ())

    def _read(
        self,
        tp: TopicPartition,
        start: int,
        end: int,
        newest: dict[tuple[str, int, str], tuple[int, int]],
    ) -> None:
        self.consumer.assign([tp])
        self.consumer.seek(tp, start)
        while self.consumer.position(tp) < end:
            for message in self.consumer.poll(timeout_ms=500).get(tp, []):
                try:
                    header, _ = parse_chunk(message.value)
                except CheckpointRefused:  # a deletion marker
                    continue
                replica = (header.topic, header.partition, header.model)
                if header.sequence >= newest.get(replica, (-1, 0))[0]:
                    newest[replica] = (header.sequence, header.payload_bytes)

    def close(self) -> None:
        self.consumer.close()


@dataclass
class Progress:
    """How far the worker is, as its /metrics said last; `stopped` ends the production."""

    consumed: int = 0
    learnt: int = 0
    stopped: bool = False


def paced(
    messages: Iterable[tuple[bytes, bytes]], progress: Progress, ahead: int
) -> Iterator[tuple[bytes, bytes]]:
    """`messages`, each once the worker has consumed all but `ahead` of those before it."""
    for sent, message in enumerate(messages):
        while sent - progress.consumed >= ahead and not progress.stopped:
            time.sleep(0.05)
        if progress.stopped:
            return
        yield message


def scrape(url: str) -> dict[str, float]:
    """Every sample of a Prometheus text exposition, by name and labels."""
    text = urllib.request.urlopen(url, timeout=5).read().decode()
    lines = (line.rsplit(" ", 1) for line in text.splitlines() if line[:1] not in ("", "#"))
    return {name: float(value) for name, value in lines}


def show_worker(sample: WorkerSample) -> None:
    print(
        f"{sample.events:>10,} {sample.learnt:>10,} {sample.rss_mb:>9.1f} "
        f"{sample.events_checkpoint_mb:>16.2f} {sample.learner_checkpoint_mb:>17.2f} "
        f"{sample.seconds:>8.0f}",
        flush=True,
    )


class SoakStopped(Exception):
    """The worker exited or stopped moving before the stream's end."""


@dataclass(frozen=True)
class Followed:
    """What the worker run watches: the worker, the production, and where they are."""

    process: subprocess.Popen[bytes]
    production: Future[int]
    progress: Progress
    checkpoints: NewestCheckpoints


def follow(
    followed: Followed, metrics_url: str, names: tuple[str, str, str], points: list[int]
) -> list[WorkerSample]:
    """Sample the worker each time its events service has consumed the next of `points`
    events (`names`: the events topic, the learn topic, the model); the last point once its
    learner has learnt them all too."""
    topic, learn_topic, model = names
    progress = followed.progress
    consumed_key = f'riverrun_events_consumed_total{{topic="{topic}"}}'
    learnt_key = f'riverrun_events_learned_total{{model="{model}"}}'
    total = points[-1]
    header = (
        f"{'events':>10} {'learnt':>10} {'RSS MB':>9} {'events ckpt MB':>16} "
        f"{'learner ckpt MB':>17} {'seconds':>8}"
    )
    print(header, flush=True)
    samples: list[WorkerSample] = []
    started = moved = time.perf_counter()
    while points:
        if followed.process.poll() is not None:
            raise SoakStopped("the worker exited before the stream's end")
        if followed.production.done():
            followed.production.result()  # (raises what stopped it)
        try:
            found = scrape(metrics_url)
        except OSError:  # not serving yet
            time.sleep(0.5)
            continue
        now = time.perf_counter()
        seen = int(found.get(consumed_key, 0)), int(found.get(learnt_key, 0))
        if seen != (progress.consumed, progress.learnt):
            moved = now
        elif now - moved > STALL_SECONDS:
            raise SoakStopped(
                f"the worker made no progress for {STALL_SECONDS:.0f} s at {seen[0]:,} "
                f"events, {seen[1]:,} learnt"
            )
        progress.consumed, progress.learnt = seen
        due = False
        while points and seen[0] >= points[0] and (points[0] < total or seen[1] >= total):
            points.pop(0)
            due = True
        if due:
            sizes = followed.checkpoints.payload_mb([topic, learn_topic])
            rss = rss_mb(followed.process.pid)
            sample = WorkerSample(
                seen[0], seen[1], rss, sizes[topic], sizes[learn_topic], now - started
            )
            samples.append(sample)
            show_worker(sample)
        else:
            time.sleep(0.5)
    return samples


def soak_worker(
    events: int, every: int, model: str, segments: list[str], ahead: int
) -> list[WorkerSample]:
    """The worker run (see the module's docstring)."""
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    with local_broker(Settings()) as bootstrap:
        run = f"soak-{uuid.uuid4().hex[:8]}"
        topic = create_topic(bootstrap, f"{run}-events")
        env = worker_env(bootstrap, topic, run, models=[model], segment_features=segments)
        log = LOG_DIR / f"worker-{run}.log"
        print(f"worker: broker {bootstrap}, events topic {topic}, log {log}", flush=True)
        process = start(WORKER, env, log)
        progress = Progress()
        checkpoints = NewestCheckpoints(bootstrap, env["RIVERRUN_CHECKPOINTS_TOPIC"])
        messages = (encode(e) for e in dataset_events("clicks", limit=events, model=model, seed=42))
        try:
            with ThreadPoolExecutor(1) as pool:
                production = pool.submit(
                    produce,
                    Settings(broker=bootstrap),
                    topic,
                    paced(messages, progress, ahead),
                    progress=False,
                )
                try:
                    return follow(
                        Followed(process, production, progress, checkpoints),
                        f"http://127.0.0.1:{env['RIVERRUN_METRICS_PORT']}/metrics",
                        (topic, env["RIVERRUN_LEARN_TOPIC"], model),
                        [*range(0, events, every), events],
                    )
                finally:
                    progress.stopped = True
        except SoakStopped as err:
            raise SystemExit(f"{err}; see {log}") from None
        finally:
            checkpoints.close()
            stop(process)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=5 * MILLION, help="events to process")
    parser.add_argument("--every", type=int, default=MILLION, help="events between samples")
    parser.add_argument(
        "--settled",
        type=int,
        default=MILLION,
        help="fit the slopes over the samples from this many events on",
    )
    parser.add_argument("--only", choices=("core", "worker"), help="run only this one")
    parser.add_argument("--model", default="ctr", help="the served model (a registered name)")
    parser.add_argument(
        "--segments", default="device,category", help="segment features, comma-separated"
    )
    parser.add_argument("--batch", type=int, default=1000, help="core: messages per pipeline run")
    parser.add_argument(
        "--ahead",
        type=int,
        default=50_000,
        help="worker: events produced at most ahead of what it consumed",
    )
    args = parser.parse_args()
    if args.every % args.batch:
        parser.error("--every must be a multiple of --batch")
    segments = [name for name in args.segments.split(",") if name]
    runs: dict[str, Callable[[], Fits]] = {
        "core": lambda: core_fits(
            soak(args.events, args.every, args.model, segments, args.batch), args.settled
        ),
        "worker": lambda: worker_fits(
            soak_worker(args.events, args.every, args.model, segments, args.ahead), args.settled
        ),
    }
    for name in [args.only] if args.only else list(runs):
        print(f"{name}: {args.events:,} events, model {args.model}, segments {segments}")
        show_slopes(runs[name](), args.settled)


if __name__ == "__main__":
    main()
