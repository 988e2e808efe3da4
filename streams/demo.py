"""`riverrun demo`: broker, topics, worker, replay, wait, summary, clean-up."""

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from kafka import KafkaConsumer, TopicPartition

from online_models.datasets import DATASETS
from online_models.quality import summarize
from online_models.registry import MODELS
from schemas import DeadLetter, Prediction
from schemas.codec import decode
from streams.replay import dataset_events, encode, produce
from streams.settings import Settings
from streams.topics import ensure_topics

Echo = Callable[[str], None]


def bad_messages(id_prefix: str, model: str, max_bytes: int) -> list[tuple[str, bytes]]:
    """One message of each kind the worker must dead-letter, with the error type expected."""

    def event(name: str, **fields: object) -> bytes:
        base = {"event_id": f"{id_prefix}bad-{name}", "ts": 0, "model": model, "key": "k"}
        return json.dumps({**base, **fields}).encode()

    return [
        ("invalid_json", b"this is not json"),
        ("invalid_event", event("nan", features={"x": float("nan")})),  # json.dumps writes NaN
        ("invalid_event", event("no-features")),
        ("invalid_event", event("types", features={"x": "1"}, label="yes")),
        ("unknown_model", event("model", model="no-such-model", features={})),
        ("oversized", event("big", features={"pad": "x" * max_bytes})),
    ]


class Collector:
    """Reads predictions and dead letters written after it was created."""

    def __init__(self, settings: Settings) -> None:
        self.consumer = KafkaConsumer(
            bootstrap_servers=settings.bootstrap_servers, enable_auto_commit=False
        )
        self.topics = (settings.predictions_topic, settings.dead_letters_topic)
        partitions = [
            TopicPartition(topic, p)
            for topic in self.topics
            for p in sorted(self.consumer.partitions_for_topic(topic) or {0})
        ]
        self.consumer.assign(partitions)
        for tp, offset in self.consumer.end_offsets(partitions).items():
            self.consumer.seek(tp, offset)
        self.predictions: dict[str, Prediction] = {}
        self.dead_letters: list[DeadLetter] = []
        self.timestamps: list[int] = []
        self.started_ms = time.time() * 1000

    def poll(self, id_prefix: str) -> None:
        for tp, messages in self.consumer.poll(timeout_ms=500).items():
            for message in messages:
                if tp.topic == self.topics[0]:
                    prediction = decode(Prediction, message.value, max_bytes=1 << 20)
                    if prediction.event_id.startswith(id_prefix):
                        self.predictions[prediction.event_id] = prediction
                        self.timestamps.append(message.timestamp)
                else:
                    letter = decode(DeadLetter, message.value, max_bytes=1 << 24)
                    if letter.ts.timestamp() * 1000 >= self.started_ms:
                        self.dead_letters.append(letter)

    def close(self) -> None:
        self.consumer.close()


def start_worker(log_path: Path) -> subprocess.Popen[bytes]:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "worker"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=os.environ.copy(),
            start_new_session=True,
        )


def stop_worker(process: subprocess.Popen[bytes], timeout: float = 30.0) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def run_demo(
    settings: Settings, *, dataset: str, limit: int | None, timeout: float, echo: Echo
) -> bool:
    """Run everything once; True when every event has a prediction or a dead letter."""
    from streams.cli import local_kafka

    kafka = local_kafka(settings) if settings.uses_local_broker else None
    started_kafka = False
    if kafka is not None:
        running, _ = kafka.status()
        if not running:
            echo(kafka.up())
            started_kafka = True
    else:
        echo(f"using the cluster at {settings.broker}")
    worker = None
    try:
        ensure_topics(settings)
        info = DATASETS[dataset]
        run_id = time.strftime("%Y%m%d%H%M%S")
        id_prefix = f"demo-{run_id}-"
        collector = Collector(settings)
        log_path = settings.kafka_cache_dir.parent / "demo" / "worker.log"
        echo(f"starting a worker (log: {log_path})")
        worker = start_worker(log_path)
        events = list(
            dataset_events(
                dataset,
                limit=limit or info.size or 10_000,
                model=None,
                seed=42,
                id_prefix=id_prefix,
            )
        )
        messages = [encode(e) for e in events]
        bad = bad_messages(id_prefix, info.model, settings.max_event_bytes)
        middle = len(messages) // 2
        messages[middle:middle] = [(b"bad", value) for _, value in bad]
        echo(f"replaying {len(events)} {dataset} events and {len(bad)} bad messages")
        produce(settings.bootstrap_servers, settings.events_topic, messages, progress=False)
        expected = len(messages)
        last_progress, seen = time.monotonic(), 0
        while len(collector.predictions) + len(collector.dead_letters) < expected:
            collector.poll(id_prefix)
            now_seen = len(collector.predictions) + len(collector.dead_letters)
            if now_seen != seen:
                seen, last_progress = now_seen, time.monotonic()
            if worker.poll() is not None:
                echo(f"the worker exited with code {worker.returncode}; see {log_path}")
                break
            if time.monotonic() - last_progress > timeout:
                echo(f"no new output for {timeout:.0f} s; see {log_path}")
                break
        collector.close()
        return report(collector, expected, len(bad), MODELS[info.model].task == "binary", echo)
    finally:
        if worker is not None:
            stop_worker(worker)
        if started_kafka and kafka is not None:
            echo(kafka.down())


def report(collector: Collector, expected: int, bad: int, binary: bool, echo: Echo) -> bool:
    """Print the run's summary; True when every event came out exactly once."""
    predictions = list(collector.predictions.values())
    letters = Counter(letter.error_type.value for letter in collector.dead_letters)
    n_letters = sum(letters.values())
    quality = summarize(predictions, binary=binary)
    labelled = int(quality.pop("labelled"))
    span = (max(collector.timestamps) - min(collector.timestamps)) / 1000 if predictions else 0
    ok = len(predictions) + n_letters == expected and n_letters == bad
    by_reason = ", ".join(f"{k}={v}" for k, v in sorted(letters.items()))
    lines = [
        "",
        "riverrun demo summary",
        f"  events in          {expected}",
        f"  predictions out    {len(predictions)}  ({labelled} labelled, learnt from)",
        f"  dead letters       {n_letters}  {by_reason}",
        *(f"  {name:<18} {value:.4f}" for name, value in quality.items()),
    ]
    if span > 0:
        lines.append(
            f"  events/s           {len(predictions) / span:,.0f}  (first to last prediction)"
        )
    verdict = "OK: events in = predictions out + dead letters" if ok else "MISSING OUTPUT"
    lines.append(f"  result             {verdict}")
    for line in lines:
        echo(line)
    return ok
