"""Where the services are and what they are called: one settings object, read at start.

Every value comes from ``METERLINE_*`` environment variables with local defaults that
match ``make up`` (everything on 127.0.0.1).  Services read it once at start-up and pass
it down; nothing reads the environment at import time.
"""

from __future__ import annotations

import ipaddress
import re

from pydantic import Field, field_validator, model_validator
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.storage.window_states import WindowStates
from schemas.wire import DEFAULT_COMPRESSION, Compression

__all__ = ["Settings"]

#: A DNS host name (RFC 1123): dot-separated labels of letters, digits and inner hyphens.
_HOST_NAME = re.compile(
    r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="METERLINE_", extra="ignore", frozen=True)

    namespace: str = Field(default="default", pattern=r"^[a-z0-9][a-z0-9_\-]{0,62}$")

    kafka_host: str = "127.0.0.1"
    kafka_port: int = 9092
    kafka_brokers: str = ""
    """Brokers of a Kafka cluster as ``host:port,host:port,...`` (every client's bootstrap
    list); empty: the one broker at ``kafka_host:kafka_port``."""
    topic_replication_factor: int = Field(default=1, ge=1)
    """Replicas of each topic Meterline creates (its own and the worker's state topics):
    1 on one broker, 3 on a cluster."""
    topic_min_insync_replicas: int = Field(default=1, ge=1)
    """``min.insync.replicas`` of the topics Meterline creates: how many replicas hold an
    event before it is acknowledged (every producer writes with ``acks=all``); at most
    ``topic_replication_factor``, 2 of 3 on a cluster."""
    events_topic: str = "meterline.events"
    events_partitions: int = Field(default=4, ge=1)
    kafka_compression: Compression = DEFAULT_COMPRESSION
    """How Meterline's producers compress the record batches they write: ``none``,
    ``gzip``, ``snappy``, ``lz4`` or ``zstd`` (``schemas.wire``) — the events topic's (the
    SDK's command line, the HTTP gateway, the demo, a dead-letter resend) and the worker's
    own (the dedupe changelog, dead letters).  Every consumer reads every codec, so it can
    change at any time; ``lz4`` stores ~1.6× the bytes of ``zstd`` for a little less
    producer CPU, ``none`` ~10×."""
    invoices_topic: str = "meterline.invoices"
    dead_letter_topic: str = "meterline.dead-letter"
    notifications_topic: str = "meterline.notifications"
    """Every notification (alerts, invoices), keyed by its id (``alerts.publish``)."""

    clickhouse_host: str = "127.0.0.1"
    clickhouse_tcp_port: int = 9000
    clickhouse_http_port: int = 8123
    clickhouse_database: str = Field(default="meterline", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    clickhouse_cluster: str = Field(default="", pattern=r"^([A-Za-z_][A-Za-z0-9_]*)?$")
    """A cluster in the server's ``remote_servers``: the tables are laid out on it, sharded
    by subject and replicated (``schemas.storage.cluster``), and the worker writes every
    shard; empty: one server."""
    clickhouse_window_states: WindowStates = WindowStates.NEEDED
    """Which aggregate states the windows tables keep (``schemas.storage.window_states``):
    ``needed``, those the meters need, a state added at the start that first sees a meter
    needing it (a cluster database keeps every one); ``full``, every aggregation's, chosen
    when the database is created; ``additive``, only sum and count (SUM, COUNT and AVG
    meters).  Sum and count alone cost ClickHouse about 0.6 of the CPU per window row of
    every state.  Meters a database cannot answer are refused at start."""

    meters_file: str = "deploy/demo/meters.yaml"
    rate_card_file: str = "deploy/demo/rate-card.yaml"
    customers_file: str = "deploy/demo/customers.yaml"
    features_file: str = ""
    """YAML or JSON with the features plans entitle (``invoicing.entitlements``), which
    the entitlement check answers for; empty: none.  Its plans are checked against the
    rate card, so it goes with a card: ``make run`` and ``make demo`` use the demo's,
    ``deploy/demo/features.yaml``, when they run the demo card."""
    webhooks_file: str = ""
    """YAML with the webhook endpoints (``alerts.endpoints``); empty: none, notifications
    go only to ``notifications_topic``."""
    webhook_attempts: int = Field(default=5, ge=1, le=20)
    """Attempts to deliver one notification to one endpoint (``alerts.delivery``)."""
    webhook_first_delay_s: float = Field(default=2.0, ge=0)
    """The wait after the first failed attempt; each later wait doubles, with jitter."""
    webhook_max_delay_s: float = Field(default=60.0, ge=0)
    webhook_timeout_s: float = Field(default=10.0, gt=0)
    """How long one attempt waits for the endpoint's answer."""
    thresholds_file: str = ""
    """YAML with the usage, spend and credit thresholds (``alerts.thresholds``); empty:
    none, the alerts evaluator idles."""
    alerts_interval_s: float = Field(default=1.0, gt=0)
    """How often the alerts evaluator reads the live windows."""
    alerts_port: int = Field(default=0, ge=0, le=65535)
    """Where the alerts evaluator serves /healthz and /metrics (0: off)."""

    dedupe_horizon_days: float = Field(default=32, gt=0)
    late_grace_seconds: float = Field(default=300, ge=0)
    unknown_event_type_is_error: bool = False

    worker_app_id: str = "meterline-metering"
    worker_batch_max: int = Field(default=5000, ge=1)
    """Records the worker takes from Kafka at a time (a batch; also its commit cadence)."""
    worker_batch_seconds: float = Field(default=0.5, gt=0)
    """How long the worker waits to fill a batch."""
    worker_chunk_events: int = Field(default=20000, ge=1)
    """Events per ClickHouse write (a chunk of a batch, cut only between records).  Larger
    writes cost ClickHouse less per event (fewer parts and merges; ``docs/benchmarks.md``)
    and hold more events in the worker while they are written."""
    worker_session_timeout: float = Field(default=10.0, ge=6.0)
    worker_metrics_port: int = Field(default=0, ge=0)
    """Where the worker's supervisor serves /healthz, /readyz and /metrics (0: off)."""
    worker_metrics_host: str = "127.0.0.1"
    """The address the supervisor listens on: an IP address or a host name.  Loopback by
    default, so a laptop or a shared host exposes nothing; ``0.0.0.0`` (``::`` for IPv6
    too) where probes and Prometheus reach the machine or pod on its own address, as in
    the Helm chart."""
    worker_data_dir: str = ""
    worker_dedupe_cache_mb: int = Field(default=128, ge=64)
    """RocksDB's block cache for the worker's dedupe store (MiB): shared by its databases,
    with their memtables (32 MiB) charged to it (``streams.seen_options.StoreLimits``)."""
    worker_dedupe_bounded_memory: bool = False
    """Keep the dedupe store's bloom filters and block indexes in that cache too
    (partitioned), so the store's memory stops growing with the retained keys, at ~1.6x
    the cost of a look-up that misses.  Off, each table file holds its own in memory:
    ~1.5 bytes per retained key, ~4 GB at a 32-day horizon of 1,000 events/s
    (``docs/metering.md``, *Memory*)."""
    worker_stall_seconds: float = Field(default=60.0, gt=0)
    """Watchdog: replace a ready worker that is behind and commits nothing for this long."""
    worker_heartbeat_seconds: float = Field(default=30.0, gt=0)
    """Watchdog: replace a worker whose event loop sent no heartbeat for this long."""
    worker_startup_seconds: float = Field(default=300.0, gt=0)
    """Watchdog: replace a worker that is not ready (rebalance, restore) for this long."""
    worker_write_seconds: float = Field(default=180.0, gt=0)
    """Watchdog: replace a worker whose one ClickHouse write runs this long (the sink
    itself gives up after 120 s of retries)."""
    worker_failpoint: str = ""
    """Fault injection for the reliability tests (``docs/reliability.md``); empty in use."""

    # -- the HTTP API and dashboard (``METERLINE_API_*``) --------------------------------
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8080, ge=0, le=65535)
    api_workers: int = Field(default=1, ge=1)
    """uvicorn processes serving requests (``python -m api serve --workers``); each has its
    own Kafka producer and its own ``max_ingest_in_flight``."""
    api_auth_file: str = ""
    """YAML with the API keys and customer tokens (see ``api.auth``); empty: the demo's
    file bundled with the API (``api.settings.DEMO_AUTH_FILE``)."""

    api_max_body_bytes: int = Field(default=1_048_576, ge=1024)
    """Ingest bodies above this size are refused with 413 before they are parsed."""
    api_max_batch_events: int = Field(default=1000, ge=1)
    """A batch with more events than this is refused with 413."""

    api_max_ingest_in_flight: int = Field(default=32, ge=1)
    """Ingest requests handled at once; more are refused with 429 and ``Retry-After``
    before their body is read, so memory stays bounded (about this many bodies of at
    most ``max_body_bytes``) and the service sheds a flood instead of queueing it."""
    api_shed_retry_after_s: int = Field(default=1, ge=1)
    """The ``Retry-After`` sent with 429 answers."""

    api_delivery_timeout_s: float = Field(default=10.0, gt=0)
    """How long an ingest request waits for Kafka's acknowledgement before answering 503."""
    api_kafka_linger_ms: float = Field(default=2.0, ge=0, le=1000)
    """How long the producer waits to fill a Kafka request with more records (librdkafka
    ``linger.ms``): longer means fewer, larger broker requests (less broker CPU per
    event) and that much more latency before the 204."""
    api_retry_after_s: int = Field(default=5, ge=1)
    """The ``Retry-After`` sent with 503 answers."""

    api_dashboard_refresh_s: int = Field(default=5, ge=1)

    @field_validator("worker_metrics_host")
    @classmethod
    def _listen_address(cls, value: str) -> str:
        if _is_ip(value) or (
            _HOST_NAME.fullmatch(value) and not value.rsplit(".", 1)[-1].isdigit()
        ):
            return value
        raise PydanticCustomError(
            "value_error",
            f"{value!r} is not an IP address or a host name: set "
            "METERLINE_WORKER_METRICS_HOST to the address to listen on, without a scheme or "
            "a port, e.g. 127.0.0.1 (this machine only) or 0.0.0.0 (every address)",
        )

    @field_validator("kafka_brokers")
    @classmethod
    def _broker_list(cls, value: str) -> str:
        brokers = [b.strip() for b in value.split(",")] if value.strip() else []
        for broker in brokers:
            host, _, port = broker.rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise PydanticCustomError(
                    "value_error",
                    f"{broker!r} is not host:port: set METERLINE_KAFKA_BROKERS to the "
                    "brokers as host:port separated by commas, e.g. "
                    "10.0.0.1:9092,10.0.0.2:9092,10.0.0.3:9092, or leave it empty for "
                    "the one broker at METERLINE_KAFKA_HOST:METERLINE_KAFKA_PORT",
                )
        return ",".join(brokers)

    @model_validator(mode="after")
    def _insync_within_replicas(self) -> Settings:
        if self.topic_min_insync_replicas > self.topic_replication_factor:
            raise PydanticCustomError(
                "value_error",
                f"topic_min_insync_replicas ({self.topic_min_insync_replicas}) is above "
                f"topic_replication_factor ({self.topic_replication_factor}): no write "
                "could ever be acknowledged; set METERLINE_TOPIC_MIN_INSYNC_REPLICAS to at "
                "most the replication factor (2 of 3 on a cluster)",
            )
        return self

    @property
    def kafka_bootstrap(self) -> str:
        """The bootstrap list every Kafka client of Meterline uses."""
        return self.kafka_brokers or f"{self.kafka_host}:{self.kafka_port}"


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
