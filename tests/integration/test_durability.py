"""Fault tests against the real broker: kill -9, a worker lost from a group, a broker
restart and a corrupted checkpoint lose no event, send no output twice, and the models
end exactly as an uninterrupted run's (docs: Concepts > Guarantees)."""

import re
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from online_models import Learner, Rejection
from online_models.learning.checkpoint import Replica, gather, parse_chunk, restore
from schemas import DeadLetter, InputEvent, MetricsReport, Prediction
from schemas.checkpoint import MAGIC
from schemas.drift import DriftReport
from streams.cli.replay import dataset_events, encode
from streams.services.event_pipeline import EventPipeline
from streams.services.events import MAX_BATCHES_IN_FLIGHT
from tests.builtin import MODELS
from tests.fingerprint import fingerprint

Message = tuple[bytes | None, bytes]


class Feeder(threading.Thread):
    """Produces messages at `rate` per second, message i to partition i % partitions."""

    def __init__(self, env: Any, messages: Sequence[Message], partitions: int, rate: float) -> None:
        super().__init__(daemon=True)
        self.env, self.messages, self.partitions, self.rate = env, messages, partitions, rate
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            producer = KafkaProducer(
                bootstrap_servers=self.env.settings.bootstrap_servers, linger_ms=5
            )
            started = time.monotonic()
            for i, (key, value) in enumerate(self.messages):
                topic = self.env.settings.events_topic
                producer.send(topic, key=key, value=value, partition=i % self.partitions)
                if i % 100 == 99:
                    time.sleep(max(0.0, started + (i + 1) / self.rate - time.monotonic()))
            producer.flush()
            producer.close()
        except BaseException as err:  # reported by finish()
            self.error = err

    def finish(self) -> None:
        self.join(timeout=180)
        assert not self.is_alive(), "the test's producer did not finish"
        assert self.error is None, f"the test's producer failed: {self.error!r}"


@dataclass
class Outputs:
    """What an uninterrupted run of each partition's replicas sends, and its learners."""

    predictions: dict[str, Prediction] = field(default_factory=dict)
    rejections: dict[tuple[int, int], Rejection] = field(default_factory=dict)  # (p, offset)
    reports: Counter[str] = field(default_factory=Counter)  # JSON -> copies
    drift: Counter[str] = field(default_factory=Counter)
    learners: dict[int, Learner] = field(default_factory=dict)


def uninterrupted(settings: Any, messages: Sequence[Message], partitions: int) -> Outputs:
    """Each partition's replicas run over its messages (message i on partition
    i % partitions) without interruption, as the worker's pipeline runs them."""
    expected = Outputs()
    for p in range(partitions):
        learner = expected.learners[p] = Learner(
            settings.models,
            registry=MODELS,
            params=settings.model_params,
            evaluation=settings.evaluation(),
            drift=settings.drift(),
            dedup_window=settings.dedup_window,
        )
        values = [value for _, value in messages[p::partitions]]
        outputs = EventPipeline(learner, settings.max_event_bytes).run(
            values, offsets=range(len(values))
        )
        for offset, output in enumerate(outputs):
            if isinstance(output, Rejection):
                expected.rejections[p, offset] = output
            else:
                assert isinstance(output, Prediction)
                expected.predictions[output.event_id] = output
        for report in learner.drain_reports():
            expected.reports[report.model_copy(update={"partition": p}).model_dump_json()] += 1
        for drift in learner.drain_drift():
            expected.drift[drift.model_copy(update={"partition": p}).model_dump_json()] += 1
    return expected


def differences(found: Counter[str], expected: Counter[str]) -> str:
    """What only the topic holds, and what only the uninterrupted run made (a few)."""
    extra, missing = sorted((found - expected).elements()), sorted((expected - found).elements())
    return f"{len(extra)} unexpected, e.g. {extra[:2]}; {len(missing)} missing, e.g. {missing[:2]}"


