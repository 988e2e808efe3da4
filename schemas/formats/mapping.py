"""Any record as an `InputEvent`: which of its fields are the event id, the event time, the
key, the label and the model, and which are the features (by default, all the others).

>>> mapping = EventMapping(key="user.id", ts="time", model="ctr", exclude=["user.email"])
>>> record = {"time": "2026-01-01T00:00:00Z", "user": {"id": 7, "email": "a@b.c",
...           "country": "FR"}, "price": 0.2, "coupon": None}
>>> mapping.mapped(record, RecordMeta("clicks", 0, 42, 1767225600000))
{'event_id': 'clicks:0:42', 'ts': '2026-01-01T00:00:00Z', 'model': 'ctr', 'key': '7', \
'features': {'user.country': 'FR', 'price': 0.2}}
"""

from collections.abc import Iterator, Mapping
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from functools import cached_property
from typing import Any, NamedTuple, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from schemas.codec import InvalidMessage
from schemas.dead_letter import ErrorType

__all__ = ["SETTING", "EventMapping", "RecordMeta", "kafka_event_id", "kafka_time"]

#: Where a deployment sets the mapping, as reasons name it.
SETTING = "RIVERRUN_EVENT_MAPPING"

_MISSING: Any = object()
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class RecordMeta(NamedTuple):
    """Where a record was read: its topic, partition and offset, and its Kafka timestamp."""

    topic: str
    partition: int
    offset: int
    #: Milliseconds since the epoch; None (or negative) when the record has none.
    timestamp_ms: int | None


def kafka_event_id(meta: RecordMeta) -> str:
    """The event id of a record that names none: unique per record of a topic.

    >>> kafka_event_id(RecordMeta("clicks", 3, 1017, None))
    'clicks:3:1017'
    """
    return f"{meta.topic}:{meta.partition}:{meta.offset}"


def kafka_time(meta: RecordMeta, unset: str) -> datetime:
    """The record's Kafka timestamp as an event time; InvalidMessage (saying `unset`, what
    gives no event time) when it has none.

    >>> kafka_time(RecordMeta("clicks", 0, 0, 1767225600123), "the mapping").isoformat()
    '2026-01-01T00:00:00.123000+00:00'
    """
    if meta.timestamp_ms is None or meta.timestamp_ms < 0:
        raise InvalidMessage(
            ErrorType.INVALID_EVENT,
            f"the record has no Kafka timestamp and {unset} names no event time: give its "
            "time (ts) from a field of the record, or produce records with a timestamp",
        )
    return _EPOCH + timedelta(milliseconds=meta.timestamp_ms)


def _path(value: str) -> str:
    if not value or not all(value.split(".")):
        raise ValueError(
            f"{value!r} is not a path to a field: name a field, or a nested one with a dot "
            "between the names (user.id)"
        )
    return value


