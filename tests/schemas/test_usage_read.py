"""The one usage reader with a subjects filter, on both engines: a few subjects are named
in the query, many are filtered as the rows are collected (ClickHouse refuses a query
over 256 KiB), with the same answer."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from schemas.storage.engine import Engine
from schemas.storage.usage import LISTED_AT_MOST, UsageRead, read_usage
from tests.conftest import fresh_database
from tests.invoicing.backtest_kit import METERS, NAMESPACE, store_usage

START = int(datetime(2026, 11, 1, tzinfo=UTC).timestamp())
END = int(datetime(2026, 12, 1, tzinfo=UTC).timestamp())


@pytest.fixture(params=["server", "chdb"])
def storage(request: pytest.FixtureRequest) -> Iterator[tuple[Engine, str]]:
    yield from fresh_database(request, "mlur_")


def test_many_subjects_are_filtered_as_collected_with_the_same_answer(
    storage: tuple[Engine, str],
) -> None:
    engine, database = storage
    usage = {
        "s-0000001": {"api_calls": 3},
        "s-0000002": {"api_calls": 5},
        "other": {"api_calls": 7},
    }
    store_usage(engine, database, usage, START + 3600, START + 3600)
    few = UsageRead(NAMESPACE, database, METERS, ("api_calls",), START, END,
                    subjects=("s-0000001", "s-0000002"))  # fmt: skip
    many_names = tuple(f"s-{n:07d}" for n in range(30_000))  # ~390 kB as an IN list
    many = UsageRead(NAMESPACE, database, METERS, ("api_calls",), START, END,
                     subjects=many_names)  # fmt: skip
    assert few.listed == few.subjects
    assert many.listed is None
    assert len(many_names) > LISTED_AT_MOST
    assert all(len(sql) < 10_000 for sql in many.statements())
    want = {"s-0000001": {"api_calls": Decimal(3)}, "s-0000002": {"api_calls": Decimal(5)}}
    assert read_usage(engine, few) == want
    assert read_usage(engine, many) == want