def check_other_outputs(env: Any, expected: Outputs) -> None:
    """Every dead letter, metrics report and drift report of the uninterrupted run on its
    topic exactly once, and nothing else."""
    s = env.settings
    letters = [DeadLetter.model_validate_json(m.value) for m in env.read_all(s.dead_letters_topic)]
    found = Counter((d.source_partition, d.source_offset) for d in letters)
    assert found == Counter(expected.rejections.keys()), "dead letters lost or sent twice"
    for letter in letters:
        want = expected.rejections[letter.source_partition, letter.source_offset]
        assert (letter.error_type, letter.reason) == (want.error_type, want.reason)
    reports = Counter(
        MetricsReport.model_validate_json(m.value).model_dump_json()
        for m in env.read_all(s.metrics_topic)
    )
    assert reports == expected.reports, differences(reports, expected.reports)
    drift = Counter(
        DriftReport.model_validate_json(m.value).model_dump_json()
        for m in env.read_all(s.drift_topic)
    )
    assert drift == expected.drift, differences(drift, expected.drift)


def all_predictions(
    env: Any, events: list[InputEvent], timeout: float = 180, committed: bool = False
) -> list[Prediction]:
    """Every prediction on the topic once each event has at least one (`committed`: as a
    read_committed consumer sees them)."""
    wanted = {e.event_id for e in events}
    seen: set[str] = set()

    def complete(messages: list[Any]) -> bool:
        seen.update(m.key.decode() for m in messages[len(seen_messages) :])
        seen_messages[:] = messages
        return wanted <= seen

    seen_messages: list[Any] = []
    isolation = "read_committed" if committed else "read_uncommitted"
    messages = env.read_until(env.settings.predictions_topic, complete, timeout, isolation)
    return [Prediction.model_validate_json(m.value) for m in messages]


def check_predictions(
    predictions: list[Prediction], expected: dict[str, Prediction], max_duplicates: int
) -> int:
    """Every event predicted, each prediction (duplicates too) exactly the uninterrupted
    run's; returns the number of duplicates."""
    assert {p.event_id for p in predictions} == set(expected)
    for p in predictions:
        want = expected[p.event_id]
        got = (p.prediction, p.model_updates, p.model_version, p.learned)
        assert got == (want.prediction, want.model_updates, want.model_version, want.learned), (
            p.event_id
        )
    duplicates = len(predictions) - len(expected)
    assert 0 <= duplicates <= max_duplicates
    return duplicates


def checkpoints(env: Any) -> dict[bytes, list[tuple[bytes, bytes]]]:
    """The checkpoints topic: (key, value) of every message, by key prefix (replica)."""
    s = env.settings
    consumer = KafkaConsumer(bootstrap_servers=s.bootstrap_servers, enable_auto_commit=False)
    tps = [
        TopicPartition(s.checkpoints_topic, p)
        for p in consumer.partitions_for_topic(s.checkpoints_topic)
    ]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    end = consumer.end_offsets(tps)
    found: dict[bytes, list[tuple[bytes, bytes]]] = defaultdict(list)
    while any(consumer.position(tp) < end[tp] for tp in tps):
        for batch in consumer.poll(timeout_ms=500).values():
            for m in batch:
                found[m.key.rsplit(b"|", 2)[0] + b"|"].append((m.key, m.value))
    consumer.close()
    return found


def final_models(env: Any, partitions: int) -> dict[tuple[int, str], Any]:
    """The newest checkpoint of every replica, restored with the workers' key."""
    s = env.settings
    key = s.checkpoint_key.get_secret_value().encode()
    found = checkpoints(env)
    models = {}
    for p in range(partitions):
        for name in s.models:
            replica = Replica(s.group_id, s.events_topic, p, name)
            newest = gather(v for _, v in found[replica.prefix])[0][0]
            models[p, name] = restore(
                newest, replica, MODELS[name], key=key, drift=s.drift(), dedup_window=s.dedup_window
            )
    return models


def check_final_models(env: Any, learners: dict[int, Learner], events_per_partition: int) -> None:
    for (p, name), served in final_models(env, len(learners)).items():
        assert served.resume_offset == events_per_partition
        want = learners[p].models[name]
        parts = (
            "estimator",
            "updates",
            "evaluator",
            "classes",
            "drift",
            "recent event ids",
            "lifecycle",
        )
        for part, got, expected in zip(
            parts, served.state().parts(), want.state().parts(), strict=True
        ):
            assert fingerprint(got) == fingerprint(expected), (p, name, part)


