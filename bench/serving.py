"""The worker's /v1 predict API under load, beside the stream it learns from.

One invocation (`make bench-serving`, or `python -m bench.serving [--quick] [--events N]`):

1. the seeded click stream of bench.throughput (model `logreg`) is pre-filled into a
   1-partition topic; a `riverrun worker` catches the backlog up with its API enabled and
   idle: its stream rate;
2. the same catch-up while an open-loop load generator (its own process) sends
   1,000 predict requests/s to that worker: the stream's rate drop (target <= 15 %);
   1 and 2 alternate `--rounds` times (fresh group each), and the means are compared;
3. a worker consumes a stream produced at half of (1)'s rate (a paced kafka-python
   producer in a thread) while the generator sends it 1,000 requests/s for its own keys:
   request latency p50/p90/p99/p99.9 (target p99 <= 5 ms), achieved request rate,
   failures, the stream's achieved rate against the offered one;
4. the same through a forward: two workers on a 2-partition topic, requests sent to
   worker B for keys of the partition worker A owns (`partition_of`, checked on every
   answer with `X-Riverrun-Served-By`), with `logreg` as a partition model (a global
   model, the default, is answered from the snapshot of whichever worker is asked);
5. the same with the requests to `riverrun serve` (answers from the snapshots of the
   global model; the stream runs on a worker beside it);
6. a bare aiohttp server (a process of its own, no stream) whose one handler answers every
   predict request with a constant JSON body of a predict answer's size, loaded by the same
   generator at the same rate: answered requests per CPU-second of the serving process in
   (3), (5) and (6), and riverrun's against the bare handler's.

The generator is open-loop: request i is due at start + i / rate whatever happened to
the ones before, and its latency runs from that due time to the end of its answer, so a
stalled server is charged for every request it delayed (no coordinated omission). It
waits for 200s (the partition restored and owned) and warms up before it measures.

Nothing here is asserted; targets are printed beside the measured figures.
"""

import argparse
import asyncio
import gc
import json
import math
import multiprocessing
import os
import platform
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from multiprocessing.synchronize import Event as EventType
from statistics import mean
from typing import Any

from aiohttp import web
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from bench.throughput import (
    LOG_DIR,
    WORKER,
    CPUMeter,
    broker_pid,
    create_topic,
    free_port,
    local_broker,
    own_ports,
    start,
    stop,
    worker_env,
)
from streams.cli.replay import dataset_events, encode, produce
from streams.http.server import SERVED_BY, partition_of
from streams.settings import Settings

#: How the bench starts `riverrun serve` (then `start(SERVE, env, log)`).
SERVE = [sys.executable, "-m", "streams.cli.main", "serve"]
#: How the bench starts the bare aiohttp server of (6) (its port appended).
BARE = [
    sys.executable,
    "-c",
    "import sys; from bench.serving import answer_constantly; answer_constantly(int(sys.argv[1]))",
]

MODEL = "logreg"
#: A request that has not been answered by then counts as failed (status 0).
REQUEST_TIMEOUT_S = 5.0
#: The stream's rate in (1) and (2) is taken from this long after the first 200 on.
SETTLE_S = 1.0
LATENCY_TARGET_MS = 5.0
DROP_TARGET = 0.15
#: The serving processes' names in a run's CPU figures (`Run.cores`).
WORKER_PROCESS, SERVE_PROCESS, BARE_PROCESS = "worker", "serve", "bare aiohttp"


# --- the load generator (runs in its own process) -------------------------------------
@dataclass(frozen=True)
class Load:
    """What the generator sends: `rate` requests/s of `bodies` (cycled) to `url`, after a
    first 200 (from `served_by` when given) and `warmup_s`, for `measure_s` (None: until
    told to stop). A rate of 0 only waits for the first 200."""

    url: str
    bodies: list[bytes]
    rate: float
    warmup_s: float = 0.0
    measure_s: float | None = None
    served_by: str | None = None
    ready_timeout_s: float = 120.0


@dataclass
class Sample:
    lag_s: float  # actual send - due time (the generator's own delay)
    latency_s: float  # answer read - due time
    status: int  # 0: no answer (timeout, connection error)
    right_owner: bool


def generate(load: Load, stop_event: EventType, out: Any) -> None:
    """The generator process's entry point: puts ("ready", epoch), ("measuring", epoch)
    and ("done", summary) on `out` (or ("failed", reason))."""
    asyncio.run(_generate(load, stop_event, out))


