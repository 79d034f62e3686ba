from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from schemas.errors import InvalidInput
from schemas.events import UsageEvent, _canonical, parse_event, parse_event_json
from schemas.wire import content_hash, decode_event, encode_event, event_key

VALID = {
    "specversion": "1.0",
    "id": "evt-1",
    "source": "gateway",
    "type": "api.request",
    "subject": "acme",
    "time": "2026-11-01T12:00:00.123456+02:00",
    "data": {"tokens": 5},
}


def test_valid_event_is_normalised_to_utc_milliseconds() -> None:
    event = parse_event(VALID)
    assert event.time == datetime(2026, 11, 1, 10, 0, 0, 123000, tzinfo=UTC)
    assert event.time_ms == 1793527200123
    assert event.to_wire()["time"] == "2026-11-01T10:00:00.123Z"


def test_every_problem_is_listed_with_its_field() -> None:
    bad = {**VALID, "id": "", "subject": None, "time": "2026-11-01T12:00:00", "extra": 1}
    bad.pop("type")
    with pytest.raises(InvalidInput) as caught:
        parse_event(bad)
    paths = {p.path for p in caught.value.problems}
    assert {"id", "subject", "time", "type", "extra"} <= paths
    naive = next(p for p in caught.value.problems if p.path == "time")
    assert "UTC offset" in naive.message
    missing = next(p for p in caught.value.problems if p.path == "type")
    assert missing.fix == "add this field"


def test_batch_index_prefixes_the_path() -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_event({**VALID, "subject": ""}, where="[3]")
    assert [p.path for p in caught.value.problems] == ["[3].subject"]


def test_not_json_and_not_object() -> None:
    with pytest.raises(InvalidInput, match="not valid JSON"):
        parse_event_json(b"{nope")
    with pytest.raises(InvalidInput, match="JSON object"):
        parse_event_json(b"[1, 2]")


def test_create_fills_id_and_time() -> None:
    event = UsageEvent.create(type="t", subject="s", data={"v": 1})
    assert len(event.id) == 36
    assert abs(datetime.now(UTC) - event.time) < timedelta(seconds=5)


def test_wire_round_trip_keeps_decimals_exact() -> None:
    event = UsageEvent.create(
        type="t",
        subject="acme",
        data={"exact": Decimal("0.100000000000000005551"), "whole": Decimal("12")},
        time=datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=-5))),
    )
    raw = encode_event(event)
    back = decode_event(raw)
    assert back.data == {"exact": "0.100000000000000005551", "whole": 12}
    assert back.time == datetime(2026, 1, 1, 5, tzinfo=UTC)
    assert event_key(event) == b"acme"


def test_decoder_parses_json_numbers_as_decimal() -> None:
    raw = (
        b'{"specversion":"1.0","id":"1","source":"s","type":"t","subject":"x",'
        b'"time":"2026-01-01T00:00:00Z","data":{"v":0.1000000000000000055}}'
    )
    assert decode_event(raw).data == {"v": Decimal("0.1000000000000000055")}


def test_content_hash_tells_retry_from_conflict() -> None:
    a = parse_event(VALID)
    same = parse_event(dict(VALID))
    other = parse_event({**VALID, "data": {"tokens": 6}})
    assert content_hash(a) == content_hash(same)
    assert content_hash(a) != content_hash(other)


def test_time_outside_the_supported_range_is_a_field_error() -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_event({**VALID, "time": "0001-01-01T00:00:00+01:00"})
    assert [p.path for p in caught.value.problems] == ["time"]


def test_integers_beyond_64_bits_survive_the_wire_exactly() -> None:
    huge = 2**80 + 1
    event = parse_event({**VALID, "data": {"n": huge, "deep": [[[1]]]}})
    assert decode_event(encode_event(event)).data == {"n": huge, "deep": [[[1]]]}


_texts = st.one_of(
    st.sampled_from(["a", "acme", " padded", "tab\t", "x" * 512, "x" * 513, "", "\u00a0nb"]),
    st.text(max_size=6),
    st.integers(),
    st.none(),
)
_times = st.one_of(
    st.sampled_from(
        [
            "2026-10-18T17:10:24.881Z",
            "2026-02-30T00:00:00.000Z",
            "0001-01-01T00:00:00.000Z",
            "9999-12-31T23:59:59.999Z",
            "2026-10-18T17:10:24.881+02:00",
            "2026-10-18T17:10:24Z",
            "2026-10-18T17:10:24.881",
            "2026-10-18 17:10:24.881Z",
            "2026-10-18T17:10:24.881Z\n",
        ]
    ),
    st.datetimes(timezones=st.just(UTC)).map(
        lambda d: d.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    ),
    st.integers(min_value=0, max_value=2**33),
)
_payloads = st.fixed_dictionaries(
    {"id": _texts, "source": _texts, "type": _texts, "subject": _texts, "time": _times},
    optional={
        "specversion": st.sampled_from(["1.0", "0.3", 1]),
        "data": st.one_of(
            st.none(), st.dictionaries(st.text(max_size=3), st.integers()), st.just([1])
        ),
        "datacontenttype": st.one_of(st.none(), _texts),
        "dataschema": st.one_of(st.none(), _texts),
        "extra": st.just("x"),
    },
)


@settings(max_examples=600, deadline=None)
@given(_payloads)
def test_canonical_fast_path_agrees_with_the_validator(payload: dict[str, object]) -> None:
    """The worker's fast path for canonical events decides exactly like full validation."""
    fast = _canonical(payload)
    try:
        full = UsageEvent.model_validate(payload)
    except ValidationError:
        assert fast is None
        return
    if fast is not None:
        assert fast.model_dump() == full.model_dump()
        assert fast.time_ms == full.time_ms
        assert fast.model_fields_set == full.model_fields_set


def test_canonical_fast_path_is_taken_for_what_producers_write() -> None:
    event = UsageEvent.create(type="t", subject="acme", data={"n": Decimal("1.5")})
    fast = _canonical(orjson.loads(encode_event(event)))
    assert fast is not None
    assert fast.model_dump(exclude={"data"}) == event.model_dump(exclude={"data"})
