"""The component schemas of the OpenAPI document (``api.openapi``): the shapes of events,
meter queries, customers and invoices that the paths refer to by ``$ref``."""

from __future__ import annotations

from typing import Any

from api.openapi_credits import credit_schemas
from api.openapi_entitlements import entitlement_schemas
from schemas.timeutil import EVENT_TIME_RANGE

__all__ = ["TIME", "ref", "schemas"]

TIME = {"type": "string", "format": "date-time"}


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def schemas() -> dict[str, Any]:
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
                "time": {
                    **TIME,
                    "description": f"RFC 3339 with a UTC offset, {EVENT_TIME_RANGE}",
                },
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
                "windowStart": TIME,
                "windowEnd": TIME,
                "subject": {"type": ["string", "null"]},
                "groupBy": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        },
        "MeterQueryResult": {
            "type": "object",
            "required": ["from", "to", "windowSize", "data"],
            "properties": {
                "from": TIME,
                "to": TIME,
                "windowSize": {
                    "type": ["string", "null"],
                    "enum": ["MINUTE", "HOUR", "DAY", "MONTH", None],
                },
                "data": {"type": "array", "items": ref("MeterQueryRow")},
            },
        },
        "LineEvents": {
            "type": "object",
            "required": ["invoice_id", "line_no", "events_digest", "events", "next"],
            "properties": {
                "invoice_id": {"type": "string"},
                "line_no": {"type": "integer"},
                "events_digest": {"type": "string"},
                "next": {"type": ["string", "null"]},
                "events": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["source", "id", "subject", "time", "ingested_at", "event"],
                        "properties": {
                            "source": {"type": "string"},
                            "id": {"type": "string"},
                            "subject": {"type": "string"},
                            "time": TIME,
                            "ingested_at": TIME,
                            "event": {
                                "type": "string",
                                "description": "The stored CloudEvents JSON text, byte for byte",
                            },
                            "hash": {"type": "string"},
                        },
                    },
                },
            },
        },
        "Invoice": {
            "type": "object",
            "description": "The stored invoice document (schema meterline.invoice/4); "
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
                        "required": ["id", "plan", "currency", "usage", "estimate", "credit"],
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
                            "credit": {
                                "type": "array",
                                "description": "The customer's prepaid credit per currency "
                                "of its grants (empty without grants); money as decimal "
                                "strings in the currency's minor unit",
                                "items": {
                                    "type": "object",
                                    "required": ["currency", "remaining", "afterEstimate"],
                                    "properties": {
                                        "currency": {"type": "string"},
                                        "remaining": {
                                            "type": "string",
                                            "description": "The balance now, as "
                                            "/customers/{customerId}/balance gives it",
                                        },
                                        "afterEstimate": {
                                            "type": ["string", "null"],
                                            "description": "The credit in effect now less "
                                            "this period's estimated charges in the currency "
                                            "(negative: the rest will be paid); null when no "
                                            "grant is in effect or an estimate is not priced",
                                        },
                                    },
                                },
                            },
                        },
                    },
                },
            },
        },
        **quote_schemas(),
        **credit_schemas(),
        **entitlement_schemas(),
        **delivery_schemas(),
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


def delivery_schemas() -> dict[str, Any]:
    """The webhook delivery log's page (``api.deliveries``)."""
    return {
        "WebhookDeliveries": {
            "type": "object",
            "required": ["deliveries", "next"],
            "properties": {
                "deliveries": {"type": "array", "items": ref("WebhookDelivery")},
                "next": {
                    "type": ["string", "null"],
                    "description": "Pass as after for the next page; null on the last",
                },
            },
        },
        "WebhookDelivery": {
            "type": "object",
            "description": "One attempt to POST a notification to an endpoint",
            "required": [
                "notification_id",
                "type",
                "endpoint_id",
                "url",
                "attempt",
                "status_code",
                "error",
                "outcome",
                "at",
                "duration_ms",
            ],
            "properties": {
                "notification_id": {"type": "string"},
                "type": {"type": "string"},
                "endpoint_id": {"type": "string"},
                "url": {"type": "string"},
                "attempt": {"type": "integer", "minimum": 1},
                "status_code": {
                    "type": ["integer", "null"],
                    "description": "The endpoint's HTTP status; null when it did not answer",
                },
                "error": {"type": "string"},
                "outcome": {"type": "string", "enum": ["delivered", "retrying", "failed"]},
                "at": TIME,
                "duration_ms": {"type": "integer"},
            },
        },
    }


def quote_schemas() -> dict[str, Any]:
    """The quote's request and answer (``api.quotes``); lines as ``rating`` renders them."""
    decimal = {"type": "string", "pattern": r"^-?[0-9]+(\.[0-9]+)?$"}
    quantity = {
        "description": "An exact quantity, 0 or more: a decimal string or a JSON number "
        "(read exactly, never as a float); at most 29 digits before the point, 18 after",
        "oneOf": [{"type": "string"}, {"type": "number", "minimum": 0}],
    }
    return {
        "QuoteRequest": {
            "type": "object",
            "additionalProperties": False,
            "required": ["usage"],
            "properties": {
                "usage": {
                    "type": "object",
                    "description": "Proposed usage per meter the customer's plan prices",
                    "additionalProperties": {
                        "oneOf": [
                            quantity,
                            {
                                "type": "object",
                                "additionalProperties": False,
                                "description": "Percentage charges: each event's amount",
                                "properties": {
                                    "quantity": quantity,
                                    "events": {"type": "array", "items": quantity},
                                },
                            },
                        ]
                    },
                },
                "subscription": {
                    "type": ["string", "null"],
                    "minLength": 1,
                    "description": "Default: the subscription whose period holds now",
                },
            },
        },
        "Quote": {
            "type": "object",
            "required": [
                "customer",
                "subscription",
                "plan",
                "currency",
                "minor_units",
                "rounding",
                "period",
                "as_of",
                "usage",
                "proposed",
                "total_so_far",
                "total_with_proposed",
                "marginal_cost",
                "lines",
            ],
            "properties": {
                "customer": {"type": "string"},
                "subscription": {"type": "string"},
                "plan": {"type": "string"},
                "currency": {"type": "string"},
                "minor_units": {"type": "integer"},
                "rounding": {"type": "string"},
                "period": {
                    "type": "object",
                    "required": ["start", "end"],
                    "properties": {"start": TIME, "end": TIME},
                },
                "as_of": TIME,
                "usage": {"type": "object", "additionalProperties": decimal},
                "proposed": {"type": "object", "additionalProperties": decimal},
                "total_so_far": decimal,
                "total_with_proposed": decimal,
                "marginal_cost": decimal,
                "lines": {"type": "array", "items": ref("QuoteLine")},
            },
        },
        "QuoteLine": {
            "type": "object",
            "description": "One priced charge of the pricing with the proposed usage",
            "required": ["charge_id", "model", "quantity", "amount", "unrounded_amount"],
            "properties": {
                "charge_id": {"type": "string"},
                "name": {"type": "string"},
                "meter": {"type": ["string", "null"]},
                "model": {"type": "string"},
                "currency": {"type": "string"},
                "quantity": decimal,
                "tiers": {"type": "array", "items": {"type": "object"}},
                "components": {"type": "array", "items": {"type": "object"}},
                "flat_fee": decimal,
                "unrounded_amount": decimal,
                "amount": decimal,
                "description": {"type": "string"},
            },
        },
    }
