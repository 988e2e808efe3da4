"""Request-time predictions (online_models.learning.request_time) and the API's pure parts
(streams.http.server): the version the stream would route a key to, the prediction it would
make, nothing changed by asking; keys placed as producers place them; bearer tokens."""

import asyncio
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import TopicPartition
from kafka.partitioner.default import murmur2
from pydantic import SecretStr

from online_models.learning.learner import Learner, LearningError
from online_models.learning.request_time import Answer, predict_now
from online_models.versions import plans as control
from schemas import InputEvent
from schemas.codec import InvalidMessage, decode_many
from schemas.control import BanditPlan, ModelPlan, PartitionOwner
from schemas.serving import PredictRequest, RequestPrediction
from streams.http.server import Api, Unavailable, answer_json, bearer_check, partition_of
from streams.runtime.control import ControlState
from streams.runtime.metrics import WorkerMetrics
from streams.services import events as hot_path
from streams.services.event_pipeline import EventPipeline
from streams.services.events import EventsPartition
from streams.settings import Settings
from tests.builtin import MODELS
from tests.unit.test_lifecycle import GOOD, clicks, learner_with, run


def test_a_key_goes_to_the_partition_a_kafka_producer_puts_it_in() -> None:
    for count in (1, 2, 3, 6, 12):  # kafka-python's murmur2: a second implementation
        for key in ("visitor-7", "v0", "ü-ñ", "x" * 200, *(f"k{i}" for i in range(200))):
            expected = (murmur2(key.encode()) & 0x7FFFFFFF) % count
            assert partition_of(key, count) == expected, (key, count)


def test_the_prediction_is_the_one_the_stream_would_make_and_nothing_is_learnt() -> None:
    learner = Learner(["logreg"], registry=MODELS)
    events = clicks(500)
    run(learner, events)
    served = learner.models["logreg"]
    before = (served.updates, len(served.evaluator.headline() or ()), served.estimator)
    asked = [predict_now(learner, "logreg", e.key, e.features) for e in clicks(50, start=500)]
    assert (served.updates, len(served.evaluator.headline() or ())) == before[:2]
    # The stream, given the same features unlabelled, predicts exactly the same.
    unlabelled = clicks(50, start=500, label=False)
    stream = run(learner, unlabelled, 500)
    assert [a.prediction for a in asked] == [p.prediction for p in stream]
    assert {(a.version, a.role, a.updates) for a in asked} == {(served.version, "champion", 500)}
    # The request's features did not enter the de-duplication window either.
    assert run(learner, clicks(1, start=550), 550)[0].learned


def test_a_canary_key_is_answered_by_the_canary_as_the_stream_routes_it() -> None:
    def edits(plan: ModelPlan, spec: Any) -> ModelPlan:
        return control.deploy(plan, spec.with_params(**GOOD), role="canary", share=0.5)

    learner, _ = learner_with(edits)
    run(learner, clicks(300))
    events = clicks(200, start=300, label=False)
    asked = [predict_now(learner, "logreg", e.key, e.features) for e in events]
    stream = run(learner, events, 300)
    assert [(a.version, a.role, a.prediction) for a in asked] == [
        (p.model_version, p.routing.role, p.prediction) for p in stream
    ]
    assert {a.role for a in asked} == {"champion", "canary"}


def test_asking_under_a_bandit_draws_nothing_and_follows_the_keys_waiting_decision() -> None:
    def edits(plan: ModelPlan, spec: Any) -> ModelPlan:
        plan = control.deploy(plan, spec.with_params(**GOOD), role="shadow")
        arms = [spec.version, spec.with_params(**GOOD).version]
        return control.start_bandit(plan, BanditPlan(policy="thompson", arms=arms, seed=3))

    quiet, _ = learner_with(edits)
    asked_often, _ = learner_with(edits)
    events = clicks(400, label=False)
    for i, event in enumerate(events):
        expected = run(quiet, [event], i)[0]
        for other in events[:5]:  # requests in between: no decision, no draw
            predict_now(asked_often, "logreg", other.key, other.features)
        got = run(asked_often, [event], i)[0]
        assert (got.model_version, got.routing) == (expected.model_version, expected.routing)
        # The key now waits for its outcome: a request for it is answered by that arm.
        answer = predict_now(asked_often, "logreg", event.key, event.features)
        assert (answer.version, answer.arm, answer.role) == (
            got.model_version,
            got.routing.arm,
            "arm",
        )
    bandit = asked_often.groups["logreg"].state.bandit
    assert bandit is not None and bandit.decisions == len(events)


def test_an_unknown_model_is_refused_with_the_dead_letters_reason() -> None:
    with pytest.raises(LearningError) as refused:
        predict_now(Learner(["logreg"], registry=MODELS), "nope", "k", {})
    assert refused.value.error_type.value == "unknown_model"
    assert "no model named 'nope' is served here (served: logreg)" in refused.value.reason


