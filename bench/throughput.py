"""riverrun against every alternative a user could pick, on one seeded click stream.

One invocation (`make bench`, or `python -m bench.throughput [--quick] [--events N]`):

1. a seeded synthetic click stream (`online_models.models.datasets.synthetic_clicks`, ~4 % clicks,
   every event labelled, model `logreg`) is pre-filled once into a 1-partition topic
   (and once into a 2-partition topic for the scaling run) of the local broker;
2. each contender consumes it from the beginning with its own group and writes one
   output per event to its own topic:
   (a) core    `streams.services.event_pipeline.EventPipeline` in process — the code the
               worker runs per batch (decode, validate, predict, learn, evaluate, build the
               prediction) — plus the JSON encoding of each output, over the messages held in
               memory;
   (b) aiokafka a hand-written aiokafka consumer -> River -> producer loop;
   (c) faust   a naive per-event Faust agent (on at most --faust-events events: ~1.5k/s);
   (d) riverrun `riverrun worker` (the built-in logreg is a global model: the worker
               also runs its learner and predicts from its snapshots);
   (e) bytewax Bytewax + River;   (f) quix   Quix Streams + River
   (h) river   River alone: `predict_proba_one` + `learn_one` of the same model over
               pre-decoded feature dicts, nothing else — the floor no framework beats;
   (i) confluent (b)'s loop on confluent-kafka (librdkafka)
   (l) learner a global model's learner alone, on the labelled events in a learn topic
   (b, c, e, f, i live in bench/contenders/ and use the same River model factory);
3. rates are outputs / (last - first output's Kafka timestamp), so start-up and group
   joins are not counted (wall times with them are printed too);
4. then (d)'s event -> prediction latency at half its measured rate, its peak RSS, the
   snapshot's age and lag under load, and two workers on two partitions against one
   (one global model: one learner, both predicting from its snapshots).

Nothing here is asserted; targets are printed beside the measured ratios.
"""

import argparse
import contextlib
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from pydantic import SecretStr

from bench.contenders.common import MODELS, step
from bench.contenders.common import model as river_model
from online_models import Learner, Rejection
from schemas import encode_prediction
from streams.cli.replay import dataset_events, encode, produce
from streams.kafka.local_broker import LocalKafka
from streams.services.event_pipeline import EventPipeline
from streams.settings import Settings

PROJECT_DIR = Path(__file__).resolve().parent.parent

LOG_DIR = PROJECT_DIR / ".cache" / "bench"
#: How a bench starts a riverrun worker (then `start(WORKER, env, log)`).
WORKER = [sys.executable, "-m", "streams.cli.main", "worker"]
#: Settings of this version a worker of an older commit (`--before`) refuses.
NEW_SETTINGS = ("RIVERRUN_LEARN_TOPIC", "RIVERRUN_SNAPSHOTS_TOPIC")
#: Bytewax and Quix Streams live in their own environment (see Makefile, `make bench`).
FRAMEWORKS_PYTHON = PROJECT_DIR / ".cache" / "bench-venv" / "bin" / "python"
CONTENDERS = {  # key: (label, module, python)
    "b": ("aiokafka loop", "bench.contenders.aiokafka_loop", Path(sys.executable)),
    "c": ("naive Faust agent", "bench.contenders.faust_agent", Path(sys.executable)),
    "e": ("Bytewax + River", "bench.contenders.bytewax_flow", FRAMEWORKS_PYTHON),
    "f": ("Quix Streams + River", "bench.contenders.quix_app", FRAMEWORKS_PYTHON),
    "i": ("confluent-kafka loop", "bench.contenders.confluent_loop", FRAMEWORKS_PYTHON),
}
#: The contenders riverrun's worker is measured against: "best peer" is the best of them.
PEERS = "befi"


