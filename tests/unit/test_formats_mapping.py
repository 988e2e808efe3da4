"""schemas.formats.mapping: a team's record made an InputEvent's fields by an EventMapping.

The fields are checked as `mapped` gives them (before validation as an InputEvent, which
test_formats_events covers); each refusal's reason must name the record's field and the
mapping's setting, and say what to change.
"""

import inspect
import re
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from schemas import ErrorType
from schemas.codec import InvalidMessage
from schemas.formats.mapping import EventMapping, RecordMeta, kafka_time, lookup

META = RecordMeta("clicks", 2, 41, 1_767_225_600_000)  # 2026-01-01T00:00:00Z
T = "2026-01-01T12:00:00Z"


def mapping(**fields: Any) -> EventMapping:
    return EventMapping.model_validate({"key": "user.id", "model": "ctr", **fields})


def refusal(mapping: EventMapping, record: dict[str, Any], meta: RecordMeta = META) -> str:
    with pytest.raises(InvalidMessage) as caught:
        mapping.mapped(record, meta)
    assert caught.value.error_type is ErrorType.INVALID_EVENT
    return caught.value.reason


# --- the mapping itself ------------------------------------------------------------------


def test_every_field_is_described_and_documented() -> None:
    # The settings reference is generated from the descriptions, the Python API reference
    # from the docstring's Attributes section: both must name every field.
    # (cleandoc: Python 3.13 strips a docstring's indentation itself, 3.11 does not)
    section = inspect.cleandoc(EventMapping.__doc__ or "").split("Attributes\n----------")[1]
    section = section.split("Examples\n")[0]
    documented = re.findall(r"^(\w+)$", section, re.MULTILINE)
    assert sorted(documented) == sorted(EventMapping.model_fields)
    for name, field in EventMapping.model_fields.items():
        assert field.description, name


@pytest.mark.parametrize("path", ["", "user.", ".id", "user..id", "."])
def test_a_path_has_no_empty_name(path: str) -> None:
    for fields in ({"key": path}, {"ts": path}, {"features": ["price", path]}):
        with pytest.raises(ValidationError, match="is not a path to a field: name a field"):
            mapping(**fields)


def test_model_or_model_field_exactly_one() -> None:
    with pytest.raises(ValidationError, match=r"set either model .* not both"):
        mapping(model_field="kind")
    with pytest.raises(ValidationError, match=r"set either model .* not neither"):
        EventMapping(key="user")
    assert EventMapping(key="user", model_field="kind").model is None


def test_features_and_exclude_are_checked() -> None:
    with pytest.raises(ValidationError, match="features lists no path"):
        mapping(features=[])
    with pytest.raises(ValidationError, match="but features lists the features: set one"):
        mapping(features=["price"], exclude=["url"])
    with pytest.raises(ValidationError, match="price listed twice"):
        mapping(features=["price", "age", "price"])


def test_unknown_settings_are_refused_and_a_mapping_is_frozen() -> None:
    with pytest.raises(ValidationError, match="extra"):
        mapping(lable="clicked")
    with pytest.raises(ValidationError, match="frozen"):
        mapping().key = "other"  # type: ignore[misc]


def test_a_copy_with_other_fields_maps_by_its_own_fields() -> None:
    m = mapping(exclude=["url"])
    record = {"user": {"id": 1}, "url": "/", "ref": "g"}
    assert m.mapped(record, META)["features"] == {"ref": "g"}
    for deep in (False, True):
        copied = m.model_copy(update={"exclude": ["ref"]}, deep=deep)
        assert copied.mapped(record, META)["features"] == {"url": "/"}
    assert m.mapped(record, META)["features"] == {"ref": "g"}


def test_a_mapping_reads_from_json_as_the_setting_gives_it() -> None:
    text = '{"key": "user.id", "model": "ctr", "exclude": ["url"]}'
    assert EventMapping.model_validate_json(text) == mapping(exclude=["url"])


# --- paths -------------------------------------------------------------------------------


def test_lookup_follows_nested_records_and_tries_a_dotted_name_whole_first() -> None:
    record = {"user": {"id": 7, "geo": {"country": "FR"}}, "a.b": 1, "a": {"b": 2}}
    assert lookup(record, "user.id") == 7
    assert lookup(record, "user.geo.country") == "FR"
    assert lookup(record, "a.b") == 1  # the whole name first
    assert lookup({"a": {"b.c": 3}}, "a.b.c") == 3
    missing = lookup(record, "user.name")
    assert missing is lookup(record, "nothing") is lookup({"user": "u7"}, "user.id")
    assert missing is not None


# --- the event's own fields ------------------------------------------------------------


