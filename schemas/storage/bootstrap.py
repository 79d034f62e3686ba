"""Create the database and every table, idempotently."""

from __future__ import annotations

from schemas.storage.engine import Engine
from schemas.storage.events_table import EventsTable
from schemas.storage.invoices_table import InvoicesTable
from schemas.storage.sql import Statement, ident
from schemas.storage.windows_table import WindowsTable

__all__ = ["all_ddl", "ensure_schema"]


def all_ddl(database: str) -> list[Statement]:
    return [
        Statement(f"CREATE DATABASE IF NOT EXISTS {ident(database)}"),
        *EventsTable(database).ddl(),
        *WindowsTable(database).ddl(),
        *InvoicesTable(database).ddl(),
    ]


def ensure_schema(engine: Engine, database: str) -> None:
    for statement in all_ddl(database):
        engine.execute(statement.to_sql())