@dataclass
class Result:
    name: str
    events_per_s: float | None
    wall_s: float | None = None
    note: str = ""
    extra: dict[str, float] = field(default_factory=dict)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def create_topic(bootstrap: str, name: str, partitions: int = 1, output: bool = False) -> str:
    """Create a topic. An output topic is stamped by the broker on arrival (LogAppendTime):
    every contender is then timed the same way, whatever timestamp its client sets (Quix
    Streams, for one, copies the input message's timestamp onto its output)."""
    configs = {"message.timestamp.type": "LogAppendTime"} if output else {}
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="riverrun-bench")
    try:
        admin.create_topics([NewTopic(name, partitions, 1, topic_configs=configs)])
    finally:
        admin.close()
    return name


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def broker_pid() -> int | None:
    """The pid of the bench's local broker (the settings' cache directory and port), if
    it runs here: not any other Kafka on the machine."""
    settings = Settings()
    if not settings.uses_local_broker:
        return None
    return LocalKafka.for_settings(settings).running_pid()


class CPUMeter:
    """CPU seconds used by some processes between `start()` and `stop()`."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.used: dict[str, float] = {}
        self.started: dict[str, float] = {}

    def start(self) -> None:
        self.started = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        self.started_at = time.monotonic()

    def stop(self) -> None:
        if self.started:
            self.seconds = time.monotonic() - self.started_at
            self.used = {n: cpu_seconds(p) - self.started[n] for n, p in self.pids.items()}


def output_rate(
    bootstrap: str,
    topic: str,
    expected: int,
    process: subprocess.Popen[bytes],
    timeout: float,
    cpu: CPUMeter | None = None,
) -> tuple[float, int]:
    """(events/s, outputs seen), reading until `expected` outputs arrived, the process
    died, or `timeout` passed without progress.

    The rate counts outputs between the first and the last output timestamp. With several
    output partitions it counts only while every partition is being written (from the
    latest first output to the earliest last one): workers that join a group seconds
    apart would otherwise be measured partly alone.
    """
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    partitions = [
        TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or {0})
    ]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    stamps: dict[int, list[int]] = {tp.partition: [] for tp in partitions}
    seen = 0
    progress = time.monotonic()
    while seen < expected and time.monotonic() - progress < timeout:
        batches = consumer.poll(timeout_ms=500)
        for tp, batch in batches.items():
            if seen == 0 and cpu is not None:
                cpu.start()
            stamps[tp.partition] += [message.timestamp for message in batch]
            seen += len(batch)
            progress = time.monotonic()
        if not batches and process.poll() not in (None, 0):
            break
    if cpu is not None:
        cpu.stop()
    consumer.close()
    if any(len(ts) < 2 for ts in stamps.values()):
        return 0.0, seen
    start = max(min(ts) for ts in stamps.values())
    end = min(max(ts) for ts in stamps.values())
    inside = sum(1 for ts in stamps.values() for t in ts if start <= t <= end)
    return (inside - 1) / max((end - start) / 1000, 1e-3), seen


def worker_env(
    bootstrap: str, events_topic: str, run: str, output_partitions: int = 1, **chosen: Any
) -> dict[str, str]:
    """The environment of a bench worker: its own output topics (the predictions topic
    created, with `output_partitions`) and group, `chosen` settings (by field name), the
    defaults for the rest."""
    settings = Settings(
        broker=bootstrap,
        events_topic=events_topic,
        predictions_topic=f"{run}-predictions",
        dead_letters_topic=f"{run}-dead-letters",
        activity_topic=f"{run}-activity",
        metrics_topic=f"{run}-metrics",
        # Its own checkpoints and plans, as one group's deployment has: not every earlier
        # run's checkpoints to read past at start (the shared topic held 222 MB here) or
        # their plans to apply.
        checkpoints_topic=f"{run}-checkpoints",
        control_topic=f"{run}-control",
        drift_topic=f"{run}-drift",
        group_id=run,
        log_level="warn",
        metrics_port=free_port(),
        api_port=free_port(),
        data_dir=LOG_DIR / run,
        checkpoint_key=SecretStr(f"bench-{run}"),
        **{"learn_topic": f"{run}-learn", "snapshots_topic": f"{run}-snapshots", **chosen},
    )
    create_topic(bootstrap, settings.predictions_topic, partitions=output_partitions, output=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RIVERRUN_")}
    return {**env, **settings.as_environment()}


@contextlib.contextmanager
def local_broker(settings: Settings) -> Iterator[str]:
    """The bootstrap servers of the bench: the local broker, started for it when it is not
    running and stopped again after, or RIVERRUN_BROKER."""
    kafka = LocalKafka.for_settings(settings) if settings.uses_local_broker else None
    started = kafka is not None and not kafka.is_running()
    if kafka is not None and started:
        print(kafka.up())
    try:
        yield settings.bootstrap_servers
    finally:
        if kafka is not None and started:
            print(kafka.down())


def own_ports() -> dict[str, str]:
    """A worker's own /metrics and /v1 ports, for several workers on one machine."""
    return {"RIVERRUN_METRICS_PORT": str(free_port()), "RIVERRUN_API_PORT": str(free_port())}


