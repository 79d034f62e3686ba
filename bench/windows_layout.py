"""What a windows-table row costs ClickHouse, for the current layout and candidate ones.

    python bench/windows_layout.py [--rows 400000] [--rounds 3]
                                   [--layouts current,uniq_if_value,no_uniq,narrow,...]

The server's share of a backfill is mostly rows written into the three windows tables
(``docs/benchmarks.md``, eighteenth round).  This stage replays the same backfill-shaped
aggregated-feed rows (one event per row: 20 subjects, three meters, six group keys,
random times over 31 days of October, ingestion minutes advancing every 5,000 rows, four
partitions; nothing folds) into one minute table of each layout, in inserts of 20,000
(the worker's chunk), and reports the server process's CPU per row from the first
insert until its merges have settled — the inserts' views and the merges they start —
after checking that the table holds every event and the exact sum of the values.

Layouts: ``current`` is the product's own DDL with the full state set (``WindowsTable``
and ``window_states``: seven aggregate states, the view expanding each row ``events``
times for ``countState``), ``additive`` the product's DDL with the additive set (sum,
count and the progress: what ``narrow`` below measured before it was built).  The others
are candidates, defined only here, to say what a layout change would buy:

* ``uniq_if_value``: the current table, its view leaving the ``uniqExact`` state empty
  where the row has no value to count (a change of the view alone);
* ``no_uniq``: the current states without ``uniqExact``;
* ``narrow``: the states a SUM, COUNT or AVG meter needs and the write progress —
  ``sum``, ``count`` (through the same expansion) and the highest offset;
* ``narrow_sum_count``: the same with the count kept as ``sum`` of the row's events, no
  expansion;
* ``plain``: ordinary columns in a ``SummingMergeTree`` (events and sum summed; the
  offset column keeps whichever value a merge leaves, so it is not a progress): the
  floor of a row in a sorted, merged table on this server;
* ``per_row``: the full set, each feed row's states built on their own by
  ``arrayReduce`` in a view without ``GROUP BY`` (the worker's rows are already one per
  key; the table's merges fold the rest), the count as ``count(UInt32)``.

The layouts alternate within each round; one JSON line per run, then per layout the
median CPU per row and its ratio to ``current`` of the same rounds.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import bench_pipeline  # noqa: E402
from clickhouse_driver import Client  # noqa: E402

from schemas.settings import Settings  # noqa: E402
from schemas.storage.agg_feed import AGG_COLUMNS, agg_feed_ddl  # noqa: E402
from schemas.storage.feed import DEC  # noqa: E402
from schemas.storage.window_states import (  # noqa: E402
    ADDITIVE_STATES,
    FULL_STATES,
    state_columns,
    states_from_agg,
)
from schemas.storage.windows_table import GROUP_KEYS, SORTING_KEY, WindowsTable  # noqa: E402

STATE_COLUMNS = state_columns(FULL_STATES)
STATES_FROM_AGG = states_from_agg(FULL_STATES)

INSERT_ROWS = 20_000
OCTOBER_S = 1_696_118_400  # 2023-10-01 00:00 UTC
METERS = ("api_calls", "llm_tokens", "storage_gb_hours")
GROUPS = ("", "endpoint=/v1/chat", "endpoint=/v1/embed", "model=large", "model=small", "region=eu")
KEY_SELECT = (
    "namespace, meter, subject, group_key, toDateTime(window_start_s) AS window_start,"
    " toDateTime(ingest_minute_s) AS ingest_minute, source_partition"
)
KEY_COLUMNS = (
    "namespace String, meter String, subject String, group_key String,"
    " window_start DateTime, ingest_minute DateTime, source_partition UInt32"
)
EXPANDED = "ARRAY JOIN range(events) AS k"

# candidate layouts: (state columns, the view's state expressions, expand rows, engine)
CANDIDATES: dict[str, tuple[str, str, bool, str]] = {
    "uniq_if_value": (
        STATE_COLUMNS,
        STATES_FROM_AGG.replace(
            "uniqExactStateIf(uniq, k = 0)", "uniqExactStateIf(uniq, k = 0 AND uniq != '')"
        ),
        True,
        "AggregatingMergeTree()",
    ),
    "no_uniq": (
        f"value_sum AggregateFunction(sum, {DEC}), event_count AggregateFunction(count),"
        f" value_max AggregateFunction(max, {DEC}), value_min AggregateFunction(min, {DEC}),"
        f" value_latest AggregateFunction(argMax, {DEC}, Tuple(Int64, UInt64, UInt32)),"
        " max_offset AggregateFunction(max, UInt64)",
        "sumStateIf(value_sum, k = 0) AS value_sum, countState() AS event_count,"
        " maxStateIf(value_max, k = 0) AS value_max, minStateIf(value_min, k = 0) AS value_min,"
        " argMaxStateIf(latest_value, (latest_ms, latest_offset, latest_index), k = 0)"
        " AS value_latest, maxStateIf(max_offset, k = 0) AS max_offset",
        True,
        "AggregatingMergeTree()",
    ),
    "narrow": (
        f"value_sum AggregateFunction(sum, {DEC}), event_count AggregateFunction(count),"
        " max_offset AggregateFunction(max, UInt64)",
        "sumStateIf(value_sum, k = 0) AS value_sum, countState() AS event_count,"
        " maxStateIf(max_offset, k = 0) AS max_offset",
        True,
        "AggregatingMergeTree()",
    ),
    "narrow_sum_count": (
        f"value_sum AggregateFunction(sum, {DEC}), event_count AggregateFunction(sum, UInt64),"
        " max_offset AggregateFunction(max, UInt64)",
        "sumState(value_sum) AS value_sum, sumState(toUInt64(events)) AS event_count,"
        " maxState(max_offset) AS max_offset",
        False,
        "AggregatingMergeTree()",
    ),
    "plain": (
        f"events UInt64, value_sum {DEC}, max_offset UInt64",
        "sum(toUInt64(events)) AS events, sum(value_sum) AS value_sum,"
        " max(max_offset) AS max_offset",
        False,
        "SummingMergeTree((events, value_sum))",
    ),
    "per_row": (
        STATE_COLUMNS.replace("AggregateFunction(count)", "AggregateFunction(count, UInt32)"),
        "arrayReduce('sumState', [value_sum]) AS value_sum,"
        " arrayReduce('countState', range(events)) AS event_count,"
        " arrayReduce('uniqExactState', [uniq]) AS value_uniq,"
        " arrayReduce('maxState', [value_max]) AS value_max,"
        " arrayReduce('minState', [value_min]) AS value_min,"
        " arrayReduce('argMaxState', [latest_value], [(latest_ms, latest_offset, latest_index)])"
        " AS value_latest, arrayReduce('maxState', [max_offset]) AS max_offset",
        False,
        "AggregatingMergeTree()",
    ),
}
UNGROUPED = frozenset({"per_row"})
"""Candidates whose view builds each row's states on its own (``arrayReduce``), without a
``GROUP BY``: the worker's rows are already one per key, and the table's merges fold any
that are not."""
PRODUCT = {"current": FULL_STATES, "additive": ADDITIVE_STATES}
"""The product's own layouts (``window_states``): the full set and the additive one."""
LAYOUTS = (*PRODUCT, *CANDIDATES)


