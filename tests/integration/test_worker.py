"""The worker against the real broker: N in -> N out, dead letters, restarts, metrics."""

import json

from kafka import KafkaProducer

from online_models import Learner
from schemas import DeadLetter, ErrorType, Prediction
from streams.cli.replay import dataset_events, encode
from tests.builtin import MODELS


def phishing(n: int, prefix: str = "") -> list:  # type: ignore[type-arg]
    return list(dataset_events("phishing", limit=n, model=None, seed=42, id_prefix=prefix))


def test_every_event_gets_its_prediction_keyed_by_event_id(make_env) -> None:  # type: ignore[no-untyped-def]
    env = make_env()
    events = phishing(400)
    env.start_worker()
    env.produce([encode(e) for e in events])

    messages = env.read(env.settings.predictions_topic, len(events))
    predictions = [Prediction.model_validate_json(m.value) for m in messages]

    assert len(messages) == len(events)  # nothing missing, nothing extra
    assert [m.key.decode() for m in messages] == [e.event_id for e in events]
    assert {p.model_version for p in predictions} == {MODELS["logreg"].version}
    # The stream's predictions are exactly those of the same learner run in process.
    expected = Learner(["logreg"], registry=MODELS).process(events)
    assert [p.prediction for p in predictions] == [e.prediction for e in expected]  # type: ignore[union-attr]
    assert all(p.learned for p in predictions)
    assert [p.model_updates for p in predictions] == list(range(len(events)))


def test_bad_messages_are_dead_lettered_and_good_ones_all_predicted(make_env) -> None:  # type: ignore[no-untyped-def]
    env = make_env(max_event_bytes=2000)
    good = [encode(e) for e in phishing(100)]
    bad = [
        (b"b1", b"{not json"),
        (
            b"b2",
            b'{"event_id": "x", "ts": 0, "model": "logreg", "key": "k", "features": {"a": NaN}}',
        ),
        (b"b3", b'{"event_id": "x", "ts": 0, "model": "nope", "key": "k", "features": {}}'),
        (b"b4", b'{"event_id": "x", "ts": 0, "model": "logreg", "features": {}}'),
        (b"b5", b"\xff\xfe binary"),
        (b"b6", b'{"pad": "' + b"x" * 3000 + b'"}'),
        (
            b"b7",
            b'{"event_id": "x", "ts": 0, "model": "logreg", "key": "k", "features": {}, "label": 7}',
        ),
    ]
    expected_types = [
        "invalid_json",
        "invalid_event",
        "unknown_model",
        "invalid_event",
        "invalid_json",
        "oversized",
        "invalid_label",
    ]
    messages = good[:50] + bad + good[50:]
    env.start_worker()
    env.produce(messages)

    predictions = env.read(env.settings.predictions_topic, len(good))
    letters = [
        DeadLetter.model_validate_json(m.value)
        for m in env.read(env.settings.dead_letters_topic, len(bad))
    ]
    assert [p.key for p in predictions] == [key for key, _ in good]
    assert [d.error_type.value for d in letters] == expected_types
    assert [d.source_offset for d in letters] == list(range(50, 50 + len(bad)))
    assert {d.source_topic for d in letters} == {env.settings.events_topic}
    # Payloads are kept byte for byte, the oversized one (b6) up to max_event_bytes.
    assert [d.original_payload() for d in letters] == [value[:2000] for _, value in bad]
    assert [d.payload_truncated for d in letters] == [False] * 5 + [True, False]
    assert letters[5].payload_bytes == len(bad[5][1])
    assert letters[4].payload_encoding == "base64"
    assert all(len(d.reason) > 20 for d in letters)
    assert env.count(env.settings.predictions_topic) == len(good)  # no extra output


def test_restart_resumes_from_committed_offsets(make_env) -> None:  # type: ignore[no-untyped-def]
    env = make_env()
    events = phishing(600)
    first, second = events[:300], events[300:]
    worker = env.start_worker()
    env.produce([encode(e) for e in first])
    env.read(env.settings.predictions_topic, len(first))
    assert worker.stop() == 0, worker.tail()

    env.produce([encode(e) for e in second])
    env.start_worker()
    messages = env.read(env.settings.predictions_topic, len(events))
    # A clean stop commits its offsets: the second worker starts after the last event
    # the first one processed, so every event is predicted exactly once.
    assert [m.key.decode() for m in messages] == [e.event_id for e in events]
    assert env.count(env.settings.predictions_topic) == len(events)