def start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class PeakRSS:
    """Samples a process's resident memory (VmHWM: the peak) while it runs."""

    def __init__(self, pid: int) -> None:
        self.path = Path(f"/proc/{pid}/status")
        self.peak_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            try:
                for line in self.path.read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        self.peak_kb = max(self.peak_kb, int(line.split()[1]))
            except (FileNotFoundError, ProcessLookupError):
                return

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak_kb / 1024


class SnapshotProbe:
    """Scrapes workers' /metrics while they run: the oldest and furthest behind snapshot
    of the global model `model` any of them predicted with."""

    def __init__(self, ports: list[str], model: str = "logreg") -> None:
        self.urls = [f"http://127.0.0.1:{port}/metrics" for port in ports]
        self.age = f'riverrun_snapshot_age_seconds{{model="{model}"}}'
        self.lag = f'riverrun_snapshot_lag_events{{model="{model}"}}'
        self.updates = f'riverrun_snapshot_updates{{model="{model}"}}'
        self.max_age = self.max_lag = 0.0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            for url in self.urls:
                try:
                    text = urllib.request.urlopen(url, timeout=2).read().decode()
                except OSError:
                    continue
                found = dict(
                    line.rsplit(" ", 1) for line in text.splitlines() if line[:1] not in "#"
                )
                lag = float(found.get(self.lag, 0))
                if float(found.get(self.updates, 0)) and lag:  # a snapshot; the stream runs
                    self.samples += 1
                    self.max_age = max(self.max_age, float(found[self.age]))
                    self.max_lag = max(self.max_lag, lag)

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join()
        if not self.samples:
            return {}
        return {"snapshot_age_max_s": self.max_age, "snapshot_lag_max_events": self.max_lag}


def bench_learner(bootstrap: str, messages: list[tuple[bytes, bytes]]) -> Result:
    """(l): a global model's learner alone, on the stream's labelled events written to a
    learn topic (as workers write them): examples learnt per second, by its counter."""
    run = f"bench-{uuid.uuid4().hex[:8]}-learner"
    learn = create_topic(bootstrap, f"{run}-learn")
    produce(
        Settings(broker=bootstrap), learn, [(b"logreg", v) for _, v in messages], progress=False
    )
    events = create_topic(bootstrap, f"{run}-events")  # (empty: only the learner works)
    env = worker_env(bootstrap, events, run, learn_topic=learn)
    ports = own_ports()
    started = time.perf_counter()
    process = start(WORKER, {**env, **ports}, LOG_DIR / f"worker-{run}.log")
    url = f"http://127.0.0.1:{ports['RIVERRUN_METRICS_PORT']}/metrics"
    counter = 'riverrun_events_learned_total{model="logreg"}'
    first: tuple[float, float] | None = None
    last = (0.0, 0.0)
    try:
        while last[1] < len(messages) and process.poll() is None:
            if time.perf_counter() - started > 180:
                break
            time.sleep(0.1)
            try:
                text = urllib.request.urlopen(url, timeout=2).read().decode()
            except OSError:
                continue
            line = next((x for x in text.splitlines() if x.startswith(counter)), None)
            learnt = float(line.rsplit(" ", 1)[1]) if line else 0.0
            if learnt and first is None:
                first = (time.perf_counter(), learnt)
            last = (time.perf_counter(), learnt)
    finally:
        stop(process)
    wall = time.perf_counter() - started
    if first is None or last[0] <= first[0]:
        return Result("(l) global model's learner", None, wall, "it learnt nothing")
    rate = (last[1] - first[1]) / (last[0] - first[0])
    note = "" if last[1] >= len(messages) else f"only {last[1]:.0f} of {len(messages)}"
    return Result("(l) global model's learner", rate, wall, note)


