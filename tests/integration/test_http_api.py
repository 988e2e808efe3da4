"""The /v1 API through the real broker and two real workers: request-time predictions
from the live replica (forwarded to the key's owner), equal to a replica rebuilt offline
from the same offsets; events over HTTP, learnt from the log; the errors; HTTPS with
bearer tokens; the Server-Sent Events stream."""

import json
import ssl
import threading
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

from online_models import Learner
from schemas import DeadLetter, InputEvent
from streams.cli.replay import dataset_events, encode
from streams.http.server import FORWARDED, SERVED_BY, partition_of
from tests.builtin import MODELS
from tests.tls import Authority

FEATURES = {
    "empty_server_form_handler": 1.0,
    "popup_window": 0.0,
    "https": 0.5,
    "request_from_other_domain": 1.0,
    "anchor_from_other_domain": 0.0,
    "is_popular": 0.5,
    "long_url": 0.5,
    "age_of_domain": 1,
    "ip_in_url": 0,
}


def phishing(n: int, prefix: str = "") -> list[InputEvent]:
    return list(dataset_events("phishing", limit=n, model=None, seed=42, id_prefix=prefix))


def call(
    url: str,
    body: Any = None,
    *,
    headers: dict[str, str] | None = None,
    context: ssl.SSLContext | None = None,
    raw: bytes | None = None,
) -> tuple[int, Any, dict[str, str]]:
    """(status, JSON answer, headers) of a POST (GET without a body)."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(
        url, data=data, headers={"Content-Type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as answer:
            return answer.status, json.loads(answer.read()), dict(answer.headers)
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read()), dict(err.headers)


def api(worker: Any, scheme: str = "http") -> str:
    return f"{scheme}://127.0.0.1:{worker.api_port}"


def until_answered(
    url: str, body: Any, timeout: float = 60.0, **options: Any
) -> tuple[Any, dict[str, str]]:
    """The first 200 answer (503 while owners are being advertised or restored)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            status, answer, headers = call(url, body, **options)
        except urllib.error.URLError:  # not listening yet: the worker is starting
            status, answer, headers = 503, None, {"Retry-After": "1"}
        if status == 200:
            return answer, headers
        assert status == 503 and headers.get("Retry-After") == "1", (status, answer)
        assert time.monotonic() < deadline, f"still {status} after {timeout} s: {answer}"
        time.sleep(0.3)


def offline_prediction(
    env: Any, partition: int, next_offset: int, features: dict[str, Any]
) -> tuple[float, int]:
    """(prediction, updates) of a replica rebuilt from the partition's events below
    `next_offset`, as the stream learnt them."""
    messages = [
        m
        for m in env.read_all(env.settings.events_topic)
        if m.partition == partition and m.offset < next_offset
    ]
    assert len(messages) == next_offset  # nothing compacted or missing
    learner = Learner(["logreg"], registry=MODELS)
    learner.process([InputEvent.model_validate_json(m.value) for m in messages])
    replica = learner.models["logreg"]
    return replica.predict(dict(features)), replica.updates


