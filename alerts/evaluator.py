"""Evaluating thresholds from the live windows, and raising each crossing once.

One :meth:`Evaluator.tick` reads, for every subscription some threshold applies to, the
usage of its current billing period so far (the same windows and the same reader as the
API's estimates, no ingestion cutoff: everything stored), prices it when a spend
threshold needs it (billing's rule, flat fees whole, as estimates do), asks
``alerts.thresholds.crossings`` which thresholds are crossed, and raises each new one:

1. the notification is **recorded** in ``notifications`` (``schemas.storage``) first;
2. then handed to ``send`` (the Kafka topic and the webhooks, ``alerts.notifier``), which
   records it as sent once it is (:meth:`Raised.sent`).

Its id is derived from the threshold, the subscription and the period, so a crossing
has one id wherever and however often it is evaluated.  An evaluator that starts reads
the ids already recorded for the current periods (:meth:`Evaluator.load_raised`), so a
restart raises nothing twice; what a crash left raised but not sent is handed to
``send`` again (:meth:`Evaluator.pending`), with the same id — the topic's key and the
``webhook-id`` by which receivers keep one.  The metering worker is not involved: its
restarts replay events the windows already hold exactly once, so a crossing is seen
once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import orjson

from alerts.notifications import Notification, NotificationType
from alerts.thresholds import Crossing, Kind, Reading, Threshold, crossings
from invoicing.credits import CreditHeld
from invoicing.customers import Customer
from invoicing.periods import Period
from invoicing.usage import customer_usage
from rating import RateCard, rate_plan
from schemas.errors import MeterlineError
from schemas.metering.definitions import MeterSet
from schemas.storage.engine import Engine
from schemas.storage.notifications_table import NotificationRow, NotificationsTable
from schemas.storage.usage import UsageRead, read_usage
from schemas.timeutil import format_ms, to_ms

__all__ = ["CreditOf", "Evaluator", "Raised", "Watch", "current_periods", "notification_of"]

log = logging.getLogger(__name__)

CreditOf = Callable[[Customer, datetime], tuple[Decimal, Decimal] | None]
"""``(granted, remaining)`` of a customer's prepaid credit in its currency at an
instant, or ``None`` when it has none.  Credit is consumed when a period is invoiced, so
the evaluator compares what will remain once the current period's charges so far are
paid: ``remaining`` less the period's spend."""


@dataclass(frozen=True, slots=True)
class Watch:
    """What an evaluator watches: the thresholds, and what pricing and reading need."""

    namespace: str
    database: str
    meters: MeterSet
    customers: tuple[Customer, ...]
    card: RateCard
    thresholds: tuple[Threshold, ...]
    credit: CreditOf | None = None


def current_periods(
    customers: Iterable[Customer], thresholds: Sequence[Threshold], now: datetime
) -> list[tuple[int, Customer, Period]]:
    """``(position, subscription, period holding now)`` of every subscription some
    threshold applies to and that has a period holding ``now``."""
    out = []
    for index, customer in enumerate(customers):
        if not any(threshold.applies_to(customer) for threshold in thresholds):
            continue
        local_day = now.astimezone(ZoneInfo(customer.timezone)).date()
        period = customer.schedule.period_containing(local_day)
        if period is not None and period.start <= now < period.end:
            out.append((index, customer, period))
    return out


def notification_of(crossing: Crossing, raised_ms: int) -> Notification:
    """The ``alert.threshold_reached`` notification of a crossing."""
    threshold, customer, period = crossing.threshold, crossing.customer, crossing.period
    return Notification(
        crossing.notification_id,
        NotificationType.THRESHOLD_REACHED,
        raised_ms,
        {
            "threshold": threshold.id,
            "kind": threshold.kind.value,
            "at": threshold.at,
            "observed": crossing.observed,
            "meter": threshold.meter,
            "customer": customer.id,
            "subscription": customer.subscription,
            "plan": customer.plan,
            "currency": customer.currency,
            "period": {
                "start": format_ms(to_ms(period.start)),
                "end": format_ms(to_ms(period.end)),
            },
        },
    )


@dataclass(frozen=True, slots=True)
class Raised:
    """A notification raised, with its row as recorded."""

    notification: Notification
    row: NotificationRow

    def sent(self, at_ms: int) -> NotificationRow:
        """The row that records it as sent at ``at_ms``."""
        return replace(self.row, sent_ms=at_ms)


