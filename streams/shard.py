"""One ClickHouse shard as the metering sink writes it (``streams.sink``): its tables, its
two connections and the window progress it has read (on one server, the only shard).

A chunk's raw events and its windows are inserted at the same time, so a shard holds a
:class:`Connection` for each: a failed insert resets only its own connection, and the
other insert goes on undisturbed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence

from schemas.storage.engine import Engine
from schemas.storage.events_table import EventsTable, RawRow
from schemas.storage.rollups import WindowStore
from schemas.storage.windows_table import WindowsTable

__all__ = ["Connection", "Shard"]

log = logging.getLogger(__name__)


class Connection:
    """A ClickHouse connection opened on first use and again after :meth:`reset`."""

    def __init__(self, factory: Callable[[], Engine]) -> None:
        self._factory = factory
        self._engine: Engine | None = None

    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = self._factory()
        return self._engine

    def reset(self) -> None:
        """Close it (a failed one too); the next use opens it again."""
        engine, self._engine = self._engine, None
        if engine is not None:
            try:
                engine.close()
            except Exception as exc:  # noqa: BLE001 - closing a broken connection may fail
                log.debug("closing ClickHouse connection failed: %r", exc)


class Shard:
    """A shard's tables, its windows and raw-insert connections, and the highest stored
    offset per windows table and partition as last read (``progress``)."""

    def __init__(self, engine_factory: Callable[[], Engine], database: str) -> None:
        self.windows_connection = Connection(engine_factory)
        """Progress reads and window inserts."""
        self.raw_connection = Connection(engine_factory)
        """Raw-event inserts, made while the windows are inserted."""
        self.events = EventsTable(database)
        self.windows = WindowsTable(database)
        self.store = WindowStore(database)
        self.feeds = self.store.agg_repair_feeds()
        self.progress: dict[str, dict[int, int]] = {label: {} for label in self.feeds}

    def insert_raw(self, rows: Sequence[RawRow]) -> None:
        self.raw_connection.engine().insert(*self.events.insert_args(rows))

    def close(self) -> None:
        self.windows_connection.reset()
        self.raw_connection.reset()

    def forget(self, partitions: Iterable[int]) -> None:
        for partition in partitions:
            for table in self.progress.values():
                table.pop(partition, None)

    def load_progress(self, partitions: set[int], namespace: str) -> dict[str, dict[int, int]]:
        needed = {p for p in partitions if any(p not in t for t in self.progress.values())}
        if needed:
            stored: dict[str, dict[int, int]] = {label: {} for label in self.progress}
            for label, partition, offset in self.windows_connection.engine().execute(
                self.store.progress(namespace).to_sql()
            ):
                stored[str(label)][int(partition)] = int(offset)
            for label, table in self.progress.items():
                for partition in needed:
                    table[partition] = stored[label].get(partition, -1)
        return {label: dict(table) for label, table in self.progress.items()}
