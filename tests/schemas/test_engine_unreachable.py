"""A ClickHouse server that cannot be reached is a ``ServiceUnavailable`` naming where it
was looked for, on reads and writes alike (the driver raises its own error for a refused
connection, not the socket's)."""

from __future__ import annotations

import socket
import uuid

import pytest

from schemas.errors import ServiceUnavailable
from schemas.settings import Settings
from schemas.storage.engine import Engine, ServerEngine, running


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_a_refused_connection_is_service_unavailable() -> None:
    port = _closed_port()
    engine = ServerEngine("127.0.0.1", port)
    with pytest.raises(ServiceUnavailable, match=rf"127\.0\.0\.1:{port} is unreachable.*make up"):
        engine.execute("SELECT 1")
    with pytest.raises(ServiceUnavailable, match=rf"127\.0\.0\.1:{port} is unreachable"):
        engine.insert("db.t", ("a",), [(1,)])
    engine.close()


def test_the_running_query_statement_runs_on_both_engines(engine: tuple[Engine, str]) -> None:
    server, _ = engine
    assert server.execute(running("meterline-insert-none").sql) == [(0,)]


@pytest.mark.integration
def test_a_lost_insert_raises_only_once_the_server_has_finished_it(stack: Settings) -> None:
    # the reply times out while the server still writes the rows (a view that sleeps):
    # what a caller reads after the error — the progress, before writing again — is final
    admin = ServerEngine.of(stack)
    database = f"mls_lost_{uuid.uuid4().hex[:10]}"
    admin.execute(f"CREATE DATABASE {database}")
    try:
        admin.execute(f"CREATE TABLE {database}.feed (n UInt32) ENGINE = Null")
        admin.execute(f"CREATE TABLE {database}.kept (n UInt32) ENGINE = MergeTree ORDER BY n")
        admin.execute(
            f"CREATE MATERIALIZED VIEW {database}.slow TO {database}.kept"
            f" AS SELECT n FROM {database}.feed WHERE sleep(2) = 0"
        )
        hasty = ServerEngine(stack.clickhouse_host, stack.clickhouse_tcp_port, reply_timeout_s=0.5)
        with pytest.raises(ServiceUnavailable, match="unreachable"):
            hasty.insert(f"{database}.feed", ("n",), [(7,)])
        assert admin.execute(f"SELECT n FROM {database}.kept") == [(7,)]
        # the engine carries on with a new connection
        hasty.insert(f"{database}.kept", ("n",), [(8,)])
        assert admin.execute(f"SELECT count() FROM {database}.kept") == [(2,)]
        hasty.close()
    finally:
        admin.execute(f"DROP DATABASE IF EXISTS {database}")
        admin.close()
