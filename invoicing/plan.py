"""Planning a billing run (pure): due periods, revisions, usage lines and late-usage adjustments.

Nothing here does I/O: usage comes through a :class:`UsageReader` (ClickHouse in
``invoicing.run``, a dictionary in the tests) and history is a list of :class:`Billed`.

Late usage, the rule.  Each invoice records its ingestion *cutoff*, and the earlier
periods it *covers*.  The **frontier** of a period Q, as seen by a new invoice with
cutoff c, is the highest cutoff among Q's own invoices and the invoices covering Q whose
cutoff is at most c.  Every usage of Q ingested before the frontier has been billed.  The
new invoice then adds, for every earlier invoiced period Q with frontier f < c::

    adjustment(charge) = rate(usage of Q ingested before c)(charge)
                       - rate(usage of Q ingested before f)(charge)

both rated with the same plan, each side rounded once per line.  For additive meters
(SUM, COUNT) the quantity difference is exactly the usage that arrived late; for tiered,
volume, package or minimum-commitment pricing and non-additive meters (MAX, UNIQUE_COUNT,
…) re-rating the whole period is what makes the result right: the original invoice plus
all its adjustments always equals the period rated with everything that arrived so far,
never a late event billed twice or lost.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from invoicing.credits import CreditBook, CreditDue, apply_credits, consumption_entries
from invoicing.customers import Customer
from invoicing.evidence import EvidenceReader, LineEvidence
from invoicing.fees import AdvanceReader, Ahead, as_billed, fee_terms
from invoicing.invoice import Adjustment, Invoice, invoice_id
from invoicing.lifecycle import Status
from invoicing.periods import Month, Period
from invoicing.usage import customer_usage
from rating import RateCard, Usage, minor_units, rate_plan
from rating.versions import card_version
from schemas.errors import InvalidInput, Problem
from schemas.metering.definitions import MeterSet
from schemas.timeutil import MINUTE_MS, to_ms

__all__ = [
    "Billed",
    "Due",
    "SubjectUsage",
    "UsageReader",
    "adjustments_for",
    "choose_cutoff",
    "credit_invoices",
    "due_periods",
    "frontier",
    "plan_subscription",
]

SubjectUsage = dict[str, dict[str, Decimal]]


UsageReader = Callable[[int, int, int | None, int], SubjectUsage]
"""``read(start_s, end_s, ingested_from_s, ingested_before_s)`` → ``{subject: {meter:
value}}`` of windows in ``[start_s, end_s)`` ingested in ``[from, before)``; subjects
with no such usage are absent."""


@dataclass(frozen=True, slots=True)
class Billed:
    """What the ledger knows about one invoice of a subscription."""

    invoice_id: str
    period_start_s: int
    period_end_s: int
    revision: int
    cutoff_s: int
    covers: tuple[int, ...]
    status: Status


@dataclass(frozen=True, slots=True)
class Due:
    customer: Customer
    period: Period
    closed: bool


def due_periods(
    customers: Iterable[Customer], month: Month, now: datetime, grace: timedelta
) -> list[Due]:
    """Every subscription period ending in ``month``, and whether it may be closed."""
    return [
        Due(customer, period, period.is_closed(now, grace))
        for customer in customers
        for period in customer.schedule.ending_in(month)
    ]


def choose_cutoff(now: datetime) -> int:
    """The run's ingestion cutoff: the first whole minute *after* ``now`` (epoch seconds).

    Usage is keyed by ingestion minute, so a cutoff must be a whole minute.  It must be
    strictly after ``now``: an event ingested at 12:01:00.2 belongs to minute 12:01, so a
    run at 12:01:00.7 needs cutoff 12:02 to include it (truncating ``now`` to whole
    seconds gave 12:01 and silently left it for a later adjustment).  The run then waits
    until the cutoff has passed before checking the worker's lag and reading, so nothing
    can still arrive before it and a later re-rating with the same cutoff reads the same
    usage.  It is also never before a closed period's end plus grace.
    """
    return (to_ms(now) // MINUTE_MS + 1) * (MINUTE_MS // 1000)


def frontier(history: Sequence[Billed], period_start_s: int, cutoff_s: int) -> int | None:
    """How far (ingestion time) period Q's usage is billed, as seen at ``cutoff_s``."""
    cutoffs = [
        b.cutoff_s
        for b in history
        if (b.period_start_s == period_start_s or period_start_s in b.covers)
        and b.cutoff_s <= cutoff_s
    ]
    return max(cutoffs, default=None)


