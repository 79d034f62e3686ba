"""A chunk's folded contributions as structs (``meterline_native.Groups``, the native
plan's ``BatchPlan.groups``): folded as the reference fold (``agg_feed.pre_aggregate``)
folds the same contributions, read as its rows and its dictionary, and encoded as the
driver's bytes of those rows."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from meterline_native import Groups, encode_column, encode_columns

from schemas.storage.agg_feed import pre_aggregate
from streams.plan import BatchPlan, FoldedGroups

AGG_SPECS = [
    "String", "String", "String", "String", "UInt32", "UInt32", "UInt32", "UInt32",
    "Decimal(38, 9)", "Decimal(38, 9)", "Decimal(38, 9)", "String", "Decimal(38, 9)",
    "Int64", "UInt64", "UInt32", "UInt64",
]  # fmt: skip
"""``meter_window_agg_feed``'s column types in ``AGG_COLUMNS`` order."""

MINUTE_MS = 60_000
WINDOW = 1_793_000_000_000 - 1_793_000_000_000 % MINUTE_MS
_value = st.decimals(
    min_value=-(10**6), max_value=10**6, places=3, allow_nan=False, allow_infinity=False
)
_contribution = st.tuples(
    st.sampled_from(["api_calls", "tokens"]),
    st.sampled_from(["acme", "globex"]),
    st.sampled_from(["", "eu", "us"]),
    st.integers(0, 3).map(lambda n: WINDOW + n * MINUTE_MS),
    _value,
    st.sampled_from(["", "u1", "u2"]),
    st.integers(1_793_000_000_000, 1_793_000_000_000 + 4 * MINUTE_MS),
)
# where each contribution came from: (ingest minute, partition, offset, index)
_place = st.tuples(
    st.sampled_from([1_793_000_040, 1_793_000_100]),
    st.integers(0, 1),
    st.integers(0, 5),
    st.integers(0, 3),
)


def folded(items: list[tuple[Any, ...]]) -> Groups:
    groups = Groups()
    for contribution, (minute_s, partition, offset, index) in items:
        groups.fold("ns", contribution, minute_s, partition, offset, index)
    return groups


def feed_rows(items: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    return [
        ("ns", meter, who, group, window // 1000, minute_s, value, uniq, ms, part, off, idx)
        for (meter, who, group, window, value, uniq, ms), (minute_s, part, off, idx) in items
    ]


@given(st.lists(st.tuples(_contribution, _place), max_size=40))
def test_the_native_fold_is_the_reference_fold(items: list[tuple[Any, ...]]) -> None:
    groups = folded(items)
    expected = pre_aggregate(feed_rows(items), frozenset({"api_calls", "tokens"}))
    assert [tuple(row) for row in groups] == expected
    assert [tuple(groups[n]) for n in range(len(groups))] == expected
    assert len(groups) == len(expected)
    plan = BatchPlan(namespace="ns", groups=FoldedGroups(groups))
    assert plan.contributions == len(items)
    assert plan.aggregated() is groups
    keys = [(meter, who, group, window * 1000, minute, part, uniq) for (
        _, meter, who, group, window, minute, part, *_, uniq, _, _, _, _, _
    ) in expected]  # fmt: skip
    assert list(plan.groups) == keys
    assert [plan.groups[key] for key in keys] == [list(row) for row in expected]


@given(st.lists(st.tuples(_contribution, _place), min_size=1, max_size=20))
def test_folded_rows_encode_as_the_driver_s_bytes_of_their_lists(
    items: list[tuple[Any, ...]],
) -> None:
    groups = folded(items)
    lists = [list(row) for row in groups]
    assert encode_columns(groups, AGG_SPECS) == encode_columns(lists, AGG_SPECS)
    for index, spec in enumerate(AGG_SPECS):
        assert encode_column(groups, index, spec) == encode_column(lists, index, spec)


def test_a_cell_out_of_its_column_s_range_goes_to_the_driver() -> None:
    """A value past the column's scale or an offset past its width: that column is left
    to the driver (its own rounding or error), the others are encoded."""
    groups = Groups()
    contribution = ("m", "s", "", WINDOW, Decimal("0.0000000001"), "", WINDOW)
    groups.fold("ns", contribution, 1_793_000_040, 0, 2**40, 0)
    encoded = encode_columns(groups, AGG_SPECS)
    assert encoded[8] is None  # ten fraction digits in a Decimal(38, 9)
    assert encoded[14] is not None  # the latest offset fits UInt64
    assert encode_columns(groups, [*AGG_SPECS[:15], "UInt32", "UInt32"])[16] is None
    assert encoded[0] == encode_columns([list(groups[0])], AGG_SPECS)[0]
