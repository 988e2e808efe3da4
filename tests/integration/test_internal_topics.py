"""The worker's internal topics against the real broker: created compacted, checked at
start and when a checkpoint write fails, never auto-created by the broker (docs:
Concepts > Guarantees, internal topics)."""

import subprocess
import sys
import time

from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic

from streams.cli.replay import dataset_events, encode


def cleanup_policy(env, topic: str) -> str:  # type: ignore[no-untyped-def]
    admin = KafkaAdminClient(**env.client_options())
    try:
        resource = ConfigResource(ConfigResourceType.TOPIC, topic, configs={"cleanup.policy": None})
        found = admin.describe_configs([resource], config_filter="all")
        return str(found["topic"][topic]["cleanup.policy"]["value"])
    finally:
        admin.close()


def test_a_fresh_group_s_internal_topics_are_created_compacted(make_env) -> None:  # type: ignore[no-untyped-def]
    env = make_env()
    s = env.settings
    # Compacted: the newest checkpoint of each replica and the newest plan of each model
    # must outlive any retention time; every other topic keeps the broker's default.
    assert cleanup_policy(env, s.checkpoints_topic) == "compact"
    assert cleanup_policy(env, s.control_topic) == "compact"
    assert cleanup_policy(env, s.events_topic) == "delete"


def test_a_checkpoints_topic_recreated_with_delete_is_refused_at_start(make_env) -> None:  # type: ignore[no-untyped-def]
    env = make_env()
    topic = env.settings.checkpoints_topic
    admin = KafkaAdminClient(**env.client_options())
    try:
        admin.delete_topics([topic])
        deadline = time.monotonic() + 30
        while topic in admin.list_topics() and time.monotonic() < deadline:
            time.sleep(0.2)
        # As someone re-creating it by hand with the broker's default policy.
        admin.create_topics([NewTopic(topic, 1, 1, topic_configs={"cleanup.policy": "delete"})])
    finally:
        admin.close()

    done = subprocess.run(
        [sys.executable, "-m", "streams.cli.main", "worker"],
        env=env.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert "Traceback" not in done.stderr, done.stderr
    (line,) = [x for x in done.stderr.splitlines() if "cleanup.policy" in x]
    assert topic in line and "cleanup.policy=delete" in line
    assert "--add-config cleanup.policy=compact" in line and "delete the topic" in line
    assert cleanup_policy(env, topic) == "delete"  # refused, not changed behind anyone's back


def test_a_checkpoints_topic_deleted_under_a_running_worker_is_not_recreated(make_env) -> None:  # type: ignore[no-untyped-def]
    env = make_env(models=["logreg"], checkpoint_every_events=500, checkpoint_every_seconds=1.0)
    s = env.settings
    events = [encode(e) for e in dataset_events("phishing", limit=3_000, model="logreg", seed=3)]
    worker = env.start_worker()
    env.produce(events[:1_000])
    env.read(s.predictions_topic, 1_000)

    admin = KafkaAdminClient(**env.client_options())
    try:
        admin.delete_topics([s.checkpoints_topic])
        deadline = time.monotonic() + 30
        while s.checkpoints_topic in admin.list_topics() and time.monotonic() < deadline:
            time.sleep(0.2)
        env.produce(events[1_000:])
        # The worker keeps predicting: its models are the only copy of what they learnt.
        env.read(s.predictions_topic, len(events))
        deadline = time.monotonic() + 90
        while "no longer exists" not in worker.tail(200) and time.monotonic() < deadline:
            worker.assert_alive()
            time.sleep(0.5)
        # The broker refused to auto-create it: still missing.
        assert s.checkpoints_topic not in admin.list_topics()
        lines = [x for x in worker.tail(400).splitlines() if "no longer exists" in x]
        assert len(lines) == 1, worker.tail(100)
        assert s.checkpoints_topic in lines[0] and "cleanup.policy=compact" in lines[0]

        # Done as the line says: the worker checkpoints there again, nothing restarted.
        admin.create_topics(
            [NewTopic(s.checkpoints_topic, 1, 1, topic_configs={"cleanup.policy": "compact"})]
        )
    finally:
        admin.close()
    more = [encode(e) for e in dataset_events("phishing", limit=1_000, model="logreg", seed=4)]
    deadline = time.monotonic() + 60
    while env.count(s.checkpoints_topic) == 0 and time.monotonic() < deadline:
        env.produce(more[:100])
        more = more[100:] or more
        time.sleep(1.0)
    assert env.count(s.checkpoints_topic) > 0, worker.tail(30)
    assert "checkpoints resume" in worker.tail(400)
    assert "Traceback" not in worker.tail(400)
    assert worker.stop() == 0, worker.tail()


def test_replay_creates_the_topic_it_writes_to(make_env) -> None:  # type: ignore[no-untyped-def]
    # The broker creates no topic: a replay to one nobody made waited 60 s for its
    # metadata and ended in a traceback.
    env = make_env(topic_partitions=3)
    topic = f"{env.settings.events_topic}-elsewhere"
    replay = ["replay", "--dataset", "phishing", "--limit", "30", "--topic", topic, "--quiet"]
    done = subprocess.run(
        [sys.executable, "-m", "streams.cli.main", *replay],
        env=env.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    admin = KafkaAdminClient(**env.client_options())
    try:
        partitions = admin.describe_topics([topic])[0]["partitions"]
        assert len(partitions) == 3  # RIVERRUN_TOPIC_PARTITIONS, not the broker's default 1
        admin.delete_topics([topic])
    finally:
        admin.close()


def test_a_plan_is_not_written_to_a_control_topic_that_is_not_compacted(make_env) -> None:  # type: ignore[no-untyped-def]
    env = make_env(models=["logreg"])
    topic = env.settings.control_topic
    admin = KafkaAdminClient(**env.client_options())
    try:  # as with `kafka-configs --alter --add-config cleanup.policy=delete`
        resource = ConfigResource(ConfigResourceType.TOPIC, topic, {"cleanup.policy": "delete"})
        admin.alter_configs([resource])
    finally:
        admin.close()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "streams.cli.main",
            "models",
            "gate",
            "logreg",
            "--min-labelled",
            "50",
        ],
        env=env.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr
    assert f"the topic {topic!r} has cleanup.policy=delete" in done.stderr
    assert env.count(topic) == 0  # no plan written
