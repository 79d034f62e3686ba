"""Pausing Python's cycle collector for one batch: a document being read, a backtest and
its report.

A YAML document of 100k customers is 1.4M nodes built in one go, and a backtest of 100k
customers holds a few million objects at once (rows, usage, the invoices read) and builds
millions more that die young (rated lines, usage values).  CPython's cycle collector runs
a full collection, which walks every live container, each time enough allocations pile
up in the older generations; here that cost grows with the heap and, measured at 100k
customers, took about a third of the backtest's pure CPU time and two thirds of reading
the customers file (``docs/benchmarks.md``, *Pricing backtest*).  Nothing either builds
is cyclic — nodes, tuples, decimals, dataclasses and dicts of them — so reference
counting frees all of it; pausing the collector for the batch changes no result and only
defers the collection of cycles made elsewhere in the process to the end.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["collection_paused"]


@contextmanager
def collection_paused() -> Iterator[None]:
    """Run the block with the cycle collector off, then restore it as it was."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
