"""The delayed-feedback join through the real broker, across a worker restart with
impressions still pending: the streamed labels are exactly the offline join's."""

from typing import Any

from online_models.feedback.data import delayed_feedback
from online_models.feedback.joiner import FeedbackJoiner
from schemas import Prediction
from schemas.feedback import Impression, Outcome
from streams.cli.replay import feedback_messages, produce_to_topics
from streams.kafka.topics import TopicReader
from streams.settings import Settings
from tests.builtin import MODELS
from tests.unit.test_joiner import scored

#: The join of the tests: one product, a click window of 10 minutes and a conversion
#: window of 6 hours, for one model.
JOIN = {
    "join_enabled": True,
    "products": ["shoes"],
    "click_window_seconds": 600,
    "conversion_window_seconds": 6 * 3600,
    "models": ["logreg"],
}


def offline_outcomes(settings: Settings, events: list[Any]) -> list[Outcome]:
    """The outcomes the offline join (the same `FeedbackJoiner`, in memory) finds in `events`."""
    offline = FeedbackJoiner(
        settings.join(), settings.evaluation(), params=settings.model_params, registry=MODELS
    )
    return [o for out in offline.process(events) for o in out if isinstance(o, Outcome)]


def test_the_join_labels_impressions_across_a_restart_with_pending_ones(make_env) -> None:  # type: ignore[no-untyped-def]
    env = make_env(**JOIN, join_report_every=500)
    s = env.settings
    stream = delayed_feedback(4_000, seed=21, visitors=300, products=("shoes",))
    events = stream.events
    expected = offline_outcomes(s, events)
    labels = sorted((o.impression_id, o.model, o.label) for o in expected)
    impressions = [e for e in events if isinstance(e, Impression)]
    cut = events.index(impressions[len(impressions) * 3 // 5])  # after 60 % of impressions
    first, second = events[:cut], events[cut:]
    first_impressions = sum(isinstance(e, Impression) for e in first)
    assert first_impressions == 2_400

    # Each part is in the topics before a worker reads it, so that the worker merges the
    # four topics exactly in event-time order and its predictions can be compared bit
    # for bit (produced while it runs, the labels are still the same: see the demo).
    produce_to_topics(s, feedback_messages(first, s))
    worker = env.start_worker()
    # Two predictions (click model, shoes propensity) per impression.
    env.read(s.predictions_topic, 2 * first_impressions, timeout=120)
    samples = worker.scrape()
    pending = samples['riverrun_join_pending_impressions{partition="0"}']
    assert pending > 0  # the restart happens with impressions waiting for labels
    assert worker.stop() == 0, worker.tail()
    before = env.count(s.outcomes_topic)

    produce_to_topics(s, feedback_messages(second, s))
    worker = env.start_worker()
    messages = env.read(s.outcomes_topic, len(expected), timeout=120)
    predictions = env.read(s.predictions_topic, 2 * len(impressions), timeout=60)
    samples = worker.scrape()
    assert worker.stop() == 0, worker.tail()

    streamed = [Outcome.model_validate_json(m.value) for m in messages]
    assert env.count(s.outcomes_topic) == len(expected)  # nothing twice
    assert sorted((o.impression_id, o.model, o.label) for o in streamed) == labels
    # Impressions scored before the restart were labelled after it.
    first_ids = {e.impression_id for e in first if isinstance(e, Impression)}
    assert any(o.impression_id in first_ids for o in streamed[before:])
    assert {Prediction.model_validate_json(m.value).event_id for m in predictions} == {
        e.impression_id for e in impressions
    }
    assert samples['riverrun_join_events_total{kind="click_positives"}'] > 0
    assert samples['riverrun_join_delay_seconds_count{label_type="click"}'] > 0
    # The join merged the four topics in event-time order, as the offline run read them:
    # the same predictions, bit for bit, across the restart.
    want = {(o.impression_id, o.model): o.prediction for o in expected}
    assert {(o.impression_id, o.model): o.prediction for o in streamed} == want
    # Calibration of the click model once it has learnt (second half of the labels).
    clicks = [o for o in streamed if o.label_type == "click"]
    late = clicks[len(clicks) // 2 :]
    predicted, actual = sum(scored(o) for o in late), sum(o.label for o in late)
    assert abs(predicted - actual) < 4 * actual**0.5


def test_the_join_delivers_each_outcome_once_with_exactly_once(make_env) -> None:  # type: ignore[no-untyped-def]
    """The join's outputs and offsets are one transaction per batch, like the events
    path's: a read_committed consumer sees each outcome once, the offline join's labels."""
    env = make_env(
        **JOIN,
        batch_size=200,
        processing_guarantee="exactly_once",
        transactional_id="join-once",
    )
    s = env.settings
    events = delayed_feedback(1_500, seed=5, visitors=100, products=("shoes",)).events
    expected = offline_outcomes(s, events)
    produce_to_topics(s, feedback_messages(events, s))
    worker = env.start_worker()
    messages = env.read_until(
        s.outcomes_topic, lambda m: len(m) >= len(expected), isolation_level="read_committed"
    )
    assert worker.stop() == 0, worker.tail()
    streamed = [Outcome.model_validate_json(m.value) for m in messages]
    assert sorted((o.impression_id, o.model, o.label) for o in streamed) == sorted(
        (o.impression_id, o.model, o.label) for o in expected
    )
    with TopicReader(s, [s.outcomes_topic], isolation_level="read_committed") as reader:
        assert len(reader.read_to_end()) == len(expected)  # each outcome once, none after
