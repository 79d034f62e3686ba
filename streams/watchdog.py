"""The worker's liveness rules (pure): when a running worker child must be replaced.

The supervisor (``streams.supervisor``) feeds a :class:`Watchdog` two kinds of
observation and asks it for a :class:`Verdict`:

* **heartbeats** from the child, sent from inside its event loop about once a second:
  whether Faust reports it ready, the partitions it holds, and how long its current
  ClickHouse write has been running;
* **offsets** read from Kafka by the supervisor itself: the group's committed offset and
  the log end of every partition.  They are observed from outside on purpose: the stall
  this guards against (faust-streaming issues #629, #175, #523) is a child that
  heartbeats, holds its partitions, says it is ready, and fetches nothing.

The rules, each with its own deadline (:class:`Limits`):

``no_heartbeat``
    no heartbeat for ``heartbeat_s`` — the event loop is wedged or the process stopped.
``not_ready``
    not ready for ``startup_s`` since it started, since it last lost readiness, or since
    its changelog restore last applied a message — a rebalance or a restore that never
    ends.  A restore that keeps applying messages is progress, however long it takes (an
    empty state directory restores the whole dedupe horizon: 322 s for 20M keys here).
``stalled``
    ready, its partitions have records it has not committed (lag), and no committed
    offset of them moved for ``stall_s`` — while no ClickHouse write was in progress.
``write_hung``
    one ClickHouse write running for ``write_s`` — longer than the sink's own retry
    deadline, after which it gives up and exits by itself, so the write is stuck.

A write in progress is progress: the sink retries ClickHouse for up to its deadline and
then exits failing closed; replacing it earlier would only add a restart to an outage.
An offset observation that fails (the broker is down) restarts the stall clock: a
stall is only declared over ``stall_s`` of successful observations, so a broker outage
is never mistaken for one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

__all__ = ["Heartbeat", "Limits", "Offsets", "Reason", "Verdict", "Watchdog"]


class Reason(StrEnum):
    NO_HEARTBEAT = "no_heartbeat"
    NOT_READY = "not_ready"
    STALLED = "stalled"
    WRITE_HUNG = "write_hung"


@dataclass(frozen=True, slots=True)
class Limits:
    """Deadlines in seconds; see the module docstring for what each one bounds."""

    stall_s: float = 60.0
    heartbeat_s: float = 30.0
    startup_s: float = 300.0
    write_s: float = 180.0


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """What the child says about itself."""

    ready: bool
    assigned: frozenset[int]
    writing_s: float | None = None
    """How long the current ClickHouse write has been running; ``None`` when idle."""
    restored: int = 0
    """Changelog messages the dedupe store has applied since the child started."""


@dataclass(frozen=True, slots=True)
class Offsets:
    """The group's committed offset and the log end, per partition of the events topic."""

    committed: Mapping[int, int]
    end: Mapping[int, int]

    def lag(self, partitions: frozenset[int]) -> int:
        return sum(
            max(self.end.get(p, 0) - max(self.committed.get(p, 0), 0), 0) for p in partitions
        )


@dataclass(frozen=True, slots=True)
class Verdict:
    reason: Reason
    detail: str


@dataclass(slots=True)
class Watchdog:
    """Liveness state of one child; create a new one (or call :meth:`started`) per child."""

    limits: Limits = field(default_factory=Limits)
    started_at: float = 0.0
    heartbeat_at: float | None = None
    last: Heartbeat | None = None
    unready_since: float = 0.0
    progress_at: float = 0.0
    committed: dict[int, int] = field(default_factory=dict)
    lag: int | None = None

    def started(self, now: float) -> None:
        """A new child was started at ``now``."""
        self.started_at = self.unready_since = self.progress_at = now
        self.heartbeat_at = None
        self.last = None
        self.committed = {}
        self.lag = None

    def heartbeat(self, now: float, beat: Heartbeat) -> None:
        previous = self.last
        self.heartbeat_at, self.last = now, beat
        if not beat.ready:
            if previous is None or previous.ready or beat.restored > previous.restored:
                self.unready_since = now  # lost readiness, or the restore moved on
            return
        if previous is None or not previous.ready or previous.assigned != beat.assigned:
            self.progress_at = now  # (re)gained readiness or partitions: a fresh start
        if beat.writing_s is not None and beat.writing_s < self.limits.write_s:
            self.progress_at = now

    def offsets(self, now: float, seen: Offsets | None) -> None:
        """An offset observation; ``None`` when Kafka could not be asked."""
        if seen is None:
            self.progress_at, self.lag = now, None
            return
        mine = self.last.assigned if self.last is not None else frozenset()
        committed = {p: seen.committed.get(p, -1) for p in mine}
        self.lag = seen.lag(mine)
        if self.lag == 0 or any(self.committed.get(p) != o for p, o in committed.items()):
            self.progress_at = now
        self.committed = committed

    def verdict(self, now: float) -> Verdict | None:
        """Why the child must be replaced now, or ``None``."""
        limits = self.limits
        beat_at = self.heartbeat_at if self.heartbeat_at is not None else self.started_at
        silent = now - beat_at
        if self.heartbeat_at is not None and silent > limits.heartbeat_s:
            return Verdict(Reason.NO_HEARTBEAT, f"no heartbeat for {silent:.0f}s")
        beat = self.last
        if beat is None or not beat.ready:
            waited = now - self.unready_since
            if waited > limits.startup_s:
                return Verdict(Reason.NOT_READY, f"not ready for {waited:.0f}s")
            return None
        if beat.writing_s is not None and beat.writing_s >= limits.write_s:
            return Verdict(
                Reason.WRITE_HUNG, f"one ClickHouse write running for {beat.writing_s:.0f}s"
            )
        idle = now - self.progress_at
        if self.lag and idle > limits.stall_s:
            return Verdict(
                Reason.STALLED,
                f"{self.lag} records behind on partitions {sorted(beat.assigned)} and no "
                f"offset committed for {idle:.0f}s",
            )
        return None