def test_ids_and_time_default_to_the_kafka_record() -> None:
    fields = mapping().mapped({"user": {"id": "u7"}, "price": 0.5}, META)
    assert fields == {
        "event_id": "clicks:2:41",
        "ts": datetime(2026, 1, 1, tzinfo=UTC),
        "model": "ctr",
        "key": "u7",
        "features": {"price": 0.5},
    }


def test_a_kafka_timestamp_keeps_its_milliseconds() -> None:
    ts = kafka_time(RecordMeta("t", 0, 0, 1_767_225_600_123), "the mapping")
    assert ts == datetime(2026, 1, 1, 0, 0, 0, 123_000, tzinfo=UTC)


@pytest.mark.parametrize("timestamp", [None, -1])
def test_no_kafka_timestamp_and_no_ts_is_refused(timestamp: int | None) -> None:
    reason = refusal(mapping(), {"user": {"id": 1}}, META._replace(timestamp_ms=timestamp))
    assert reason.startswith("the record has no Kafka timestamp and the mapping")
    assert "RIVERRUN_EVENT_MAPPING" in reason and "give its time (ts) from a field" in reason


def test_fields_named_by_paths() -> None:
    m = mapping(event_id="id", ts="time", model=None, model_field="meta.model", label="y")
    record = {"id": "e9", "time": T, "meta": {"model": "ctr_b"}, "user": {"id": "u"}, "y": 1}
    fields = m.mapped(record, META)
    assert (fields["event_id"], fields["ts"], fields["model"], fields["label"]) == (
        "e9",
        T,
        "ctr_b",
        1,
    )
    assert fields["features"] == {}  # every field was used


def test_the_time_is_passed_as_the_record_has_it() -> None:
    # (validated as InputEvent's `ts`: datetime, ISO string or epoch seconds)
    for value in (datetime(2026, 1, 1, tzinfo=UTC), T, 1_767_225_600, 1_767_225_600.5):
        assert mapping(ts="t").mapped({"t": value, "user": {"id": 1}}, META)["ts"] == value


def test_integer_ids_are_their_decimal_strings_other_values_are_left_to_validation() -> None:
    m = mapping(event_id="id")
    assert m.mapped({"id": 123, "user": {"id": 7}}, META)["event_id"] == "123"
    assert m.mapped({"id": 123, "user": {"id": 7}}, META)["key"] == "7"
    # true and 7.0 are no ids: InputEvent refuses them, as it refuses them in JSON
    assert m.mapped({"id": True, "user": {"id": 7.0}}, META)["event_id"] is True
    assert m.mapped({"id": True, "user": {"id": 7.0}}, META)["key"] == 7.0


def test_a_missing_or_null_required_field_names_the_path_and_the_setting() -> None:
    reason = refusal(mapping(), {"user": {"name": "x"}})
    assert reason == (
        "the record has no field `user.id` (the key in RIVERRUN_EVENT_MAPPING): fix the "
        "producer, or set key to the path of the field that holds it"
    )
    reason = refusal(mapping(ts="time"), {"user": {"id": 1}, "time": None})
    assert reason.startswith("the record has null in `time` (the ts in RIVERRUN_EVENT_MAPPING)")
    m = mapping(model=None, model_field="kind", event_id="id")
    assert "`kind` (the model_field in" in refusal(m, {"id": "e", "user": {"id": 1}})
    assert "`id` (the event_id in" in refusal(m, {"kind": "m", "user": {"id": 1}})


def test_bytes_where_a_string_is_needed_are_refused() -> None:
    reason = refusal(mapping(), {"user": {"id": b"u7"}})
    assert reason.startswith("the record's `user.id` (the key in RIVERRUN_EVENT_MAPPING) is bytes")
    assert "produce it as a string" in reason


def test_an_absent_or_null_label_predicts_only() -> None:
    m = mapping(label="clicked")
    assert "label" not in m.mapped({"user": {"id": 1}}, META)
    assert "label" not in m.mapped({"user": {"id": 1}, "clicked": None}, META)
    assert m.mapped({"user": {"id": 1}, "clicked": False}, META)["label"] is False


# --- features: all the others ------------------------------------------------------------


def test_all_other_fields_in_the_records_order_nested_ones_flattened_in_place() -> None:
    record = {
        "zeta": 1,
        "user": {"id": 7, "country": "FR", "geo": {"lat": 48.8}},
        "alpha": "a",
        "flag": True,
    }
    features = mapping().mapped(record, META)["features"]
    assert list(features.items()) == [
        ("zeta", 1),
        ("user.country", "FR"),
        ("user.geo.lat", 48.8),
        ("alpha", "a"),
        ("flag", True),
    ]
    # values keep their types: a bool is no int, an int no float
    assert [type(v) for v in features.values()] == [int, str, float, str, bool]


