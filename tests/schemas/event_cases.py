"""Events for the property tests that hold the lean path to the reference
(``test_fastpath.py``, ``tests/streams/test_plan_oracle.py``, ``tests/api/test_fastingest.py``):
meter sets, generated payloads and times, mangled lines, and one good event."""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml
from hypothesis import strategies as st

from schemas.metering.definitions import load_meters, parse_meters
from schemas.metering.fastpath import FastMeters

ROOT = Path(__file__).resolve().parents[2]
DEMO = load_meters(ROOT / "deploy" / "demo" / "meters.yaml")

# Every aggregation kind (the shape of tests/e2e/test_meters.py), with group-bys that take
# each extractor: $.key, $.a.b, an index step and a bracketed key with a space.
ALL_KINDS = parse_meters(
    yaml.safe_load(
        """
meters:
  - {slug: m_sum, event_type: job, aggregation: SUM, value_property: $.v,
     group_by: {region: $.region}}
  - {slug: m_count, event_type: job, aggregation: COUNT,
     group_by: {region: $.region, plan: $.meta.plan}}
  - {slug: m_unique, event_type: job, aggregation: UNIQUE_COUNT, value_property: $.user,
     group_by: {plan: $.meta.plan}}
  - {slug: m_max, event_type: job, aggregation: MAX, value_property: $.v,
     group_by: {first: "$.items[0]"}}
  - {slug: m_min, event_type: job, aggregation: MIN, value_property: $.meta.cost}
  - {slug: m_avg, event_type: job, aggregation: AVG, value_property: "$.items[-1]",
     group_by: {cost: "$['cost usd']"}}
  - {slug: m_latest, event_type: job, aggregation: LATEST, value_property: $.v}
  - {slug: m_count_other, event_type: api.request, aggregation: COUNT,
     group_by: {endpoint: $.endpoint}}
"""
    )
)
METER_SETS = {"demo": (DEMO, FastMeters(DEMO)), "all_kinds": (ALL_KINDS, FastMeters(ALL_KINDS))}
TYPES = ["api.request", "llm.completion", "storage.snapshot", "job", "unknown.kind"]


class Raw(str):
    """A JSON token written as is (``NaN``, ``1e400``, a 30-digit integer)."""


def to_json(value: Any) -> str:
    """Compact JSON with every number written exactly as given (Decimals as literals)."""
    if isinstance(value, Raw):
        return str(value)
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, int | Decimal):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ",".join(to_json(v) for v in value) + "]"
    return "{" + ",".join(f"{to_json(k)}:{to_json(v)}" for k, v in value.items()) + "}"


TEXTS = st.one_of(
    st.text(st.characters(codec="utf-8"), min_size=1, max_size=12).filter(
        lambda text: text == text.strip()
    ),
    st.from_regex(r"[a-z][a-z0-9\-]{0,15}", fullmatch=True),
    st.sampled_from(["a" * 512, "é" * 512, "\U0001f600" * 3, "ac\u0000me", "a\u00a0b"]),
)
BAD_TEXTS = st.sampled_from(
    ["", " ", " acme", "acme ", "\tacme", "acme\u00a0", "acme\x1f", "a" * 513, Raw("7")]
)
DECIMALS = st.builds(
    lambda digits, places: Decimal(f"{digits}E-{places}"),
    st.integers(-(10**35), 10**35),
    st.integers(0, 22),
)
NUMBERS = st.one_of(
    st.integers(-(10**6), 10**6),
    st.integers(-(10**31), 10**31),
    st.integers(-(2**70), 2**70),
    DECIMALS,
    st.decimals(allow_nan=False, allow_infinity=False),
    st.sampled_from(
        [
            *(Raw(t) for t in ("1e400", "1E-400", "-0.0", "1.50", "0E+3", "9e999", "1e-1000")),
            *(Raw(t) for t in ("1e1000", "1.5E-1000", "-1e-999999999")),
        ]
    ),
)
STRINGS = st.one_of(
    st.text(st.characters(codec="utf-8"), max_size=8),
    st.sampled_from(["12.5", " 1.5 ", "1_000", "NaN", "Infinity", "abc", "1e400", "-0", ""]),
)
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, STRINGS)
KEYS = st.one_of(
    st.sampled_from(["v", "user", "region", "plan", "cost", "tokens", "model", "endpoint"]),
    st.text(st.characters(codec="utf-8"), max_size=6),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=3),
    max_leaves=6,
)
PADDED_KEYS = (" tokens ", "v ", "\tregion")
ZONES = ("Z", "Z", "+00:00", "-00:00", "+02:00", "-05:30", "+14:00", "+23:59")
ODD_ZONES = ("z", "", "+0200", "+24:00", "+02", " Z", "+02:60")
IN_RANGE = st.one_of(
    st.integers(-(10**12), 10**12),
    st.builds(
        lambda digits, places: Decimal(f"{digits}E-{places}"),
        st.integers(-(10**20), 10**20),
        st.integers(0, 9),
    ),
    st.sampled_from(["12.5", "0.001", "-3", "1E+3"]),
)
LABELS = st.sampled_from(["eu", "us", "pro", "free", ""])


