"""One ClickHouse shard as the metering sink writes it (``streams.sink``): its tables, its
two connections and the window progress it has read (on one server, the only shard).

A chunk's raw events and its windows are inserted at the same time, so a shard holds a
:class:`Connection` for each: a failed insert resets only its own connection, and the
other insert goes on undisturbed.

Progress on a replicated shard is read from every replica, and trusted only when they
agree (:class:`ReplicasDisagree` otherwise).  A write whose outcome the worker never
learnt (the server died mid-insert, the quorum wait timed out) may be stored on one
replica only; read from another, the progress would leave those windows to be written
again — counted twice once the first copy reaches every replica.  Until the replicas
agree, the shard is not written (its writes wait for every replica anyway).

The commands that act on a cluster shard by shard (``meterline backfill``, ``retention``)
see each shard as a :class:`ShardView` (:func:`shard_views`): a connection to every
replica and the writer the worker's writes go through.  Replicas' answers are compared in
one place (:func:`replicas_differ`) for the worker's progress and the commands' reads.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TypeVar

from schemas.errors import InvariantViolated, MeterlineError, ServiceUnavailable
from schemas.settings import Settings
from schemas.storage.cluster import shard_database
from schemas.storage.engine import Engine, Row, ServerEngine, ShardReplicas, shard_engines
from schemas.storage.events_table import EventsTable, RawRow
from schemas.storage.rollups import WindowStore
from schemas.storage.windows_table import WindowsTable

__all__ = [
    "Connection",
    "ReplicasDisagree",
    "Shard",
    "ShardView",
    "replicas_differ",
    "shard_views",
]

T = TypeVar("T")

log = logging.getLogger(__name__)


class ReplicasDisagree(MeterlineError):
    """The replicas of a shard hold different window progress for the worker's partitions
    (a write is still on its way to every replica, or is being dropped for a failed
    quorum), or one of them cannot be read.  Retried soon (``streams.sink``): nothing is
    written to the shard until every replica answers and they agree."""


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
        self._replicas = engine_factory if isinstance(engine_factory, ShardReplicas) else None
        """A replicated shard's replicas, each read for the progress; ``None`` on one server."""
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
            stored = self._stored_progress(needed, namespace)
            for label, table in self.progress.items():
                for partition in needed:
                    table[partition] = stored[label].get(partition, -1)
        return {label: dict(table) for label, table in self.progress.items()}

    def _stored_progress(self, partitions: set[int], namespace: str) -> dict[str, dict[int, int]]:
        """The stored progress of ``partitions``: from the windows connection on one
        server; on a replicated shard from every replica, which must agree."""
        sql = self.store.progress(namespace).to_sql()
        if self._replicas is None:
            return self._parse(self.windows_connection.engine().execute(sql), partitions)
        views = []
        for replica in self._replicas.replicas:
            address = f"{replica.host}:{replica.port}"
            engine = self._replicas.connect_to(replica)
            try:
                views.append((address, self._parse(engine.execute(sql), partitions)))
            except ServiceUnavailable as exc:
                raise ReplicasDisagree(
                    f"replica {address} of a shard cannot be read ({exc}); the shard is "
                    "written again once every replica answers and they agree"
                ) from exc
            finally:
                engine.close()
        problem = replicas_differ(
            views,
            shard="a shard",
            what=f"window progress for partitions {sorted(partitions)}",
            then="the shard is written again once they agree",
        )
        if problem is not None:
            raise ReplicasDisagree(problem)
        return views[0][1]

    def _parse(self, rows: Iterable[Row], partitions: set[int]) -> dict[str, dict[int, int]]:
        stored: dict[str, dict[int, int]] = {label: {} for label in self.progress}
        for label, partition, offset in rows:
            if int(partition) in partitions:
                stored[str(label)][int(partition)] = int(offset)
        return stored


def replicas_differ(
    answers: Sequence[tuple[str, T]],
    *,
    shard: str,
    what: str,
    then: str,
    show: Callable[[T], str] = str,
) -> str | None:
    """Why the replicas of ``shard`` cannot be trusted for ``what`` — their answers (each
    named by its replica's address) differ: the first and the first that differs from it,
    with ``then`` (what the caller does about it) — or ``None`` when every replica gave the
    same answer."""
    (first_address, first), *others = answers
    for address, answer in others:
        if answer != first:
            return (
                f"the replicas of {shard} hold different {what} ({first_address}: "
                f"{show(first)}; {address}: {show(answer)}): a write is still reaching every "
                f"replica; {then} (if they never do, the replica behind says why in "
                "system.replication_queue: last_exception)"
            )
    return None


@dataclass(slots=True)
class ShardView:
    """One shard as a command reads and writes it (``meterline backfill`` and
    ``retention``): ``readers`` — an open connection to every replica, named by address —
    and ``writer``, which opens the connection its inserts go through (on a cluster, one
    that waits for every replica)."""

    label: str
    """``shard N`` on a cluster, ``""`` on one server (its messages name no shard)."""
    readers: list[tuple[str, Engine]]
    writer: Callable[[], Engine]
    _writing: Engine | None = field(default=None, init=False)

    def agreed(self, sql: str, what: str) -> list[Row]:
        """The rows of ``sql``, which every replica must answer alike (a command that acts
        on them stops before acting otherwise)."""
        answers = [(address, reader.execute(sql)) for address, reader in self.readers]
        problem = replicas_differ(
            answers,
            shard=self.label,
            what=what,
            then="nothing was written — run the command again once they agree",
            show=_summary,
        )
        if problem is not None:
            raise InvariantViolated(problem)
        return answers[0][1]

    def insert(self, args: tuple[str, tuple[str, ...], list[tuple[object, ...]]]) -> None:
        if self._writing is None:
            self._writing = self.writer()
        self._writing.insert(*args)

    def close(self) -> None:
        engines = [reader for _, reader in self.readers]
        if self._writing is not None and self._writing not in engines:
            engines.append(self._writing)
        for engine in engines:
            engine.close()


def _summary(rows: list[Row]) -> str:
    return repr(rows[0]) if len(rows) == 1 else f"{len(rows)} rows"


@contextmanager
def shard_views(settings: Settings) -> Iterator[tuple[str, list[ShardView]]]:
    """The database holding the usage tables the views reach, and the views: every shard
    of the cluster (its local tables), or the one server.  Every connection opened is
    closed on the way out."""
    shards = shard_engines(settings)
    views: list[ShardView] = []
    try:
        if shards is None:
            engine = ServerEngine.of(settings)
            address = f"{settings.clickhouse_host}:{settings.clickhouse_tcp_port}"
            views.append(ShardView("", [(address, engine)], lambda: engine))
            yield settings.clickhouse_database, views
            return
        for n, shard in enumerate(shards, start=1):
            view = ShardView(f"shard {n}", [], shard)
            views.append(view)  # before connecting: `finally` closes what was opened
            for replica in shard.replicas:
                view.readers.append((f"{replica.host}:{replica.port}", shard.connect_to(replica)))
        yield shard_database(settings.clickhouse_database), views
    finally:
        for view in views:
            view.close()
