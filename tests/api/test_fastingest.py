"""The gateway's lean ingest path against its oracle, the reference path.

For every body — generated batches and single events in each media type, mangled bytes
and a fixed list of edge cases — ``encode_fast`` must either decline (``None``) or give
exactly the reference's events as ``encode_event`` writes them, in order; a body the
reference refuses must be declined; and ``accept_body`` must answer exactly as the
reference does (the same events, or the same status, title, detail and problems).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import hypothesis
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.fastingest import accept_body, encode_fast
from api.ingest import BATCH, JSON, SINGLE, parse_events
from api.problems import HttpProblem
from ingest.telemetry import generate
from schemas.events import UsageEvent
from schemas.wire import encode_event
from tests.schemas.event_cases import GOOD, Raw, payloads, to_json

KINDS = (SINGLE, BATCH, JSON)
LIMIT = 8


def outcome(run: Any) -> tuple[Any, ...]:
    """What a call did, comparable across paths."""
    try:
        return ("ok", run())
    except HttpProblem as exc:
        return ("problem", exc.status, exc.title, exc.detail, exc.problems, dict(exc.headers))


def assert_agrees(raw: bytes, kind: str, max_events: int = LIMIT) -> str:
    """Check every invariant of ``api.fastingest`` for one body; say which side decided."""
    fast = encode_fast(raw, kind, max_events)
    reference = outcome(
        lambda: [(e.subject, encode_event(e)) for e in parse_events(raw, kind, max_events)]
    )
    assert outcome(lambda: accept_body(raw, kind, max_events)) == reference
    if reference[0] == "problem":
        assert fast is None, "the reference refuses this body; the fast path must decline"
        return f"refused {reference[1]}"
    if fast is None:
        return "fell back"
    assert fast == reference[1]
    return "decided by the fast path"


def array(items: list[bytes], spaced: bool) -> bytes:
    glue = b" ,\n " if spaced else b","
    return (b"[ " if spaced else b"[") + glue.join(items) + (b" ]" if spaced else b"]")


@st.composite
def bodies(draw: st.DrawFn) -> tuple[bytes, str]:
    """A single event or a batch (sometimes over the limit, sometimes empty), in a media
    type that may or may not take its shape."""
    kind = draw(st.sampled_from(KINDS))
    lines = [to_json(p).encode() for p in draw(st.lists(payloads(), max_size=LIMIT + 1))]
    spaced = draw(st.booleans())
    if draw(st.booleans()) and lines:
        return lines[0], kind
    return array(lines, spaced), kind


@st.composite
def mangled_bodies(draw: st.DrawFn) -> tuple[bytes, str]:
    raw, kind = draw(bodies())
    at = draw(st.integers(0, len(raw)))
    junk = draw(
        st.binary(max_size=4)
        | st.sampled_from([b"\\ud800", b"\xed\xa0\x80", b"\xef\xbb\xbf", b"1e99999999999999999"])
    )
    how = draw(st.sampled_from(["cut", "replace", "insert", "append", "prepend"]))
    if how == "cut":
        return raw[:at], kind
    if how == "replace":
        return raw[:at] + junk + raw[at + len(junk) :], kind
    if how == "insert":
        return raw[:at] + junk + raw[at:], kind
    if how == "prepend":
        return junk + raw, kind
    return raw + junk, kind


SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(bodies())
def test_generated_bodies_agree_with_the_reference(body: tuple[bytes, str]) -> None:
    hypothesis.event(assert_agrees(*body))


@SETTINGS
@given(mangled_bodies())
def test_mangled_bodies_agree_with_the_reference(body: tuple[bytes, str]) -> None:
    hypothesis.event(assert_agrees(*body))


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.from_regex(r"[a-z0-9][a-z0-9\-]{0,30}", fullmatch=True),
            st.datetimes(
                min_value=datetime(1970, 1, 1),
                max_value=datetime(2100, 1, 1),
                timezones=st.just(UTC),
            ),
            st.dictionaries(
                st.sampled_from(["v", "user", "region", "tokens", "model"]),
                st.one_of(
                    st.integers(-(2**63), 2**64 - 1),
                    st.builds(
                        lambda digits, places: Decimal(f"{digits}E-{places}"),
                        st.integers(-(10**18), 10**18),
                        st.integers(1, 12),
                    ),
                    st.text(max_size=8).filter(lambda t: "\\u" not in t),
                ),
                max_size=4,
            ),
        ),
        min_size=1,
        max_size=LIMIT,
    ),
    st.booleans(),
)
def test_well_formed_batches_take_the_fast_path(
    events: list[tuple[str, datetime, dict[str, Any]]], sdk_encoding: bool
) -> None:
    """Not vacuous: what clients normally send is decided by the fast path."""
    made = [UsageEvent.create(type="job", subject=s, time=t, data=d) for s, t, d in events]
    lines = [encode_event(e) if sdk_encoding else to_json(e.to_wire()).encode() for e in made]
    assert assert_agrees(array(lines, not sdk_encoding), BATCH) == "decided by the fast path"


def test_generated_telemetry_takes_the_fast_path() -> None:
    telemetry = generate(
        ["acme", "globex", "initech"], datetime(2026, 10, 1, tzinfo=UTC), timedelta(days=31), 100
    )
    raw = orjson.dumps([e.to_wire() for e in telemetry.events[:100]], default=str)
    assert assert_agrees(raw, BATCH, 100) == "decided by the fast path"
    encoded = encode_fast(raw, BATCH, 100)
    assert encoded is not None
    assert encoded == [(e.subject, encode_event(e)) for e in telemetry.events[:100]]


# -- the fixed edge cases ------------------------------------------------------------------


def line_with(**changes: Any) -> bytes:
    return to_json({**GOOD, **changes}).encode()


ONE = line_with()

# (body, media type, what happens)
EDGE_CASES = {
    "one event, cloudevents+json": (ONE, SINGLE, "decided by the fast path"),
    "one event, json": (ONE, JSON, "decided by the fast path"),
    "batch, json": (b"[" + ONE + b"]", JSON, "decided by the fast path"),
    "array for cloudevents+json": (b"[" + ONE + b"]", SINGLE, "refused 400"),
    "object for cloudevents-batch+json": (ONE, BATCH, "refused 400"),
    "empty batch": (b"[]", BATCH, "refused 400"),
    "batch over the limit": (b"[" + b",".join([ONE] * (LIMIT + 1)) + b"]", BATCH, "refused 413"),
    "a number beyond Decimal": (
        line_with(data={"v": Raw("1e99999999999999999999")}),
        SINGLE,
        "refused 400",
    ),
    # json.loads reads UTF-8 with a BOM (and UTF-16): the reference accepts both
    "byte order mark": (b"\xef\xbb\xbf" + ONE, SINGLE, "fell back"),
    "UTF-16": (ONE.decode().encode("utf-16"), SINGLE, "fell back"),
    "lone surrogate": (line_with(data={"s": Raw('"\\ud800"')}), SINGLE, "refused 400"),
    "surrogate pair": (line_with(data={"s": Raw('"\\ud83d\\ude00"')}), SINGLE, "fell back"),
    "30-digit integer": (line_with(data={"v": Raw("1" * 30)}), SINGLE, "fell back"),
    "with dataschema": (
        ONE[:-1] + b',"dataschema":"x"}',
        SINGLE,
        "decided by the fast path",
    ),
    "duplicate keys": (
        ONE[:-1] + b',"subject":"other","data":{"v":1,"v":2}}',
        SINGLE,
        "decided by the fast path",
    ),
    "padded subject": (line_with(subject=" acme "), SINGLE, "fell back"),
    "padded data key": (line_with(data={" v": 1}), SINGLE, "fell back"),
    "time with offset": (
        line_with(time="2026-11-01T12:05:42.25+02:00"),
        SINGLE,
        "decided by the fast path",
    ),
    "epoch-seconds time": (line_with(time=Raw("1700000000")), SINGLE, "fell back"),
    "NaN": (line_with(data={"v": Raw("NaN")}), SINGLE, "refused 400"),
    "fractions and exponents": (
        line_with(data={"a": Raw("2.50"), "b": Raw("1.0"), "c": Raw("1e2"), "d": Raw("-0.0")}),
        SINGLE,
        "decided by the fast path",
    ),
    "a small exponent": (line_with(data={"v": Raw("1E-7")}), SINGLE, "decided by the fast path"),
    "a long plain form": (line_with(data={"v": Raw("1e-30")}), SINGLE, "fell back"),
    "an integral exponent beyond 64 bits": (
        line_with(data={"v": Raw("1e25")}),
        SINGLE,
        "fell back",
    ),
    "the largest unsigned 64-bit integer": (
        line_with(data={"v": Raw(str(2**64 - 1)), "w": Raw(str(-(2**63)))}),
        SINGLE,
        "decided by the fast path",
    ),
    "one past it, with non-ASCII text": (
        line_with(data={"v": Raw(str(2**64)), "s": "é"}),
        SINGLE,
        "fell back",
    ),
    "nesting 300 levels deep": (
        line_with(data={"d": Raw("[" * 300 + "]" * 300)}),
        SINGLE,
        "fell back",
    ),
    "null data and extras": (
        line_with(data=None)[:-1] + b',"datacontenttype":null,"dataschema":null}',
        SINGLE,
        "decided by the fast path",
    ),
    "control characters, U+2028 and non-ASCII": (
        line_with(data={"s": '\x00\x1f\x7f\b\u2028é😀/\\"'}),
        SINGLE,
        "decided by the fast path",
    ),
    "512 non-ASCII characters": (line_with(subject="é" * 512), SINGLE, "decided by the fast path"),
    "513 non-ASCII characters": (line_with(subject="é" * 513), SINGLE, "refused 400"),
    "a leap second": (line_with(time="2026-12-31T23:59:60.000Z"), SINGLE, "refused 400"),
    "minute 60": (line_with(time="2026-12-31T23:60:00.000Z"), SINGLE, "refused 400"),
    "30 February": (line_with(time="2026-02-30T10:00:00.000Z"), SINGLE, "refused 400"),
    "full-width digits": (line_with(time="2026-11-01T10:０5:42.250Z"), SINGLE, "refused 400"),
    "not JSON": (b"{", JSON, "refused 400"),
    "deep nesting": (b"[" * 100_000 + b"]" * 100_000, JSON, "refused 400"),
}


@pytest.mark.parametrize(("raw", "kind", "expected"), EDGE_CASES.values(), ids=EDGE_CASES)
def test_edge_case(raw: bytes, kind: str, expected: str) -> None:
    assert assert_agrees(raw, kind) == expected


def test_a_refused_batch_names_every_problem_as_the_reference_does() -> None:
    bad = array([ONE, line_with(time="yesterday"), b'{"id":"x"}', b'"nope"'], spaced=False)
    with pytest.raises(HttpProblem) as err:
        accept_body(bad, BATCH, LIMIT)
    paths = {p.path for p in err.value.problems}
    assert "[1].time" in paths
    assert {"[2].source", "[2].type", "[2].subject", "[2].time"} <= paths
    assert "[3]" in paths


@pytest.mark.parametrize("header", ["text/plain", None])
def test_unsupported_media_type_is_415(header: str | None) -> None:
    with pytest.raises(HttpProblem) as err:
        accept_body(ONE, header, LIMIT)
    assert err.value.status == 415


@pytest.mark.parametrize(("kind", "batch"), [(SINGLE, False), (BATCH, True), (JSON, True)])
def test_an_event_too_large_for_a_kafka_record_is_refused_before_anything_is_sent(
    kind: str, batch: bool
) -> None:
    # 1e999 is 5 bytes in the body and 1,000 digits on the wire
    data = b"{" + b",".join(b'"k%d":1e999' % i for i in range(1000)) + b"}"
    big = (
        b'{"id":"e1","source":"t","type":"api.request","subject":"acme",'
        b'"time":"2026-11-01T12:00:00Z","data":' + data + b"}"
    )
    small = (
        b'{"id":"e0","source":"t","type":"api.request","subject":"acme",'
        b'"time":"2026-11-01T12:00:00Z"}'
    )
    raw = b"[" + small + b"," + big + b"]" if batch else big
    assert len(raw) < 20_000
    with pytest.raises(HttpProblem) as err:
        accept_body(raw, kind, 10)
    assert err.value.status == 400
    (problem,) = err.value.problems
    assert problem.path == ("[1]" if batch else "")
    assert "900,000 fit a Kafka record" in problem.message
    assert "1e999" in problem.fix
