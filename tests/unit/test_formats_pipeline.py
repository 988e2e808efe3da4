"""The worker's formats (`streams.services.formats`) and its per-batch pipeline with a
decoder: which topics get a decoder, and that a team's record is predicted exactly as the
same event in riverrun's JSON."""

import asyncio
import io
import json
from datetime import UTC, datetime

import click
import fastavro
import orjson
import pytest

from online_models import Learner, Rejection
from schemas import InputEvent, encode_prediction
from schemas.codec import InvalidMessage
from schemas.dead_letter import ErrorType
from schemas.feedback import Click
from schemas.formats.avro import AvroReader
from schemas.formats.events import RecordMeta, unknown_schema
from schemas.formats.json_records import JsonReader
from schemas.formats.mapping import EventMapping
from schemas.formats.wire import RegisteredSchema, frame
from streams.services.event_pipeline import EventPipeline
from streams.services.formats import Formats
from streams.settings import Settings
from tests.builtin import MODELS

REGISTRY = "http://127.0.0.1:1"  # never asked here: the readers are given
CLICK = {
    "type": "record",
    "name": "Click",
    "namespace": "shop",
    "fields": [
        {"name": "id", "type": "string"},
        {"name": "user", "type": "string"},
        {"name": "device", "type": "string"},
        {"name": "price", "type": "double"},
        {"name": "clicked", "type": ["null", "boolean"], "default": None},
    ],
}
MAPPING = EventMapping(event_id="id", key="user", label="clicked", model="logreg")


def records(n: int) -> list[dict[str, object]]:
    return [
        {
            "id": f"c{i}",
            "user": f"u{i % 7}",
            "device": "mobile" if i % 3 else "desktop",
            "price": i / 7,
            "clicked": i % 4 == 0,
        }
        for i in range(n)
    ]


def without_latency(output: object) -> dict[str, object]:
    assert not isinstance(output, Rejection), output
    return output.model_dump(exclude={"latency_seconds", "ts"})  # type: ignore[attr-defined]


def test_riverrun_json_has_no_decoder_and_predictions_stay_json() -> None:
    formats = Formats(Settings())
    assert formats.event_decoder() is None  # the fast path, unchanged
    assert asyncio.run(formats.prediction_encoder()) is encode_prediction
    decode = formats.message_decoder(Click)
    click = decode(b'{"click_id": "c1", "impression_id": "i1", "ts": 0}')
    assert click.impression_id == "i1"


def test_a_mapping_or_a_format_gives_the_events_topic_a_decoder() -> None:
    assert Formats(Settings(), mapping=MAPPING).event_decoder() is not None
    avro = Settings(events_format="avro", schema_registry_url=REGISTRY)
    assert Formats(avro).event_decoder() is not None
    assert Formats(Settings(), hook=lambda record: record).event_decoder() is not None


def test_an_avro_record_is_predicted_as_the_same_event_in_json() -> None:
    """Bit for bit: same features in the same order, same model, same predictions."""
    schema = RegisteredSchema(id=3, schema_type="AVRO", text=json.dumps(CLICK))
    parsed = fastavro.parse_schema(CLICK)
    values: list[bytes | None] = []
    for record in records(200):
        buffer = io.BytesIO()
        fastavro.schemaless_writer(buffer, parsed, record)
        values.append(frame(3, buffer.getvalue()))
    values.insert(50, frame(4, b"\x02"))  # a schema id the registry has not got
    formats = Formats(Settings(events_format="avro", schema_registry_url=REGISTRY), mapping=MAPPING)
    assert formats.cache is not None
    formats.cache.readers[3] = AvroReader(schema)
    formats.cache.readers[4] = unknown_schema(4)
    metas = [RecordMeta("clicks", 0, i, 0) for i in range(len(values))]
    pipeline = EventPipeline(Learner(["logreg"], registry=MODELS), 10_000, formats.event_decoder())
    outputs = pipeline.run(values, offsets=range(len(values)), metas=metas)
    rejected = outputs.pop(50)
    assert isinstance(rejected, Rejection) and rejected.error_type is ErrorType.UNKNOWN_SCHEMA

    as_json = [
        orjson.dumps(
            {
                "event_id": r["id"],
                "ts": 0,
                "model": "logreg",
                "key": r["user"],
                "features": {"device": r["device"], "price": r["price"]},
                "label": r["clicked"],
            }
        )
        for r in records(200)
    ]
    expected = EventPipeline(Learner(["logreg"], registry=MODELS), 10_000).run(
        as_json, offsets=range(len(as_json))
    )
    assert [without_latency(o) for o in outputs] == [without_latency(e) for e in expected]
    # What the learn topic would carry for a global model: the event as riverrun JSON.
    first = pipeline.decoded[0]
    assert InputEvent.model_validate_json(first.model_dump_json()) == first


