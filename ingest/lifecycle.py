"""An SDK producer's life beyond its owner's calls (pure of Kafka; the producer does the
I/O): its packing thread holds it only weakly, so a producer its owner drops is
collected, and one never closed — dropped, or still open at interpreter exit — produces
and waits for what it holds anyway (``UsageProducer._close_unclosed``, with a warning)
instead of losing it with the object or the process."""

from __future__ import annotations

import atexit
import threading
import weakref
from typing import Protocol

__all__ = ["register", "start_packing", "unregister"]


class Packing(Protocol):
    def _pack_tick(self) -> None: ...

    def _close_unclosed(self, when: str) -> None: ...


_OPEN: weakref.WeakSet[Packing] = weakref.WeakSet()
"""Producers not yet closed: flushed at interpreter exit (:func:`_flush_unclosed`)."""


def register(producer: Packing) -> None:
    """``producer`` is open: flushed at interpreter exit unless it is closed first."""
    _OPEN.add(producer)


def unregister(producer: Packing) -> None:
    _OPEN.discard(producer)


def start_packing(
    producer: Packing, stop: threading.Event, tick: float, name: str
) -> threading.Thread:
    """The producer's packing thread (a daemon), which holds it weakly: every ``tick`` it
    produces the due groups and serves the callbacks, until ``stop`` is set or the
    producer is gone."""
    thread = threading.Thread(
        target=_pack_loop, args=(weakref.ref(producer), stop, tick), name=name, daemon=True
    )
    thread.start()
    return thread


def _pack_loop(ref: weakref.ref[Packing], stop: threading.Event, tick: float) -> None:
    while not stop.wait(tick):
        producer = ref()
        if producer is None:
            return
        producer._pack_tick()
        del producer  # the last reference may go here: then its ``__del__`` runs here


@atexit.register
def _flush_unclosed() -> None:
    """At interpreter exit (before the packing threads, which are daemons, stop), every
    producer not closed produces and waits for what it holds."""
    for producer in list(_OPEN):
        producer._close_unclosed("at interpreter exit")
