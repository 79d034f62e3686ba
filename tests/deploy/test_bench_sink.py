"""``make bench``'s sink stage (``bench/bench_pipeline.py``, ``Bench.sink``) on the local
server: the worker's in-process sink and the bare driver insert it is measured against
both store every event of the same generated telemetry, exactly (the stage's ratio is only
worth as much as the rows both sides write)."""

from __future__ import annotations

import sys
from pathlib import Path

from schemas.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

from bench_pipeline import isolated_bench  # noqa: E402


def test_the_sink_and_the_bare_insert_store_the_same_events_exactly(stack: Settings) -> None:
    with isolated_bench(events_per_subject=60, seed=7, repeats=1, partitions=1) as bench:
        unique = bench.telemetry.unique
        result = bench.sink(batch=400)  # several batches: the bare side inserts each
    checks = result["checks"]
    assert len(checks) == 4  # warm-up and one timed run, each the sink then the bare insert
    assert [c["raw_rows"] for c in checks] == [unique] * 4
    assert [c["wrong_total_count"] for c in checks] == [0] * 4
    assert result["exact"]
    assert result["sink"]["median"] > 0
    assert result["bare_insert"]["median"] > 0
