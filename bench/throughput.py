"""Throughput of the learning core in process vs the riverrun worker through Kafka.

Both run on the same seeded synthetic click stream (`online_models.datasets.synthetic_clicks`,
~4% clicks, 6 mixed features) with the default `logreg` model:

(a) core   — `streams.pipeline.EventPipeline.run`, the very code the worker runs per batch
             (decode + validate + predict + learn + build the prediction) plus the JSON
             encoding of each output, over the encoded messages held in memory;
(b) worker — `riverrun worker` as a subprocess, consuming the same messages pre-filled into a
             fresh topic of the local broker and producing predictions to a fresh topic.
             Rate = predictions / (last - first prediction's Kafka timestamp), so the
             worker's start-up and group join are not counted; wall time with them is shown.

Run with `make bench` (`BENCH_ARGS=--quick` for a smaller stream).
"""

import argparse
import os
import platform
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

from kafka import KafkaConsumer, TopicPartition

from online_models import Learner
from streams.cli import local_kafka
from streams.pipeline import EventPipeline
from streams.replay import dataset_events, encode, produce
from streams.settings import Settings
from streams.topics import ensure_topics


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bench_core(values: list[bytes], batch_size: int) -> float:
    """Events/s of the worker's batch path with no Kafka around it."""
    pipeline = EventPipeline(Learner(["logreg"]), max_event_bytes=100_000)
    started = time.perf_counter()
    for i in range(0, len(values), batch_size):
        for output in pipeline.run(values[i : i + batch_size]):
            output.model_dump_json().encode()  # type: ignore[union-attr]
    return len(values) / (time.perf_counter() - started)


def bench_worker(settings: Settings, messages: list[tuple[bytes, bytes]], log: Path) -> dict:  # type: ignore[type-arg]
    """Events/s of `riverrun worker` over messages pre-filled into a fresh topic."""
    run = uuid.uuid4().hex[:8]
    env = {k: v for k, v in os.environ.items() if not k.startswith("RIVERRUN_")}
    env.update(
        RIVERRUN_BROKER=settings.bootstrap_servers,
        RIVERRUN_EVENTS_TOPIC=f"bench-{run}-events",
        RIVERRUN_PREDICTIONS_TOPIC=f"bench-{run}-predictions",
        RIVERRUN_DEAD_LETTERS_TOPIC=f"bench-{run}-dead-letters",
        RIVERRUN_ACTIVITY_TOPIC=f"bench-{run}-activity",
        RIVERRUN_GROUP_ID=f"bench-{run}",
        RIVERRUN_LOG_LEVEL="warn",
        RIVERRUN_METRICS_PORT=str(free_port()),
    )
    topic_settings = Settings(
        broker=settings.bootstrap_servers,
        events_topic=env["RIVERRUN_EVENTS_TOPIC"],
        predictions_topic=env["RIVERRUN_PREDICTIONS_TOPIC"],
        dead_letters_topic=env["RIVERRUN_DEAD_LETTERS_TOPIC"],
        activity_topic=env["RIVERRUN_ACTIVITY_TOPIC"],
    )
    ensure_topics(topic_settings)
    produce(settings.bootstrap_servers, topic_settings.events_topic, messages, progress=False)

    consumer = KafkaConsumer(bootstrap_servers=settings.bootstrap_servers)
    tp = TopicPartition(topic_settings.predictions_topic, 0)
    consumer.assign([tp])
    started = time.perf_counter()
    with log.open("wb") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "worker"], env=env, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    seen, first_ts, last_ts = 0, None, None
    try:
        while seen < len(messages):
            for batch in consumer.poll(timeout_ms=500).values():
                for message in batch:
                    first_ts = first_ts or message.timestamp
                    last_ts = message.timestamp
                seen += sum(1 for _ in batch)
            if worker.poll() is not None:
                raise RuntimeError(f"worker exited with {worker.returncode}; see {log}")
        wall = time.perf_counter() - started
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)
        consumer.close()
    assert first_ts is not None and last_ts is not None
    return {
        "events_per_s": (seen - 1) / max((last_ts - first_ts) / 1000, 1e-3),
        "wall_s": wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--quick", action="store_true", help="20,000 events")
    parser.add_argument("--batch-size", type=int, default=500)
    args = parser.parse_args()
    n = 20_000 if args.quick else args.events

    settings = Settings()
    started_kafka = False
    if settings.uses_local_broker:
        kafka = local_kafka(settings)
        if not kafka.is_running():
            print(kafka.up())
            started_kafka = True
    try:
        events = list(dataset_events("clicks", limit=n, model="logreg", seed=42))
        messages = [encode(e) for e in events]
        values = [value for _, value in messages]
        cpu = platform.processor() or platform.machine()
        print(f"{n:,} seeded click events, model logreg, {cpu}, {os.cpu_count()} cores, "
              f"Python {platform.python_version()}")  # fmt: skip
        core = bench_core(values, args.batch_size)
        print(f"(a) learning core in process     {core:>10,.0f} events/s")
        log = settings.kafka_cache_dir.parent / "bench" / "worker.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        worker = bench_worker(settings, messages, log)
        print(f"(b) riverrun worker through Kafka {worker['events_per_s']:>10,.0f} events/s"
              f"  (wall {worker['wall_s']:.1f} s with start-up)")  # fmt: skip
        print(f"ratio (b)/(a)                     {worker['events_per_s'] / core:>10.3f}")
    finally:
        if started_kafka:
            print(local_kafka(settings).down())


if __name__ == "__main__":
    main()
