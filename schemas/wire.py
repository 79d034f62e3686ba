"""The Kafka wire format of the events topic.

Key: the event's ``subject`` in UTF-8, so one subject's events share a partition (and so
its windows, its dedupe state and its ordering).  Value: the event as compact JSON
(orjson), ``time`` in RFC 3339 with milliseconds and ``Z``.

Decoding parses numbers with :class:`decimal.Decimal` (stdlib ``json`` with
``parse_float``) so that a value like ``0.1000000000000000055`` is metered exactly as
written, never through a binary float.
"""

from __future__ import annotations

import hashlib
import json
from decimal import Decimal
from typing import Any

import orjson

from schemas.errors import InvalidInput
from schemas.events import UsageEvent, parse_event

__all__ = ["content_hash", "decode_event", "encode_event", "event_key"]


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        # Exact either way: integers as JSON integers, fractions as numeric strings
        # (value properties accept both), never through a binary float.
        return int(value) if value == value.to_integral_value() else format(value, "f")
    raise TypeError(f"cannot encode {type(value).__name__}")


def encode_event(event: UsageEvent) -> bytes:
    """Compact JSON.  orjson first; integers beyond 64 bits, lone surrogates or very deep
    nesting fall back to the standard library, which encodes them exactly."""
    payload = event.to_wire()
    try:
        return orjson.dumps(payload, default=_default)
    except orjson.JSONEncodeError:
        return json.dumps(payload, default=_default, separators=(",", ":")).encode()


def event_key(event: UsageEvent) -> bytes:
    return event.subject.encode("utf-8")


def decode_event(raw: bytes) -> UsageEvent:
    """Bytes from the events topic → a validated event; :class:`InvalidInput` if not one."""
    try:
        payload = _loads_exact(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput.single(
            "usage event", "", f"not valid JSON ({exc})", "send one JSON object per event"
        ) from None
    if not isinstance(payload, dict):
        raise InvalidInput.single(
            "usage event", "", "expected a JSON object", "send one JSON object per event"
        )
    return parse_event(payload)


def _has_float(value: Any) -> bool:
    pending = [value]
    while pending:
        item = pending.pop()
        kind = type(item)
        if kind is float:
            return True
        if kind is dict:
            pending.extend(item.values())
        elif kind is list:
            pending.extend(item)
    return False


def _loads_exact(raw: bytes) -> Any:
    """JSON with every number exact.

    orjson is several times faster than the standard library but reads fractions (and
    integers beyond 64 bits) as binary floats.  Its result is used only when it holds no
    float; otherwise, or when orjson refuses the text (``NaN``, a lone surrogate escape),
    the standard library decodes it with ``Decimal`` numbers and has the last word.
    """
    try:
        payload = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json.loads(raw, parse_float=Decimal)
    if type(payload) is not dict or _has_float(payload.get("data")):
        # Only data carries quantities; a float anywhere else is refused by validation.
        return json.loads(raw, parse_float=Decimal)
    return payload


def content_hash(event: UsageEvent) -> str:
    """A digest of everything that makes up the event, to tell a retry from a conflict."""
    canonical = orjson.dumps(event.to_wire(), default=str, option=orjson.OPT_SORT_KEYS)
    return hashlib.blake2b(canonical, digest_size=12).hexdigest()
