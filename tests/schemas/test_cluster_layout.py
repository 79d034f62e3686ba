"""The cluster layout (``schemas.storage.cluster``): one source of DDL rendered for a
ClickHouse cluster, and the shard of a subject computed the same way by Python, by
ClickHouse 18.16 and by current ClickHouse (chDB).  The rendered DDL runs on the local
cluster in ``tests/deploy/test_pipeline_on_cluster.py`` and in the cluster e2e run."""

from __future__ import annotations

import re
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ingest.telemetry import generate
from schemas.errors import InvalidInput
from schemas.storage.bootstrap import all_ddl
from schemas.storage.cluster import (
    ClusterLayout,
    shard_of,
    shard_of_sql,
    shards_of,
)
from schemas.storage.engine import ServerEngine
from schemas.storage.sql import Statement
from schemas.wire import encode_event
from streams.plan import split_plan
from streams.sink import Record
from tests.schemas.event_cases import METER_SETS
from tests.streams.sink_kit import Store
from tests.streams.test_plan_oracle import make_sink

DB = "mdb"


def rendered() -> list[str]:
    return [s.sql for s in all_ddl(DB, "main")]


def test_every_statement_runs_on_the_whole_cluster() -> None:
    statements = rendered()
    assert statements[:2] == [
        "CREATE DATABASE IF NOT EXISTS `mdb` ON CLUSTER main",
        "CREATE DATABASE IF NOT EXISTS `mdb_shard` ON CLUSTER main",
    ]
    assert all(" ON CLUSTER main" in sql for sql in statements)
    # every single-server table or view has its cluster counterpart of the same name
    single = {re.search(r"EXISTS \w+\.(\w+)", s.sql)[1] for s in all_ddl(DB)[1:]}  # type: ignore[index]
    clustered = {re.search(r"EXISTS \w+\.(\w+) ON", sql)[1] for sql in statements[2:]}  # type: ignore[index]
    assert clustered == single


def test_usage_tables_are_sharded_replicated_and_spanned_by_a_distributed_table() -> None:
    statements = rendered()
    for name in ("usage_events", "meter_windows", "meter_windows_hourly", "meter_windows_daily"):
        local = next(s for s in statements if f"EXISTS mdb_shard.{name} ON" in s)
        engine = "Replacing" if name == "usage_events" else "Aggregating"
        path = f"/clickhouse/tables/{{shard}}/mdb_shard/{name}"
        assert f"ENGINE = Replicated{engine}MergeTree('{path}', '{{replica}}')" in local
        spanning = next(s for s in statements if f"EXISTS mdb.{name} ON" in s)
        assert spanning.endswith(
            f"AS mdb_shard.{name} ENGINE = Distributed(main, mdb_shard, {name}, halfMD5(subject))"
        )
    # feeds and views exist only on each shard, and name only shard-local tables
    for sql in statements:
        if "ENGINE = Null" in sql or "MATERIALIZED VIEW" in sql:
            assert "mdb_shard." in sql
            assert not re.search(r"(?<![\w.`])mdb\.", sql), sql


def test_small_tables_are_replicated_to_every_server() -> None:
    statements = rendered()
    for name in ("invoices", "invoice_lines", "credit_ledger", "schema_migrations"):
        sql = next(s for s in statements if f"EXISTS mdb.{name} ON" in s)
        assert f"MergeTree('/clickhouse/tables/all/mdb/{name}', '{{replica}}')" in sql
        assert "Distributed" not in sql
        assert "mdb_shard" not in sql


def test_engine_arguments_are_kept_after_the_replication_ones() -> None:
    out = ClusterLayout("main").render(
        Statement(
            "CREATE TABLE IF NOT EXISTS mdb.things (k String, v UInt64)"
            " ENGINE = ReplacingMergeTree(v) ORDER BY k"
        )
    )
    assert out == [
        Statement(
            "CREATE TABLE IF NOT EXISTS mdb.things ON CLUSTER main (k String, v UInt64)"
            " ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/all/mdb/things',"
            " '{replica}', v) ORDER BY k"
        )
    ]


