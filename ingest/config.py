"""How every producer of the events topic talks to Kafka: the SDK
(:class:`ingest.UsageProducer`), the HTTP gateway (``api.delivery``) and a dead letter's
resend (``streams.dead_letters``) share one client configuration."""

from __future__ import annotations

import logging
from typing import Any

from schemas.wire import COMPRESSION_CODECS, DEFAULT_COMPRESSION

__all__ = ["events_producer_config"]

log = logging.getLogger(__name__)


def events_producer_config(
    bootstrap: str,
    linger_ms: float,
    delivery_timeout_ms: int,
    logger: logging.Logger = log,
    compression: str = DEFAULT_COMPRESSION,
) -> dict[str, Any]:
    """How every producer of the events topic (the SDK, the HTTP gateway) talks to Kafka:
    acknowledged by all in-sync replicas, idempotent (a retry never duplicates a
    record), within ``delivery_timeout_ms``, its batches compressed with ``compression``
    (one of :data:`~schemas.wire.COMPRESSION_CODECS`)."""
    if compression not in COMPRESSION_CODECS:
        raise ValueError(
            f"compression {compression!r} is not a Kafka codec: use one of "
            f"{', '.join(COMPRESSION_CODECS)} (the producer's `compression`, or "
            f"METERLINE_KAFKA_COMPRESSION for Meterline's services; {DEFAULT_COMPRESSION} "
            "by default)"
        )
    return {
        "bootstrap.servers": bootstrap,
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": linger_ms,
        "delivery.timeout.ms": delivery_timeout_ms,
        "compression.type": compression,
        "logger": logger,
    }
