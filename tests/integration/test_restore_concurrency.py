"""Restores never hold the group hostage: two workers started together on a 12-partition
events topic at default settings become ready and share the partitions.

The docs' advice (Guides > Scaling out: 12 partitions, 2 workers or more) as a user follows it, twice: a
first start on a fresh topic with events waiting, then a restart of both (a deployment)
when every partition has a checkpointed state to restore. Assignment returns at once and
the restores run off the group protocol, so the group settles each time: both workers
become ready, each partition is consumed by exactly one of them (their /readyz say
which), and every event is predicted once. With each partition's restore inside the
rebalance (~1 s each, 12 s > the 10 s session timeout) the two evicted each other, each
in turn predicting every event, and never became ready.
"""

import json
import re
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from kafka import KafkaConsumer, TopicPartition

from tests.integration.conftest import Env, riverrun_cli

pytestmark = pytest.mark.integration

PARTITIONS = 12
EVENTS = 2_400  # per replay: ~200 per partition, enough for each to have a checkpoint


def replay(env: Env, prefix: str) -> None:
    done = riverrun_cli(
        env,
        *("replay", "--dataset", "clicks", "--limit", str(EVENTS)),
        *("--id-prefix", prefix, "--wait-seconds", "0", "--quiet"),
    )
    assert done.returncode == 0, f"riverrun replay failed: {done.stderr}"


def consumed(body: Any, topic: str) -> list[int]:
    """The partitions of `topic` a /readyz body lists under any `consuming` key."""
    found: list[int] = []
    if isinstance(body, dict):
        for key, value in body.items():
            if key == "consuming":
                pattern = re.compile(rf"^{re.escape(topic)}\[(\d+)\]$")
                found += [int(m[1]) for v in value if (m := pattern.match(str(v)))]
            else:
                found += consumed(value, topic)
    elif isinstance(body, list):
        for value in body:
            found += consumed(value, topic)
    return found


def predicted(env: Env) -> Counter[str]:
    """Predictions by event id, as an independent reader (kafka-python) sees them."""
    return Counter(
        json.loads(m.value)["event_id"] for m in env.read_all(env.settings.predictions_topic)
    )


def checkpointed(env: Env) -> int:
    """How many partitions of the checkpoints topic hold a checkpoint (partition p's
    checkpoints go to checkpoints partition p when both have as many)."""
    consumer = KafkaConsumer(**env.client_options())
    topic = env.settings.checkpoints_topic
    try:
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or {0}]
        return sum(1 for end in consumer.end_offsets(tps).values() if end > 0)
    finally:
        consumer.close()


def poll(check: Callable[[], bool], timeout: float) -> bool:
    """Whether `check()` came true within `timeout` s (polled every 0.5 s)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)
    return True


def start_two_together(env: Env, prefix: str) -> None:
    """A replay of EVENTS events, then two workers started together at default settings:
    both become ready, each partition consumed by exactly one of them, and every event of
    the topic so far predicted once. Both are stopped at the end (each partition
    checkpointed on the stop)."""
    s = env.settings
    replay(env, prefix)
    one, two = env.start_worker(), env.start_worker()
    bodies: list[dict[str, Any] | None] = [None, None]

    def settled() -> bool:
        bodies[:] = [one.readyz(), two.readyz()]
        return all(b is not None and b.get("ready") for b in bodies) and sorted(
            consumed(bodies[0], s.events_topic) + consumed(bodies[1], s.events_topic)
        ) == list(range(PARTITIONS))

    became_ready = poll(settled, 45)
    sent = {json.loads(m.value)["event_id"] for m in env.read_all(s.events_topic)}
    poll(lambda: sent <= set(predicted(env)), 20 if became_ready else 1)
    exits = [w.process.poll() for w in (one, two)]
    stops = [w.stop() for w in (one, two)]
    env.workers.clear()  # the next two serve on the settings' ports again

    found = predicted(env)
    missing = len(sent - set(found))
    duplicates = sum(n - 1 for n in found.values())
    owners = Counter(p for b in bodies for p in consumed(b, s.events_topic))
    figures = (
        f"{prefix}: both ready {became_ready} (last /readyz: "
        f"{[b and b.get('ready') for b in bodies]}), exit codes {exits} (stop: {stops}), "
        f"partitions consumed (by how many) {dict(sorted(owners.items()))}, {missing} missing "
        f"and {duplicates} duplicate predictions of {len(sent)} events"
    )
    print(figures)
    assert became_ready, f"never both ready: {figures}\n{one.tail(15)}\n{two.tail(15)}"
    assert owners == Counter(range(PARTITIONS)), figures  # each partition by exactly one
    assert exits == [None, None] and stops == [0, 0], figures
    assert missing == 0 and duplicates == 0, figures


def test_two_workers_started_together_on_twelve_partitions_become_ready_and_share_them(
    make_env: Callable[..., Env],
) -> None:
    env = make_env(topic_partitions=PARTITIONS)
    env.env.pop("RIVERRUN_SESSION_TIMEOUT_SECONDS")  # the default, as a user runs it
    # A first start: no checkpoint yet, each partition's restore finds none.
    start_two_together(env, "a-")
    assert checkpointed(env) == PARTITIONS  # every partition's state, written on the stop
    # A restart of both (a deployment): every partition has a state to restore.
    start_two_together(env, "b-")
