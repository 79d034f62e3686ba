from datetime import UTC, datetime, timedelta

import pytest

from invoicing.periods import month_period
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
