"""A rejected message, kept with the reason it was rejected."""

import base64
import binascii
from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import Field, StrictBool, StrictInt

from schemas.message import Message
from schemas.types import EventTime


class ErrorType(StrEnum):
    """Why a message was rejected; one Prometheus label value each."""

    INVALID_JSON = "invalid_json"
    UNDECODABLE = "undecodable"
    UNKNOWN_SCHEMA = "unknown_schema"
    INVALID_EVENT = "invalid_event"
    OVERSIZED = "oversized"
    UNKNOWN_MODEL = "unknown_model"
    INVALID_LABEL = "invalid_label"
    LEARNING_ERROR = "learning_error"
    DUPLICATE_EVENT = "duplicate_event"
    PUSH_FAILED = "push_failed"


class DeadLetter(Message):
    """A message on the `dead-letters` topic."""

    payload: str = Field(
        description="The original message value, as text or base64; only its first "
        "RIVERRUN_MAX_EVENT_BYTES bytes when it was longer (see payload_truncated)."
    )
    payload_encoding: Literal["utf-8", "base64"]
    payload_bytes: StrictInt = Field(ge=0, description="Size of the original value in bytes.")
    payload_truncated: StrictBool = Field(
        default=False, description="Whether `payload` holds only the start of the value."
    )
    source_topic: str
    source_partition: StrictInt
    source_offset: StrictInt
    error_type: ErrorType
    reason: str = Field(description="What was wrong and what to do about it.")
    ts: EventTime = Field(description="When the message was rejected.")

    @classmethod
    def for_message(
        cls,
        *,
        value: bytes | None,
        topic: str,
        partition: int,
        offset: int,
        error_type: ErrorType,
        reason: str,
        ts: datetime,
        max_payload_bytes: int,
    ) -> "DeadLetter":
        """The dead letter of one rejected message.

        A value longer than `max_payload_bytes` keeps only its start, so that a dead letter
        always fits in a Kafka message whatever the producer sent.
        """
        raw = value or b""
        kept = raw[:max_payload_bytes]
        payload, encoding = cls.encode_payload(kept)
        return cls(
            payload=payload,
            payload_encoding=encoding,
            payload_bytes=len(raw),
            payload_truncated=len(kept) < len(raw),
            source_topic=topic,
            source_partition=partition,
            source_offset=offset,
            error_type=error_type,
            reason=reason,
            ts=ts,
        )

    @staticmethod
    def encode_payload(raw: bytes) -> tuple[str, Literal["utf-8", "base64"]]:
        """The payload as UTF-8 text when it is, else as base64."""
        try:
            return raw.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            return base64.b64encode(raw).decode("ascii"), "base64"

    def original_payload(self) -> bytes:
        """The exact bytes that were rejected (their start, when `payload_truncated`)."""
        if self.payload_encoding == "utf-8":
            return self.payload.encode("utf-8")
        try:
            return base64.b64decode(self.payload, validate=True)
        except binascii.Error as err:  # pragma: no cover - only for hand-made messages
            raise ValueError(f"payload is not valid base64: {err}") from err
