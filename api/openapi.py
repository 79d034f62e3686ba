"""The OpenAPI 3.1 document of the service, written by hand and checked in as
``docs/openapi.json`` (a test keeps the two identical; regenerate with
``python -m api openapi > docs/openapi.json``).  It is served at ``/api/v1/openapi.json``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["document"]

_PROBLEM = {"$ref": "#/components/responses/Problem"}
_ERRORS = {"401": _PROBLEM, "403": _PROBLEM}
_TIME = {"type": "string", "format": "date-time"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _slug() -> dict[str, Any]:
    return {"name": "slug", "in": "path", "required": True, "schema": {"type": "string"}}


def _schemas() -> dict[str, Any]:
    nullable_str = {"type": ["string", "null"]}
    return {
        "Event": {
            "type": "object",
            "description": "A CloudEvents 1.0 usage event. (source, id) identifies it: a retry "
            "with the same pair is counted once.",
            "additionalProperties": False,
            "required": ["id", "source", "type", "subject", "time"],
            "properties": {
                "specversion": {"type": "string", "enum": ["1.0"]},
                "id": {"type": "string", "minLength": 1, "maxLength": 512},
                "source": {"type": "string", "minLength": 1, "maxLength": 512},
                "type": {"type": "string", "minLength": 1, "maxLength": 512},
                "subject": {"type": "string", "minLength": 1, "maxLength": 512},
                "time": {**_TIME, "description": "RFC 3339 with a UTC offset"},
                "data": {"type": ["object", "null"]},
                "datacontenttype": nullable_str,
                "dataschema": nullable_str,
            },
        },
        "Meter": {
            "type": "object",
            "required": ["id", "slug", "aggregation", "eventType", "groupBy"],
            "properties": {
                "id": {"type": "string"},
                "slug": {"type": "string"},
                "description": nullable_str,
                "aggregation": {
                    "type": "string",
                    "enum": ["SUM", "COUNT", "UNIQUE_COUNT", "MAX", "MIN", "AVG", "LATEST"],
                },
                "eventType": {"type": "string"},
                "valueProperty": nullable_str,
                "groupBy": {"type": "object", "additionalProperties": {"type": "string"}},
                "unit": nullable_str,
            },
        },
        "MeterQueryRow": {
            "type": "object",
            "required": ["value", "windowStart", "windowEnd", "subject", "groupBy"],
            "properties": {
                "value": {
                    "type": "number",
                    "description": "Exact: written from the stored decimal's digits "
                    "(up to 29 integer and 9 fractional digits), never through a float.",
                },
                "windowStart": _TIME,
                "windowEnd": _TIME,
                "subject": {"type": ["string", "null"]},
                "groupBy": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        },
        "MeterQueryResult": {
            "type": "object",
            "required": ["from", "to", "windowSize", "data"],
            "properties": {
                "from": _TIME,
                "to": _TIME,
                "windowSize": {
                    "type": ["string", "null"],
                    "enum": ["MINUTE", "HOUR", "DAY", "MONTH", None],
                },
                "data": {"type": "array", "items": _ref("MeterQueryRow")},
            },
        },
        "Invoice": {
            "type": "object",
            "description": "The stored invoice document (schema meterline.invoice/1); "
            "money as decimal strings.",
            "required": ["invoice_id", "customer_id", "currency", "period", "lines", "total"],
            "properties": {
                "schema": {"type": "string"},
                "invoice_id": {"type": "string"},
                "customer_id": {"type": "string"},
                "plan": {"type": "string"},
                "currency": {"type": "string"},
                "period": {"type": "object"},
                "lines": {"type": "array", "items": {"type": "object"}},
                "total": {"type": "string"},
                "created_at": {"type": "string"},
            },
        },
        "CustomerUsage": {
            "type": "object",
            "required": ["period", "customers"],
            "properties": {
                "period": {"type": "object"},
                "customers": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["id", "plan", "currency", "usage", "estimate"],
                        "properties": {
                            "id": {"type": "string"},
                            "subjects": {"type": "array", "items": {"type": "string"}},
                            "plan": {"type": "string"},
                            "currency": {"type": "string"},
                            "usage": {"type": "object", "additionalProperties": {"type": "number"}},
                            "estimate": {
                                "type": ["object", "null"],
                                "description": "Priced by the rating engine on the usage "
                                "stored so far; money as decimal strings",
                                "properties": {
                                    "total": {"type": "string"},
                                    "lines": {"type": "array", "items": {"type": "object"}},
                                },
                            },
                            "error": nullable_str,
                        },
                    },
                },
            },
        },
        "Problem": {
            "type": "object",
            "required": ["type", "title", "status", "detail"],
            "properties": {
                "type": {"type": "string"},
                "title": {"type": "string"},
                "status": {"type": "integer"},
                "detail": {"type": "string"},
                "problems": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["path", "message", "fix"],
                        "properties": {
                            "path": {"type": "string"},
                            "message": {"type": "string"},
                            "fix": {"type": "string"},
                        },
                    },
                },
            },
        },
    }


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
            "schemas": _schemas(),
            "responses": {
                "Problem": {
                    "description": "Problem details (RFC 9457)",
                    "content": {"application/problem+json": {"schema": _ref("Problem")}},
                }
            },
        },
    }