def test_null_fields_are_missing_features_and_used_fields_are_no_features() -> None:
    m = mapping(event_id="id", ts="time", label="clicked")
    record = {"id": "e", "time": T, "clicked": True, "user": {"id": 1, "age": None}, "p": 0.5}
    assert m.mapped(record, META)["features"] == {"p": 0.5}


def test_exclude_leaves_out_a_field_or_a_whole_nested_record() -> None:
    record = {"user": {"id": 1, "email": "a@b", "age": 30}, "url": "/", "p": 0.5}
    assert mapping(exclude=["url", "user.email"]).mapped(record, META)["features"] == {
        "user.age": 30,
        "p": 0.5,
    }
    assert mapping(exclude=["user"]).mapped(record, META)["features"] == {"url": "/", "p": 0.5}
    assert mapping(exclude=["not_there"]).mapped({"user": {"id": 1}}, META)["features"] == {}


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        ([1, 2], "a list"),
        ((1, 2), "a list"),
        (b"\x00", "bytes"),
        (datetime(2026, 1, 1, tzinfo=UTC), "a time"),
        (date(2026, 1, 1), "a time"),
        (object(), "a object"),
    ],
)
def test_a_field_that_cannot_be_a_feature_is_refused_with_what_to_do(value: Any, kind: str) -> None:
    reason = refusal(mapping(), {"user": {"id": 1, "tags": value}})
    assert reason == (
        f"the record's `user.tags` is {kind}, not a feature (a number, a boolean or a "
        "string): leave it out (exclude in RIVERRUN_EVENT_MAPPING), list the features you "
        "want (features), or turn records into events with an @app.event_decoder"
    )
    assert mapping(exclude=["user.tags"]).mapped({"user": {"id": 1, "tags": value}}, META)


def test_a_decimal_is_a_number_as_in_json() -> None:
    features = mapping().mapped({"user": {"id": 1}, "price": Decimal("12.34")}, META)["features"]
    assert features == {"price": Decimal("12.34")}  # InputEvent makes it the float 12.34


def test_a_map_with_names_that_are_not_strings_is_refused() -> None:
    reason = refusal(mapping(), {"user": {"id": 1}, "counts": {"by_day": {3: 1, 4: 2}}})
    assert reason.startswith(
        "the record's `counts.by_day` is a map with keys that are not strings, not a feature"
    )


def test_two_fields_flattened_to_one_name_are_refused() -> None:
    for record in (
        {"user": {"id": 1, "age": 3}, "user.age": 4},
        {"user.age": 4, "user": {"id": 1, "age": 3}},
    ):
        reason = refusal(mapping(), record)
        assert reason.startswith("two fields of the record are the feature `user.age`")
        assert "exclude one of them in RIVERRUN_EVENT_MAPPING" in reason


# --- features: listed --------------------------------------------------------------------


def test_listed_features_in_the_listed_order_missing_or_null_ones_left_out() -> None:
    m = mapping(features=["price", "user.country", "absent", "nothing"])
    record = {"nothing": None, "user": {"id": 1, "country": "FR"}, "url": "/", "price": 2}
    assert list(m.mapped(record, META)["features"].items()) == [
        ("price", 2),
        ("user.country", "FR"),
    ]


def test_a_listed_feature_that_is_a_record_or_a_list_is_refused() -> None:
    m = mapping(features=["user", "tags"])
    assert refusal(m, {"user": {"id": 1}}) == (
        "the record's `user` (in features of RIVERRUN_EVENT_MAPPING) is a record, not a "
        "feature: list its fields (user.NAME) instead"
    )
    m = mapping(features=["tags"])
    assert refusal(m, {"user": {"id": 1}, "tags": ["a"]}) == (
        "the record's `tags` is a list, not a feature (a number, a boolean or a string): "
        "leave it out of features in RIVERRUN_EVENT_MAPPING, or turn records into events "
        "with an @app.event_decoder"
    )


def test_located_names_the_records_field_behind_an_event_field() -> None:
    m = mapping(ts="time", model=None, model_field="kind", label="y")
    assert m.located("features.user.age") == "field `user.age` (features.user.age)"
    assert m.located("ts") == "field `time` (ts)"
    assert m.located("model") == "field `kind` (model)"
    assert m.located("label") == "field `y` (label)"
    assert m.located("event_id") == "event_id"  # from the Kafka record: no field
    assert mapping().located("model") == "model"
    assert m.located("features") == "features"
