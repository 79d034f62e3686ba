"""``make bench``'s stream stage (``bench/bench_pipeline.py``, ``Bench.streams``) on the
local broker and server: every run stores the generated telemetry exactly, and is paired
with a bare consume of its own topic whose rate its paired ratio is taken against."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from schemas.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

from bench_pipeline import isolated_bench  # noqa: E402


def test_each_stream_run_is_paired_with_a_bare_consume_of_its_topic(stack: Settings) -> None:
    # enough events for the worker's writes to span several polls of the stored count
    with isolated_bench(events_per_subject=5000, seed=7, repeats=1, partitions=1) as bench:
        bench.producer()  # the warm-up topic and one timed one
        (result,) = bench.streams(1, [ROOT])
    assert result["exact"]
    assert [c["raw_rows"] for c in result["checks"]] == [bench.telemetry.unique] * 2
    (rate,) = result["runs"]  # the warm-up run is left out of every figure
    (pair,) = result["paired_baseline"]["runs"]
    assert rate > 0
    assert pair > 0
    assert result["paired_ratio"]["runs"] == [pytest.approx(rate / pair)]
