from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from api.query import (
    MeterQueryRequest,
    decimal_text,
    parse_meter_query,
    query_document,
    rows_to_csv,
    shape_rows,
    window_end,
)
from schemas.errors import InvalidInput
from schemas.metering.definitions import Aggregation, MeterDefinition
from schemas.storage.windows_table import WindowSize

TOKENS = MeterDefinition(
    slug="llm_tokens",
    event_type="llm.completion",
    aggregation=Aggregation.SUM,
    value_property="$.tokens",
    group_by={"model": "$.model", "region": "$.region"},
)
AVG = TOKENS.model_copy(update={"aggregation": Aggregation.AVG})
NOW = int(datetime(2026, 11, 5, 10, 30, 15, tzinfo=UTC).timestamp())


def ts(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp())


def test_defaults() -> None:
    q = parse_meter_query([], TOKENS, NOW)
    assert q.start_s == 0
    assert q.end_s == ts("2026-11-05T10:31:00Z")
    assert q.window_size is None
    assert q.timezone == "UTC"


def test_every_parameter() -> None:
    q = parse_meter_query(
        [
            ("from", "2026-11-01T00:00:00+01:00"),
            ("to", "2026-11-02T00:00:00Z"),
            ("windowSize", "HOUR"),
            ("windowTimeZone", "Europe/Berlin"),
            ("subject", "acme"),
            ("subject", "globex"),
            ("subject", "acme"),
            ("groupBy", "model"),
            ("filterGroupBy[region]", "eu"),
            ("unrelated", "ignored"),
        ],
        TOKENS,
        NOW,
    )
    assert q == MeterQueryRequest(
        ts("2026-10-31T23:00:00Z"),
        ts("2026-11-02T00:00:00Z"),
        WindowSize.HOUR,
        "Europe/Berlin",
        ("acme", "globex"),
        ("model",),
        (("region", "eu"),),
    )


def test_unescaped_plus_in_offset_is_understood() -> None:
    q = parse_meter_query([("from", "2026-11-01T00:00:00 01:00")], TOKENS, NOW)
    assert q.start_s == ts("2026-10-31T23:00:00Z")


def test_every_problem_is_reported() -> None:
    with pytest.raises(InvalidInput) as err:
        parse_meter_query(
            [
                ("from", "yesterday"),
                ("to", "2026-11-01T00:00:00"),
                ("windowSize", "WEEK"),
                ("windowTimeZone", "Mars/Olympus"),
                ("groupBy", "colour"),
                ("filterGroupBy[size]", "xl"),
            ],
            TOKENS,
            NOW,
        )
    paths = [p.path for p in err.value.problems]
    assert paths == [
        "from",
        "to",
        "windowSize",
        "windowTimeZone",
        "groupBy[0]",
        "filterGroupBy[size]",
    ]


@pytest.mark.parametrize(
    "params",
    [
        [("from", "2026-11-02T00:00:00Z"), ("to", "2026-11-01T00:00:00Z")],
        [("from", "1960-01-01T00:00:00Z")],
        [("to", "2200-01-01T00:00:00Z")],
        [("windowTimeZone", "../../etc/passwd")],
        [("windowTimeZone", "")],
        [("from", "2026-11-01T00:00:00Z"), ("from", "2026-11-01T00:00:00Z")],
    ],
)
def test_refused(params: list[tuple[str, str]]) -> None:
    with pytest.raises(InvalidInput):
        parse_meter_query(params, TOKENS, NOW)


@pytest.mark.parametrize(
    ("start", "size", "zone", "end"),
    [
        ("2026-11-01T10:07:00Z", WindowSize.MINUTE, "UTC", "2026-11-01T10:08:00Z"),
        ("2026-11-01T10:00:00Z", WindowSize.HOUR, "UTC", "2026-11-01T11:00:00Z"),
        # Kolkata is UTC+5:30: its hours start at :30 UTC
        ("2026-11-01T10:30:00Z", WindowSize.HOUR, "Asia/Kolkata", "2026-11-01T11:30:00Z"),
        # Berlin springs forward on 2026-03-29: a 23-hour day
        ("2026-03-28T23:00:00Z", WindowSize.DAY, "Europe/Berlin", "2026-03-29T22:00:00Z"),
        # ... and falls back on 2026-10-25: a 25-hour day
        ("2026-10-24T22:00:00Z", WindowSize.DAY, "Europe/Berlin", "2026-10-25T23:00:00Z"),
        ("2026-10-31T23:00:00Z", WindowSize.MONTH, "Europe/Berlin", "2026-11-30T23:00:00Z"),
        ("2026-12-01T00:00:00Z", WindowSize.MONTH, "UTC", "2027-01-01T00:00:00Z"),
        ("2026-03-01T08:00:00Z", WindowSize.MONTH, "America/Los_Angeles", "2026-04-01T07:00:00Z"),
    ],
)
def test_window_end(start: str, size: WindowSize, zone: str, end: str) -> None:
    assert window_end(ts(start), size, zone) == ts(end)


