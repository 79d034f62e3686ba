"""The worker child's garbage-collector settings (``streams.__main__.tune_gc``)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from streams.cli import WORKER_GC_THRESHOLDS, tune_gc


@pytest.fixture
def restored_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("restored_gc")
def test_the_worker_collects_less_often_and_freezes_its_start_up_objects() -> None:
    gc.unfreeze()
    tune_gc()
    assert gc.get_threshold() == WORKER_GC_THRESHOLDS
    assert WORKER_GC_THRESHOLDS[0] >= 10 * 2_000  # well above CPython's default
    assert gc.get_freeze_count() > 0


@pytest.mark.usefixtures("restored_gc")
def test_cycles_are_still_collected() -> None:
    tune_gc()

    class Node:
        other: object = None

    for _ in range(WORKER_GC_THRESHOLDS[0] * 2):
        a, b = Node(), Node()
        a.other, b.other = b, a
    assert gc.get_count()[0] < WORKER_GC_THRESHOLDS[0]  # generation 0 was collected
