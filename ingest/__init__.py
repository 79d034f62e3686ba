"""Producers of usage events: the Python SDK and (later) the HTTP gateway."""

from ingest.producer import Delivery, DeliveryReport, UsageProducer

__all__ = ["Delivery", "DeliveryReport", "UsageProducer"]
