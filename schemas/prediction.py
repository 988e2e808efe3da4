"""The prediction made for one input event, before the model learnt from it.

Binary and regression models publish `Prediction` (schema version 1, unchanged since the
first release); multiclass models publish `ClassPrediction` (version 2). Both share the
`predictions` topic: `decode_prediction` reads either, in each format riverrun writes
(`schemas.formats.predictions`).
"""

from functools import cache
from io import BytesIO
from typing import Annotated, Any, Literal, cast

from pydantic import (
    Discriminator,
    Field,
    StrictBool,
    Tag,
    TypeAdapter,
    ValidationError,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from schemas.control import Routing
from schemas.formats.avro_schema import NAMESPACE, avro_schema
from schemas.input_event import ClassLabel, NumericLabel
from schemas.message import Message, Record
from schemas.types import (
    EventTime,
    ExactInt,
    FiniteFloat,
    Identifier,
    StrictNonNegativeFloat,
    StrictNonNegativeInt,
)

# The fields both formats share, declared once.
EventKey = Annotated[Identifier, Field(description="The input event's entity key.")]
ModelUpdates = Annotated[
    StrictNonNegativeInt,
    Field(description="Events the model had learnt from when it made this prediction."),
]
PredictedEventTime = Annotated[EventTime, Field(description="The input event's event time.")]
Learned = Annotated[
    StrictBool, Field(description="Whether the model learnt from this event after predicting.")
]
LatencySeconds = Annotated[
    StrictNonNegativeFloat,
    Field(description="Time from the worker receiving the event to this prediction being built."),
]


def routing_field() -> Any:
    """`routing`: absent from the JSON of a model without a plan (as before it had plans,
    byte for byte)."""
    return Field(
        default=None,
        exclude_if=lambda value: value is None,
        description="Models with a plan on the control topic: the version's role, and the "
        "arm and selection probability of experiments and bandits.",
    )


class Prediction(Message):
    """A message on the `predictions` topic, keyed by `event_id`."""

    event_id: Identifier
    key: EventKey
    model: Identifier
    model_version: str = Field(
        description="Model name and a hash of its factory parameters, e.g. 'logreg@3f2a1c9e'."
    )
    model_updates: ModelUpdates
    ts: PredictedEventTime
    prediction: FiniteFloat | None = Field(
        description="Probability of the positive class (classifiers) or the value "
        "(regressors); null while a classifier knows no class yet (a tree or forest before "
        "its first labelled event): it has no prediction, and the event is not scored."
    )
    label: NumericLabel | None = None
    learned: Learned
    latency_seconds: LatencySeconds
    routing: Routing | None = routing_field()


class ClassPrediction(Record):
    """A multiclass model's message on the `predictions` topic, keyed by `event_id`: the
    most probable class and the probability of every class the model knows."""

    schema_version: Annotated[Literal[2], ExactInt] = 2
    event_id: Identifier
    key: EventKey
    model: Identifier
    model_version: str = Field(description="Model name and a hash of its code and parameters.")
    model_updates: ModelUpdates
    ts: PredictedEventTime
    prediction: ClassLabel | None = Field(
        description="The most probable class (the first of equals, as River's predict_one); "
        "null while the model knows no class yet."
    )
    probabilities: dict[str, FiniteFloat] = Field(
        description="Probability of each class the model knows, keyed by the class as text: "
        "a string as it is, an integer in decimal, a boolean as true/false."
    )
    label: ClassLabel | None = None
    learned: Learned
    latency_seconds: LatencySeconds
    routing: Routing | None = routing_field()


def class_text(label: bool | int | str) -> str:
    """A class as the key of `ClassPrediction.probabilities`: a string as it is, an
    integer in decimal, a boolean as JSON writes it.

    >>> [class_text(c) for c in ("sky", 3, True)]
    ['sky', '3', 'true']
    """
    if isinstance(label, bool):
        return "true" if label else "false"
    return str(label)


def _prediction_version(message: Any) -> int | None:
    # A callable, not discriminator="schema_version": pydantic refuses a field discriminator
    # with a validator, and ExactInt is one. The tag is looked up by equality (`true` finds
    # Prediction), then the model's own schema_version field refuses what is not an integer.
    if isinstance(message, dict):
        return message.get("schema_version")
    return getattr(message, "schema_version", None)


AnyPrediction = Prediction | ClassPrediction
_ANY_PREDICTION: TypeAdapter[AnyPrediction] = TypeAdapter(
    Annotated[
        Annotated[Prediction, Tag(1)] | Annotated[ClassPrediction, Tag(2)],
        Discriminator(
            _prediction_version,
            custom_error_type="prediction_version",
            custom_error_message="schema_version should be 1 (Prediction) or 2 (ClassPrediction)",
        ),
    ]
)


def decode_prediction(raw: bytes | str) -> AnyPrediction:
    """A message of the `predictions` topic, of either schema version, in any format
    riverrun writes it (`RIVERRUN_PREDICTIONS_FORMAT`): JSON, or the Confluent wire format
    (JSON Schema or Avro). A ValidationError when it is none of them.

    >>> decode_prediction(b'{"schema_version": 2, "event_id": "e", "key": "k", "model": "m",'
    ...     b' "model_version": "m@1", "model_updates": 3, "ts": 0, "prediction": "sky",'
    ...     b' "probabilities": {"sky": 0.9, "path": 0.1}, "learned": true,'
    ...     b' "latency_seconds": 0.01}').prediction
    'sky'
    """
    if not isinstance(raw, str) and raw[:1] == b"\x00":  # the wire format's magic byte
        return _decode_framed(raw)
    return _ANY_PREDICTION.validate_json(raw)


#: The records of the predictions topic in Avro, in the order of the union's branches
#: (schemas/avro/prediction.avsc), each named riverrun.<class name>.
AVRO_RECORDS: tuple[type[Prediction], type[ClassPrediction]] = (Prediction, ClassPrediction)
_AVRO_MODEL = {f"{NAMESPACE}.{model.__name__}": model for model in AVRO_RECORDS}
#: The Confluent wire format's header: magic byte 0 and a 4-byte schema id
#: (schemas.formats.wire.HEADER_BYTES, which imports this module through schemas.codec).
_WIRE_HEADER = 5


@cache
def avro_prediction_schema() -> Any:
    """The Avro union of AVRO_RECORDS, parsed by fastavro (the writer's schema of
    predictions in Avro, and the reader's)."""
    import fastavro  # (here: most users of this module never read Avro)

    return fastavro.parse_schema(avro_schema(*AVRO_RECORDS))


def _decode_framed(raw: bytes) -> AnyPrediction:
    """The prediction in `raw`, a record in the Confluent wire format: JSON (json_schema)
    or Avro in riverrun's prediction schema (the writer's: same package version)."""
    import fastavro

    if len(raw) < _WIRE_HEADER:
        raise _undecodable(raw, "not in the Confluent wire format (magic byte 0, schema id)")
    payload = raw[_WIRE_HEADER:]
    if payload.lstrip()[:1] == b"{":
        return _ANY_PREDICTION.validate_json(payload)
    source = BytesIO(payload)
    try:
        decoded = fastavro.schemaless_reader(
            source,
            avro_prediction_schema(),
            None,
            return_record_name=True,
            return_record_name_override=True,  # the name of the union's record only
        )
        if source.tell() != len(payload):
            raise ValueError(f"{len(payload) - source.tell()} bytes after the record")
    except (EOFError, ValueError, IndexError) as err:  # UnicodeDecodeError is a ValueError
        raise _undecodable(raw, f"not a prediction in riverrun's Avro schema ({err})") from None
    name, record = cast(tuple[str, dict[str, Any]], decoded)  # (the union's record, named)
    return _AVRO_MODEL[name].model_validate(record)


def _undecodable(raw: bytes, reason: str) -> ValidationError:
    """The error decode_prediction raises for what is not a prediction: a ValidationError,
    as for bad JSON."""
    kind = PydanticCustomError("prediction_undecodable", "{reason}", {"reason": reason})
    error = InitErrorDetails(type=kind, loc=(), input=raw)
    return ValidationError.from_exception_data("AnyPrediction", [error], input_type="json")
