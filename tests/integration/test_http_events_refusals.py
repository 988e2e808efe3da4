"""`POST /v1/events` against a real worker refuses (400) what the stream would
dead-letter whatever its state, with the dead letter's own type and reason; what depends
on a replica's state (a duplicate id) is accepted and left to the stream."""

from typing import Any

from schemas import DeadLetter, InputEvent
from tests.integration.test_http_api import api, call, until_answered


def event(event_id: str, model: str, label: Any, key: str = "k") -> dict[str, Any]:
    return {
        "event_id": event_id,
        "ts": "2026-12-01T00:00:00Z",
        "model": model,
        "key": key,
        "features": {"price": 0.5},
        "label": label,
    }


def test_labels_the_models_task_refuses_get_400_with_the_dead_letters_reason(make_env) -> None:  # type: ignore[no-untyped-def]
    env = make_env(models=["logreg", "linreg", "softmax"])
    worker = env.start_worker()
    env.wait_for_group_members(1)
    until_answered(api(worker) + "/v1/models/logreg/predict", {"key": "k", "features": {}})
    wrong = [
        event("bad-1", "logreg", "true"),
        event("bad-2", "linreg", "3.2"),
        event("bad-3", "softmax", 2.5),
    ]
    # On the stream, each becomes a dead letter ...
    env.produce([(b"k", InputEvent.model_validate(e).model_dump_json().encode()) for e in wrong])
    letters = [
        DeadLetter.model_validate_json(m.value)
        for m in env.read(env.settings.dead_letters_topic, 3)
    ]
    assert [letter.error_type.value for letter in letters] == ["invalid_label"] * 3
    # ... over HTTP each is refused at once, with the same type and reason (before: 202).
    for body, letter in zip(wrong, letters, strict=True):
        status, answer, _ = call(api(worker) + "/v1/events", body)
        assert (status, answer) == (400, {"error": "invalid_label", "reason": letter.reason})
    # In a list, the reason names the item, and nothing of the list is appended.
    status, answer, _ = call(api(worker) + "/v1/events", [event("ok-1", "logreg", True), wrong[0]])
    assert status == 400
    assert answer["reason"] == "[1]: " + letters[0].reason
    assert env.count(env.settings.events_topic) == 3

    # Labels the task takes are accepted: 0/1 and booleans, numbers, classes.
    good = [
        event("ok-1", "logreg", 1),
        event("ok-2", "linreg", 3.2),
        event("ok-3", "softmax", "cat"),
        event("ok-4", "logreg", None),
    ]
    status, answer, _ = call(api(worker) + "/v1/events", good)
    assert status == 202, answer
    # A duplicate id depends on what the replica processed lately: left to the stream.
    status, answer, _ = call(api(worker) + "/v1/events", good[0])
    assert status == 202, answer
    [duplicate] = [
        DeadLetter.model_validate_json(m.value)
        for m in env.read(env.settings.dead_letters_topic, 4)
    ][3:]
    assert duplicate.error_type.value == "duplicate_event" and "'ok-1'" in duplicate.reason
