"""What the handlers share: configuration loaded once at start, the Kafka delivery, and
a ClickHouse reader that runs the blocking driver off the event loop."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
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
from schemas.storage.engine import Engine
from schemas.storage.invoices_table import InvoicesTable

__all__ = ["Reader", "Services"]

Row = tuple[Any, ...]
_NOT_INITIALISED = {60, 81}  # ClickHouse UNKNOWN_TABLE, UNKNOWN_DATABASE


class Reader:
    """Runs SQL on ClickHouse from a thread pool, one engine (connection) per thread.

    clickhouse-driver clients are not thread-safe, so each worker thread keeps its own;
    a connection that failed is dropped and reopened on the next query."""

    def __init__(self, factory: Callable[[], Engine]) -> None:
        self._factory = factory
        self._local = threading.local()
        self._all: list[Engine] = []
        self._lock = threading.Lock()

    def _engine(self) -> Engine:
        engine: Engine | None = getattr(self._local, "engine", None)
        if engine is None:
            engine = self._factory()
            self._local.engine = engine
            with self._lock:
                self._all.append(engine)
        return engine

    def run(self, sql: str) -> list[Row]:
        """Blocking: execute on this thread's engine."""
        try:
            return self._engine().execute(sql)
        except ServiceUnavailable:
            self._local.engine = None
            raise
        except ServerException as exc:
            if exc.code in _NOT_INITIALISED:
                raise ServiceUnavailable(
                    "the ClickHouse tables do not exist yet; run `python -m streams init`"
                ) from exc
            raise

    async def rows(self, sql: str) -> list[Row]:
        return await run_in_threadpool(self.run, sql)

    async def insert(
        self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]
    ) -> None:
        """One INSERT on this thread pool's engine (the credit ledger's appends)."""

        def write() -> None:
            try:
                self._engine().insert(table, columns, rows)
            except ServiceUnavailable:
                self._local.engine = None
                raise

        await run_in_threadpool(write)

    def close(self) -> None:
        with self._lock:
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