def test_the_answer_is_a_request_prediction_of_the_committed_schema() -> None:
    binary = Answer("logreg", "logreg@1", "canary", "binary", 0.25, 7)
    body = answer_json(binary, "k", 1, 40)
    assert RequestPrediction.model_validate(body).prediction == 0.25
    assert "probabilities" not in body and "arm" not in body
    multiclass = Answer(
        "seg",
        "seg@1",
        "arm",
        "multiclass",
        {True: 0.2, 3: 0.5, "sky": 0.3},
        2,
        arm="seg@1",
        experiment="x",
    )
    body = answer_json(multiclass, "k", 0, 9)
    parsed = RequestPrediction.model_validate(body)
    assert (parsed.prediction, parsed.probabilities) == (3, {"true": 0.2, "3": 0.5, "sky": 0.3})
    assert (parsed.arm, parsed.experiment) == ("seg@1", "x")
    empty = answer_json(Answer("seg", "seg@1", "champion", "multiclass", {}, 0), "k", 0, 0)
    assert (empty["prediction"], empty["probabilities"]) == (None, {})


def test_requests_are_validated_as_events_are_with_the_item_named() -> None:
    raw = b'[{"key": "a", "features": {}}, {"key": "b", "features": {"x": [1]}}]'
    with pytest.raises(InvalidMessage) as invalid:
        decode_many(PredictRequest, raw, max_bytes=10_000, max_items=10)
    assert invalid.value.reason.startswith("invalid PredictRequest v1: [1].features.x: expected")
    many = b"[" + b",".join([b'{"key": "a", "features": {}}'] * 11) + b"]"
    with pytest.raises(InvalidMessage, match="a list of 11 PredictRequests: send 1 to 10"):
        decode_many(PredictRequest, many, max_bytes=10_000, max_items=10)
    with pytest.raises(InvalidMessage, match="over the 100-byte limit"):
        decode_many(PredictRequest, many, max_bytes=100, max_items=10)
    # The same reason as the dead letter of the same event on the stream.
    event = b'{"event_id": "e", "ts": 0, "model": "m", "key": "k", "features": {"a": "x"}, "b": 1}'
    with pytest.raises(InvalidMessage) as one:
        decode_many(InputEvent, event, max_bytes=10_000, max_items=10)
    with pytest.raises(InvalidMessage) as listed:
        decode_many(InputEvent, b"[" + event + b"]", max_bytes=10_000, max_items=10)
    assert listed.value.reason.replace("[0].", "") == one.value.reason


@pytest.mark.parametrize(
    ("header", "accepted"),
    [
        ("Bearer t1", True),
        ("bearer t2", True),
        ("Bearer  t2 ", True),
        ("Bearer t3", False),
        ("Basic t1", False),
        ("t1", False),
        (None, False),
        ("Bearer ", False),
    ],
)
def test_bearer_tokens_any_of_the_configured_ones(header: str | None, accepted: bool) -> None:
    assert bearer_check(Settings(api_tokens=SecretStr("t1, t2")))(header) is accepted
    assert bearer_check(Settings())(header) is True  # no tokens: open


def test_of_two_owner_claims_the_newer_generation_wins_and_claims_are_signed() -> None:
    def claim(generation: int, url: str) -> PartitionOwner:
        return PartitionOwner(
            topic="events",
            partition=3,
            url=url,
            generation=generation,
            worker="w",
            at=datetime(2026, 1, 1, tzinfo=UTC),
        )

    state = ControlState()
    for message in (claim(4, "http://b"), claim(3, "http://a"), claim(4, "http://c")):
        assert state.add(control.sign(message, b"key").model_dump_json().encode(), b"key")
    assert state.owners["events", 3].url == "http://c"  # 3 came late: older, ignored
    assert state.add(claim(9, "http://evil").model_dump_json().encode(), b"key") is None
    assert state.refused == ["unsigned"] and state.owners["events", 3].url == "http://c"


def test_api_settings_that_cannot_work_are_refused_and_sink_tokens_are_masked() -> None:
    with pytest.raises(ValueError, match="RIVERRUN_API_PORT and RIVERRUN_METRICS_PORT are both"):
        Settings(api_port=9464)
    Settings(api_port=9464, api_enabled=False)
    # Any: a sink given as RIVERRUN_PUSH_SINKS's JSON gives it; pydantic makes the PushSink.
    sink: Any = {"name": "audience", "url": "https://ads.example/v1", "token": "sink-secret"}
    with pytest.raises(ValueError, match="names a sink twice"):
        Settings(push_sinks=[sink, sink])
    settings = Settings(push_sinks=[sink], api_tokens=SecretStr("api-secret"))
    shown = " ".join(value for _, value, _ in settings.shown())
    assert "sink-secret" not in shown and "api-secret" not in shown
    assert "sink-secret" in settings.as_environment()["RIVERRUN_PUSH_SINKS"]  # for a child
    assert Settings(api_host="0.0.0.0").api_url.startswith("http://")
    assert Settings(api_advertised_url="https://w1.example:8443/").api_url == (
        "https://w1.example:8443"
    )


