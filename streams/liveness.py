"""The worker child's side of supervision: a heartbeat from inside its event loop.

When ``python -m streams worker`` supervises the worker, it passes the write end of a
pipe in ``METERLINE_HEARTBEAT_FD``.  The child writes one JSON line per second from a
task on its event loop, from the app's first start (so also while the dedupe store is
restored, when ``restored`` counts the changelog messages applied so far)::

    {"ready": true, "assigned": [0, 1, 2, 3], "writing_s": null, "metrics_port": 41233,
     "records": 120, "restored": 0}

Because the line is written by the event loop itself, a wedged loop shows up as silence;
a loop that runs but fetches nothing shows up in the committed offsets, which the
supervisor reads from Kafka (see ``streams.watchdog``).  ``ready`` is Faust's own view:
its changelog recovery has completed and no rebalance is in progress.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import orjson

__all__ = ["HEARTBEAT_FD_ENV", "WorkerState", "encode_heartbeat", "heartbeat_task"]

HEARTBEAT_FD_ENV = "METERLINE_HEARTBEAT_FD"
log = logging.getLogger(__name__)


@dataclass(slots=True)
class WorkerState:
    """What the glue in ``streams.app`` knows about the running worker."""

    assigned: frozenset[int] = frozenset()
    writing_since: float | None = None
    metrics_port: int = 0
    records: int = 0
    restored: int = 0
    """Changelog messages the dedupe store has applied (restores and standbys)."""

    def count_restored(self, messages: int) -> None:
        self.restored += messages

    def writing_s(self, now: float) -> float | None:
        return None if self.writing_since is None else now - self.writing_since


def encode_heartbeat(state: WorkerState, ready: bool, now: float) -> bytes:
    writing = state.writing_s(now)
    return (
        orjson.dumps(
            {
                "ready": ready,
                "assigned": sorted(state.assigned),
                "writing_s": None if writing is None else round(writing, 3),
                "metrics_port": state.metrics_port,
                "records": state.records,
                "restored": state.restored,
            }
        )
        + b"\n"
    )


def _ready(app: Any) -> bool:
    recovery = app.tables.recovery
    return bool(recovery.completed.is_set() and not app.rebalancing and not app.in_recovery)


async def heartbeat_task(app: Any, state: WorkerState, fd: int, every: float = 1.0) -> None:
    """Write a heartbeat every ``every`` seconds until the pipe closes (the supervisor is
    gone: the worker then stops, as an orphan would meter without a watchdog)."""
    while True:
        try:
            os.write(fd, encode_heartbeat(state, _ready(app), time.monotonic()))
        except BrokenPipeError:
            log.critical("the supervisor is gone (heartbeat pipe closed); stopping")
            os.kill(os.getpid(), signal.SIGTERM)
            return
        await asyncio.sleep(every)


def supervise_from_child(
    app: Any, state: WorkerState, topic: str, failpoint: str, sink: Any = None
) -> None:
    """Register the heartbeat (and the test failpoint) when a supervisor started us.
    ``sink`` is the worker's :class:`~streams.sink.MeteringSink` (the ``crash_in_write``
    failpoint wraps its write)."""
    fd_text = os.environ.get(HEARTBEAT_FD_ENV)
    if fd_text:
        from prometheus_client import start_http_server

        server, _thread = start_http_server(0, addr="127.0.0.1")
        state.metrics_port = int(server.server_port)
        fd = int(fd_text)

        _from_first_start(app, lambda: heartbeat_task(app, state, fd))
    if failpoint:
        _install_failpoint(app, state, topic, failpoint, sink)


def _from_first_start(app: Any, run: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run ``run()`` on the app's event loop from the app's first start, stopped with it.

    Not ``app.task``: Faust starts those only once its changelog recovery is complete,
    and the heartbeat must flow during a recovery (a restore of the whole dedupe horizon
    takes minutes) so that the watchdog can tell a restore that advances from one that
    hangs."""
    first_start = app.on_first_start

    async def on_first_start() -> None:
        app.add_future(run())
        await first_start()

    app.on_first_start = on_first_start


def _install_failpoint(app: Any, state: WorkerState, topic: str, failpoint: str, sink: Any) -> None:
    """Misbehave on purpose, as the reliability tests ask (``docs/reliability.md``):

    * ``stall_fetch_after=N``: once N records are metered, stop fetching the events topic
      while staying in the group, ready and heartbeating: the post-restart stall of
      faust-streaming (#629) as the watchdog sees it;
    * ``crash_in_write``: the first ClickHouse write crashes the Faust consumer while it
      is in flight (as an ``AssertionError`` inside the consumer once did, with a third
      worker joining) and never lands: it hangs, then fails.  The app stops around a
      batch that is not stored."""
    name, _, value = failpoint.partition("=")
    if name == "stall_fetch_after" and value.isdigit():
        _stall_fetch_after(app, state, topic, int(value))
    elif name == "crash_in_write" and not value and sink is not None:
        _crash_in_write(app, sink)
    else:
        raise ValueError(
            f"unknown failpoint {failpoint!r}; known: stall_fetch_after=N, crash_in_write"
        )


def _stall_fetch_after(app: Any, state: WorkerState, topic: str, after: int) -> None:
    async def stall() -> None:
        while state.records < after:
            await asyncio.sleep(0.1)
        tps = {tp for tp in app.consumer.assignment() if tp.topic == topic}
        log.warning("failpoint stall_fetch_after: pausing %d partitions of %s", len(tps), topic)
        app.consumer.pause_partitions(tps)

    app.task(stall)


CRASHED_WRITE_HANGS_S = 30.0


def _crash_in_write(app: Any, sink: Any) -> None:
    write = sink.write
    fired = threading.Event()

    def crash() -> None:
        app.loop.create_task(app.consumer.crash(AssertionError("failpoint crash_in_write")))

    def crashing_write(plan: Any) -> None:
        if fired.is_set():
            return write(plan)  # type: ignore[no-any-return]
        fired.set()
        log.warning("failpoint crash_in_write: crashing the consumer; this write never lands")
        app.loop.call_soon_threadsafe(crash)
        time.sleep(CRASHED_WRITE_HANGS_S)
        raise RuntimeError("failpoint crash_in_write: the write never landed")

    sink.write = crashing_write
