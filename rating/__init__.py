"""Rating: price metered usage with a rate card, exactly.

The contract other packages use::

    from rating import load_rate_card, rate_plan, Usage

    card = load_rate_card("rate_card.yaml", known_meters={"api_calls", "payments"})
    rated = rate_plan(card, plan="pro", currency="USD",
                      usage={"api_calls": Usage(quantity=Decimal("1234.5"))})
    rated.total == sum(line.amount for line in rated.lines)   # always, exactly

Layout: ``money`` (currencies, the one rounding rule), ``tiers`` (boundary convention),
``models`` and ``percentage`` (one class per pricing model), ``specs`` (validation of
each model's parameters), ``registry`` (kind -> model and spec), ``card`` (loading rate
cards), ``versions`` (a card's version: a digest of what it prices), ``usage``,
``engine`` (``rate_plan``), ``lines`` (the priced breakdown) and ``cli``
(``python -m rating quote``).  Everything is pure: no I/O beyond reading the
files it is pointed at.  Errors are :class:`schemas.errors.InvalidInput` (bad input,
every problem at once) and :class:`schemas.errors.InvariantViolated`.
"""

from rating.card import Charge, Plan, RateCard, load_rate_card, load_rate_card_data
from rating.engine import RatedPlan, rate_plan
from rating.lines import Component, Line, Pricing, TierBreakdown
from rating.money import currency_codes, minor_units, round_money
from rating.registry import REGISTRY, kinds
from rating.tiers import Tier
from rating.usage import Usage, load_usage_file
from rating.versions import canonical_card, card_document, card_version

__all__ = [
    "REGISTRY",
    "Charge",
    "Component",
    "Line",
    "Plan",
    "Pricing",
    "RateCard",
    "RatedPlan",
    "Tier",
    "TierBreakdown",
    "Usage",
    "canonical_card",
    "card_document",
    "card_version",
    "currency_codes",
    "kinds",
    "load_rate_card",
    "load_rate_card_data",
    "load_usage_file",
    "minor_units",
    "rate_plan",
    "round_money",
]
