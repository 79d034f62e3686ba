"""Usage from files and CLI pairs: exact numbers, every problem at once, with paths."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rating.usage import (
    Usage,
    _number_problems,
    load_usage_file,
    parse_usage_pairs,
    usage_from_data,
)
from schemas.errors import InvalidInput

D = Decimal


def test_plain_quantities_and_event_lists() -> None:
    usage = usage_from_data(
        {"api_calls": D("1234.5"), "seats": 3, "payments": {"events": [D("10.00"), 5]}}
    )
    assert usage == {
        "api_calls": Usage(quantity=D("1234.5")),
        "seats": Usage(quantity=D(3)),
        "payments": Usage(quantity=D(2), event_amounts=(D("10.00"), D(5))),
    }


def test_quantity_and_events_together_are_kept_as_given() -> None:
    usage = usage_from_data({"payments": {"quantity": 3, "events": [1]}})
    assert usage["payments"] == Usage(quantity=D(3), event_amounts=(D(1),))


@pytest.mark.parametrize(
    ("data", "paths"),
    [
        ({"a": -1}, ["usage.a"]),
        ({"a": 0.5}, ["usage.a"]),
        ({"a": "x"}, ["usage.a"]),
        ({"a": {"quantity": -1, "events": [1, -2]}}, ["usage.a.quantity", "usage.a.events[1]"]),
        ({"a": {"amounts": [1]}}, ["usage.a.amounts"]),
        ({"a": {}}, ["usage.a"]),
        ({"a": -1, "b": {"events": ["x"]}}, ["usage.a", "usage.b.events[0]"]),
        ([1, 2], ["usage"]),
    ],
)
def test_problems_are_collected_with_paths(data: Any, paths: list[str]) -> None:
    with pytest.raises(InvalidInput) as caught:
        usage_from_data(data)
    assert [p.path for p in caught.value.problems] == paths


def test_usage_files_keep_numbers_exact(tmp_path: Path) -> None:
    yaml_file = tmp_path / "usage.yaml"
    yaml_file.write_text("api_calls: 0.1\npayments:\n  events: [0.1, 0.2]\n")
    usage = load_usage_file(yaml_file)
    assert usage["api_calls"].quantity == D("0.1")
    assert usage["payments"].event_amounts == (D("0.1"), D("0.2"))
    json_file = tmp_path / "usage.json"
    json_file.write_text('{"api_calls": 0.1}')
    assert load_usage_file(json_file)["api_calls"].quantity == D("0.1")


def test_cli_pairs() -> None:
    assert parse_usage_pairs(["a=1.5", " b = 2 "]) == {
        "a": Usage(quantity=D("1.5")),
        "b": Usage(quantity=D(2)),
    }
    with pytest.raises(InvalidInput) as caught:
        parse_usage_pairs(["a=x", "b", "c=-1", "d=1", "d=2", "e=NaN"])
    assert [p.path for p in caught.value.problems] == [
        "--usage a=x",
        "--usage b",
        "--usage c=-1",
        "--usage d=2",
        "--usage e=NaN",
    ]


_DECIMALS = st.one_of(
    st.decimals(allow_nan=True, allow_infinity=True),
    st.builds(
        lambda digits, exponent, sign: Decimal((sign, digits, exponent)),
        st.lists(st.integers(0, 9), min_size=1, max_size=40).map(tuple),
        st.integers(-45, 45),
        st.integers(0, 1),
    ),
)


@settings(max_examples=500, deadline=None)
@given(_DECIMALS)
def test_a_quantity_is_accepted_exactly_when_the_full_check_finds_none(value: Decimal) -> None:
    """``Usage`` checks a plain quantity with a few C calls first; it must accept and
    refuse exactly what the field-by-field check does (bounds, sign, finiteness)."""
    problems = list(_number_problems("quantity", value))
    if problems:
        with pytest.raises(InvalidInput):
            Usage(quantity=value)
    else:
        assert Usage(quantity=value).quantity == value