def adjustments_for(
    card: RateCard,
    customer: Customer,
    original: Period,
    original_id: str,
    before: dict[str, Usage],
    after: dict[str, Usage],
    from_cutoff_s: int,
    to_cutoff_s: int,
    billed_fees: Mapping[str, Decimal] | None = None,
) -> tuple[Adjustment, ...]:
    """Charge by charge, the re-rated period minus the period as billed; unchanged
    charges give no line.  ``billed_fees``: the share of each flat fee the original
    invoice billed (prorated, cut by a trial, billed ahead), priced the same on both
    sides so that a minimum is compared with what that invoice charged; without it each
    flat fee counts once, whole."""
    charges = card.charges(customer.plan, customer.currency)
    fees = None if billed_fees is None else as_billed(charges, billed_fees)
    rated_before = rate_plan(card, customer.plan, customer.currency, before, fees=fees)
    rated_after = rate_plan(card, customer.plan, customer.currency, after, fees=fees)
    old = {line.charge_id: line for line in rated_before.lines}
    new = {line.charge_id: line for line in rated_after.lines}
    out = []
    for charge_id in [*new, *(c for c in old if c not in new)]:
        adjustment = Adjustment(
            period=original,
            original_invoice_id=original_id,
            from_cutoff_s=from_cutoff_s,
            to_cutoff_s=to_cutoff_s,
            before=old.get(charge_id),
            after=new.get(charge_id),
        )
        if adjustment.quantity != 0 or adjustment.amount != 0:
            out.append(adjustment)
    return tuple(out)


@dataclass(slots=True)
class SubscriptionPlan:
    invoices: list[Invoice] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)


def plan_subscription(
    *,
    namespace: str,
    customer: Customer,
    index: int,
    periods: Sequence[Period],
    history: list[Billed],
    cutoff_s: int,
    read: UsageReader,
    card: RateCard,
    meters: MeterSet,
    created_ms: int,
    version: str | None = None,
    evidence: EvidenceReader | None = None,
    ahead_of: AheadReader | None = None,
    fees_of: FeesReader | None = None,
) -> SubscriptionPlan:
    """Invoices for the subscription's due ``periods`` (chronological).  ``history`` is
    extended with each planned invoice so later periods of the same run see it.
    ``version``: ``card``'s version, when the caller has it already (one digest per run,
    not per customer).  ``evidence`` reads the digests of the events each metered line
    bills; without it lines carry no evidence (planning tests).  ``ahead_of`` reads the
    fee shares a stored invoice billed in advance (``invoicing.fees``), ``fees_of`` the
    flat fees it billed (for its late-usage adjustments)."""
    version = version or card_version(card)
    out = SubscriptionPlan()
    problems: list[Problem] = []
    proration = card.plan(customer.plan).proration
    charges = card.charges(customer.plan, customer.currency)
    advanced, invoiced = _advance_readers(history, out, ahead_of)
    for period in sorted(periods, key=lambda p: p.start_s):
        revisions = [b for b in history if b.period_start_s == period.start_s]
        live = [b for b in revisions if b.status is not Status.VOID]
        if live:
            out.existing.extend(b.invoice_id for b in live)
            continue
        latest = max(revisions, key=lambda b: b.revision, default=None)
        revision = 0 if latest is None else latest.revision + 1
        cutoff = cutoff_s if latest is None else latest.cutoff_s
        # a period wholly inside a trial bills nothing of its own: no usage, no minimum
        start_s = min(_billable_s(customer, period.start_s), period.end_s)
        in_trial = start_s == period.end_s
        usage, found = (
            ({}, [])
            if in_trial
            else customer_usage(customer, index, meters, read(start_s, period.end_s, None, cutoff))
        )
        problems += found
        fees = fee_terms(customer, proration, charges, period, advanced, invoiced)
        rated = rate_plan(
            card, customer.plan, customer.currency, usage, fees=fees.terms, minimums=not in_trial
        )
        proof = {}
        if evidence is not None:
            proof = {
                line.charge_id: LineEvidence.read(
                    meters.get(line.meter),
                    customer.subjects,
                    (start_s, period.end_s, cutoff),
                    evidence,
                    minor_units(customer.currency),
                    version,
                )
                for line in rated.lines
                if line.meter is not None
            }
        adjustments: list[Adjustment] = []
        covers: list[int] = []
        earlier = sorted(
            {
                (b.period_start_s, b.period_end_s)
                for b in history
                if b.period_start_s < period.start_s
            }
        )
        for start_s, end_s in earlier:
            since = frontier(
                [b for b in history if b.period_start_s != period.start_s], start_s, cutoff
            )
            if since is None or since >= cutoff:
                continue
            covers.append(start_s)
            late = read(_billable_s(customer, start_s), end_s, since, cutoff)
            if not any(subject in late for subject in customer.subjects):
                continue
            original = Period(
                datetime.fromtimestamp(start_s, UTC),
                datetime.fromtimestamp(end_s, UTC),
                customer.timezone,
            )
            from_s = _billable_s(customer, start_s)
            before, found_before = customer_usage(
                customer, index, meters, read(from_s, end_s, None, since)
            )
            after, found_after = customer_usage(
                customer, index, meters, read(from_s, end_s, None, cutoff)
            )
            problems += found_before + found_after
            original_id = _original_id(history, namespace, customer, start_s)
            adjustments += adjustments_for(
                card,
                customer,
                original,
                original_id,
                before,
                after,
                since,
                cutoff,
                None if fees_of is None else fees_of(original_id),
            )
        invoice = Invoice(
            namespace=namespace,
            customer=customer,
            period=period,
            revision=revision,
            cutoff_s=cutoff,
            rated=rated,
            adjustments=tuple(adjustments),
            covers=tuple(covers),
            created_ms=created_ms,
            rate_card_version=version,
            evidence=proof,
            ahead=fees.ahead,
        )
        out.invoices.append(invoice)
        history.append(
            Billed(
                invoice.id,
                period.start_s,
                period.end_s,
                revision,
                cutoff,
                tuple(covers),
                Status.DRAFT,
            )
        )
    if problems:
        raise InvalidInput("billing run", problems)
    return out


