"""The query planner picks the coarsest windows table that answers a query exactly (pure:
no engine).  ``test_rollups.py`` checks on both engines that the answers are equal."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from schemas.metering.definitions import Aggregation
from schemas.storage.planner import FEW_SUBJECTS, plan_meter_query, plan_usage_query
from schemas.storage.windows_table import MeterQuery, UsageQuery, WindowSize


def at(text: str) -> int:
    return int(datetime.fromisoformat(text).astimezone(UTC).timestamp())


OCT = (at("2026-10-01T00:00:00+00:00"), at("2026-10-31T00:00:00+00:00"))


def query(
    window: WindowSize | None,
    tz: str = "UTC",
    span: tuple[int, int] = OCT,
    subjects: tuple[str, ...] = (),
) -> MeterQuery:
    return MeterQuery(
        "ns", "m", Aggregation.SUM, span[0], span[1], window or WindowSize.MINUTE, tz, subjects
    )


@pytest.mark.parametrize(
    ("window", "tz", "span", "grain"),
    [
        (WindowSize.DAY, "UTC", OCT, "daily"),
        (WindowSize.MONTH, "UTC", OCT, "daily"),
        (WindowSize.HOUR, "UTC", OCT, "hourly"),
        (WindowSize.MINUTE, "UTC", OCT, "minute"),
        # whole-hour offsets, across the end of DST (2026-10-25): hour boundaries
        (WindowSize.DAY, "Europe/Berlin", OCT, "hourly"),
        (WindowSize.MONTH, "America/New_York", OCT, "hourly"),
        (WindowSize.HOUR, "Asia/Tokyo", OCT, "hourly"),
        # offsets with minutes: buckets start mid-hour
        (WindowSize.DAY, "Asia/Kolkata", OCT, "minute"),
        (WindowSize.HOUR, "Asia/Kathmandu", OCT, "minute"),
        (WindowSize.DAY, "America/St_Johns", OCT, "minute"),
        (WindowSize.DAY, "Australia/Lord_Howe", OCT, "minute"),  # +10:30 and +11:00
        # a range that does not end on a whole hour
        (WindowSize.DAY, "UTC", (OCT[0], OCT[1] - 60), "minute"),
        # one total per subject: only the range matters, whatever the zone
        (None, "Asia/Kolkata", OCT, "daily"),
        (None, "UTC", (OCT[0] + 3600, OCT[1]), "hourly"),
        (None, "UTC", (OCT[0] + 1800, OCT[1]), "minute"),
    ],
)
def test_the_coarsest_exact_table(
    window: WindowSize | None, tz: str, span: tuple[int, int], grain: str
) -> None:
    plan = plan_meter_query(query(window, tz, span), windowed=window is not None)
    assert plan.grain == grain, plan.reason


def test_given_subjects_read_the_subject_ordered_minute_table() -> None:
    plan = plan_meter_query(query(WindowSize.DAY, subjects=("acme",)))
    assert plan.grain == "minute"
    assert plan.table("db") == "db.meter_windows"


def test_the_reason_names_the_offset_that_forces_minutes() -> None:
    plan = plan_meter_query(query(WindowSize.DAY, "Asia/Kathmandu"))
    assert "Asia/Kathmandu" in plan.reason
    assert "+05:45" in plan.reason


def test_a_usage_query_with_an_ingestion_cutoff_reads_minutes() -> None:
    billing = UsageQuery("ns", "m", Aggregation.SUM, *OCT, ingested_before_s=OCT[1] + 60)
    assert plan_usage_query(billing).grain == "minute"
    estimate = UsageQuery("ns", "m", Aggregation.SUM, *OCT)
    assert plan_usage_query(estimate).table("db") == "db.meter_windows_daily"


def test_a_usage_query_for_a_few_subjects_reads_the_subject_ordered_minutes() -> None:
    one = UsageQuery("ns", "m", Aggregation.SUM, *OCT, subjects=("acme-eu", "acme-us"))
    assert plan_usage_query(one).grain == "minute"
    assert "a few given subjects" in plan_usage_query(one).reason
    many = tuple(f"s{n}" for n in range(FEW_SUBJECTS + 1))
    watched = UsageQuery("ns", "m", Aggregation.SUM, *OCT, subjects=many)
    assert plan_usage_query(watched).grain == "daily"  # every watched customer at once


def test_the_same_sql_runs_on_every_table() -> None:
    """The query text differs only in the table it reads."""
    q = query(WindowSize.DAY, "Europe/Berlin")
    sql = {
        grain: q.on(f"db.{name}").to_sql()
        for grain, name in [("minute", "meter_windows"), ("hourly", "meter_windows_hourly")]
    }
    assert sql["minute"].replace("meter_windows", "T") == sql["hourly"].replace(
        "meter_windows_hourly", "T"
    )
    assert "toStartOfDay(window_start, 'Europe/Berlin')" in sql["hourly"]
