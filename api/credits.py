"""Prepaid credit over HTTP (pure): reading grant and void bodies, and shaping grants and
balances.  The rules are ``invoicing.credits``'; the handlers (``api.routes``) read and
append the ledger.

* ``POST /customers/{id}/grants`` — body as ``invoicing.grants.parse_grant`` reads it;
  JSON numbers are read as exact decimals.  Sending the same ``id`` again with the same
  terms answers the stored grant (a retried request grants once); other terms are a 409.
  A request without ``id`` may send an ``Idempotency-Key`` header instead: the grant id is
  then a digest of the customer and the key (:func:`keyed_grant_id`), so a retry of it
  grants once too.
* ``POST /customers/{id}/grants/{grantId}/void`` — ``{"reason": "..."}``.
* ``GET /customers/{id}/grants`` and ``/balance`` — as of ``?at=`` (default now): each
  grant's status and remaining credit; the balance per currency.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime
from decimal import Decimal

from api.problems import HttpProblem, invalid
from invoicing.credit_grants import Grant
from invoicing.credits import CreditBook, GrantState
from invoicing.grants import LAST_MS
from rating.money import round_money
from schemas.errors import InvalidInput
from schemas.timeutil import format_ms, from_ms, parse_instant, to_ms

__all__ = [
    "balance_json",
    "grant_state_json",
    "keyed_grant_id",
    "parse_at",
    "parse_body",
    "parse_void",
    "same_terms",
]

_KEY = re.compile(r"[\x21-\x7e]{1,255}")  # printable ASCII, no spaces


def keyed_grant_id(customer_id: str, key: str | None) -> str | None:
    """The grant id an ``Idempotency-Key`` header stands for: ``gr_`` and 20 hex digits of
    a SHA-256 of the customer and the key (``None`` without the header).  A key that is
    empty, longer than 255 characters or not printable ASCII is a 400 naming the header."""
    if key is None:
        return None
    if not _KEY.fullmatch(key):
        raise invalid(
            InvalidInput.single(
                "credit grant",
                "Idempotency-Key",
                "is not 1 to 255 printable ASCII characters without spaces",
                "send a unique token per grant, e.g. a UUID, and the same one on a retry",
            )
        )
    digest = hashlib.sha256(f"{customer_id}\n{key}".encode()).hexdigest()
    return f"gr_{digest[:20]}"


def parse_body(raw: bytes, content_type: str | None, what: str) -> object:
    """A JSON body, numbers as Decimal (never through a binary float)."""
    if (content_type or "").split(";")[0].strip().lower() != "application/json":
        raise HttpProblem(415, "Unsupported media type", "send Content-Type: application/json")
    try:
        return json.loads(raw, parse_float=Decimal)
    except (ValueError, UnicodeDecodeError):
        raise invalid(
            InvalidInput.single(what, "", "not valid JSON", 'send e.g. {"amount": "100.00"}')
        ) from None


def parse_void(payload: object) -> str:
    """The reason of a void, or 400 naming the field."""
    if isinstance(payload, dict) and set(payload) <= {"reason"}:
        reason = payload.get("reason")
        if isinstance(reason, str) and reason.strip() and len(reason) <= 500:
            return reason.strip()
    raise invalid(
        InvalidInput.single(
            "grant void",
            "reason",
            "missing, empty, longer than 500 characters, or beside other fields",
            'send {"reason": "refunded"}',
        )
    )


def parse_at(text: str | None, now: datetime) -> datetime:
    if not text:
        return now
    ms = parse_instant(text.strip().replace(" ", "+"))
    if ms is None or not 0 <= ms < LAST_MS:
        raise invalid(
            InvalidInput.single(
                "balance query",
                "at",
                "not an RFC 3339 time with an offset",
                "e.g. 2026-11-01T00:00Z",
            )
        )
    return from_ms(ms)


def same_terms(stored: Grant, asked: Grant) -> bool:
    """Whether a repeated grant request asks for the stored grant: the same terms, its
    time aside (and the effective time, when the request left it to default to now)."""
    effective = (
        stored.effective_at if asked.effective_at == asked.granted_at else asked.effective_at
    )
    return stored == replace(asked, granted_at=stored.granted_at, effective_at=effective)


def grant_state_json(state: GrantState, at: datetime) -> dict[str, object]:
    """A grant, its status and what remains of it as of ``at``."""
    grant = state.grant
    return {
        **grant.to_json(),
        "status": state.status(at),
        "consumed": round_money(state.consumed, grant.currency),
        "remaining": round_money(state.remaining(at), grant.currency),
        "voided": None if state.voided is None else round_money(state.voided, grant.currency),
        "at": format_ms(to_ms(at)),
    }


def balance_json(customer_id: str, book: CreditBook, at: datetime) -> dict[str, object]:
    """The customer's remaining credit per currency as of ``at``, and each grant's share."""
    states = book.states()
    per: dict[str, list[GrantState]] = {}
    for grant in book.of_customer(customer_id):
        per.setdefault(grant.currency, []).append(states[grant.grant_id])
    return {
        "customerId": customer_id,
        "at": format_ms(to_ms(at)),
        "balances": [
            {
                "currency": currency,
                "remaining": _sum(s.remaining(at) for s in group)
                + round_money(Decimal(0), currency),
                "grants": [
                    {"id": s.grant.grant_id, "status": s.status(at), "remaining": s.remaining(at)}
                    for s in group
                    if s.remaining(at) > 0
                ],
            }
            for currency, group in sorted(per.items())
        ],
    }


def _sum(values: Iterable[Decimal]) -> Decimal:
    return sum(values, Decimal(0))
