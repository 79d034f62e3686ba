"""A backtest's I/O: the invoiced periods and their usage, read in bulk; nothing written.

Steps (none writes anything, so a crash at any point costs nothing but the run):

1. select the subscription periods the months hold — billing's rule: the periods whose
   end falls in the month, local time (``Schedule.ending_in``);
2. read every issued, non-void invoice ending in that range, and its usage lines'
   amounts per meter, in two statements (``InvoicesTable.issued_ending`` and
   ``usage_amounts_ending``) — the invoice of a period is its latest live revision;
3. read usage once per distinct (period start, period end, cutoff) for all subjects at
   once, through the storage layer's one reader (``UsageRead``, as of the invoice's
   recorded cutoff: the very windows the invoice billed), and add each customer's
   subjects up with billing's rule (``invoicing.usage.customer_usage``);
4. re-price and compare (pure, ``invoicing.backtest.compare``).

The reads are one statement per meter per distinct cutoff, not per customer: a month
billed in one run is five usage statements for five meters, whatever the customer count.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Context, Decimal, Inexact, InvalidOperation
from typing import cast

from invoicing.backtest.compare import meter_key, reprice, summarise
from invoicing.backtest.model import Backtest, Invoiced, Row, Selected
from invoicing.customers import Customer
from invoicing.periods import Month, Period
from invoicing.usage import customer_usage, priced_meters
from rating import RateCard, round_money
from schemas.errors import InvalidInput
from schemas.memory import collection_paused
from schemas.metering.definitions import MeterSet
from schemas.storage.engine import Engine
from schemas.storage.invoices_table import InvoicesTable
from schemas.storage.usage import UsageRead, read_usage

__all__ = ["BacktestRequest", "Selected", "read_invoiced", "run_backtest", "selected_periods"]

_ZERO = Decimal(0)
_EXACT = Context(prec=60, traps=[Inexact, InvalidOperation])
"""Re-expressing an amount in minor units must never round: a trap says if it would."""

Key = tuple[str, str, int]
"""(customer id, subscription id, period start in epoch seconds): how billing keys a
subscription period's invoices."""


@dataclass(frozen=True, slots=True)
class BacktestRequest:
    """What a backtest is asked: the draft card, for which customers and months.
    ``rate_card`` names the draft in the report (its path)."""

    namespace: str
    database: str
    months: tuple[Month, ...]
    customers: Sequence[Customer]
    card: RateCard
    meters: MeterSet
    rate_card: str


def selected_periods(customers: Sequence[Customer], months: Sequence[Month]) -> list[Selected]:
    """Every subscription period ending in one of ``months`` (billing's selection rule,
    ``Schedule.ending_in``).  Most customers share a schedule, so the periods are
    computed once per distinct schedule and month, keyed by the fields
    ``Customer.schedule`` is built from (building a ``Schedule`` per customer only to
    look it up cost more than half of this at 100k customers)."""
    cache: dict[tuple[object, ...], list[Period]] = {}
    out = []
    for index, customer in enumerate(customers):
        fields = (customer.cadence, customer.timezone, customer.start, customer.end)
        for month in months:
            key = (*fields, customer.anchor_day, month)
            periods = cache.get(key)
            if periods is None:
                periods = cache[key] = customer.schedule.ending_in(month)
            out += [Selected(index, customer, period) for period in periods]
    return out


