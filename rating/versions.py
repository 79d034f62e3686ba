"""Rate-card versions: a card is identified by what it prices, so a version can never change.

:func:`card_version` is a digest of the card's *canonical form* (:func:`canonical_card`):
the validated plans, currencies and charges, every number in its shortest exact text,
keys sorted.  Comments, key order, quoting and ``0.10`` against ``0.1`` do not make a new
version; any change to a price, a tier, a charge's id or name, or the order of charges
(the order of invoice lines) does.

Why content addressing and not a counter: a version that has priced an invoice must stay
as it was, and with the digest as its name there is nothing to keep in step — editing the
card file makes a new version by construction, two billing runs can never give one
number to two different cards, and anyone holding an invoice and a card can check that
this card priced it.  The ledger stores each version's canonical document the first time
it prices an invoice (``schemas.storage.rate_cards_table``), so the exact prices of any
invoice can be read back and loaded again: ``load_rate_card_data(json.loads(document))``
gives a card of the same version.
"""

from __future__ import annotations

import dataclasses
import hashlib
from decimal import Context, Decimal
from typing import Any

import orjson

from rating.card import Charge, Plan, RateCard

__all__ = ["VERSION_PREFIX", "canonical_card", "card_document", "card_version"]

VERSION_PREFIX = "rc_"
_WIDE = Context(prec=100)


def canonical_card(card: RateCard) -> dict[str, Any]:
    """The card in its file shape, with only what prices: loadable as a rate card."""
    return {"plans": {name: _plan(plan) for name, plan in sorted(card.plans.items())}}


def _plan(plan: Plan) -> dict[str, Any]:
    out: dict[str, Any] = {
        currency: {"charges": [_charge(charge) for charge in charges]}
        for currency, charges in sorted(plan.prices.items())
    }
    if plan.proration != "none":  # the default leaves versions of earlier cards as they were
        out["proration"] = plan.proration
    return out


def card_document(card: RateCard) -> bytes:
    """The canonical form as JSON bytes (sorted keys, numbers as exact strings)."""
    return orjson.dumps(canonical_card(card), option=orjson.OPT_SORT_KEYS)


def card_version(card: RateCard) -> str:
    """``rc_`` and the first 16 hex digits of the SHA-256 of :func:`card_document`."""
    return VERSION_PREFIX + hashlib.sha256(card_document(card)).hexdigest()[:16]


def _charge(charge: Charge) -> dict[str, Any]:
    out: dict[str, Any] = {"id": charge.id, "name": charge.name, "model": charge.kind}
    if charge.meter is not None:
        out["meter"] = charge.meter
    for field in dataclasses.fields(charge.model):
        raw = getattr(charge.model, field.name)
        if raw is None or raw == () or raw == field.default:  # defaults say nothing
            continue
        out[field.name] = _value(raw)
    return out


def _value(value: object) -> Any:
    if isinstance(value, Decimal):
        return _number(value)
    if isinstance(value, tuple):
        return [_value(item) for item in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _value(getattr(value, f.name)) for f in dataclasses.fields(value)}
    return value


def _number(value: Decimal) -> str:
    """The shortest exact text: ``0.10`` and ``1E+1`` are ``0.1`` and ``10``."""
    return format(value.normalize(_WIDE), "f")
