"""The OpenAPI path and schema of the entitlement check (``api.entitlements``;
``docs/api.md``, *Entitlements*), assembled into the document by ``api.openapi`` and
``api.openapi_schemas``."""

from __future__ import annotations

from typing import Any

__all__ = ["entitlement_paths", "entitlement_schemas"]

_PROBLEM = {"$ref": "#/components/responses/Problem"}
_TIME = {"type": "string", "format": "date-time"}
_DECIMAL = {"type": "string", "description": "Exact decimal"}
_MAYBE = {"type": ["string", "null"], "description": "Exact decimal"}


def _problem(description: str) -> dict[str, Any]:
    schema = {"$ref": "#/components/schemas/Problem"}
    return {"description": description, "content": {"application/problem+json": {"schema": schema}}}


def entitlement_paths() -> dict[str, Any]:
    return {
        "/api/v1/customers/{customerId}/entitlements/{feature}": {
            "get": {
                "operationId": "checkEntitlement",
                "summary": "Whether a customer may use a feature now, its usage this period, "
                "the limit, what remains, and its prepaid balance",
                "description": "For pre-authorising a request. The plan of the subscription "
                "whose billing period holds now decides access: a metered feature allows "
                "usage below its limit (none at the limit); with quantity, only if usage + "
                "quantity <= limit. The balance is the prepaid credit in effect in the "
                "subscription's currency less the period's charges so far (null without "
                "credit). A customer token may check only its own customer.",
                "parameters": [
                    {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                    for name in ("customerId", "feature")
                ]
                + [
                    {
                        "name": "quantity",
                        "in": "query",
                        "schema": {"type": "string", "pattern": "^[0-9]*\\.?[0-9]+$"},
                        "description": "May the customer use this much more? An exact decimal "
                        "above 0; metered features only",
                    }
                ],
                "responses": {
                    "200": {
                        "description": "The answer (has_access false with a reason when not)",
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/Entitlement"}
                            }
                        },
                    },
                    **dict.fromkeys(("400", "401", "403", "404"), _PROBLEM),
                    "422": _problem("The customer's usage or spend cannot be computed as billed"),
                    "503": {
                        "description": "ClickHouse unavailable",
                        "headers": {"Retry-After": {"schema": {"type": "integer"}}},
                        "content": {
                            "application/problem+json": {
                                "schema": {"$ref": "#/components/schemas/Problem"}
                            }
                        },
                    },
                },
            }
        }
    }


def entitlement_schemas() -> dict[str, Any]:
    return {
        "Entitlement": {
            "type": "object",
            "required": ["feature", "kind", "customer", "has_access", "reason", "as_of"],
            "properties": {
                "feature": {"type": "string"},
                "kind": {"type": "string", "enum": ["metered", "boolean"]},
                "customer": {"type": "string"},
                "subscription": {"type": ["string", "null"]},
                "plan": {"type": ["string", "null"]},
                "has_access": {"type": "boolean"},
                "reason": {
                    "type": ["string", "null"],
                    "enum": ["no_current_period", "no_plan_access", "limit_reached", None],
                },
                "detail": {"type": ["string", "null"]},
                "period": {
                    "type": ["object", "null"],
                    "properties": {"start": _TIME, "end": _TIME},
                },
                "as_of": _TIME,
                "meter": {"type": ["string", "null"]},
                "usage": _MAYBE,
                "quantity": _MAYBE,
                "limit": {**_MAYBE, "description": "Exact decimal; null: unlimited or boolean"},
                "unlimited": {"type": "boolean"},
                "remaining": _MAYBE,
                "balance": {
                    "type": ["object", "null"],
                    "required": [
                        "currency",
                        "credit_granted",
                        "credit_remaining",
                        "spend_so_far",
                        "remaining",
                    ],
                    "properties": {
                        "currency": {"type": "string"},
                        "credit_granted": _DECIMAL,
                        "credit_remaining": _DECIMAL,
                        "spend_so_far": _DECIMAL,
                        "remaining": {
                            **_DECIMAL,
                            "description": "credit_remaining - spend_so_far (negative: the "
                            "rest will be invoiced)",
                        },
                    },
                },
            },
        }
    }
