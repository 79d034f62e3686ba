"""``bench/sdk_window.py`` on the local broker: events sent one at a time fill the
stream stage's topics, one record per event without a window and shared records with
one, every event delivered."""

from __future__ import annotations

import sys
from pathlib import Path

from schemas.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

from bench_pipeline import isolated_bench  # noqa: E402
from sdk_window import fill  # noqa: E402


def test_the_window_packs_events_sent_one_at_a_time(stack: Settings) -> None:
    with isolated_bench(events_per_subject=200, seed=7, repeats=1, partitions=2) as bench:
        alone = fill(bench, 0, runs=1)
        packed = fill(bench, 50, runs=1)
        # a warm-up topic and a timed one per window, each holding every event
        assert [len(bench.topics[f"sent_{w}"]) for w in (0, 50)] == [2, 2]
    assert alone["events_per_record"]["runs"] == [1.0]
    (per_record,) = packed["events_per_record"]["runs"]
    assert per_record > 2  # 20 subjects, ~220 events each, sent within a few windows
    assert packed["cpu_us_per_event"]["median"] > 0
