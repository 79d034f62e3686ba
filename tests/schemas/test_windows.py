from decimal import Decimal
from itertools import pairwise

from hypothesis import given
from hypothesis import strategies as st

from schemas.metering.definitions import Aggregation
from schemas.metering.windows import WindowState, fold

values = st.decimals(min_value=-(10**6), max_value=10**6, places=9, allow_nan=False)
contribution = st.tuples(
    values, st.sampled_from(["a", "b", "c", "d"]), st.integers(0, 10**6), st.integers(0, 10**6)
)


@given(st.lists(contribution, max_size=60), st.data())
def test_merging_partials_in_any_order_equals_folding_everything(items, data) -> None:  # type: ignore[no-untyped-def]
    # split the events into windows (partials), then merge them in a random order
    cuts = sorted(data.draw(st.lists(st.integers(0, len(items)), max_size=6)))
    bounds = [0, *cuts, len(items)]
    partials = [fold(items[a:b]) for a, b in pairwise(bounds)]
    order = data.draw(st.permutations(partials))
    merged = WindowState()
    for part in order:
        merged = merged.merge(part)
    whole = fold(items)
    for kind in Aggregation:
        assert merged.value(kind) == whole.value(kind), kind


def test_values_by_kind() -> None:
    state = fold(
        [(Decimal("2"), "x", 10, 1), (Decimal("5"), "y", 30, 2), (Decimal("1"), "x", 20, 3)]
    )
    assert state.value(Aggregation.SUM) == 8
    assert state.value(Aggregation.COUNT) == 3
    assert state.value(Aggregation.UNIQUE_COUNT) == 2
    assert state.value(Aggregation.MAX) == 5
    assert state.value(Aggregation.MIN) == 1
    assert state.value(Aggregation.AVG) == Decimal(8) / 3
    assert state.value(Aggregation.LATEST) == 5  # event time 30 is the latest


def test_latest_ties_on_time_break_by_offset() -> None:
    state = fold([(Decimal("7"), "", 10, 9), (Decimal("3"), "", 10, 4)])
    assert state.value(Aggregation.LATEST) == 7


def test_empty_state_is_zero() -> None:
    assert all(WindowState().value(kind) == 0 for kind in Aggregation)
