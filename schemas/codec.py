"""Bytes to validated models, with rejections a person can act on."""

from collections.abc import Callable
from typing import TypeVar, cast

from pydantic import BaseModel, TypeAdapter, ValidationError

from schemas.dead_letter import ErrorType
from schemas.fast_codec import decode_input_event
from schemas.input_event import EXPECTED_FEATURE, EXPECTED_LABEL, InputEvent
from schemas.json_schema import SCHEMA_FILES

ModelT = TypeVar("ModelT", bound=BaseModel)

#: At most this many field errors are spelt out in a reason.
MAX_ERRORS_IN_REASON = 5


class InvalidMessage(ValueError):
    """A message that does not match its topic's schema."""

    def __init__(self, error_type: ErrorType, reason: str) -> None:
        super().__init__(reason)
        self.error_type = error_type
        self.reason = reason


def decode(model: type[ModelT], raw: bytes | None, *, max_bytes: int) -> ModelT:
    """Validate `raw` JSON as `model`; raise InvalidMessage with a readable reason.

    Input events are decoded by msgspec when it is sure to agree with pydantic
    (`schemas.fast_codec`), else by pydantic: the same events, the same reasons.

    >>> from schemas import InputEvent
    >>> try:
    ...     decode(InputEvent, b'{"event_id": "e1", "ts": 0, "model": "m"}', max_bytes=1000)
    ... except InvalidMessage as err:
    ...     print(err.reason)
    invalid InputEvent v1: key: Field required; features: Field required. Fix the producer so \
that it sends messages matching the JSON Schema input_event.v1.json (`riverrun schemas export \
--dir DIR` writes it)
    """
    name = model.__name__
    if raw is None:
        raise empty_message(name)
    if len(raw) > max_bytes:
        raise oversized(len(raw), max_bytes)
    if model is InputEvent:  # the hot path: msgspec, when it is sure to agree with pydantic
        event = decode_input_event(raw)
        if event is not None:
            return cast(ModelT, event)
    try:
        return model.model_validate_json(raw)
    except ValidationError as err:
        raise invalid_message(name, err) from None


def decode_many(model: type[ModelT], raw: bytes, *, max_bytes: int, max_items: int) -> list[ModelT]:
    """One `model` or a JSON list of at most `max_items` of them (a request body of the
    /v1 API), validated as `decode` validates one; each reason of an item of a list
    says which item (`[3].features.price: ...`).

    >>> from schemas import InputEvent
    >>> try:
    ...     decode_many(InputEvent, b'[{"event_id": "e1"}]', max_bytes=1000, max_items=10)
    ... except InvalidMessage as err:
    ...     print(err.reason.split(":", 1)[0])
    invalid InputEvent v1
    """
    if not raw.lstrip().startswith(b"["):
        return [decode(model, raw, max_bytes=max_bytes)]
    if len(raw) > max_bytes:
        return [decode(model, raw, max_bytes=max_bytes)]  # (the oversized reason)
    try:
        items = _list_adapter(model).validate_json(raw)
    except ValidationError as err:
        raise invalid_message(model.__name__, err) from None
    if not items or len(items) > max_items:
        raise InvalidMessage(
            ErrorType.INVALID_EVENT,
            f"a list of {len(items)} {model.__name__}s: send 1 to {max_items} per request "
            "(RIVERRUN_API_MAX_ITEMS), or split it",
        )
    return items


_ADAPTERS: dict[type[BaseModel], TypeAdapter[list[BaseModel]]] = {}


def _list_adapter(model: type[ModelT]) -> TypeAdapter[list[ModelT]]:
    adapter = _ADAPTERS.get(model)
    if adapter is None:
        adapter = _ADAPTERS[model] = TypeAdapter(list[model])  # type: ignore[valid-type]
    return adapter  # type: ignore[return-value]


def empty_message(name: str) -> InvalidMessage:
    """The verdict on a message without a value, where a `name` was expected."""
    return InvalidMessage(
        ErrorType.INVALID_JSON, f"empty message (no value) where a {name} was expected"
    )


