"""The OpenAPI 3.1 document of the worker's /v1 API, rendered from the models it speaks.

Every body's schema comes from the pydantic model the server decodes or answers with
(`schemas.serving`, `schemas.input_event`, and for the stream the topics' messages), so
the document and the server cannot disagree; what is written here by hand is what no
model holds: the routes, their statuses and headers. `riverrun schemas export` writes it
to schemas/openapi.json, and a worker serves it at `GET /v1/openapi.json`.

>>> document = render_openapi()
>>> document["openapi"], sorted(document["paths"])[0]
('3.1.0', '/v1/events')
"""

import json
import re
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from schemas.drift import DriftReport
from schemas.input_event import InputEvent
from schemas.metrics_report import MetricsReport
from schemas.prediction import ClassPrediction, Prediction
from schemas.serving import Accepted, PredictRequest, Problem, RequestPrediction

OPENAPI_VERSION = "3.1.0"
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
#: The file `riverrun schemas export` writes, beside schemas/json/.
OPENAPI_FILE = "openapi.json"
#: The path of every operation, as the server registers its routes.
PREDICT_PATH = "/v1/models/{name}/predict"
EVENTS_PATH = "/v1/events"
STREAM_PATH = "/v1/stream"
OPENAPI_PATH = "/v1/openapi.json"
#: Routes answered without the bearer token: the document holds no data (and the same
#: text ships in the wheel and on the docs site), and a client generator needs it first.
PUBLIC_PATHS = frozenset({OPENAPI_PATH})
#: The `event:` name of each message kind on the stream, and the models of its `data:`.
STREAM_EVENTS: dict[str, tuple[type[BaseModel], ...]] = {
    "prediction": (Prediction, ClassPrediction),
    "metrics": (MetricsReport,),
    "drift": (DriftReport,),
}

#: (model, mode): requests are read as the server validates them, answers as it writes them.
_MODELS: list[tuple[type[BaseModel], JsonSchemaMode]] = [
    (PredictRequest, "validation"),
    (InputEvent, "validation"),
    (RequestPrediction, "serialization"),
    (Accepted, "serialization"),
    (Problem, "serialization"),
    *((model, "serialization") for models in STREAM_EVENTS.values() for model in models),
]
_REF = "#/components/schemas/{model}"
_JSON = "application/json"


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": _REF.format(model=model.__name__)}


def _one_or_many(model: type[BaseModel], items: str) -> dict[str, Any]:
    """One `model`, or a JSON list of them (as the server takes and answers them)."""
    return {
        "oneOf": [
            _ref(model),
            {
                "type": "array",
                "items": _ref(model),
                "minItems": 1,
                "description": f"Several {items} in one request: 1 to RIVERRUN_API_MAX_ITEMS "
                "(1000 by default).",
            },
        ]
    }


def _problem(description: str, **headers: dict[str, Any]) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {_JSON: {"schema": _ref(Problem)}},
    }
    if headers:
        response["headers"] = headers
    return response


_RETRY_AFTER = {
    "description": "Seconds to wait before sending the request again.",
    "required": True,
    "schema": {"type": "string", "pattern": "^[0-9]+$"},
}
_WWW_AUTHENTICATE = {
    "description": "Always `Bearer`.",
    "required": True,
    "schema": {"type": "string", "const": "Bearer"},
}
_BAD_REQUEST = _problem(
    "The body is not what the stream would accept: `reason` is the dead letter's reason "
    "(which field, what was expected), `error` its `error_type`."
)
_UNAUTHORIZED = _problem(
    "RIVERRUN_API_TOKENS is set and the request has no `Authorization: Bearer <token>` "
    "with one of them.",
    **{"WWW-Authenticate": _WWW_AUTHENTICATE},
)
_OVERSIZED = _problem(
    "The body is over RIVERRUN_API_MAX_REQUEST_BYTES (1 MiB by default): send fewer items "
    "per request."
)
_INTERNAL = _problem("The worker failed to answer; its log says why.")


def _unavailable(description: str) -> dict[str, Any]:
    return _problem(description, **{"Retry-After": _RETRY_AFTER})


