"""The native decoder (``schemas/native``) against the lean path and the reference.

The native decoder is first in the worker's chain (``streams.plan``): for a line it
decides, the lean path (``fastpath.decode``) is never asked.  So for every line here:
when the native decoder decides, the lean path must decide the same — same values, same
Python types, same key order, same digest — and both must agree with the reference
(``assert_agrees``); when the reference refuses a line, the native decoder must decline.

Lines come from a generator of *plain* lines — the shape the SDK and most producers write,
which the native decoder is meant to decide — with each part sometimes bent just past what
it decides (an exponent, a 19-digit integer, ``0.0000001``, an escape, a padded text, a
31st of February, a repeated key), and from every corpus of ``test_fastpath.py``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import hypothesis
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context

from ingest.telemetry import generate
from schemas.metering import fastpath
from schemas.metering.definitions import parse_meters
from schemas.metering.fastpath import FastEvent, FastMeters, meter
from schemas.wire import encode_event
from tests.schemas.event_cases import METER_SETS, mangled, payloads, to_json
from tests.schemas.test_fastpath import (
    EDGE_CASES,
    SURPRISES,
    TIMES,
    assert_agrees,
    line_with,
    outcome,
)

# Every aggregation kind on paths that are chains of keys (the native decoder meters them
# itself; ``all_kinds`` has index steps on the type "job", which it leaves to the lean path).
KEYS_ONLY = FastMeters(
    parse_meters(
        yaml.safe_load(
            """
meters:
  - {slug: k_sum, event_type: job, aggregation: SUM, value_property: $.v,
     group_by: {region: $.region, plan: $.meta.plan}}
  - {slug: k_count, event_type: job, aggregation: COUNT}
  - {slug: k_unique, event_type: job, aggregation: UNIQUE_COUNT, value_property: $.user}
  - {slug: k_max, event_type: job, aggregation: MAX, value_property: $.meta.cost,
     group_by: {cost: "$['cost usd']"}}
  - {slug: k_latest, event_type: llm.completion, aggregation: LATEST, value_property: $.tokens,
     group_by: {model: $.model}}
  - {slug: k_gb, event_type: storage.snapshot, aggregation: SUM, value_property: $.gb_hours}
