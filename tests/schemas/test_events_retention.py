"""The raw events' months on both engines: listed from the part list with their rows,
their newest ingestion read from one month, and one month deleted at once while the
others stay whole."""

from __future__ import annotations

import pytest

from schemas.storage.engine import Engine
from schemas.storage.events_table import EventsTable, RawEventRow

pytestmark = [pytest.mark.integration, pytest.mark.chdb]

AUG = 1_785_542_400_000  # 2026-08-01T00:00:00Z, ms
SEP = 1_788_220_800_000  # 2026-09-01
OCT = 1_790_812_800_000  # 2026-10-01
DAY = 86_400_000


def row(event_id: str, time_ms: int, ingested_ms: int, namespace: str = "ns") -> RawEventRow:
    return RawEventRow(
        namespace, "src", event_id, "api", "acme", time_ms, '{"n": 1}', ingested_ms, 0, 0, 0, "h"
    )


def test_months_are_listed_read_and_deleted_one_at_a_time(engine: tuple[Engine, str]) -> None:
    eng, database = engine
    table = EventsTable(database)
    rows = [
        row("a1", AUG + DAY, AUG + DAY + 5),
        row("a2", SEP - 1, SEP + 3 * DAY),  # the last ms of August, ingested in September
        row("a3", AUG + 2 * DAY, AUG + 2 * DAY, namespace="other"),
        row("s1", SEP, SEP + 1),
        row("o1", OCT + DAY, OCT + DAY),
        row("o2", OCT + 2 * DAY, OCT + 9 * DAY),
    ]
    eng.insert(*table.insert_args(rows))
    months = [tuple(int(v) for v in m) for m in eng.execute(table.months().to_sql())]
    assert [(m, r) for m, r, _ in months] == [(202608, 3), (202609, 1), (202610, 2)]
    assert all(size > 0 for _, _, size in months)

    assert eng.execute(table.newest_ingested(202608).to_sql()) == [(SEP + 3 * DAY,)]
    assert eng.execute(table.newest_ingested(202610).to_sql()) == [(OCT + 9 * DAY,)]
    assert eng.execute(table.newest_ingested(202607).to_sql()) == [(0,)]  # no such month

    eng.execute(table.drop_month(202608).to_sql())
    left = [int(m) for m, _, _ in eng.execute(table.months().to_sql())]
    assert left == [202609, 202610]
    assert eng.execute(table.count("ns").to_sql()) == [(3,)]
    assert eng.execute(table.count("other").to_sql()) == [(0,)]  # every namespace goes


@pytest.mark.parametrize("month", [202613, 202600, 1, "202608; DROP TABLE x"])
def test_a_month_that_is_not_yyyymm_is_refused_before_any_sql(month: object) -> None:
    with pytest.raises(ValueError, match="is not a month as YYYYMM"):
        EventsTable("db").drop_month(month)  # type: ignore[arg-type]
