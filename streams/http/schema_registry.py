"""The schema registry, as riverrun uses it: schemas fetched by id (and cached), riverrun's
own output schemas registered under their subject.

It speaks Confluent's REST API (Confluent Cloud and Platform, Redpanda, Karapace, Apicurio's
ccompat API, Conduit's registry), with HTTP basic auth and TLS from the settings. What is
whose fault decides what happens to a record:

- a schema id the registry does not know (404) is the record's: its events are dead letters
  (`unknown_schema`), and the id is asked again with the next batch that names it;
- a schema the registry gives but riverrun cannot read is the record's too (`undecodable`);
- a registry that does not answer, answers 5xx or 429, or refuses the credentials is not
  the record's: the batch waits and the registry is asked again (`SchemaCache.resolve`),
  so that no event is lost or dead-lettered for it.
"""

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar
from urllib.parse import quote

import aiohttp

from schemas.codec import InvalidMessage
from schemas.formats.events import unknown_schema
from schemas.formats.readers import reader_for
from schemas.formats.wire import RecordReader, RegisteredSchema, schema_id_of
from streams.settings import Settings

log = logging.getLogger(__name__)

#: What a record's schema id resolves to: a reader, or why its records cannot be read.
Resolved = RecordReader | InvalidMessage

#: Waits between two tries while the registry is unavailable: doubling, up to the last.
RETRY_SECONDS = (0.5, 1.0, 2.0, 5.0)
#: While it stays unavailable, the warning is logged again at most this often.
WARN_EVERY_SECONDS = 30.0
#: How deep schema references are followed (a reference of a reference...).
MAX_REFERENCE_DEPTH = 8

T = TypeVar("T")


class RegistryUnavailable(Exception):
    """The registry did not give an answer about the schema: not the record's fault."""


class UnknownSchema(Exception):
    """The registry has no schema with this id (or no such subject version)."""


class SchemaRegistry:
    """An async client of one registry (`RIVERRUN_SCHEMA_REGISTRY_*`)."""

    def __init__(self, settings: Settings) -> None:
        if settings.schema_registry_url is None:
            raise ValueError("RIVERRUN_SCHEMA_REGISTRY_URL is not set")
        self.url = settings.schema_registry_url.rstrip("/")
        user, password = settings.schema_registry_username, settings.schema_registry_password
        self._headers = {"Accept": "application/vnd.schemaregistry.v1+json, application/json"}
        if user is not None and password is not None:
            self._headers["Authorization"] = aiohttp.encode_basic_auth(
                user, password.get_secret_value()
            )
        self._ssl = _ssl_context(settings) if self.url.startswith("https://") else None
        self._timeout = aiohttp.ClientTimeout(total=settings.schema_registry_timeout_seconds)
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def schema(self, schema_id: int) -> RegisteredSchema:
        """The schema registered under `schema_id`, with the schemas it references.

        Protobuf schemas are asked for in their serialized form (a Confluent registry
        gives the base64 of a FileDescriptorProto for `?format=serialized`)."""
        body = await self._get(f"/schemas/ids/{schema_id}?format=serialized")
        return await self._registered(schema_id, body, depth=0)

    async def check(self) -> None:
        """Raise RegistryUnavailable unless the registry answers with these credentials
        (asking for schema id 1: known or not, the answer shows it reachable)."""
        with contextlib.suppress(UnknownSchema):
            await self._get("/schemas/ids/1")

    async def register(self, subject: str, schema_type: str, text: str) -> int:
        """Register `text` under `subject` (idempotent: the same schema keeps its id)."""
        payload: dict[str, Any] = {"schema": text}
        if schema_type != "AVRO":
            payload["schemaType"] = schema_type
        body = await self._request("POST", f"/subjects/{quote(subject, safe='')}/versions", payload)
        return int(body["id"])

    async def _registered(self, schema_id: int, body: Any, depth: int) -> RegisteredSchema:
        references = []
        for reference in body.get("references") or ():
            if depth >= MAX_REFERENCE_DEPTH:
                raise UnknownSchema(f"references nested deeper than {MAX_REFERENCE_DEPTH}")
            subject = quote(str(reference["subject"]), safe="")  # (e.g. shop/user.proto)
            version = await self._get(
                f"/subjects/{subject}/versions/{reference['version']}?format=serialized"
            )
            referenced = await self._registered(int(version.get("id", 0)), version, depth + 1)
            references.append((str(reference["name"]), referenced))
        return RegisteredSchema(
            id=schema_id,
            schema_type=body.get("schemaType") or "AVRO",
            text=body["schema"],
            references=tuple(references),
        )

    async def _get(self, path: str) -> Any:
        return await self._request("GET", path, None)

    async def _request(self, method: str, path: str, payload: Any) -> Any:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout, headers=self._headers)
        try:
            async with self._session.request(
                method,
                self.url + path,
                json=payload,
                ssl=self._ssl if self._ssl is not None else True,
                headers={"Content-Type": "application/vnd.schemaregistry.v1+json"}
                if payload is not None
                else None,
            ) as response:
                if response.status == 404:
                    raise UnknownSchema(await _message(response))
                if response.status >= 400:
                    raise RegistryUnavailable(
                        f"{method} {path.split('?')[0]} answered {response.status} "
                        f"({await _message(response)})"
                        + (
                            ": check RIVERRUN_SCHEMA_REGISTRY_USERNAME and _PASSWORD"
                            if response.status in (401, 403)
                            else ""
                        )
                    )
                return await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as err:
            raise RegistryUnavailable(f"{type(err).__name__}: {err}") from None


