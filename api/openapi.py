"""The OpenAPI 3.1 document of the service, written by hand and checked in as
``docs/openapi.json`` (a test keeps the two identical; regenerate with
``python -m api openapi > docs/openapi.json``).  It is served at ``/api/v1/openapi.json``.
"""

from __future__ import annotations

from typing import Any

from api.openapi_credits import credit_paths
from api.openapi_entitlements import entitlement_paths
from api.openapi_schemas import ref as _ref
from api.openapi_schemas import schemas

__all__ = ["document"]

_PROBLEM = {"$ref": "#/components/responses/Problem"}
_ERRORS = {"401": _PROBLEM, "403": _PROBLEM}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _slug() -> dict[str, Any]:
    return {"name": "slug", "in": "path", "required": True, "schema": {"type": "string"}}


def _paths() -> dict[str, Any]:
    event, events = _ref("Event"), {"type": "array", "items": _ref("Event")}
    rfc_time = {"type": "string", "format": "date-time"}
    return {
        "/api/v1/events": {
            "post": {
                "operationId": "ingestEvents",
                "summary": "Ingest usage events; answers 204 only after Kafka acknowledged "
                "every event (acks=all)",
                "description": "Validation is all-or-nothing: if any event of a batch is "
                "invalid, none is sent and the 400 lists every problem with the event's "
                "index. Delivery is at-least-once per event: on 503 retry the whole batch; "
                "events that did land are deduplicated by (source, id). Under a flood the "
                "service sheds load with 429 before reading the body: nothing of that "
                "request was accepted; retry after Retry-After.",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/cloudevents+json": {"schema": event},
                        "application/cloudevents-batch+json": {"schema": events},
                        "application/json": {"schema": {"oneOf": [event, events]}},
                    },
                },
                "responses": {
                    "204": {"description": "Every event acknowledged by Kafka"},
                    "400": _PROBLEM,
                    **_ERRORS,
                    "413": _PROBLEM,
                    "415": _PROBLEM,
                    "429": {
                        "description": "Too many ingest requests in progress; nothing was accepted",
                        "headers": {"Retry-After": {"schema": {"type": "integer"}}},
                        "content": {"application/problem+json": {"schema": _ref("Problem")}},
                    },
                    "503": {
                        "description": "Kafka unavailable or did not acknowledge in time",
                        "headers": {"Retry-After": {"schema": {"type": "integer"}}},
                        "content": {"application/problem+json": {"schema": _ref("Problem")}},
                    },
                },
            }
        },
        "/api/v1/meters": {
            "get": {
                "operationId": "listMeters",
                "responses": {
                    "200": _json({"type": "array", "items": _ref("Meter")}, "Meters"),
                    **_ERRORS,
                },
            }
        },
        "/api/v1/meters/{slug}": {
            "get": {
                "operationId": "getMeter",
                "parameters": [_slug()],
                "responses": {"200": _json(_ref("Meter"), "A meter"), **_ERRORS, "404": _PROBLEM},
            }
        },
        "/api/v1/meters/{slug}/subjects": {
            "get": {
                "operationId": "listMeterSubjects",
                "parameters": [_slug()],
                "responses": {
                    "200": _json(
                        {"type": "array", "items": {"type": "string"}}, "Subjects with usage"
                    ),
                    **_ERRORS,
                    "404": _PROBLEM,
                },
            }
        },
        "/api/v1/meters/{slug}/query": {
            "get": {
                "operationId": "queryMeter",
                "parameters": [
                    _slug(),
                    {"name": "from", "in": "query", "schema": rfc_time},
                    {"name": "to", "in": "query", "schema": rfc_time},
                    {
                        "name": "windowSize",
                        "in": "query",
                        "schema": {"type": "string", "enum": ["MINUTE", "HOUR", "DAY", "MONTH"]},
                    },
                    {
                        "name": "windowTimeZone",
                        "in": "query",
                        "schema": {"type": "string", "default": "UTC"},
                    },
                    {
                        "name": "aggregate",
                        "in": "query",
                        "description": "Meterline extension: `total` merges all subjects into "
                        "one row per window (and group), exactly for every aggregation; "
                        "`subject` is then null",
                        "schema": {"type": "string", "enum": ["subject", "total"]},
                    },
                    {
                        "name": "top",
                        "in": "query",
                        "description": "Meterline extension: only the N subjects with the "
                        "highest value over the range (no windowSize)",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
                    },
                    {
                        "name": "subject",
                        "in": "query",
                        "explode": True,
                        "schema": {"type": "array", "items": {"type": "string"}},
                    },
                    {
                        "name": "groupBy",
                        "in": "query",
                        "explode": True,
                        "schema": {"type": "array", "items": {"type": "string"}},
                    },
                    {
                        "name": "filterGroupBy",
                        "in": "query",
                        "style": "deepObject",
                        "explode": True,
                        "schema": {"type": "object", "additionalProperties": {"type": "string"}},
                    },
                ],
                "responses": {
                    "200": {
                        "description": "Meter values per window, subject and group",
                        "content": {
                            "application/json": {"schema": _ref("MeterQueryResult")},
                            "text/csv": {"schema": {"type": "string"}},
                        },
                    },
                    "400": _PROBLEM,
                    **_ERRORS,
                    "404": _PROBLEM,
                },
            }
        },
        "/api/v1/customers": {
            "get": {
                "operationId": "listCustomerUsage",
                "summary": "Usage and estimated charges of the current period per customer",
                "responses": {"200": _json(_ref("CustomerUsage"), "Customers"), **_ERRORS},
            }
        },
        "/api/v1/customers/{customerId}/quote": {"post": _quote()},
        **credit_paths(),
        **entitlement_paths(),
        "/api/v1/invoices": {
            "get": {
                "operationId": "listInvoices",
                "parameters": [
                    {"name": "customer", "in": "query", "schema": {"type": "string"}},
                    {
                        "name": "from",
                        "in": "query",
                        "schema": rfc_time,
                        "description": "Invoices whose period starts at or after this time",
                    },
                    {
                        "name": "to",
                        "in": "query",
                        "schema": rfc_time,
                        "description": "Invoices whose period starts before this time",
                    },
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {
                            "type": "integer",
                            "minimum": 1,
                            "maximum": 1000,
                            "default": 100,
                        },
                    },
                ],
                "responses": {
                    "200": _json({"type": "array", "items": _ref("Invoice")}, "Invoices"),
                    "400": _PROBLEM,
                    **_ERRORS,
                },
            }
        },
        "/api/v1/invoices/{invoiceId}": {
            "get": {
                "operationId": "getInvoice",
                "parameters": [
                    {
                        "name": "invoiceId",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                    }
                ],
                "responses": {
                    "200": {
                        "description": "The invoice, as JSON or (Accept: text/html) a page",
                        "content": {
                            "application/json": {"schema": _ref("Invoice")},
                            "text/html": {"schema": {"type": "string"}},
                        },
                    },
                    **_ERRORS,
                    "404": _PROBLEM,
                },
            }
        },
        "/api/v1/invoices/{invoiceId}/lines/{lineNo}/events": {"get": _line_events()},
        "/api/v1/notifications/deliveries": {"get": _deliveries()},
    }


