"""``bench/sdk_window.py`` on the local broker: events sent one at a time fill the
stream stage's topics, one record per event without a window and shared records with
one, every event delivered."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from schemas.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

from bench_pipeline import isolated_bench  # noqa: E402
from sdk_window import fill, layout, paced, subjects  # noqa: E402


def test_the_window_packs_events_sent_one_at_a_time(stack: Settings) -> None:
    with isolated_bench(events_per_subject=200, seed=7, repeats=1, partitions=2) as bench:
        alone = fill(bench, 0, runs=1, pack_subjects=True, rate=0)
        packed = fill(bench, 50, runs=1, pack_subjects=False, rate=0)
        # a warm-up topic and a timed one per window, each holding every event
        assert [len(bench.topics[layout(0, True)]), len(bench.topics[layout(50, False)])] == [2, 2]
    assert alone["events_per_record"]["runs"] == [1.0]
    (per_record,) = packed["events_per_record"]["runs"]
    assert per_record > 2  # 20 subjects, ~220 events each, sent within a few windows
    assert packed["cpu_us_per_event"]["median"] > 0


def test_at_an_offered_rate_a_partitions_subjects_share_records(stack: Settings) -> None:
    with isolated_bench(
        events_per_subject=5, seed=7, repeats=1, partitions=2, subjects=subjects(400)
    ) as bench:  # 2,200 events of 400 subjects at 4,000 events/s: ~0.5 s each
        by_partition = fill(bench, 50, runs=1, pack_subjects=True, rate=4000)
        by_subject = fill(bench, 50, runs=1, pack_subjects=False, rate=4000)
    (shared,) = by_partition["events_per_record"]["runs"]
    (alone,) = by_subject["events_per_record"]["runs"]
    assert alone < 2  # each subject sends about once every 0.1 s: rarely in company
    assert shared > 20  # a 50 ms window of a partition holds ~100 events
    for lane in (by_partition, by_subject):
        (rate,) = lane["runs"]
        assert rate <= 4000 * 1.001  # offered (paced by the clock), not flat out


class _Clock:
    """A clock that moves only when slept on (or when the test moves it itself)."""

    def __init__(self) -> None:
        self.now, self.slept = 0.0, 0.0

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.now += seconds
        self.slept += seconds


def test_an_offered_rate_is_kept_by_the_clock_however_fast_the_sender() -> None:
    clock = _Clock()
    ticks = list(paced(list(range(1000)), 4000, lambda: clock.now, clock.sleep))
    assert [len(t) for t in ticks] == [40] * 25  # 4,000/s in ticks of 10 ms
    assert [n for t in ticks for n in t] == list(range(1000))  # each once, in order
    assert clock.now == pytest.approx(0.25)  # sends that take no time still take 0.25 s


def test_a_late_tick_is_not_made_up_and_flat_out_sends_everything_at_once() -> None:
    clock = _Clock()
    for tick in paced(list(range(1000)), 4000, lambda: clock.now, clock.sleep):
        clock.now += 0.02 * len(tick) / 40  # the sender takes two ticks per tick
    assert clock.slept == 0  # open loop: always late, never waits
    assert clock.now == pytest.approx(0.5)
    assert [len(t) for t in paced(list(range(1000)), 0)] == [1000]
