"""Settings: mistakes are refused with a reason, never silently ignored."""

import json

import pytest
from pydantic import SecretStr, ValidationError

from schemas.formats.mapping import EventMapping
from streams.settings import Settings, describe_error


def error_of(**values: object) -> str:
    with pytest.raises(ValidationError) as err:
        Settings(**values)  # type: ignore[arg-type]
    return describe_error(err.value)


def test_a_misspelt_variable_is_an_error_with_a_suggestion(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RIVERRUN_BATCH_SIZ", "10")
    monkeypatch.setenv("RIVERRUN_ZZZ", "1")
    message = error_of()
    assert (
        "RIVERRUN_BATCH_SIZ is not a riverrun setting (did you mean RIVERRUN_BATCH_SIZE?)"
        in message
    )
    assert "RIVERRUN_ZZZ is not a riverrun setting (see the docs' Settings reference)" in message


def test_lower_case_variables_are_settings_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("riverrun_batch_size", "7")  # pydantic-settings ignores case
    assert Settings().batch_size == 7


def test_two_topics_of_the_same_name_cannot_work() -> None:
    message = error_of(predictions_topic="events")
    assert "RIVERRUN_EVENTS_TOPIC and RIVERRUN_PREDICTIONS_TOPIC are both 'events'" in message
    # The join's topics only count when the join runs.
    assert Settings(impressions_topic="clicks-in").impressions_topic == "clicks-in"
    message = error_of(join_enabled=True, clicks_topic="events")
    assert "RIVERRUN_EVENTS_TOPIC and RIVERRUN_CLICKS_TOPIC are both 'events'" in message


def test_products_without_the_join_are_refused() -> None:
    assert "RIVERRUN_PRODUCTS is set but RIVERRUN_JOIN_ENABLED is not" in error_of(products=["a"])
    assert "names a product twice" in error_of(join_enabled=True, products=["a", "a"])


def test_the_metrics_port_cannot_be_the_local_brokers() -> None:
    assert "RIVERRUN_METRICS_PORT 19093 is a port of the local broker" in error_of(
        metrics_port=19093
    )
    assert Settings(broker="kafka:9092", metrics_port=19093).metrics_port == 19093


def test_the_joins_activity_features_can_be_set_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RIVERRUN_ACTIVITY_TYPES", '["view", "buy"]')
    monkeypatch.setenv("RIVERRUN_ACTIVITY_HOURS", "[2, 48]")
    join = Settings().join()
    assert join.activity_types == ("view", "buy") and join.activity_hours == (2, 48)
    assert join.horizon_seconds == 48 * 3600


def test_settings_turn_into_the_environment_that_gives_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    chosen = Settings(
        models=["logreg"],
        model_params={"logreg": {"lr": 0.1}},
        drift_enabled=False,
        checkpoint_key=SecretStr("k3y"),
        batch_seconds=0.5,
        event_mapping=EventMapping(key="user.id", ts="time", model="logreg"),
        events_format="avro",
        schema_registry_url="https://registry.example",
        schema_registry_username="key",
        schema_registry_password=SecretStr("registry-secret"),
    )
    env = chosen.as_environment()
    assert json.loads(env["RIVERRUN_EVENT_MAPPING"]) == {  # what a team writes
        "key": "user.id",
        "ts": "time",
        "model": "logreg",
    }
    assert env["RIVERRUN_MODELS"] == '["logreg"]' and env["RIVERRUN_DRIFT_ENABLED"] == "false"
    assert env["RIVERRUN_CHECKPOINT_KEY"] == "k3y"  # for a child process, never printed
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert Settings() == chosen


def test_settings_given_in_code_are_overridden_by_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    code = Settings(batch_size=10, group_id="team")
    monkeypatch.setenv("RIVERRUN_GROUP_ID", "deployed")
    merged = code.overridden_by(Settings())
    assert (merged.batch_size, merged.group_id) == (10, "deployed")


def test_an_invalid_value_names_its_variable_without_its_value() -> None:
    message = error_of(batch_size=0, checkpoint_key=SecretStr("hunter2"), metrics_threshold=2)
    assert "RIVERRUN_BATCH_SIZE is 0, out of range: it wants a whole number greater than 0" in (
        message
    )
    assert "RIVERRUN_METRICS_THRESHOLD" in message and "hunter2" not in message
