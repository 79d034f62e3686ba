"""ClickHouse storage: one module per table owns its DDL and its queries.

``sql`` renders literals and defines the :class:`~schemas.storage.sql.Query` shape;
``engine`` runs statements on a ClickHouse server (clickhouse-driver, native protocol)
or on chDB (current ClickHouse in-process).  Every statement the project issues is built
here, so the test-suite can run each one on both engines.
"""
