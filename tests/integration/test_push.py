"""Push sinks through the real broker to a real local HTTP server that fails on purpose:
every prediction the sink takes arrives, none it does not take, repeats only with the
same idempotency key; an endpoint that never answers 2xx gets every prediction as a dead
letter; a worker killed mid-delivery loses nothing."""

import json
import random
import threading
import time
import urllib.error
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from online_models.push import idempotency_key
from schemas import DeadLetter
from streams.cli.replay import dataset_events, encode
from tests.ports import free_port

TOKEN = "sink-token-" + "7" * 20


class Endpoint(ThreadingHTTPServer):
    """An ad network's audience API that fails part of the time (seeded): 503s, answers
    slower than the sink's timeout (the batch was taken: its retry repeats it), and
    connections dropped without an answer."""

    daemon_threads = True

    def __init__(self, port: int, failures: float, slow: float, drop: float, seed: int = 5):
        super().__init__(("127.0.0.1", port), Handler)
        self.failures, self.slow, self.drop = failures, slow, drop
        self.random = random.Random(seed)
        self.lock = threading.Lock()
        self.received: list[dict[str, Any]] = []  # every item of every batch taken
        self.answers: list[str] = []
        self.batches: list[list[dict[str, Any]]] = []  # each request's items, in order
        self.tokens: set[str | None] = set()

    def outcome(self) -> str:
        with self.lock:
            draw = self.random.random()
        if draw < self.failures:
            return "503"
        if draw < self.failures + self.slow:
            return "slow"
        if draw < self.failures + self.slow + self.drop:
            return "drop"
        return "200"


class Handler(BaseHTTPRequestHandler):
    server: Endpoint

    def do_POST(self) -> None:  # (http.server's name)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        outcome = self.server.outcome()
        with self.server.lock:
            self.server.answers.append(outcome)
            self.server.batches.append(body["items"])
            self.server.tokens.add(self.headers.get("Authorization"))
        if outcome == "drop":
            self.close_connection = True
            self.connection.close()
            return
        if outcome == "503":
            self.send_response(503)
            self.send_header("Retry-After", "0")
            self.end_headers()
            return
        with self.server.lock:
            self.server.received.extend(body["items"])
        if outcome == "slow":
            time.sleep(1.2)  # past the sink's timeout: it retries what was taken
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def endpoint() -> Iterator[Any]:
    servers: list[Endpoint] = []

    def start(failures: float = 0.3, slow: float = 0.1, drop: float = 0.1) -> Endpoint:
        server = Endpoint(free_port(), failures, slow, drop)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def sink(server: Endpoint, **options: Any) -> dict[str, Any]:
    return {
        "name": "audience",
        "url": f"http://127.0.0.1:{server.server_address[1]}/v1/audience",
        "batch_size": 20,
        "backoff_seconds": 0.05,
        "max_backoff_seconds": 0.5,
        "timeout_seconds": 0.6,
        "max_attempts": 50,
        "token": TOKEN,
        **options,
    }


