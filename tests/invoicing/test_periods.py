from datetime import UTC, date, datetime, timedelta
from itertools import islice, pairwise
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from invoicing.periods import Cadence, Month, Schedule, clamp_day, month_period, parse_month
from schemas.errors import InvalidInput


@pytest.mark.parametrize(
    ("text", "start", "end"),
    [
        ("2026-11", datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)),
        ("2026-12", datetime(2026, 12, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)),
        ("2028-02", datetime(2028, 2, 1, tzinfo=UTC), datetime(2028, 3, 1, tzinfo=UTC)),
    ],
)
def test_month_bounds(text: str, start: datetime, end: datetime) -> None:
    period = month_period(text)
    assert (period.start, period.end, period.label) == (start, end, text)


@pytest.mark.parametrize("text", ["2026-13", "2026-1", "Nov 2026", ""])
def test_bad_month_names_the_format(text: str) -> None:
    with pytest.raises(InvalidInput, match="YYYY-MM"):
        month_period(text)


def test_closed_only_after_end_plus_grace() -> None:
    period = month_period("2026-10")
    end = datetime(2026, 11, 1, tzinfo=UTC)
    assert not period.is_closed(end - timedelta(milliseconds=1))
    assert period.is_closed(end)
    assert not period.is_closed(end, grace=timedelta(hours=1))
    assert period.is_closed(end + timedelta(hours=1), grace=timedelta(hours=1))


def monthly(anchor: int, tz: str = "UTC", start: date = date(2020, 1, 1)) -> Schedule:
    return Schedule(Cadence.MONTHLY, tz, start, anchor_day=anchor, anchor_month=start.month)


@pytest.mark.parametrize(
    ("anchor", "month", "labels"),
    [
        (31, "2026-02", ["2026-01-31..2026-02-28"]),
        (31, "2026-03", ["2026-02-28..2026-03-31"]),
        (31, "2026-05", ["2026-04-30..2026-05-31"]),
        (30, "2026-03", ["2026-02-28..2026-03-30"]),
        (29, "2028-03", ["2028-02-29..2028-03-29"]),  # leap year: Feb 29 exists
        (29, "2027-03", ["2027-02-28..2027-03-29"]),
        (15, "2026-11", ["2026-10-15..2026-11-15"]),
        (1, "2026-11", ["2026-11"]),
    ],
)
def test_anchor_days_clamp_to_month_end(anchor: int, month: str, labels: list[str]) -> None:
    periods = monthly(anchor).ending_in(parse_month(month))
    assert [p.label for p in periods] == labels


def test_anchor_31_grid_never_drifts() -> None:
    periods = list(islice(monthly(31, start=date(2026, 1, 31)).periods(date(2026, 1, 31)), 5))
    assert [p.first_day for p in periods] == [
        date(2026, 1, 31),
        date(2026, 2, 28),
        date(2026, 3, 31),
        date(2026, 4, 30),
        date(2026, 5, 31),
    ]


@pytest.mark.parametrize(
    ("tz", "start_utc"),
    [
        ("Europe/Berlin", datetime(2026, 10, 31, 23, 0, tzinfo=UTC)),  # CET, +01:00
        ("America/New_York", datetime(2026, 11, 1, 4, 0, tzinfo=UTC)),  # EDT, -04:00
        ("Asia/Kolkata", datetime(2026, 10, 31, 18, 30, tzinfo=UTC)),  # +05:30
        ("Pacific/Kiritimati", datetime(2026, 10, 31, 10, 0, tzinfo=UTC)),  # +14:00
    ],
)
def test_month_starts_at_local_midnight(tz: str, start_utc: datetime) -> None:
    (period,) = monthly(1, tz).ending_in(parse_month("2026-11"))
    assert period.start == start_utc
    assert period.label == "2026-11"
    assert period.end.astimezone(ZoneInfo(tz)).replace(tzinfo=None) == datetime(2026, 12, 1)


