"""What the handlers share: configuration loaded once at start, the Kafka delivery, and
a ClickHouse reader that runs the blocking driver off the event loop."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from clickhouse_driver.errors import ServerException
from starlette.concurrency import run_in_threadpool

from api.auth import AuthConfig
from api.delivery import Delivery
from invoicing.customers import Customer
from invoicing.entitlements import FeatureSet
from rating import RateCard
from schemas.errors import ServiceUnavailable
from schemas.metering.definitions import MeterSet
from schemas.settings import Settings
from schemas.storage.cluster import local_sql, shard_of
from schemas.storage.engine import Engine
from schemas.storage.invoices_table import InvoicesTable

__all__ = ["Reader", "Services"]

Row = tuple[Any, ...]
log = logging.getLogger(__name__)
_NOT_INITIALISED = {60, 81}  # ClickHouse UNKNOWN_TABLE, UNKNOWN_DATABASE


class Reader:
    """Runs SQL on ClickHouse from a thread pool, one engine (connection) per thread.

    clickhouse-driver clients are not thread-safe, so each worker thread keeps its own;
    a connection that failed is dropped and reopened on the next query.

    On a ClickHouse cluster (``shards``: how to find each shard's connection factory, asked
    once, when first needed) a read about subjects that all live on one shard is sent to
    that shard's server and reads its own tables (``schemas.storage.cluster.local_sql``):
    one customer's usage reads one shard, not every shard through the ``Distributed``
    tables."""

    def __init__(
        self,
        factory: Callable[[], Engine],
        shards: Callable[[], Sequence[Callable[[], Engine]] | None] | None = None,
        database: str = "",
    ) -> None:
        self._factory = factory
        self._discover = shards
        self._shards: Sequence[Callable[[], Engine]] | None = None
        self._database = database
        self._local = threading.local()
        self._all: list[Engine] = []
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._busy = 0
        """Queries running on pool threads: :meth:`close` waits for them."""

    @contextmanager
    def _in_use(self) -> Iterator[None]:
        with self._lock:
            self._busy += 1
        try:
            yield
        finally:
            with self._lock:
                self._busy -= 1
                self._idle.notify_all()

    def _engine(self, shard: int | None = None) -> Engine:
        engines: dict[int | None, Engine] | None = getattr(self._local, "engines", None)
        if engines is None:
            engines = self._local.engines = {}
        engine = engines.get(shard)
        if engine is None:
            engine = self._factory() if shard is None else self._shard_factories()[shard]()
            engines[shard] = engine
            with self._lock:
                self._all.append(engine)
        return engine

    def _shard_factories(self) -> Sequence[Callable[[], Engine]]:
        with self._lock:
            if self._shards is None and self._discover is not None:
                self._shards = self._discover() or ()
            return self._shards or ()

    def shard_of(self, subjects: Collection[str] | None) -> int | None:
        """The one shard holding every subject of ``subjects``; ``None`` on one server,
        for no subjects, or for subjects on several shards."""
        if self._discover is None or not subjects:
            return None
        count = len(self._shard_factories())
        if count < 2:
            return None
        found = {shard_of(subject, count) for subject in subjects}
        return found.pop() if len(found) == 1 else None

    def run(self, sql: str, subjects: Collection[str] | None = None) -> list[Row]:
        """Blocking: execute on this thread's engine (or on the shard that holds every
        subject of ``subjects``)."""
        shard = self.shard_of(subjects)
        if shard is not None:
            sql = local_sql(sql, self._database)
        try:
            with self._in_use():
                return self._engine(shard).execute(sql)
        except ServiceUnavailable:
            self._local.engines.pop(shard, None)
            raise
        except ServerException as exc:
            if exc.code in _NOT_INITIALISED:
                raise ServiceUnavailable(
                    "the ClickHouse tables do not exist yet; run `python -m streams init`"
                ) from exc
            raise

    async def rows(self, sql: str, subjects: Collection[str] | None = None) -> list[Row]:
        return await run_in_threadpool(self.run, sql, subjects)

    async def insert(
        self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]
    ) -> None:
        """One INSERT on this thread pool's engine (the credit ledger's appends)."""

        def write() -> None:
            try:
                with self._in_use():
                    self._engine().insert(table, columns, rows)
            except ServiceUnavailable:
                self._local.engines.pop(None, None)
                raise

        await run_in_threadpool(write)

    def close(self, wait_s: float = 30.0) -> None:
        """Close every engine, once no query is running on one: a query still running on
        a pool thread (a background read nobody awaits, such as the credit-holder hint's)
        would race its connection's close.  After ``wait_s`` the engines are closed
        anyway, and the wait is logged."""
        with self._idle:
            if not self._idle.wait_for(lambda: self._busy == 0, timeout=wait_s):
                log.warning("closing the reader with %d queries still running", self._busy)
            engines, self._all = self._all, []
        for engine in engines:
            engine.close()


@dataclass
class Services:
    settings: Settings
    meters: MeterSet
    customers: tuple[Customer, ...]
    card: RateCard
    auth: AuthConfig
    reader: Reader
    delivery: Delivery
    features: FeatureSet = field(default_factory=FeatureSet)
    """What plans entitle customers to (``invoicing.entitlements``)."""

    @property
    def invoices_table(self) -> str:
        return InvoicesTable(self.settings.clickhouse_database).name

    @cached_property
    def subscriptions(self) -> dict[str, list[tuple[int, Customer]]]:
        """Each customer's entries (subscriptions) with their index in the customers
        file, built once: a look-up per request instead of a scan of every customer."""
        out: dict[str, list[tuple[int, Customer]]] = {}
        for index, customer in enumerate(self.customers):
            out.setdefault(customer.id, []).append((index, customer))
        return out

    def subjects_of(self, customer_id: str) -> tuple[str, ...]:
        """Every subject billed to a customer (across its entries, e.g. subscriptions)."""
        subjects = (s for c in self.customers if c.id == customer_id for s in c.subjects)
        return tuple(dict.fromkeys(subjects))
