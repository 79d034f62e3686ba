"""The API service's own settings, from ``METERLINE_API_*`` environment variables.

The pipeline settings (Kafka, ClickHouse, meters, customers, rate card) stay in
:class:`schemas.settings.Settings`; this object adds only what the HTTP service needs.
Both are read once when the app is built.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["DEMO_AUTH_FILE", "ApiSettings"]

DEMO_AUTH_FILE = str(Path(__file__).with_name("demo-auth.yaml"))


class ApiSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="METERLINE_API_", extra="ignore", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    workers: int = Field(default=1, ge=1)
    """uvicorn processes serving requests (``python -m api serve --workers``); each has its
    own Kafka producer and its own ``max_ingest_in_flight``."""
    auth_file: str = DEMO_AUTH_FILE
    """YAML with the API keys and customer tokens (see ``api.auth``)."""

    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    """Ingest bodies above this size are refused with 413 before they are parsed."""
    max_batch_events: int = Field(default=1000, ge=1)
    """A batch with more events than this is refused with 413."""

    max_ingest_in_flight: int = Field(default=32, ge=1)
    """Ingest requests handled at once; more are refused with 429 and ``Retry-After``
    before their body is read, so memory stays bounded (about this many bodies of at
    most ``max_body_bytes``) and the service sheds a flood instead of queueing it."""
    shed_retry_after_s: int = Field(default=1, ge=1)
    """The ``Retry-After`` sent with 429 answers."""

    delivery_timeout_s: float = Field(default=10.0, gt=0)
    """How long an ingest request waits for Kafka's acknowledgement before answering 503."""
    kafka_linger_ms: float = Field(default=2.0, ge=0, le=1000)
    """How long the producer waits to fill a Kafka request with more records (librdkafka
    ``linger.ms``): longer means fewer, larger broker requests (less broker CPU per
    event) and that much more latency before the 204."""
    retry_after_s: int = Field(default=5, ge=1)
    """The ``Retry-After`` sent with 503 answers."""

    dashboard_refresh_s: int = Field(default=5, ge=1)
