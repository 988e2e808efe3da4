"""Two workers on one machine without a port set: the defaults are taken (held here as
another program would), each worker chooses free ports, says which, serves /metrics and
/v1 there, and tells the group the /v1 URL it really listens on. A port set explicitly
and taken stops the worker with one sentence."""

import contextlib
import re
import socket
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

from streams.settings import Settings
from tests.integration.conftest import WorkerProcess
from tests.integration.test_http_api import FEATURES, SERVED_BY, until_answered
from tests.ports import free_port

LISTENING = re.compile(
    r"listening: /metrics on http://127\.0\.0\.1:(\d+)/metrics, /v1 on (http://127\.0\.0\.1:(\d+))/v1"
)


@contextlib.contextmanager
def held(*ports: int) -> Iterator[None]:
    """Listen on the ports (one another process holds already is just as taken)."""
    with contextlib.ExitStack() as stack:
        for port in ports:
            sock = stack.enter_context(socket.socket())
            with contextlib.suppress(OSError):
                sock.bind(("127.0.0.1", port))
                sock.listen()
        yield


def start(env: Any, name: str, variables: dict[str, str]) -> WorkerProcess:
    worker = WorkerProcess(variables, env.tmp / f"{name}.log", metrics_port=0)
    env.workers.append(worker)
    return worker


def listening_on(worker: WorkerProcess, timeout: float = 90.0) -> tuple[int, str]:
    """(metrics port, /v1 URL) from the worker's start-up line, once /metrics answers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        worker.assert_alive()
        found = LISTENING.search(worker.log_path.read_text(errors="replace"))
        if found:
            worker.metrics_port, worker.api_port = int(found[1]), int(found[3])
            # Both servers listen (/v1 starts a moment after /metrics): a worker started
            # next must find both ports taken.
            with contextlib.suppress(OSError):
                worker.scrape()
                socket.create_connection(("127.0.0.1", worker.api_port), timeout=1).close()
                return worker.metrics_port, found[2]
        time.sleep(0.3)
    raise AssertionError(f"no start-up line or no /metrics in {timeout} s:\n{worker.tail()}")


def test_second_worker_chooses_free_ports_and_advertises_them(make_env) -> None:  # type: ignore[no-untyped-def]
    env = make_env(topic_partitions=2, models=["logreg"])
    unset = {
        k: v for k, v in env.env.items() if k not in ("RIVERRUN_METRICS_PORT", "RIVERRUN_API_PORT")
    }
    defaults = (
        Settings.model_fields["metrics_port"].default,
        Settings.model_fields["api_port"].default,
    )
    with held(*defaults):
        first = start(env, "first", unset)
        first_metrics, first_url = listening_on(first)
        # Started once the first listens: it finds the first's ports taken too.
        second = start(env, "second", unset)
        second_metrics, second_url = listening_on(second)
    ports = {first_metrics, first.api_port, second_metrics, second.api_port}
    assert len(ports) == 4 and not ports & set(defaults), ports
    for worker in (first, second):
        assert "is unset and" in worker.log_path.read_text()  # says why it moved
        page = urllib.request.urlopen(f"http://127.0.0.1:{worker.metrics_port}/metrics", timeout=5)
        assert b"riverrun_" in page.read()
    env.wait_for_group_members(2)
    # Each partition is answered by its owner, whichever worker is asked: the URL each
    # worker advertised on the control topic is the one it listens on.
    owners = set()
    for key in [f"visitor-{i}" for i in range(8)]:
        body = {"key": key, "features": FEATURES}
        for url in (first_url, second_url):
            _, headers = until_answered(f"{url}/v1/models/logreg/predict", body)
            owners.add(headers[SERVED_BY])
    assert owners == {first_url, second_url}


def test_a_taken_explicit_port_stops_the_worker_with_one_sentence(make_env) -> None:  # type: ignore[no-untyped-def]
    env = make_env()
    port = free_port()
    with held(port):
        worker = start(env, "taken", {**env.env, "RIVERRUN_METRICS_PORT": str(port)})
        code = worker.process.wait(timeout=90)
    worker.stopped = True
    log = worker.log_path.read_text()
    assert code == 1, log
    assert "Traceback" not in log, log
    assert log.strip().splitlines()[-1] == (
        f"Error: RIVERRUN_METRICS_PORT is {port}, which another process listens on at "
        "127.0.0.1 (another worker?): set it to a free port, or unset it to have the next free "
        "one chosen"
    ), log
