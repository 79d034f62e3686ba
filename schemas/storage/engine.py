"""Two ways to run the project's SQL: a ClickHouse server, or chDB in-process.

Both expose the same two calls: :meth:`Engine.execute` for SQL text (returning rows as
tuples of Python values: ``int``, ``str``, ``Decimal``) and :meth:`Engine.insert` for
rows.  Query objects never return ``DateTime`` columns — they return epoch seconds — so no
timezone conversion happens inside a driver.
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import time
import uuid
from collections.abc import Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol

from schemas.errors import ServiceUnavailable
from schemas.storage import driver
from schemas.storage.sql import Statement, lit, values_literal

if TYPE_CHECKING:
    from schemas.settings import Settings
    from schemas.storage.cluster import Replica

__all__ = ["ChdbEngine", "Engine", "ServerEngine", "ShardReplicas", "running", "shard_engines"]

Row = tuple[Any, ...]
REPLY_TIMEOUT_S = 60
"""The longest one statement may go without a reply from the server before it fails."""
SETTLE_POLL_S = 0.2
"""How often a lost insert's query is looked for among the server's running queries."""
SETTLE_TIMEOUT_S = 60
"""How long a lost insert waits to learn that the server no longer runs it."""


def running(query_id: str) -> Statement:
    """How many queries of id ``query_id`` the server is running (0 or 1)."""
    return Statement(f"SELECT count() FROM system.processes WHERE query_id = {lit(query_id)}")


class Engine(Protocol):
    name: str
    cluster: str | None
    """The ClickHouse cluster the database is laid out on (``schemas.storage.cluster``),
    or ``None`` for one server."""

    def execute(self, sql: str) -> list[Row]: ...

    def insert(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None: ...

    def close(self) -> None: ...


def _lost() -> tuple[type[BaseException], ...]:
    """What a server that cannot be reached raises: the socket's errors, and the driver's
    own for a refused or timed-out connection (evaluated only when one is raised)."""
    from clickhouse_driver.errors import NetworkError, SocketTimeoutError

    return (ConnectionError, OSError, EOFError, NetworkError, SocketTimeoutError)


class ServerEngine:
    """A ClickHouse server over the native protocol (clickhouse-driver)."""

    name = "server"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 9000,
        *,
        cluster: str | None = None,
        reply_timeout_s: float = REPLY_TIMEOUT_S,
        **settings: Any,
    ) -> None:
        from clickhouse_driver import Client

        driver.install()
        self._client = Client(
            host=host,
            port=port,
            connect_timeout=5,
            send_receive_timeout=reply_timeout_s,
            settings={"max_block_size": 65536, **settings},
        )
        self.host, self.port, self.cluster = host, port, cluster

    @classmethod
    def of(cls, settings: Settings) -> ServerEngine:
        """The server the settings name (``clickhouse_host``, ``clickhouse_tcp_port``),
        and the cluster it belongs to (``clickhouse_cluster``)."""
        return cls(
            settings.clickhouse_host,
            settings.clickhouse_tcp_port,
            cluster=settings.clickhouse_cluster or None,
        )

    def execute(self, sql: str) -> list[Row]:
        try:
            return list(self._client.execute(sql))
        except _lost() as exc:
            raise ServiceUnavailable(
                f"ClickHouse at {self.host}:{self.port} is unreachable ({exc}); "
                "start it with `make up`"
            ) from exc

    def insert(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """One INSERT, sent as one block: the rows land together or not at all (sent as
        columns, ``schemas.storage.driver``).

        When it raises, its outcome is settled: a connection lost after the insert was
        sent (the reply timed out, the socket broke) does not stop the server, which may
        still be writing the rows; the insert then waits until the server no longer runs
        it (:meth:`_settle`), so that whatever the caller reads next — the windows'
        progress, before writing again — already holds the rows if they landed."""
        if not rows:
            return
        sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES"
        data = driver.columns_of(rows, sql)
        unreachable = f"ClickHouse at {self.host}:{self.port} is unreachable"
        connection = self._client.connection
        try:
            if not connection.connected:
                connection.connect()  # a failure here sent nothing
        except _lost() as exc:
            raise ServiceUnavailable(f"{unreachable} ({exc})") from exc
        query_id = f"meterline-insert-{uuid.uuid4().hex}"
        try:
            self._client.execute(sql, data, types_check=False, columnar=True, query_id=query_id)
        except _lost() as exc:
            self._client.disconnect()
            settled = self._settle(query_id)
            if not settled:
                unreachable += f"; insert {query_id} may still be running there"
            raise ServiceUnavailable(f"{unreachable} ({exc})") from exc

    def _settle(self, query_id: str) -> bool:
        """Wait until the server no longer runs ``query_id`` (asked on a new connection
        every :data:`SETTLE_POLL_S`); ``False`` if that is not known within
        :data:`SETTLE_TIMEOUT_S`."""
        from clickhouse_driver import Client

        probe = Client(host=self.host, port=self.port, connect_timeout=5, send_receive_timeout=5)
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        try:
            while self._runs(probe, query_id) is not False:  # running, or not known yet
                if time.monotonic() >= deadline:
                    return False
                time.sleep(SETTLE_POLL_S)
            return True
        finally:
            probe.disconnect()

    def _runs(self, probe: Any, query_id: str) -> bool | None:
        """Whether the server runs ``query_id``; ``None`` if it cannot be asked now.  A
        server that refuses connections runs nothing (the driver's own error does not say
        whether the connection was refused, so a plain socket asks that first)."""
        try:
            socket.create_connection((self.host, self.port), timeout=5).close()
        except ConnectionRefusedError:
            return False
        except OSError:
            return None
        try:
            return bool(probe.execute(running(query_id).sql)[0][0])
        except _lost():
            return None

    def close(self) -> None:
        self._client.disconnect()


QUORUM_TIMEOUT_MS = 20_000
"""How long a shard's write waits for all its replicas before it fails and is retried."""


