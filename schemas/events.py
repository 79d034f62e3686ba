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
from decimal import Decimal
from functools import cached_property
from typing import Annotated, Any, Literal

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_validator,
)
from pydantic_core import PydanticCustomError

from schemas.errors import InvalidInput
from schemas.timeutil import EVENT_TIME_RANGE, format_ms, storable_event_ms, to_ms, truncate_ms

__all__ = ["MAX_PLAIN_DIGITS", "UsageEvent", "parse_event", "parse_event_json", "too_long"]


_TRIMMED: TypeAdapter[str] = TypeAdapter(Annotated[str, StringConstraints(strip_whitespace=True)])
"""A text trimmed as the event's model trims its texts and ``data``'s keys."""


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
            moment = truncate_ms(value.astimezone(UTC))
        except OverflowError:
            moment = None
        if moment is None or not storable_event_ms(to_ms(moment)):
            raise ValueError(f"time is outside the supported range; send a time {EVENT_TIME_RANGE}")
        return moment

    @field_validator("data", mode="wrap")
    @classmethod
    def _keys_distinct_once_trimmed(
        cls, value: Any, handler: ValidatorFunctionWrapHandler
    ) -> dict[str, Any] | None:
        """Whitespace around a top-level key of ``data`` is trimmed like every text of the
        event; two keys that become one (``"tokens"`` and ``" tokens"``) are refused, or
        one of the two values would be dropped without a word."""
        data: dict[str, Any] | None = handler(value)
        if data is None or not isinstance(value, dict) or len(data) == len(value):
            return data
        trimmed: dict[str, str] = {}
        for key in value:
            first = trimmed.setdefault(_TRIMMED.validate_python(key), key)
            if first != key:
                raise PydanticCustomError(
                    "value_error",
                    "keys {first} and {second} are the same key once the whitespace around"
                    " them is trimmed; one of the two values would be lost",
                    {
                        "first": repr(first),
                        "second": repr(key),
                        "fix": "rename one of the two keys, or send each without surrounding"
                        " whitespace",
                    },
                )
        return data

    @field_validator("data", mode="after")
    @classmethod
    def _numbers_writable(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        where = _oversized_number(value)
        if where is not None:
            raise PydanticCustomError(
                "value_error",
                "{where} is a number whose plain decimal form has more than {limit} digits "
                "before or after the point",
                {
                    "where": where,
                    "limit": MAX_PLAIN_DIGITS,
                    "fix": f"send at most {MAX_PLAIN_DIGITS} digits on each side of the "
                    "point, or send the value as a string",
                },
            )
        return value

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


#: Numbers in ``data`` are written exactly, in plain decimal form (``schemas.wire``): a
#: 13-byte literal such as ``1e-999999999`` would be written as a billion characters, so
#: a number whose plain form is longer than this on either side of the point is refused.
MAX_PLAIN_DIGITS = 1000


def _oversized_number(data: dict[str, Any] | None) -> str | None:
    """The path (``data.a.b[2]``) of the first number in ``data`` whose plain decimal form
    is too long to write, or ``None``.  Iterative: nesting depth is checked elsewhere."""
    if not data:
        return None
    stack: list[tuple[str, Any]] = [("data", data)]
    while stack:
        path, node = stack.pop()
        items = (
            ((f".{key}", item) for key, item in node.items())
            if isinstance(node, dict)
            else ((f"[{i}]", item) for i, item in enumerate(node))
        )
        for step, item in items:
            if isinstance(item, dict | list):
                stack.append((path + step, item))
            elif isinstance(item, Decimal) and too_long(item):
                return path + step
    return None


def too_long(number: Decimal) -> bool:
    """Whether the plain decimal form of ``number`` has more than
    :data:`MAX_PLAIN_DIGITS` digits before or after the point."""
    if not number.is_finite():
        return False
    exponent = number.as_tuple().exponent
    assert isinstance(exponent, int)  # finite
    return number.adjusted() >= MAX_PLAIN_DIGITS or exponent < -MAX_PLAIN_DIGITS


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
