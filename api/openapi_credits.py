"""The OpenAPI paths and schemas of prepaid credit (``api.credits``; ``docs/credits.md``),
assembled into the document by ``api.openapi`` and ``api.openapi_schemas``."""

from __future__ import annotations

from typing import Any

__all__ = ["credit_paths", "credit_schemas"]

_PROBLEM = {"$ref": "#/components/responses/Problem"}
_TIME = {"type": "string", "format": "date-time"}
_MONEY = {"type": "number", "description": "Exact decimal, in the currency's minor unit"}
_MONEY_IN = {
    "type": ["string", "number"],
    "description": "Exact decimal (a string, or a JSON number read as a decimal), at most "
    "the currency's minor unit",
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _param(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


_AT = {
    "name": "at",
    "in": "query",
    "schema": _TIME,
    "description": "The instant the balance is as of (default: now)",
}


_IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "schema": {"type": "string", "pattern": "^[\\x21-\\x7e]{1,255}$"},
    "description": "A unique token per grant (e.g. a UUID), sent again on a retry: the "
    "grant is made once. Ignored when the body names an id.",
}


def credit_paths() -> dict[str, Any]:
    grants = "/api/v1/customers/{customerId}/grants"
    return {
        grants: {
            "post": {
                "operationId": "grantCredit",
                "summary": "Grant prepaid credit to a customer (API keys only)",
                "description": "Refused with 400 naming the field and the fix when the "
                "currency is not one the customer's subscriptions bill in. Sending the same "
                "id again with the same terms answers the stored grant (200): a retried "
                "request grants once; other terms answer 409. Without an id, an "
                "Idempotency-Key header does the same: the grant id is derived from the "
                "customer and the key.",
                "parameters": [_param("customerId"), _IDEMPOTENCY_KEY],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("GrantRequest")}},
                },
                "responses": {
                    "201": _json(_ref("Grant"), "The grant"),
                    "200": _json(_ref("Grant"), "The grant, already made by this id"),
                    **dict.fromkeys(("400", "401", "403", "404", "409", "415"), _PROBLEM),
                },
            },
            "get": {
                "operationId": "listGrants",
                "summary": "A customer's grants, their status and what remains of each",
                "parameters": [_param("customerId"), _AT],
                "responses": {
                    "200": _json({"type": "array", "items": _ref("Grant")}, "Grants"),
                    **dict.fromkeys(("400", "401", "403", "404"), _PROBLEM),
                },
            },
        },
        grants + "/{grantId}/void": {
            "post": {
                "operationId": "voidGrant",
                "summary": "Void a grant: what remains is removed by a ledger entry (API keys "
                "only)",
                "parameters": [_param("customerId"), _param("grantId")],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "additionalProperties": False,
                                "required": ["reason"],
                                "properties": {"reason": {"type": "string", "minLength": 1}},
                            }
                        }
                    },
                },
                "responses": {
                    "200": _json(_ref("Grant"), "The voided grant"),
                    **dict.fromkeys(("400", "401", "403", "404", "409", "415"), _PROBLEM),
                },
            }
        },
        "/api/v1/customers/{customerId}/balance": {
            "get": {
                "operationId": "creditBalance",
                "summary": "A customer's remaining prepaid credit per currency",
                "parameters": [_param("customerId"), _AT],
                "responses": {
                    "200": _json(_ref("CreditBalance"), "The balance"),
                    **dict.fromkeys(("400", "401", "403", "404"), _PROBLEM),
                },
            }
        },
    }


def credit_schemas() -> dict[str, Any]:
    rollover_in = {
        "type": "object",
        "additionalProperties": False,
        "required": ["max_amount", "until"],
        "properties": {"max_amount": _MONEY_IN, "until": _TIME},
    }
    return {
        "GrantRequest": {
            "type": "object",
            "additionalProperties": False,
            "required": ["amount", "currency"],
            "properties": {
                "id": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.\\-]{0,63}$"},
                "name": {"type": "string", "maxLength": 200},
                "amount": _MONEY_IN,
                "currency": {"type": "string", "description": "ISO 4217"},
                "priority": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 10},
                "effective_at": _TIME,
                "expires_at": _TIME,
                "rollover": rollover_in,
            },
        },
        "Grant": {
            "type": "object",
            "required": ["id", "customerId", "currency", "amount", "status", "remaining"],
            "properties": {
                "id": {"type": "string"},
                "customerId": {"type": "string"},
                "name": {"type": "string"},
                "currency": {"type": "string"},
                "amount": _MONEY,
                "priority": {"type": "integer"},
                "effectiveAt": _TIME,
                "expiresAt": {"type": ["string", "null"], "format": "date-time"},
                "rollover": {
                    "type": ["object", "null"],
                    "properties": {"maxAmount": _MONEY, "until": _TIME},
                },
                "grantedAt": _TIME,
                "status": {
                    "type": "string",
                    "enum": ["scheduled", "active", "rollover", "expired", "voided"],
                },
                "consumed": _MONEY,
                "remaining": _MONEY,
                "voided": {"type": ["number", "null"]},
                "at": _TIME,
            },
        },
        "CreditBalance": {
            "type": "object",
            "required": ["customerId", "at", "balances"],
            "properties": {
                "customerId": {"type": "string"},
                "at": _TIME,
                "balances": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["currency", "remaining", "grants"],
                        "properties": {
                            "currency": {"type": "string"},
                            "remaining": _MONEY,
                            "grants": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "properties": {
                                        "id": {"type": "string"},
                                        "status": {"type": "string"},
                                        "remaining": _MONEY,
                                    },
                                },
                            },
                        },
                    },
                },
            },
        },
    }