async def _generate(load: Load, stop_event: EventType, out: Any) -> None:
    client = Client(load.url)
    try:
        try:
            await _until_answered(client, load)
        except TimeoutError as err:
            out.put(("failed", str(err)))
            return
        out.put(("ready", time.time()))
        if load.rate <= 0:
            while not stop_event.is_set():
                await asyncio.sleep(0.1)
            out.put(("done", {}))
            return
        gc.freeze()  # what was built so far is never garbage: keep it out of collections
        if load.warmup_s > 0:
            await _open_loop(client, load, load.warmup_s, stop_event)
        started, cpu_started = time.time(), time.process_time()
        out.put(("measuring", started))
        samples = await _open_loop(client, load, load.measure_s, stop_event)
        ended = time.time()
        cpu = (time.process_time() - cpu_started) / max(ended - started, 1e-9)
        out.put(("done", summarize(samples, started, ended, cpu)))
        while not stop_event.is_set():  # alive until told: the bench meters its CPU
            await asyncio.sleep(0.1)
    finally:
        client.close()


class Client:
    """Keep-alive HTTP/1.1 POSTs of JSON over a pool of plain connections: a generator
    that costs the shared cores a fraction of what aiohttp's client does (which would
    take CPU from the worker it measures). Answers need a Content-Length (aiohttp's
    json_response has one)."""

    def __init__(self, url: str, connections: int = 200) -> None:
        parsed = urllib.parse.urlsplit(url)
        self.host, self.port = parsed.hostname or "127.0.0.1", parsed.port or 80
        self.head = (
            f"POST {parsed.path} HTTP/1.1\r\nHost: {parsed.netloc}\r\n"
            "Content-Type: application/json\r\nContent-Length: "
        ).encode()
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.slots = asyncio.Semaphore(connections)

    async def post(self, body: bytes) -> tuple[int, dict[str, str]]:
        """The status and headers (lower-case names) of the answer to `body`; raises
        OSError, asyncio.IncompleteReadError or TimeoutError."""
        async with self.slots:
            if self.idle:
                reader, writer = self.idle.pop()
            else:
                reader, writer = await asyncio.open_connection(self.host, self.port)
            try:
                async with asyncio.timeout(REQUEST_TIMEOUT_S):
                    writer.write(b"%s%d\r\n\r\n%s" % (self.head, len(body), body))
                    lines = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
                    headers = {}
                    for line in lines[1:]:
                        name, _, value = line.partition(":")
                        if name:
                            headers[name.lower()] = value.strip()
                    await reader.readexactly(int(headers.get("content-length", "0")))
            except BaseException:
                writer.close()
                raise
            self.idle.append((reader, writer))
            return int(lines[0].split(" ", 2)[1]), headers

    def close(self) -> None:
        for _, writer in self.idle:
            writer.close()


async def _until_answered(client: Client, load: Load) -> None:
    deadline = time.monotonic() + load.ready_timeout_s
    body = load.bodies[0]
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            status, headers = await client.post(body)
            owner = headers.get(SERVED_BY.lower())
            if status == 200 and load.served_by in (None, owner):
                return
            last = f"{status} served by {owner}"
        except (OSError, asyncio.IncompleteReadError, TimeoutError) as err:  # not listening yet
            last = type(err).__name__
        await asyncio.sleep(0.05)
    raise TimeoutError(f"{load.url} did not answer 200 in {load.ready_timeout_s:.0f} s: {last}")


async def _open_loop(
    client: Client, load: Load, seconds: float | None, stop_event: EventType
) -> list[Sample]:
    """Request i is sent at start + i / rate, whether or not the earlier ones came back."""
    loop = asyncio.get_running_loop()
    interval = 1 / load.rate
    count = math.inf if seconds is None else int(seconds * load.rate)
    pending: list[asyncio.Task[Sample]] = []
    begin = loop.time()
    i = 0
    while i < count:
        due = begin + i * interval
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        body = load.bodies[i % len(load.bodies)]
        pending.append(asyncio.create_task(_request(client, load, body, due)))
        i += 1
        if i % 100 == 0 and (stop_event.is_set() or (seconds is None and i > 600 * load.rate)):
            break
    return list(await asyncio.gather(*pending))


async def _request(client: Client, load: Load, body: bytes, due: float) -> Sample:
    loop = asyncio.get_running_loop()
    sent = loop.time()
    status, owner = 0, None
    try:
        status, headers = await client.post(body)
        owner = headers.get(SERVED_BY.lower())
    except (OSError, asyncio.IncompleteReadError, TimeoutError):
        pass
    right = load.served_by is None or owner == load.served_by
    return Sample(sent - due, loop.time() - due, status, right)


def percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of sorted values (q in 0..1)."""
    if not ordered:
        return math.nan
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def summarize(samples: list[Sample], started: float, ended: float, cpu: float) -> dict[str, Any]:
    ok = sorted(s.latency_s * 1000 for s in samples if s.status == 200 and s.right_owner)
    lags = sorted(s.lag_s * 1000 for s in samples)
    seconds = ended - started
    failed = Counter(str(s.status) for s in samples if s.status != 200)
    return {
        "sent": len(samples),
        "ok": len(ok),
        "failed": dict(failed),
        "wrong_owner": sum(1 for s in samples if s.status == 200 and not s.right_owner),
        "seconds": seconds,
        "sent_per_s": len(samples) / seconds,
        "ok_per_s": len(ok) / seconds,
        **{f"p{name}_ms": percentile(ok, q) for name, q in PERCENTILES.items()},
        "max_ms": ok[-1] if ok else math.nan,
        "send_lag_p50_ms": percentile(lags, 0.5),
        "send_lag_p99_ms": percentile(lags, 0.99),
        "generator_cores": cpu,
        "started": started,
        "ended": ended,
    }


PERCENTILES = {"50": 0.50, "90": 0.90, "99": 0.99, "99.9": 0.999}


class LoadProcess:
    """The generator in a process of its own (spawned: nothing inherited from here)."""

    def __init__(self, load: Load) -> None:
        context = multiprocessing.get_context("spawn")
        self.stop_event = context.Event()
        self.queue = context.Queue()
        self.process = context.Process(
            target=generate, args=(load, self.stop_event, self.queue), daemon=True
        )
        self.process.start()
        self.got: dict[str, Any] = {}

    @property
    def pid(self) -> int:
        assert self.process.pid is not None
        return self.process.pid

    def wait_for(self, kind: str, timeout: float = 180.0) -> Any:
        """The value of the generator's `kind` message (raises if it failed instead)."""
        while kind not in self.got:
            got_kind, value = self.queue.get(timeout=timeout)
            if got_kind == "failed":
                raise RuntimeError(f"load generator: {value}")
            self.got[got_kind] = value
        return self.got[kind]

    def finish(self) -> dict[str, Any]:
        """Tell it to stop; its summary."""
        self.stop_event.set()
        try:
            return dict(self.wait_for("done"))
        finally:
            self.process.join(10)
            if self.process.is_alive():
                self.process.kill()


# --- the bare contender (runs in its own process) -------------------------------------
#: The bare handler's answer: the fields and size of a `logreg` predict answer.
CONSTANT_ANSWER = {
    "schema_version": 1,
    "model": MODEL,
    "key": "req-clicks-00000000",
    "prediction": 0.4271937845219375,
    "model_version": f"{MODEL}@3f2a9c1b",
    "role": "champion",
    "model_updates": 20000,
    "partition": 0,
    "next_offset": 20000,
}


def answer_constantly(port: int) -> None:
    """A bare aiohttp server on 127.0.0.1:`port` until SIGTERM: one handler, on the predict
    path, answering CONSTANT_ANSWER with the served-by header riverrun sends (the generator
    counts an answer only with it). No access log, as riverrun's API has none."""
    headers = {SERVED_BY: f"http://127.0.0.1:{port}"}

    async def predict(request: web.Request) -> web.Response:
        return web.json_response(CONSTANT_ANSWER, headers=headers)

    app = web.Application()
    app.router.add_post("/v1/models/{name}/predict", predict)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


# --- the stream side ------------------------------------------------------------------
class PacedProducer(threading.Thread):
    """Sends `messages` to `topic` at `rate` per second until stopped or out of messages
    (kafka-python, in steps of 5 ms and batches lingering 20 ms: the producer and the
    broker take as little as they can of the cores the worker needs)."""

    def __init__(
        self, bootstrap: str, topic: str, messages: list[tuple[bytes, bytes]], rate: float
    ) -> None:
        super().__init__(daemon=True)
        self.bootstrap, self.topic, self.messages, self.rate = bootstrap, topic, messages, rate
        self.halt = threading.Event()
        self.sent = 0
        self.seconds = 0.0

    def run(self) -> None:
        producer = KafkaProducer(bootstrap_servers=self.bootstrap, linger_ms=20)
        started = time.perf_counter()
        try:
            for key, value in self.messages:
                producer.send(self.topic, key=key, value=value)
                self.sent += 1
                ahead = self.sent / self.rate - (time.perf_counter() - started)
                if ahead > 0.005:  # sleep in steps of 5 ms or more, not per event
                    if self.halt.wait(ahead):
                        break
                elif self.halt.is_set():
                    break
            self.seconds = time.perf_counter() - started
            producer.flush()
        finally:
            producer.close()

    def finish(self) -> float:
        """Stop; the rate it achieved."""
        self.halt.set()
        self.join()
        if self.sent >= len(self.messages):
            print(f"    (the paced producer ran out of its {self.sent:,} messages)")
        return self.sent / max(self.seconds, 1e-9)


