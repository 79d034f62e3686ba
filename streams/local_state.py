"""The workers' local state directories on one machine: one ``slot-N`` per live worker.

Workers sharing a data directory each take the lowest slot no live process holds (an
``flock`` held until the process exits), so RocksDB files are never shared, and a
restarted worker gets its slot, and its state, back.  ``reset`` deletes the directory,
never under a running worker.
"""

from __future__ import annotations

import fcntl
import itertools
import os
import shutil
from pathlib import Path

from schemas.errors import MeterlineError
from schemas.settings import Settings

__all__ = ["claim_slot", "delete_local_state", "state_root"]


def state_root(settings: Settings) -> Path:
    """Where this machine's workers of ``settings.worker_app_id`` keep their local state
    (one ``slot-N`` directory per live worker)."""
    base = Path(settings.worker_data_dir or Path.home() / ".cache/meterline/worker")
    return base / settings.worker_app_id


def delete_local_state(settings: Settings) -> Path | None:
    """Delete the workers' local state on this machine (``reset``): the dedupe keys on
    disk would otherwise drop re-sent events of a new pipeline as duplicates.  Refused
    while a worker holds a slot; the directory deleted, or ``None`` if there was none."""
    root = state_root(settings)
    if not root.exists():
        return None
    for lock in sorted(root.glob("slot-*.lock")):
        fd = os.open(lock, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise MeterlineError(
                f"a worker is running with its state in {lock.with_suffix('')}; "
                "stop the workers first (make down), then reset"
            ) from None
        finally:
            os.close(fd)
    shutil.rmtree(root)
    return root


def claim_slot(root: Path) -> Path:
    """The lowest-numbered state directory under ``root`` that no live process holds.

    Several workers on one machine may share a data directory; each gets its own RocksDB
    files (a database is one process's).  A restarted worker finds its slot free again
    (the lock dies with its process) and reuses the state there.  The lock is held until
    this process exits.
    """
    root.mkdir(parents=True, exist_ok=True)
    for n in itertools.count():
        fd = os.open(root / f"slot-{n}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        return root / f"slot-{n}"
    raise AssertionError("unreachable")
