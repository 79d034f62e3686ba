"""Validating a grant request (pure): every problem at once, each with its field path
and the fix.  What a grant *does* is in ``invoicing.credits``.

Fields (``docs/credits.md``): ``amount`` and ``currency`` (required), ``id``, ``name``,
``priority`` (1–1000, lower first, default 10), ``effective_at`` (default: now),
``expires_at``, ``rollover {max_amount, until}``.  Numbers are exact: a JSON number is
read as a Decimal by the caller, a string is parsed as one; a binary float is refused.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from datetime import datetime
from decimal import Decimal, InvalidOperation

from invoicing.credit_grants import Grant, Rollover
from rating.money import is_currency, minor_units
from schemas.errors import InvalidInput, Problem
from schemas.timeutil import from_ms, parse_instant

__all__ = ["DEFAULT_NAME", "DEFAULT_PRIORITY", "GRANT_ID", "LAST_MS", "parse_grant"]

DEFAULT_PRIORITY = 10
DEFAULT_NAME = "Prepaid credit"
GRANT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
_FIELDS = {"id", "name", "amount", "currency", "priority", "effective_at", "expires_at", "rollover"}
_MAX_AMOUNT = Decimal("1e18")
WHAT = "credit grant"
LAST_MS = 253_402_300_800_000
"""10000-01-01T00:00Z: instants are from the epoch up to the year 9999."""


def parse_grant(
    payload: object,
    *,
    customer_id: str,
    billed_currencies: Collection[str],
    grant_id: str,
    now: datetime,
) -> Grant:
    """A :class:`Grant` from a request body, or :class:`InvalidInput` listing every
    problem.  ``billed_currencies``: the currencies the customer's subscriptions bill in;
    a grant in another currency could never pay an invoice, so it is refused here.
    ``grant_id`` is used when the body names none; ``now`` is the grant time."""
    if not isinstance(payload, Mapping):
        raise InvalidInput.single(WHAT, "", "not a JSON object", 'send {"amount": ..., ...}')
    problems: list[Problem] = [
        Problem(str(k), "unknown field", f"remove it; the fields are {sorted(_FIELDS)}")
        for k in payload
        if k not in _FIELDS
    ]
    currency = _currency(payload.get("currency"), billed_currencies, customer_id, problems)
    amount = _money(payload.get("amount"), "amount", currency, problems, required=True)
    effective = _instant(payload.get("effective_at"), "effective_at", problems) or now
    expires = _instant(payload.get("expires_at"), "expires_at", problems)
    if expires is not None and expires <= effective:
        problems.append(
            Problem("expires_at", "is not after effective_at", "give a later expiry, or none")
        )
    rollover = _rollover(payload.get("rollover"), currency, amount, expires, problems)
    priority = _priority(payload.get("priority"), problems)
    name = _text(payload.get("name"), "name", DEFAULT_NAME, 200, problems)
    chosen = _text(payload.get("id"), "id", grant_id, 64, problems)
    if not GRANT_ID.match(chosen):
        problems.append(
            Problem("id", "not a grant id", "letters, digits, '_', '.', '-', at most 64")
        )
    if problems or currency is None or amount is None:
        raise InvalidInput(WHAT, problems)
    return Grant(
        grant_id=chosen,
        customer_id=customer_id,
        currency=currency,
        amount=amount,
        priority=priority,
        effective_at=effective,
        expires_at=expires,
        rollover=rollover,
        name=name,
        granted_at=now,
    )


def _currency(
    value: object, billed: Collection[str], customer_id: str, problems: list[Problem]
) -> str | None:
    if value is None:
        problems.append(Problem("currency", "missing", "add an ISO 4217 code, e.g. USD"))
        return None
    if not isinstance(value, str) or not is_currency(value):
        problems.append(
            Problem("currency", f"unknown currency {value!r}", "use an ISO 4217 code, e.g. USD")
        )
        return None
    if value not in billed:
        have = ", ".join(sorted(billed)) or "no currency"
        problems.append(
            Problem(
                "currency",
                f"customer {customer_id!r} is billed in {have}, not {value}: a {value} grant "
                "could never pay one of its invoices",
                f"grant in {' or '.join(sorted(billed)) or 'its currency'}, or add a "
                f"{value} subscription first",
            )
        )
        return None
    return value


def _money(
    value: object, path: str, currency: str | None, problems: list[Problem], *, required: bool
) -> Decimal | None:
    if value is None:
        if required:
            problems.append(Problem(path, "missing", 'add an amount, e.g. "100.00"'))
        return None
    if isinstance(value, bool) or not isinstance(value, int | str | Decimal):
        problems.append(Problem(path, "not an exact number", 'send e.g. 100.00 or "100.00"'))
        return None
    try:
        number = Decimal(value)
    except InvalidOperation:
        problems.append(Problem(path, f"not a number: {value!r}", 'send e.g. "100.00"'))
        return None
    if not number.is_finite() or number <= 0 or number >= _MAX_AMOUNT:
        problems.append(Problem(path, "must be more than 0 and less than 1e18", "e.g. 100.00"))
        return None
    if currency is not None:
        digits = minor_units(currency)
        exponent = number.as_tuple().exponent
        assert isinstance(exponent, int)
        if -exponent > digits:
            problems.append(
                Problem(
                    path,
                    f"{value} has more decimals than {currency}'s {digits}",
                    f"give a whole amount of {currency}'s minor unit, e.g. "
                    f"{number.quantize(Decimal(1).scaleb(-digits), rounding='ROUND_DOWN')}",
                )
            )
            return None
        return number.quantize(Decimal(1).scaleb(-digits))
    return number


def _instant(value: object, path: str, problems: list[Problem]) -> datetime | None:
    if value is None:
        return None
    ms = parse_instant(value) if isinstance(value, str) else None
    if ms is None or not 0 <= ms < LAST_MS:
        problems.append(
            Problem(
                path,
                "not an RFC 3339 time with an offset, from 1970 to 9999",
                "e.g. 2026-12-01T00:00:00Z",
            )
        )
        return None
    return from_ms(ms)


def _rollover(
    value: object,
    currency: str | None,
    amount: Decimal | None,
    expires: datetime | None,
    problems: list[Problem],
) -> Rollover | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        problems.append(Problem("rollover", "not an object", 'send {"max_amount", "until"}'))
        return None
    for key in value:
        if key not in ("max_amount", "until"):
            problems.append(Problem(f"rollover.{key}", "unknown field", "remove it"))
    most = _money(value.get("max_amount"), "rollover.max_amount", currency, problems, required=True)
    until = _instant(value.get("until"), "rollover.until", problems)
    if value.get("until") is None:
        problems.append(Problem("rollover.until", "missing", "add when the rollover ends"))
    if expires is None:
        problems.append(
            Problem(
                "rollover", "a grant without expires_at has nothing to roll over", "add expires_at"
            )
        )
    elif until is not None and until <= expires:
        problems.append(Problem("rollover.until", "is not after expires_at", "give a later time"))
    if most is not None and amount is not None and most > amount:
        problems.append(
            Problem("rollover.max_amount", "exceeds the grant's amount", f"at most {amount}")
        )
    if most is None or until is None:
        return None
    return Rollover(most, until)


def _priority(value: object, problems: list[Problem]) -> int:
    if value is None:
        return DEFAULT_PRIORITY
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1000:
        problems.append(
            Problem("priority", "must be an integer from 1 to 1000", "e.g. 1 (used first)")
        )
        return DEFAULT_PRIORITY
    return value


def _text(value: object, path: str, default: str, longest: int, problems: list[Problem]) -> str:
    if value is None:
        return default
    if not isinstance(value, str) or not value.strip() or len(value) > longest:
        problems.append(
            Problem(path, f"must be a non-empty string of at most {longest}", "e.g. 'Welcome'")
        )
        return default
    return value.strip()