def wait_for_lag_zero(worker: Any, partitions: int, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            samples = worker.scrape()
        except urllib.error.URLError:  # its web server is not up yet
            samples = {}
        lags = [v for k, v in samples.items() if k.startswith("riverrun_push_lag_messages{")]
        if len(lags) == partitions and not any(lags):
            return
        worker.assert_alive()
        time.sleep(0.5)
    pytest.fail(f"the push sink's lag never fell to 0:\n{worker.tail()}", pytrace=False)


def wait_for_keys(server: Endpoint, worker: Any, keys: set[str], timeout: float = 90.0) -> None:
    """Until every key of `keys` has arrived (fails with the count missing)."""
    deadline = time.monotonic() + timeout
    while True:
        with server.lock:
            missing = keys - {item["idempotency_key"] for item in server.received}
        if not missing:
            return
        if time.monotonic() > deadline:
            pytest.fail(
                f"{len(missing)} of {len(keys)} predictions never arrived, e.g. "
                f"{sorted(missing)[:3]}:\n{worker.tail()}",
                pytrace=False,
            )
        worker.assert_alive()
        time.sleep(0.3)


def expected_keys(env: Any, min_score: float) -> dict[str, dict[str, Any]]:
    predictions = [json.loads(m.value) for m in env.read_all(env.settings.predictions_topic)]
    return {idempotency_key(p): p for p in predictions if p["prediction"] >= min_score}


def test_every_taken_prediction_arrives_through_failures_repeats_with_their_key(
    make_env, endpoint
) -> None:  # type: ignore[no-untyped-def]
    server = endpoint()
    env = make_env(
        topic_partitions=2,
        models=["logreg"],
        push_sinks=[sink(server, models=["logreg"], min_score=0.5)],
    )
    worker = env.start_worker()
    events = list(dataset_events("phishing", limit=1500, model=None, seed=42))
    env.produce([encode(e) for e in events])
    env.read(env.settings.predictions_topic, len(events))
    expected = expected_keys(env, 0.5)
    wait_for_keys(server, worker, set(expected))
    wait_for_lag_zero(worker, 2)
    assert 0 < len(expected) < len(events)  # the filter took some and left others
    got: dict[str, dict[str, Any]] = {}
    for item in server.received:
        key = item["idempotency_key"]
        assert got.setdefault(key, item["prediction"]) == item["prediction"]  # same repeat
    assert got.keys() == expected.keys()  # none lost, none the filter leaves out
    assert got == expected  # as published
    repeats = len(server.received) - len(got)
    assert {"503", "slow", "drop"} <= set(server.answers) and repeats > 0  # it was tested
    assert server.tokens == {f"Bearer {TOKEN}"}
    metrics = worker.scrape()
    assert metrics['riverrun_push_delivered_total{sink="audience"}'] >= len(expected)
    assert metrics['riverrun_push_attempts_total{outcome="retry",sink="audience"}'] > 0
    worker.stop()
    assert TOKEN not in worker.log_path.read_text()


def test_an_endpoint_that_always_fails_gets_dead_letters_with_the_reason(
    make_env, endpoint
) -> None:  # type: ignore[no-untyped-def]
    server = endpoint(failures=1.0, slow=0.0, drop=0.0)
    env = make_env(models=["logreg"], push_sinks=[sink(server, max_attempts=3)])
    worker = env.start_worker()
    events = list(dataset_events("phishing", limit=60, model=None, seed=42))
    env.produce([encode(e) for e in events])
    letters = [
        DeadLetter.model_validate_json(m.value)
        for m in env.read(env.settings.dead_letters_topic, len(events))
    ]
    assert {d.error_type.value for d in letters} == {"push_failed"}
    assert {d.source_topic for d in letters} == {env.settings.predictions_topic}
    assert len({d.source_offset for d in letters}) == len(events)  # each prediction once
    assert letters[0].reason.startswith(
        f"push sink 'audience': http://127.0.0.1:{server.server_address[1]}/v1/audience "
        "answered HTTP 503 on each of 3 attempts: the endpoint is down or overloaded"
    )
    assert json.loads(letters[0].payload)["model"] == "logreg"  # the prediction, to re-send
    # Batches of at most 20 (as the predictions came), each tried 3 times, none after.
    attempts = Counter(json.dumps(b, sort_keys=True) for b in server.batches)
    assert set(attempts.values()) == {3}
    assert sum(len(json.loads(b)) for b in attempts) == len(events)
    assert max(len(json.loads(b)) for b in attempts) <= 20
    wait_for_lag_zero(worker, 1)  # committed: not retried forever


def test_a_worker_killed_mid_delivery_loses_nothing(make_env, endpoint) -> None:  # type: ignore[no-untyped-def]
    server = endpoint(failures=0.2, slow=0.0, drop=0.0)
    env = make_env(models=["logreg"], push_sinks=[sink(server, batch_size=10)])
    first = env.start_worker()
    events = list(dataset_events("phishing", limit=1000, model=None, seed=42))
    env.produce([encode(e) for e in events])
    deadline = time.monotonic() + 60
    while len(server.received) < 200:  # killed in the middle of the deliveries
        assert time.monotonic() < deadline, "the sink delivered nothing"
        first.assert_alive()
        time.sleep(0.05)
    first.kill()
    second = env.start_worker()
    env.read(env.settings.predictions_topic, len(events))
    expected = set(expected_keys(env, float("-inf")))
    wait_for_keys(server, second, expected)
    wait_for_lag_zero(second, 1)
    assert {item["idempotency_key"] for item in server.received} == expected


def test_a_worker_stopped_while_its_endpoint_is_down_stops_at_once_and_loses_nothing(
    make_env, endpoint
) -> None:  # type: ignore[no-untyped-def]
    server = endpoint(failures=1.0, slow=0.0, drop=0.0)
    # The first retry waits 30 to 60 s: a stop must not wait for it, nor dead-letter.
    options = {"backoff_seconds": 60.0, "max_backoff_seconds": 60.0}
    env = make_env(models=["logreg"], push_sinks=[sink(server, **options)])
    first = env.start_worker()
    events = list(dataset_events("phishing", limit=100, model=None, seed=42))
    env.produce([encode(e) for e in events])
    deadline = time.monotonic() + 60
    while not server.answers:
        assert time.monotonic() < deadline, "the sink sent nothing"
        first.assert_alive()
        time.sleep(0.05)
    started = time.monotonic()
    assert first.stop() == 0
    assert time.monotonic() - started < 20  # well before the retry was due
    assert env.count(env.settings.dead_letters_topic) == 0  # not given up: left to a restart
    server.failures = 0.0
    second = env.start_worker()
    env.read(env.settings.predictions_topic, len(events))
    expected = set(expected_keys(env, float("-inf")))
    wait_for_keys(server, second, expected)
    wait_for_lag_zero(second, 1)


def test_under_exactly_once_a_sink_reads_committed_predictions_and_its_lag_falls_to_zero(
    make_env, endpoint
) -> None:  # type: ignore[no-untyped-def]
    server = endpoint(failures=0.0, slow=0.0, drop=0.0)
    env = make_env(
        models=["logreg"], processing_guarantee="exactly_once", push_sinks=[sink(server)]
    )
    worker = env.start_worker()
    events = list(dataset_events("phishing", limit=300, model=None, seed=42))
    env.produce([encode(e) for e in events])
    env.read(env.settings.predictions_topic, len(events))
    wait_for_keys(server, worker, set(expected_keys(env, float("-inf"))))
    # Each transaction ends with a commit marker, which is no prediction: the lag counts
    # past it, or it would never fall below 1.
    wait_for_lag_zero(worker, 1)