def test_predictions_come_from_the_live_replica_of_the_keys_owner(make_env) -> None:  # type: ignore[no-untyped-def]
    env = make_env(topic_partitions=2, models=["logreg"])
    workers = [env.start_worker(), env.start_worker()]
    env.wait_for_group_members(2)
    events = phishing(600)
    env.produce([encode(e) for e in events])
    env.read(env.settings.predictions_topic, len(events))

    keys = [f"visitor-{i}" for i in range(8)]
    assert {partition_of(k, 2) for k in keys} == {0, 1}  # both partitions, both owners
    owners: dict[int, str] = {}
    for key in keys:
        body = {"key": key, "features": FEATURES}
        path = "/v1/models/logreg/predict"
        first, first_headers = until_answered(api(workers[0]) + path, body)
        second, second_headers = until_answered(api(workers[1]) + path, body)
        # Asked either worker, the owner's replica answers: the same figures.
        assert first == second
        assert first_headers[SERVED_BY] == second_headers[SERVED_BY]
        partition = first["partition"]
        assert partition == partition_of(key, 2)
        owners.setdefault(partition, first_headers[SERVED_BY])
        assert owners[partition] == first_headers[SERVED_BY]
        assert first["role"] == "champion" and first["model"] == "logreg"
        # ... equal to a replica rebuilt from the same offsets of the same partition.
        expected, updates = offline_prediction(env, partition, first["next_offset"], FEATURES)
        assert first["prediction"] == expected
        assert first["model_updates"] == updates
    assert len(set(owners.values())) == 2  # each worker owns one partition
    # A request forwarded once is never forwarded again (mid-rebalance): retry later.
    elsewhere = next(k for k in keys if owners[partition_of(k, 2)] != api(workers[0]))
    status, answer, headers = call(
        api(workers[0]) + "/v1/models/logreg/predict",
        {"key": elsewhere, "features": FEATURES},
        headers={FORWARDED: api(workers[1])},
    )
    assert (status, headers.get("Retry-After")) == (503, "1"), answer
    assert sum(
        w.scrape().get('riverrun_api_forwarded_total{outcome="answered"}', 0) for w in workers
    ) >= len(keys)

    # A list: each key from its own owner, in the order asked.
    listed, _ = until_answered(
        api(workers[0]) + "/v1/models/logreg/predict",
        [{"key": k, "features": FEATURES} for k in keys],
    )
    assert [a["key"] for a in listed] == keys

    # An event over HTTP (to a worker that may not own it) is learnt from the log.
    key = keys[0]
    before, _ = until_answered(
        api(workers[1]) + "/v1/models/logreg/predict", {"key": key, "features": FEATURES}
    )
    event = InputEvent.model_validate(
        {
            "event_id": "http-1",
            "ts": "2026-12-01T00:00:00Z",
            "model": "logreg",
            "key": key,
            "features": FEATURES,
            "label": True,
        }
    )
    status, accepted, _ = call(api(workers[1]) + "/v1/events", raw=event.model_dump_json().encode())
    assert status == 202, accepted
    [written] = accepted["accepted"]
    assert written["event_id"] == "http-1" and written["partition"] == before["partition"]
    deadline = time.monotonic() + 60
    while True:
        after, _ = until_answered(
            api(workers[0]) + "/v1/models/logreg/predict", {"key": key, "features": FEATURES}
        )
        if after["next_offset"] > written["offset"]:
            break
        assert time.monotonic() < deadline, "the event sent over HTTP was never learnt"
        time.sleep(0.2)
    assert after["model_updates"] == before["model_updates"] + 1
    assert after["prediction"] > before["prediction"]  # learnt a positive for these features
    expected, _ = offline_prediction(env, after["partition"], after["next_offset"], FEATURES)
    assert after["prediction"] == expected


def test_bad_requests_get_the_dead_letters_reasons(make_env) -> None:  # type: ignore[no-untyped-def]
    env = make_env(topic_partitions=2, models=["logreg"])
    worker = env.start_worker()
    env.wait_for_group_members(1)
    bad = b'{"event_id": "x", "ts": 0, "model": "logreg", "key": "k", "features": {"a": NaN}}'
    env.produce([(b"k", bad)])
    [letter] = [
        DeadLetter.model_validate_json(m.value)
        for m in env.read(env.settings.dead_letters_topic, 1)
    ]
    status, answer, _ = call(api(worker) + "/v1/events", raw=bad)
    assert (status, answer) == (400, {"error": letter.error_type.value, "reason": letter.reason})
    assert env.count(env.settings.events_topic) == 1  # the refused event was not appended

    status, answer, _ = call(
        api(worker) + "/v1/models/logreg/predict", {"key": "k", "features": {"price": "x" * 2000}}
    )
    assert status == 400 and "features.price: expected a finite number" in answer["reason"]
    status, answer, _ = call(api(worker) + "/v1/models/nope/predict", {"key": "k", "features": {}})
    assert status == 404 and "no model named 'nope'" in answer["reason"]
    status, answer, _ = call(
        api(worker) + "/v1/events", raw=bad.replace(b"NaN", b"1").replace(b"logreg", b"nope")
    )
    assert status == 400 and answer["error"] == "unknown_model"
    status, answer, _ = call(api(worker) + "/v1/events", raw=b"[" + b"1," * 600_000 + b"1]")
    assert status == 413 and "RIVERRUN_API_MAX_REQUEST_BYTES" in answer["reason"]