class Outputs:
    """Offsets and timestamps of a LogAppendTime output topic, without reading it all
    (the reader shares the cores: it only asks for offsets)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        found = self.consumer.partitions_for_topic(topic) or {0}
        self.tps = [TopicPartition(topic, p) for p in sorted(found)]

    def count(self) -> int:
        return sum(self.consumer.end_offsets(self.tps).values())

    def wait(self, expected: int, process: Any, timeout: float, cpu: CPUMeter) -> int:
        """Wait until `expected` outputs are written, the process died, or `timeout`
        passed without progress; CPU is metered from the first output to the last."""
        seen, progress = 0, time.monotonic()
        while seen < expected and time.monotonic() - progress < timeout:
            now = self.count()
            if now and not seen:
                cpu.start()
            if now > seen:
                seen, progress = now, time.monotonic()
            elif process.poll() not in (None, 0):
                break
            time.sleep(0.2)
        cpu.stop()
        return seen

    def between(self, start_ms: float, end_ms: float) -> int:
        """Outputs stamped in [start_ms, end_ms)."""

        def offsets(at: float) -> dict[TopicPartition, int]:
            ends = self.consumer.end_offsets(self.tps)
            found = self.consumer.offsets_for_times({tp: int(at) for tp in self.tps})
            return {tp: (o.offset if o is not None else ends[tp]) for tp, o in found.items()}

        first, last = offsets(start_ms), offsets(end_ms)
        return sum(last[tp] - first[tp] for tp in self.tps)

    def last_stamp(self) -> int:
        """The latest output timestamp (ms)."""
        ends = self.consumer.end_offsets(self.tps)
        stamps = []
        for tp in self.tps:
            if ends[tp] == 0:
                continue
            self.consumer.assign([tp])
            self.consumer.seek(tp, ends[tp] - 1)
            for _ in range(20):
                batch = self.consumer.poll(timeout_ms=500).get(tp)
                if batch:
                    stamps.append(batch[-1].timestamp)
                    break
        return max(stamps)

    def close(self) -> None:
        self.consumer.close()


# --- the four measurements ------------------------------------------------------------
@dataclass
class Run:
    """One measurement's figures."""

    label: str
    stream_per_s: float | None = None
    stream_offered_per_s: float | None = None
    window_s: float | None = None
    events_in_window: int | None = None
    requests: dict[str, Any] = field(default_factory=dict)
    cores: dict[str, float] = field(default_factory=dict)
    note: str = ""


def api_url(env: dict[str, str]) -> str:
    return f"http://127.0.0.1:{env['RIVERRUN_API_PORT']}"


def predict_url(base: str) -> str:
    return f"{base}/v1/models/{MODEL}/predict"


def request_bodies(count: int, seed: int) -> list[tuple[str, bytes]]:
    """(key, body) of predict requests: keys and features of click events the stream
    never sees (another seed), as a caller asking about its visitors would send."""
    return [
        (e.key, json.dumps({"key": e.key, "features": e.features}).encode())
        for e in dataset_events("clicks", limit=count, model=MODEL, seed=seed, id_prefix="req-")
    ]


def meter(pids: dict[str, int]) -> CPUMeter:
    broker = broker_pid()
    if broker is not None:
        pids["broker"] = broker
    pids["bench (reader, producer)"] = os.getpid()
    return CPUMeter(pids)


def measure(load: LoadProcess, cpu: CPUMeter, seconds: float) -> dict[str, Any]:
    """The generator's summary of its measurement, `cpu` metered over it (the generator
    ready and warming up)."""
    load.wait_for("measuring")
    cpu.start()
    summary = dict(load.wait_for("done", timeout=seconds + 60))
    cpu.stop()
    load.finish()
    return summary


def catch_up(
    bootstrap: str, topic: str, n: int, rate: float, bodies: list[bytes], label: str
) -> Run:
    """(1) or (2): one fresh worker catches up the `n`-event backlog of `topic` while the
    generator sends `rate` requests/s (0: none, only the first 200 is awaited). The
    stream's rate counts outputs from SETTLE_S after the first 200 to the last output."""
    run = f"serving-{uuid.uuid4().hex[:8]}-catchup"
    env = worker_env(bootstrap, topic, run)
    worker = start(WORKER, env, LOG_DIR / f"serving-{run}.log")
    load = LoadProcess(Load(predict_url(api_url(env)), bodies, rate))
    cpu = meter({WORKER_PROCESS: worker.pid, "generator": load.pid})
    outputs = Outputs(bootstrap, env["RIVERRUN_PREDICTIONS_TOPIC"])
    try:
        seen = outputs.wait(n, worker, 60, cpu)
        summary = load.finish()
        ready = float(load.wait_for("ready"))
        end_ms = outputs.last_stamp()
        start_ms = (ready + SETTLE_S) * 1000
        inside = outputs.between(start_ms, end_ms + 1)
    finally:
        outputs.close()
        stop(worker)
    window = (end_ms - start_ms) / 1000
    result = Run(
        label,
        inside / window if window > 0 else None,
        window_s=window,
        events_in_window=inside,
        requests=summary,
        cores={k: v / cpu.seconds for k, v in cpu.used.items()},
    )
    if seen < n:
        result.note = f"only {seen:,} of {n:,} outputs; see {LOG_DIR}/serving-{run}.log"
    elif inside < n / 3:
        result.note = f"the window held only {inside:,} of {n:,} events: use more --events"
    return result


