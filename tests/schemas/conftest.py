"""The ``engine`` fixture: each storage test runs on the ClickHouse 18.16 server and on
chDB (current ClickHouse), each time in a fresh database with every table created."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from schemas.settings import Settings
from schemas.storage.bootstrap import ensure_schema
from schemas.storage.engine import Engine, ServerEngine
from schemas.storage.migrations import drop_database


@pytest.fixture(params=["server", "chdb"])
def engine(request: pytest.FixtureRequest, stack: Settings) -> Iterator[tuple[Engine, str]]:
    database = "mls_" + uuid.uuid4().hex[:10]
    if request.param == "server":
        eng: Engine = ServerEngine(stack.clickhouse_host, stack.clickhouse_tcp_port)
    else:
        eng = request.getfixturevalue("chdb_engine")
    ensure_schema(eng, database)
    yield eng, database
    eng.execute(drop_database(database).to_sql())
    if request.param == "server":
        eng.close()