def test_daily_periods_across_dst_change_are_23_and_25_hours() -> None:
    days = Schedule(Cadence.DAILY, "Europe/Berlin", date(2026, 1, 1))
    march = {p.label: p for p in days.ending_in(parse_month("2026-03"))}
    october = {p.label: p for p in days.ending_in(parse_month("2026-10"))}
    assert len(march) == 31
    assert len(october) == 31
    assert march["2026-03-29"].end - march["2026-03-29"].start == timedelta(hours=23)
    assert october["2026-10-25"].end - october["2026-10-25"].start == timedelta(hours=25)
    assert "2026-10-01" in october
    assert "2026-09-30" not in october


def test_yearly_renews_on_start_month_and_clamps_feb_29() -> None:
    yearly = Schedule(Cadence.YEARLY, "UTC", date(2028, 2, 29), anchor_day=29, anchor_month=2)
    assert [p.label for p in yearly.ending_in(parse_month("2029-02"))] == ["2028-02-29..2029-02-28"]
    assert [p.label for p in yearly.ending_in(parse_month("2032-02"))] == ["2031-02-28..2032-02-29"]
    calendar_year = Schedule(Cadence.YEARLY, "UTC", date(2020, 1, 1))
    assert [p.label for p in calendar_year.ending_in(parse_month("2026-12"))] == ["2026"]
    assert calendar_year.ending_in(parse_month("2026-11")) == []


def test_start_and_end_dates_cut_the_first_and_last_period() -> None:
    schedule = Schedule(
        Cadence.MONTHLY, "UTC", date(2026, 3, 10), end=date(2026, 6, 20), anchor_day=1
    )
    labels = [p.label for p in islice(schedule.periods(date(2026, 1, 1)), 10)]
    assert labels == ["2026-03-10..2026-04-01", "2026-04", "2026-05", "2026-06-01..2026-06-20"]
    assert schedule.ending_in(parse_month("2026-02")) == []
    assert [p.label for p in schedule.ending_in(parse_month("2026-06"))] == [
        "2026-06-01..2026-06-20"
    ]
    assert schedule.ending_in(parse_month("2026-07")) == []


@given(
    anchor=st.integers(1, 31),
    tz=st.sampled_from(["UTC", "Europe/Berlin", "America/Los_Angeles", "Australia/Sydney"]),
    cadence=st.sampled_from(list(Cadence)),
    year=st.integers(2024, 2030),
)
def test_periods_tile_time_without_gaps_or_overlaps(
    anchor: int, tz: str, cadence: Cadence, year: int
) -> None:
    start = clamp_day(year, 1, anchor)
    schedule = Schedule(
        cadence,
        tz,
        start,
        anchor_day=anchor if cadence is not Cadence.DAILY else 1,
        anchor_month=1,
    )
    months = [Month(year + (m > 12), (m - 1) % 12 + 1) for m in range(1, 16)]
    periods = [p for month in months for p in schedule.ending_in(month)]
    assert periods, "some period must end within 15 months"
    for earlier, later in pairwise(periods):
        assert earlier.end == later.start
    for period in periods:
        assert period.start < period.end
        assert period.start.astimezone(ZoneInfo(tz)).time().hour == 0
        end_day = period.end_day
        assert Month(end_day.year, end_day.month) in months or end_day.day == 1


def test_weekly_periods_start_on_the_anchor_weekday() -> None:
    # 2026-11-04 is a Wednesday; anchored on Mondays, the first week is cut short
    weekly = Schedule(Cadence.WEEKLY, "UTC", date(2026, 11, 4), anchor_weekday=0)
    labels = [p.label for p in islice(weekly.periods(date(2026, 11, 1)), 3)]
    assert labels == ["2026-11-04..2026-11-09", "2026-11-09..2026-11-16", "2026-11-16..2026-11-23"]
    assert weekly.natural(next(weekly.periods(date(2026, 11, 1)))).label == (
        "2026-11-02..2026-11-09"
    )
    assert [p.end_day.day for p in weekly.ending_in(parse_month("2026-11"))] == [9, 16, 23, 30]


