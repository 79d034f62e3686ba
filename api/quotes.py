"""A quote (pure): what proposed usage would cost a customer in its current billing period.

Pre-authorisation asks "if this customer uses N more units of these meters now, what does
it cost?".  The answer prices the period twice with the rating engine
(:func:`rating.rate_plan`): the usage stored so far, then that usage plus the proposed
usage; the marginal cost is the second *rounded* total minus the first.  That is what
the period's invoice would grow by if the usage were metered now: tiers already filled
stay filled, and each line is rounded once, as on the invoice.  Pricing the proposed
usage on its own would get both wrong.

Usage so far is the customer's subjects added up by billing's one rule
(:func:`invoicing.usage.customer_usage`), over the subscription period that holds now
(the one billing will invoice; :meth:`Schedule.period_containing`).  The handler reads it
with the estimates' reader.  Nothing is stored or emitted.

What a caller gets when a quote cannot be given:

* 400: the body's shape (not JSON, unknown fields, a key written twice, an unknown
  subscription), then, once the subscription is known, every problem of its quantities
  and meters at once, by rating's own rules (:func:`proposed_usage`);
* 409: the customer has no subscription period holding now (ended, not started);
* 422: the customer cannot be priced as configured (no price list in its currency, a MAX
  meter over several subjects, a percentage charge without event amounts, an amount the
  ledger cannot hold).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, localcontext
from typing import Any
from zoneinfo import ZoneInfo

from api.estimates import period_json
from api.ingest import JSON, decode_json, media_type
from api.problems import HttpProblem, invalid
from api.query import decimal_text
from invoicing.customers import Customer
from invoicing.periods import Period
from invoicing.usage import customer_usage
from rating import RateCard, RatedPlan, Usage, rate_plan
from rating.money import EXACT, format_decimal
from rating.usage import usage_from_data
from rating.validation import choose_fix, join_path
from schemas.errors import InvalidInput, Problem
from schemas.metering.definitions import MeterSet
from schemas.storage.usage import SubjectUsage
from schemas.timeutil import format_ms, to_ms

__all__ = [
    "Quote",
    "QuoteRequest",
    "current_subscription",
    "parse_quote",
    "plan_meters",
    "price_quote",
    "proposed_usage",
    "subscription_holding",
]

_WHAT = "quote request"
_FIELDS = ("usage", "subscription")
_EXAMPLE = '{"usage": {"api_calls": "1500"}}'


@dataclass(frozen=True, slots=True)
class QuoteRequest:
    """The proposed usage per meter, and the subscription asked for (``None``: the one
    whose period holds now)."""

    usage: Mapping[str, object]
    """As sent: :func:`proposed_usage` validates it against the customer's plan."""
    subscription: str | None = None


def parse_quote(raw: bytes, content_type: str | None) -> QuoteRequest:
    """Check a quote body's shape; :class:`HttpProblem` 415, or 400 listing every problem.

    Numbers are read exactly (``decode_json``: a JSON number never passes through a
    float; ``NaN`` is read too, so that :func:`proposed_usage` refuses it naming the
    meter).  A key written twice is refused: a JSON reader would keep one of the two
    values without a word."""
    if media_type(content_type) != JSON:
        raise HttpProblem(415, "Unsupported media type", f"send the quote as {JSON}")
    body = decode_json(raw, object_pairs_hook=_Object.of, parse_constant=Decimal)
    if not isinstance(body, dict):
        raise invalid(InvalidInput.single(_WHAT, "", "expected a JSON object", f"send {_EXAMPLE}"))
    problems = _repeated("", body)
    problems += [
        Problem(str(name), "unknown field", f"remove it; a quote takes {' and '.join(_FIELDS)}")
        for name in body
        if name not in _FIELDS
    ]
    subscription = body.get("subscription")
    if subscription is not None and (not isinstance(subscription, str) or not subscription):
        problems.append(
            Problem(
                "subscription",
                "expected a subscription id (a non-empty string)",
                "leave it out to quote the subscription whose period holds now",
            )
        )
    usage = body.get("usage")
    if not isinstance(usage, dict):
        missing = "usage" not in body
        problems.append(
            Problem(
                "usage",
                "required field is missing" if missing else "expected a mapping of meter to usage",
                f"send {_EXAMPLE}",
            )
        )
    if problems:
        raise invalid(InvalidInput(_WHAT, problems))
    assert isinstance(usage, dict)
    return QuoteRequest(usage, subscription)


