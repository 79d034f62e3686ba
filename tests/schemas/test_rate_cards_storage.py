"""``rate_card_versions`` as text and on both engines: a version recorded twice is one
version, its document reads back byte for byte, the listing is in first-recorded order."""

from __future__ import annotations

import pytest

from schemas.storage.engine import Engine
from schemas.storage.rate_cards_table import RateCardRow, RateCardsTable

pytestmark = [pytest.mark.integration, pytest.mark.chdb]


def test_version_queries_as_text() -> None:
    table = RateCardsTable("db")
    assert "ORDER BY (namespace, version)" in table.ddl()[0].to_sql()
    known = table.known("ns", ["rc_1", "rc_2"]).to_sql()
    assert "WHERE namespace = 'ns' AND version IN ('rc_1', 'rc_2')" in known
    assert "version = 'rc_1' LIMIT 1" in table.document("ns", "rc_1").to_sql()


def test_versions_record_once_and_read_back(engine: tuple[Engine, str]) -> None:
    eng, database = engine
    table = RateCardsTable(database)
    first = RateCardRow("ns", "rc_b", "bb" * 32, 2_000, '{"plans": {"p": {}}}')
    second = RateCardRow("ns", "rc_a", "aa" * 32, 3_000, '{"plans": {"q": {"USD": {}}}}')
    again = RateCardRow("ns", "rc_b", "bb" * 32, 4_000, '{"plans": {"p": {}}}')
    other = RateCardRow("other", "rc_c", "cc" * 32, 1_000, "{}")
    for batch in ([first], [second, again], [other]):
        eng.insert(*table.insert(batch))
    listing = [tuple(row) for row in eng.execute(table.listing("ns").to_sql())]
    assert listing == [("rc_b", "bb" * 32, 2_000), ("rc_a", "aa" * 32, 3_000)]
    assert sorted(v for (v,) in eng.execute(table.known("ns", ["rc_a", "rc_c"]).to_sql())) == [
        "rc_a"
    ]
    rows = eng.execute(table.document("ns", "rc_a").to_sql())
    assert [tuple(row) for row in rows] == [("aa" * 32, '{"plans": {"q": {"USD": {}}}}')]
    assert list(eng.execute(table.document("ns", "rc_zz").to_sql())) == []
