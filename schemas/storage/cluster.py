"""The same layout on a ClickHouse cluster: shards by subject, replicas by ZooKeeper.

The table modules write their DDL once, for one server.  :class:`ClusterLayout` renders
those statements for a cluster named in ``remote_servers`` (setting
``clickhouse_cluster``), so there is one source of DDL for both topologies:

* usage tables — ``usage_events``, ``meter_windows`` and its rollups, the feeds and their
  materialized views — live in ``<database>_shard`` on every server, with
  ``Replicated*MergeTree`` engines whose ZooKeeper path names the shard (``{shard}`` and
  ``{replica}`` are each server's macros).  In ``<database>`` a ``Distributed`` table of
  the same name spans the shards, so every reader (API, billing, dashboards, alerts)
  queries ``<database>.meter_windows`` exactly as on one server;
* the small tables — invoices, rate cards, credits, deliveries, notifications, schema
  versions — are replicated to every server (one ZooKeeper path for all shards): any
  server reads them locally and a write on one reaches the others;
* every statement runs ``ON CLUSTER``.

Sharding.  An event's shard is ``halfMD5(subject) % shards`` (:func:`shard_of`, the
``Distributed`` tables' sharding key), so one customer's rows live on one shard.  The
worker writes each shard's local tables itself (``streams.sink``): each shard keeps its
own write progress, exactly as one server does, and a shard's write waits for every one
of its replicas (``insert_quorum``), so a replica that dies takes no acknowledged row
with it.  ``halfMD5`` is in ClickHouse 18.16 and current ClickHouse and in Python's
``hashlib``; the test suite checks the three agree.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

from schemas.errors import InvalidInput
from schemas.storage.sql import Statement, ident, lit

__all__ = [
    "SHARDED_TABLES",
    "ClusterLayout",
    "Replica",
    "local_sql",
    "shard_database",
    "shard_of",
]

SHARD_SUFFIX = "_shard"
SHARDING_KEY = "halfMD5(subject)"
SHARDED_TABLES = ("usage_events", "meter_window")
"""Name prefixes of the tables split by subject (everything the worker writes)."""

_CREATE = re.compile(
    r"^CREATE (?P<kind>TABLE|MATERIALIZED VIEW) IF NOT EXISTS (?P<db>\w+)\.(?P<name>\w+) "
)
_ENGINE = re.compile(r"ENGINE = (?P<engine>\w*MergeTree)\((?P<args>[^)]*)\)")


def shard_database(database: str) -> str:
    """Where a database's shard-local tables live on each server."""
    return database + SHARD_SUFFIX


def shard_of(subject: str, shards: int) -> int:
    """The shard (0-based, in ``remote_servers`` order) that holds ``subject``'s rows:
    ``halfMD5(subject) % shards``, as the ``Distributed`` tables route them."""
    if shards == 1:
        return 0
    digest = hashlib.md5(subject.encode(), usedforsecurity=False).digest()
    return int.from_bytes(digest[:8], "big") % shards


def local_sql(sql: str, database: str) -> str:
    """``sql`` reading a shard's own tables instead of the ``Distributed`` ones: what one
    server of a shard answers for the subjects it holds (a one-customer read)."""
    prefixes = "|".join(SHARDED_TABLES)
    return re.sub(
        rf"(?<![\w.`]){re.escape(database)}\.(?=(?:{prefixes})\w*\b)",
        f"{shard_database(database)}.",
        sql,
    )


def shard_of_sql(column: str, shards: int) -> Statement:
    """The same shard computed by ClickHouse, for the test that checks both agree."""
    return Statement(f"SELECT {column}, halfMD5({column}) % {int(shards)}")


@dataclass(frozen=True, slots=True)
class Replica:
    shard: int
    """0-based, in ``remote_servers`` order."""
    host: str
    port: int