def proposed_usage(
    card: RateCard, customer: Customer, sent: Mapping[str, object]
) -> dict[str, Usage]:
    """The proposed usage, validated by rating's own rules, or 400 with every problem:
    each quantity as a usage file's (:func:`rating.usage.usage_from_data`: exact, 0 or
    more, finite, within the digit bounds), then a strict :func:`rating.rate_plan` of it
    alone, which refuses a meter the plan does not price (a misspelt meter would
    otherwise cost nothing) and a percentage charge without event amounts."""
    usage: dict[str, Usage] = {}
    problems: list[Problem] = []
    for meter, value in sent.items():
        try:
            usage.update(usage_from_data({meter: value}, prefix="usage"))
        except InvalidInput as exc:
            problems.extend(exc.problems)
            usage[meter] = Usage(quantity=Decimal(0))  # still judged by its name below
    try:
        rate_plan(card, customer.plan, customer.currency, usage, strict=True)
    except InvalidInput as exc:
        problems.extend(exc.problems)
    if problems:
        raise invalid(InvalidInput(_WHAT, problems))
    return {meter: _plain(u) for meter, u in usage.items()}


class _Object(dict[str, Any]):
    """A JSON object that remembers the keys written in it more than once."""

    repeated: tuple[str, ...] = ()

    @classmethod
    def of(cls, pairs: list[tuple[str, Any]]) -> _Object:
        made = cls(pairs)
        if len(made) != len(pairs):
            seen: set[str] = set()
            repeated = []
            for key, _ in pairs:
                if key in seen:
                    repeated.append(key)
                seen.add(key)
            made.repeated = tuple(repeated)
        return made


def _repeated(path: str, value: object) -> list[Problem]:
    """A problem for every key written twice in ``value`` and in the objects it holds."""
    if not isinstance(value, _Object):
        return []
    problems = [
        Problem(
            join_path(path, key),
            f"{key!r} is written more than once in one object",
            "give each key once; a JSON reader would keep only the last value",
        )
        for key in dict.fromkeys(value.repeated)
    ]
    for key, inner in value.items():
        problems += _repeated(join_path(path, key), inner)
    return problems


def current_subscription(
    entries: Sequence[tuple[int, Customer]], wanted: str | None, now: datetime
) -> tuple[int, Customer, Period]:
    """The subscription entry (its index in the customers file, the entry, and its period
    holding ``now``) a quote prices: the one asked for, else the one whose period holds
    now.  A customer's subscriptions never overlap, so there is at most one.  400 for an
    unknown subscription, 409 when none has a period holding ``now``."""
    customer_id = entries[0][1].id
    if wanted is not None:
        named = [(index, entry) for index, entry in entries if entry.subscription == wanted]
        if not named:
            raise invalid(
                InvalidInput.single(
                    _WHAT,
                    "subscription",
                    f"customer {customer_id!r} has no subscription {wanted!r}",
                    choose_fix(wanted, [entry.subscription for _, entry in entries]),
                )
            )
        entries = named
    found = subscription_holding(entries, now)
    if found is not None:
        return found
    spans = "; ".join(
        f"{entry.subscription!r} runs from {entry.start} to {entry.end or 'no end'}"
        for _, entry in entries
    )
    raise HttpProblem(
        409,
        "No current period",
        f"customer {customer_id!r} has no billing period holding {format_ms(to_ms(now))}"
        f" ({spans}); there is nothing to quote against",
    )


def subscription_holding(
    entries: Sequence[tuple[int, Customer]], now: datetime
) -> tuple[int, Customer, Period] | None:
    """The first of ``entries`` (a customer's subscriptions, with their index in the
    customers file) whose billing period holds ``now``, with that period; ``None`` when
    none has one (ended, not started).  The period must hold the instant, not only its
    local day: a subscription ending mid-day hands over to the next one at its end."""
    for index, entry in entries:
        local_day = now.astimezone(ZoneInfo(entry.timezone)).date()
        period = entry.schedule.period_containing(local_day)
        if period is not None and period.start <= now < period.end:
            return index, entry, period
    return None


def plan_meters(card: RateCard, customer: Customer, index: int) -> tuple[str, ...]:
    """The meters the customer's price list prices: the usage a quote reads.  422 when
    the card has no price list for the customer's plan and currency."""
    try:
        charges = card.charges(customer.plan, customer.currency)
    except InvalidInput as exc:
        problems = [
            Problem(join_path(f"customers[{index}]", p.path), p.message, p.fix)
            for p in exc.problems
        ]
        raise _unpriceable(customer, "its plan and currency", problems) from None
    return tuple(sorted({charge.meter for charge in charges if charge.meter is not None}))