class Evaluator:
    """Raises the crossings of ``watch``'s thresholds, each once (module docstring)."""

    def __init__(self, engine: Engine, watch: Watch, send: Callable[[Raised], None]) -> None:
        self.engine, self.watch, self.send = engine, watch, send
        self.table = NotificationsTable(watch.database)
        self.raised: set[str] = set()

    def load_raised(self, now: datetime) -> None:
        """Read the ids already raised for every current period (call once at start)."""
        earliest = self._earliest(now)
        if earliest is not None:
            statement = self.table.raised_since(self.watch.namespace, earliest)
            self.raised.update(str(row[0]) for row in self.engine.execute(statement.to_sql()))

    def pending(self, now: datetime) -> list[Raised]:
        """What was raised in the current periods but never recorded as sent (a crash
        between recording and sending), oldest first, as it was raised."""
        earliest = self._earliest(now)
        if earliest is None:
            return []
        statement = self.table.pending(self.watch.namespace, earliest)
        out = []
        for values in self.engine.execute(statement.to_sql()):
            id_, kind, customer, subscription, threshold = (str(v) for v in values[:5])
            row = NotificationRow(
                self.watch.namespace, id_, kind, customer, subscription, threshold,
                int(values[5]), int(values[6]), str(values[7]),
            )  # fmt: skip
            data = orjson.loads(row.body)["data"]
            notification = Notification(row.id, NotificationType(row.type), row.raised_ms, data)
            out.append(Raised(notification, row))
        return out

    def _earliest(self, now: datetime) -> int | None:
        periods = current_periods(self.watch.customers, self.watch.thresholds, now)
        return min((to_ms(period.start) for _, _, period in periods), default=None)

    def tick(self, now: datetime) -> list[Raised]:
        """One evaluation at ``now``: every new crossing recorded, then sent."""
        fresh: list[Raised] = []
        for reading in self.readings(now):
            for crossing in crossings(self.watch.thresholds, reading, self.raised):
                notification = notification_of(crossing, to_ms(now))
                row = _row(self.watch.namespace, crossing, notification)
                fresh.append(Raised(notification, row))
        if not fresh:
            return []
        self.engine.insert(*self.table.insert([r.row for r in fresh]))  # before any send
        for raised in fresh:
            self.raised.add(raised.notification.id)
            self.send(raised)
        return fresh

    def readings(self, now: datetime) -> list[Reading]:
        """What each watched subscription's current period holds so far."""
        watch = self.watch
        periods = current_periods(watch.customers, watch.thresholds, now)
        windows: dict[tuple[int, int], list[tuple[int, Customer, Period]]] = {}
        for entry in periods:
            windows.setdefault((entry[2].start_s, entry[2].end_s), []).append(entry)
        slugs = self._slugs()
        out = []
        for (start_s, end_s), members in sorted(windows.items()):
            subjects = tuple(sorted({s for _, c, _ in members for s in c.subjects}))
            read = UsageRead(
                watch.namespace, watch.database, watch.meters, slugs, start_s, end_s,
                subjects=subjects,
            )  # fmt: skip
            usage = read_usage(self.engine, read) if slugs else {}
            for index, customer, period in members:
                out.append(self._reading(index, customer, period, usage, now))
        return out

    def _slugs(self) -> tuple[str, ...]:
        """The meters the thresholds read: theirs, and every priced one for spend."""
        watch = self.watch
        wanted = {t.meter for t in watch.thresholds if t.meter is not None}
        if any(t.kind is Kind.SPEND for t in watch.thresholds):
            for plan in watch.card.plans.values():
                for charges in plan.prices.values():
                    wanted.update(c.meter for c in charges if c.meter is not None)
        return tuple(sorted(m for m in wanted if m in watch.meters.by_slug))

    def _reading(
        self,
        index: int,
        customer: Customer,
        period: Period,
        usage: dict[str, dict[str, Decimal]],
        now: datetime,
    ) -> Reading:
        watch = self.watch
        quantities, problems = customer_usage(customer, index, watch.meters, usage)
        totals = {meter: q.quantity for meter, q in quantities.items()}
        spend = None
        kinds = {t.kind for t in watch.thresholds if t.applies_to(customer)}
        if not problems and kinds & {Kind.SPEND, Kind.CREDIT}:
            try:
                spend = rate_plan(watch.card, customer.plan, customer.currency, quantities).total
            except MeterlineError as exc:  # a plan the card cannot price: no spend to watch
                log.warning("spend of %s not priced: %s", customer.id, exc)
        credit = None
        if watch.credit is not None and Kind.CREDIT in kinds:
            held = watch.credit(customer, now)
            if held is not None:  # credit is taken when the period is invoiced: look ahead
                granted, remaining = held
                credit = (granted, CreditHeld(granted, remaining).after(spend))
        return Reading(customer, period, totals, spend, credit)


def _row(namespace: str, crossing: Crossing, notification: Notification) -> NotificationRow:
    return NotificationRow(
        namespace,
        notification.id,
        notification.type.value,
        crossing.customer.id,
        crossing.customer.subscription,
        crossing.threshold.id,
        to_ms(crossing.period.start),
        notification.at_ms,
        notification.body().decode(),
    )
