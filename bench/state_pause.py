"""How long adding a window state pauses writes, with a given number of stored minute rows.

    python bench/state_pause.py [--rows 2000000] [--rounds 3]

Creates a database on the local server (``make up``) whose windows tables keep the
states of one SUM meter (``needed``), stores about ``--rows`` minute rows of it (random
windows over 40 days, five subjects per batch of 100,000, renamed per batch so few rows
merge), then starts with a MAX meter added, as the worker or the API would
(``require_current``): the state is added while writes are paused
(``schemas.storage.state_migration``).  Prints one JSON line per round: the pause (from
the report that writes are paused to the one that they resumed), the whole start, and
the minute rows stored; the database is dropped after each round.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import uuid
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from schemas.metering.definitions import Aggregation, MeterDefinition  # noqa: E402
from schemas.settings import Settings  # noqa: E402
from schemas.storage.bootstrap import ensure_schema, require_current  # noqa: E402
from schemas.storage.engine import ServerEngine  # noqa: E402
from schemas.storage.migrations import drop_database  # noqa: E402
from schemas.storage.rollups import WindowStore  # noqa: E402
from schemas.storage.window_states import WindowStates, states_in  # noqa: E402
from tests.schemas.test_rollups import rows  # noqa: E402

BATCH = 100_000
CALLS = MeterDefinition(slug="m", event_type="r", aggregation=Aggregation.SUM, value_property="$.n")
PEAK = MeterDefinition(
    slug="peak", event_type="r", aggregation=Aggregation.MAX, value_property="$.n"
)


def one_round(engine: ServerEngine, stored_rows: int) -> dict[str, float | int]:
    database = "state_pause_" + uuid.uuid4().hex[:8]
    try:
        ensure_schema(engine, database, WindowStates.NEEDED, [CALLS])
        store = WindowStore(database)
        sample = rows(BATCH, seed=1)
        for batch in range(max(1, stored_rows // BATCH)):
            renamed = [replace(r, subject=f"b{batch}-{r.subject}") for r in sample]
            engine.insert(*store.minute.insert_args(renamed))
        ((minute_rows,),) = engine.execute(f"SELECT count() FROM {store.minute.name}")
        said: list[tuple[float, str]] = []
        start = time.perf_counter()
        require_current(
            engine,
            database,
            meters=[CALLS, PEAK],
            report=lambda text: said.append((time.perf_counter(), text)),
        )
        whole = time.perf_counter() - start
        paused_at = next(at for at, text in said if "pausing writes" in text)
        resumed_at = next(at for at, text in said if "writes resumed" in text)
        kept = states_in(engine, database)
        if kept is None or "value_max" not in kept.optional:
            raise AssertionError(f"value_max was not added: {kept}")
        return {
            "minute_rows": int(minute_rows),
            "paused_s": round(resumed_at - paused_at, 3),
            "start_s": round(whole, 3),
        }
    finally:
        engine.execute(drop_database(database).to_sql())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    engine = ServerEngine.of(Settings())
    try:
        runs = [one_round(engine, args.rows) for _ in range(args.rounds)]
    finally:
        engine.close()
    for run in runs:
        print(json.dumps(run))
    pauses = [float(r["paused_s"]) for r in runs]
    print(json.dumps({"median_paused_s": statistics.median(pauses), "rounds": len(runs)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
