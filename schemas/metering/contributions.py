"""Pure metering: an event and the meter definitions in, window contributions out.

No I/O here.  The worker decodes a Kafka record, asks :func:`contributions` what the event
adds to each meter's one-minute window, and writes the result.  An event that cannot be
metered raises :class:`Unmeterable` with a reason code from :class:`DeadLetterReason`;
the worker sends it to the dead-letter topic and stores nothing of it, so a corrected
resend with the same id is still accepted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Context, Decimal, InvalidOperation
from enum import StrEnum
from typing import Any

import orjson

from schemas.events import UsageEvent
from schemas.metering.definitions import Aggregation, MeterDefinition, MeterSet
from schemas.metering.paths import MISSING
from schemas.timeutil import MINUTE_MS

__all__ = [
    "Contribution",
    "DeadLetterReason",
    "Unmeterable",
    "contributions",
    "group_key",
    "window_start_ms",
]

MAX_INTEGER_DIGITS = 18
MAX_FRACTION_DIGITS = 9
"""An event's value: at most 18 integer and 9 decimal digits (below 10^18), refused
otherwise, never rounded.  Windows store ``Decimal(38, 9)``, up to ~1.7 × 10^29, and
ClickHouse 18.16 wraps a sum past that without an error (two values of 10^29 summed to
−1.4 × 10^29), so each value leaves 11 digits of headroom: a window, a rollup or a
period's total wraps only past 10^11 events at the largest value."""
UNIQUE_INTEGER_DIGITS = 29
"""A number a unique-count meter reads is kept as its text, never summed: 64-bit ids
(19 or 20 digits) are common there, and the bound is the one values had before."""
_UNIQUE_TEXT = Context(prec=UNIQUE_INTEGER_DIGITS + MAX_FRACTION_DIGITS)
"""Enough digits to write any such number exactly (the default context's 28 would round
a 29-digit id, and two ids would count as one)."""


class DeadLetterReason(StrEnum):
    SCHEMA = "schema_invalid"
    VALUE_MISSING = "value_missing"
    VALUE_NOT_NUMERIC = "value_not_numeric"
    VALUE_OUT_OF_RANGE = "value_out_of_range"
    UNKNOWN_TYPE = "unknown_event_type"


class Unmeterable(Exception):
    """The event cannot be metered; ``reason`` is the dead-letter reason code."""

    def __init__(self, reason: DeadLetterReason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(slots=True)  # not frozen: built per event on the worker's hot path
class Contribution:
    """What one event adds to one meter's window (before the Kafka position is attached)."""

    meter: str
    subject: str
    group_key: str
    window_start_ms: int
    value: Decimal
    uniq: str
    event_ms: int


def window_start_ms(time_ms: int, width_ms: int = MINUTE_MS) -> int:
    """Start of the tumbling window containing ``time_ms`` (floor, also for negatives)."""
    return time_ms - time_ms % width_ms


def group_key(values: dict[str, str]) -> str:
    """Canonical JSON of the group-by values, keys sorted: ``{"model":"m1","region":"eu"}``."""
    return orjson.dumps(values, option=orjson.OPT_SORT_KEYS).decode()


def _numeric(raw: Any, meter: MeterDefinition, integer_digits: int = MAX_INTEGER_DIGITS) -> Decimal:
    """``raw`` as an exact ``Decimal`` of at most ``integer_digits`` integer and
    ``MAX_FRACTION_DIGITS`` fraction digits, else :class:`Unmeterable`."""
    path = meter.value_property
    if isinstance(raw, bool) or not isinstance(raw, int | Decimal | str | float):
        raise Unmeterable(
            DeadLetterReason.VALUE_NOT_NUMERIC,
            f"meter {meter.slug!r}: {path} is {type(raw).__name__}, expected a number",
        )
    try:
        value = Decimal(raw) if not isinstance(raw, float) else Decimal(repr(raw))
    except InvalidOperation:
        raise Unmeterable(
            DeadLetterReason.VALUE_NOT_NUMERIC,
            f"meter {meter.slug!r}: {path} = {raw!r} is not a number",
        ) from None
    if not value.is_finite():
        raise Unmeterable(
            DeadLetterReason.VALUE_NOT_NUMERIC, f"meter {meter.slug!r}: {path} = {raw!r}"
        )
    _sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)
    fraction = max(0, -exponent)
    integer = max(0, len(digits) + exponent)
    if fraction > MAX_FRACTION_DIGITS or integer > integer_digits:
        raise Unmeterable(
            DeadLetterReason.VALUE_OUT_OF_RANGE,
            f"meter {meter.slug!r}: {path} = {raw!r} is out of range: send at most "
            f"{integer_digits} integer and {MAX_FRACTION_DIGITS} decimal digits",
        )
    return value


def _unique_text(raw: Any, meter: MeterDefinition) -> str:
    if isinstance(raw, str):
        return raw
    if isinstance(raw, bool) or raw is None or isinstance(raw, dict | list):
        raise Unmeterable(
            DeadLetterReason.VALUE_NOT_NUMERIC,
            f"meter {meter.slug!r}: {meter.value_property} must be a string or number",
        )
    return format(_numeric(raw, meter, UNIQUE_INTEGER_DIGITS).normalize(_UNIQUE_TEXT), "f")


def _one(event: UsageEvent, meter: MeterDefinition) -> Contribution:
    data = event.data or {}
    value = Decimal(0)
    uniq = ""
    path = meter.value_path
    if path is not None:
        raw = path.find(data)
        if raw is MISSING or raw is None:
            raise Unmeterable(
                DeadLetterReason.VALUE_MISSING,
                f"meter {meter.slug!r} needs {meter.value_property} in data",
            )
        if meter.aggregation is Aggregation.UNIQUE_COUNT:
            uniq = _unique_text(raw, meter)
        else:
            value = _numeric(raw, meter)
    groups: dict[str, str] = {}
    for name, group_path in meter.group_paths.items():
        found = group_path.find(data)
        groups[name] = "" if found is MISSING or found is None else _group_text(found)
    time_ms = event.time_ms
    return Contribution(
        meter=meter.slug,
        subject=event.subject,
        group_key=group_key(groups),
        window_start_ms=window_start_ms(time_ms),
        value=value,
        uniq=uniq,
        event_ms=time_ms,
    )


def _group_text(found: Any) -> str:
    if isinstance(found, str):
        return found
    if isinstance(found, Decimal):
        return format(found.normalize(), "f")
    try:
        return orjson.dumps(found, default=str).decode()
    except orjson.JSONEncodeError:  # an integer beyond 64 bits, very deep nesting
        return json.dumps(found, default=str, separators=(",", ":"), ensure_ascii=False)


def contributions(
    event: UsageEvent, meters: MeterSet, *, unknown_type_is_error: bool = False
) -> tuple[Contribution, ...]:
    """Everything the event adds to its meters' windows.

    All-or-nothing: if any meter for the event's type cannot extract its value, the whole
    event is :class:`Unmeterable`, so no meter sees half of it.  An event of a type no
    meter reads contributes nothing (it is still stored raw, for backfills) unless
    ``unknown_type_is_error``.
    """
    matched = meters.by_event_type.get(event.type, ())
    if not matched and unknown_type_is_error:
        raise Unmeterable(
            DeadLetterReason.UNKNOWN_TYPE, f"no meter reads event type {event.type!r}"
        )
    return tuple(_one(event, meter) for meter in matched)
