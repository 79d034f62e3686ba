"""The liveness rules and the restart back-off, without processes or Kafka."""

from __future__ import annotations

import signal

import pytest

from streams.supervisor import Backoff, describe_exit
from streams.watchdog import Heartbeat, Limits, Offsets, Reason, Watchdog

LIMITS = Limits(stall_s=20, heartbeat_s=10, startup_s=60, write_s=30)
READY = Heartbeat(ready=True, assigned=frozenset({0, 1}))


def started(at: float = 0.0) -> Watchdog:
    dog = Watchdog(LIMITS)
    dog.started(at)
    return dog


def behind(committed: int, end: int = 100) -> Offsets:
    return Offsets({0: committed, 1: end}, {0: end, 1: end})


def run(dog: Watchdog, start: float, stop: float, committed: int, beat: Heartbeat = READY) -> None:
    """Heartbeat every second and observe offsets every two, from ``start`` to ``stop``."""
    t = start
    while t <= stop:
        dog.heartbeat(t, beat)
        if int(t) % 2 == 0:
            dog.offsets(t, behind(committed))
        t += 1


def test_a_ready_worker_that_commits_nothing_while_behind_is_stalled() -> None:
    dog = started()
    run(dog, 1, 22, committed=40)
    # the first observation (t=2) is the baseline: 20 s later it is not yet over the limit
    assert dog.verdict(22) is None
    run(dog, 23, 23, committed=40)
    verdict = dog.verdict(23)
    assert verdict is not None
    assert verdict.reason is Reason.STALLED
    assert "60 records behind on partitions [0, 1]" in verdict.detail


def test_committing_is_progress() -> None:
    dog = started()
    for t in range(1, 200):
        dog.heartbeat(t, READY)
        dog.offsets(t, behind(committed=t // 15))  # moves every 15 s, under the 20 s limit
        assert dog.verdict(t) is None, t


def test_no_lag_is_never_a_stall() -> None:
    dog = started()
    for t in range(1, 200):
        dog.heartbeat(t, READY)
        dog.offsets(t, behind(committed=100))
    assert dog.verdict(199) is None
    assert dog.lag == 0


def test_partitions_of_other_workers_do_not_count() -> None:
    dog = started()
    mine = Heartbeat(ready=True, assigned=frozenset({1}))
    for t in range(1, 100):
        dog.heartbeat(t, mine)
        dog.offsets(t, behind(committed=0))  # partition 0 is far behind, but not ours
    assert dog.verdict(99) is None


def test_a_broker_outage_restarts_the_stall_clock() -> None:
    dog = started()
    run(dog, 1, 15, committed=40)
    dog.offsets(16, None)  # Kafka did not answer
    run(dog, 17, 35, committed=40)
    assert dog.verdict(35) is None
    run(dog, 36, 37, committed=40)
    verdict = dog.verdict(37)
    assert verdict is not None
    assert verdict.reason is Reason.STALLED


def test_a_clickhouse_write_in_progress_is_progress_until_it_hangs() -> None:
    dog = started()
    for t in range(1, 29):
        dog.heartbeat(t, Heartbeat(True, frozenset({0, 1}), writing_s=float(t)))
        dog.offsets(t, behind(committed=40))
        assert dog.verdict(t) is None, t
    dog.heartbeat(30, Heartbeat(True, frozenset({0, 1}), writing_s=30.5))
    verdict = dog.verdict(30)
    assert verdict is not None
    assert verdict.reason is Reason.WRITE_HUNG


def test_silence_after_a_heartbeat_is_a_wedged_loop() -> None:
    dog = started()
    dog.heartbeat(1, READY)
    assert dog.verdict(11) is None
    verdict = dog.verdict(11.5)
    assert verdict is not None
    assert verdict.reason is Reason.NO_HEARTBEAT


def test_a_worker_that_never_gets_ready_is_replaced_after_the_startup_deadline() -> None:
    dog = started()
    assert dog.verdict(59) is None  # no heartbeat yet: still starting
    verdict = dog.verdict(61)
    assert verdict is not None
    assert verdict.reason is Reason.NOT_READY


def test_losing_readiness_starts_the_startup_clock_again() -> None:
    dog = started()
    run(dog, 1, 10, committed=100)
    rebalancing = Heartbeat(ready=False, assigned=frozenset({0, 1}))
    for t in range(11, 71):
        dog.heartbeat(t, rebalancing)
        dog.offsets(t, behind(committed=40))
    assert dog.verdict(70) is None  # 59 s not ready; lag is not a stall while rebalancing
    dog.heartbeat(72, rebalancing)
    verdict = dog.verdict(72)
    assert verdict is not None
    assert verdict.reason is Reason.NOT_READY


def test_a_restore_that_keeps_applying_messages_is_not_replaced() -> None:
    """An empty state directory restores the whole horizon, which can outlast the startup
    deadline; each batch it applies restarts the clock, and a restore that stops applying
    is replaced once the deadline passes after its last batch."""
    dog = started()
    for t in range(1, 400):  # a batch applied every 10 s for 400 s: six startup deadlines
        dog.heartbeat(t, Heartbeat(ready=False, assigned=frozenset(), restored=t // 10 * 5000))
        assert dog.verdict(t) is None, t
    stuck = Heartbeat(ready=False, assigned=frozenset(), restored=399 // 10 * 5000)
    for t in range(400, 451):
        dog.heartbeat(t, stuck)
    assert dog.verdict(450) is None  # 60 s after the last batch (at 390): at the deadline
    dog.heartbeat(452, stuck)
    verdict = dog.verdict(452)
    assert verdict is not None
    assert verdict.reason is Reason.NOT_READY
    assert "not ready for 62s" in verdict.detail


def test_regaining_readiness_gives_a_fresh_stall_deadline() -> None:
    dog = started()
    run(dog, 1, 10, committed=40)
    dog.heartbeat(11, Heartbeat(ready=False, assigned=frozenset()))
    run(dog, 40, 55, committed=40)
    assert dog.verdict(55) is None  # ready again at 40: 15 s, within 20 s


def test_backoff_doubles_to_the_cap_and_resets_after_a_good_run() -> None:
    backoff = Backoff(first_s=1, max_s=8, reset_after_s=60)
    assert [backoff.next(ran_s=2) for _ in range(6)] == [1, 2, 4, 8, 8, 8]
    assert backoff.next(ran_s=61) == 1
    assert backoff.next(ran_s=1) == 2


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (-signal.SIGKILL, ("signalled", "killed by SIGKILL")),
        (70, ("exited", "exited with code 70")),
        (0, ("exited", "exited with code 0")),
    ],
)
def test_exits_are_described(code: int, expected: tuple[str, str]) -> None:
    assert describe_exit(code) == expected