def test_quarterly_periods_step_three_months_from_the_start_month() -> None:
    calendar_quarters = Schedule(Cadence.QUARTERLY, "UTC", date(2026, 1, 1), anchor_month=1)
    labels = [p.label for p in islice(calendar_quarters.periods(date(2026, 1, 1)), 5)]
    assert labels == ["2026-Q1", "2026-Q2", "2026-Q3", "2026-Q4", "2027-Q1"]
    assert [p.label for p in calendar_quarters.ending_in(parse_month("2026-12"))] == ["2026-Q4"]
    assert calendar_quarters.ending_in(parse_month("2026-11")) == []
    # anchored on the 31st from November: Nov 30 (clamped) → Feb 28 → May 31 → Aug 31
    late = Schedule(Cadence.QUARTERLY, "UTC", date(2026, 11, 30), anchor_day=31, anchor_month=11)
    assert [p.label for p in islice(late.periods(date(2026, 11, 30)), 3)] == [
        "2026-11-30..2027-02-28",
        "2027-02-28..2027-05-31",
        "2027-05-31..2027-08-31",
    ]


def test_annual_is_yearly_and_natural_periods_ignore_the_cut() -> None:
    assert Cadence("annual") is Cadence.YEARLY
    monthly = Schedule(Cadence.MONTHLY, "UTC", date(2026, 10, 15), anchor_day=1)
    first = next(monthly.periods(date(2026, 10, 1)))
    assert (first.label, monthly.natural(first).label) == ("2026-10-15..2026-11-01", "2026-10")


def test_a_period_ending_during_the_first_belongs_to_the_new_month() -> None:
    # a plan change at 13:45 on 1 December: the short period before it ends in December
    old = Schedule(
        Cadence.MONTHLY, "UTC", date(2026, 10, 1), end=datetime(2026, 12, 1, 13, 45, tzinfo=UTC)
    )
    assert [p.label for p in old.ending_in(parse_month("2026-11"))] == ["2026-11"]
    assert [p.label for p in old.ending_in(parse_month("2026-12"))] == [
        "2026-12-01..2026-12-01T13:45"
    ]
    new = Schedule(Cadence.MONTHLY, "UTC", datetime(2026, 12, 1, 13, 45, tzinfo=UTC))
    assert new.ending_in(parse_month("2026-11")) == []
    (rest,) = new.ending_in(parse_month("2026-12"))
    # not a calendar month: it starts at 13:45, so its label names the instant
    assert rest.label == "2026-12-01T13:45..2027-01-01"


@given(
    tz=st.sampled_from(["UTC", "Europe/Berlin", "America/Los_Angeles", "Asia/Kolkata"]),
    day=st.integers(0, 90),
    minute=st.integers(0, 24 * 60 - 1),
)
def test_every_period_of_a_cut_subscription_ends_in_exactly_one_month(
    tz: str, day: int, minute: int
) -> None:
    local = datetime.combine(date(2026, 10, 1) + timedelta(days=day), datetime.min.time())
    cut = (local + timedelta(minutes=minute)).replace(tzinfo=ZoneInfo(tz)).astimezone(UTC)
    before = Schedule(Cadence.MONTHLY, tz, date(2026, 9, 1), end=cut)
    after = Schedule(Cadence.MONTHLY, tz, cut)
    months = [Month(2026, m) for m in range(9, 13)] + [Month(2027, m) for m in range(1, 4)]
    for schedule in (before, after):
        chosen = [(month, p) for month in months for p in schedule.ending_in(month)]
        periods = [p for _, p in chosen]
        assert len(periods) == len(set(periods)), "a period chosen by two months"
        for month, period in chosen:
            first = datetime.combine(month.first, datetime.min.time(), ZoneInfo(tz))
            last = datetime.combine(month.next_first, datetime.min.time(), ZoneInfo(tz))
            assert first < period.end <= last
    assert before.ending_in(Month(2027, 3)) == []
    assert any(p.end == cut for m in months for p in before.ending_in(m))
    assert any(p.start == cut for m in months for p in after.ending_in(m))
