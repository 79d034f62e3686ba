from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from schemas.errors import InvalidInput
from schemas.events import UsageEvent, parse_event, parse_event_json
from schemas.timeutil import EVENT_TIME_MAX_MS
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


@pytest.mark.parametrize(
    "time",
    [
        "0001-01-01T00:00:00+01:00",
        "1969-12-31T23:59:59.999Z",
        "1970-01-01T00:30:00+01:00",
        "2106-01-01T00:00:00Z",
        "2106-02-07T06:28:16Z",  # past what a window's start (UInt32 seconds) can hold
        "9999-12-31T23:59:59Z",
        -1,
    ],
)
def test_time_outside_the_supported_range_is_a_field_error(time: object) -> None:
    """Accepted, such an event could never be written to its window: every write of its
    chunk would fail and stop its partition.  Refused here, it is a dead letter (or a 400)
    naming the field and the range."""
    with pytest.raises(InvalidInput) as caught:
        parse_event({**VALID, "time": time})
    [problem] = caught.value.problems
    assert problem.path == "time"
    assert "between 1970-01-01T00:00:00Z and 2105-12-31T23:59:59.999Z" in problem.message


@pytest.mark.parametrize(
    ("time", "ms"),
    [("1970-01-01T00:00:00Z", 0), ("2105-12-31T23:59:59.999Z", EVENT_TIME_MAX_MS)],
)
def test_the_supported_range_holds_its_edges(time: str, ms: int) -> None:
    assert parse_event({**VALID, "time": time}).time_ms == ms


def test_integers_beyond_64_bits_survive_the_wire_exactly() -> None:
    huge = 2**80 + 1
    event = parse_event({**VALID, "data": {"n": huge, "deep": [[[1]]]}})
    assert decode_event(encode_event(event)).data == {"n": huge, "deep": [[[1]]]}


@pytest.mark.parametrize(
    ("literal", "accepted"),
    [("9.99e999", True), ("1e-1000", True), ("1e1000", False), ("1.5e-1000", False)],
)
def test_a_number_too_long_to_write_is_refused_naming_its_path(
    literal: str, accepted: bool
) -> None:
    """Numbers are written in plain decimal form: ``1e-999999999`` (13 bytes) would be a
    billion characters, so beyond 1,000 digits on a side the event is refused."""
    line = (
        '{"id":"e","source":"s","type":"t","subject":"acme","time":"2026-10-01T00:00:00Z",'
        f'"data":{{"a":[1,{{"v":{literal}}}]}}}}'
    ).encode()
    if accepted:
        assert len(encode_event(decode_event(line))) < 1200
        return
    with pytest.raises(InvalidInput) as exc:
        decode_event(line)
    [problem] = exc.value.problems
    assert "data.a[1].v" in problem.message
    assert "1000 digits" in problem.fix


@pytest.mark.parametrize(
    ("override", "fix"),
    [
        ({"id": ""}, "send a non-empty string"),
        ({"subject": "   "}, "send a non-empty string"),
        ({"source": "s" * 513}, "send at most 512 characters"),
        ({"id": 5}, "send a string"),
    ],
)
def test_a_text_field_s_fix_says_what_to_send(override: dict[str, object], fix: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_event({**VALID, **override})
    [problem] = caught.value.problems
    assert problem.path == next(iter(override))
    assert problem.fix == fix