def mostly(usual: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A metered field: usually a value the meters take, sometimes anything at all."""
    return st.one_of(usual, usual, usual, usual, SCALARS, VALUES)


METERED = st.fixed_dictionaries(
    {
        "v": mostly(IN_RANGE),
        "tokens": mostly(IN_RANGE),
        "gb_hours": mostly(IN_RANGE),
        "user": mostly(LABELS | IN_RANGE),
        "region": mostly(LABELS),
        "model": mostly(LABELS),
        "endpoint": mostly(LABELS),
        "meta": mostly(st.fixed_dictionaries({"plan": LABELS, "cost": mostly(IN_RANGE)})),
        "items": mostly(st.lists(mostly(IN_RANGE), min_size=1, max_size=3)),
        "cost usd": mostly(IN_RANGE | LABELS),
    }
)


@st.composite
def data_objects(draw: st.DrawFn) -> dict[str, Any]:
    """What meters read, each field now and then missing, among keys no meter reads."""
    metered = {key: value for key, value in draw(METERED).items() if draw(st.integers(0, 7))}
    return {**draw(st.dictionaries(KEYS, VALUES, max_size=3)), **metered}


DATA = data_objects()


@st.composite
def times(draw: st.DrawFn) -> str:
    """RFC 3339 with an offset: any year, fractions of 0..20 digits (a ms, a µs, ...)."""
    moment = draw(st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)))
    moment = draw(st.sampled_from([moment, datetime(2026, 11, 1, 12, 0, 0, 250_000)]))
    digits = draw(st.text("0123456789", min_size=1, max_size=20))
    fraction = draw(st.sampled_from(["", f".{digits}", f".{digits[:3]}", f".{digits[:6]}"]))
    return (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T"
        f"{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}{fraction}"
        + draw(st.sampled_from(ZONES))
    )


@st.composite
def odd_times(draw: st.DrawFn) -> Any:
    """Times the reference reads in its own way (or refuses): odd zones and separators,
    edges of the calendar, epoch seconds."""
    text = draw(times())
    zone = draw(st.sampled_from(ODD_ZONES))
    odd = draw(
        st.sampled_from(
            [
                text[:19] + zone,
                text[:10] + draw(st.sampled_from(["t", " "])) + text[11:],
                text[:19] + ",5Z",
                text[:19] + ".Z",
                "0001-01-01T00:30:00+01:00",
                "9999-12-31T23:30:00-01:00",
                "2023-02-29T00:00:00Z",
                "2026-01-01T24:00:00Z",
                "2026-01-01T00:00:60Z",
                "0000-01-01T00:00:00Z",
                "2026-01-01",
                "1700000000",
            ]
        )
    )
    return draw(st.sampled_from([odd, odd, odd, Raw("1700000000"), None]))


@st.composite
def payloads(draw: st.DrawFn) -> dict[str, Any]:
    """A valid event in every shape the envelope allows; two in five carry one defect."""
    payload: dict[str, Any] = {
        "id": draw(TEXTS),
        "source": draw(TEXTS),
        "type": draw(st.one_of(st.sampled_from(TYPES), st.just("job"), TEXTS)),
        "subject": draw(TEXTS),
        "time": draw(times()),
    }
    if draw(st.booleans()):
        payload["specversion"] = "1.0"
    if draw(st.integers(0, 9)):
        payload["data"] = draw(st.one_of(DATA, DATA, DATA, st.none()))
    for extra in ("datacontenttype", "dataschema"):
        if not draw(st.integers(0, 4)):
            payload[extra] = draw(st.sampled_from([None, "", "application/json"]))
    defect = draw(st.sampled_from([None, None, None, *DEFECTS]))
    if defect == "text":
        payload[draw(st.sampled_from(["id", "source", "type", "subject"]))] = draw(BAD_TEXTS)
    elif defect == "time":
        payload["time"] = draw(odd_times())
    elif defect == "specversion":
        payload["specversion"] = draw(st.sampled_from(["0.3", " 1.0", "1.0 ", Raw("1.0"), None]))
    elif defect == "data":
        payload["data"] = draw(st.one_of(SCALARS, st.lists(VALUES, max_size=2)))
    elif defect == "data key":
        padded = {draw(st.sampled_from(PADDED_KEYS)): draw(SCALARS)}
        payload["data"] = {**(payload.get("data") or {}), **padded}
    elif defect == "optional":
        payload[draw(st.sampled_from(["datacontenttype", "dataschema"]))] = draw(
            st.sampled_from([" x ", "x\n", 3, Raw('"\\ud800"')])
        )
    elif defect == "unknown field":
        payload[draw(st.sampled_from(["extra", "Id", "data_"]))] = draw(SCALARS)
    elif defect == "missing field":
        del payload[draw(st.sampled_from(["id", "source", "type", "subject", "time"]))]
    order = draw(st.permutations(sorted(payload)))
    return {key: payload[key] for key in order}


DEFECTS = [
    "text",
    "time",
    "specversion",
    "data",
    "data key",
    "optional",
    "unknown field",
    "missing field",
]


@st.composite
def mangled(draw: st.DrawFn) -> bytes:
    """A generated line with bytes cut, replaced or added."""
    line = to_json(draw(payloads())).encode()
    at = draw(st.integers(0, len(line)))
    junk = draw(st.binary(max_size=4) | st.sampled_from([b"\\ud800", b"\xed\xa0\x80", b"\n"]))
    how = draw(st.sampled_from(["cut", "replace", "insert", "wrap", "append"]))
    if how == "cut":
        return line[:at]
    if how == "replace":
        return line[:at] + junk + line[at + len(junk) :]
    if how == "insert":
        return line[:at] + junk + line[at:]
    if how == "wrap":
        return b"[" + line + b"]"
    return line + junk


GOOD: dict[str, Any] = {
    "id": "evt-1",
    "source": "tests",
    "type": "job",
    "subject": "acme",
    "time": "2026-11-01T10:05:42.250Z",
    "data": {
        "v": 12,
        "user": "u1",
        "region": "eu",
        "meta": {"plan": "pro", "cost": "0.5"},
        "items": [7, Decimal("2.50")],
        "cost usd": Decimal("1.0"),
    },
}