def read_invoiced(
    engine: Engine, table: InvoicesTable, namespace: str, end_from_s: int, end_to_s: int
) -> dict[Key, Invoiced]:
    """The live invoice of every subscription period ending in ``[from, to]``, with its
    usage lines' amounts per meter key in the currency's minor units (the stored lines
    keep 9 decimals); of several live revisions, the latest."""
    found: dict[Key, Invoiced] = {}
    for row in engine.execute(table.issued_ending(namespace, end_from_s, end_to_s).to_sql()):
        invoice_id, customer, subscription, start, end, revision, cutoff, plan, currency = row
        key = (str(customer), str(subscription), int(start))
        if key in found and found[key].revision > int(revision):
            continue
        found[key] = Invoiced(
            invoice_id=str(invoice_id),
            customer_id=str(customer),
            subscription_id=str(subscription),
            revision=int(revision),
            period_start_s=int(start),
            period_end_s=int(end),
            cutoff_s=int(cutoff),
            plan=str(plan),
            currency=str(currency),
            amounts={},
        )
    amounts_of: dict[str, dict[str, Decimal]] = {
        invoiced.invoice_id: cast(dict[str, Decimal], invoiced.amounts)
        for invoiced in found.values()
    }
    statement = table.usage_amounts_ending(namespace, end_from_s, end_to_s)
    for invoice_id, meter, model, amount in engine.execute(statement.to_sql()):
        amounts = amounts_of.get(invoice_id)  # None: a void or superseded revision's lines
        if amounts is not None:
            name = meter_key(meter, model)
            amounts[name] = amounts[name] + amount if name in amounts else amount
    for invoiced in found.values():
        zero = round_money(_ZERO, invoiced.currency)  # the currency's exponent
        amounts = amounts_of[invoiced.invoice_id]
        for name, amount in amounts.items():
            amounts[name] = amount.quantize(zero, context=_EXACT)  # exact: lines are rounded
    return found


def run_backtest(request: BacktestRequest, engine: Engine) -> Backtest:
    """Re-price every invoiced subscription period the months select (the module
    docstring lists the steps), with the cycle collector paused (``memory``).  Raises
    :class:`InvalidInput` when the months select no subscription period, or none of
    them was invoiced."""
    with collection_paused():
        return _run(request, engine)


def _run(request: BacktestRequest, engine: Engine) -> Backtest:
    labels = tuple(month.label for month in request.months)
    selected = selected_periods(request.customers, request.months)
    if not selected:
        raise InvalidInput.single(
            "backtest",
            "--period",
            f"no subscription period of the customers file ends in {', '.join(labels)}",
            "choose months the subscriptions were billed for",
        )
    table = InvoicesTable(request.database)
    invoiced = read_invoiced(
        engine,
        table,
        request.namespace,
        min(s.period.end_s for s in selected),
        max(s.period.end_s for s in selected),
    )
    groups: dict[tuple[int, int, int], list[tuple[Selected, Invoiced]]] = {}
    for chosen in selected:
        key = (chosen.customer.id, chosen.customer.subscription, chosen.period.start_s)
        found = invoiced.get(key)
        if found is not None:
            window = (found.period_start_s, found.period_end_s, found.cutoff_s)
            groups.setdefault(window, []).append((chosen, found))
    matched = sum(len(members) for members in groups.values())
    if not matched:
        raise InvalidInput.single(
            "backtest",
            "--period",
            f"none of the {len(selected)} subscription periods ending in {', '.join(labels)}"
            " has an issued invoice",
            "bill the month first (`meterline bill --period ...`), or choose a billed month",
        )
    rows: list[Row] = []
    for window, members in sorted(groups.items()):
        rows += _reprice_window(request, engine, window, members)
    return summarise(request.rate_card, labels, rows, matched, len(selected) - matched)


def _reprice_window(
    request: BacktestRequest,
    engine: Engine,
    window: tuple[int, int, int],
    members: list[tuple[Selected, Invoiced]],
) -> list[Row]:
    """Every subject's usage of one (start, end, cutoff) window in one read per meter,
    then each member's period re-priced with its customer's share."""
    start_s, end_s, cutoff_s = window
    slugs = tuple(sorted(priced_meters(request.card)))
    read = UsageRead(
        request.namespace, request.database, request.meters, slugs, start_s, end_s, None, cutoff_s
    )
    usage = read_usage(engine, read)
    rows: list[Row] = []
    labels: dict[str, str] = {}  # the period's label in each timezone
    for chosen, found in members:
        customer = chosen.customer
        per_meter, problems = customer_usage(customer, chosen.position, request.meters, usage)
        label = labels.get(customer.timezone)
        if label is None:
            start, end = (datetime.fromtimestamp(s, UTC) for s in (start_s, end_s))
            label = labels[customer.timezone] = Period(start, end, customer.timezone).label
        rows += reprice(request.card, found, label, per_meter, problems)
    return rows
