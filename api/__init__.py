"""The HTTP API and live dashboard of Meterline (an ASGI service on Starlette).

``create_app()`` (in ``api.app``) builds the service; ``python -m api serve`` runs it.
Layout: ``settings`` (METERLINE_API_*), ``auth`` (API keys and customer tokens),
``ingest`` (body parsing), ``delivery`` (awaitable Kafka acks), ``query`` (meter query
parsing and shaping), ``reads`` (ClickHouse read queries), ``estimates`` (live charges),
``responses``/``problems`` (rendering), ``pages`` (dashboard, invoice HTML),
``metrics``, ``openapi``, ``routes`` (handlers) and ``server`` (running it).
"""