def with_bad_messages(events: list[InputEvent], partitions: int) -> list[Message]:
    """`events` as the feed of `partitions` partitions (message i on partition
    i % partitions), with, on each partition, a message that is not JSON after every 250th
    event and a re-send of an earlier event of that partition after every 400th."""
    feeds: list[list[Message]] = []
    for p in range(partitions):
        feed: list[Message] = []
        mine = events[p::partitions]
        for k, event in enumerate(mine):
            feed.append(encode(event))
            if k % 250 == 249:
                feed.append((b"bad", b"{not json"))
            if k % 400 == 399:
                feed.append(encode(mine[k - 10]))  # a duplicate_event dead letter
        feeds.append(feed)
    assert len({len(feed) for feed in feeds}) == 1
    return [message for row in zip(*feeds, strict=True) for message in row]


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_kill_9_repeatedly_loses_nothing_duplicates_nothing_and_ends_with_the_uninterrupted_model(
    make_env, guarantee: str
) -> None:  # type: ignore[no-untyped-def]
    partitions, batch = 2, 500
    env = make_env(
        models=["logreg"],
        topic_partitions=partitions,
        batch_size=batch,
        checkpoint_every_events=2_000,
        processing_guarantee=guarantee,
        transactional_id="worker-a",  # every incarnation: each fences the one before
    )
    exactly_once = guarantee == "exactly_once"
    events = list(dataset_events("clicks", limit=30_000, model="logreg", seed=11))
    messages = with_bad_messages(events, partitions)
    expected = uninterrupted(env.settings, messages, partitions)

    feeder = Feeder(env, messages, partitions, rate=3_000)
    worker = env.start_worker()
    feeder.start()
    kills = 0
    for threshold in (4_000, 9_000, 14_000, 19_000, 24_000):
        while env.count(env.settings.predictions_topic) < threshold:
            worker.assert_alive()
            time.sleep(0.05)
        assert env.count(env.settings.predictions_topic) < len(events)  # mid-stream
        worker.kill()
        kills += 1
        worker = env.start_worker()
    feeder.finish()
    predictions = all_predictions(env, events, committed=exactly_once)
    assert worker.stop() == 0, worker.tail()

    # Effectively once by default: each new owner skips the outputs the killed worker
    # delivered after its last commit. exactly_once: a read_committed consumer sees none
    # (the killed worker's open transaction is aborted by its successor, which has the
    # same transactional id).
    duplicates = check_predictions(predictions, expected.predictions, 0)
    print(f"{guarantee}: {kills} kills, {len(messages)} messages: {duplicates} duplicates")
    if not exactly_once:  # (read_uncommitted readers below would see aborted ones)
        check_other_outputs(env, expected)
    check_final_models(env, expected.learners, len(messages) // partitions)


def test_a_killed_worker_s_partitions_finish_on_the_other_worker(make_env) -> None:  # type: ignore[no-untyped-def]
    partitions, batch = 4, 500
    env = make_env(
        models=["logreg"],
        topic_partitions=partitions,
        batch_size=batch,
        checkpoint_every_events=1_000,
    )
    events = list(dataset_events("clicks", limit=20_000, model="logreg", seed=12))
    messages = [encode(e) for e in events]
    expected = uninterrupted(env.settings, messages, partitions)
    doomed, survivor = env.start_worker(), env.start_worker()
    env.wait_for_group_members(2)

    feeder = Feeder(env, messages, partitions, rate=4_000)
    feeder.start()
    while env.count(env.settings.predictions_topic) < 6_000:
        time.sleep(0.05)
    doomed.kill()
    feeder.finish()
    predictions = all_predictions(env, events)
    assert survivor.stop() == 0, survivor.tail()

    duplicates = check_predictions(predictions, expected.predictions, 0)
    print(f"one of two workers killed, {len(events)} events: {duplicates} duplicates")
    check_other_outputs(env, expected)
    check_final_models(env, expected.learners, len(events) // partitions)


def test_the_worker_rides_out_a_broker_restart(make_env, local_kafka) -> None:  # type: ignore[no-untyped-def]
    assert local_kafka is not None, (
        "this test stops and restarts the broker: run it on the local broker (unset "
        "RIVERRUN_BROKER)"
    )
    env = make_env(models=["logreg"], checkpoint_every_events=2_000)
    events = list(dataset_events("clicks", limit=12_000, model="logreg", seed=13))
    messages = [encode(e) for e in events]
    expected = uninterrupted(env.settings, messages, 1)
    worker = env.start_worker()
    feeder = Feeder(env, messages, 1, rate=1_500)
    feeder.start()
    while env.count(env.settings.predictions_topic) < 3_000:
        time.sleep(0.05)
    local_kafka.down()
    time.sleep(3)  # the worker sees the broker gone
    local_kafka.up(timeout=120)
    feeder.finish()
    predictions = all_predictions(env, events)
    assert worker.process.poll() is None  # the same process: it recovered by itself
    assert worker.stop() == 0, worker.tail()

    # A send retried after the broker came back may have landed before; the idempotent
    # producer writes it once (docs: Concepts > Guarantees), the bound is what at least once allows.
    bound = MAX_BATCHES_IN_FLIGHT * env.settings.batch_size
    check_predictions(predictions, expected.predictions, bound)
    check_final_models(env, expected.learners, len(events))


def test_a_corrupted_checkpoint_is_refused_and_the_previous_one_used(make_env) -> None:  # type: ignore[no-untyped-def]
    env = make_env(models=["ctr_tree"], checkpoint_every_events=4_000, batch_size=1_000)
    events = list(dataset_events("clicks", limit=15_000, model="ctr_tree", seed=14))
    first, second = events[:12_000], events[12_000:]
    expected = uninterrupted(env.settings, [encode(e) for e in events], 1)
    learners = expected.learners

    worker = env.start_worker()
    env.produce([encode(e) for e in first])
    env.read(env.settings.predictions_topic, len(first))
    assert worker.stop() == 0, worker.tail()

    # Flip one bit in the newest checkpoint (the one at offset 12,000) and write its
    # chunks again: it is now the newest version of each of its keys.
    (replica,) = checkpoints(env).values()
    found, _ = gather(v for _, v in replica)
    newest, previous = found[0], found[1]
    # Every 4,000 events, at batch ends (so not exactly at 8,000), and at the stop.
    assert newest.header.next_offset == 12_000 and 8_000 <= previous.header.next_offset < 12_000
    assert previous.header.payload_bytes > 1_000_000 and previous.header.chunks > 2
    keyed = [
        (k, v) for k, v in replica if parse_chunk(v)[0].checkpoint_id == newest.header.checkpoint_id
    ]
    key, value = keyed[-1]
    corrupted = value[:-100] + bytes([value[-100] ^ 0x10]) + value[-99:]
    assert corrupted.startswith(MAGIC)
    producer = KafkaProducer(bootstrap_servers=env.settings.bootstrap_servers)
    for k, v in [*keyed[:-1], (key, corrupted)]:
        producer.send(env.settings.checkpoints_topic, key=k, value=v, partition=0)
    producer.flush()
    producer.close()

    worker = env.start_worker()
    env.produce([encode(e) for e in second])
    messages = env.read(env.settings.predictions_topic, len(events))
    samples = worker.scrape()
    assert worker.stop() == 0, worker.tail()

    refused = 'riverrun_checkpoints_refused_total{model="ctr_tree",partition="0",reason="unauthenticated"}'
    assert samples[refused] == 1.0
    restored = samples['riverrun_restored_offset{model="ctr_tree",partition="0"}']
    assert restored == previous.header.next_offset
    assert 'riverrun_checkpoint_age_seconds{model="ctr_tree",partition="0"}' in samples
    assert samples["riverrun_restore_duration_seconds_count"] == 1
    log = worker.log_path.read_text()
    assert re.search(r"checkpoint refused for .*ctr_tree.*unauthenticated", log)
    # Restored from the previous checkpoint, the events after it re-learnt without
    # sending their outputs again: the second worker's predictions are exactly the uninterrupted run's.
    assert env.count(env.settings.predictions_topic) == len(events)
    predictions = [Prediction.model_validate_json(m.value) for m in messages]
    check_predictions(predictions, expected.predictions, 0)
    check_final_models(env, learners, len(events))