@dataclass(frozen=True)
class Traffic:
    """What (3) and (4) put on the worker(s): a stream of pre-encoded events at
    `stream_rate`, and `rate` requests/s measured for `seconds` after `warmup`."""

    stream: list[tuple[bytes, bytes]]
    stream_rate: float
    rate: float
    warmup: float
    seconds: float


def serve(
    bootstrap: str,
    topic: str,
    envs: list[dict[str, str]],
    target: str,
    owner: str,
    bodies: list[bytes],
    traffic: Traffic,
    label: str,
    pids: dict[str, int],
) -> Run:
    """(3) or (4): the generator sends `traffic.rate` requests/s of `bodies` to `target`
    (answers expected from `owner`) while a paced producer feeds `topic` the stream."""
    t = traffic
    producer = PacedProducer(bootstrap, topic, t.stream, t.stream_rate)
    load = LoadProcess(Load(predict_url(target), bodies, t.rate, t.warmup, t.seconds, owner))
    cpu = meter({**pids, "generator": load.pid})
    outputs = Outputs(bootstrap, envs[0]["RIVERRUN_PREDICTIONS_TOPIC"])
    try:
        load.wait_for("ready")
        producer.start()  # the stream flows through the warm-up and the measurement
        summary = measure(load, cpu, t.seconds)
        offered = producer.finish()
        time.sleep(1)  # the outputs of the window's last events
        inside = outputs.between(summary["started"] * 1000, summary["ended"] * 1000)
    finally:
        outputs.close()
    seconds = summary["ended"] - summary["started"]
    return Run(
        label,
        inside / seconds,
        offered,
        seconds,
        inside,
        summary,
        {k: v / cpu.seconds for k, v in cpu.used.items()},
        f"stream offered {t.stream_rate:,.0f}/s, the producer achieved {offered:,.0f}/s",
    )


def owners(urls: list[str], keys: dict[int, tuple[str, bytes]]) -> dict[int, str] | None:
    """Which worker's replica answers each partition's key, as every worker says, when
    all workers agree and no worker owns two partitions; else None."""
    found: dict[int, set[str]] = {p: set() for p in keys}
    for url in urls:
        for partition, (_, body) in keys.items():
            request = urllib.request.Request(
                predict_url(url), data=body, headers={"Content-Type": "application/json"}
            )
            try:
                with urllib.request.urlopen(request, timeout=5) as answer:
                    found[partition].add(answer.headers.get(SERVED_BY, ""))
            except (urllib.error.URLError, TimeoutError):  # 503 (HTTPError) or not up yet
                return None
    if any(len(owner) != 1 for owner in found.values()):
        return None
    chosen = {p: next(iter(owner)) for p, owner in found.items()}
    return chosen if len(set(chosen.values())) == len(chosen) else None


def serving_run(
    bootstrap: str, name: str, partitions: int = 1, **settings: Any
) -> tuple[str, str, dict[str, str]]:
    """A run of its own: its name, its events topic and its workers' environment (their
    predictions topic created, `settings` by field name), both topics with `partitions`."""
    run = f"serving-{uuid.uuid4().hex[:8]}-{name}"
    topic = create_topic(bootstrap, f"{run}-events", partitions=partitions)
    env = worker_env(bootstrap, topic, run, output_partitions=partitions, **settings)
    return run, topic, env


def serve_one(
    bootstrap: str,
    bodies: list[tuple[str, bytes]],
    traffic: Traffic,
) -> Run:
    """(3): requests to the owning worker."""
    run, topic, env = serving_run(bootstrap, "owner")
    worker = start(WORKER, env, LOG_DIR / f"serving-{run}.log")
    try:
        return serve(
            bootstrap,
            topic,
            [env],
            api_url(env),
            api_url(env),
            [b for _, b in bodies],
            traffic,
            "(3) owner",
            {WORKER_PROCESS: worker.pid},
        )
    finally:
        stop(worker)


def serve_snapshots(
    bootstrap: str,
    bodies: list[tuple[str, bytes]],
    traffic: Traffic,
) -> Run:
    """(5): `riverrun serve` answers from the global model's snapshots, beside a worker
    that runs the stream (and the model's learner)."""
    run, topic, env = serving_run(bootstrap, "serve")
    worker = start(WORKER, env, LOG_DIR / f"serving-{run}.log")
    serving = {**env, **own_ports()}
    server = start(SERVE, serving, LOG_DIR / f"serving-{run}-serve.log")
    url = api_url(serving)
    try:
        return serve(
            bootstrap,
            topic,
            [env],
            url,
            url,
            [b for _, b in bodies],
            traffic,
            "(5) riverrun serve",
            {WORKER_PROCESS: worker.pid, SERVE_PROCESS: server.pid},
        )
    finally:
        stop(server)
        stop(worker)


