"""The ``engine`` fixture: each storage test runs on the ClickHouse 18.16 server and on
chDB (current ClickHouse), each time in a fresh database with every table created."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from schemas.storage.engine import Engine
from tests.conftest import fresh_database


@pytest.fixture(params=["server", "chdb"])
def engine(request: pytest.FixtureRequest) -> Iterator[tuple[Engine, str]]:
    yield from fresh_database(request, "mls_")