def bench_core(values: list[bytes], batch_size: int) -> Result:
    settings = Settings()  # the worker's defaults: the same evaluation and drift work
    learner = Learner(
        ["logreg"], registry=MODELS, evaluation=settings.evaluation(), drift=settings.drift()
    )
    pipeline = EventPipeline(learner, max_event_bytes=settings.max_event_bytes)
    started = time.perf_counter()
    for i in range(0, len(values), batch_size):
        for output in pipeline.run(values[i : i + batch_size]):
            if not isinstance(output, Rejection):  # as the worker encodes it
                encode_prediction(output)
    wall = time.perf_counter() - started
    return Result("(a) learning core in process", len(values) / wall, wall)


def bench_river(values: list[bytes]) -> Result:
    """(h): the model's own work per event, on events decoded before the clock starts."""
    events = [json.loads(value) for value in values]
    estimator = river_model()
    started = time.perf_counter()
    for event in events:
        step(estimator, event)
    wall = time.perf_counter() - started
    return Result("(h) River alone, pre-decoded", len(values) / wall, wall)


def bench_contender(key: str, bootstrap: str, topic: str, events: int) -> Result:
    label, module, python = CONTENDERS[key]
    name = f"({key}) {label}"
    if not python.exists():
        return Result(name, None, note=f"not run: no {python} (`make bench` creates it)")
    run = f"bench-{uuid.uuid4().hex[:8]}-{key}"
    output = create_topic(bootstrap, f"{run}-out", output=True)
    command = [
        str(python),
        "-m",
        module,
        "--bootstrap",
        bootstrap,
        "--input",
        topic,
        "--output",
        output,
        "--group",
        run,
        "--events",
        str(events),
    ]
    started = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": str(PROJECT_DIR)}
    process = start(command, env, LOG_DIR / f"{key}.log")
    try:
        rate, seen = output_rate(bootstrap, output, events, process, timeout=120)
    finally:
        stop(process)
    note = "" if seen >= events else f"only {seen} of {events} outputs; see {LOG_DIR / key}.log"
    return Result(name, rate, time.perf_counter() - started, note)


def before_worker(ref: str) -> list[str]:
    """The command that runs `riverrun worker` as the project's commit `ref` has it: its
    tree exported once into the bench's cache and imported instead of this checkout
    (the same environment and dependencies), to compare a change with what it replaces
    in one run."""
    sha = subprocess.run(
        ["git", "rev-parse", "--short", ref], cwd=PROJECT_DIR, capture_output=True, text=True
    ).stdout.strip()
    if not sha:
        raise SystemExit(f"--before {ref}: no such commit in {PROJECT_DIR}")
    tree = LOG_DIR / f"before-{sha}"
    if not (tree / "streams").is_dir():
        tree.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", "archive", sha], cwd=PROJECT_DIR, capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
        # (as pyproject maps it for the wheel: the local broker's files)
        (tree / "streams" / "broker_files").symlink_to(tree / "deploy" / "kafka")
    launcher = (
        "import os, runpy, sys; "
        # (this checkout's editable install would be found first; and the app is loaded
        # with the working directory first on the import path: the old tree's)
        "sys.meta_path = [f for f in sys.meta_path if 'editable' not in repr(f)]; "
        f"os.chdir({str(tree)!r}); "
        f"sys.path.insert(0, {str(tree)!r}); sys.argv = ['riverrun', 'worker']; "
        "runpy.run_module('streams.cli.main', run_name='__main__')"
    )
    return [sys.executable, "-c", launcher]


