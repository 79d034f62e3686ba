"""A ClickHouse server that cannot be reached is a ``ServiceUnavailable`` naming where it
was looked for, on reads and writes alike (the driver raises its own error for a refused
connection, not the socket's)."""

from __future__ import annotations

import socket

import pytest

from schemas.errors import ServiceUnavailable
from schemas.storage.engine import ServerEngine


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
