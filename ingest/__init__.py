"""The producer SDK: usage events to the events topic (the HTTP gateway, ``api``, writes the
same records)."""

from ingest.outcomes import Delivery, DeliveryReport
from ingest.producer import DEFAULT_PACK_MS, UsageProducer

__all__ = ["DEFAULT_PACK_MS", "Delivery", "DeliveryReport", "UsageProducer"]