def bench_worker(
    bootstrap: str,
    topic: str,
    events: int,
    workers: int = 1,
    command: list[str] | None = None,
    **settings: Any,
) -> Result:
    """`riverrun worker` processes (`settings`: other settings, by field name; `command`:
    another worker than this checkout's)."""
    run = f"bench-{uuid.uuid4().hex[:8]}-d{workers}"
    env = worker_env(bootstrap, topic, run, output_partitions=workers, **settings)
    if command is not None:  # another version, which may not know today's settings
        env = {k: v for k, v in env.items() if k not in NEW_SETTINGS}
    started = time.perf_counter()
    own = [own_ports() for _ in range(workers)]  # one web server and one API each
    ports = [o["RIVERRUN_METRICS_PORT"] for o in own]
    processes = [
        start(command or WORKER, {**env, **o}, LOG_DIR / f"worker-{run}-{i}.log")
        for i, o in enumerate(own)
    ]
    memory = [PeakRSS(p.pid) for p in processes]
    probe = SnapshotProbe(ports)
    pids = {f"worker {i}": p.pid for i, p in enumerate(processes)}
    broker = broker_pid()
    if broker is not None:
        pids["broker"] = broker
    pids["bench reader"] = os.getpid()  # it shares the cores too
    cpu = CPUMeter(pids)
    try:
        rate, seen = output_rate(
            bootstrap, env["RIVERRUN_PREDICTIONS_TOPIC"], events, processes[0], 120, cpu
        )
    finally:
        for process in processes:
            stop(process)
    rss = max(m.stop() for m in memory)
    snapshots = probe.stop()
    name = (
        "(d) riverrun worker"
        if workers == 1
        else f"(d) riverrun, {workers} workers, {workers} partitions"
    )
    note = "" if seen >= events else f"only {seen} of {events} outputs"
    extra = {"rss_mb": rss, **snapshots}
    if cpu.used:
        extra.update({f"cores {k}": v / cpu.seconds for k, v in cpu.used.items()})
    return Result(name, rate, time.perf_counter() - started, note, extra)


