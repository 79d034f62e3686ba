"""The lean per-event path against its oracle, the reference path.

For every line — generated events, mangled bytes and a fixed list of edge cases — the
fast path must either decline (``decode`` returns ``None``) or agree exactly with
``decode_event`` + ``content_hash``; a line the reference refuses must be declined; and
``meter`` must give the reference's contributions or raise its ``Unmeterable``.  The
agreement check itself is shown to fail on a wrong digest and on a wrong Decimal.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import astuple
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import hypothesis
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.telemetry import generate
from schemas.errors import InvalidInput
from schemas.events import UsageEvent
from schemas.metering.contributions import Unmeterable, contributions
from schemas.metering.fastpath import FastEvent, decode, meter
from schemas.wire import content_hash, decode_event, encode_event
from tests.schemas.event_cases import (
    DATA,
    GOOD,
    METER_SETS,
    STRINGS,
    TYPES,
    Raw,
    mangled,
    payloads,
    to_json,
)

# -- the oracle ----------------------------------------------------------------------------


def metering_label(result: tuple[Any, ...]) -> str:
    if result[0] == "ok":
        return "no meter" if result[1] == "[]" else "metered"
    return f"{result[0]} {result[1]}"


def outcome(run: Callable[[], Any]) -> tuple[Any, ...]:
    """What a metering call did, comparable across paths (reprs keep Decimal exponents)."""
    try:
        return ("ok", repr(run()))
    except Unmeterable as exc:
        return ("unmeterable", exc.reason, exc.detail)
    except (TypeError, ValueError, ArithmeticError, RecursionError) as exc:
        return ("raised", type(exc).__name__, str(exc))


def assert_agrees(
    line: bytes,
    meter_set: str = "all_kinds",
    unknown_type_is_error: bool = False,
    *,
    fast_decode: Callable[[bytes], FastEvent | None] = decode,
    fast_meter: Callable[..., Any] = meter,
) -> tuple[FastEvent | None, UsageEvent | None, str]:
    """Check every invariant of ``schemas.metering.fastpath`` for one line; return both decodings
    and what metering did."""
    meters, fast_meters = METER_SETS[meter_set]
    fast = fast_decode(line)
    try:
        event = decode_event(line)
    except InvalidInput:
        assert fast is None, "the reference refuses this line; the fast path must decline"
        return None, None, "refused"
    except (ArithmeticError, RecursionError):
        assert fast is None, "the reference raises on this line; the fast path must decline"
        return None, None, "raised"
    if fast is not None:
        source, id_, type_, subject, time_ms, data, digest = fast
        assert (source, id_, type_, subject, time_ms) == (
            event.source,
            event.id,
            event.type,
            event.subject,
            event.time_ms,
        )
        assert repr(data) == repr(event.data)  # same types, same key order
        assert digest == content_hash(event)
    reference = outcome(
        lambda: [
            astuple(c)
            for c in contributions(event, meters, unknown_type_is_error=unknown_type_is_error)
        ]
    )
    mine = outcome(
        lambda: fast_meter(
            fast_meters,
            event.type,
            event.subject,
            event.time_ms,
            event.data if fast is None else fast[5],
            unknown_type_is_error,
        )
    )
    assert mine == reference
    return fast, event, metering_label(reference)


def note_coverage(fast: FastEvent | None, event: UsageEvent | None, metering: str) -> None:
    """Label the example (``--hypothesis-show-statistics``): a property is only as good as
    the share of lines that reach each side of it."""
    verdict = "refused" if event is None else "decided by the fast path" if fast else "fell back"
    hypothesis.event(verdict)
    hypothesis.event(f"metering: {metering}")


# -- generated lines -----------------------------------------------------------------------


SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(payloads(), st.sampled_from(sorted(METER_SETS)), st.booleans())
def test_generated_events_agree_with_the_reference(
    payload: dict[str, Any], meter_set: str, unknown_type_is_error: bool
) -> None:
    note_coverage(*assert_agrees(to_json(payload).encode(), meter_set, unknown_type_is_error))


@SETTINGS
@given(mangled(), st.sampled_from(sorted(METER_SETS)))
def test_mangled_lines_agree_with_the_reference(line: bytes, meter_set: str) -> None:
    note_coverage(*assert_agrees(line, meter_set))


@SETTINGS
@given(
    st.one_of(st.sampled_from(TYPES), st.just("job")),
    st.text(min_size=1, max_size=5).filter(lambda text: text == text.strip()),
    st.integers(-(2**60), 2**60),
    DATA,
    st.sampled_from(sorted(METER_SETS)),
    st.booleans(),
)
def test_meter_agrees_with_contributions(
    type_: str,
    subject: str,
    time_ms: int,
    data: dict[str, Any],
    meter_set: str,
    unknown_type_is_error: bool,
) -> None:
    """Metering alone, on events built in memory: many more data shapes per second."""
    meters, fast_meters = METER_SETS[meter_set]
    at = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=time_ms % 10**14)
    try:
        event = UsageEvent.create(type=type_, subject=subject, data=data, time=at)
    except InvalidInput:
        hypothesis.reject()  # e.g. two keys that trim to one: refused, nothing to meter
    reference = outcome(
        lambda: [
            astuple(c)
            for c in contributions(event, meters, unknown_type_is_error=unknown_type_is_error)
        ]
    )
    mine = outcome(
        lambda: meter(fast_meters, type_, subject, event.time_ms, event.data, unknown_type_is_error)
    )
    assert mine == reference
    hypothesis.event(metering_label(reference))


@settings(max_examples=200, deadline=None)
@given(
    st.from_regex(r"[a-z0-9][a-z0-9\-]{0,30}", fullmatch=True),
    st.datetimes(
        min_value=datetime(1970, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
    ),
    st.sampled_from(TYPES),
    st.dictionaries(
        st.sampled_from(["v", "user", "region", "tokens", "model", "gb_hours", "endpoint"]),
        st.one_of(
            # within 64 bits, even when the SDK writes an integral Decimal as an integer:
            # beyond that only the reference decides (see SURPRISES)
            st.integers(-(2**63), 2**64 - 1),
            st.builds(
                lambda digits, places: Decimal(f"{digits}E-{places}"),
                st.integers(-(10**18), 10**18),
                st.integers(1, 12),
            ),
            STRINGS,
        ),
        max_size=5,
    ),
    st.booleans(),
)
def test_well_formed_events_take_the_fast_path(
    subject: str, at: datetime, type_: str, data: dict[str, Any], sdk_encoding: bool
) -> None:
    """Not vacuous: what the SDK writes is decided by the fast path, not handed back."""
    event = UsageEvent.create(type=type_, subject=subject, data=data, time=at)
    line = encode_event(event) if sdk_encoding else to_json(event.to_wire()).encode()
    fast, _, _ = assert_agrees(line)
    assert fast is not None


def test_generated_telemetry_takes_the_fast_path() -> None:
    telemetry = generate(
        ["acme", "globex"], datetime(2026, 10, 1, tzinfo=UTC), timedelta(days=31), 300
    )
    for event in telemetry.events:
        fast, _, _ = assert_agrees(encode_event(event), "demo", unknown_type_is_error=True)
        assert fast is not None


# -- the fixed edge cases ------------------------------------------------------------------


def line_with(**changes: Any) -> bytes:
    payload = {**GOOD, **changes}
    return to_json(payload).encode()


def data_with(**values: Any) -> bytes:
    return line_with(data={**GOOD["data"], **values})


NOT_NUMERIC = "unmeterable value_not_numeric"
OUT_OF_RANGE = "unmeterable value_out_of_range"

# (line, the reference accepts it, the fast path decides it, what metering does)
EDGE_CASES = {
    "bad JSON": (line_with()[:-1], False, False, "refused"),
    "unknown field": (line_with(colour="red"), False, False, "refused"),
    "naive time": (line_with(time="2026-11-01T10:05:42.250"), False, False, "refused"),
    "+02:00 offset": (line_with(time="2026-11-01T12:05:42.250+02:00"), True, True, "metered"),
    "lone surrogate escape": (line_with(subject=Raw('"acme\\ud800"')), False, False, "refused"),
    # valid, beyond 64 bits: only the reference writes its canonical form (stdlib json)
    "30-digit integer": (data_with(v=Raw("1" * 30)), True, False, OUT_OF_RANGE),
    "19 fraction digits": (data_with(v=Raw("0." + "1" * 19)), True, True, OUT_OF_RANGE),
    # at most 18 integer digits: sums keep 11 digits of headroom in Decimal(38, 9), which
    # ClickHouse 18.16 wraps past without an error
    "18-digit integer": (data_with(v=Raw("9" * 18)), True, True, "metered"),
    "-18-digit integer": (data_with(v=Raw("-" + "9" * 18)), True, True, "metered"),
    "19-digit integer": (data_with(v=Raw("1" + "0" * 18)), True, True, OUT_OF_RANGE),
    "-19-digit integer, beyond 64 bits": (
        data_with(v=Raw("-" + "9" * 19)),
        True,
        False,
        OUT_OF_RANGE,
    ),
    "18.9 digits as a string": (data_with(v="9" * 18 + "." + "9" * 9), True, True, "metered"),
    "19 integer digits as a string": (data_with(v="1" + "0" * 18 + ".5"), True, True, OUT_OF_RANGE),
    "29 integer digits as a string": (data_with(v="9" * 29), True, True, OUT_OF_RANGE),
    "value is a bool": (data_with(v=True), True, True, NOT_NUMERIC),
    "value is a list": (data_with(v=[1]), True, True, NOT_NUMERIC),
    "value is an object": (data_with(v={"n": 1}), True, True, NOT_NUMERIC),
    "value is a numeric string": (data_with(v="12.5"), True, True, "metered"),
    'value is "NaN"': (data_with(v="NaN"), True, True, NOT_NUMERIC),
    "empty id": (line_with(id=""), False, False, "refused"),
    "513-char subject": (line_with(subject="s" * 513), False, False, "refused"),
    # lengths are characters, not bytes: 512 two-byte characters are within bounds
    "512 two-byte characters": (line_with(subject="\u00e9" * 512), True, True, "metered"),
    "513 two-byte characters": (line_with(subject="\u00e9" * 513), False, False, "refused"),
    # 513 characters that the reference strips to 512: accepted, left to the reference
    "513 characters, one of them padding": (
        line_with(subject=" " + "s" * 512),
        True,
        False,
        "metered",
    ),
    "whitespace-padded fields": (
        line_with(id=" evt-1 ", subject="acme\t"),
        True,
        False,
        "metered",
    ),
    'specversion "0.3"': (line_with(specversion="0.3"), False, False, "refused"),
    "data not an object": (line_with(data=[1, 2]), False, False, "refused"),
    "top-level array": (b"[" + line_with() + b"]", False, False, "refused"),
}


@pytest.mark.parametrize("unknown_type_is_error", [False, True])
@pytest.mark.parametrize(
    ("line", "accepted", "decided", "metering"), EDGE_CASES.values(), ids=EDGE_CASES
)
def test_edge_case(
    line: bytes, accepted: bool, decided: bool, metering: str, unknown_type_is_error: bool
) -> None:
    fast, event, metered = assert_agrees(line, "all_kinds", unknown_type_is_error)
    assert (event is not None) == accepted
    assert (fast is not None) == decided
    assert metered == metering


# Reference behaviour that surprised: pinned so a change to it is noticed here.
SURPRISES = {
    "data keys are stripped": (data_with(**{" w ": 3}), True, False),
    "data keys that strip to one are refused": (data_with(**{" v ": 3}), False, False),
    "1e400": (data_with(v=Raw("1e400")), True, True),
    "1e999, the longest plain form written": (data_with(x=Raw("1e999")), True, True),
    "1e1000, too long to write": (data_with(x=Raw("1e1000")), False, False),
    "1e-999999999, too long to write": (data_with(deep=Raw('[{"x":1e-999999999}]')), False, False),
    "NaN literal": (data_with(v=Raw("NaN")), True, False),
    "big integer as a group value": (data_with(region=Raw("9" * 25)), True, False),
    "the SDK's 1E+20": (
        encode_event(UsageEvent.create(type="job", subject="acme", data={"v": Decimal("1E+20")})),
        True,
        False,
    ),
    "nested 300 deep": (data_with(deep=Raw("[" * 300 + "]" * 300)), True, False),
    # only UTF-8 is read, without a byte order mark (JSON on bytes would take both)
    "UTF-8 byte order mark": (b"\xef\xbb\xbf" + line_with(), False, False),
    "UTF-16 with a byte order mark": (line_with().decode().encode("utf-16"), False, False),
    "duplicate keys, the last wins": (line_with()[:-1] + b',"id":"evt-2"}', True, True),
    "duplicate data keys": (
        line_with().replace(b'"data":{', b'"data":{"v":"7","region":"us",'),
        True,
        True,
    ),
    "escaped surrogate pair": (line_with(subject=Raw('"\\ud83d\\ude00"')), True, False),
}


@pytest.mark.parametrize(("line", "accepted", "decided"), SURPRISES.values(), ids=SURPRISES)
def test_reference_surprise(line: bytes, accepted: bool, decided: bool) -> None:
    fast, event, _ = assert_agrees(line)
    assert (event is not None) == accepted
    assert (fast is not None) == decided


# (time, the reference accepts it, the fast path decides it).  The reference reads more
# forms than RFC 3339 (lower case, a space, "+0200", no seconds, epoch seconds) and
# fractions of any length; the fast path decides Z and ±HH:MM with any fraction.
TIMES = [
    ("2026-11-01T10:05:42.250Z", True, True),
    ("2026-11-01T10:05:42Z", True, True),
    ("2026-11-01T10:05:42.2Z", True, True),
    ("2026-11-01T10:05:42.250999Z", True, True),
    ("2026-11-01T10:05:42.2509999999999999999Z", True, True),
    ("2026-11-01T12:05:42.250+02:00", True, True),
    ("2026-11-01T04:35:42.250-05:30", True, True),
    ("2026-11-01T10:05:42.250-00:00", True, True),
    ("2026-11-02T10:04:42.250+23:59", True, True),
    ("2024-02-29T00:00:00.000Z", True, True),
    # the storable range (schemas.timeutil.EVENT_TIME_MIN_MS/_MAX_MS), its edges inside
    ("1970-01-01T00:00:00.000Z", True, True),
    ("1970-01-01T00:30:00+00:30", True, True),
    ("2105-12-31T23:59:59.999Z", True, True),
    ("2105-12-31T23:59:59.9999Z", True, True),
    ("2106-01-01T00:59:59.999+01:00", True, True),
    # ... and outside: a window could not hold them (refused, never stuck at the write)
    ("1969-12-31T23:59:59.999Z", False, False),
    ("1969-12-31T23:59:59.9995Z", False, False),
    ("1970-01-01T00:30:00+00:31", False, False),
    ("2106-01-01T00:00:00.000Z", False, False),
    ("2105-12-31T23:00:00-01:00", False, False),
    ("2106-02-07T06:28:16.000Z", False, False),
    ("0001-01-01T00:00:00.000Z", False, False),
    ("0001-01-01T00:30:00-01:00", False, False),
    ("9999-12-31T23:59:59.999Z", False, False),
    ("2026-11-01T10:05:42.250+24:00", False, False),
    ("2026-11-01T10:05:42.250+02:60", False, False),
    ("2026-11-01T10:05:60.000Z", False, False),
    ("2026-11-01T10:05:60Z", False, False),
    ("2026-11-01T10:60:00.000Z", False, False),
    ("2026-11-01T24:00:00.000Z", False, False),
    ("2026-02-29T00:00:00.000Z", False, False),
    ("2026-13-01T00:00:00.000Z", False, False),
    ("0000-01-01T00:00:00.000Z", False, False),
    ("0001-01-01T00:30:00+01:00", False, False),
    ("9999-12-31T23:30:00-01:00", False, False),
    ("2026-11-01T10:05:42.Z", False, False),
    ("2026-11-01T10:05:42.250", False, False),
    ("2026-11-01", False, False),
    ("\u0662\u0660\u0662\u0666-11-01T10:05:42.250Z", False, False),
    ("2026-11-01T10:05:42.250Z ", False, False),
    ("2026-11-01T10:05:42.250Z\n", False, False),
    # the canonical 24-character shape with something wrong in the minute or the clock
    ("2026-11-01T10:\u0660\u0665:42.250Z", False, False),
    ("2026-11-01T10:05x42.250Z", False, False),
    ("2026-11-01T10:5:042.250Z", False, False),
    ("2026-11-01T10:05:4\u0662.250Z", False, False),
    ("2026-11-01T10:05:+4.250Z", False, False),
    ("2026-11-01T10:05:42.+50Z", False, False),
    ("2026-11-01T10:05:59.999Z", True, True),
    ("2026-11-01t10:05:42.250z", True, False),
    ("2026-11-01 10:05:42.250Z", True, False),
    ("2026-11-01T10:05:42,250Z", True, False),
    ("2026-11-01T10:05:42.250+0200", True, False),
    ("2026-11-01T10:05Z", True, False),
    ("1700000000", True, False),
    (Raw("1700000000"), True, False),
]


@pytest.mark.parametrize(("time", "accepted", "decided"), TIMES, ids=[str(t[0]) for t in TIMES])
def test_time_form(time: str, accepted: bool, decided: bool) -> None:
    fast, event, _ = assert_agrees(line_with(time=time))
    assert (event is not None) == accepted
    assert (fast is not None) == decided


# -- the oracle can fail -------------------------------------------------------------------


def test_a_wrong_digest_fails_the_check() -> None:
    def wrong_digest(line: bytes) -> FastEvent | None:
        fast = decode(line)
        assert fast is not None
        return (*fast[:6], "0" * 24)

    with pytest.raises(AssertionError):
        assert_agrees(line_with(), fast_decode=wrong_digest)


def test_a_wrong_decimal_exponent_fails_the_check() -> None:
    def padded(*args: Any) -> list[Any]:
        rows = meter(*args)
        return [(*row[:4], row[4].quantize(Decimal("0.1")), *row[5:]) for row in rows]

    with pytest.raises(AssertionError):
        assert_agrees(line_with(), fast_meter=padded)