def backfill_rows(count: int, seed: int = 11) -> list[tuple[Any, ...]]:
    """Aggregated-feed rows (``AGG_COLUMNS``) of a sparse backfill: one event each."""
    rng = random.Random(seed)  # noqa: S311 - reproducible synthetic data, not security
    rows = []
    for n in range(count):
        at = OCTOBER_S + rng.randrange(31 * 86_400)
        value = Decimal(rng.randrange(1, 1_000_000)) / 1000
        rows.append(
            (
                "bench",
                rng.choice(METERS),
                f"customer-{rng.randrange(20)}",
                rng.choice(GROUPS),
                at - at % 60,
                1_700_000_000 + n // 5_000 * 60,
                rng.randrange(4),
                1,
                value,
                value,
                value,
                "",
                value,
                at * 1000,
                n,
                0,
                n,
            )
        )
    return rows


def create(client: Client, layout: str, database: str) -> str:
    """The layout's minute table and its view from a fresh aggregated feed; the feed."""
    windows = WindowsTable(database)
    feed = f"{database}.feed"
    statements = [agg_feed_ddl(feed).sql]
    if layout in PRODUCT:
        windows = WindowsTable(database, PRODUCT[layout])
        statements += [
            windows.table_ddl(windows.name).sql,
            windows.agg_view_ddl(f"{database}.view", feed).sql,
        ]
    else:
        columns, states, expand, engine = CANDIDATES[layout]
        source = f"{feed} {EXPANDED}" if expand else feed
        statements += [
            f"CREATE TABLE {windows.name} ({KEY_COLUMNS}, {columns}) ENGINE = {engine}"
            f" ORDER BY ({SORTING_KEY}) SETTINGS index_granularity = 1024",
            f"CREATE MATERIALIZED VIEW {database}.view TO {windows.name} AS SELECT"
            f" {KEY_SELECT}, {states} FROM {source}"
            + ("" if layout in UNGROUPED else f" GROUP BY {GROUP_KEYS}"),
        ]
    for sql in statements:
        client.execute(sql)
    return feed