def bench_latency(bootstrap: str, rate: float, seconds: float) -> Result:
    """Event -> prediction latency of one worker fed at `rate` events/s (Kafka timestamps:
    the replay producer's create time to the prediction's arrival at the broker)."""
    run = f"bench-{uuid.uuid4().hex[:8]}-lat"
    topic = create_topic(bootstrap, f"{run}-events")
    env = worker_env(bootstrap, topic, run)
    worker = start(WORKER, env, LOG_DIR / "latency-worker.log")
    count = int(rate * seconds)
    messages = [
        encode(e)
        for e in dataset_events("clicks", limit=count, model="logreg", seed=7, id_prefix="lat-")
    ]
    try:
        time.sleep(6)  # let the worker join its group before the clock starts
        producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=2)
        started = time.perf_counter()
        sent_at: dict[bytes, Any] = {}  # kafka-python's delivery futures
        for i, (key, value) in enumerate(messages):
            sent_at[key] = producer.send(topic, key=key, value=value)
            ahead = (i + 1) / rate - (time.perf_counter() - started)
            if ahead > 0:
                time.sleep(ahead)
        producer.flush()
        input_ts = {k: f.get().timestamp for k, f in sent_at.items()}
        producer.close()
        consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        tp = TopicPartition(env["RIVERRUN_PREDICTIONS_TOPIC"], 0)
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        latencies: list[int] = []
        deadline = time.monotonic() + 60
        while len(latencies) < count and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                latencies += [m.timestamp - input_ts[m.key] for m in batch if m.key in input_ts]
        consumer.close()
    finally:
        stop(worker)
    latencies.sort()
    if not latencies:
        return Result("(d) latency", None, note="no predictions arrived")
    p50 = latencies[len(latencies) // 2]
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    return Result(
        "(d) latency", rate, note=f"{len(latencies)} events", extra={"p50_ms": p50, "p99_ms": p99}
    )


def cores_used(result: Result) -> str:
    return ", ".join(
        f"{name[6:]} {value:.2f}"
        for name, value in result.extra.items()
        if name.startswith("cores ")
    )


def fmt(rate: float | None) -> str:
    return "-" if rate is None else f"{rate:,.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--quick", action="store_true", help="20,000 events, shorter latency run")
    parser.add_argument(
        "--faust-events",
        type=int,
        default=30_000,
        help="events for the naive Faust agent (it runs at ~1.5k/s)",
    )
    parser.add_argument("--only", default="abcdefghil", help="contenders to run, e.g. 'ad'")
    parser.add_argument(
        "--before",
        metavar="COMMIT",
        help="also run (d) as this commit of the project has it, right after (d)",
    )
    args = parser.parse_args()
    n = 20_000 if args.quick else args.events
    LOG_DIR.mkdir(parents=True, exist_ok=True)

    settings = Settings()
    with local_broker(settings) as bootstrap:
        cpu = platform.processor() or platform.machine()
        print(
            f"{n:,} seeded click events, model logreg; {cpu}, {os.cpu_count()} cores, "
            f"Python {platform.python_version()}; broker {bootstrap}"
        )
        messages = [encode(e) for e in dataset_events("clicks", limit=n, model="logreg", seed=42)]
        run = f"bench-{uuid.uuid4().hex[:8]}"
        topic = create_topic(bootstrap, f"{run}-events-1p")
        produce(settings, topic, messages, progress=False)
        results: dict[str, Result] = {}
        if "h" in args.only:
            results["h"] = bench_river([v for _, v in messages])
            print(f"  {results['h'].name:<44} {fmt(results['h'].events_per_s):>8} events/s")
        if "a" in args.only:
            results["a"] = bench_core([v for _, v in messages], 1000)
            print(f"  {results['a'].name:<44} {fmt(results['a'].events_per_s):>8} events/s")
        if "l" in args.only:
            results["l"] = bench_learner(bootstrap, messages)
            r = results["l"]
            print(f"  {r.name:<44} {fmt(r.events_per_s):>8} examples/s {r.note}")
        for key in "bcdefgi":
            if key not in args.only:
                continue
            if key == "d":
                results[key] = bench_worker(bootstrap, topic, n)
                if args.before:
                    before = bench_worker(bootstrap, topic, n, command=before_worker(args.before))
                    before.name = f"(d) riverrun worker before ({args.before})"
                    results["d-before"] = before
                    rate = (
                        f"{fmt(before.events_per_s):>8} events/s  wall {before.wall_s or 0:.1f} s"
                    )
                    print(f"  {before.name:<44} {rate} {before.note}")
            elif key == "g":
                results[key] = bench_worker(
                    bootstrap, topic, n, processing_guarantee="exactly_once"
                )
                results[key].name = "(g) riverrun worker, exactly_once"
            else:
                events = min(n, args.faust_events) if key == "c" else n
                results[key] = bench_contender(key, bootstrap, topic, events)
            r = results[key]
            wall = f"wall {r.wall_s or 0:.1f} s"
            print(f"  {r.name:<44} {fmt(r.events_per_s):>8} events/s  {wall} {r.note}")
        report(results, bootstrap, topic, messages, n, args.quick)


