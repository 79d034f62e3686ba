"""Ingest request parsing (pure): body bytes and content type in, validated events out.

Accepted media types, as OpenMeter accepts them:

* ``application/cloudevents+json`` — one event (a JSON object);
* ``application/cloudevents-batch+json`` — a JSON array of events;
* ``application/json`` — one event or an array.

Numbers are parsed as :class:`~decimal.Decimal`, so a value is forwarded to Kafka exactly
as written.  A batch is validated as a whole: if any event is invalid, none is sent, and
the 400 lists every problem of every event with its index (``[3].time``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from api.problems import HttpProblem, invalid
from schemas.errors import InvalidInput, Problem
from schemas.events import UsageEvent, parse_event

__all__ = ["BATCH", "JSON", "MEDIA_TYPES", "SINGLE", "decode_json", "media_type", "parse_events"]

SINGLE = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"
JSON = "application/json"
MEDIA_TYPES = (SINGLE, BATCH, JSON)


def media_type(header: str | None) -> str:
    """The bare media type of a Content-Type header: lower case, parameters dropped."""
    return (header or "").split(";", 1)[0].strip().lower()


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def decode_json(
    raw: bytes,
    *,
    object_pairs_hook: Callable[[list[tuple[str, Any]]], Any] | None = None,
    parse_constant: Callable[[str], Any] = _no_constants,
) -> Any:
    """A JSON body with every number exact: fractions and exponents become ``Decimal``
    (never a float), and ``NaN``/``Infinity`` are refused unless ``parse_constant`` reads
    them; a 400 when it is not JSON.  Ingest reads its reference path through it; the
    quote endpoint too, with hooks that let it name the field of a repeated key or a
    ``NaN``."""
    try:
        return json.loads(
            raw,
            parse_float=Decimal,
            parse_constant=parse_constant,
            object_pairs_hook=object_pairs_hook,
        )
    except (ValueError, ArithmeticError, RecursionError) as exc:
        if isinstance(exc, RecursionError):
            reason = "nested too deeply"
        elif isinstance(exc, ArithmeticError):  # Decimal refusing 1e99999999999999999999
            reason = "a number beyond the decimal range"
        else:
            reason = str(exc)
        raise invalid(
            InvalidInput.single("request body", "", f"not valid JSON ({reason})", "send UTF-8 JSON")
        ) from None


def parse_events(raw: bytes, content_type: str | None, max_events: int) -> list[UsageEvent]:
    """Validate an ingest body; raise :class:`HttpProblem` (400, 413 or 415) if it is not
    entirely acceptable.  Returns the events in body order."""
    kind = media_type(content_type)
    if kind not in MEDIA_TYPES:
        raise HttpProblem(
            415,
            "Unsupported media type",
            f"cannot ingest {kind or 'a body without Content-Type'}; "
            f"send one of {', '.join(MEDIA_TYPES)}",
        )
    payload = decode_json(raw)
    if kind == SINGLE and not isinstance(payload, dict):
        raise invalid(_shape("a JSON object (one event)", SINGLE))
    if kind == BATCH and not isinstance(payload, list):
        raise invalid(_shape("a JSON array of events", BATCH))
    if not isinstance(payload, dict | list):
        raise invalid(_shape("a JSON object or an array of objects", JSON))
    if isinstance(payload, dict):
        try:
            return [_parse_one(payload, "")]
        except InvalidInput as exc:
            raise invalid(exc) from None
    return _parse_batch(payload, max_events)


def _parse_batch(items: list[Any], max_events: int) -> list[UsageEvent]:
    if not items:
        raise invalid(
            InvalidInput.single("batch", "", "the batch is empty", "send at least one event")
        )
    if len(items) > max_events:
        raise HttpProblem(
            413,
            "Batch too large",
            f"{len(items)} events in one batch; at most {max_events} are accepted",
        )
    events: list[UsageEvent] = []
    problems: list[Problem] = []
    for index, item in enumerate(items):
        try:
            events.append(_parse_one(item, f"[{index}]"))
        except InvalidInput as exc:
            problems.extend(exc.problems)
    if problems:
        raise invalid(InvalidInput("batch", problems), "Invalid events")
    return events


def _parse_one(item: Any, where: str) -> UsageEvent:
    """One event of a request; :func:`parse_event` refuses everything the events topic
    cannot carry (times outside the supported range, invalid Unicode)."""
    return parse_event(item, where=where)


def _shape(expected: str, kind: str) -> InvalidInput:
    return InvalidInput.single("request body", "", f"{kind} expects {expected}", f"send {expected}")
