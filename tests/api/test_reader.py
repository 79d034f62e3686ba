"""The API's ClickHouse reader on a cluster: a read about subjects of one shard goes to
that shard's server and names its own tables; anything else goes through the
``Distributed`` tables of the configured server.  Recording engines stand in for the
servers here; ``tests/deploy/test_pipeline_on_cluster.py`` runs the same on the local
cluster and compares the answers."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from api.services import Reader
from schemas.storage.cluster import local_sql, shard_of


class Recorder:
    name = "recorder"
    cluster: str | None = "main"

    def __init__(self, label: str, log: list[tuple[str, str]]) -> None:
        self.label, self.log = label, log

    def execute(self, sql: str) -> list[tuple[Any, ...]]:
        self.log.append((self.label, sql))
        return [(self.label,)]

    def insert(self, table: str, columns: Any, rows: Any) -> None:
        self.log.append((self.label, f"INSERT {table}"))

    def close(self) -> None:
        pass


SQL = "SELECT x FROM db.meter_windows WHERE subject IN ('s') UNION ALL SELECT y FROM db.invoices"
SUBJECTS = [f"customer-{n}" for n in range(40)]


def reader(log: list[tuple[str, str]], discovered: list[int]) -> Reader:
    def shards() -> list[Any]:
        discovered.append(1)
        return [lambda n=n: Recorder(f"shard{n}", log) for n in range(2)]

    return Reader(lambda: Recorder("default", log), shards=shards, database="db")


def test_one_shards_subjects_are_read_on_that_shard_from_its_own_tables() -> None:
    log: list[tuple[str, str]] = []
    discovered: list[int] = []
    r = reader(log, discovered)
    for subject in SUBJECTS[:6]:
        own = shard_of(subject, 2)
        assert r.run(SQL, [subject]) == [(f"shard{own}",)]
        assert log[-1] == (
            f"shard{own}",
            "SELECT x FROM db_shard.meter_windows WHERE subject IN ('s')"
            " UNION ALL SELECT y FROM db.invoices",
        )
    assert discovered == [1]  # the shards are found once


def test_everything_else_reads_through_the_distributed_tables() -> None:
    log: list[tuple[str, str]] = []
    r = reader(log, [])
    both = [next(s for s in SUBJECTS if shard_of(s, 2) == n) for n in (0, 1)]
    assert r.run(SQL, both) == [("default",)]
    assert r.run(SQL) == [("default",)]
    assert r.run(SQL, []) == [("default",)]
    assert [sql for _, sql in log] == [SQL] * 3


def test_one_server_never_routes() -> None:
    log: list[tuple[str, str]] = []
    plain = Reader(lambda: Recorder("default", log))
    assert plain.shard_of(SUBJECTS[:1]) is None
    assert plain.run(SQL, SUBJECTS[:1]) == [("default",)]
    one = Reader(lambda: Recorder("default", log), shards=lambda: None, database="db")
    assert one.shard_of(SUBJECTS[:1]) is None


def test_local_sql_renames_only_the_sharded_tables_of_the_database() -> None:
    sql = (
        "SELECT 1 FROM db.meter_windows_hourly FINAL, db.usage_events, db.invoices,"
        " otherdb.meter_windows, db.meter_windows"
    )
    assert local_sql(sql, "db") == (
        "SELECT 1 FROM db_shard.meter_windows_hourly FINAL, db_shard.usage_events,"
        " db.invoices, otherdb.meter_windows, db_shard.meter_windows"
    )


class Blocking(Recorder):
    """A query that runs until released; records when it ends and when it is closed."""

    def __init__(self, events: list[str], started: threading.Event, release: threading.Event):
        super().__init__("default", [])
        self.events, self.started, self.release = events, started, release

    def execute(self, sql: str) -> list[tuple[Any, ...]]:
        self.started.set()
        assert self.release.wait(30)
        self.events.append("query done")
        return []

    def close(self) -> None:
        self.events.append("closed")


def running_query() -> tuple[Reader, list[str], threading.Event, threading.Thread]:
    """A reader with one query running on another thread until released:
    ``(reader, events, release, the query's thread)``."""
    events: list[str] = []
    started, release = threading.Event(), threading.Event()
    r = Reader(lambda: Blocking(events, started, release))
    query = threading.Thread(target=r.run, args=("SELECT 1",))
    query.start()
    assert started.wait(30)
    return r, events, release, query


def test_close_waits_for_a_query_still_running_on_another_thread() -> None:
    """A read nobody awaits (the credit-holder hint's refresh) may still run on a pool
    thread when the app closes its reader: its connection is closed after it, not under
    it (a close racing a query broke the driver's socket and leaked it)."""
    r, events, release, query = running_query()
    closer = threading.Thread(target=r.close)
    closer.start()
    closer.join(0.2)
    assert closer.is_alive()  # still waiting: the query runs
    assert events == []
    release.set()
    query.join(30)
    closer.join(30)
    assert events == ["query done", "closed"]


def test_close_stops_waiting_after_its_limit_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    r, events, release, query = running_query()
    r.close(wait_s=0.05)
    assert events == ["closed"]
    assert "closing the reader with 1 queries still running" in caplog.text
    release.set()
    query.join(30)
