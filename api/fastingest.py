"""The lean ingest path: an accepted request body straight to the bytes Kafka carries.

The reference path — :func:`api.ingest.parse_events` (``json.loads`` with exact decimals,
then a pydantic :class:`~schemas.events.UsageEvent` per event) followed by
:func:`schemas.wire.encode_event` — stays the definition of what the gateway accepts,
what it refuses and with which problems.  It costs ~25 µs an event.  This module answers
the same question for plainly well-formed bodies in about 2 µs an event, with no model,
datetime, dict or dataclass per event:

1. ``msgspec`` decodes and type-checks the whole body in C into one small struct per
   event (field lengths included).  Each number with a fraction or exponent goes through
   :func:`_number`, which reads its literal exactly (``Decimal``, as the reference's
   ``parse_float=Decimal``) and turns it at once into what ``encode_event`` writes for it
   (an integer, or the plain decimal text as a string).
2. A loop checks the few rules msgspec cannot express (whitespace the reference would
   strip, the time, ``specversion``) and puts the time in its canonical form.
3. One ``orjson.dumps`` of every event's ``data`` proves that the reference's own
   encoder (orjson) can write them: it cannot write integers beyond 64 bits or nesting
   deeper than about 250 levels, and for those the reference switches to the standard
   library, which writes other bytes.
4. ``msgspec`` writes each struct, fields in the order of ``UsageEvent.to_wire``, absent
   optional fields left out: byte for byte what ``encode_event`` writes (the two writers
   agree on compact JSON of strings, integers, booleans, null, lists and objects;
   the tests hold them to it).

:func:`accept_body` is the entry point of the ingest route: it returns
``[(subject, wire bytes), ...]`` in body order, or raises the reference's
:class:`~api.problems.HttpProblem`.  :func:`encode_fast` returns ``None`` whenever it is
not sure, and the whole body then goes through the reference path, which accepts it or
refuses it with today's messages (every problem, with its index, and the fix).  Problems
are therefore never reported from here.

Invariants, checked against the reference by ``tests/api/test_fastingest.py`` on
generated valid and malformed bodies:

1. If :func:`encode_fast` returns a list, the reference accepts the same body, and each
   item is ``(event.subject, encode_event(event))`` of the reference's events, in order:
   the worker receives byte for byte what the SDK and the reference path produce, so
   content digests agree whichever path an event (or its retry) took.
2. If the reference refuses a body (400, 413), :func:`encode_fast` returns ``None``.

:func:`encode_fast` declines: any msgspec error (bad JSON, not UTF-8, a byte order mark,
unknown field, wrong type, a text outside 1..512 characters), any ``\\ud…`` escape in the
raw bytes (a lone surrogate is refused by the reference), a shape the media type does
not take, an empty batch or one over the size limit, envelope text with whitespace the
reference would strip (also around ``data``'s top-level keys), a specversion other than
``"1.0"``, a time outside the forms :func:`schemas.timeutil.parse_wire_time` decides (the worker's
property-tested RFC 3339 reader, shared here) or outside the storable range
(:func:`schemas.timeutil.storable_event_ms`), a number whose plain form would be long
(exponent beyond ±20), and data orjson cannot write (see 3.).

Failure cost: a decline costs only time (the reference's ~25 µs an event).  A wrong
accept would put other bytes on the events topic than the reference would; that is why
every doubt declines.
"""

from __future__ import annotations

import threading
from decimal import Decimal
from typing import Annotated, Any

import msgspec
import orjson

from api.ingest import BATCH, MEDIA_TYPES, SINGLE, media_type, parse_events
from api.problems import invalid
from schemas.errors import InvalidInput, Problem
from schemas.timeutil import hour_ms, parse_wire_time, storable_event_ms
from schemas.wire import MAX_EVENT_BYTES, SURROGATE_ESCAPE, encode_event
from schemas.wire import _default as _wire_default  # the encoding encode_event uses

__all__ = ["EncodedEvent", "accept_body", "encode_fast"]

EncodedEvent = tuple[str, bytes]
"""``(subject, the event as encode_event writes it)``: the record key's text and a line
of a record value (``schemas.wire``)."""

_Text = Annotated[str, msgspec.Meta(min_length=1, max_length=512)]  # as on UsageEvent
_UNSET: Any = msgspec.UNSET
_MAX_EXPONENT = 20  # |adjusted exponent| of a number written here; beyond: the reference


class _Event(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, gc=False):
    """The wire shape msgspec checks in C, fields in ``UsageEvent.to_wire`` order; the
    optional ones stay ``UNSET`` (left out when written) unless the body has them."""

    specversion: str = "1.0"
    id: _Text
    source: _Text
    type: _Text
    subject: _Text
    time: str
    data: dict[str, Any] | msgspec.UnsetType | None = msgspec.UNSET
    datacontenttype: str | msgspec.UnsetType | None = msgspec.UNSET
    dataschema: str | msgspec.UnsetType | None = msgspec.UNSET


_doubt = threading.local()  # set by _number when a literal is left to the reference


