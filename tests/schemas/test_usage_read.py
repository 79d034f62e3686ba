"""The one usage reader with a subjects filter, on both engines: a few subjects are named
in the query, many are filtered as the rows are collected (ClickHouse refuses a query
over 256 KiB), with the same answer."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from schemas.metering.definitions import parse_meters
from schemas.storage.engine import Engine
from schemas.storage.sql import LISTED_AT_MOST
from schemas.storage.usage import COMBINED_AT_MOST, UsageRead, read_usage
from schemas.storage.windows_table import FeedRow, WindowsTable
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


KINDS = parse_meters(
    {
        "meters": [
            {"slug": slug, "event_type": "t", "aggregation": kind,
             **({} if kind == "COUNT" else {"value_property": "$.v"})}
            for slug, kind in (("calls", "COUNT"), ("tokens", "SUM"), ("mean", "AVG"),
                               ("peak", "MAX"), ("low", "MIN"), ("users", "UNIQUE_COUNT"),
                               ("last", "LATEST"))
        ]
    }
)  # fmt: skip


def test_a_few_subjects_every_meter_in_one_statement_with_the_same_answer(
    storage: tuple[Engine, str],
) -> None:
    """One customer's usage of several meters is one statement (``MetersUsageQuery``),
    every aggregation finished exactly as the per-meter statements finish it; a window
    outside the range and another subject do not count."""
    engine, database = storage
    at = START + 7200
    values = {
        "calls": ["1", "1", "1"],
        "tokens": ["10.5", "0.25"],
        "mean": ["1", "2", "4"],
        "peak": ["3", "9.75", "2"],
        "low": ["3", "0.125", "2"],
        "users": ["7", "7", "8"],
        "last": ["5", "6"],
    }
    rows = []
    offset = 0
    for subject in ("acme-eu", "acme-us", "other"):
        for slug, seen in values.items():
            for value in seen:
                offset += 1
                rows.append(FeedRow(NAMESPACE, slug, subject, "{}", at, at, Decimal(value),
                                    value if slug == "users" else "", at * 1000 + offset,
                                    0, offset))  # fmt: skip
    offset += 1
    rows.append(FeedRow(NAMESPACE, "tokens", "acme-eu", "{}", END, END, Decimal(100), "",
                        END * 1000, 0, offset))  # fmt: skip
    engine.insert(*WindowsTable(database).insert_args(rows))
    slugs = tuple(values)
    subjects = ("acme-eu", "acme-us")
    one = UsageRead(NAMESPACE, database, KINDS, slugs, START, END, subjects=subjects)
    each = UsageRead(NAMESPACE, database, KINDS, slugs, START, END, subjects=subjects,
                     grain="minute")  # fmt: skip
    assert one.combined() is not None
    assert each.combined() is None
    assert len(one.statements()) == 1
    assert len(each.statements()) == len(slugs)
    want = {
        "calls": Decimal(3), "tokens": Decimal("10.75"), "mean": Decimal(7) / Decimal(3),
        "peak": Decimal("9.75"), "low": Decimal("0.125"), "users": Decimal(2),
        "last": Decimal(6),
    }  # fmt: skip
    assert read_usage(engine, one) == dict.fromkeys(subjects, want)
    assert read_usage(engine, each) == read_usage(engine, one)


def test_one_statement_only_for_few_pairs_and_no_ingestion_bounds() -> None:
    few = ("a", "b")
    assert UsageRead(NAMESPACE, "db", METERS, ("api_calls",), START, END,
                     subjects=few).combined() is None  # fmt: skip
    both = ("api_calls", "llm_tokens")
    assert UsageRead(NAMESPACE, "db", METERS, both, START, END, subjects=few).combined()
    assert UsageRead(NAMESPACE, "db", METERS, both, START, END).combined() is None
    cutoff = UsageRead(NAMESPACE, "db", METERS, both, START, END, ingested_before_s=END,
                       subjects=few)  # fmt: skip
    assert cutoff.combined() is None
    many = tuple(f"s{n}" for n in range(COMBINED_AT_MOST // 2 + 1))
    assert UsageRead(NAMESPACE, "db", METERS, both, START, END, subjects=many).combined() is None
    sql = UsageRead(NAMESPACE, "db", METERS, both, START, END, subjects=few).statements()[0]
    assert sql.startswith(
        "SELECT meter, subject, countMerge(event_count), sumMerge(value_sum)"
        " FROM db.meter_windows WHERE namespace = 'ns' AND ((meter = 'api_calls' AND"
        " subject = 'a') OR (meter = 'api_calls' AND subject = 'b') OR"
    )
    assert sql.endswith("GROUP BY meter, subject ORDER BY meter, subject")
