from __future__ import annotations

from decimal import Decimal

import orjson
import pytest

from api.ingest import BATCH, JSON, SINGLE, media_type, parse_events
from api.problems import HttpProblem
from schemas.wire import decode_event, encode_event


def event(i: int = 0, **extra: object) -> dict[str, object]:
    return {
        "id": f"e{i}",
        "source": "test",
        "type": "api.request",
        "subject": "acme",
        "time": "2026-11-01T12:00:00.123Z",
        "data": {"endpoint": "/v1"},
        **extra,
    }


def body(value: object) -> bytes:
    return orjson.dumps(value)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("application/json", JSON),
        ("Application/CloudEvents+JSON; charset=utf-8", SINGLE),
        (" application/cloudevents-batch+json ", BATCH),
        (None, ""),
    ],
)
def test_media_type(header: str | None, expected: str) -> None:
    assert media_type(header) == expected


@pytest.mark.parametrize(
    ("kind", "payload", "count"),
    [
        (SINGLE, event(), 1),
        (BATCH, [event(0), event(1)], 2),
        (JSON, event(), 1),
        (JSON, [event(0), event(1), event(2)], 3),
    ],
)
def test_accepts_every_media_type(kind: str, payload: object, count: int) -> None:
    events = parse_events(body(payload), kind, 100)
    assert [e.id for e in events] == [f"e{i}" for i in range(count)]


def test_numbers_stay_exact() -> None:
    raw = (
        b'{"id":"x","source":"s","type":"t","subject":"a","time":"2026-11-01T00:00:00Z",'
        b'"data":{"tokens":0.1000000000000000055}}'
    )
    (parsed,) = parse_events(raw, SINGLE, 10)
    assert parsed.data == {"tokens": Decimal("0.1000000000000000055")}


@pytest.mark.parametrize(
    ("kind", "payload"),
    [(SINGLE, [event()]), (BATCH, event()), (JSON, "text"), (JSON, 5)],
)
def test_wrong_shape_for_media_type(kind: str, payload: object) -> None:
    with pytest.raises(HttpProblem) as err:
        parse_events(body(payload), kind, 10)
    assert err.value.status == 400


def test_batch_lists_every_problem_with_index() -> None:
    bad = [event(0), event(1, time="yesterday"), {"id": "x"}, "nope"]
    with pytest.raises(HttpProblem) as err:
        parse_events(body(bad), BATCH, 10)
    paths = {p.path for p in err.value.problems}
    assert err.value.status == 400
    assert "[1].time" in paths
    assert {"[2].source", "[2].type", "[2].subject", "[2].time"} <= paths
    assert "[3]" in paths
    assert not any(p.startswith("[0]") for p in paths)
    assert all(p.message for p in err.value.problems)


def test_naive_time_is_refused_with_a_fix() -> None:
    with pytest.raises(HttpProblem) as err:
        parse_events(body(event(time="2026-11-01T12:00:00")), SINGLE, 10)
    (problem,) = err.value.problems
    assert problem.path == "time"
    assert "RFC 3339" in problem.message + problem.fix


@pytest.mark.parametrize(
    "raw", [b"{", b"", b"\xff\xfe", b'{"a": NaN}', b"[" * 100_000 + b"]" * 100_000]
)
def test_not_json(raw: bytes) -> None:
    with pytest.raises(HttpProblem) as err:
        parse_events(raw, JSON, 10)
    assert err.value.status == 400


def test_empty_batch() -> None:
    with pytest.raises(HttpProblem) as err:
        parse_events(b"[]", BATCH, 10)
    assert err.value.status == 400


def test_too_many_events_is_413() -> None:
    with pytest.raises(HttpProblem) as err:
        parse_events(body([event(i) for i in range(11)]), BATCH, 10)
    assert err.value.status == 413


@pytest.mark.parametrize("header", ["text/plain", None, "application/xml"])
def test_unsupported_media_type(header: str | None) -> None:
    with pytest.raises(HttpProblem) as err:
        parse_events(body(event()), header, 10)
    assert err.value.status == 415


def test_time_that_overflows_in_utc_is_a_problem_not_a_crash() -> None:
    bad = [event(0), event(1, time="0001-01-01T00:00:00+01:00")]
    with pytest.raises(HttpProblem) as err:
        parse_events(body(bad), BATCH, 10)
    assert [p.path for p in err.value.problems] == ["[1].time"]


RAW = b'{"id":"x","source":"s","type":"t","subject":"a","time":"2026-11-01T00:00:00Z","data":'


@pytest.mark.parametrize(
    "data", [b'{"n": 18446744073709551616}', b'{"a":' * 300 + b"1" + b"}" * 300]
)
def test_data_beyond_orjson_limits_is_accepted_exactly(data: bytes) -> None:
    (parsed,) = parse_events(RAW + data + b"}", SINGLE, 10)
    assert decode_event(encode_event(parsed)).data == parsed.data


def test_invalid_unicode_is_a_problem_at_data() -> None:
    with pytest.raises(HttpProblem) as err:
        parse_events(RAW + b'{"s": "\\ud800"}' + b"}", SINGLE, 10)
    assert [p.path for p in err.value.problems] == ["data"]


@pytest.mark.parametrize(
    "data", [{"tokens": 1, " tokens": 2}, {"tokens ": 1, "tokens": 2}, {" a": 1, "a\t": 2}]
)
def test_data_keys_that_trim_to_one_are_refused_not_merged(data: dict[str, int]) -> None:
    # trimmed, the two keys would be one and one value would be dropped without a word
    with pytest.raises(HttpProblem) as err:
        parse_events(body([event(0), event(1, data=data)]), BATCH, 10)
    (problem,) = err.value.problems
    assert problem.path == "[1].data"
    assert "same key once the whitespace around them is trimmed" in problem.message
    assert problem.fix.startswith("rename one of the two keys")


def test_a_data_key_with_whitespace_alone_is_still_trimmed() -> None:
    (accepted,) = parse_events(body(event(0, data={" tokens ": 5, "model": "m"})), SINGLE, 10)
    assert accepted.data == {"tokens": 5, "model": "m"}