def _number(literal: str) -> Any:
    """A number literal with a fraction or exponent, as ``encode_event`` will write it.

    Exact: ``Decimal`` reads the literal's text.  A literal whose plain form would be
    long (``1e999999999`` is 13 bytes) is kept as a ``Decimal``, which the data check
    (orjson without a default) refuses, so the body goes to the reference."""
    value = Decimal(literal)
    if value.is_finite() and -_MAX_EXPONENT <= value.adjusted() <= _MAX_EXPONENT:
        return _wire_default(value)
    _doubt.seen = True
    return value


_DECODER = msgspec.json.Decoder(_Event | list[_Event], float_hook=_number)
_encode = msgspec.json.Encoder().encode


def accept_body(raw: bytes, content_type: str | None, max_events: int) -> list[EncodedEvent]:
    """The events of an acceptable ingest body, encoded for Kafka, in body order; raise
    :class:`~api.problems.HttpProblem` (400, 413 or 415) exactly as the reference does."""
    kind = media_type(content_type)
    events = encode_fast(raw, kind, max_events) if kind in MEDIA_TYPES else None
    if events is None:
        events = [
            (event.subject, encode_event(event)) for event in parse_events(raw, kind, max_events)
        ]
    return _fitting(events, raw)


def _fitting(events: list[EncodedEvent], raw: bytes) -> list[EncodedEvent]:
    """``events`` (of the body ``raw``), if each fits a Kafka record; otherwise a 400
    naming every one that does not, before anything is sent (a record the client refused
    would fail the request after its other records were queued)."""
    if all(len(line) <= MAX_EVENT_BYTES for _, line in events):
        return events
    batch = raw.lstrip()[:1] == b"["
    problems = [
        Problem(
            f"[{index}]" if batch else "",
            f"the event is {len(line):,} bytes encoded; at most {MAX_EVENT_BYTES:,} fit a"
            " Kafka record",
            "send less data per event (numbers are written with every digit: 1e999 takes"
            " 1,000 bytes)",
        )
        for index, (_, line) in enumerate(events)
        if len(line) > MAX_EVENT_BYTES
    ]
    raise invalid(InvalidInput("batch" if batch else "event", problems), "Invalid events")


def encode_fast(raw: bytes, kind: str, max_events: int) -> list[EncodedEvent] | None:
    """The encoded events of a body of media type ``kind``, or ``None``: not decided here."""
    if SURROGATE_ESCAPE.search(raw) is not None:
        return None  # a surrogate escape: a pair is fine, a lone one is refused
    _doubt.seen = False
    try:
        payload = _DECODER.decode(raw)
    except (ValueError, ArithmeticError, RecursionError):
        # msgspec's errors are ValueErrors; Decimal refusing a literal and deep nesting
        # raise the other two.
        return None
    if _doubt.seen:
        return None
    if type(payload) is list:
        if kind == SINGLE or not payload or len(payload) > max_events:
            return None
        events: list[_Event] = payload
    else:
        if kind == BATCH:
            return None
        events = [payload]  # type: ignore[list-item]  # the other member of the union
    data: list[dict[str, Any]] = []
    for event in events:
        # str.strip removes a superset of what pydantic's str_strip_whitespace removes.
        if (
            event.source != event.source.strip()
            or event.id != event.id.strip()
            or event.type != event.type.strip()
            or event.subject != event.subject.strip()
            or event.specversion != "1.0"
        ):
            return None
        if not _canonical_time(event.time):
            when = parse_wire_time(event.time)
            if when is None or not storable_event_ms(when[0]):
                return None
            event.time = when[1]
        values = event.data
        if values is None:
            event.data = _UNSET
        elif isinstance(values, dict):
            for key in values:
                if key != key.strip():
                    return None  # the reference strips data's top-level keys
            data.append(values)
        if (event.datacontenttype is not _UNSET or event.dataschema is not _UNSET) and not (
            _extras(event)
        ):
            return None
    try:
        orjson.dumps(data)  # what the reference's orjson cannot write, it writes otherwise
    except orjson.JSONEncodeError:
        return None
    return [(event.subject, _encode(event)) for event in events]


def _canonical_time(text: str) -> bool:
    """Whether ``text`` is a time in the form ``to_wire`` writes (``2026-11-01T12:05:42.250Z``)
    that :func:`schemas.timeutil.parse_wire_time` accepts unchanged — its first branch, without
    computing the milliseconds; anything else is left to ``parse_wire_time`` itself."""
    if len(text) != 24 or text[23] != "Z" or text[16] != ":" or text[19] != ".":
        return False
    clock = text[14:16] + text[17:19] + text[20:23]  # MMSSmmm
    return (
        clock.isdigit()
        and clock.isascii()
        and text[14] < "6"  # minute < 60
        and text[17] < "6"  # second < 60
        and "1970" <= text[:4] <= "2105"  # storable_event_ms, for this form
        and hour_ms(text[:14]) is not None
    )


def _extras(event: _Event) -> bool:
    """Put ``datacontenttype`` and ``dataschema`` in ``to_wire`` form (null: left out);
    ``False`` where the reference would strip whitespace from them."""
    for name in ("datacontenttype", "dataschema"):
        extra = getattr(event, name)
        if extra is None:
            setattr(event, name, _UNSET)
        elif extra is not _UNSET and extra != extra.strip():
            return False
    return True
