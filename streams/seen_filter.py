"""The dedupe index's key filter: a Bloom filter over the hashes the index holds
(``meterline_native.KeyFilter``), asked before RocksDB (``streams.seen_store``).

Rules (``docs/metering.md``, *The key filter*): it is filled in a thread from the
index's ``chunks`` family, which lists the hash of every indexed key (an index entry and
its chunk's entry are written and deleted in one batch); until the fill is done there is
none and look-ups read RocksDB.  The store hands every chunk's hashes to :meth:`add`
*before* the batch that indexes them is written, and :meth:`add` feeds the filter in use
and the one being built, so an "absent" never hides an indexed key.  It never forgets a
key; past the keys it was sized for, a new one is built the same way.  Past
``StoreLimits.key_filter_bytes`` there is none until the purge brings the index's keys
back under it (checked at most every ``RETRY_SECONDS`` after a write); after a failed
build or without the native module there is none.  Every method but the fill runs on
the store's thread (the event loop).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from rocksdict import ReadOptions

from streams.seen_codec import HASH_BYTES, TIME
from streams.seen_options import SeenDatabases

try:  # the native module (schemas/native), built by `make install`
    from meterline_native import KeyFilter
except ModuleNotFoundError:  # without it, every look-up reads RocksDB (same answers)
    KeyFilter = None
if KeyFilter is not None and not hasattr(KeyFilter, "may_contain_key"):
    KeyFilter = None  # built from older sources: no filter rather than a failing look-up

__all__ = ["IndexFilter"]

log = logging.getLogger(__name__)
BITS_PER_KEY = 10  # as KeyFilter sizes itself
RETRY_SECONDS = 60.0
"""How often, at most, a store without a filter for its size reads its key count again."""


class IndexFilter:
    """The filter in use (:attr:`current`) and the one being built, if any."""

    def __init__(self, max_bytes: int) -> None:
        self.max_keys = max_bytes * 8 // BITS_PER_KEY
        self.current: Any = None
        """``KeyFilter`` or ``None`` (look-ups then read RocksDB)."""
        self._build: _Build | None = None
        self._filled = 0  # hashes the last build read from the chunk entries
        self._over_limit = False  # no filter because the index held too many keys
        self._retry_at = 0.0  # monotonic time of the next count while over the limit

    def add(self, hashes: bytes) -> None:
        """A chunk's key hashes (16 bytes each), before its index entries are written."""
        if self.current is not None:
            self.current.add_all(hashes)
        if self._build is not None:
            self._build.keys.add_all(hashes)

    def start(self, index: SeenDatabases) -> None:
        """Fill a new filter from ``index`` in a thread, sized for twice its keys; the
        current one (or none) answers meanwhile."""
        if KeyFilter is None or self._build is not None:
            return
        keys = max(_estimated_keys(index), self._filled)
        if keys > self.max_keys:  # no filter until the purge brings the keys under it
            if not self._over_limit:
                log.warning(
                    "the dedupe index holds ~%d keys, more than a filter may hold within "
                    "StoreLimits.key_filter_bytes: look-ups read RocksDB until the purge "
                    "brings the keys under %d",
                    keys,
                    self.max_keys,
                )
            self._over_limit, self._retry_at = True, time.monotonic() + RETRY_SECONDS
            self.current = None
            return
        self._over_limit = False
        self._build = _Build(index, min(2 * keys, self.max_keys))

    def after_write(self, index: SeenDatabases) -> None:
        """Put a finished build in place, or start one once the filter in use holds more
        keys than it was sized for, or once a store that was over the filter's limit has
        purged its keys under it."""
        build = self._build
        if build is not None:
            if build.done.is_set():
                self._install(build)
        elif self.current is not None and self.current.added > self.current.capacity:
            self.start(index)
        elif self._over_limit and time.monotonic() >= self._retry_at:
            self._retry_at = time.monotonic() + RETRY_SECONDS
            if _estimated_keys(index) <= self.max_keys:
                log.info("the dedupe index is back under the key filter's limit: building one")
                self._over_limit, self._filled = False, 0  # the last count is past: purged since
                self.start(index)

    def wait(self, timeout: float | None = None) -> Any:
        """Wait for a build and put it in place (the worker never waits: its next write
        does it); the filter in use."""
        build = self._build
        if build is not None and build.done.wait(timeout):
            self._install(build)
        return self.current

    @property
    def nbytes(self) -> int:
        """Bytes of the filter in use and of the one being built."""
        building = self._build.keys if self._build is not None else None
        return sum(int(f.nbytes) for f in (self.current, building) if f is not None)

    @property
    def building(self) -> bool:
        return self._build is not None

    def close(self) -> None:
        """Stop a build (before the index closes under its iterator) and drop the filter."""
        build, self._build = self._build, None
        if build is not None:
            build.cancel()
        self.current = None

    def _install(self, build: _Build) -> None:
        self._build = None
        if build.failed:  # logged by the build; no filter, so no retry loop either
            self.current = None
            return
        self.current, self._filled = build.keys, build.filled
        log.info(
            "dedupe index filter: %d keys read from the chunk entries, %.1f MiB, %.2f s",
            build.filled,
            build.keys.nbytes / 2**20,
            build.seconds,
        )


def _estimated_keys(index: SeenDatabases) -> int:
    return int(index.seen.property_value("rocksdb.estimate-num-keys") or 0)


class _Build:
    """A filter filled from the index's chunk entries in a thread: one read per chunk
    entry (thousands for 20M keys), not one per key.  A chunk indexed after the thread
    took its snapshot reaches it through :meth:`IndexFilter.add`; both add under the GIL,
    one call at a time."""

    def __init__(self, index: SeenDatabases, capacity: int) -> None:
        assert KeyFilter is not None
        self.keys = KeyFilter(capacity)
        self.filled = 0
        self.seconds = 0.0
        self.failed = False
        self.done = threading.Event()
        self._stop = False
        self._thread = threading.Thread(
            target=self._fill, args=(index,), name="dedupe-index-filter", daemon=True
        )
        self._thread.start()

    def _fill(self, index: SeenDatabases) -> None:
        started = time.monotonic()
        keys = self.keys
        scan = ReadOptions()  # a one-off read of every entry: keep the look-ups' blocks
        scan.fill_cache(False)  # type: ignore[call-arg]  # the stub omits the flag it takes
        try:
            chunks = index.chunks.iter(scan)
            try:
                chunks.seek_to_first()
                while chunks.valid() and not self._stop:
                    hashes = chunks.value()[TIME.size :]
                    keys.add_all(hashes)
                    self.filled += len(hashes) // HASH_BYTES
                    chunks.next()
            finally:
                del chunks  # before the database may close
        except Exception:  # reported: look-ups then read RocksDB, with the same answers
            log.exception("building the dedupe index filter failed: look-ups read RocksDB")
            self.failed = True
        self.failed = self.failed or self._stop
        self.seconds = time.monotonic() - started
        self.done.set()

    def cancel(self) -> None:
        self._stop = True
        self._thread.join()
