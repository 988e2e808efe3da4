"""`riverrun replay` in the events topic's format, through the local schema registry: the
InputEvent schema registered under <topic>-value, every event written in the Confluent
wire format, read by confluent-kafka's own deserializers (as a team's consumer would) as
the very events replayed, and by a worker without a dead letter."""

from pathlib import Path

from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.schema_registry.json_schema import JSONDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

from schemas import InputEvent
from schemas.formats.input_events import registered_schema
from schemas.formats.wire import schema_id_of
from streams.cli.replay import dataset_events, file_events
from tests.integration.conftest import replay_file
from tests.integration.conftest import riverrun_cli as riverrun
from tests.integration.test_http_api import call


def test_an_avro_replay_is_the_same_events_and_the_worker_reads_them(  # type: ignore[no-untyped-def]
    make_env, schema_registry: str
) -> None:
    env = make_env(models=["logreg"], events_format="avro", schema_registry_url=schema_registry)
    topic = env.settings.events_topic
    env.start_worker()
    env.wait_for_group_members(1)
    done = riverrun(
        env, "replay", "--dataset", "phishing", "--limit", "200", "--quiet", "--wait-seconds", "60"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[1].startswith("the worker handled all 200 events within ")
    assert done.stdout.splitlines()[1].endswith(": no dead letters")
    assert len(env.read(env.settings.predictions_topic, 200)) >= 200

    client = SchemaRegistryClient({"url": schema_registry})
    latest = client.get_version(f"{topic}-value", 1)  # (the local registry has no "latest")
    assert (latest.schema.schema_type, latest.schema.schema_str) == registered_schema("avro")
    messages = env.read(topic, 200)
    assert {schema_id_of(m.value) for m in messages} == {latest.schema_id}
    deserialize = AvroDeserializer(client)
    context = SerializationContext(topic, MessageField.VALUE)
    read = [InputEvent.model_validate(deserialize(m.value, context)) for m in messages]
    sent = list(dataset_events("phishing", limit=200, model=None, seed=42))
    assert sorted(read, key=lambda e: e.event_id) == sent
    assert sorted(m.key for m in messages) == sorted(e.key.encode() for e in sent)

    # POST /v1/events writes riverrun's events in the topic's format too, the same schema.
    posted = sent[0].model_copy(update={"event_id": "posted-1"})
    worker = env.workers[0]
    status, answer, _ = call(
        f"http://127.0.0.1:{worker.api_port}/v1/events", raw=posted.model_dump_json().encode()
    )
    assert status == 202, answer
    (value,) = [m.value for m in env.read(topic, 201)[200:]]
    assert schema_id_of(value) == latest.schema_id
    assert InputEvent.model_validate(deserialize(value, context)) == posted


def test_a_file_replayed_in_json_schema_is_its_events_json_after_the_header(  # type: ignore[no-untyped-def]
    make_env, schema_registry: str, tmp_path: Path
) -> None:
    env = make_env(events_format="json_schema", schema_registry_url=schema_registry)
    path = tmp_path / "offers.jsonl"
    path.write_text(
        '{"device": "mobile", "price": 0.5, "visits": 3, "returning": true, "label": 1}\n'
        '{"device": "desktop", "price": 2.0, "visits": 0, "returning": false}\n'
    )
    done = replay_file(env, path, "logreg", "--quiet", "--wait-seconds", "0")
    assert done.returncode == 0, done.stderr
    client = SchemaRegistryClient({"url": schema_registry})
    deserialize = JSONDeserializer(None, schema_registry_client=client)
    context = SerializationContext(env.settings.events_topic, MessageField.VALUE)
    read = [
        InputEvent.model_validate_json(m.value[5:])
        for m in env.read(env.settings.events_topic, 2)
        if deserialize(m.value, context) is not None  # (valid against the registered schema)
    ]
    assert read == list(file_events(path, model="logreg"))
