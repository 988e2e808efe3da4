"""A global model (the default scope) learns from every partition: 4 partitions, 2
workers, one learner, snapshots every worker predicts with.

The events of the click stream are spread over 4 partitions by visitor, as Kafka
spreads keys; each worker predicts its partitions' events with the newest snapshot and
writes their labelled ones to the learn topic, where all of the model's examples are in
one partition. Its learner's metrics reports equal an offline run over that order.
"""

import json
import struct
import time
import urllib.request
from collections import Counter
from typing import Any

import pytest
from kafka import KafkaProducer

from online_models.learning.checkpoint import parse_chunk
from online_models.quality.offline import run_offline
from schemas import InputEvent, MetricsReport, decode_prediction
from schemas.checkpoint import MAGIC
from streams.cli.replay import dataset_events, encode
from streams.kafka.clients import partition_of
from tests.builtin import MODELS
from tests.integration.conftest import Env, WorkerProcess

pytestmark = pytest.mark.integration

EVENTS = 12_000
PARTITIONS = 4


def wait_for(check: Any, what: str, timeout: float, env: Env) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        for worker in env.workers:
            worker.assert_alive()
        if time.monotonic() > deadline:
            tails = "\n".join(w.tail(15) for w in env.workers)
            pytest.fail(f"{what}: not within {timeout} s\n{tails}", pytrace=False)
        time.sleep(0.2)


def sample(worker: WorkerProcess, name: str) -> float | None:
    return worker.scrape().get(name)


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_a_global_model_learns_from_every_partition_and_serves_its_snapshots(
    make_env: Any, guarantee: str
) -> None:
    env = make_env(
        models=["logreg"],
        model_scopes={},  # the default: global
        topic_partitions=PARTITIONS,
        metrics_every_events=1_000,
        snapshot_every_events=500,
        processing_guarantee=guarantee,
    )
    s = env.settings
    workers = [env.start_worker(), env.start_worker()]
    env.wait_for_group_members(2, timeout=90)
    events = list(dataset_events("clicks", limit=EVENTS, model="logreg", seed=7))
    for start in range(0, EVENTS, 1_000):  # ~2,000 events/s: snapshots come meanwhile
        env.produce([encode(e) for e in events[start : start + 1_000]])
        time.sleep(0.5)

    predictions = env.read(s.predictions_topic, EVENTS, timeout=180)
    predicted = [decode_prediction(m.value) for m in predictions]
    assert Counter(p.event_id for p in predicted) == Counter(e.event_id for e in events)
    assert {m.partition for m in predictions} == set(range(PARTITIONS))

    # The learn log: every labelled event once, all in the model's partition.
    labelled = sum(e.label is not None for e in events)
    learn = env.read(s.learn_topic, labelled, timeout=60)
    assert len(env.read_all(s.learn_topic)) == labelled
    assert {m.partition for m in learn} == {partition_of("logreg", PARTITIONS)}
    order = [InputEvent.model_validate_json(m.value) for m in sorted(learn, key=lambda m: m.offset)]
    assert Counter(e.event_id for e in order) == Counter(
        e.event_id for e in events if e.label is not None
    )

    # (a) The learner's reports are an offline run's over the learn topic's order.
    expected = run_offline(order, MODELS["logreg"], config=s.evaluation()).reports
    assert len(expected) >= 10
    streamed = [
        MetricsReport.model_validate_json(m.value)
        for m in env.read(s.metrics_topic, len(expected), timeout=60)
    ]
    assert [r.model_dump_json(exclude={"partition"}) for r in streamed] == [
        r.model_dump_json(exclude={"partition"}) for r in expected
    ]
    assert {r.partition for r in streamed} == {partition_of("logreg", PARTITIONS)}

    # Predictions say which snapshot made them: fresh (0 updates) before the first,
    # then snapshots of the one model learnt from every partition.
    updates = [p.model_updates for p in predicted]
    assert min(updates) == 0 and max(updates) >= labelled // 2, Counter(updates).most_common(5)
    assert all(p.learned is False for p in predicted)

    # Every worker ends with the newest snapshot (it learnt every example), says how
    # old it is, and scores its predictions against the labels it saw.
    for worker in workers:
        wait_for(
            lambda w=worker: sample(w, 'riverrun_snapshot_updates{model="logreg"}') == labelled,
            "the newest snapshot on every worker",
            30,
            env,
        )
        metrics = worker.scrape()
        assert metrics['riverrun_snapshot_lag_events{model="logreg"}'] >= 0
        assert metrics['riverrun_snapshot_age_seconds{model="logreg"}'] < 60
        assert any(k.startswith("riverrun_model_quality") and "served_" in k for k in metrics), [
            k for k in metrics if "quality" in k
        ]

    # (d) The same request to either worker: answered there, from the same snapshot.
    request = json.dumps({"key": "visitor-1", "features": events[-1].features}).encode()
    answers = []
    for worker in workers:
        url = f"http://127.0.0.1:{worker.api_port}/v1/models/logreg/predict"
        asked = urllib.request.Request(url, data=request, method="POST")
        asked.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(asked, timeout=10) as answer:
            assert answer.headers["X-Riverrun-Served-By"].endswith(str(worker.api_port))
            answers.append(json.loads(answer.read()))
    assert answers[0] == answers[1]
    assert answers[0]["model_updates"] == labelled, answers[0]

    # (e) A tampered snapshot (a forger's "newer" one) is refused and counted.
    chunks = [(parse_chunk(m.value), m.key) for m in env.read_all(s.snapshots_topic)]
    (header, payload), key = max(chunks, key=lambda found: found[0][0].updates)
    assert header.chunks == 1 and header.updates == labelled  # (a small model; the newest)
    text = header.model_copy(update={"updates": header.updates + 1_000}).model_dump_json()
    forged = MAGIC + struct.pack(">I", len(text)) + text.encode() + payload
    producer = KafkaProducer(**env.client_options())
    producer.send(s.snapshots_topic, key=key, value=forged).get(10)
    producer.close()
    for worker in workers:
        wait_for(
            lambda w=worker: sample(
                w, 'riverrun_snapshots_refused_total{model="logreg",reason="unauthenticated"}'
            ),
            "the tampered snapshot refused",
            30,
            env,
        )
        assert sample(worker, 'riverrun_snapshot_updates{model="logreg"}') == labelled
    for worker in workers:
        assert worker.stop() == 0, worker.tail()
    print(
        json.dumps(
            {"events": EVENTS, "labelled": labelled, "reports": len(expected)}, sort_keys=True
        )
    )