class SchemaCache:
    """The readers of the schema ids records name, fetched once per id.

    `resolve` is awaited with each batch before it is decoded: afterwards `readers` has an
    entry for every id the batch names (`schemas.formats.events.EventDecoder` reads it).
    """

    def __init__(
        self,
        registry: SchemaRegistry,
        *,
        on_unavailable: Callable[[], None] = lambda: None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.registry = registry
        self.readers: dict[int, Resolved] = {}
        self._unknown: set[int] = set()  # asked again with the next batch naming them
        self._on_unavailable = on_unavailable
        self._sleep = sleep

    async def resolve(
        self, values: Iterable[bytes | None], *, abandon: Callable[[], bool] = lambda: False
    ) -> bool:
        """Fetch the schemas of the ids in `values` that are not cached, waiting (and
        asking again) as long as the registry is unavailable, unless `abandon()` says to
        stop waiting: then False, and the records' schemas are not all known."""
        for schema_id in self._unknown:
            self.readers.pop(schema_id, None)
        self._unknown.clear()
        missing = {i for i in map(schema_id_of, values) if i is not None} - self.readers.keys()
        for schema_id in sorted(missing):
            resolved = await self._fetch(schema_id, abandon)
            if resolved is None:
                return False
            self.readers[schema_id] = resolved
        return True

    async def _fetch(self, schema_id: int, abandon: Callable[[], bool]) -> Resolved | None:
        async def ask() -> Resolved:
            try:
                schema = await self.registry.schema(schema_id)
            except UnknownSchema:
                self._unknown.add(schema_id)
                return unknown_schema(schema_id, f"the schema registry at {self.registry.url}")
            try:
                return reader_for(schema)
            except InvalidMessage as verdict:
                return verdict

        return await until_answered(
            ask,
            self.registry.url,
            waiting=f"the records naming schema id {schema_id} wait and are asked for again",
            on_unavailable=self._on_unavailable,
            abandon=abandon,
            sleep=self._sleep,
        )


async def until_answered(
    ask: Callable[[], Awaitable[T]],
    url: str,
    *,
    waiting: str,
    on_unavailable: Callable[[], None] = lambda: None,
    abandon: Callable[[], bool] = lambda: False,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> T | None:
    """`await ask()`, asked again as long as the registry at `url` is unavailable (it
    raises RegistryUnavailable), after the waits of RETRY_SECONDS; None when `abandon()`
    ended the wait first (the worker stops).

    Each failure calls `on_unavailable()` (the failures counter); the log says so at once
    and then at most every WARN_EVERY_SECONDS, with what is `waiting`, and says when the
    registry answers again."""
    tries, warned_at = 0, float("-inf")
    while not abandon():
        try:
            answer = await ask()
        except RegistryUnavailable as err:
            on_unavailable()
            now = time.monotonic()
            if now - warned_at >= WARN_EVERY_SECONDS:
                log.warning("the schema registry at %s is unavailable (%s): %s", url, err, waiting)
                warned_at = now
            await sleep(RETRY_SECONDS[min(tries, len(RETRY_SECONDS) - 1)])
            tries += 1
            continue
        if tries:
            log.info("the schema registry at %s answers again", url)
        return answer
    return None


def _ssl_context(settings: Settings) -> ssl.SSLContext:
    context = ssl.create_default_context(
        cafile=str(settings.schema_registry_cafile) if settings.schema_registry_cafile else None
    )
    if settings.schema_registry_certfile is not None:
        context.load_cert_chain(
            str(settings.schema_registry_certfile),
            str(settings.schema_registry_keyfile) if settings.schema_registry_keyfile else None,
        )
    return context


async def _message(response: aiohttp.ClientResponse) -> str:
    """The registry's `message`, or the start of its body."""
    try:
        body = await response.json(content_type=None)
        return str(body.get("message") or body)[:200]
    except (ValueError, AttributeError, aiohttp.ClientError):
        return (await response.text())[:200]
