"""exactly_once fences a zombie: a worker frozen past its session timeout while another
takes its partition over, then thawed, gets its open transaction refused.

Worker A predicts a replay in exactly_once mode; it is frozen (SIGSTOP) with a
transaction open, as a long GC pause, a swapped-out container or a stalled VM freezes a
process. Worker B, in the same group, gets the partition once A's session lapses, and
predicts every event up to the end. A is thawed (SIGCONT): the batch it held is already
B's to write, so the broker must refuse A's transaction (KIP-447: the offsets are sent
with the consumer's group generation), and a `read_committed` reader sees each
prediction exactly once. A then stops writing: it leaves, or rejoins the group as a new
member, and says so in its log.
"""

import json
import os
import re
import signal
import time
from collections import Counter
from collections.abc import Callable

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

from tests.integration.conftest import Env, Replay, WorkerProcess

pytestmark = pytest.mark.integration

EVENTS = 8_000
RATE = 800.0  # events/s: a 10 s replay, A frozen after its first 1,500
SESSION_TIMEOUT = 6.0  # seconds, the broker's least (group.min.session.timeout.ms)
#: What a thawed zombie says, loosely: that it was fenced, or lost its partitions to
#: another member of the group.
ZOMBIE_LINE = re.compile(
    r"fenc|zombie|took over|taken over|no longer|lost .*partition|went on without", re.I
)


def wait_for(check: Callable[[], object], what: str, timeout: float, *alive: WorkerProcess) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        for worker in alive:
            worker.assert_alive()
        if time.monotonic() > deadline:
            tails = "\n".join(w.tail(20) for w in alive)
            pytest.fail(f"{what}: not within {timeout} s\n{tails}", pytrace=False)
        time.sleep(0.2)


def caught_up(env: Env) -> bool:
    """Whether the group's committed offsets reached the end of every events partition."""
    admin = KafkaAdminClient(**env.client_options())
    consumer = KafkaConsumer(**env.client_options())
    try:
        group = env.settings.group_id
        committed = admin.list_group_offsets(group).get(group, {})
        topic = env.settings.events_topic
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or {0}]
        ends = consumer.end_offsets(tps)
    finally:
        admin.close()
        consumer.close()
    return all(tp in committed and committed[tp].offset >= ends[tp] for tp in tps)


def read_committed(env: Env, topic: str, timeout: float = 60.0) -> list[str]:
    """The keys of every message of `topic` a read_committed consumer sees, to its end."""
    consumer = KafkaConsumer(
        **env.client_options(), enable_auto_commit=False, isolation_level="read_committed"
    )
    tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or {0})]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    end = consumer.end_offsets(tps)
    keys: list[str] = []
    deadline = time.monotonic() + timeout
    while any(consumer.position(tp) < end[tp] for tp in tps):
        if time.monotonic() > deadline:
            pytest.fail(
                f"a read_committed reader of {topic} is held back at "
                f"{[consumer.position(tp) for tp in tps]} of {list(end.values())} after "
                f"{timeout} s: a transaction is still open",
                pytrace=False,
            )
        for batch in consumer.poll(timeout_ms=500).values():
            keys += [m.key.decode() for m in batch]
    consumer.close()
    return keys


def test_a_frozen_worker_thawed_after_another_took_over_is_fenced(make_env) -> None:  # type: ignore[no-untyped-def]
    env = make_env(
        models=["logreg"],
        processing_guarantee="exactly_once",
        session_timeout_seconds=SESSION_TIMEOUT,
    )
    s = env.settings
    zombie = env.start_worker()
    wait_for(lambda: (zombie.readyz() or {}).get("ready"), "A ready", 60, zombie)
    replay = Replay(
        env,
        *("--dataset", "clicks", "--model", "logreg", "--limit", str(EVENTS)),
        *("--rate", str(RATE), "--id-prefix", "z-", "--wait-seconds", "0", "--quiet"),
    )
    replay.start()
    wait_for(lambda: env.count(s.predictions_topic) >= 1_500, "A predicting", 60, zombie)

    os.killpg(zombie.process.pid, signal.SIGSTOP)  # frozen with a transaction open
    try:
        successor = env.start_worker()
        replay.finish()
        # B has the partition (A's session lapsed) and committed every event.
        wait_for(lambda: caught_up(env), "B committing every event", 60, successor)
    finally:
        os.killpg(zombie.process.pid, signal.SIGCONT)
    thawed = len(zombie.log_path.read_text(errors="replace").splitlines())

    # A holds a batch it had fetched and a transaction it had begun: it must not get
    # them written. Give it time to try (and to be refused, or to leave): its next
    # heartbeat, fetch or transaction finds the group gone on without it, or the
    # transaction aborted by the broker after RIVERRUN_TRANSACTION_TIMEOUT_SECONDS.
    def after_thaw() -> list[str]:
        return zombie.log_path.read_text(errors="replace").splitlines()[thawed:]

    time.sleep(2 * SESSION_TIMEOUT)
    deadline = time.monotonic() + 3 * SESSION_TIMEOUT
    while time.monotonic() < deadline:
        if zombie.process.poll() is not None or any(map(ZOMBIE_LINE.search, after_thaw())):
            break
        time.sleep(0.5)
    exited = zombie.process.poll()
    after = after_thaw()
    assert successor.stop() == 0, successor.tail()
    zombie.stop()

    sent = {json.loads(m.value)["event_id"] for m in env.read_all(s.events_topic)}
    assert len(sent) == EVENTS
    predicted = Counter(read_committed(env, s.predictions_topic))
    missing = sent - set(predicted)
    duplicates = sum(n - 1 for n in predicted.values())
    print(f"zombie thawed: {duplicates} duplicates, {len(missing)} missing (read_committed)")
    assert not missing and not duplicates, (
        f"a read_committed reader saw {duplicates} duplicate predictions and "
        f"{len(missing)} missing ones of {EVENTS} events"
    )
    # Loosely: A left (any exit code), or said in its log why it stopped writing.
    told = [line for line in after if ZOMBIE_LINE.search(line)]
    print("A after the thaw:", *(told[:3] or [f"exited with {exited}"]), sep="\n  ")
    assert exited is not None or told, "A went on silently after being thawed:\n" + "\n".join(
        after[-30:]
    )