def serve_forwarded(
    bootstrap: str,
    bodies: list[tuple[str, bytes]],
    traffic: Traffic,
) -> Run:
    """(4): two workers on 2 partitions; requests to B for keys of A's partition."""
    # A partition model: a global one is answered by whichever worker is asked.
    run, topic, env = serving_run(
        bootstrap, "forward", partitions=2, model_scopes={"*": "partition"}
    )
    envs = [{**env, **own_ports()} for _ in range(2)]
    workers = [start(WORKER, e, LOG_DIR / f"serving-{run}-{i}.log") for i, e in enumerate(envs)]
    urls = [api_url(e) for e in envs]
    by_partition: dict[int, list[tuple[str, bytes]]] = {0: [], 1: []}
    for key, body in bodies:
        by_partition[partition_of(key, 2)].append((key, body))
    try:
        deadline, chosen = time.monotonic() + 120, None
        stable = 0
        while stable < 3:  # the same owners three times in a row: the group has settled
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"the two workers did not settle on one partition each "
                    f"in 120 s; see {LOG_DIR}/serving-{run}-*.log"
                )
            now = owners(urls, {p: keys[0] for p, keys in by_partition.items()})
            stable = stable + 1 if now is not None and now == chosen else 0
            chosen = now
            time.sleep(0.5)
        assert chosen is not None
        owner = chosen[0]  # A: the owner of partition 0; B: the other worker
        target = next(url for url in urls if url != owner)
        pids = {
            ("worker A (owner)" if url == owner else "worker B (forwards)"): w.pid
            for url, w in zip(urls, workers, strict=True)
        }
        result = serve(
            bootstrap,
            topic,
            envs,
            target,
            owner,
            [b for _, b in by_partition[0]],
            traffic,
            "(4) forwarded B -> A",
            pids,
        )
        result.note += f"; requests to B {target} for partition 0 of A {owner}"
        return result
    finally:
        for worker in workers:
            stop(worker)


