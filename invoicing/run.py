"""A billing run over every due subscription period of one month: safe to repeat and to crash.

Steps, and what a crash after each costs:

0. refuse to close a period that has not ended plus the grace, or while the metering
   worker has not processed every record (consumer lag > 0), unless forced — *nothing
   happened*;
1. finish pending drafts of an earlier, crashed run (drafts with no ``invoices`` row):
   ``init_transactions`` fences the crashed producer (its open transaction is aborted),
   the ``invoices`` topic is read with ``read_committed`` from the drafts' creation time,
   drafts not found there are published now (the stored bytes, in one transaction), and
   then all are stored as issued — *a crash repeats this step; it is idempotent*;
2. read the ledger and usage as of the run's ingestion cutoff, and plan (pure), then
   apply prepaid credit from the credit ledger (read after step 1, so it holds what the
   finished drafts consumed) — *nothing happened*;
3. store the new invoices as drafts (``invoice_drafts``): this is the intent record —
   *crash: the next run finds them pending and does step 1 for them; they are not
   re-rated, so their cutoff and lines stay as recorded*;
4. publish the drafts in one Kafka transaction — *crash before the commit: the broker
   aborts the transaction (fenced by the next run, or after its timeout), so
   read_committed consumers never see those records and step 1 republishes them; crash
   after the commit: step 1 finds them on the topic and does not publish them again*;
5. store the credit consumption the documents record, lines, then ``invoices`` rows —
   *crash: step 1 finds them committed and writes the entries and rows again (reads
   collapse the copies)*.

So each invoice is committed to the topic exactly once and stored exactly once, however
often the run is killed and repeated.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from invoicing.credit_ledger import read_book
from invoicing.customers import Customer
from invoicing.document import InvoiceDocument
from invoicing.evidence import EvidenceReader
from invoicing.fees import Ahead, billed_ahead, billed_fees
from invoicing.invoice import Invoice
from invoicing.ledger import (
    Publisher,
    finish_pending,
    read_ledger,
    record_card_version,
    store_drafts,
    store_issued,
)
from invoicing.periods import Month, Period
from invoicing.plan import (
    SubjectUsage,
    choose_cutoff,
    credit_invoices,
    due_periods,
    plan_subscription,
)
from invoicing.publish import KafkaPublisher
from invoicing.usage import priced_meters
from rating import RateCard
from rating.versions import card_version
from schemas.errors import InvalidInput
from schemas.metering.definitions import MeterSet
from schemas.storage.engine import Engine
from schemas.storage.events_table import EventsTable, LineEvents
from schemas.storage.invoices_table import (
    InvoicesTable,
)
from schemas.storage.usage import UsageRead, read_usage
from schemas.timeutil import format_ms, now_ms
from streams.progress import Lag

__all__ = [
    "BillingRun",
    "KafkaPublisher",
    "RunResult",
    "run_period",
    "stream_not_ready",
]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class RunResult:
    month: Month
    cutoff_s: int
    invoices: list[Invoice] = field(default_factory=list)
    emitted: list[str] = field(default_factory=list)
    already_emitted: list[str] = field(default_factory=list)
    recovered: list[str] = field(default_factory=list)
    still_open: list[tuple[Customer, Period]] = field(default_factory=list)


def stream_not_ready(lag: Lag) -> str | None:
    """Why usage may be incomplete, or ``None`` when every record is metered."""
    behind = {p: n for p, n in lag.per_partition.items() if n > 0}
    if not behind:
        return None
    return (
        f"the metering worker has not processed {sum(behind.values())} records yet "
        f"(lag per partition: {behind})"
    )


def _month_of(period: Period | Month) -> Month:
    if isinstance(period, Month):
        return period
    first = period.first_day
    return Month(first.year, first.month)


@dataclass(frozen=True, slots=True)
class BillingRun:
    """What a billing run is asked: the month whose ending periods it bills, for which
    customers and at which prices, and how strictly.

    ``cutoff_s`` fixes the ingestion cutoff (a whole minute, not in the future), e.g. to
    re-rate a period exactly as before; by default it is the run's ``now`` rounded up to
    the minute, and the run waits for that minute to pass.  ``force`` closes periods that
    are not due and skips the lag check; ``dry_run`` plans and stores nothing."""

    namespace: str
    database: str
    period: Period | Month
    customers: Sequence[Customer]
    card: RateCard
    meters: MeterSet
    dry_run: bool = False
    force: bool = False
    grace: timedelta = timedelta(0)
    cutoff_s: int | None = None


def run_period(
    request: BillingRun,
    *,
    engine: Engine,
    publish: Publisher | None,
    now: datetime | None = None,
    progress: Callable[[], Lag] | None = None,
    report: Callable[[str], None] = log.info,
    sleep: Callable[[float], None] = time.sleep,
) -> RunResult:
    """Bill every subscription period ending in the month (the module docstring says
    what a crash after each step costs).  ``progress`` reads the worker's lag, checked
    before usage is read."""
    namespace, database, period = request.namespace, request.database, request.period
    customers, card, meters = request.customers, request.card, request.meters
    dry_run, force, grace, cutoff_s = (
        request.dry_run,
        request.force,
        request.grace,
        request.cutoff_s,
    )
    month = _month_of(period)
    moment = now or datetime.now(UTC)
    if grace.total_seconds() % 60:
        raise InvalidInput.single("billing run", "grace", "not whole minutes", "e.g. 60m")
    cutoff = choose_cutoff(moment) if cutoff_s is None else cutoff_s
    if cutoff % 60 or (cutoff_s is not None and cutoff > moment.timestamp()):
        raise InvalidInput.single(
            "billing run",
            "cutoff",
            f"{format_ms(cutoff * 1000)} is not a whole minute in the past",
            "give a past time on a whole minute, e.g. 2026-12-01T01:00Z",
        )
    result = RunResult(month, cutoff)
    due = due_periods(customers, month, moment, grace)
    result.still_open = [(d.customer, d.period) for d in due if not d.closed and not force]
    closable = [d for d in due if d.closed or force]
    if not force and not closable and result.still_open:
        first = min(result.still_open, key=lambda pair: pair[1].end)[1]
        raise InvalidInput.single(
            "billing run",
            "period",
            f"no period ending in {month.label} can be closed yet: {first.label} is open "
            f"until {first.end + grace:%Y-%m-%dT%H:%MZ} (end + grace)",
            "wait for the period to end (plus grace), or pass --force",
        )
    if not force and closable:
        late = [d.period for d in closable if cutoff < (d.period.end + grace).timestamp()]
        if late:
            raise InvalidInput.single(
                "billing run",
                "cutoff",
                f"{format_ms(cutoff * 1000)} is before {late[0].label} ended plus grace",
                "use a later cutoff, or pass --force",
            )
    wait = cutoff - time.time()
    if wait > 0 and not dry_run:
        report(f"waiting {wait:.0f}s for the ingestion cutoff {format_ms(cutoff * 1000)}")
        sleep(wait)
    if not force and progress is not None and closable:
        why = stream_not_ready(progress())
        if why is not None:
            raise InvalidInput.single(
                "billing run",
                "stream",
                f"refusing to close {month.label}: {why}",
                "wait for the worker to catch up (see `make status`), or pass --force",
            )
    table = InvoicesTable(database)
    ledger = read_ledger(engine, table, namespace)
    if not dry_run and publish is not None:
        result.recovered = finish_pending(engine, table, namespace, ledger, publish, report)
    read = _usage_reader(engine, database, namespace, meters, card)
    created = now_ms()
    version = card_version(card)
    evidence = _evidence_reader(engine, database, namespace)
    ahead_of, fees_of = _document_readers(engine, table, namespace)
    periods_of: dict[int, list[Period]] = {}
    for d in closable:  # grouped once: a scan per customer would be quadratic
        periods_of.setdefault(id(d.customer), []).append(d.period)
    for index, customer in enumerate(customers):
        periods = periods_of.get(id(customer), [])
        if not periods:
            continue
        key = (customer.id, customer.subscription)
        history = list(ledger.get(key, []))
        planned = plan_subscription(
            namespace=namespace,
            customer=customer,
            index=index,
            periods=periods,
            history=history,
            cutoff_s=result.cutoff_s,
            read=read,
            card=card,
            meters=meters,
            created_ms=created,
            version=version,
            evidence=evidence,
            ahead_of=ahead_of,
            fees_of=fees_of,
        )
        result.invoices += planned.invoices
        result.already_emitted += planned.existing
        report(
            f"{customer.id}/{customer.subscription}: {len(planned.invoices)} to emit,"
            f" {len(planned.existing)} already emitted"
        )
    if result.invoices:
        billed = sorted({invoice.customer.id for invoice in result.invoices})
        book = read_book(engine, database, namespace, billed)
        result.invoices = credit_invoices(result.invoices, book)
    result.emitted = [invoice.id for invoice in result.invoices]
    if dry_run or not result.invoices:
        return result
    documents = {invoice.id: invoice.to_json() for invoice in result.invoices}
    record_card_version(engine, database, namespace, card, created)
    report(f"rate card {version}")
    store_drafts(engine, table, result.invoices, documents)
    report(f"recorded {len(documents)} drafts; publishing them in one transaction")
    if publish is not None:
        publish.publish(list(documents.items()))
    store_issued(engine, table, namespace, list(documents.values()))
    report(f"issued {len(documents)} invoices")
    return result


def _document_readers(
    engine: Engine, table: InvoicesTable, namespace: str
) -> tuple[Callable[[str], list[Ahead]], Callable[[str], dict[str, Decimal] | None]]:
    """What a stored invoice billed in advance (only asked for plans with fees billed in
    advance), and the share of each flat fee it billed (only asked for a period with late
    usage): both read from its document, once."""
    cache: dict[str, InvoiceDocument | None] = {}

    def document(invoice_id: str) -> InvoiceDocument | None:
        if invoice_id not in cache:
            rows = engine.execute(table.documents(namespace, [invoice_id]).to_sql())
            cache[invoice_id] = InvoiceDocument.from_json(str(rows[0][2])) if rows else None
        return cache[invoice_id]

    def ahead_of(invoice_id: str) -> list[Ahead]:
        found = document(invoice_id)
        return [] if found is None else billed_ahead(found)

    def fees_of(invoice_id: str) -> dict[str, Decimal] | None:
        found = document(invoice_id)
        return None if found is None else billed_fees(found)

    return ahead_of, fees_of


def _evidence_reader(engine: Engine, database: str, namespace: str) -> EvidenceReader:
    """Every subject's event digests per (event type, period, cutoff), one query each."""
    table = EventsTable(database).name
    cache: dict[tuple[str, int, int, int], dict[str, tuple[int, str]]] = {}

    def read(
        event_type: str, start_s: int, end_s: int, cutoff_s: int
    ) -> dict[str, tuple[int, str]]:
        key = (event_type, start_s, end_s, cutoff_s)
        if key not in cache:
            query = LineEvents(
                namespace, event_type, None, start_s * 1000, end_s * 1000, cutoff_s * 1000
            )
            rows = engine.execute(query.evidence(table).to_sql())
            cache[key] = {str(s): (int(n), str(d)) for s, n, d in rows}
        return cache[key]

    return read


def _usage_reader(
    engine: Engine, database: str, namespace: str, meters: MeterSet, card: RateCard
) -> Callable[[int, int, int | None, int], SubjectUsage]:
    """The storage layer's usage reader over every priced meter, cached per window."""
    slugs = tuple(sorted(priced_meters(card)))
    cache: dict[tuple[int, int, int | None, int], SubjectUsage] = {}

    def read(start_s: int, end_s: int, from_s: int | None, before_s: int) -> SubjectUsage:
        key = (start_s, end_s, from_s, before_s)
        if key not in cache:
            request = UsageRead(
                namespace, database, meters, slugs, start_s, end_s, from_s, before_s
            )
            cache[key] = read_usage(engine, request)
        return cache[key]

    return read