def totals(layout: str, database: str) -> str:
    """``(events, sum of values)`` stored in the layout's minute table."""
    table = f"{database}.meter_windows"
    if layout == "plain":
        return f"SELECT sum(events), sum(value_sum) FROM {table}"
    count = "sumMerge(event_count)" if layout == "narrow_sum_count" else "countMerge(event_count)"
    return f"SELECT {count}, sumMerge(value_sum) FROM {table}"


def expected(rows: list[tuple[Any, ...]]) -> tuple[int, Decimal]:
    """``(events, sum of values)`` of aggregated-feed rows."""
    return sum(row[7] for row in rows), sum((row[8] for row in rows), Decimal(0))


def settled(client: Client, database: str) -> int:
    """Wait until the database has no merge running and the same active parts three polls
    in a row; the active parts."""
    last, steady = -1, 0
    while steady < 3:
        time.sleep(0.5)
        (merging,) = client.execute(
            "SELECT count() FROM system.merges WHERE database = %(db)s", {"db": database}
        )[0]
        (parts,) = client.execute(
            "SELECT count() FROM system.parts WHERE database = %(db)s AND active",
            {"db": database},
        )[0]
        steady = steady + 1 if merging == 0 and parts == last else 0
        last = parts
    return last


def run(client: Client, pid: int, layout: str, rows: list[tuple[Any, ...]]) -> dict[str, Any]:
    database = f"bench_layout_{uuid.uuid4().hex[:10]}"
    client.execute(f"CREATE DATABASE {database}")
    try:
        feed = create(client, layout, database)
        insert = f"INSERT INTO {feed} ({', '.join(AGG_COLUMNS)}) VALUES"
        before = bench_pipeline.pids_cpu_seconds([pid])
        for start in range(0, len(rows), INSERT_ROWS):
            client.execute(insert, rows[start : start + INSERT_ROWS])
        inserted = bench_pipeline.pids_cpu_seconds([pid]) - before
        parts = settled(client, database)
        total = bench_pipeline.pids_cpu_seconds([pid]) - before
        (stored,) = client.execute(f"SELECT count() FROM {database}.meter_windows")[0]
        events, stored_sum = client.execute(totals(layout, database))[0]
    finally:
        client.execute(f"DROP DATABASE IF EXISTS {database}")
    if (events, Decimal(stored_sum)) != expected(rows):
        raise bench_pipeline.BenchError(f"{layout}: stored {events} events, {stored_sum} in all")
    return {
        "layout": layout,
        "rows": len(rows),
        "stored_rows": stored,
        "parts": parts,
        "insert_cpu_us_per_row": inserted / len(rows) * 1e6,
        "cpu_us_per_row": total / len(rows) * 1e6,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=400_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--layouts", default=",".join(LAYOUTS))
    args = parser.parse_args()
    layouts = args.layouts.split(",")
    unknown = sorted(set(layouts) - set(LAYOUTS))
    if unknown:
        parser.error(f"--layouts: unknown {', '.join(unknown)}; choose from {', '.join(LAYOUTS)}")
    settings = Settings()
    client = Client(host=settings.clickhouse_host, port=settings.clickhouse_tcp_port)
    (pid,) = bench_pipeline.server_pids()["clickhouse"]
    rows = backfill_rows(args.rows)
    runs: dict[str, list[float]] = {layout: [] for layout in layouts}
    for _ in range(args.rounds):
        for layout in layouts:
            result = run(client, pid, layout, rows)
            keys = len({row[:7] for row in rows})
            # an ungrouped view writes a row per feed row; merges fold them, in their time
            most = len(rows) if layout in UNGROUPED else keys
            if not keys <= result["stored_rows"] <= most:
                raise bench_pipeline.BenchError(f"{layout}: {result['stored_rows']} rows stored")
            runs[layout].append(result["cpu_us_per_row"])
            print(json.dumps(result), flush=True)
    base = statistics.median(runs[layouts[0]])
    for layout in layouts:
        median = statistics.median(runs[layout])
        print(
            json.dumps(
                {
                    "layout": layout,
                    "cpu_us_per_row_median": round(median, 3),
                    "runs": [round(value, 3) for value in runs[layout]],
                    f"ratio_to_{layouts[0]}": round(median / base, 3),
                }
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
