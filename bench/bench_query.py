"""Usage queries at scale: the API over the windows of 50M events.

What is loaded (server-side, ``INSERT … SELECT`` from ``numbers()``: this stage is about
the read path): October 2026 for 1,000 subjects of the ``llm_tokens`` meter, one minute
window per subject and minute (43.2M rows), 50M events in all (some minutes hold two);
then the hourly and daily rollups with the product's own backfill statement
(``RollupTable.backfill``), and — as the baseline — a copy of the minute windows in the
layout before schema migrations (ordered by time first, ``layouts/v1.sql``).

What is timed: four API requests, 50 samples each after a warm-up, one at a time, each
sample a different random subject where the request names one:

* one subject, 30 days, hourly;
* one subject, 30 days, daily in Asia/Kolkata — and checked exact: equal to that subject's
  minute windows summed per Kolkata day;
* all subjects, daily totals over 30 days (``aggregate=total``);
* the top 20 subjects over the month (``top=20``).

Baseline, same run: the SQL each request would have run before this layout (the same
query text on the time-ordered copy), timed on a direct connection — i.e. without any
API cost.  And the dashboard: headless Chromium loads it on this database (daily windows,
all time) and reports when its chart was drawn.

``python bench/bench_query.py [EVENTS]`` runs the stage alone (``make bench`` runs it too).
"""

from __future__ import annotations

import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from api.server import demo_tokens, start_background  # noqa: E402
from schemas.metering.definitions import Aggregation  # noqa: E402
from schemas.settings import Settings  # noqa: E402
from schemas.storage.bootstrap import ensure_schema  # noqa: E402
from schemas.storage.engine import ServerEngine  # noqa: E402
from schemas.storage.rollups import RollupTable  # noqa: E402
from schemas.storage.schema_versions import V1_SORTING_KEY  # noqa: E402
from schemas.storage.windows_table import (  # noqa: E402
    SORTING_KEY,
    MeterQuery,
    RangeQuery,
    WindowSize,
    WindowsTable,
)

SUBJECTS = 1000
DAYS = 30
T0 = int(datetime(2026, 10, 1, tzinfo=UTC).timestamp())
T1 = T0 + DAYS * 86400
SAMPLES = 50
METER = "llm_tokens"
FROM, TO = "2026-10-01T00:00:00Z", "2026-10-31T00:00:00Z"


