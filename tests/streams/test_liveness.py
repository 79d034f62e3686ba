"""The worker child's failpoints: only the known ones, spelled exactly, are installed."""

from __future__ import annotations

import pytest

from streams.liveness import WorkerState, supervise_from_child


@pytest.mark.parametrize(
    "failpoint", ["stall_fetch_after", "stall_fetch_after=x", "crash_in_write=1", "crash"]
)
def test_a_misspelled_failpoint_is_refused_naming_the_known_ones(failpoint: str) -> None:
    with pytest.raises(ValueError, match="known: stall_fetch_after=N, crash_in_write"):
        supervise_from_child(object(), WorkerState(), "events", failpoint, sink=object())


def test_crash_in_write_needs_the_sink_it_wraps() -> None:
    with pytest.raises(ValueError, match="unknown failpoint 'crash_in_write'"):
        supervise_from_child(object(), WorkerState(), "events", "crash_in_write")


class _Sink:
    def write(self, plan: object) -> str:
        return f"wrote {plan}"


def test_crash_in_write_wraps_the_sinks_write() -> None:
    sink = _Sink()
    supervise_from_child(object(), WorkerState(), "events", "crash_in_write", sink=sink)
    assert "write" in vars(sink)  # the instance's own write now stands before the class's
    assert getattr(sink.write, "__name__", "") == "crashing_write"