def test_shape_rows_windowed_and_csv() -> None:
    q = parse_meter_query(
        [("from", "2026-11-01T00:00:00Z"), ("windowSize", "DAY"), ("groupBy", "model")],
        TOKENS,
        NOW,
    )
    rows = [
        (ts("2026-11-01T00:00:00Z"), "acme", "gpt", Decimal("12.500000000")),
        (ts("2026-11-02T00:00:00Z"), "acme", "", Decimal("100000000000000000000.000000001")),
    ]
    shaped = shape_rows(q, TOKENS, rows)
    doc = query_document(q, shaped)
    assert doc["from"] == "2026-11-01T00:00:00.000Z"
    assert doc["windowSize"] == "DAY"
    assert doc["data"][0] == {
        "value": Decimal("12.5"),
        "windowStart": "2026-11-01T00:00:00.000Z",
        "windowEnd": "2026-11-02T00:00:00.000Z",
        "subject": "acme",
        "groupBy": {"model": "gpt"},
    }
    assert rows_to_csv(q, shaped).splitlines() == [
        "windowStart,windowEnd,subject,model,value",
        "2026-11-01T00:00:00.000Z,2026-11-02T00:00:00.000Z,acme,gpt,12.5",
        "2026-11-02T00:00:00.000Z,2026-11-03T00:00:00.000Z,acme,,100000000000000000000.000000001",
    ]


def test_shape_rows_without_window_spans_the_range() -> None:
    q = parse_meter_query(
        [("from", "2026-11-01T00:00:00Z"), ("to", "2026-11-03T00:00:00Z")], AVG, NOW
    )
    (row,) = shape_rows(q, AVG, [(q.start_s, "acme", Decimal(10), 4)])
    assert (row.window_start_s, row.window_end_s) == (q.start_s, q.end_s)
    assert row.value == Decimal("2.5")


def test_range_query_sql_has_one_bucket() -> None:
    q = parse_meter_query([("from", "2026-11-01T00:00:00Z"), ("subject", "a'b")], TOKENS, NOW)
    sql = q.to_query("default", TOKENS).on("db.meter_windows").to_sql()
    assert sql.startswith(f"SELECT toUInt32({q.start_s}) AS bucket, subject,")
    assert "subject IN ('a\\'b')" in sql


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (Decimal("0E-9"), "0"),
        (Decimal("12.500000000"), "12.5"),
        (Decimal("1E+3"), "1000"),
        (Decimal("100"), "100"),
        (Decimal("-0.000000001"), "-0.000000001"),
    ],
)
def test_decimal_text(value: Decimal, text: str) -> None:
    assert decimal_text(value) == text


def test_totals_across_subjects_have_no_subject() -> None:
    q = parse_meter_query([("windowSize", "DAY"), ("aggregate", "total")], TOKENS, NOW)
    sql = q.to_query("ns", TOKENS).on("db.t").to_sql()
    assert "'' AS all_subjects" in sql
    assert "GROUP BY bucket ORDER BY bucket" in sql
    rows = shape_rows(q, TOKENS, [(ts("2026-11-01T00:00:00Z"), "", "5")])
    assert query_document(q, rows)["data"][0]["subject"] is None


def test_top_ranks_subjects_over_the_range() -> None:
    q = parse_meter_query([("top", "20")], TOKENS, NOW)
    assert q.top == 20
    sql = q.to_query("ns", TOKENS).on("db.t").to_sql()
    assert sql.endswith("ORDER BY sumMerge(value_sum) DESC, bucket, subject LIMIT 20")
    avg = parse_meter_query([("top", "3")], AVG, NOW).to_query("ns", AVG).on("db.t").to_sql()
    assert "ORDER BY sumMerge(value_sum) / countMerge(event_count) DESC" in avg


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ([("aggregate", "everything")], "aggregate"),
        ([("top", "0")], "top"),
        ([("top", "5000")], "top"),
        ([("top", "x")], "top"),
        ([("top", "5"), ("windowSize", "HOUR")], "top"),
        ([("top", "5"), ("aggregate", "total")], "top"),
    ],
)
def test_extensions_are_validated(params: list[tuple[str, str]], field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_meter_query(params, TOKENS, NOW)
    assert [p.path for p in caught.value.problems] == [field]