def credit_invoices(invoices: Sequence[Invoice], book: CreditBook) -> list[Invoice]:
    """``invoices`` (same order) with prepaid credit applied (``invoicing.credits``).

    They take credit in the order of their instants (period ends), then customer and
    subscription, each seeing what the ones before it consumed, so a run that bills
    several periods or subscriptions of a customer at once consumes each grant once."""
    credited: dict[str, Invoice] = {}
    order = sorted(
        invoices, key=lambda i: (i.period.end_s, i.customer.id, i.customer.subscription, i.id)
    )
    books = book.by_customer()  # each invoice reads and extends its customer's book only
    for invoice in order:
        own = books.get(invoice.customer.id)
        if own is None:  # no grant: no credit
            credited[invoice.id] = invoice
            continue
        due = CreditDue(
            invoice.customer.id, invoice.currency, invoice.id, invoice.period.end, invoice.due
        )
        applied = apply_credits(own, due)
        books[invoice.customer.id] = own.with_entries(consumption_entries(due, applied))
        credited[invoice.id] = replace(invoice, credits=applied)
    return [credited[invoice.id] for invoice in invoices]


AheadReader = Callable[[str], Sequence[Ahead]]
"""``ahead_of(invoice_id)`` -> the fee shares that stored invoice billed in advance."""
FeesReader = Callable[[str], Mapping[str, Decimal] | None]
"""``fees_of(invoice_id)`` -> the share of each flat fee that stored invoice billed (its
flat lines' quantities), or ``None`` if it is not stored."""


def _billable_s(customer: Customer, start_s: int) -> int:
    """Where billing of a period starting at ``start_s`` begins (after a trial)."""
    return int(customer.billable_from(datetime.fromtimestamp(start_s, UTC)).timestamp())


def _advance_readers(
    history: list[Billed], out: SubscriptionPlan, ahead_of: AheadReader | None
) -> tuple[AdvanceReader, Callable[[int], bool]]:
    """What was billed ahead for a period (by the latest live invoice of the period
    before it, planned in this run or stored), and whether a period is invoiced."""

    def live(predicate: Callable[[Billed], bool]) -> list[Billed]:
        return [b for b in history if predicate(b) and b.status is not Status.VOID]

    def advanced(start_s: int) -> dict[str, Decimal] | None:
        before = live(lambda b: b.period_end_s == start_s)
        if not before:
            return None
        latest = max(before, key=lambda b: b.revision).invoice_id
        planned = {invoice.id: invoice.ahead for invoice in out.invoices}
        records = planned.get(latest)
        if records is None:
            records = tuple(ahead_of(latest)) if ahead_of is not None else ()
        return {a.charge_id: a.share for a in records if a.period.start_s == start_s}

    def invoiced(start_s: int) -> bool:
        return bool(live(lambda b: b.period_start_s == start_s))

    return advanced, invoiced


def _original_id(
    history: Sequence[Billed], namespace: str, customer: Customer, start_s: int
) -> str:
    """The invoice that billed the period: its latest non-void revision, else revision 0."""
    own = [b for b in history if b.period_start_s == start_s]
    live = [b for b in own if b.status is not Status.VOID] or own
    if live:
        return max(live, key=lambda b: b.revision).invoice_id
    return invoice_id(namespace, customer.id, customer.subscription, start_s)