@dataclass(frozen=True, slots=True)
class Quote:
    """A period priced twice: ``before`` (usage so far) and ``after`` (plus ``proposed``)."""

    customer: Customer
    period: Period
    as_of: datetime
    so_far: Mapping[str, Decimal]
    proposed: Mapping[str, Usage]
    before: RatedPlan
    after: RatedPlan

    @property
    def marginal_cost(self) -> Decimal:
        """The difference of the two rounded totals (exact: both are in minor units)."""
        with localcontext(EXACT):
            return self.after.total - self.before.total

    def to_json(self) -> dict[str, Any]:
        """Quantities and money as exact decimal strings; lines as rating renders them."""
        rated = self.after.to_dict()
        return {
            "customer": self.customer.id,
            "subscription": self.customer.subscription,
            "plan": self.customer.plan,
            "currency": self.customer.currency,
            "minor_units": rated["minor_units"],
            "rounding": rated["rounding"],
            "period": period_json(self.period),
            "as_of": format_ms(to_ms(self.as_of)),
            "usage": {meter: decimal_text(q) for meter, q in sorted(self.so_far.items())},
            "proposed": {
                meter: decimal_text(u.quantity) for meter, u in sorted(self.proposed.items())
            },
            "total_so_far": format_decimal(self.before.total),
            "total_with_proposed": format_decimal(self.after.total),
            "marginal_cost": format_decimal(self.marginal_cost),
            "lines": rated["lines"],
        }


def price_quote(
    card: RateCard,
    meters: MeterSet,
    subscription: tuple[int, Customer, Period],
    stored: SubjectUsage,
    proposed: Mapping[str, Usage],
    now: datetime,
) -> Quote:
    """Price the period's usage so far (``stored``: per subject, as read for the period)
    and the same plus ``proposed`` (from :func:`proposed_usage`); 422 when the
    customer's usage cannot be priced."""
    index, customer, period = subscription
    quantities, problems = customer_usage(customer, index, meters, stored)
    if problems:
        raise _unpriceable(customer, "its usage so far", problems)
    so_far = {meter: _plain(u) for meter, u in quantities.items()}
    before = _rate(card, customer, so_far, "its usage so far")
    with_proposed = _added(customer, so_far, proposed)
    after = _rate(card, customer, with_proposed, "its usage so far plus the proposed usage")
    usage = {meter: Decimal(0) for meter in plan_meters(card, customer, index)}
    usage.update((meter, u.quantity) for meter, u in so_far.items())
    return Quote(customer, period, now, usage, proposed, before, after)


def _rate(card: RateCard, customer: Customer, usage: Mapping[str, Usage], what: str) -> RatedPlan:
    try:
        return rate_plan(card, customer.plan, customer.currency, usage)
    except InvalidInput as exc:
        raise _unpriceable(customer, what, exc.problems) from None


def _added(
    customer: Customer, so_far: Mapping[str, Usage], proposed: Mapping[str, Usage]
) -> dict[str, Usage]:
    """Usage so far plus the proposed usage, meter by meter, exactly.  A sum beyond the
    bounds an invoice holds is 422 naming the meter."""
    out = dict(so_far)
    problems: list[Problem] = []
    with localcontext(EXACT):
        for meter, more in proposed.items():
            have = out.get(meter, Usage(quantity=Decimal(0)))
            try:
                out[meter] = Usage(
                    quantity=have.quantity + more.quantity,
                    event_amounts=_amounts(have.event_amounts, more.event_amounts),
                )
            except InvalidInput as exc:
                problems.extend(
                    Problem(
                        join_path("usage", meter),
                        f"the usage so far ({decimal_text(have.quantity)}) plus this: {p.message}",
                        p.fix,
                    )
                    for p in exc.problems
                )
    if problems:
        raise _unpriceable(customer, "its usage so far plus the proposed usage", problems)
    return out


def _amounts(
    have: tuple[Decimal, ...] | None, more: tuple[Decimal, ...] | None
) -> tuple[Decimal, ...] | None:
    if have is None and more is None:
        return None
    return (*(have or ()), *(more or ()))


def _plain(usage: Usage) -> Usage:
    """The same usage with its quantity written without trailing zeros (a stored
    ``Decimal(38, 9)`` reads ``4200.000000000``): the lines read as a person writes."""
    return Usage(quantity=Decimal(decimal_text(usage.quantity)), event_amounts=usage.event_amounts)


def _unpriceable(customer: Customer, what: str, problems: Iterable[Problem]) -> HttpProblem:
    found = tuple(dict.fromkeys(problems))  # one per subject would say the same twice
    return HttpProblem(
        422,
        "Cannot price this quote",
        f"customer {customer.id!r} (plan {customer.plan!r}, {customer.currency}) cannot be"
        f" priced with {what}: {len(found)} problem{'s' if len(found) != 1 else ''}",
        found,
    )