def api_over(
    owned: dict[Any, Any],
    assigned: set[Any],
    owners: dict[Any, Any] | None = None,
    rebalancing: bool = False,
) -> Any:
    """The API over an events service (not started) in the given ownership state."""
    settings, metrics = Settings(api_port=9465), WorkerMetrics()
    events: Any = hot_path.BatchedEvents(settings, metrics, {})
    # (its consumer's assignment: `assignment()` on aiokafka, `assigned` on confluent-kafka)
    events.consumer = SimpleNamespace(assignment=lambda: assigned, assigned=assigned)
    events.control = SimpleNamespace(state=ControlState(owners=owners or {}))
    events.owned, events.rebalancing = owned, rebalancing
    return Api(settings, metrics, events)


def test_a_partition_answers_here_only_once_restored_and_caught_up() -> None:
    tp = TopicPartition("events", 0)
    state = EventsPartition(tp, Learner(["logreg"], registry=MODELS))
    state.positions[tp], state.replay_until[tp] = 40, 100
    with pytest.raises(Unavailable, match="being restored"):
        api_over({}, {tp}).local(0)  # assigned, its restore not done
    with pytest.raises(Unavailable, match="re-running events"):
        api_over({tp: state}, {tp}).local(0)  # restored at 40, outputs delivered up to 100
    state.learnt_until = 100
    assert api_over({tp: state}, {tp}).local(0) is state
    assert api_over({tp: state}, {tp}).next_offset(state) == 100
    with pytest.raises(Unavailable, match="rebalancing"):
        api_over({tp: state}, {tp}, rebalancing=True).local(0)
    assert api_over({}, set()).local(0) is None  # another worker's: forward it


def test_a_request_is_forwarded_only_to_another_workers_claim() -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    here = Settings(api_port=9465).api_url
    claims = {
        ("events", 1): PartitionOwner(
            topic="events", partition=1, url="http://w2:9465", generation=2, worker="w2", at=at
        ),
        ("events", 2): PartitionOwner(
            topic="events", partition=2, url=here, generation=2, worker="w1", at=at
        ),
    }
    api = api_over({}, set(), claims)
    assert api.owner(1) == "http://w2:9465"
    with pytest.raises(Unavailable, match="no worker owns partition 2"):
        api.owner(2)  # a stale claim of this worker's own: never forwarded to itself
    with pytest.raises(Unavailable, match="no worker owns partition 3"):
        api.owner(3)


def test_a_batch_hands_the_loop_back_between_slices_with_learnt_until_exact(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(hot_path, "SLICE_SECONDS", 0.0)  # hand it back after every slice
    tp = TopicPartition("events", 0)
    state = EventsPartition(tp, Learner(["logreg"], registry=MODELS))
    events = clicks(100)
    messages = [
        SimpleNamespace(value=e.model_dump_json().encode(), offset=1000 + i)
        for i, e in enumerate(events)
    ]
    seen: list[tuple[int | None, int]] = []  # what a request between slices would see

    async def learn_and_look() -> list[Any]:
        done = asyncio.Event()

        async def look() -> None:
            while not done.is_set():
                seen.append((state.learnt_until, state.learner.models["logreg"].updates))
                await asyncio.sleep(0)

        looking = asyncio.create_task(look())
        pipeline = EventPipeline(state.learner, 10_000)
        outputs: list[Any] = []
        service: Any = SimpleNamespace(received_at=0.0)  # all _learn reads of the service
        async for sliced, found in hot_path.BatchedEvents._learn(
            service, state, pipeline, messages
        ):
            assert sliced == messages[len(outputs) : len(outputs) + len(sliced)]
            outputs.extend(found)
        done.set()
        await looking
        return outputs

    outputs = asyncio.run(learn_and_look())
    assert [o.event_id for o in outputs] == [e.event_id for e in events]
    slices = -(-len(events) // hot_path.SLICE_EVENTS)
    during = [(until, updates) for until, updates in seen if until is not None]
    assert len({until for until, _ in during}) >= slices - 1  # it yielded within the batch
    for learnt_until, updates in during:  # every event below learnt_until, none from it
        assert updates == learnt_until - 1000
    assert state.learnt_until == 1100