"""
        )
    )
)
TYPES = ["job", "api.request", "llm.completion", "storage.snapshot", "unknown.kind"]

SETTINGS = settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def native(line: bytes) -> FastEvent | None:
    decode = fastpath.native_decode
    assert decode is not None, (
        "the native event decoder is not installed: `make install` builds it from "
        "schemas/native (needs cargo, https://rustup.rs)"
    )
    return decode(line)


def check(line: bytes, meter_set: str = "all_kinds") -> FastEvent | None:
    """Every invariant for one line; returns what the native decoder decided."""
    fast = native(line)
    if fast is not None:
        lean = fastpath.decode(line)
        assert lean is not None, "the native decoder decided a line the lean path leaves"
        assert repr(fast) == repr(lean)  # values, types, key order, digest
    _, event, _ = assert_agrees(line, meter_set, fast_decode=native)
    label("refused" if event is None else "decided natively" if fast else "left to the lean path")
    for fast_meters in (*(fast for _, fast in METER_SETS.values()), KEYS_ONLY):
        for unknown_type_is_error in (False, True):
            check_metering(line, fast, fast_meters, fast_meters.native, unknown_type_is_error)
    return fast


def check_metering(
    line: bytes,
    fast: FastEvent | None,
    fast_meters: FastMeters,
    native_meters: Any,
    unknown_type_is_error: bool,
) -> None:
    """The fused call (``FastMeters.native.decode``): the same event as ``decode``, and
    where it meters, exactly the lean path's contributions; where the lean path refuses
    (``Unmeterable``), it must leave metering to it."""
    full = native_meters.decode(line, unknown_type_is_error)
    assert (full is None) == (fast is None)
    if full is None or fast is None:
        return
    assert repr(full[:7]) == repr(fast)
    _, _, event_type, subject, time_ms, data, _ = fast
    lean = outcome(
        lambda: meter(fast_meters, event_type, subject, time_ms, data, unknown_type_is_error)
    )
    rows = full[7]
    label("metering left to the lean path" if rows is None else "metered natively")
    if rows is not None:
        assert lean == ("ok", repr(rows))
    # as the worker calls it: no data dict when the contributions are there
    lean_full = native_meters.decode(line, unknown_type_is_error, False)
    assert repr(lean_full) == repr((*full[:5], None if rows is not None else data, *full[6:]))


def label(what: str) -> None:
    if currently_in_test_context():  # --hypothesis-show-statistics: each side is reached
        hypothesis.event(what)


def test_the_native_decoder_is_installed() -> None:
    assert fastpath.native_decode is not None, native.__annotations__  # message in native()
    assert native(line_with(time="2026-11-01T10:05:42.250Z")) is not None


# -- plain lines, written token by token -----------------------------------------------------


class Token(str):
    """A JSON token written as is."""


def write(value: Any, gap: str) -> str:
    """Compact JSON (``gap`` between tokens), numbers and strings exactly as given."""
    if isinstance(value, Token):
        return str(value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, list):
        return "[" + f",{gap}".join(write(v, gap) for v in value) + "]"
    assert isinstance(value, tuple)  # an object: its (key, value) pairs, in order
    pairs = (f'"{k}"{gap}:{gap}{write(v, gap)}' for k, v in value)
    return "{" + gap + f",{gap}".join(pairs) + gap + "}"


# Inner text: no quote, backslash or control character (those are escapes, left to the
# lean path); any other character, multi-byte ones included.
inner = st.text(
    st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters='"\\'), max_size=12
)
graphic = st.characters(min_codepoint=0x21, max_codepoint=0x7E, blacklist_characters='"\\')
plain_text = st.builds(lambda a, mid, b: a + mid + b, graphic, inner, graphic) | graphic
# One in ten past what the native decoder decides: padding, an escape, too long.
bent_text = st.one_of(
    plain_text.map(lambda t: " " + t),
    plain_text.map(lambda t: t + "\u00a0"),
    plain_text.map(lambda t: t + "\\n"),
    st.sampled_from(["", "x" * 512, "x" * 513, "\u00e9" * 512, "\u00e9" * 513]),
)
texts = st.integers(0, 9).flatmap(lambda n: bent_text if n == 0 else plain_text)


@st.composite
def decimals(draw: st.DrawFn) -> Token:
    sign = draw(st.sampled_from(["", "-"]))
    whole = draw(st.sampled_from(["0", "1", "12", "987654321"]))
    zeros = draw(st.integers(0, 8)) if whole == "0" else draw(st.integers(0, 2))
    digits = draw(st.text("0123456789", max_size=20))
    fraction = "0" * zeros + digits or "0"
    exponent = draw(st.sampled_from(["", "", "", "", "", "", "", "e3", "E-2", "e+1"]))
    return Token(f"{sign}{whole}.{fraction}{exponent}")


integers = st.one_of(
    st.integers(-(10**18) + 1, 10**18 - 1),
    st.sampled_from([0, 10**18 - 1, -(10**18) + 1, 10**18, 2**63 - 1, 2**64, -(2**63)]),
).map(lambda n: Token(str(n))) | st.just(Token("-0"))

# numbers sent as strings: the plain ones the native decoder meters, and forms Decimal
# also reads (padding, underscores, exponents, signs, special values) that it leaves
numeric_strings = st.one_of(
    integers.map(str),
    decimals().map(str),
    st.sampled_from(["007", " 1.5", "1_000", "12.", ".5", "+1", "NaN", "-Infinity", "1E3"]),
)
scalars = st.one_of(integers, decimals(), inner, numeric_strings, st.booleans(), st.none())
values = st.recursive(
    scalars,
    lambda inside: st.one_of(
        st.lists(inside, max_size=3),
        st.lists(st.tuples(inner, inside), max_size=3).map(tuple),
    ),
    max_leaves=8,
)
data_keys = st.sampled_from(
    ["v", "user", "region", "items", "meta", "endpoint", "cost usd", "tokens", "model", "gb_hours"]
)
meta = st.tuples(st.just(("plan", "pro")), st.tuples(st.just("cost"), integers | decimals()))


@st.composite
def times(draw: st.DrawFn) -> str:
    at = draw(st.datetimes(datetime(1, 1, 1), datetime(9999, 12, 31, 23, 59, 59, 999000)))
    text = at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"
    text = text.rjust(24, "0")  # years below 1000
    bend = draw(st.sampled_from(["", "", "", "", "", "", "", "", "", "", "day", "hour"]))
    bend = bend or draw(st.sampled_from(["", "", "", "", "", "", "second", "fraction", "zone"]))
    if bend == "day":
        text = text[:8] + draw(st.sampled_from(["29", "30", "31", "32", "00"])) + text[10:]
    elif bend == "hour":
        text = text[:11] + "24" + text[13:]
    elif bend == "second":
        text = text[:17] + "60" + text[19:]
    elif bend == "fraction":
        text = text[:19] + text[23:]
    elif bend == "zone":
        text = text[:23] + "+00:00"
    return text


@st.composite
def plain_lines(draw: st.DrawFn) -> bytes:
    fields: list[tuple[str, Any]] = [
        ("specversion", "1.0"),
        ("id", draw(texts)),
        ("source", draw(texts)),
        ("type", draw(st.sampled_from(TYPES))),
        ("subject", draw(texts)),
        ("time", draw(times())),
    ]
    data = draw(st.lists(st.tuples(data_keys, values), max_size=5, unique_by=lambda kv: kv[0]))
    if draw(st.booleans()) and "meta" not in dict(data):
        data.append(("meta", draw(meta)))
    fields.append(("data", tuple(data) if draw(st.integers(0, 5)) else None))
    for extra in ("datacontenttype", "dataschema"):
        if draw(st.booleans()):
            kinds = [None, *["application/json"] * 6, "", " x"]
            fields.append((extra, draw(st.sampled_from(kinds))))
    if draw(st.booleans()):
        fields = [f for f in fields if f[0] != "specversion"]
    fields = draw(st.permutations(fields))
    if draw(st.integers(0, 9)) == 0:  # a repeated key
        fields.append(draw(st.sampled_from(fields)))
    gap = draw(st.sampled_from(["", "", "", " ", "\n\t"]))
    return write(tuple(fields), gap).encode()


@SETTINGS
@given(plain_lines(), st.sampled_from(sorted(METER_SETS)))
def test_plain_lines_agree(line: bytes, meter_set: str) -> None:
    check(line, meter_set)


@settings(max_examples=300, deadline=None)
@given(
    st.text(graphic, min_size=1, max_size=20),
    st.datetimes(  # the storable range (schemas.timeutil.EVENT_TIME_MIN_MS/_MAX_MS)
        datetime(1970, 1, 1), datetime(2105, 12, 31, 23, 59, 59, 999999), timezones=st.just(UTC)
    ),
    st.lists(st.tuples(data_keys, integers | decimals() | inner), max_size=4),
)
def test_plain_events_are_decided_natively(
    subject: str, at: datetime, data: list[tuple[str, Any]]
) -> None:
    """Not vacuous: a plain event — canonical time, no escape, exact-as-sent numbers — is
    decided by the native decoder."""
    at = at.replace(microsecond=at.microsecond // 1000 * 1000)
    time = at.strftime("%Y-%m-%dT%H:%M:%S.").rjust(20, "0") + f"{at.microsecond // 1000:03d}Z"
    data = list(dict(data).items())
    plain = all(
        not str(v).startswith("-0")
        and "e" not in str(v).lower()
        and "0.000000" not in str(v)
        and len(str(v).lstrip("-").split(".")[0]) <= 18
        for v in dict(data).values()
    )
    fields = (("id", "e-1"), ("source", "s"), ("type", "job"), ("subject", subject))
    line = write((*fields, ("time", time), ("data", tuple(data))), "").encode()
    decided = check(line)
    if plain:
        assert decided is not None


@pytest.mark.parametrize(
    ("time", "decided"),
    [
        ("1970-01-01T00:00:00.000Z", True),
        ("2105-12-31T23:59:59.999Z", True),
        ("1969-12-31T23:59:59.999Z", False),
        ("2106-01-01T00:00:00.000Z", False),
        ("0001-01-01T00:00:00.000Z", False),
        ("9999-12-31T23:59:59.999Z", False),
    ],
)
def test_only_storable_times_are_decided_natively(time: str, decided: bool) -> None:
    """The native decoder's bounds are ``schemas.timeutil``'s: a canonical time outside
    them is left to the reference, which refuses it (``check`` holds the three alike)."""
    fields = (("id", "e-1"), ("source", "s"), ("type", "job"), ("subject", "acme"))
    line = write((*fields, ("time", time), ("data", (("v", "x"),))), "").encode()
    assert (check(line) is not None) == decided


def test_generated_telemetry_is_decided_and_metered_natively() -> None:
    telemetry = generate(
        ["acme", "globex"], datetime(2026, 10, 1, tzinfo=UTC), timedelta(days=31), 300
    )
    demo = METER_SETS["demo"][1].native
    for event in telemetry.events:
        line = encode_event(event)
        assert check(line, "demo") is not None
        full = demo.decode(line, True)
        assert full is not None
        assert full[7] is not None, line


# -- the lean path's corpora -----------------------------------------------------------------


@SETTINGS
@given(payloads(), st.sampled_from(sorted(METER_SETS)))
def test_generated_payloads_agree(payload: dict[str, Any], meter_set: str) -> None:
    check(to_json(payload).encode(), meter_set)


@SETTINGS
@given(mangled(), st.sampled_from(sorted(METER_SETS)))
def test_mangled_lines_agree(line: bytes, meter_set: str) -> None:
    check(line, meter_set)


FIXED = {
    **{f"edge: {name}": case[0] for name, case in EDGE_CASES.items()},
    **{f"surprise: {name}": case[0] for name, case in SURPRISES.items()},
    **{f"time: {case[0]}": line_with(time=case[0]) for case in TIMES},
}


@pytest.mark.parametrize("line", FIXED.values(), ids=FIXED)
def test_fixed_cases_agree(line: bytes) -> None:
    check(line)


def test_a_wrong_native_result_fails_the_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """The check can fail: a native decoder that wrote another digest is caught."""
    real = fastpath.native_decode
    assert real is not None

    def wrong(line: bytes) -> FastEvent | None:
        found = real(line)
        return None if found is None else (*found[:6], "0" * 24)

    monkeypatch.setattr(fastpath, "native_decode", wrong)
    with pytest.raises(AssertionError):
        check(line_with(time="2026-11-01T10:05:42.250Z"))


def test_wrong_native_contributions_fail_the_check() -> None:
    """The metering check can fail: contributions with another decimal exponent are caught."""
    fast_meters = METER_SETS["demo"][1]
    real = fast_meters.native

    class Padded:
        def decode(self, line: bytes, unknown_type_is_error: bool, keep_data: bool = True) -> Any:
            full = real.decode(line, unknown_type_is_error, keep_data)
            rows = [(*r[:4], r[4].quantize(Decimal("0.1")), *r[5:]) for r in full[7]]
            return (*full[:7], rows)

    line = data_line("llm.completion", '{"tokens":12,"model":"small"}')
    fast = native(line)
    check_metering(line, fast, fast_meters, real, False)
    with pytest.raises(AssertionError):
        check_metering(line, fast, fast_meters, Padded(), False)


def data_line(event_type: str, data: str) -> bytes:
    envelope = '"specversion":"1.0","id":"e-1","source":"s","subject":"acme"'
    time = '"time":"2026-11-01T10:05:42.250Z"'
    return f'{{{envelope},"type":"{event_type}",{time},"data":{data}}}'.encode()


def test_repeated_texts_are_one_object_and_stay_right_past_the_cache() -> None:
    """Subjects, sources, types and group keys a stream repeats come back as one ``str``
    each (the worker's dictionaries then match by identity); past the texts the cache
    holds, it starts over and every text is still the event's own."""
    meters = KEYS_ONLY.native
    assert meters is not None

    def job(subject: str, model: str) -> tuple[Any, ...]:
        payload = f'{{"tokens":12,"model":"{model}"}}'
        line = data_line("llm.completion", payload).replace(b'"acme"', f'"{subject}"'.encode())
        full = meters.decode(line, False, False)
        assert full is not None
        assert full[7] is not None
        return tuple(full)

    first, again = job("acme", "small"), job("acme", "small")
    for n in (0, 2, 3):  # source, type, subject
        assert first[n] == again[n]
        assert first[n] is again[n]
    group_key = first[7][0][2]
    assert group_key == '{"model":"small"}'
    assert again[7][0][2] is group_key
    assert first[1] == again[1]  # the id is not held (it differs per event)
    for n in range(70_000):  # more distinct subjects than the cache holds
        subject = f"customer-{n}"
        decoded = job(subject, f"r{n % 7}")
        assert decoded[3] == subject
        assert decoded[7][0][1] == subject
        assert decoded[7][0][2] == f'{{"model":"r{n % 7}"}}'
    assert job("acme", "small")[3] == "acme"
