from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from schemas.events import UsageEvent
from schemas.metering.contributions import (
    DeadLetterReason,
    Unmeterable,
    contributions,
    window_start_ms,
)
from schemas.metering.definitions import parse_meters

METERS = parse_meters(
    {
        "meters": [
            {
                "slug": "calls",
                "event_type": "req",
                "aggregation": "COUNT",
                "group_by": {"region": "$.region"},
            },
            {
                "slug": "bytes",
                "event_type": "req",
                "aggregation": "SUM",
                "value_property": "$.bytes",
            },
            {
                "slug": "users",
                "event_type": "login",
                "aggregation": "UNIQUE_COUNT",
                "value_property": "$.user",
            },
        ]
    }
)
AT = datetime(2026, 11, 1, 10, 5, 42, 250000, tzinfo=UTC)


def event(type_: str, data: Any) -> UsageEvent:
    return UsageEvent.create(type=type_, subject="acme", data=data, time=AT)


def test_one_event_feeds_every_meter_of_its_type() -> None:
    out = contributions(event("req", {"bytes": "1.5", "region": "eu"}), METERS)
    by_meter = {c.meter: c for c in out}
    assert set(by_meter) == {"calls", "bytes"}
    assert by_meter["bytes"].value == Decimal("1.5")
    assert by_meter["calls"].group_key == '{"region":"eu"}'
    assert by_meter["bytes"].group_key == "{}"
    assert by_meter["calls"].window_start_ms == window_start_ms(int(AT.timestamp() * 1000))
    assert datetime.fromtimestamp(by_meter["calls"].window_start_ms / 1000, UTC) == datetime(
        2026, 11, 1, 10, 5, tzinfo=UTC
    )


def test_missing_group_value_is_empty_not_an_error() -> None:
    (calls, _) = contributions(event("req", {"bytes": 1}), METERS)
    assert calls.group_key == '{"region":""}'


def test_unique_count_keeps_the_value_text() -> None:
    (users,) = contributions(event("login", {"user": 42}), METERS)
    assert users.uniq == "42"


@pytest.mark.parametrize("user", [2**63 - 1, 2**64, int("9" * 29), int("9" * 28 + "8")])
def test_a_unique_count_takes_the_64_bit_ids_a_sum_refuses(user: int) -> None:
    """A summed value has at most 18 integer digits (its sums must fit Decimal(38, 9));
    a unique-count meter keeps its value as text, never summed, so ids of 19 and 20
    digits are counted, each as its own text (29 digits too: not rounded to 28)."""
    (users,) = contributions(event("login", {"user": user}), METERS)
    assert users.uniq == str(user)
    with pytest.raises(Unmeterable) as caught:
        contributions(event("req", {"bytes": user}), METERS)
    assert caught.value.reason is DeadLetterReason.VALUE_OUT_OF_RANGE
    assert "at most 18 integer" in caught.value.detail


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ({}, DeadLetterReason.VALUE_MISSING),
        ({"bytes": None}, DeadLetterReason.VALUE_MISSING),
        ({"bytes": "ten"}, DeadLetterReason.VALUE_NOT_NUMERIC),
        ({"bytes": True}, DeadLetterReason.VALUE_NOT_NUMERIC),
        ({"bytes": [1]}, DeadLetterReason.VALUE_NOT_NUMERIC),
        ({"bytes": "NaN"}, DeadLetterReason.VALUE_NOT_NUMERIC),
        ({"bytes": "0.0000000001"}, DeadLetterReason.VALUE_OUT_OF_RANGE),
        ({"bytes": "1" + "0" * 29}, DeadLetterReason.VALUE_OUT_OF_RANGE),
        ({"bytes": "1" + "0" * 18}, DeadLetterReason.VALUE_OUT_OF_RANGE),
        ({"bytes": -(10**18)}, DeadLetterReason.VALUE_OUT_OF_RANGE),
    ],
)
def test_unmeterable_values_name_the_reason(data: Any, reason: DeadLetterReason) -> None:
    with pytest.raises(Unmeterable) as caught:
        contributions(event("req", data), METERS)
    assert caught.value.reason is reason
    assert "bytes" in caught.value.detail


def test_unknown_type_is_stored_silently_or_refused_when_configured() -> None:
    assert contributions(event("other", {}), METERS) == ()
    with pytest.raises(Unmeterable) as caught:
        contributions(event("other", {}), METERS, unknown_type_is_error=True)
    assert caught.value.reason is DeadLetterReason.UNKNOWN_TYPE


@pytest.mark.parametrize(
    ("ms", "start"), [(0, 0), (59_999, 0), (60_000, 60_000), (-1, -60_000), (125_000, 120_000)]
)
def test_window_start_floors(ms: int, start: int) -> None:
    assert window_start_ms(ms) == start