def _operations() -> dict[str, Any]:
    predict = {
        "post": {
            "operationId": "predict",
            "summary": "Predict now, from the live replica of each key's partition",
            "description": "The prediction of the version serving each key, from the replica "
            "of the key's partition on the worker that owns it (a request reaching another "
            "worker is forwarded there once). Nothing is learnt from the request: send "
            "labelled events to `POST /v1/events` for that. A list is answered with a list "
            "in the same order.",
            "tags": ["predictions"],
            "parameters": [
                {
                    "name": "name",
                    "in": "path",
                    "required": True,
                    "description": "The model, as named in RIVERRUN_MODELS.",
                    "schema": {"type": "string", "minLength": 1, "maxLength": 256},
                }
            ],
            "requestBody": {
                "required": True,
                "content": {_JSON: {"schema": _one_or_many(PredictRequest, "predictions")}},
            },
            "responses": {
                "200": {
                    "description": "The prediction (a list for a list, in the same order).",
                    "headers": {
                        "X-Riverrun-Served-By": {
                            "description": "The API URLs of the workers whose replicas "
                            "answered, comma-separated.",
                            "required": True,
                            "schema": {"type": "string"},
                        },
                        "X-Riverrun-Stream": {
                            "description": "`stalled` while the broker is unreachable: the "
                            "replica answers from memory and learns nothing new.",
                            "schema": {"type": "string", "enum": ["stalled"]},
                        },
                    },
                    "content": {_JSON: {"schema": _one_or_many(RequestPrediction, "predictions")}},
                },
                "400": _BAD_REQUEST,
                "401": _UNAUTHORIZED,
                "404": _problem("No model of that name is served here (`unknown_model`)."),
                "413": _OVERSIZED,
                "500": _INTERNAL,
                "503": _unavailable(
                    "The key's partition is being restored or moving between workers, or "
                    "its owner did not answer: retry after Retry-After."
                ),
            },
        }
    }
    events = {
        "post": {
            "operationId": "postEvents",
            "summary": "Append events to the events topic",
            "description": "Each event is validated as the stream validates it, then appended "
            "to the events topic keyed by its `key`; the answer comes once the broker "
            "acknowledged every one. The model learns them from the log, as any other "
            "event. Sending the same events again (after a 503) is safe: the stream learns "
            "from an `event_id` once.",
            "tags": ["events"],
            "requestBody": {
                "required": True,
                "content": {_JSON: {"schema": _one_or_many(InputEvent, "events")}},
            },
            "responses": {
                "202": {
                    "description": "Written: where each event is, in the order sent.",
                    "content": {_JSON: {"schema": _ref(Accepted)}},
                },
                "400": _BAD_REQUEST,
                "401": _UNAUTHORIZED,
                "409": _problem(
                    "The events topic carries the team's own records (a mapping, an event "
                    "decoder, or `RIVERRUN_EVENTS_FORMAT=protobuf`): events are appended by the "
                    "team's producers, in its format (`team_format`). With avro or json_schema "
                    "the events are written in that format, their schema registered first."
                ),
                "413": _OVERSIZED,
                "500": _INTERNAL,
                "503": _unavailable(
                    "The broker did not acknowledge the events (unreachable, or not within "
                    "RIVERRUN_API_EVENTS_TIMEOUT_SECONDS), or the schema registry did not "
                    "register their schema: send them again with the same ids."
                ),
            },
        }
    }
    kinds = ", ".join(
        f"`{name}` ({' or '.join(f'`{m.__name__}`' for m in models)})"
        for name, models in STREAM_EVENTS.items()
    )
    stream = {
        "get": {
            "operationId": "stream",
            "summary": "Follow predictions and reports as they are published",
            "description": "Server-Sent Events from the end of the chosen topics: each "
            f"message is `event: <kind>` and `data: <its JSON>`, the kinds being {kinds} "
            "(schemas in `x-riverrun-events`). A comment line `: keepalive` comes after 15 "
            "quiet seconds. At most 32 streams are open on a worker at once.",
            "tags": ["stream"],
            "parameters": [
                {
                    "name": "topics",
                    "in": "query",
                    "description": "Which messages to follow, comma-separated.",
                    "style": "form",
                    "explode": False,
                    "schema": {
                        "type": "array",
                        "items": {"type": "string", "enum": ["predictions", "metrics", "drift"]},
                        "default": ["predictions", "metrics"],
                    },
                },
                {
                    "name": "model",
                    "in": "query",
                    "description": "Only the messages of this model.",
                    "schema": {"type": "string"},
                },
            ],
            "responses": {
                "200": {
                    "description": "The stream; it ends when the client or the worker stops.",
                    "content": {"text/event-stream": {"schema": {"type": "string"}}},
                    "x-riverrun-events": {
                        name: {"oneOf": [_ref(m) for m in models]}
                        if len(models) > 1
                        else _ref(models[0])
                        for name, models in STREAM_EVENTS.items()
                    },
                },
                "400": _problem("An unknown topic in `topics` (`invalid_request`)."),
                "401": _UNAUTHORIZED,
                "500": _INTERNAL,
                "503": _unavailable(
                    "The broker did not answer, the topics do not exist yet, or 32 streams "
                    "are open on this worker already."
                ),
            },
        }
    }
    openapi = {
        "get": {
            "operationId": "openapi",
            "summary": "This document",
            "description": "The OpenAPI document of /v1, as committed in schemas/openapi.json "
            "of the riverrun release the worker runs. No token needed: it holds no data.",
            "tags": ["meta"],
            "security": [],
            "responses": {
                "200": {
                    "description": "The OpenAPI 3.1 document.",
                    "content": {_JSON: {"schema": {"type": "object"}}},
                },
                "500": _INTERNAL,
            },
        }
    }
    return {PREDICT_PATH: predict, EVENTS_PATH: events, STREAM_PATH: stream, OPENAPI_PATH: openapi}


