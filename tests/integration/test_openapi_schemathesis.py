"""The /v1 API of a live worker against its own OpenAPI document (the one it serves):
schemathesis generates requests from the document, valid ones and broken ones, and every
answer must be one the document declares (status, content type, headers, body schema),
never a 5xx. Bearer tokens are on: without the token every operation but the document is
401; bodies over RIVERRUN_API_MAX_REQUEST_BYTES are 413."""

import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from typing import Any

import hypothesis
import requests
import schemathesis
from hypothesis import HealthCheck, Phase
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from schemas.openapi import OPENAPI_PATH, PUBLIC_PATHS, STREAM_PATH, render_openapi
from tests.integration.test_http_api import FEATURES, api, until_answered

TOKEN = "tok-" + "7" * 30
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MAX_REQUEST_BYTES = 64 * 1024
#: Examples per operation and generation mode: enough to cross every branch of the
#: handlers (each refusal, each answer shape) in a few seconds.
EXAMPLES = 25
CHECKS: list[Callable[..., Any]] = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


def event(event_id: str) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "ts": "2026-12-01T00:00:00Z",
        "model": "logreg",
        "key": "visitor-1",
        "features": FEATURES,
        "label": True,
    }


def for_logreg(case: Any) -> None:
    """A generated event (or list of them) made one of the served model, `logreg`,
    whose label is a boolean (a binary model's: any other is refused, 400)."""
    for item in case.body if isinstance(case.body, list) else [case.body]:
        item["model"] = "logreg"
        if item.get("label") is not None:
            item["label"] = bool(item["label"])


def fuzz(
    operation: Any,
    base_url: str,
    session: requests.Session,
    statuses: Counter[int],
    modes: tuple[GenerationMode, ...] = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE),
    prepare: Callable[[Any], None] = lambda case: None,
    **fixed: Any,
) -> None:
    """Send EXAMPLES generated requests of each mode to `operation` (each changed by
    `prepare` first), every answer checked against the document; count their statuses."""
    for mode in modes:
        strategy = operation.as_strategy(generation_mode=mode, headers=dict(AUTH), **fixed)

        @hypothesis.settings(
            max_examples=EXAMPLES,
            derandomize=True,  # the same requests on every run
            database=None,
            deadline=None,
            phases=[Phase.explicit, Phase.generate],  # a failure is reported unshrunk
            suppress_health_check=list(HealthCheck),
        )
        @hypothesis.given(case=strategy)
        def check(case: Any) -> None:
            prepare(case)
            answer = case.call_and_validate(
                base_url=base_url, session=session, headers=dict(AUTH), checks=CHECKS
            )
            statuses[answer.status_code] += 1

        check()


def test_the_api_answers_as_its_openapi_document_says(make_env) -> None:  # type: ignore[no-untyped-def]
    started = time.monotonic()
    env = make_env(
        topic_partitions=2,
        models=["logreg"],
        api_tokens=TOKEN,
        api_max_request_bytes=MAX_REQUEST_BYTES,
    )
    worker = env.start_worker()
    env.wait_for_group_members(1)
    base_url = api(worker)
    until_answered(
        base_url + "/v1/models/logreg/predict", {"key": "k", "features": {}}, headers=AUTH
    )
    # The document the worker serves (without a token) is the committed one.
    schema = schemathesis.openapi.from_url(base_url + "/v1/openapi.json")
    assert schema.raw_schema == render_openapi()
    session = requests.Session()

    predict = schema["/v1/models/{name}/predict"]["POST"]
    events = schema["/v1/events"]["POST"]
    statuses: Counter[int] = Counter()
    fuzz(predict, base_url, session, statuses, path_parameters={"name": "logreg"})
    fuzz(predict, base_url, session, statuses)  # (any model name: mostly 404)
    fuzz(events, base_url, session, statuses)
    # ... and valid events of the served model, written to the events topic (202).
    positive = (GenerationMode.POSITIVE,)
    fuzz(events, base_url, session, statuses, positive, prepare=for_logreg)
    # (no input to break: positive only)
    fuzz(schema[OPENAPI_PATH]["GET"], base_url, session, statuses, positive)
    # The answers a generated body seldom reaches: lists, and a valid event of a served model.
    asked: Any = [{"key": f"visitor-{i}", "features": FEATURES} for i in range(4)]
    for case in [
        predict.Case(
            path_parameters={"name": "logreg"},
            body=asked,
            media_type="application/json",
        ),
        events.Case(body=event("openapi-1"), media_type="application/json"),
        events.Case(body=[event("openapi-2"), event("openapi-3")], media_type="application/json"),
        schema[STREAM_PATH]["GET"].Case(query={"topics": "predictions,nope"}),
    ]:
        answer = case.call_and_validate(
            base_url=base_url, session=session, headers=dict(AUTH), checks=CHECKS
        )
        assert answer.status_code in (200, 202, 400), answer.text

    # Without the token (or with a wrong one), every operation but the document is 401,
    # as the document says.
    for path, item in schema.raw_schema["paths"].items():
        for method in item:
            fixed: dict[str, Any] = {"path_parameters": {"name": "logreg"}} if "{" in path else {}
            if method == "post":
                fixed.update(body={"key": "k", "features": {}}, media_type="application/json")
            case = schema[path][method.upper()].Case(**fixed)
            for headers in ({}, {"Authorization": "Bearer wrong"}):
                answer = case.call(base_url=base_url, session=session, headers=headers)
                expected = 200 if path in PUBLIC_PATHS else 401
                assert answer.status_code == expected, (method, path, answer.text)
                case.validate_response(answer, checks=CHECKS)

    # Bodies over RIVERRUN_API_MAX_REQUEST_BYTES are 413, valid or not.
    oversized = b"[" + b'"x",' * (MAX_REQUEST_BYTES // 4) + b'"x"]'
    for path in ("/v1/models/logreg/predict", "/v1/events"):
        refused = session.post(base_url + path, data=oversized, headers=AUTH)
        assert refused.status_code == 413, refused.text
        assert refused.json()["error"] == "oversized"

    # The stream (never ending, so not generated): its first bytes, as the document says.
    request = urllib.request.Request(base_url + STREAM_PATH, headers=AUTH)
    with urllib.request.urlopen(request, timeout=10) as stream:
        assert stream.status == 200
        assert stream.headers["Content-Type"] == "text/event-stream"
        assert stream.readline() == b": riverrun stream\n"
    try:
        urllib.request.urlopen(base_url + STREAM_PATH, timeout=10)
        raise AssertionError("the stream answered without the token")
    except urllib.error.HTTPError as err:
        assert err.code == 401 and err.headers["WWW-Authenticate"] == "Bearer"

    took = time.monotonic() - started
    print(f"generated requests by status: {dict(statuses)}; {took:.1f} s in all")
    # Each kind of answer was reached and checked: predictions, events written, refusals.
    assert {200, 202, 400, 404} <= set(statuses), statuses