def test_activity_is_validated_and_counted_and_metrics_are_exported(make_env) -> None:  # type: ignore[no-untyped-def]
    env = make_env()
    activity = [
        json.dumps(
            {"visitor": f"v{i}", "ts": i, "type": "page_view" if i % 3 else "search"}
        ).encode()
        for i in range(30)
    ]
    worker = env.start_worker()
    env.produce(
        [(b"v", a) for a in activity] + [(b"v", b'{"visitor": "v"}')],
        topic=env.settings.activity_topic,
    )
    events = phishing(50)
    env.produce([encode(e) for e in events])
    env.read(env.settings.predictions_topic, len(events))
    letters = env.read(env.settings.dead_letters_topic, 1)
    assert DeadLetter.model_validate_json(letters[0].value).error_type is ErrorType.INVALID_EVENT

    samples = worker.scrape()
    s = env.settings
    assert samples[f'riverrun_events_consumed_total{{topic="{s.events_topic}"}}'] == 50
    assert samples[f'riverrun_events_consumed_total{{topic="{s.activity_topic}"}}'] == 31
    assert samples['riverrun_activity_events_total{type="page_view"}'] == 20
    assert samples['riverrun_activity_events_total{type="search"}'] == 10
    assert samples['riverrun_predictions_total{model="logreg"}'] == 50
    assert samples['riverrun_events_learned_total{model="logreg"}'] == 50
    key = f'riverrun_dead_letters_total{{error_type="invalid_event",topic="{s.activity_topic}"}}'
    assert samples[key] == 1
    assert samples['riverrun_predict_latency_seconds_count{model="logreg"}'] == 50
    assert samples[f'riverrun_consumer_lag_messages{{partition="0",topic="{s.events_topic}"}}'] == 0
    # The rolling quality gauge equals the same rolling logloss computed offline.
    offline = Learner(["logreg"], evaluation=s.evaluation(), registry=MODELS)
    offline.process(events)
    assert (
        samples['riverrun_model_quality{metric="logloss",model="logreg",partition="0"}']
        == offline.quality()["logreg"][1]
    )


def test_rebalance_to_a_second_worker_loses_and_repeats_nothing(make_env) -> None:  # type: ignore[no-untyped-def]
    env = make_env(topic_partitions=2)
    events = list(dataset_events("clicks", limit=6000, model="logreg", seed=3))
    first = env.start_worker()
    env.produce([encode(e) for e in events[:3000]])
    env.read(env.settings.predictions_topic, 1000)  # the first worker is busy
    second = env.start_worker()  # joins: partitions are revoked, drained, committed, reassigned
    env.wait_for_group_members(2)

    env.produce([encode(e) for e in events[3000:]])
    messages = env.read(env.settings.predictions_topic, len(events), timeout=120)

    # A graceful rebalance commits every processed batch first: each event exactly once.
    assert sorted(m.key.decode() for m in messages) == sorted(e.event_id for e in events)
    assert env.count(env.settings.predictions_topic) == len(events)
    # Inputs and predictions are keyed by event id with Kafka's default partitioner, so
    # input partition p maps to output partition p; within it, predictions come out in
    # the input's offset order.
    inputs = env.read(env.settings.events_topic, len(events))
    for partition in (0, 1):
        expected = [m.key for m in inputs if m.partition == partition]
        assert expected, "both partitions hold events"
        assert [m.key for m in messages if m.partition == partition] == expected
    # Both workers took part: each predicted some of the second half.
    for worker in (first, second):
        worker.assert_alive()
        assert worker.scrape()['riverrun_predictions_total{model="logreg"}'] > 0


def test_a_message_larger_than_a_kafka_message_is_dead_lettered_not_fatal(make_env) -> None:  # type: ignore[no-untyped-def]
    env = make_env()
    huge = b'{"pad": "' + b"x" * 3_000_000 + b'"}'  # the local broker accepts up to 8 MiB
    producer = KafkaProducer(
        bootstrap_servers=env.settings.bootstrap_servers, max_request_size=8 << 20
    )
    good = [encode(e) for e in phishing(20)]
    for key, value in [*good[:10], (b"huge", huge), *good[10:]]:
        producer.send(env.settings.events_topic, key=key, value=value)
    producer.flush()
    producer.close()
    worker = env.start_worker()

    predictions = env.read(env.settings.predictions_topic, len(good))
    (letter,) = [
        DeadLetter.model_validate_json(m.value)
        for m in env.read(env.settings.dead_letters_topic, 1)
    ]
    assert [m.key for m in predictions] == [key for key, _ in good]
    assert letter.error_type is ErrorType.OVERSIZED
    assert (letter.payload_bytes, letter.payload_truncated) == (len(huge), True)
    assert letter.original_payload() == huge[: env.settings.max_event_bytes]
    worker.assert_alive()
