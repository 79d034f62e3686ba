"""The usage event: a CloudEvents 1.0 envelope whose ``data`` carries the measured values.

The envelope fields are ``specversion, id, source, type, subject, time, data`` (plus the
optional ``datacontenttype`` and ``dataschema``).  Meterline needs ``subject`` — the
customer or entity being metered — so it is required here even though CloudEvents makes it
optional.  ``(source, id)`` identifies an event: a retry with the same pair is the same
event and is counted once.

``time`` must carry a UTC offset; it is normalised to UTC and cut to the millisecond.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import cached_property
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from schemas.errors import InvalidInput
from schemas.timeutil import format_ms, to_ms, truncate_ms

__all__ = ["UsageEvent", "parse_event", "parse_event_json"]


class UsageEvent(BaseModel):
    """One usage event as accepted on the wire and stored in Kafka."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    specversion: Literal["1.0"] = "1.0"
    id: str = Field(min_length=1, max_length=512)
    source: str = Field(min_length=1, max_length=512)
    type: str = Field(min_length=1, max_length=512)
    subject: str = Field(min_length=1, max_length=512)
    time: datetime
    data: dict[str, Any] | None = None
    datacontenttype: str | None = None
    dataschema: str | None = None

    @field_validator("time", mode="after")
    @classmethod
    def _aware_utc_ms(cls, value: datetime) -> datetime:
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(
                "time has no UTC offset; send RFC 3339 such as 2026-11-01T12:00:00.000Z"
            )
        try:
            return truncate_ms(value.astimezone(UTC))
        except OverflowError:
            raise ValueError(
                "time is outside the supported range; send a time between years 1970 and 9999"
            ) from None

    @cached_property
    def time_ms(self) -> int:
        return to_ms(self.time)

    @classmethod
    def create(
        cls,
        *,
        type: str,
        subject: str,
        data: Mapping[str, Any] | None = None,
        source: str = "meterline-sdk",
        id: str | None = None,
        time: datetime | None = None,
    ) -> UsageEvent:
        """Build an event, filling ``id`` with a UUID4 and ``time`` with now (UTC)."""
        payload: dict[str, Any] = {
            "id": id or str(uuid.uuid4()),
            "source": source,
            "type": type,
            "subject": subject,
            "time": time or datetime.now(UTC),
            "data": dict(data) if data is not None else None,
        }
        return parse_event(payload)

    def to_wire(self) -> dict[str, Any]:
        """The JSON-ready form: time as RFC 3339 with milliseconds and ``Z``."""
        out: dict[str, Any] = {
            "specversion": self.specversion,
            "id": self.id,
            "source": self.source,
            "type": self.type,
            "subject": self.subject,
            "time": format_ms(self.time_ms),
        }
        if self.data is not None:
            out["data"] = self.data
        if self.datacontenttype is not None:
            out["datacontenttype"] = self.datacontenttype
        if self.dataschema is not None:
            out["dataschema"] = self.dataschema
        return out


def parse_event(payload: Any, *, where: str = "") -> UsageEvent:
    """Validate one event; on failure raise :class:`InvalidInput` listing every problem.

    Text must be valid Unicode: a lone surrogate (``"\\ud800"``) is legal JSON but
    cannot be stored, so it is refused here rather than poisoning the worker later.
    """
    try:
        event = UsageEvent.model_validate(payload)
    except ValidationError as exc:
        raise InvalidInput.from_pydantic("usage event", exc.errors(), prefix=where) from None
    try:
        _check_encodable(event)
    except UnicodeEncodeError:
        raise InvalidInput.single(
            "usage event",
            f"{where}.data" if where else "data",
            "contains text that is not valid Unicode (a lone surrogate)",
            "send UTF-8 text; escape binary data, e.g. as base64",
        ) from None
    except RecursionError:
        raise InvalidInput.single(
            "usage event",
            f"{where}.data" if where else "data",
            "nested too deeply",
            "keep data within a few hundred levels of nesting",
        ) from None
    return event


def _check_encodable(event: UsageEvent) -> None:
    """Raise ``UnicodeEncodeError`` (lone surrogate) or ``RecursionError`` (too deep).

    orjson answers the common case in microseconds; anything it refuses (a surrogate,
    an integer beyond 64 bits, deep nesting) is decided by the standard library, which
    raises only for the two real problems.
    """
    try:
        orjson.dumps([event.id, event.source, event.type, event.subject, event.data], default=str)
    except orjson.JSONEncodeError:
        json.dumps(event.data, ensure_ascii=False, default=str).encode("utf-8")
        json.dumps([event.id, event.source, event.type, event.subject], ensure_ascii=False).encode()


def parse_event_json(raw: bytes | str, *, where: str = "") -> UsageEvent:
    """Decode JSON bytes and validate them as one event."""
    try:
        payload = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput.single(
            "usage event", where, f"not valid JSON ({exc})", "send one JSON object per event"
        ) from None
    if not isinstance(payload, dict):
        raise InvalidInput.single(
            "usage event", where, "expected a JSON object", "send one JSON object per event"
        )
    return parse_event(payload, where=where)
