"""bench.decode on a tiny input: every format decodes to the same events, the contenders
read the same records from the same bytes, and a run prints and writes every figure."""

import json
from pathlib import Path

import pytest
from google.protobuf.json_format import MessageToDict

from bench import decode as bench

FORMATS = [
    "json",
    "json, mapped",
    "avro",
    "avro, mapped",
    "json_schema, mapped",
    "protobuf, mapped",
]


def test_every_format_decodes_to_the_same_events() -> None:
    """What makes the figures comparable: each stream's bytes are the same events. (The
    bench checks it too, before timing anything; here it is checked once more, apart.)"""
    records = bench.click_records(30)
    events = [bench.expected_event(record) for record in records]
    found = bench.streams(30)
    assert [stream.name for stream in found] == FORMATS
    for stream in found:
        decoded = [
            stream.riverrun(raw, meta)
            for raw, meta in zip(stream.raws, bench.metas(30), strict=True)
        ]
        assert decoded == events, stream.name
    # 12 fields, of which 7 features: the mapping takes ids, time, user and label out and
    # excludes the session.
    assert len(records[0]) == 12 and len(events[0].features) == 7
    assert {event.label for event in events} <= {True, False}


def test_the_contenders_read_the_records_from_the_same_bytes() -> None:
    records = bench.click_records(5)
    by_name = {stream.name: stream for stream in bench.streams(5)}
    avro = by_name["avro, mapped"]
    assert [avro.contenders["AvroDeserializer"](raw) for raw in avro.raws] == records
    as_json = [bench.json_record(record) for record in records]
    json_schema = by_name["json_schema, mapped"]
    for label in ("JSONDeserializer", "JSONDeserializer, validate=False"):
        assert [json_schema.contenders[label](raw) for raw in json_schema.raws] == as_json
    protobuf = by_name["protobuf, mapped"]
    message = protobuf.contenders["ProtobufDeserializer"](protobuf.raws[0])
    read = MessageToDict(message, preserving_proto_field_name=True)
    assert read["event_id"] == records[0]["event_id"] and read["price"] == records[0]["price"]
    own = by_name["json"]
    assert own.contenders["json.loads"](own.raws[0])["event_id"] == records[0]["event_id"]


def test_a_run_prints_and_writes_every_figure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "decode.json"
    bench.main(["--events", "20", "--rounds", "2", "--output", str(output)])
    printed = capsys.readouterr().out
    for name in FORMATS:
        assert f"\n| {name} |" in printed
    results = json.loads(output.read_text())
    assert results["events"] == 20 and results["rounds"] == 2
    assert sorted(results["us_per_event"]) == sorted(FORMATS)
    for name, figures in results["us_per_event"].items():
        assert len(figures["riverrun"]["samples"]) == 2, name
        assert figures["riverrun"]["median"] > 0, name
    assert set(results["us_per_event"]["protobuf, mapped"]) == {
        "riverrun",
        "reader",
        "fields",
        "ProtobufDeserializer",
        "ProtobufDeserializer + MessageToDict",
    }