def _deliveries() -> dict[str, Any]:
    return {
        "operationId": "listWebhookDeliveries",
        "summary": "The webhook delivery log: one entry per attempt, newest first (API keys only)",
        "parameters": [
            {
                "name": "notification",
                "in": "query",
                "schema": {"type": "string"},
                "description": "Only this notification's attempts (its id, the webhook-id)",
            },
            {
                "name": "outcome",
                "in": "query",
                "schema": {"type": "string", "enum": ["delivered", "retrying", "failed"]},
            },
            {
                "name": "limit",
                "in": "query",
                "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
            },
            {
                "name": "after",
                "in": "query",
                "schema": {"type": "string"},
                "description": "The previous page's next cursor",
            },
        ],
        "responses": {
            "200": _json(_ref("WebhookDeliveries"), "One page of the delivery log"),
            "400": _PROBLEM,
            **_ERRORS,
        },
    }


def _line_events() -> dict[str, Any]:
    return {
        "operationId": "listInvoiceLineEvents",
        "summary": "The events an invoice line bills, to recompute its digest and amount",
        "parameters": [
            {"name": "invoiceId", "in": "path", "required": True, "schema": {"type": "string"}},
            {
                "name": "lineNo",
                "in": "path",
                "required": True,
                "schema": {"type": "integer", "minimum": 1},
            },
            {
                "name": "limit",
                "in": "query",
                "schema": {"type": "integer", "minimum": 1, "maximum": 5000, "default": 500},
            },
            {
                "name": "after",
                "in": "query",
                "schema": {"type": "string"},
                "description": "The previous page's next cursor",
            },
        ],
        "responses": {
            "200": _json(_ref("LineEvents"), "One page of the line's events, by (source, id)"),
            "400": _PROBLEM,
            **_ERRORS,
            "404": _PROBLEM,
        },
    }


def _quote() -> dict[str, Any]:
    return {
        "operationId": "quoteCustomerUsage",
        "summary": "What proposed usage would cost a customer in its current billing period",
        "description": "Prices the current period's usage so far and the same plus the "
        "proposed usage with the rating engine, each line rounded once as on an invoice; "
        "marginal_cost is the difference of the two rounded totals. Nothing is stored or "
        "emitted. A customer token may quote only its own customer.",
        "parameters": [
            {"name": "customerId", "in": "path", "required": True, "schema": {"type": "string"}}
        ],
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _ref("QuoteRequest")}},
        },
        "responses": {
            "200": _json(_ref("Quote"), "The period priced without and with the usage"),
            "400": _PROBLEM,
            **_ERRORS,
            "404": _PROBLEM,
            "409": {
                "description": "The customer has no billing period holding now",
                "content": {"application/problem+json": {"schema": _ref("Problem")}},
            },
            "413": _PROBLEM,
            "415": _PROBLEM,
            "422": {
                "description": "The customer cannot be priced as configured",
                "content": {"application/problem+json": {"schema": _ref("Problem")}},
            },
            "503": {
                "description": "ClickHouse unavailable",
                "headers": {"Retry-After": {"schema": {"type": "integer"}}},
                "content": {"application/problem+json": {"schema": _ref("Problem")}},
            },
        },
    }


def document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Meterline API",
            "version": "1.0.0",
            "description": "Usage ingest (CloudEvents), meter queries in OpenMeter v1's "
            "shapes, customer usage and invoices. See docs/api.md.",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": _paths(),
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API key (namespace-wide) or a customer token "
                    "(read-only, one customer)",
                }
            },
            "schemas": schemas(),
            "responses": {
                "Problem": {
                    "description": "Problem details (RFC 9457)",
                    "content": {"application/problem+json": {"schema": _ref("Problem")}},
                }
            },
        },
    }