def oversized(size: int, max_bytes: int) -> InvalidMessage:
    """The verdict on a message of `size` bytes, over the limit of `max_bytes`."""
    return InvalidMessage(
        ErrorType.OVERSIZED,
        f"message of {size} bytes is over the {max_bytes}-byte limit: send fewer or "
        "shorter features, or raise RIVERRUN_MAX_EVENT_BYTES",
    )


def not_json(detail: str) -> InvalidMessage:
    """The verdict on a message that is not JSON (`detail`: the parser's words)."""
    return InvalidMessage(
        ErrorType.INVALID_JSON,
        f"not valid JSON ({detail}); send one JSON object per message, "
        "UTF-8 encoded, without NaN or Infinity",
    )


def invalid_message(
    name: str,
    err: ValidationError,
    *,
    fix: str | None = None,
    located: Callable[[str], str] | None = None,
) -> InvalidMessage:
    """The verdict on a message that failed validation as the model `name`: its first
    errors, one per field, then `fix`, the sentence saying what to change (by default: the
    producer, to match the model's JSON Schema). `located` shows a field's location
    (`features.price`) as the reader knows it, e.g. as the field of a record it came from.

    >>> from schemas import InputEvent
    >>> try:
    ...     InputEvent.model_validate({"event_id": "e1", "ts": 0, "model": "m", "key": "k",
    ...                                "features": {"price": [1]}})
    ... except ValidationError as err:
    ...     print(invalid_message("InputEvent", err, fix="Fix the mapping.",
    ...                           located=lambda where: f"[{where}]").reason)
    invalid InputEvent v1: [features.price]: expected a finite number, a boolean or a string \
of at most 1024 characters, got [1]. Fix the mapping.
    """
    errors = err.errors(include_url=False)
    if errors and errors[0]["type"] == "json_invalid":
        return not_json(errors[0]["msg"])
    parts: dict[str, str] = {}  # location -> message, first error per location
    for error in errors:
        item, loc = _item(error["loc"])
        loc, union = _union_location(loc)
        where = item + ".".join(str(part) for part in loc) or "message"
        if located is not None:
            where = located(where)
        if union is not None:
            parts.setdefault(where, f"expected {union}, got {_shown(error['input'])}")
        else:
            parts.setdefault(where, error["msg"])
    shown = [f"{where}: {msg}" for where, msg in list(parts.items())[:MAX_ERRORS_IN_REASON]]
    if len(parts) > MAX_ERRORS_IN_REASON:
        shown.append(f"and {len(parts) - MAX_ERRORS_IN_REASON} more errors")
    if fix is None:
        fix = (
            "Fix the producer so that it sends messages matching the JSON Schema "
            f"{_schema_file(name)} (`riverrun schemas export --dir DIR` writes it)"
        )
    return InvalidMessage(ErrorType.INVALID_EVENT, f"invalid {name} v1: {'; '.join(shown)}. {fix}")


def _item(loc: tuple[int | str, ...]) -> tuple[str, tuple[int | str, ...]]:
    """An error of an item of a list (`decode_many`): `[i].` and the location in it."""
    if loc and isinstance(loc[0], int):
        return f"[{loc[0]}]" + ("." if len(loc) > 1 else ""), loc[1:]
    return "", loc


def _union_location(loc: tuple[int | str, ...]) -> tuple[tuple[int | str, ...], str | None]:
    """A failed feature or label union reports one error per member, each at the field's
    location plus the member's tag: fold them back onto the field."""
    if len(loc) == 3 and loc[0] == "features":
        return loc[:2], EXPECTED_FEATURE
    if len(loc) == 2 and loc[0] == "label":
        return loc[:1], EXPECTED_LABEL
    return loc, None


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _schema_file(name: str) -> str:
    for file_name, model in SCHEMA_FILES.items():
        if model.__name__ == name:
            return file_name
    return f"{name}.json"  # pragma: no cover - every topic model is in SCHEMA_FILES