def serve_bare(bodies: list[tuple[str, bytes]], traffic: Traffic) -> Run:
    """(6): the bare aiohttp server alone (no stream), the same requests at the same rate."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RIVERRUN_")}
    server = start([*BARE, str(port)], env, LOG_DIR / "serving-bare-aiohttp.log")
    t = traffic
    load = LoadProcess(
        Load(predict_url(url), [b for _, b in bodies], t.rate, t.warmup, t.seconds, url)
    )
    cpu = meter({BARE_PROCESS: server.pid, "generator": load.pid})
    try:
        load.wait_for("ready")
        summary = measure(load, cpu, t.seconds)
    finally:
        stop(server)
    size = len(json.dumps(CONSTANT_ANSWER))
    return Run(
        "(6) bare aiohttp",
        window_s=summary["ended"] - summary["started"],
        requests=summary,
        cores={k: v / cpu.seconds for k, v in cpu.used.items()},
        note=f"constant JSON of {size} bytes, no stream",
    )


def per_cpu_second(run: Run, process: str, cores_taken: float = 0.0) -> float:
    """Answered requests per CPU-second of `process` in `run` (`cores_taken` of its cores
    spent on something else first)."""
    cores = run.cores.get(process, 0.0) - cores_taken
    return run.requests.get("ok_per_s", 0.0) / cores if cores > 0 else math.nan


def efficiency(idle: list[Run], owner: Run, snapshots: Run, bare: Run) -> dict[str, float]:
    """Answered requests per CPU-second of the serving process of (3), (5) and (6), and
    riverrun's against the bare handler's. The owner also runs the stream: besides its
    whole CPU, its requests' share is estimated by taking out what the stream's events
    cost it in (1) (CPU per event at full rate: its batches are larger there, so this
    takes out a little too little)."""
    per_event = mean(
        (r.cores.get(WORKER_PROCESS, 0.0) / (r.stream_per_s or math.inf)) for r in idle
    )
    stream_cores = per_event * (owner.stream_per_s or 0.0)
    figures = {
        "bare_aiohttp": per_cpu_second(bare, BARE_PROCESS),
        "serve": per_cpu_second(snapshots, SERVE_PROCESS),
        "owner": per_cpu_second(owner, WORKER_PROCESS),
        "owner_without_stream": per_cpu_second(owner, WORKER_PROCESS, stream_cores),
    }
    ratios = {
        f"{k}_to_bare": v / figures["bare_aiohttp"]
        for k, v in figures.items()
        if k != "bare_aiohttp"
    }
    return {**figures, **ratios, "owner_stream_cores": stream_cores}


# --- the report -----------------------------------------------------------------------
def ms(value: Any) -> str:
    return (
        "-"
        if value is None or (isinstance(value, float) and math.isnan(value))
        else (f"{value:.2f}")
    )


def failures(requests: dict[str, Any]) -> str:
    failed = sum(requests.get("failed", {}).values()) + requests.get("wrong_owner", 0)
    kinds = ", ".join(f"{k}: {v}" for k, v in sorted(requests.get("failed", {}).items()))
    wrong = requests.get("wrong_owner", 0)
    detail = "; ".join(x for x in (kinds, f"wrong owner: {wrong}" if wrong else "") if x)
    return f"{failed}" + (f" ({detail})" if detail else "")


def cores(run: Run) -> str:
    return ", ".join(f"{name} {value:.2f}" for name, value in run.cores.items())


def print_requests(run: Run) -> None:
    r = run.requests
    print(
        f"    requests: {r['sent']:,} sent in {r['seconds']:.1f} s ({r['sent_per_s']:,.0f}/s), "
        f"{r['ok']:,} answered 200 ({r['ok_per_s']:,.0f}/s), failed {failures(r)}"
    )
    print(
        "    latency from the due time, ms: "
        + ", ".join(f"p{p} {ms(r[f'p{p}_ms'])}" for p in PERCENTILES)
        + f", max {ms(r['max_ms'])}; generator send lag p50 {ms(r['send_lag_p50_ms'])}, "
        f"p99 {ms(r['send_lag_p99_ms'])}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--events", type=int, default=100_000, help="backlog of (1) and (2)")
    parser.add_argument("--rate", type=float, default=1000.0, help="predict requests/s")
    parser.add_argument("--seconds", type=float, default=20.0, help="measurement of (3), (4)")
    parser.add_argument("--rounds", type=int, default=2, help="alternations of (1) and (2)")
    parser.add_argument(
        "--quick", action="store_true", help="40,000 events, one round, 8 s measurements"
    )
    args = parser.parse_args()
    n = 40_000 if args.quick else args.events
    seconds = 8.0 if args.quick else args.seconds
    rounds = 1 if args.quick else args.rounds
    warmup = 1.0 if args.quick else 2.0
    LOG_DIR.mkdir(parents=True, exist_ok=True)

    settings = Settings()
    began = time.monotonic()
    with local_broker(settings) as bootstrap:
        cpu = platform.processor() or platform.machine()
        print(
            f"{n:,} seeded click events, model {MODEL}, {args.rate:,.0f} predict requests/s; "
            f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}; "
            f"broker {bootstrap}"
        )
        messages = [encode(e) for e in dataset_events("clicks", limit=n, model=MODEL, seed=42)]
        topic = create_topic(bootstrap, f"serving-{uuid.uuid4().hex[:8]}-events-1p")
        produce(settings, topic, messages, progress=False)
        bodies = request_bodies(4000, seed=11)

        print("\n(1), (2) backlog catch-up, API idle / under load:")
        idle: list[Run] = []
        loaded: list[Run] = []
        for i in range(rounds):
            for rate, runs, label in ((0.0, idle, "(1) idle"), (args.rate, loaded, "(2) load")):
                r = catch_up(bootstrap, topic, n, rate, [b for _, b in bodies], label)
                runs.append(r)
                rate_text = f"{r.stream_per_s:,.0f}" if r.stream_per_s else "-"
                print(
                    f"  round {i + 1} {label}: {rate_text} events/s over {r.window_s:.1f} s "
                    f"({r.events_in_window:,} events) {r.note}"
                )
                print(f"    CPU in cores: {cores(r)}")
                if rate:
                    print_requests(r)
        idle_rate = mean(r.stream_per_s or 0 for r in idle)
        loaded_rate = mean(r.stream_per_s or 0 for r in loaded)
        drop = 1 - loaded_rate / idle_rate

        stream_rate = idle_rate / 2
        count = int(stream_rate * (seconds + warmup + 15))
        stream = [
            encode(e)
            for e in dataset_events("clicks", limit=count, model=MODEL, seed=7, id_prefix="srv-")
        ]
        print(f"\n(3) requests to the owning worker, stream at {stream_rate:,.0f} events/s:")
        traffic = Traffic(stream, stream_rate, args.rate, warmup, seconds)
        owner = serve_one(bootstrap, bodies, traffic)
        print(f"  stream {owner.stream_per_s:,.0f} events/s processed ({owner.note})")
        print_requests(owner)
        print(f"    CPU in cores: {cores(owner)}")

        print(f"\n(4) requests forwarded B -> A, 2 partitions, stream at {stream_rate:,.0f}/s:")
        forward = serve_forwarded(bootstrap, bodies, traffic)
        print(f"  stream {forward.stream_per_s:,.0f} events/s processed ({forward.note})")
        print_requests(forward)
        print(f"    CPU in cores: {cores(forward)}")

        print(f"\n(5) requests to `riverrun serve`, stream at {stream_rate:,.0f}/s on a worker:")
        snapshots = serve_snapshots(bootstrap, bodies, traffic)
        print(f"  stream {snapshots.stream_per_s:,.0f} events/s processed ({snapshots.note})")
        print_requests(snapshots)
        print(f"    CPU in cores: {cores(snapshots)}")

        print("\n(6) requests to a bare aiohttp handler returning constant JSON, no stream:")
        bare = serve_bare(bodies, traffic)
        print(f"  {bare.note}")
        print_requests(bare)
        print(f"    CPU in cores: {cores(bare)}")

        per_cpu = efficiency(idle, owner, snapshots, bare)
        table(
            idle,
            loaded,
            idle_rate,
            loaded_rate,
            drop,
            owner,
            forward,
            snapshots,
            bare,
            per_cpu,
            args.rate,
        )
        summary = {
            "idle": [asdict(r) for r in idle],
            "loaded": [asdict(r) for r in loaded],
            "idle_rate": idle_rate,
            "loaded_rate": loaded_rate,
            "drop": drop,
            "owner": asdict(owner),
            "forward": asdict(forward),
            "serve": asdict(snapshots),
            "bare_aiohttp": asdict(bare),
            "point_3": {
                "requests_per_s": args.rate,
                "owner_p99_ms": owner.requests.get("p99_ms", math.nan),
                "serve_p99_ms": snapshots.requests.get("p99_ms", math.nan),
                "p99_target_ms": LATENCY_TARGET_MS,
                "stream_drop": drop,
                "stream_drop_target": DROP_TARGET,
                "requests_per_cpu_s": per_cpu,
            },
        }
        (LOG_DIR / "serving.json").write_text(json.dumps(summary, indent=2))
        print(f"\nresults: {LOG_DIR / 'serving.json'}; {time.monotonic() - began:.0f} s")


def table(
    idle: list[Run],
    loaded: list[Run],
    idle_rate: float,
    loaded_rate: float,
    drop: float,
    owner: Run,
    forward: Run,
    snapshots: Run,
    bare: Run,
    per_cpu: dict[str, float],
    rate: float,
) -> None:
    """The serving figures, each beside its target in brackets ([none]: no target)."""

    def each(runs: list[Run]) -> str:
        return " / ".join(f"{r.stream_per_s or 0:,.0f}" for r in runs)

    def latency(run: Run) -> str:
        r = run.requests
        return " / ".join(ms(r[f"p{p}_ms"]) for p in PERCENTILES)

    def served(run: Run) -> str:
        r = run.requests
        return (
            f"{r['ok_per_s']:,.0f} req/s answered of {rate:,.0f}; failed {failures(r)}; "
            f"stream {run.stream_per_s or 0:,.0f} of {run.stream_offered_per_s or 0:,.0f} "
            "events/s offered"
        )

    def met(ok: bool) -> str:
        return "yes" if ok else "**no**"

    def p99(run: Run) -> tuple[str, str]:
        value = run.requests.get("p99_ms", math.nan)
        return f"[p99 <= {LATENCY_TARGET_MS:g} ms]", met(value <= LATENCY_TARGET_MS)

    def per_cpu_s(name: str) -> str:
        figure = f"{per_cpu[name]:,.0f}"
        return (
            figure
            if name == "bare_aiohttp"
            else f"{figure} ({per_cpu[f'{name}_to_bare']:.2f}x bare)"
        )

    at = f"at {rate:,.0f} req/s"
    none = "[none]"
    rows = [
        ("(1) stream, API idle", f"{idle_rate:,.0f} events/s (rounds {each(idle)})", "", ""),
        (f"(2) stream, {at}", f"{loaded_rate:,.0f} events/s (rounds {each(loaded)})", "", ""),
        (
            f"(2) stream's rate drop {at}",
            f"{drop:.1%}",
            f"[<= {DROP_TARGET:.0%}]",
            met(drop <= DROP_TARGET),
        ),
        (f"(3) owner {at}, p50/p90/p99/p99.9 ms", latency(owner), *p99(owner)),
        ("(3) owner, achieved", served(owner), "", ""),
        (f"(4) forwarded {at}, p50/p90/p99/p99.9 ms", latency(forward), none, ""),
        ("(4) forwarded, achieved", served(forward), "", ""),
        (f"(5) riverrun serve {at}, p50/p90/p99/p99.9 ms", latency(snapshots), *p99(snapshots)),
        ("(5) riverrun serve, achieved", served(snapshots), "", ""),
        (f"(6) bare aiohttp {at}, p50/p90/p99/p99.9 ms", latency(bare), none, ""),
        ("(6) bare aiohttp req/CPU-s", per_cpu_s("bare_aiohttp"), none, ""),
        ("(5) riverrun serve req/CPU-s", per_cpu_s("serve"), "[none; vs bare]", ""),
        ("(3) owner req/CPU-s, whole worker", per_cpu_s("owner"), "[none; vs bare]", ""),
        (
            f"(3) owner req/CPU-s, ~{per_cpu['owner_stream_cores']:.2f} cores of stream out",
            per_cpu_s("owner_without_stream"),
            "[none; vs bare]",
            "",
        ),
    ]
    print("\n| figure | measured | target | met? |\n|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