def test_what_the_layout_cannot_render_is_refused() -> None:
    with pytest.raises(ValueError, match="not a cluster name"):
        ClusterLayout("main; DROP")
    with pytest.raises(ValueError, match="not a CREATE"):
        ClusterLayout("main").render(Statement("ALTER TABLE mdb.x DELETE WHERE 1"))
    with pytest.raises(
        InvalidInput, match="METERLINE_CLICKHOUSE_CLUSTER: ClickHouse has no cluster 'nope'"
    ):
        shards_of([], "nope")


def test_replicas_are_grouped_by_shard_in_order() -> None:
    shards = shards_of(
        [(1, "127.0.0.1", 9001), (1, "127.0.0.1", 9002), (2, "127.0.0.1", 9003)], "main"
    )
    assert [[r.port for r in replicas] for replicas in shards] == [[9001, 9002], [9003]]
    assert {r.shard for r in shards[1]} == {1}


SUBJECTS = [f"customer-{n}" for n in range(200)] + ["", "ü-kunde", "a" * 300]


@pytest.fixture(params=["server", "chdb"])
def any_engine(request: pytest.FixtureRequest) -> Iterator[Any]:
    if request.param == "server":
        request.applymarker(pytest.mark.integration)
        engine = ServerEngine.of(request.getfixturevalue("stack"))
        yield engine
        engine.close()
    else:
        request.applymarker(pytest.mark.chdb)
        yield request.getfixturevalue("chdb_engine")


@pytest.mark.parametrize("shards", [2, 3])
def test_python_and_clickhouse_put_a_subject_on_the_same_shard(
    any_engine: Any, shards: int
) -> None:
    values = ", ".join("'" + s.replace("'", "\\'") + "'" for s in SUBJECTS)
    sql = shard_of_sql("subject", shards).sql + f" FROM (SELECT arrayJoin([{values}]) AS subject)"
    got = {str(s): int(n) for s, n in any_engine.execute(sql)}
    assert got == {s: shard_of(s, shards) for s in SUBJECTS}
    assert set(Counter(got.values())) == set(range(shards))  # every shard gets subjects


def test_a_plan_split_by_shard_keeps_every_row_once_on_its_subjects_shard() -> None:
    meters, _ = next(iter(METER_SETS.values()))
    subjects = [f"customer-{n}" for n in range(9)]
    events = generate(subjects, datetime(2026, 10, 27, tzinfo=UTC), timedelta(hours=2), 60).events
    records = [
        Record("events", i % 3, i // 3, 1_793_000_000_000, b"k", encode_event(e))
        for i, e in enumerate(events)
    ]
    plan = make_sink(meters, False).plan(records, Store())
    assert plan.kept
    assert plan.groups
    parts = split_plan(plan, 2)
    assert sorted(r for p in parts for r in p.raw_rows) == sorted(plan.raw_rows)
    assert sorted(r for p in parts for r in p.feed_rows) == sorted(plan.feed_rows)
    assert {k: v for p in parts for k, v in p.groups.items()} == plan.groups
    for number, part in enumerate(parts):
        assert part.raw_rows, "both shards get subjects"
        assert {shard_of(row[4], 2) for row in part.raw_rows} == {number}
        assert {shard_of(row[2], 2) for row in part.feed_rows} == {number}
        for partition, (low, high) in part.spans.items():
            offsets = [k[1] for k in part.kept if k[0] == partition]
            assert (low, high) == (min(offsets), max(offsets))
    # the aggregated rows of the parts are the whole plan's, nothing folded twice
    assert Counter(tuple(r) for p in parts for r in p.aggregated()) == Counter(
        tuple(r) for r in plan.aggregated()
    )


def test_one_shard_is_the_whole_plan() -> None:
    assert shard_of("anyone", 1) == 0
    db = "x" + uuid.uuid4().hex[:6]
    assert all_ddl(db, None) == all_ddl(db)