def test_https_with_bearer_tokens_between_two_workers(make_env, tmp_path) -> None:  # type: ignore[no-untyped-def]
    ca = Authority.create(tmp_path / "certs", "api-ca")
    chain, key = ca.issue(tmp_path / "certs", "worker", hosts=("127.0.0.1",))
    token = "tok-" + "5" * 30
    env = make_env(
        topic_partitions=2,
        models=["logreg"],
        api_tokens=f"old-token,{token}",
        api_ssl_certfile=chain,
        api_ssl_keyfile=key,
        api_ssl_cafile=ca.certificate_file,
    )
    workers = [env.start_worker(), env.start_worker()]
    env.wait_for_group_members(2)
    trust = ssl.create_default_context(cafile=str(ca.certificate_file))
    path = "/v1/models/logreg/predict"
    keys = [f"visitor-{i}" for i in range(6)]
    for key_ in keys:
        body = {"key": key_, "features": FEATURES}
        until_answered(
            api(workers[0], "https") + path,
            body,
            context=trust,
            headers={"Authorization": f"Bearer {token}"},
        )
        status, answer, headers = call(api(workers[0], "https") + path, body, context=trust)
        assert status == 401 and headers["WWW-Authenticate"] == "Bearer"
        status, _, _ = call(
            api(workers[0], "https") + path,
            body,
            context=trust,
            headers={"Authorization": "Bearer wrong"},
        )
        assert status == 401
        for worker in workers:  # forwarded over HTTPS, with the caller's token
            answer, _ = until_answered(
                api(worker, "https") + path,
                body,
                context=trust,
                headers={"Authorization": f"Bearer {token}"},
            )
            assert answer["partition"] == partition_of(key_, 2)
    with pytest.raises(OSError):  # no plain HTTP on the API (refused or reset)
        call(api(workers[0]) + path, {"key": "k", "features": {}})
    # /metrics stays plain and open.
    assert (
        workers[0].scrape()[
            'riverrun_api_requests_total{route="/v1/models/{name}/predict",status="401"}'
        ]
        >= 6
    )
    for worker in workers:
        worker.stop()
        assert token not in worker.log_path.read_text()


def test_the_stream_of_predictions_and_metrics_reports(make_env) -> None:  # type: ignore[no-untyped-def]
    env = make_env(models=["logreg"], metrics_every_events=50)
    worker = env.start_worker()
    env.wait_for_group_members(1)
    until_answered(api(worker) + "/v1/models/logreg/predict", {"key": "k", "features": {}})
    seen: list[tuple[str, dict[str, Any]]] = []
    connected = threading.Event()

    def listen() -> None:
        url = api(worker) + "/v1/stream?topics=predictions,metrics&model=logreg"
        with urllib.request.urlopen(url, timeout=30) as stream:
            assert stream.headers["Content-Type"] == "text/event-stream"
            kind = None
            for line in stream:
                connected.set()
                text = line.decode().rstrip("\n")
                if text.startswith("event: "):
                    kind = text.removeprefix("event: ")
                elif text.startswith("data: ") and kind is not None:
                    seen.append((kind, json.loads(text.removeprefix("data: "))))
                if sum(k == "prediction" for k, _ in seen) >= 200 and any(
                    k == "metrics" for k, _ in seen
                ):
                    return

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    assert connected.wait(30)
    time.sleep(1.0)  # (the stream starts at the end of the topics)
    events = phishing(200)
    env.produce([encode(e) for e in events])
    listener.join(60)
    assert not listener.is_alive(), f"the stream showed only {len(seen)} messages"
    predictions = [body for kind, body in seen if kind == "prediction"]
    assert [p["event_id"] for p in predictions[:200]] == [e.event_id for e in events]
    assert any(kind == "metrics" and body["model"] == "logreg" for kind, body in seen)