def replicas_query(cluster: str) -> Statement:
    """Rows ``(shard_num, host_address, port)`` of every server of ``cluster``."""
    return Statement(
        "SELECT shard_num, host_address, port FROM system.clusters"
        f" WHERE cluster = {lit(cluster)} ORDER BY shard_num, replica_num"
    )


def shards_of(rows: Sequence[tuple[object, ...]], cluster: str) -> list[list[Replica]]:
    """The replicas of each shard, from :func:`replicas_query`'s rows."""
    if not rows:
        raise InvalidInput.single(
            "settings",
            "METERLINE_CLICKHOUSE_CLUSTER",
            f"ClickHouse has no cluster {cluster!r} in its remote_servers",
            "set it to a cluster the server defines, or leave it empty for one server",
        )
    shards: dict[int, list[Replica]] = {}
    for shard_num, host, port in rows:
        index = int(str(shard_num)) - 1
        shards.setdefault(index, []).append(Replica(index, str(host), int(str(port))))
    return [shards[i] for i in sorted(shards)]


@dataclass(frozen=True, slots=True)
class ClusterLayout:
    """Renders one server's DDL for the cluster ``cluster``."""

    cluster: str

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", self.cluster):
            raise ValueError(f"not a cluster name: {self.cluster!r}")

    def database(self, database: str) -> list[Statement]:
        on = f" ON CLUSTER {self.cluster}"
        return [
            Statement(f"CREATE DATABASE IF NOT EXISTS {ident(database)}{on}"),
            Statement(f"CREATE DATABASE IF NOT EXISTS {ident(shard_database(database))}{on}"),
        ]

    def drop(self, database: str) -> list[Statement]:
        on = f" ON CLUSTER {self.cluster}"
        return [
            Statement(f"DROP DATABASE IF EXISTS {ident(database)}{on}"),
            Statement(f"DROP DATABASE IF EXISTS {ident(shard_database(database))}{on}"),
        ]

    def render(self, statement: Statement) -> list[Statement]:
        """The cluster statements for one single-server ``CREATE``."""
        match = _CREATE.match(statement.sql)
        if match is None:
            raise ValueError(f"not a CREATE this layout knows: {statement.sql[:80]!r}")
        database, name, kind = match["db"], match["name"], match["kind"]
        on = f" ON CLUSTER {self.cluster}"
        if not name.startswith(SHARDED_TABLES):
            # replicated to every server: one ZooKeeper path for the whole cluster
            sql = _with_on(statement.sql, match, on)
            return [Statement(_replicated(sql, f"/clickhouse/tables/all/{database}/{name}"))]
        local = shard_database(database)
        sql = re.sub(rf"(?<![\w.`]){re.escape(database)}\.(?=\w)", f"{local}.", statement.sql)
        sql = _with_on(sql, _CREATE.match(sql), on)  # type: ignore[arg-type]
        if kind == "MATERIALIZED VIEW" or "ENGINE = Null" in sql:
            # views and feeds exist only on each shard: the worker writes them there
            return [Statement(sql)]
        path = f"/clickhouse/tables/{{shard}}/{local}/{name}"
        return [
            Statement(_replicated(sql, path)),
            Statement(
                f"CREATE TABLE IF NOT EXISTS {database}.{name}{on} AS {local}.{name}"
                f" ENGINE = Distributed({self.cluster}, {local}, {name}, {SHARDING_KEY})"
            ),
        ]


def _with_on(sql: str, match: re.Match[str], on: str) -> str:
    return sql[: match.end() - 1] + on + sql[match.end() - 1 :]


def _replicated(sql: str, path: str) -> str:
    found = _ENGINE.search(sql)
    if found is None:
        raise ValueError(f"no MergeTree engine to replicate in {sql[:80]!r}")
    args = ", ".join(a for a in (lit(path), "'{replica}'", found["args"].strip()) if a)
    engine = f"ENGINE = Replicated{found['engine']}({args})"
    return sql[: found.start()] + engine + sql[found.end() :]
