"""The formats of the worker's topics: how input records become events, and how
predictions are written (`RIVERRUN_EVENTS_FORMAT`, `_JOIN_FORMAT`, `_PREDICTIONS_FORMAT`,
`RIVERRUN_EVENT_MAPPING` or the App's mapping or event decoder).

One `Formats` per worker: the events and join services share its schema registry client
and its cache of schemas by id.
"""

import logging
from collections.abc import Callable, Iterable
from typing import TypeVar

from pydantic import BaseModel

from schemas import AnyPrediction
from schemas.codec import decode
from schemas.fast_codec import encode_prediction
from schemas.formats.events import EventDecoder, EventHook, decode_record
from schemas.formats.input_events import JSON, InputEventEncoder
from schemas.formats.input_events import registered_schema as input_event_schema
from schemas.formats.mapping import EventMapping
from schemas.formats.predictions import PredictionEncoder, registered_schema
from streams.http.schema_registry import (
    RegistryUnavailable,
    SchemaCache,
    SchemaRegistry,
    UnknownSchema,
    until_answered,
)
from streams.settings import Settings

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)


class Formats:
    """The worker's formats, from its settings and its app's mapping or event decoder
    (RIVERRUN_EVENT_MAPPING, when set, is the mapping whatever the app's)."""

    def __init__(
        self,
        settings: Settings,
        *,
        mapping: EventMapping | None = None,
        hook: EventHook | None = None,
        on_unavailable: Callable[[], None] = lambda: None,
    ) -> None:
        self.settings = settings
        mapping = settings.event_mapping or mapping
        self.mapping = mapping
        self.hook = hook
        self.registry = (
            SchemaRegistry(settings) if settings.schema_registry_url is not None else None
        )
        self.cache = (
            SchemaCache(self.registry, on_unavailable=on_unavailable)
            if self.registry is not None
            else None
        )
        self._on_unavailable = on_unavailable
        # One decoder for the worker's life: it reads the cache's readers as they are filled.
        self._event_decoder = (
            None
            if settings.events_format == "json" and mapping is None and hook is None
            else EventDecoder(
                settings.events_format,
                readers=self.cache.readers if self.cache is not None else {},
                mapping=mapping,
                hook=hook,
                max_bytes=settings.max_event_bytes,
            )
        )
        self._encoder: PredictionEncoder | None = None
        self._event_encoders: dict[str, InputEventEncoder] = {}  # by topic

    async def close(self) -> None:
        if self.registry is not None:
            await self.registry.close()

    # --- input -----------------------------------------------------------------------
    async def prepare(
        self, values: Iterable[bytes | None], *, abandon: Callable[[], bool] = lambda: False
    ) -> bool:
        """Fetch the schemas the records in `values` name (waiting while the registry is
        unavailable), so that the decoders below can read them; False when `abandon()`
        ended the wait first."""
        if self.cache is None:
            return True
        return await self.cache.resolve(values, abandon=abandon)

    def event_decoder(self) -> EventDecoder | None:
        """The events topic's decoder; None: riverrun's InputEvent JSON (the fast path)."""
        return self._event_decoder

    def message_decoder(self, model: type[M]) -> Callable[[bytes | None], M]:
        """Decodes a join input topic's records (`RIVERRUN_JOIN_FORMAT`) as `model`."""
        s = self.settings
        if s.join_format == "json":
            return lambda raw: decode(model, raw, max_bytes=s.max_event_bytes)
        readers = self.cache.readers if self.cache is not None else {}
        return lambda raw: decode_record(model, raw, readers, max_bytes=s.max_event_bytes)

    # --- riverrun's own events (POST /v1/events, riverrun replay, the demo) ------------
    def team_records(self) -> str | None:
        """What makes the events topic's records a team's own, which riverrun cannot write
        (a mapping, an event decoder, or Protobuf); None: riverrun's InputEvents."""
        if self.settings.event_mapping is not None:
            return "RIVERRUN_EVENT_MAPPING maps records to events"
        if self.mapping is not None:
            return "the app maps records to events (App(event_mapping=...))"
        if self.hook is not None:
            name = getattr(self.hook, "__qualname__", repr(self.hook))
            return f"the app makes records events with its event decoder {name}"
        if self.settings.events_format == "protobuf":
            return "RIVERRUN_EVENTS_FORMAT is protobuf"
        return None

    async def input_event_encoder(self, topic: str | None = None) -> InputEventEncoder:
        """How riverrun writes an InputEvent to `topic` (the events topic by default) in
        RIVERRUN_EVENTS_FORMAT: with avro and json_schema, the InputEvent schema registered
        under `<topic>-value` on first use. RegistryUnavailable when the registry does not
        register it now; only for riverrun's InputEvents (`team_records()` is None)."""
        s = self.settings
        topic = topic or s.events_topic
        if s.events_format == "json":
            return JSON
        encoder = self._event_encoders.get(topic)
        if encoder is None:
            assert self.registry is not None and self.team_records() is None
            subject = f"{topic}-value"
            try:
                schema_id = await self.registry.register(
                    subject, *input_event_schema(s.events_format)
                )
            except UnknownSchema as err:
                raise RegistryUnavailable(str(err)) from None
            encoder = self._event_encoders[topic] = InputEventEncoder(s.events_format, schema_id)
        return encoder

    # --- output ----------------------------------------------------------------------
    async def prediction_encoder(
        self, *, abandon: Callable[[], bool] = lambda: False
    ) -> Callable[[AnyPrediction], bytes] | None:
        """How predictions are written. For avro and json_schema, their schema is registered
        under <predictions topic>-value first, asked again while the registry is away;
        None when `abandon()` ended that wait (the worker stops)."""
        s = self.settings
        if s.predictions_format == "json":
            return encode_prediction
        if self._encoder is None:
            assert self.registry is not None  # (the settings require a registry)
            registry = self.registry
            schema_type, text = registered_schema(s.predictions_format)
            subject = f"{s.predictions_topic}-value"

            async def register() -> int:
                try:
                    return await registry.register(subject, schema_type, text)
                except UnknownSchema as err:  # (no such subject: the registry's side)
                    raise RegistryUnavailable(str(err)) from None

            schema_id = await until_answered(
                register,
                registry.url,
                waiting=f"the predictions' schema is registered under {subject} once it answers",
                on_unavailable=self._on_unavailable,
                abandon=abandon,
            )
            if schema_id is None:
                return None
            log.info("predictions are written in %s, schema id %d", s.predictions_format, schema_id)
            self._encoder = PredictionEncoder(s.predictions_format, schema_id)
        return self._encoder.encode
