"""A billing run over one closed period: read usage, rate it, emit new invoices.

Steps, and what a crash after each costs:

1. read usage from ``meter_windows`` and rate it (pure) — *nothing happened*;
2. look up which invoice ids already exist — *nothing happened*;
3. publish the new invoices to the ``invoices`` topic (idempotent producer, key = invoice
   id) and wait for every acknowledgement — *a rerun publishes them again with the same
   ids; consumers key on the id* (transactional, exactly-once publication is a later
   stage's work);
4. store them in ClickHouse — from now on a rerun emits nothing for them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from confluent_kafka import KafkaError, Message, Producer

from invoicing.customers import Customer
from invoicing.invoice import Invoice, build_invoice
from invoicing.periods import Period
from rating import RateCard, Usage, rate_plan
from schemas.errors import DeliveryFailed, InvalidInput, Problem
from schemas.meters import Aggregation, MeterSet
from schemas.storage.engine import Engine
from schemas.storage.invoices_table import InvoicesTable
from schemas.storage.windows_table import UsageQuery, WindowsTable, finish_value
from schemas.timeutil import now_ms

__all__ = ["RunResult", "plan_invoices", "read_usage", "run_period"]

log = logging.getLogger(__name__)
ADDITIVE = {Aggregation.SUM, Aggregation.COUNT}
SubjectUsage = dict[str, dict[str, Decimal]]


@dataclass(slots=True)
class RunResult:
    period: Period
    invoices: list[Invoice] = field(default_factory=list)
    emitted: list[str] = field(default_factory=list)
    already_emitted: list[str] = field(default_factory=list)


def read_usage(
    engine: Engine,
    database: str,
    namespace: str,
    meters: MeterSet,
    slugs: Iterable[str],
    period: Period,
) -> SubjectUsage:
    """``{subject: {meter: value}}`` over the period, one query per meter."""
    windows = WindowsTable(database)
    usage: SubjectUsage = {}
    for slug in sorted(set(slugs)):
        meter = meters.get(slug)
        query = UsageQuery(namespace, slug, meter.aggregation, period.start_s, period.end_s)
        for row in engine.execute(windows.usage(query).to_sql()):
            subject = str(row[0])
            usage.setdefault(subject, {})[slug] = finish_value(meter.aggregation, row[1:])
    return usage


def plan_invoices(
    *,
    namespace: str,
    customers: Sequence[Customer],
    card: RateCard,
    meters: MeterSet,
    usage: SubjectUsage,
    period: Period,
    created_ms: int,
) -> list[Invoice]:
    """Rate every customer's usage (pure)."""
    problems: list[Problem] = []
    invoices = []
    for index, customer in enumerate(customers):
        totals: dict[str, Decimal] = {}
        for subject in customer.subjects:
            for slug, value in usage.get(subject, {}).items():
                kind = meters.get(slug).aggregation
                if kind not in ADDITIVE and len(customer.subjects) > 1:
                    problems.append(
                        Problem(
                            f"customers[{index}].subjects",
                            f"meter {slug!r} ({kind.value}) cannot be summed across subjects",
                            "bill this customer on one subject",
                        )
                    )
                totals[slug] = totals.get(slug, Decimal(0)) + value
        rated = rate_plan(
            card,
            plan=customer.plan,
            currency=customer.currency,
            usage={slug: Usage(quantity=q) for slug, q in totals.items()},
        )
        invoices.append(build_invoice(namespace, customer, period, rated, created_ms))
    if problems:
        raise InvalidInput("billing run", problems)
    return invoices


def run_period(
    *,
    namespace: str,
    database: str,
    period: Period,
    customers: Sequence[Customer],
    card: RateCard,
    meters: MeterSet,
    engine: Engine,
    publish: Callable[[Sequence[Invoice]], None] | None,
    dry_run: bool = False,
    force: bool = False,
    grace: timedelta = timedelta(0),
    now: datetime | None = None,
) -> RunResult:
    moment = now or datetime.now(UTC)
    if not force and not period.is_closed(moment, grace):
        raise InvalidInput.single(
            "billing run",
            "period",
            f"{period.label} is still open until {period.end + grace:%Y-%m-%dT%H:%MZ}",
            "wait for the period to end (plus grace), or pass --force",
        )
    slugs = {
        charge.meter
        for plan in card.plans.values()
        for charges in plan.prices.values()
        for charge in charges
        if charge.meter is not None
    }
    usage = read_usage(engine, database, namespace, meters, slugs, period)
    invoices = plan_invoices(
        namespace=namespace,
        customers=customers,
        card=card,
        meters=meters,
        usage=usage,
        period=period,
        created_ms=now_ms(),
    )
    table = InvoicesTable(database)
    ids = [invoice.id for invoice in invoices]
    existing = {str(row[0]) for row in engine.execute(table.existing(namespace, ids).to_sql())}
    fresh = [invoice for invoice in invoices if invoice.id not in existing]
    result = RunResult(period, invoices, [i.id for i in fresh], sorted(existing))
    if dry_run or not fresh:
        return result
    if publish is not None:
        publish(fresh)
    engine.insert(*table.insert_invoices([invoice.row() for invoice in fresh]))
    engine.insert(*table.insert_lines([row for invoice in fresh for row in invoice.line_rows()]))
    return result


class KafkaPublisher:
    """Publish invoice documents to the invoices topic and wait for every ack."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.topic = topic
        self._producer = Producer(
            {"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True}
        )

    def __call__(self, invoices: Sequence[Invoice]) -> None:
        errors: list[str] = []

        def delivered(err: KafkaError | None, msg: Message) -> None:
            if err is not None:
                errors.append(f"{msg.key()!r}: {err.str()}")

        for invoice in invoices:
            self._producer.produce(
                self.topic, key=invoice.id.encode(), value=invoice.to_json(), on_delivery=delivered
            )
        if self._producer.flush(60) or errors:
            raise DeliveryFailed(f"invoices not acknowledged by Kafka: {errors or 'timeout'}")
