"""What a worker tells its operator, against the real broker: the start-up banner, the
progress lines, a line per checkpoint and for the offsets committed on stop, the warning
of a worker left without a partition, and `riverrun status`."""

import json
import re
import subprocess
import sys
import time
from typing import Any

from online_models.versions import plans as control
from streams.cli.replay import dataset_events, encode
from streams.runtime.control import write_control
from tests.builtin import MODELS


def status(env: Any) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "streams.cli.main", "status", "--json"],
        env=env.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def wait_for(check: Any, what: str, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError(f"{what}: not within {timeout} s")


def test_banner_progress_checkpoints_commits_idle_warning_and_status(make_env) -> None:  # type: ignore[no-untyped-def]
    env = make_env(models=["logreg"], progress_seconds=1, checkpoint_every_seconds=1)
    s, spec = env.settings, MODELS["logreg"]
    write_control(s, [control.initial_plan(spec, changed_by="test")])
    events = list(dataset_events("phishing", limit=300, model="logreg", seed=42))
    first = env.start_worker()
    env.produce([encode(e) for e in events])
    env.read(s.predictions_topic, len(events))

    # A checkpoint covering all 300 events is logged and visible in `riverrun status`
    # with the committed offset, no lag, the one member, and the plan's version.
    checkpointed = f"events: checkpoint written for {s.events_topic}[0] up to offset 300: "
    wait_for(lambda: checkpointed in first.tail(400), "the checkpoint line")

    def settled() -> dict[str, Any] | None:
        found = status(env)
        partition = found["partitions"][0]
        ready = partition["versions"] and partition["checkpoints"]
        return found if ready and partition["checkpoints"][0]["next_offset"] == 300 else None

    found = wait_for(settled, "status with versions and the checkpoint")
    assert found["group"] == s.group_id and found["state"] == "Stable"
    assert [m["partitions"] for m in found["members"]] == [[0]]
    member = found["members"][0]
    assert member["api_url"] == f"http://127.0.0.1:{first.api_port}"
    partition = found["partitions"][0]
    assert (partition["committed"], partition["end"], partition["lag"]) == (300, 300, 0)
    assert partition["member"] == member["member"]
    assert partition["versions"] == [f"{spec.version} champion"]
    assert [(c["version"], c["updates"]) for c in partition["checkpoints"]] == [
        (spec.version, 300)  # every phishing event is labelled: each was learnt
    ]

    log = first.tail(400)
    # The banner: one block naming what runs, where, and the ports actually bound.
    banner = log[log.index("worker started") :]
    for expected in [
        s.app,
        f"{spec.version} (binary, champion)",
        s.events_topic,
        s.predictions_topic,
        s.group_id,
        s.bootstrap_servers,
        f"http://127.0.0.1:{first.metrics_port}/metrics",
        f"http://127.0.0.1:{first.api_port}/v1",
        "every 10000 events or 1 s",
    ]:
        assert expected in banner.split("[INFO]")[0], expected
    assert s.checkpoint_key.get_secret_value() not in log  # type: ignore[union-attr]
    # Progress lines, one a second: 300 events went through one of them.
    rates = [float(r) for r in re.findall(r"progress: ([\d.]+) events/s over", log)]
    assert len(rates) >= 2 and sum(rates) > 0
    assert "lag 0, 1 partition(s)" in log

    # Stopped, the worker says where its successor starts.
    assert first.stop() == 0
    assert f"events: offsets committed on stop: {s.events_topic}[0] at 300" in first.tail(400)

    # Two workers for one partition: one of them is told it has nothing to do.
    second, third = env.start_worker(), env.start_worker()
    env.wait_for_group_members(1)
    warning = (
        f"this worker got no partition of {s.events_topic} (1 partitions, 2 members): "
        "add partitions or run fewer workers"
    )
    wait_for(lambda: any(warning in w.tail(400) for w in (second, third)), "the idle warning")
    found = wait_for(lambda: (f := status(env)) and len(f["members"]) == 2 and f, "2 members")
    assert sorted(m["partitions"] for m in found["members"]) == [[], [0]]