def report(
    results: dict[str, Result],
    bootstrap: str,
    topic: str,
    messages: list[tuple[bytes, bytes]],
    n: int,
    quick: bool,
) -> None:
    d = results.get("d")
    if d is None or not d.events_per_s:
        return
    rate = d.events_per_s
    print("\nratios of (d) riverrun worker to each contender (targets in brackets):")
    best_alt = (
        max((results[k].events_per_s or 0) for k in PEERS if k in results)
        if any(k in results for k in PEERS)
        else None
    )
    for key, target in [
        ("d-before", None),  # (a change against what it replaces: no fixed target)
        ("h", 0.5),
        ("a", None),
        ("b", None),
        ("c", None),
        ("e", None),
        ("f", None),
        ("i", None),
    ]:
        other = results.get(key)
        if other is None or not other.events_per_s:
            continue
        print(
            f"  (d) / {other.name:<40} {rate / other.events_per_s:6.2f}x"
            + (f"  [>= {target}x]" if target else "")
        )
    learner, river = results.get("l"), results.get("h")
    if learner and learner.events_per_s and river and river.events_per_s:
        ratio = learner.events_per_s / river.events_per_s
        print(f"  (l) learner / (h) River alone{'':<17} {ratio:6.2f}x  [>= 0.5x]")
    g = results.get("g")
    if g is not None and g.events_per_s:
        print(f"  (g) exactly_once / (d){'':<24} {g.events_per_s / rate:6.2f}x  [>= 0.9x]")
    if best_alt:
        peers = ", ".join(f"({k})" for k in PEERS)
        print(f"  (d) / best of {peers:<32} {rate / best_alt:6.2f}x  [>= 1.0x]")
    print(
        f"  worker peak RSS                                {d.extra['rss_mb']:6.0f} MB  [<= 300 MB]"
    )
    print(f"  CPU while (d) ran, in cores (of {os.cpu_count()}): {cores_used(d)}")
    if "snapshot_age_max_s" in d.extra:
        print(
            f"  global model's snapshot under (d)'s load: oldest "
            f"{d.extra['snapshot_age_max_s']:.2f} s, furthest behind "
            f"{d.extra['snapshot_lag_max_events']:,.0f} examples"
        )

    # Two workers on a 2-partition copy of the stream against one.
    two_topic = create_topic(bootstrap, f"{topic}-2p", partitions=2)
    produce(Settings(broker=bootstrap), two_topic, messages, progress=False)
    two = bench_worker(bootstrap, two_topic, n, workers=2)
    scale = (two.events_per_s or 0) / rate
    print(f"  {two.name:<44} {fmt(two.events_per_s):>8} events/s = {scale:.2f}x one worker")
    one_cpu = sum(v for k, v in d.extra.items() if k.startswith("cores worker"))
    two_cpu = sum(v for k, v in two.extra.items() if k.startswith("cores worker"))
    if one_cpu and two_cpu and two.events_per_s:
        efficiency = (two.events_per_s / two_cpu) / (rate / one_cpu)
        print(
            f"  events per worker-CPU-second, 2 workers / 1: {efficiency:.2f}x  [>= 0.9x] "
            f"({two.events_per_s / two_cpu:,.0f} vs {rate / one_cpu:,.0f})"
        )
    print(f"  CPU while 2 workers ran, in cores (of {os.cpu_count()}): {cores_used(two)}")
    if "snapshot_age_max_s" in two.extra:
        print(
            f"  global model's snapshot under 2 workers' load: oldest "
            f"{two.extra['snapshot_age_max_s']:.2f} s, furthest behind "
            f"{two.extra['snapshot_lag_max_events']:,.0f} examples"
        )
    if any(v < 0.2 for k, v in two.extra.items() if k.startswith("cores worker")):
        print("  (one worker hardly worked: the stream ended before both had joined the group,")
        print("   so this scaling figure means nothing; use a longer stream, e.g. the default)")

    latency = bench_latency(bootstrap, rate / 2, 10 if quick else 20)
    p50, p99 = latency.extra.get("p50_ms"), latency.extra.get("p99_ms")
    print(
        f"  event -> prediction latency at {rate / 2:,.0f} events/s (half the max): "
        f"p50 {p50} ms, p99 {p99} ms  [p50 <= 15, p99 <= 50 ms]  ({latency.note})"
    )
    summary = {
        k: {"name": r.name, "events_per_s": r.events_per_s, **r.extra} for k, r in results.items()
    }
    summary["d2"] = {"name": two.name, "events_per_s": two.events_per_s, **two.extra}
    summary["latency"] = {"rate": rate / 2, **latency.extra}
    (LOG_DIR / "results.json").write_text(json.dumps(summary, indent=2))
    print(f"\nresults: {LOG_DIR / 'results.json'}")


if __name__ == "__main__":
    main()
