"""The /v1 API's OpenAPI document: committed as rendered, a valid OpenAPI 3.1 document
(checked by openapi-spec-validator), one operation per route of the server and one route
per operation, its bodies the server's own models, and served without the token."""

import asyncio
import copy
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from openapi_spec_validator import validate
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError
from pydantic import BaseModel, SecretStr
from pydantic.json_schema import JsonSchemaMode

from schemas.input_event import InputEvent
from schemas.openapi import (
    OPENAPI_FILE,
    PUBLIC_PATHS,
    openapi_text,
    render_openapi,
    without_examples,
)
from schemas.serving import Accepted, PredictRequest, Problem, RequestPrediction
from streams.http.server import Api
from streams.runtime.metrics import WorkerMetrics
from streams.runtime.serving import ServingApi
from streams.settings import Settings
from tests.paths import PROJECT_DIR

COMMITTED = PROJECT_DIR / "schemas" / OPENAPI_FILE
METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


def operations(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method in METHODS
    }


def v1_routes(app: web.Application) -> set[tuple[str, str]]:
    return {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None and route.resource.canonical.startswith("/v1/")
    }


def api(settings: Settings, cls: type[Api] = Api, **kwargs: Any) -> Api:
    """The API over a source with no model and no partition (enough for routing and auth)."""
    events: Any = SimpleNamespace(models={}, partition_count=lambda: 1)
    return cls(settings, WorkerMetrics(), events, **kwargs)


def test_the_committed_document_is_the_rendered_one() -> None:
    assert COMMITTED.exists(), f"{COMMITTED} missing: run `riverrun schemas export`"
    assert COMMITTED.read_text() == openapi_text(), (
        f"{COMMITTED} is stale: run `riverrun schemas export` and commit the result"
    )


def test_the_export_command_writes_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from streams.cli.main import main

    monkeypatch.chdir(tmp_path)
    done = CliRunner().invoke(main, ["schemas", "export"])
    assert done.exit_code == 0, done.output
    assert (tmp_path / "schemas" / OPENAPI_FILE).read_text() == openapi_text()
    done = CliRunner().invoke(main, ["schemas", "export", "--dir", "out"])
    assert (tmp_path / "out" / OPENAPI_FILE).read_text() == openapi_text()


def test_it_is_a_valid_openapi_3_1_document() -> None:
    document = render_openapi()
    assert document["openapi"] == "3.1.0"
    assert document["jsonSchemaDialect"] == "https://json-schema.org/draft/2020-12/schema"
    validate(document)
    # ... and the validator does refuse a broken one: a parameter in the body (OpenAPI 2),
    # a schema of a type JSON Schema does not have.
    broken = copy.deepcopy(document)
    broken["paths"]["/v1/models/{name}/predict"]["post"]["parameters"][0]["in"] = "body"
    with pytest.raises(OpenAPIValidationError, match="body"):
        validate(broken)
    broken = copy.deepcopy(document)
    broken["components"]["schemas"]["Problem"]["type"] = "objekt"
    with pytest.raises(OpenAPIValidationError, match="objekt"):
        validate(broken)


def test_every_route_has_an_operation_and_every_operation_a_route() -> None:
    documented = operations(render_openapi())
    assert v1_routes(api(Settings()).application()) == documented
    # `riverrun serve` runs the same server, with its own routes outside /v1.
    serving = api(Settings(), ServingApi, snapshots=SimpleNamespace())
    assert v1_routes(serving.application()) == documented


def test_every_operation_has_an_id_and_the_statuses_the_server_gives() -> None:
    document = render_openapi()
    ids = []
    for path, item in document["paths"].items():
        for method, operation in item.items():
            ids.append(operation["operationId"])
            statuses = set(operation["responses"])
            assert "500" in statuses, (method, path)  # the middleware's last resort
            if path in PUBLIC_PATHS:
                assert operation["security"] == [] and "401" not in statuses
                continue
            assert {"400", "401", "503"} <= statuses, (method, path)
            assert "WWW-Authenticate" in operation["responses"]["401"]["headers"]
            assert "Retry-After" in operation["responses"]["503"]["headers"]
            if method == "post":
                assert "413" in statuses, (method, path)
    assert len(ids) == len(set(ids))
    stream = document["paths"]["/v1/stream"]["get"]["responses"]["200"]["content"]
    assert list(stream) == ["text/event-stream"]


def test_the_bodies_are_the_servers_own_models() -> None:
    # Not a copy: each component is what pydantic renders for the model the server
    # decodes the request as, or builds the answer from.
    schemas = render_openapi()["components"]["schemas"]
    served: list[tuple[type[BaseModel], JsonSchemaMode]] = [
        (PredictRequest, "validation"),
        (InputEvent, "validation"),
        (RequestPrediction, "serialization"),
        (Problem, "serialization"),
    ]
    for model, mode in served:
        rendered = model.model_json_schema(mode=mode)
        rendered["description"] = without_examples(rendered["description"])
        assert schemas[model.__name__] == rendered
    accepted = Accepted.model_json_schema(ref_template="#/components/schemas/{model}")
    assert schemas["AcceptedEvent"] == accepted.pop("$defs")["AcceptedEvent"]
    accepted["description"] = without_examples(accepted["description"])
    assert schemas["Accepted"] == accepted


def test_the_document_is_served_without_the_token_and_nothing_else_is() -> None:
    async def run() -> None:
        settings = Settings(api_tokens=SecretStr("tok-1"), api_max_request_bytes=1000)
        async with TestClient(TestServer(api(settings).application())) as client:
            answer = await client.get("/v1/openapi.json")
            assert answer.status == 200
            assert answer.content_type == "application/json"
            assert await answer.json() == json.loads(openapi_text())
            for method, path in [
                ("POST", "/v1/models/logreg/predict"),
                ("POST", "/v1/events"),
                ("GET", "/v1/stream"),
            ]:
                answer = await client.request(method, path, json={})
                assert answer.status == 401
                assert answer.headers["WWW-Authenticate"] == "Bearer"
                assert Problem.model_validate(await answer.json()).error == "unauthorized"
            # With the token, a body over the limit is refused before it is read whole.
            answer = await client.post(
                "/v1/events",
                data=b"[" + b"1," * 1000 + b"1]",
                headers={"Authorization": "Bearer tok-1"},
            )
            assert answer.status == 413
            assert Problem.model_validate(await answer.json()).error == "oversized"

    asyncio.run(run())