def test_a_join_topics_records_in_a_registry_format_are_its_models() -> None:
    """RIVERRUN_JOIN_FORMAT: JSON Schema records read as the JSON topic's (a time as text
    too), Avro records from their values; an unknown id is the record's fault."""
    formats = Formats(Settings(join_format="json_schema", schema_registry_url=REGISTRY))
    assert formats.cache is not None
    formats.cache.readers[1] = JsonReader(RegisteredSchema(id=1, schema_type="JSON", text="{}"))
    decode = formats.message_decoder(Click)
    value = b'{"click_id": "c1", "impression_id": "i1", "ts": "2026-01-01T00:00:00Z"}'
    assert decode(frame(1, value)) == Click.model_validate_json(value)
    with pytest.raises(InvalidMessage) as err:
        decode(frame(2, value))
    assert err.value.error_type is ErrorType.UNKNOWN_SCHEMA


def test_tail_shows_a_prediction_written_in_avro_as_its_json() -> None:
    from schemas import Prediction
    from schemas.formats.predictions import PredictionEncoder
    from streams.cli.topics import _shown

    p = Prediction(
        event_id="e1",
        key="k",
        model="logreg",
        model_version="logreg@1",
        model_updates=3,
        ts=datetime(2026, 1, 1, tzinfo=UTC),
        prediction=0.25,
        learned=True,
        latency_seconds=1e-4,
    )
    framed = PredictionEncoder("avro", schema_id=7).encode(p)
    assert _shown(framed, predictions=True) == p.model_dump_json()
    assert _shown(b'{"a": 1}', predictions=True) == '{"a": 1}'
    assert _shown(framed, predictions=False) == framed.decode(errors="replace")


def test_a_misspelt_mapping_field_is_named_with_the_fields_it_has(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from streams.cli.options import load_settings

    monkeypatch.setenv("RIVERRUN_EVENT_MAPPING", '{"key": "k", "model": "m", "lable": "x"}')
    with pytest.raises(click.ClickException) as err:
        load_settings()
    assert "RIVERRUN_EVENT_MAPPING.lable is not a field it knows" in err.value.message
    assert "(fields: event_id, ts, key, label, model" in err.value.message


def test_what_makes_the_events_topic_a_teams_own_is_said() -> None:
    assert Formats(Settings()).team_records() is None
    assert (
        Formats(Settings(events_format="avro", schema_registry_url=REGISTRY)).team_records() is None
    )
    assert Formats(Settings(), mapping=MAPPING).team_records() == (
        "the app maps records to events (App(event_mapping=...))"
    )
    assert Formats(Settings(event_mapping=MAPPING), mapping=MAPPING).team_records() == (
        "RIVERRUN_EVENT_MAPPING maps records to events"
    )

    def to_event(record: dict[str, object]) -> dict[str, object]:
        return record

    assert Formats(Settings(), hook=to_event).team_records() == (
        "the app makes records events with its event decoder "
        "test_what_makes_the_events_topic_a_teams_own_is_said.<locals>.to_event"
    )
    protobuf = Settings(events_format="protobuf", schema_registry_url=REGISTRY)
    assert Formats(protobuf).team_records() == "RIVERRUN_EVENTS_FORMAT is protobuf"


def test_riverrun_json_events_are_written_without_a_registry() -> None:
    encoder = asyncio.run(Formats(Settings()).input_event_encoder("elsewhere"))
    assert encoder.format == "json"


def test_the_predictions_schema_is_asked_for_until_the_worker_stops() -> None:
    """A registry that refuses connections (nothing listens on port 1) is asked again, each
    failure counted, until the worker stops: then no encoder, and no predictions written
    in a format whose schema was never registered."""
    failures: list[int] = []
    formats = Formats(
        Settings(predictions_format="avro", schema_registry_url=REGISTRY),
        on_unavailable=lambda: failures.append(1),
    )

    async def stop_after_two_failures() -> object:
        try:
            return await formats.prediction_encoder(abandon=lambda: len(failures) >= 2)
        finally:
            await formats.close()

    assert asyncio.run(stop_after_two_failures()) is None
    assert len(failures) == 2