class EventMapping(BaseModel):
    """Which fields of a team's records make an `InputEvent`, for a topic that does not
    carry riverrun's own events (set it on the `App` or as `RIVERRUN_EVENT_MAPPING`).

    A field is named by its path: `price`, or `user.id` for the field `id` of the nested
    record `user` (a field whose own name holds a dot is found too: the whole name is tried
    first). Every field not used otherwise is a feature, nested records flattened to dotted
    names (`user.country`), in the record's order; a null field is a missing feature.

    Attributes
    ----------
    key
        Path of the entity id (visitor, offer...): the key of predictions.
    model
        The model every record is for. Set this or `model_field`.
    model_field
        Path of the field naming the model each record is for.
    event_id
        Path of the event's unique id. Unset: `<topic>:<partition>:<offset>`.
    ts
        Path of the event time: an Avro or Protobuf timestamp, an ISO-8601 string, or
        seconds since the epoch. Unset: the record's Kafka timestamp.
    label
        Path of the label. Absent or null in a record: predict only.
    features
        Paths of the features, named by their paths. Unset: all the fields not used above.
    exclude
        Paths left out of "all the others" (ids, free text, lists).

    Examples
    --------
    >>> EventMapping(key="visitor", model="ctr", label="clicked", exclude=["page_url"])
    EventMapping(event_id=None, ts=None, key='visitor', label='clicked', model='ctr', \
model_field=None, features=None, exclude=['page_url'])
    """

    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())

    event_id: str | None = Field(
        default=None,
        description="Path of the field holding the event's unique id (an integer is taken "
        "as its decimal string). Unset: `<topic>:<partition>:<offset>` of the Kafka record.",
    )
    ts: str | None = Field(
        default=None,
        description="Path of the event time: an Avro or Protobuf timestamp, an ISO-8601 "
        "string (no zone means UTC) or seconds since the epoch. Unset: the Kafka record's "
        "timestamp.",
    )
    key: str = Field(
        description="Path of the entity id (visitor, offer...), the key of predictions; an "
        "integer is taken as its decimal string.",
    )
    label: str | None = Field(
        default=None,
        description="Path of the label; absent or null in a record: predict only.",
    )
    model: str | None = Field(
        default=None,
        description="The name of the model every record is for (or set model_field).",
    )
    model_field: str | None = Field(
        default=None,
        description="Path of the field naming each record's model (or set model).",
    )
    features: list[str] | None = Field(
        default=None,
        description="Paths of the features, each named by its path. Unset: every field not "
        "used above, in the record's order, nested records flattened to dotted names "
        "(user.country); a null field is a missing feature.",
    )
    exclude: list[str] = Field(
        default=[],
        description="Paths left out of the features when `features` is unset (ids, free "
        "text, lists); a nested record's path leaves out all its fields.",
    )

    @field_validator("event_id", "ts", "key", "label", "model_field")
    @classmethod
    def _valid_path(cls, value: str | None) -> str | None:
        return value if value is None else _path(value)

    @field_validator("features", "exclude")
    @classmethod
    def _valid_paths(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        for path in value:
            _path(path)
        twice = sorted({path for path in value if value.count(path) > 1})
        if twice:
            raise ValueError(f"{', '.join(twice)} listed twice: list each path once")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> "EventMapping":
        if (self.model is None) == (self.model_field is None):
            raise ValueError(
                "set either model (the name of the model every record is for) or "
                "model_field (the path of the field naming each record's model), not "
                + ("both" if self.model is not None else "neither")
            )
        if self.model is not None and not self.model:
            raise ValueError("model is empty: give the name of a served model")
        if self.features is not None and not self.features:
            raise ValueError(
                "features lists no path: list the features' paths, or leave features unset "
                "to take all the fields not used otherwise"
            )
        if self.features is not None and self.exclude:
            raise ValueError(
                "exclude leaves fields out of all the others, but features lists the "
                "features: set one of them"
            )
        return self

    # (A cached property, not a pydantic private attribute: those take ~1.7 µs to read. It
    # lives in the instance's __dict__, which copies take along: they drop it, as a copy
    # may change the fields it comes from, `model_copy(update=...)`.)
    @cached_property
    def _taken(self) -> frozenset[str]:
        """The paths never taken as features when they are "all the others"."""
        used = (self.event_id, self.ts, self.key, self.label, self.model_field)
        return frozenset((*(path for path in used if path is not None), *self.exclude))

    def __copy__(self) -> Self:
        copied = super().__copy__()
        copied.__dict__.pop("_taken", None)
        return copied

    def __deepcopy__(self, memo: dict[int, Any] | None = None) -> Self:
        copied = super().__deepcopy__(memo)
        copied.__dict__.pop("_taken", None)
        return copied

    def mapped(self, record: Mapping[str, Any], meta: RecordMeta) -> dict[str, Any]:
        """The `InputEvent` fields of `record` (read from the Kafka record `meta`), to be
        validated as an InputEvent; InvalidMessage when the record lacks a field the
        mapping names or has a feature that cannot be one (a list, bytes, a time)."""
        fields = {
            "event_id": (
                kafka_event_id(meta)
                if self.event_id is None
                else _identifier(record, self.event_id, "event_id")
            ),
            "ts": (
                kafka_time(meta, f"the mapping ({SETTING})")
                if self.ts is None
                else _required(record, self.ts, "ts")
            ),
            "model": (
                self.model
                if self.model_field is None
                else _required(record, self.model_field, "model_field")
            ),
            "key": _identifier(record, self.key, "key"),
            "features": (
                _all_others(record, self._taken)
                if self.features is None
                else _listed(record, self.features)
            ),
        }
        if self.label is not None:
            label = lookup(record, self.label)
            if label is not _MISSING and label is not None:
                fields["label"] = label
        return fields

    def located(self, where: str) -> str:
        """A location of an InputEvent field (`features.price`, `key`) as the record's
        field it came from, for reasons.

        >>> EventMapping(key="user.id", model="ctr").located("features.price")
        'field `price` (features.price)'
        >>> EventMapping(key="user.id", model="ctr").located("key")
        'field `user.id` (key)'
        """
        if where.startswith("features."):
            return f"field `{where.removeprefix('features.')}` ({where})"
        path = getattr(self, "model_field" if where == "model" else where, None)
        if where in {"event_id", "ts", "key", "label", "model"} and path is not None:
            return f"field `{path}` ({where})"
        return where


def lookup(record: Mapping[str, Any], path: str) -> Any:
    """The value at `path` in `record`, or a sentinel that is not a value when there is
    none. The whole path is tried as a name first, then split at each dot in turn.

    >>> lookup({"user": {"id": 7}, "a.b": 1}, "user.id"), lookup({"a.b": 1}, "a.b")
    (7, 1)
    """
    value = record.get(path, _MISSING)
    if value is not _MISSING:
        return value
    dot = path.find(".")
    while dot > 0:
        inner = record.get(path[:dot], _MISSING)
        if type(inner) is dict or isinstance(inner, Mapping):
            value = lookup(inner, path[dot + 1 :])
            if value is not _MISSING:
                return value
        dot = path.find(".", dot + 1)
    return _MISSING


def _required(record: Mapping[str, Any], path: str, setting: str) -> Any:
    value = lookup(record, path)
    if value is _MISSING or value is None:
        state = "has no field" if value is _MISSING else "has null in"
        raise InvalidMessage(
            ErrorType.INVALID_EVENT,
            f"the record {state} `{path}` (the {setting} in {SETTING}): fix the producer, "
            f"or set {setting} to the path of the field that holds it",
        )
    if type(value) is not str and isinstance(value, bytes | bytearray):
        raise InvalidMessage(
            ErrorType.INVALID_EVENT,
            f"the record's `{path}` (the {setting} in {SETTING}) is bytes, not a string: "
            "produce it as a string, or turn records into events with an @app.event_decoder",
        )
    return value


def _identifier(record: Mapping[str, Any], path: str, setting: str) -> Any:
    value = _required(record, path, setting)
    # Ids are often numbers in a team's records: 7 is the id "7" (never a bool or a float:
    # true or 7.0 are no ids, and stay refused as InputEvent refuses them).
    return str(value) if type(value) is int else value


def _listed(record: Mapping[str, Any], paths: list[str]) -> dict[str, Any]:
    features = {}
    for path in paths:
        value = lookup(record, path)
        if value is _MISSING or value is None:
            continue  # a missing feature, as in an InputEvent without it
        kind = type(value)
        if not (kind is float or kind is int or kind is str or kind is bool):
            if isinstance(value, Mapping):
                raise InvalidMessage(
                    ErrorType.INVALID_EVENT,
                    f"the record's `{path}` (in features of {SETTING}) is a record, not a "
                    f"feature: list its fields ({path}.NAME) instead",
                )
            if not isinstance(value, Decimal):
                raise _not_a_feature(path, _kind(value), listed=True)
        features[path] = value
    return features


def _all_others(record: Mapping[str, Any], taken: frozenset[str]) -> dict[str, Any]:
    """The fields of `record` not `taken` (paths), nested records flattened to dotted
    names, in the record's order."""
    features: dict[str, Any] = {}
    try:
        leaves = _flatten(record, "", features, taken)
    except TypeError:  # a name that is not a string: a Protobuf map<int32, ...>, say
        path = _odd_names(record, "") or "(the record itself)"
        raise _not_a_feature(path, "a map with keys that are not strings") from None
    if leaves != len(features):
        raise _twice(_path_twice(record, taken))
    return features


def _flatten(
    record: Mapping[str, Any], prefix: str, features: dict[str, Any], taken: frozenset[str]
) -> int:
    """Add `record`'s fields to `features`; how many it added, a name met twice counted
    twice (counted, not checked for each field: the check would cost more)."""
    others = nested = 0
    for name, value in record.items():
        path = prefix + name
        if path in taken:
            others += 1
            continue
        kind = type(value)
        if kind is float or kind is int or kind is str or kind is bool:
            features[path] = value
        elif value is None:
            others += 1
        elif kind is dict or isinstance(value, Mapping):
            others += 1
            nested += _flatten(value, path + ".", features, taken)
        elif isinstance(value, Decimal):  # an Avro decimal: a number, as in JSON
            features[path] = value
        else:
            raise _not_a_feature(path, _kind(value))
    return len(record) - others + nested


def _odd_names(record: Mapping[Any, Any], path: str) -> str | None:
    """The path of the first map in `record` (at `path`) with a name that is not a string."""
    if any(type(name) is not str for name in record):
        return path
    for name, value in record.items():
        if isinstance(value, Mapping):
            found = _odd_names(value, f"{path}.{name}" if path else name)
            if found is not None:
                return found
    return None  # pragma: no cover - called on such a record only


def _path_twice(record: Mapping[str, Any], taken: frozenset[str]) -> str:
    seen: set[str] = set()
    for path in _leaf_paths(record, "", taken):
        if path in seen:
            return path
        seen.add(path)
    return ""  # pragma: no cover - called on such a record only


def _leaf_paths(record: Mapping[str, Any], prefix: str, taken: frozenset[str]) -> Iterator[str]:
    for name, value in record.items():
        path = prefix + name
        if path in taken or value is None:
            continue
        if isinstance(value, Mapping):
            yield from _leaf_paths(value, path + ".", taken)
        else:
            yield path


def _kind(value: Any) -> str:
    if isinstance(value, list | tuple | set):
        return "a list"
    if isinstance(value, bytes | bytearray):
        return "bytes"
    if isinstance(value, datetime | date | time):
        return "a time"
    return f"a {type(value).__name__}"


def _not_a_feature(path: str, kind: str, *, listed: bool = False) -> InvalidMessage:
    if listed:
        what = f"leave it out of features in {SETTING}, "
    else:
        what = f"leave it out (exclude in {SETTING}), list the features you want (features), "
    what += "or turn records into events with an @app.event_decoder"
    return InvalidMessage(
        ErrorType.INVALID_EVENT,
        f"the record's `{path}` is {kind}, not a feature (a number, a boolean or a string): {what}",
    )


def _twice(path: str) -> InvalidMessage:
    return InvalidMessage(
        ErrorType.INVALID_EVENT,
        f"two fields of the record are the feature `{path}` (one nested, one named with a "
        f"dot): exclude one of them in {SETTING}, or list the features (features)",
    )