def subjects_for(events: int) -> int:
    """1,000 subjects at full size; fewer for a small run, one window each per minute."""
    return max(min(SUBJECTS, events // (DAYS * 1440)), 1)


def load(engine: ServerEngine, database: str, events: int) -> dict[str, float]:
    """The windows of ``events`` events; seconds per step."""
    windows = WindowsTable(database)
    subjects = subjects_for(events)
    rows = subjects * DAYS * 1440
    extra = max(events - rows, 0)  # rows holding a second event
    took: dict[str, float] = {}
    started = time.perf_counter()
    # row n: subject n % subjects, minute n // subjects; a pseudo-random `extra` of the
    # rows hold two events; values 1..4000 tokens
    group_key = '{"model":"small"}'
    one = "[1 + n % 4000]"
    two = "[1 + n % 4000, 1 + (n * 31) % 4000]"
    per_day = subjects * 1440
    for day in range(DAYS):  # a day at a time: the GROUP BY stays small
        engine.execute(
            f"INSERT INTO {windows.name} (namespace, meter, subject, group_key,"
            " window_start, ingest_minute, source_partition, value_sum, event_count,"
            " value_uniq, value_max, value_min, value_latest, max_offset)"
            f" SELECT 'default', '{METER}', concat('c', toString(n % {subjects})),"
            f" '{group_key}', toDateTime({T0} + intDiv(n, {subjects}) * 60) AS ws, ws,"
            " toUInt32(0), sumState(v), countState(), uniqExactState(toString(v)),"
            " maxState(v), minState(v),"
            " argMaxState(v, tuple(toInt64(n), toUInt64(n), toUInt32(0))),"
            " maxState(toUInt64(n))"
            " FROM (SELECT n, toDecimal128(arrayJoin(raw), 9) AS v FROM"
            f" (SELECT number + {day * per_day} AS n,"
            f" if((n * 7919) % {rows} < {extra}, {two}, {one}) AS raw"
            f" FROM numbers({per_day})))"
            " GROUP BY n"
        )
    took["minute"] = time.perf_counter() - started
    for grain in ("hourly", "daily"):
        started = time.perf_counter()
        engine.execute(RollupTable(database, grain).backfill(windows.name, 2**32 - 60).to_sql())
        took[grain] = time.perf_counter() - started
    started = time.perf_counter()
    before = f"{database}.meter_windows_before"
    ddl = (
        windows.table_ddl(before)
        .to_sql()
        .replace(f"ORDER BY ({SORTING_KEY})", f"ORDER BY ({V1_SORTING_KEY.replace(',', ', ')})")
    )
    engine.execute(ddl)
    engine.execute(f"INSERT INTO {before} SELECT * FROM {windows.name}")
    took["baseline copy"] = time.perf_counter() - started
    started = time.perf_counter()
    settle_merges(engine, database)
    took["background merges"] = time.perf_counter() - started
    return took


def settle_merges(engine: ServerEngine, database: str, timeout_s: float = 900.0) -> None:
    """Wait until ClickHouse has no merge running on the database: the reads are timed on
    a table at rest, not against merges of the load competing for the 2 cores."""
    deadline = time.monotonic() + timeout_s
    quiet = 0
    while time.monotonic() < deadline and quiet < 3:
        running = engine.execute(
            f"SELECT count() FROM system.merges WHERE database = '{database}'"
        )[0][0]
        quiet = quiet + 1 if int(running) == 0 else 0
        time.sleep(1.0)


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


def timing(samples: list[float]) -> dict[str, float]:
    return {
        "p50": statistics.median(samples),
        "p95": percentile(samples, 95),
        "max": max(samples),
        "samples": len(samples),
    }


class Api:
    def __init__(self, url: str) -> None:
        self.http = httpx.Client(
            base_url=url,
            headers={"Authorization": f"Bearer {demo_tokens()['admin']}"},
            timeout=60,
        )

    def get(self, params: dict[str, Any]) -> tuple[float, dict[str, Any], str]:
        started = time.perf_counter()
        answer = self.http.get(f"/api/v1/meters/{METER}/query", params=params)
        took = (time.perf_counter() - started) * 1000
        answer.raise_for_status()
        return took, answer.json(), answer.headers.get("x-meterline-table", "")


def run(events: int = 50_000_000, seed: int = 7) -> dict[str, Any]:
    settings = Settings()
    database = "bench_" + uuid.uuid4().hex[:10]
    engine = ServerEngine(settings.clickhouse_host, settings.clickhouse_tcp_port)
    rng = random.Random(seed)  # noqa: S311 - which subjects to ask for, not security
    subjects = subjects_for(events)
    out: dict[str, Any] = {"events": events, "subjects": subjects, "days": DAYS}
    api = None
    try:
        ensure_schema(engine, database)
        print(f"  loading the windows of {events:,} events into {database} …", flush=True)
        out["load_seconds"] = load(engine, database, events)
        out["minute_rows"] = int(
            engine.execute(f"SELECT count() FROM {database}.meter_windows")[0][0]
        )
        out["stored_events"] = int(
            engine.execute(f"SELECT countMerge(event_count) FROM {database}.meter_windows_daily")[
                0
            ][0]
        )
        env = {
            **os.environ,
            "METERLINE_CLICKHOUSE_DATABASE": database,
            "METERLINE_METERS_FILE": str(ROOT / "deploy/demo/meters.yaml"),
            # no refresh while the browser measures one load
            "METERLINE_API_DASHBOARD_REFRESH_S": "3600",
        }
        home = Path(os.environ.get("METERLINE_HOME") or Path.home() / ".cache/meterline")
        log = home / "logs" / "bench-query-api.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        api = start_background(env=env, log_path=log)
        client = Api(api.url)
        shapes: dict[str, Callable[[str], dict[str, str]]] = {
            "one subject, 30 days, hourly": lambda s: {
                "subject": s,
                "from": FROM,
                "to": TO,
                "windowSize": "HOUR",
            },
            "one subject, 30 days, daily in Asia/Kolkata": lambda s: {
                "subject": s,
                "from": FROM,
                "to": TO,
                "windowSize": "DAY",
                "windowTimeZone": "Asia/Kolkata",
            },
            "all subjects, daily totals, 30 days": lambda s: {
                "from": FROM,
                "to": TO,
                "windowSize": "DAY",
                "aggregate": "total",
            },
            "top 20 subjects over the month": lambda s: {"from": FROM, "to": TO, "top": "20"},
        }
        before = f"{database}.meter_windows_before"
        baselines: dict[str, Callable[[str], MeterQuery | RangeQuery]] = {
            "one subject, 30 days, hourly": lambda s: MeterQuery(
                "default", METER, Aggregation.SUM, T0, T1, WindowSize.HOUR, "UTC", (s,)
            ),
            "one subject, 30 days, daily in Asia/Kolkata": lambda s: MeterQuery(
                "default", METER, Aggregation.SUM, T0, T1, WindowSize.DAY, "Asia/Kolkata", (s,)
            ),
            "all subjects, daily totals, 30 days": lambda s: MeterQuery(
                "default", METER, Aggregation.SUM, T0, T1, WindowSize.DAY, across_subjects=True
            ),
            "top 20 subjects over the month": lambda s: RangeQuery(
                "default", METER, Aggregation.SUM, T0, T1, WindowSize.MINUTE, top=20
            ),
        }
        results: dict[str, Any] = {}

        def subject() -> str:
            return f"c{rng.randrange(subjects)}"

        for name, params in shapes.items():
            for _ in range(3):  # warm-up
                client.get(params(subject()))
            samples, tables = [], set()
            for _ in range(SAMPLES):
                took, _doc, table = client.get(params(subject()))
                samples.append(took)
                tables.add(table)
            base = []
            for _ in range(SAMPLES):
                sql = baselines[name](subject()).on(before).to_sql()
                started = time.perf_counter()
                engine.execute(sql)
                base.append((time.perf_counter() - started) * 1000)
            results[name] = {
                "api_ms": timing(samples),
                "before_direct_sql_ms": timing(base),
                "tables": sorted(tables),
            }
            print(
                f"  {name}: p50 {results[name]['api_ms']['p50']:.1f} ms, p95 "
                f"{results[name]['api_ms']['p95']:.1f} ms via {sorted(tables)}; before "
                f"(direct SQL) p95 {results[name]['before_direct_sql_ms']['p95']:.1f} ms",
                flush=True,
            )
        out["queries"] = results
        picked = [f"c{rng.randrange(subjects)}" for _ in range(3)]
        out["kolkata_exact"] = kolkata_exact(client, picked)
        out["select_1_ms"] = timing([_api_floor(client) for _ in range(SAMPLES)])
        out["dashboard"] = dashboard(api.url)
        return out
    finally:
        if api is not None:
            api.stop()
        engine.execute(f"DROP DATABASE IF EXISTS {database}")
        engine.close()


def kolkata_exact(client: Api, subjects: list[str]) -> dict[str, Any]:
    """The daily Kolkata answer equals the subject's minute windows summed per local day."""
    zone = ZoneInfo("Asia/Kolkata")
    checked = []
    for subject in subjects:
        _, daily, _ = client.get(
            {
                "subject": subject,
                "from": FROM,
                "to": TO,
                "windowSize": "DAY",
                "windowTimeZone": "Asia/Kolkata",
            }
        )
        _, minutes, _ = client.get(
            {"subject": subject, "from": FROM, "to": TO, "windowSize": "MINUTE"}
        )
        want: dict[str, Decimal] = {}
        for row in minutes["data"]:
            start = datetime.fromisoformat(row["windowStart"].replace("Z", "+00:00"))
            local = start.astimezone(zone)
            day = datetime(local.year, local.month, local.day, tzinfo=zone).astimezone(UTC)
            key = day.strftime("%Y-%m-%dT%H:%M:%S.000Z")
            want[key] = want.get(key, Decimal(0)) + Decimal(str(row["value"]))
        got = {row["windowStart"]: Decimal(str(row["value"])) for row in daily["data"]}
        checked.append({"subject": subject, "days": len(got), "exact": got == want})
    return {"subjects": checked, "exact": all(c["exact"] for c in checked)}


def _api_floor(client: Api) -> float:
    started = time.perf_counter()
    client.http.get("/healthz").raise_for_status()
    return (time.perf_counter() - started) * 1000


def dashboard(url: str, runs: int = 3) -> dict[str, Any]:
    """Headless Chromium loads the dashboard (daily windows over all time, all subjects)
    and runs until the page is idle (its queries answered and the chart drawn).  Under
    Chromium's virtual time the page's own clock does not see network waits, so the
    figure is the wall time of the browser run, against the same browser loading the
    API's ``/healthz`` (start-up and teardown), median of ``runs`` each."""
    from tests.browser import FLAGS, chromium

    token = demo_tokens()["admin"]
    target = f"{url}/dashboard#token={token}&meter={METER}&window=DAY&range=all"

    def browse(page: str) -> tuple[float, str]:
        profile = Path(tempfile.mkdtemp(prefix="bench-chrome-"))
        started = time.perf_counter()
        done = subprocess.run(
            [
                chromium(),
                *FLAGS,
                f"--user-data-dir={profile}",
                "--virtual-time-budget=5000",
                "--dump-dom",
                page,
            ],
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        return time.perf_counter() - started, done.stdout

    blank = statistics.median(browse(f"{url}/healthz")[0] for _ in range(runs))
    loads = [browse(target) for _ in range(runs)]
    wall = statistics.median(took for took, _ in loads)
    dom = loads[-1][1]
    points = _attribute(dom, "data-points")
    return {
        "points": int(points) if points else 0,
        "chromium_wall_s": round(wall, 2),
        "chromium_blank_s": round(blank, 2),
        "dashboard_s": round(wall - blank, 2),
    }


def _attribute(dom: str, name: str) -> str | None:
    marker = f'{name}="'
    start = dom.find(marker)
    if start < 0:
        return None
    start += len(marker)
    return dom[start : dom.find('"', start)]


if __name__ == "__main__":
    result = run(int(sys.argv[1]) if len(sys.argv) > 1 else 50_000_000)
    path = ROOT / "bench" / "query-results.json"
    path.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(json.dumps(result, indent=2, default=str))
