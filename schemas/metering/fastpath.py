"""The lean per-event path of the metering worker: decode, validate, meter and digest one
usage event in a few microseconds, with results identical to the reference path.

The reference path — :func:`schemas.wire.decode_event` (pydantic),
:func:`schemas.metering.contributions.contributions` and
:func:`schemas.wire.content_hash` — stays the definition of what an event means and what
it adds to the windows. It costs ~25 µs an event, mostly pydantic validation and
exact-decimal JSON. This module answers the same questions for plainly well-formed events:
``msgspec`` validates and decodes the JSON into a typed struct in C (~1 µs, numbers exact
through ``float_hook=Decimal``), and the rest is plain dict lookups and tuples — no
model, dataclass or datetime per event:

* :func:`decode` returns ``(source, id, type, subject, time_ms, data, digest)`` or
  ``None``.  ``None`` is not a verdict: it means "not decided here", and the caller runs
  the reference path on the same bytes, which accepts, refuses (``InvalidInput``) or
  raises exactly as it always did.
* :func:`meter` returns the contributions of a decoded event as tuples, or raises the
  reference's :class:`~schemas.metering.contributions.Unmeterable` with the same reason and detail.

Invariants, checked against the reference by ``tests/schemas/test_fastpath.py``:

1. If :func:`decode` returns a tuple, ``decode_event`` accepts the same bytes, and its
   source, id, type, subject, ``time_ms`` and ``data`` are equal to it (same Python types,
   same key order), and ``digest == content_hash(event)``: digests stored by either path
   stay comparable, so dedupe tells a retry from a conflict across a deploy.
2. If ``decode_event`` refuses the bytes, :func:`decode` returns ``None``.
3. :func:`meter` gives exactly the reference's contributions — the same exact
   ``Decimal`` (exponent included), group-key text and unique text — or raises what the
   reference raises.  The rare branches call the reference's own helpers
   (``_numeric``, ``_unique_text``, ``_group_text``); only the common cases are inlined.

:func:`decode` falls back whenever in doubt: any msgspec error (bad JSON, a byte-order
mark or UTF-16, invalid UTF-8, unknown field, wrong type), any surrogate escape
(``\\ud800``) in the raw bytes, an envelope text outside 1..512 characters or with
whitespace the reference would strip (also around ``data``'s top-level keys, which the
reference strips, refusing two that strip to one), a specversion other than ``"1.0"``,
a time not of the form ``YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`` or outside the
storable range (``schemas.timeutil.EVENT_TIME_MIN_MS``/``_MAX_MS``, which the reference
refuses), and data the canonical JSON cannot hold (integers beyond 64 bits,
nesting deeper than orjson writes) — the reference writes those with the standard
library.

Three things are copies of the reference, not calls into it, because the reference only
offers them on a ``UsageEvent``: the canonical form hashed by ``content_hash``
(:func:`_digest`), and the detail texts of ``value_missing`` and ``unknown_event_type``.
The tests pin each against the reference, so a change there fails them.

Failure cost: a fallback costs only time (the reference's ~25 µs).  A wrong accept would
store another digest, time or value than the reference would: that is why every doubt
falls back instead of being decided here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from decimal import Decimal
from typing import Annotated, Any

import msgspec
import orjson

from schemas.events import too_long
from schemas.metering.contributions import (
    MAX_INTEGER_DIGITS,
    DeadLetterReason,
    Unmeterable,
    _group_text,
    _numeric,
    _unique_text,
    group_key,
)
from schemas.metering.definitions import Aggregation, MeterDefinition, MeterSet
from schemas.metering.paths import MISSING, JsonPath
from schemas.timeutil import MINUTE_MS, parse_wire_time, storable_event_ms
from schemas.wire import SURROGATE_ESCAPE

__all__ = ["ContributionRow", "FastEvent", "FastMeters", "decode", "meter", "native_decode"]

FastEvent = tuple[str, str, str, str, int, dict[str, Any] | None, str]
"""``(source, id, type, subject, time_ms, data, digest)`` of one event :func:`decode` accepted."""

ContributionRow = tuple[str, str, str, int, Decimal, str, int]
"""``(meter, subject, group_key, window_start_ms, value, uniq, event_ms)``: the fields of
:class:`schemas.metering.contributions.Contribution`, in its order."""

Extractor = Callable[[dict[str, Any]], Any]
"""A compiled JSONPath: the value in ``data`` it points to, or :data:`MISSING`."""

_MAX_TEXT = 512  # UsageEvent's max_length for id, source, type and subject
_INT_LIMIT = 10**MAX_INTEGER_DIGITS  # |n| below it: an integer _numeric accepts unchanged
_ZERO = Decimal(0)
_NO_GROUPS = group_key({})


_Text = Annotated[str, msgspec.Meta(min_length=1, max_length=_MAX_TEXT)]
"""An envelope text of 1..512 characters (``UsageEvent``'s bounds), checked in C."""


class _Envelope(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """The wire shape msgspec checks in C; what it lets through is checked in :func:`decode`."""

    id: _Text
    source: _Text
    type: _Text
    subject: _Text
    time: str
    specversion: str = "1.0"
    data: dict[str, Any] | None = None
    datacontenttype: str | None = None
    dataschema: str | None = None


# float_hook gets the literal's exact text, as the reference's parse_float=Decimal does.
_DECODER = msgspec.json.Decoder(_Envelope, float_hook=Decimal)


try:  # the native event decoder (schemas/native), built by `make install`
    import meterline_native as _native
except ModuleNotFoundError:  # a checkout installed without it: see native_decode
    _native = None

native_decode: Callable[[bytes], FastEvent | None] | None = (
    _native.decode if _native is not None else None
)
"""First in the chain: the native decoder decides the plainest lines — compact or spaced
JSON without escapes, the canonical time ``YYYY-MM-DDTHH:MM:SS.mmmZ``, integers of at
most 18 digits, decimals that ``str(Decimal)`` writes as sent — with results identical to
:func:`decode` (``tests/schemas/test_native.py``), and returns ``None`` for the rest,
which :func:`decode` then takes.  ``None`` here when the module is not installed (the
worker logs it at start); :attr:`FastMeters.native` then is ``None`` too."""


def decode(line: bytes) -> FastEvent | None:
    """One event line → :data:`FastEvent`, or ``None`` to leave it to the reference path."""
    if SURROGATE_ESCAPE.search(line) is not None:
        return None  # a surrogate escape: a pair is fine, a lone one is refused; not decided here
    try:
        envelope = _DECODER.decode(line)
    except (ValueError, ArithmeticError, RecursionError):
        # msgspec's errors are ValueErrors; Decimal refusing a literal (1e99999999999999999999)
        # and deep nesting raise the other two.
        return None
    source, id_, type_, subject = envelope.source, envelope.id, envelope.type, envelope.subject
    if (  # str.strip removes a superset of what pydantic's str_strip_whitespace removes
        source != source.strip()
        or id_ != id_.strip()
        or type_ != type_.strip()
        or subject != subject.strip()
    ):
        return None
    if envelope.specversion != "1.0":
        return None
    when = parse_wire_time(envelope.time)
    if when is None or not storable_event_ms(when[0]):
        return None
    time_ms, time_text = when
    wire: dict[str, Any] = {
        "specversion": "1.0",
        "id": id_,
        "source": source,
        "type": type_,
        "subject": subject,
        "time": time_text,
    }
    data = envelope.data
    if data is not None:
        for key in data:
            if key != key.strip():
                return None  # the reference strips data's top-level keys
        wire["data"] = data
    if envelope.datacontenttype is not None or envelope.dataschema is not None:
        for name, extra in (
            ("datacontenttype", envelope.datacontenttype),
            ("dataschema", envelope.dataschema),
        ):
            if extra is not None:
                if extra != extra.strip():
                    return None
                wire[name] = extra
    digest = _digest(wire)
    if digest is None:
        return None
    return source, id_, type_, subject, time_ms, data, digest


def _digest(wire: dict[str, Any]) -> str | None:
    """:func:`schemas.wire.content_hash` of the event whose ``to_wire()`` is ``wire``.

    ``None`` where orjson cannot write the canonical form (an integer beyond 64 bits,
    nesting deeper than it writes): the reference's ``content_hash`` raises there.
    """
    try:
        canonical = orjson.dumps(wire, default=_exact_text, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:
        return None
    return hashlib.blake2b(canonical, digest_size=12).hexdigest()


def _exact_text(value: Any) -> str:
    """How the canonical form writes a ``Decimal`` (as ``default=str``); a number the
    reference refuses as too long to write (``schemas.events.MAX_PLAIN_DIGITS``) makes
    :func:`_digest` decline."""
    if type(value) is Decimal and not too_long(value):
        return str(value)
    raise TypeError


_Groups = tuple[tuple[str, ...], tuple[Extractor, ...], dict[tuple[str, ...], str]]
"""A meter's group-bys compiled: names, extractors, and the group-key texts already
written, by the group values' texts (at most ``_GROUP_KEYS_KEPT``)."""
_Plan = tuple[MeterDefinition, bool, Extractor | None, _Groups | None]
"""One meter compiled: definition, whether UNIQUE_COUNT, value extractor, group-bys."""
_GROUP_KEYS_KEPT = 65_536


class FastMeters:
    """A :class:`MeterSet` compiled once for :func:`meter`: per event type, one plan per
    meter, in the reference's order (so the first meter that fails is the same one)."""

    __slots__ = ("by_type", "meters", "native")

    def __init__(self, meters: MeterSet) -> None:
        self.meters = meters
        self.by_type: dict[str, tuple[_Plan, ...]] = {
            event_type: tuple(_compile(m) for m in matched)
            for event_type, matched in meters.by_event_type.items()
            if matched
        }
        self.native: Any = None
        """The same meters compiled into the native decoder (``meterline_native.Meters``):
        its ``decode(line, unknown_type_is_error)`` returns :data:`FastEvent` plus the
        contributions :func:`meter` would return, ``None`` in their place where it leaves
        metering to :func:`meter` (any path with an index step, a value that is not a plain
        number or text, anything :func:`meter` would refuse), or ``None`` for the line where
        :data:`native_decode` would.  ``None`` without the native module."""
        if _native is not None:
            self.native = _native.Meters(
                {event_type: _native_spec(plans) for event_type, plans in self.by_type.items()}
            )


def _native_spec(plans: tuple[_Plan, ...]) -> list[Any] | None:
    """An event type's meters as the native decoder compiles them, or ``None`` if one of
    them has a path that is not a chain of keys (its events are metered by :func:`meter`)."""
    spec: list[Any] = []
    for definition, unique, _, _ in plans:
        path = definition.value_path
        value = None if path is None else _key_chain(path)
        groups = [(name, _key_chain(p)) for name, p in definition.group_paths.items()]
        if (path is not None and value is None) or any(keys is None for _, keys in groups):
            return None
        spec.append((definition.slug, unique, value, groups))
    return spec


def _key_chain(path: JsonPath) -> list[str] | None:
    keys = [step for step in path.steps if isinstance(step, str)]
    return keys if len(keys) == len(path.steps) else None


def _compile(definition: MeterDefinition) -> _Plan:
    path = definition.value_path
    return (
        definition,
        definition.aggregation is Aggregation.UNIQUE_COUNT,
        _extractor(path) if path is not None else None,
        (
            tuple(definition.group_paths),
            tuple(_extractor(p) for p in definition.group_paths.values()),
            {},
        )
        if definition.group_paths
        else None,
    )


def _extractor(path: JsonPath) -> Extractor:
    """Plain dict lookups for ``$.key`` and ``$.a.b``; the path's own walk otherwise."""
    keys = tuple(step for step in path.steps if isinstance(step, str))
    if len(keys) != len(path.steps):
        return path.find  # index steps: [0], [-1]
    if len(keys) == 1:
        (key,) = keys
        return lambda data: data.get(key, MISSING)

    def find(data: dict[str, Any]) -> Any:
        node: Any = data
        for key in keys:
            if not isinstance(node, dict):
                return MISSING
            node = node.get(key, MISSING)
        return node

    return find


def meter(
    fast: FastMeters,
    event_type: str,
    subject: str,
    time_ms: int,
    data: dict[str, Any] | None,
    unknown_type_is_error: bool,
) -> list[ContributionRow]:
    """What the event adds to its meters' windows: ``contributions`` as tuples.

    All-or-nothing like the reference: the first meter that cannot take its value raises
    :class:`Unmeterable`, with the reference's reason and detail text.
    """
    plans = fast.by_type.get(event_type)
    if plans is None:
        if unknown_type_is_error:
            raise Unmeterable(
                DeadLetterReason.UNKNOWN_TYPE, f"no meter reads event type {event_type!r}"
            )
        return []
    found = data or {}
    window = time_ms - time_ms % MINUTE_MS  # window_start_ms, inlined
    rows: list[ContributionRow] = []
    for definition, unique, find_value, groups in plans:
        value, uniq = _ZERO, ""
        if find_value is not None:
            raw = find_value(found)
            if raw is MISSING or raw is None:
                raise Unmeterable(
                    DeadLetterReason.VALUE_MISSING,
                    f"meter {definition.slug!r} needs {definition.value_property} in data",
                )
            if unique:
                uniq = raw if type(raw) is str else _unique_text(raw, definition)
            elif type(raw) is int and -_INT_LIMIT < raw < _INT_LIMIT:
                value = Decimal(raw)
            else:
                value = _numeric(raw, definition)
        if groups:
            names, extractors, known = groups
            texts = tuple([_group_value(f(found)) for f in extractors])
            key = known.get(texts)
            if key is None:
                key = group_key(dict(zip(names, texts, strict=True)))
                if len(known) < _GROUP_KEYS_KEPT:
                    known[texts] = key
        else:
            key = _NO_GROUPS
        rows.append((definition.slug, subject, key, window, value, uniq, time_ms))
    return rows


def _group_value(found: Any) -> str:
    if found is MISSING or found is None:
        return ""
    return found if type(found) is str else _group_text(found)