def shard_engines(settings: Settings) -> list[ShardReplicas] | None:
    """On a cluster (``clickhouse_cluster``): one :class:`ShardReplicas` per shard, read
    from the server's ``system.clusters``; ``None`` on one server.

    A shard's writes wait for every replica of the shard (``insert_quorum``), so an
    acknowledged write is on all of them and any replica answers for it; after a failed
    connection the factory moves to the shard's next replica."""
    if not settings.clickhouse_cluster:
        return None
    from schemas.storage.cluster import replicas_query, shards_of

    cluster = settings.clickhouse_cluster
    probe = ServerEngine.of(settings)
    try:
        shards = shards_of(probe.execute(replicas_query(cluster).to_sql()), cluster)
    finally:
        probe.close()
    return [ShardReplicas(replicas, cluster) for replicas in shards]


class ShardReplicas:
    """One shard's replicas as the worker reaches them.  Calling it opens a connection
    to the next replica in turn (after a failed connection the caller moves on); writes
    wait for every replica (``insert_quorum``).  :meth:`connect_to` opens one to a given
    replica, for the reads that must see all of them: a write whose outcome the client
    never learnt may sit on one replica only until the others fetch it (or ClickHouse
    fails its quorum and drops it), and what the worker writes next depends on what is
    stored (``streams.shard``)."""

    def __init__(self, replicas: Sequence[Replica], cluster: str, **settings: Any) -> None:
        self.replicas = tuple(replicas)
        self.cluster = cluster
        self._settings = {
            "insert_quorum": len(self.replicas),
            "insert_quorum_timeout": QUORUM_TIMEOUT_MS,
            **settings,
        }
        self._turn = itertools.count()

    def __call__(self) -> Engine:
        return self.connect_to(self.replicas[next(self._turn) % len(self.replicas)])

    def connect_to(self, replica: Replica) -> Engine:
        return ServerEngine(replica.host, replica.port, cluster=self.cluster, **self._settings)


class ChdbEngine:
    """Current ClickHouse in-process (chDB), with its data in ``path``.

    chDB reads a ``config.xml`` from the working directory when it is imported; the
    import is done from an empty directory so a stray file cannot redirect it.
    """

    name = "chdb"
    cluster: str | None = None

    def __init__(self, path: str) -> None:
        cwd = os.getcwd()
        empty = os.path.join(path, ".cwd")
        os.makedirs(empty, exist_ok=True)
        os.chdir(empty)
        try:
            from chdb import session
        finally:
            os.chdir(cwd)
        self._session = session.Session(os.path.join(path, "db"))

    def execute(self, sql: str) -> list[Row]:
        if not _returns_rows(sql):
            self._session.query(sql)
            return []
        raw = self._session.query(sql, "JSONCompact").bytes()
        if not raw:
            return []
        # stdlib json so that decimals parse straight to Decimal, never through float
        doc = json.loads(raw, parse_float=Decimal)
        types = [column["type"] for column in doc["meta"]]
        return [
            tuple(_convert(v, t) for v, t in zip(row, types, strict=True)) for row in doc["data"]
        ]

    def insert(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        if not rows:
            return
        values = ",".join("(" + ",".join(values_literal(v) for v in row) + ")" for row in rows)
        self._session.query(f"INSERT INTO {table} ({', '.join(columns)}) VALUES {values}")

    def close(self) -> None:
        self._session.close()


def _returns_rows(sql: str) -> bool:
    head = sql.lstrip().split(None, 1)[0].upper() if sql.strip() else ""
    return head in {"SELECT", "WITH", "SHOW", "DESCRIBE", "EXISTS"}


def _convert(value: Any, ch_type: str) -> Any:
    """JSONCompact value → the Python value clickhouse-driver would give."""
    if value is None:
        return None
    base = (
        ch_type.removeprefix("Nullable(").removesuffix(")")
        if ch_type.startswith("Nullable(")
        else ch_type
    )
    if base.startswith("Decimal"):
        return Decimal(str(value))
    if base.startswith(("Int", "UInt")):
        return int(value)
    if base.startswith("Array("):
        inner = base[len("Array(") : -1]
        return [_convert(item, inner) for item in value]
    return value
