"""Prometheus metrics of the API service (names follow Prometheus conventions).

Counters and histograms below live in the process-wide default registry, next to the
worker's ``meterline_stream_*`` families when both run in one process.  The pipeline
gauges (consumer lag, stored invoices) are read from Kafka and ClickHouse at scrape time
by :class:`PipelineCollector`, registered per app.  Every name is listed in docs/api.md.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

__all__ = [
    "DELIVERY_SECONDS",
    "EVENTS_ACCEPTED",
    "EVENTS_RECEIVED",
    "EVENTS_REJECTED",
    "INGEST_IN_FLIGHT",
    "REJECT_REASONS",
    "REQUESTS",
    "REQUEST_SECONDS",
    "PipelineCollector",
]

log = logging.getLogger(__name__)

REQUESTS = Counter(
    "meterline_api_requests_total",
    "HTTP requests answered, by route template, method and status code.",
    ["route", "method", "status"],
)
REQUEST_SECONDS = Histogram(
    "meterline_api_request_duration_seconds",
    "Time to answer an HTTP request, by route template.",
    ["route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
EVENTS_RECEIVED = Counter(
    "meterline_ingest_events_received_total",
    "Events received on POST /api/v1/events (a body that is not JSON counts as one).",
)
EVENTS_ACCEPTED = Counter(
    "meterline_ingest_events_accepted_total",
    "Events acknowledged by Kafka (acks=all) and answered 204.",
)
REJECT_REASONS = (
    "invalid",
    "too_large",
    "unsupported_media_type",
    "unauthenticated",
    "forbidden",
    "kafka_unavailable",
    "not_acknowledged",
    "shed",
)
EVENTS_REJECTED = Counter(
    "meterline_ingest_events_rejected_total",
    f"Events refused, by reason ({', '.join(REJECT_REASONS)}).",
    ["reason"],
)
for _reason in REJECT_REASONS:  # at 0 from the start: increase() then sees the first refusal
    EVENTS_REJECTED.labels(_reason)
INGEST_IN_FLIGHT = Gauge(
    "meterline_ingest_requests_in_flight",
    "Ingest requests being read, validated or delivered right now.",
)
DELIVERY_SECONDS = Histogram(
    "meterline_ingest_delivery_seconds",
    "Time from handing a batch to the producer until Kafka acknowledged all of it.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
)


class PipelineCollector(Collector):
    """Gauges read at scrape time: consumer lag per partition, invoices stored.

    ``lag`` returns ``{partition: records not yet committed by the worker}``; ``invoices``
    returns ``(invoices stored, periods invoiced)``.  A source that fails is left out of
    that scrape (and logged) rather than failing the whole page."""

    def __init__(
        self,
        lag: Callable[[], dict[int, int]],
        invoices: Callable[[], tuple[int, int]],
    ) -> None:
        self._lag = lag
        self._invoices = invoices

    def collect(self) -> Iterator[Any]:
        try:
            per_partition = self._lag()
        except Exception:  # a scrape must not fail on one source
            log.warning("consumer lag unavailable for /metrics", exc_info=True)
        else:
            lag = GaugeMetricFamily(
                "meterline_stream_consumer_lag",
                "Records on the events topic not yet committed by the metering worker.",
                labels=["partition"],
            )
            for partition, value in sorted(per_partition.items()):
                lag.add_metric([str(partition)], value)
            yield lag
        try:
            stored, periods = self._invoices()
        except Exception:  # a scrape must not fail on one source
            log.warning("invoice counts unavailable for /metrics", exc_info=True)
        else:
            yield GaugeMetricFamily(
                "meterline_invoice_records", "Invoices stored in ClickHouse.", value=stored
            )
            yield GaugeMetricFamily(
                "meterline_invoice_periods",
                "Distinct billing periods with at least one stored invoice.",
                value=periods,
            )
