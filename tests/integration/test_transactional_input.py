"""Events written by a transactional producer (as an upstream exactly-once job writes
them) are consumed across restarts.

A transaction's commit marker takes an offset of its own, which no consumer is ever
given: the offset a worker commits after a transaction's last event is that marker's,
and the first record a restarted worker fetches lies one further. It must start there
rather than take the record for one fetched before its seek and drop it forever.
"""

import pytest
from confluent_kafka import Producer

from schemas import decode_prediction
from streams.cli.replay import dataset_events, encode

pytestmark = pytest.mark.integration


def produce_in_a_transaction(
    bootstrap: str, topic: str, messages: list[tuple[bytes, bytes]]
) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": f"{topic}-upstream"})
    producer.init_transactions(30)
    producer.begin_transaction()
    for key, value in messages:
        producer.produce(topic, value, key)
    producer.commit_transaction(30)


def test_a_restarted_worker_resumes_after_a_transactions_commit_marker(make_env) -> None:  # type: ignore[no-untyped-def]
    env = make_env(models=["logreg"], processing_guarantee="exactly_once")
    s = env.settings
    events = [encode(e) for e in dataset_events("clicks", limit=400, model="logreg", seed=5)]
    produce_in_a_transaction(s.bootstrap_servers, s.events_topic, events[:200])
    worker = env.start_worker()
    env.read(s.predictions_topic, 200)
    assert worker.stop() == 0, worker.tail()  # commits offset 200: the commit marker's

    produce_in_a_transaction(s.bootstrap_servers, s.events_topic, events[200:])
    worker = env.start_worker()
    predictions = env.read(s.predictions_topic, 400, timeout=60)
    assert len({decode_prediction(m.value).event_id for m in predictions}) == 400
    assert worker.stop() == 0, worker.tail()