def _components() -> dict[str, Any]:
    _, found = models_json_schema(_MODELS, ref_template=_REF)
    schemas = found["$defs"]
    for schema in schemas.values():
        if "description" in schema:
            schema["description"] = without_examples(schema["description"])
    return schemas


def without_examples(docstring: str) -> str:
    r"""A model's docstring without its doctest examples (they are for the Python reader).

    >>> without_examples("A thing.\n\nExamples\n--------\n>>> 1 + 1\n2")
    'A thing.'
    """
    return re.split(r"\n\n(?:Examples\n-+\n)?>>>", docstring, maxsplit=1)[0]


def render_openapi() -> dict[str, Any]:
    """The OpenAPI 3.1 document of /v1, as data (`openapi_text` is the committed file)."""
    return {
        "openapi": OPENAPI_VERSION,
        "jsonSchemaDialect": JSON_SCHEMA_DIALECT,
        "info": {
            "title": "riverrun worker API",
            "version": "1",
            "summary": "Request-time predictions, events over HTTP, and the live stream of "
            "predictions and reports of a riverrun worker.",
            "description": "Served by every `riverrun worker` (and `riverrun serve`, for the "
            "global models) on RIVERRUN_API_HOST:RIVERRUN_API_PORT, by default "
            "http://127.0.0.1:9465. Every error answer is a `Problem`. When "
            "RIVERRUN_API_TOKENS is set, every operation but this document's needs "
            "`Authorization: Bearer <token>` (see `bearer`); when it is not, none does.",
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "tags": [
            {"name": "predictions", "description": "Request-time predictions."},
            {"name": "events", "description": "Labelled or unlabelled events, over HTTP."},
            {"name": "stream", "description": "Server-Sent Events for dashboards."},
            {"name": "meta", "description": "This document."},
        ],
        "paths": _operations(),
        "components": {
            "schemas": _components(),
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "One of the tokens of RIVERRUN_API_TOKENS (comma-separated "
                    "on the worker, two during a rotation). Required only when that "
                    "setting is set: without it, /v1 is open.",
                }
            },
        },
        "security": [{"bearer": []}],
    }


def openapi_text() -> str:
    """The exact text of schemas/openapi.json."""
    return json.dumps(render_openapi(), indent=2, sort_keys=True) + "\n"
