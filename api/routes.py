"""The HTTP handlers: authenticate, call the pure parsers and shapers, run one query.

Each handler is thin glue; what it decides is in ``api.auth``, ``api.ingest``,
``api.query``, ``api.estimates``, ``api.quotes`` and ``api.pages``; spend control's handlers
(credits, entitlements, the delivery log) are in ``api.spend_routes``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Collection
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal

import orjson
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from api import metrics, pages
from api.auth import Principal, authenticate, require_api_key, require_customer, require_namespace
from api.estimates import current_period, estimate, period_json, with_credit
from api.fastingest import accept_body
from api.line_events import line_events
from api.problems import HttpProblem, invalid
from api.query import parse_meter_query, query_document, rows_to_csv, shape_rows
from api.quotes import (
    current_subscription,
    parse_quote,
    plan_meters,
    price_quote,
    proposed_usage,
)
from api.responses import RawJson, json_response, preferred
from api.services import Services
from invoicing.credit_ledger import book_from_rows
from invoicing.periods import Period
from invoicing.usage import priced_meters
from schemas.errors import DeliveryFailed, InvalidInput, Problem, ServiceUnavailable
from schemas.metering.definitions import MeterDefinition
from schemas.storage.credits_table import CreditsTable
from schemas.storage.invoices_table import InvoiceGet, InvoiceList
from schemas.storage.planner import plan_meter_query, plan_subjects
from schemas.storage.usage import UsageRead
from schemas.storage.windows_table import MeterSubjects
from schemas.timeutil import parse_instant, truncate_ms

__all__ = ["Handlers"]


def meter_json(meter: MeterDefinition) -> dict[str, object]:
    return {
        "id": meter.slug,
        "slug": meter.slug,
        "description": meter.description,
        "aggregation": meter.aggregation.value,
        "eventType": meter.event_type,
        "valueProperty": meter.value_property,
        "groupBy": dict(meter.group_by),
        "unit": meter.unit,
    }


class Handlers:
    def __init__(self, services: Services) -> None:
        self.s = services
        self._ingesting = 0

    # -- helpers -------------------------------------------------------------------------

    def principal(self, request: Request) -> Principal:
        principal = authenticate(self.s.auth, request.headers.get("authorization"))
        require_namespace(principal, self.s.settings.namespace)
        return principal

    def visible_subjects(self, principal: Principal) -> tuple[str, ...] | None:
        """None: every subject; else only the customer's own."""
        if principal.customer is None:
            return None
        return self.s.subjects_of(principal.customer)

    def meter(self, slug: str) -> MeterDefinition:
        meter = self.s.meters.by_slug.get(slug)
        if meter is None:
            raise HttpProblem(404, "Not found", f"no meter {slug!r}")
        return meter

    # -- ingest --------------------------------------------------------------------------

    async def ingest(self, request: Request) -> Response:
        try:
            principal = self.principal(request)
            require_api_key(principal, "ingest events")
        except HttpProblem as exc:
            reason = "unauthenticated" if exc.status == 401 else "forbidden"
            metrics.EVENTS_RECEIVED.inc()
            metrics.EVENTS_REJECTED.labels(reason).inc()
            raise
        limit = self.s.settings.api_max_ingest_in_flight
        if self._ingesting >= limit:
            metrics.EVENTS_RECEIVED.inc()
            metrics.EVENTS_REJECTED.labels("shed").inc()
            raise HttpProblem(
                429,
                "Too many requests",
                f"{limit} ingest requests are in progress; retry after the Retry-After "
                "seconds (nothing of this request was accepted)",
                headers={"Retry-After": str(self.s.settings.api_shed_retry_after_s)},
            )
        self._ingesting += 1
        metrics.INGEST_IN_FLIGHT.set(self._ingesting)
        try:
            return await self._ingest(request)
        finally:
            self._ingesting -= 1
            metrics.INGEST_IN_FLIGHT.set(self._ingesting)

    async def _ingest(self, request: Request) -> Response:
        raw = await self._body(request)
        try:
            events = accept_body(
                raw, request.headers.get("content-type"), self.s.settings.api_max_batch_events
            )
        except HttpProblem as exc:
            reason = {413: "too_large", 415: "unsupported_media_type"}.get(exc.status, "invalid")
            count = _count_items(raw)
            metrics.EVENTS_RECEIVED.inc(count)
            metrics.EVENTS_REJECTED.labels(reason).inc(count)
            raise
        metrics.EVENTS_RECEIVED.inc(len(events))
        started = time.monotonic()
        retry = {"Retry-After": str(self.s.settings.api_retry_after_s)}
        try:
            await self.s.delivery.deliver(events, self.s.settings.api_delivery_timeout_s)
        except ServiceUnavailable as exc:
            metrics.EVENTS_REJECTED.labels("kafka_unavailable").inc(len(events))
            raise HttpProblem(503, "Kafka unavailable", str(exc), headers=retry) from None
        except DeliveryFailed as exc:
            metrics.EVENTS_REJECTED.labels("not_acknowledged").inc(len(events))
            detail = f"{exc}; retry the whole batch (duplicates are dropped by source and id)"
            raise HttpProblem(503, "Not acknowledged", detail, headers=retry) from None
        metrics.DELIVERY_SECONDS.observe(time.monotonic() - started)
        metrics.EVENTS_ACCEPTED.inc(len(events))
        return Response(status_code=204)

    async def _body(self, request: Request) -> bytes:
        try:
            return await read_body(request, self.s.settings.api_max_body_bytes)
        except HttpProblem as exc:
            if exc.status == 413:
                metrics.EVENTS_RECEIVED.inc()
                metrics.EVENTS_REJECTED.labels("too_large").inc()
            raise

    # -- meters --------------------------------------------------------------------------

    async def list_meters(self, request: Request) -> Response:
        self.principal(request)
        return json_response([meter_json(m) for m in self.s.meters])

    async def get_meter(self, request: Request) -> Response:
        self.principal(request)
        return json_response(meter_json(self.meter(request.path_params["slug"])))

    async def meter_subjects(self, request: Request) -> Response:
        principal = self.principal(request)
        meter = self.meter(request.path_params["slug"])
        query = MeterSubjects(
            self.s.settings.namespace, meter.slug, self.visible_subjects(principal)
        )
        table = plan_subjects().table(self.s.settings.clickhouse_database)
        rows = await self.s.reader.rows(query.on(table).to_sql())
        return json_response([str(row[0]) for row in rows])

    async def meter_query(self, request: Request) -> Response:
        principal = self.principal(request)
        meter = self.meter(request.path_params["slug"])
        try:
            parsed = parse_meter_query(
                list(request.query_params.multi_items()), meter, int(time.time())
            )
        except InvalidInput as exc:
            raise invalid(exc) from None
        visible = self.visible_subjects(principal)
        if visible is not None:
            outside = [s for s in parsed.subjects if s not in visible]
            if outside:
                raise HttpProblem(
                    403, "Forbidden", f"subject {outside[0]!r} is not this customer's"
                )
            if not parsed.subjects:
                parsed = replace(parsed, subjects=visible)
        query = parsed.to_query(self.s.settings.namespace, meter)
        plan = plan_meter_query(query, windowed=parsed.window_size is not None)
        table = plan.table(self.s.settings.clickhouse_database)
        rows = shape_rows(parsed, meter, await self.s.reader.rows(query.on(table).to_sql()))
        source = {"X-Meterline-Table": table.rsplit(".", 1)[-1]}
        if preferred(request.headers.get("accept"), ("application/json", "text/csv")) == "text/csv":
            return Response(rows_to_csv(parsed, rows), media_type="text/csv", headers=source)
        answer = json_response(query_document(parsed, rows))
        answer.headers.update(source)
        return answer

    # -- customers (the dashboard's per-customer view) -------------------------------------

    async def list_customers(self, request: Request) -> Response:
        principal = self.principal(request)
        customers = [c for c in self.s.customers if principal.customer in (None, c.id)]
        now = truncate_ms(datetime.now(UTC))
        period = current_period(now)
        subjects = {s for c in customers for s in c.subjects}
        usage = await self.period_usage(period, priced_meters(self.s.card), subjects)
        estimates = estimate(
            self.s.customers, self.s.card, self.s.meters, usage, only=principal.customer
        )
        # One ledger read for every listed customer (``api.estimates.with_credit``): an API
        # key's is the namespace's whole ledger, not an IN list of every customer (which
        # outgrows a query's size limit at 10k customers); a token's, its customer's.
        own = None if principal.customer is None else [principal.customer]
        ledger = CreditsTable(self.s.settings.clickhouse_database)
        statement = ledger.entries(self.s.settings.namespace, own)
        book = book_from_rows(await self.s.reader.rows(statement.to_sql()))
        return json_response(
            {
                "period": period_json(period),
                "customers": with_credit(estimates, book, now),
            }
        )

    async def quote(self, request: Request) -> Response:
        """What proposed usage would add to the customer's current period (``api.quotes``):
        a customer token quotes only its own customer (403 before looking it up, so a
        token cannot probe which customers exist), an API key any (404 if unknown)."""
        principal = self.principal(request)
        customer_id = request.path_params["customerId"]
        require_customer(principal, customer_id)
        entries = [(i, c) for i, c in enumerate(self.s.customers) if c.id == customer_id]
        if not entries:
            raise HttpProblem(404, "Not found", f"no customer {customer_id!r}")
        raw = await read_body(request, self.s.settings.api_max_body_bytes)
        asked = parse_quote(raw, request.headers.get("content-type"))
        now = datetime.now(UTC)
        index, customer, period = current_subscription(entries, asked.subscription, now)
        priced = plan_meters(self.s.card, customer, index)
        proposed = proposed_usage(self.s.card, customer, asked.usage)
        stored = await self.period_usage(period, set(priced), set(customer.subjects), narrow=True)
        quote = price_quote(
            self.s.card, self.s.meters, (index, customer, period), stored, proposed, now
        )
        return json_response(quote.to_json())

    async def period_usage(
        self,
        period: Period,
        slugs: Collection[str],
        subjects: Collection[str],
        *,
        narrow: bool = False,
        concurrent: bool = False,
    ) -> dict[str, dict[str, Decimal]]:
        """``subjects``' usage of the meters ``slugs`` over ``period``, as stored now: the
        one reader (``UsageRead``) that estimates and billing share.  ``narrow``: filter
        the subjects in the query (one customer's few), not after it.  ``concurrent``:
        run the statements (one per meter) at once on the thread pool, not one by one."""
        read = UsageRead(
            self.s.settings.namespace,
            self.s.settings.clickhouse_database,
            self.s.meters,
            tuple(sorted(set(slugs) & self.s.meters.slugs())),
            period.start_s,
            period.end_s,
            subjects=tuple(sorted(subjects)) if narrow else None,
        )
        # one customer's few subjects: read on the one shard of a cluster that holds them
        on = read.subjects
        if concurrent:
            results = await asyncio.gather(*(self.s.reader.rows(s, on) for s in read.statements()))
        else:
            results = [await self.s.reader.rows(sql, on) for sql in read.statements()]
        return read.collect(results, subjects)

    # -- invoices ------------------------------------------------------------------------

    async def list_invoices(self, request: Request) -> Response:
        principal = self.principal(request)
        params = request.query_params
        customer = params.get("customer") or None
        if principal.customer is not None:
            if customer not in (None, principal.customer):
                raise HttpProblem(403, "Forbidden", "a customer token can list only its invoices")
            customer = principal.customer
        problems: list[Problem] = []
        bounds = {name: _period_bound(name, params.get(name), problems) for name in ("from", "to")}
        limit = params.get("limit", "100")
        if not limit.isdigit() or not 1 <= int(limit) <= 1000:
            problems.append(Problem("limit", "must be an integer from 1 to 1000", "e.g. 100"))
        if problems:
            raise invalid(InvalidInput("invoice list query", problems))
        query = InvoiceList(
            self.s.settings.namespace, customer, bounds["from"], bounds["to"], int(limit)
        )
        rows = await self.s.reader.rows(query.on(self.s.invoices_table).to_sql())
        return json_response([RawJson(str(row[0])) for row in rows])

    async def scoped_invoice(self, request: Request) -> str:
        """The stored document of the invoice the path names, for a caller allowed to read
        it: 404 when there is none, 403 for another customer's token."""
        principal = self.principal(request)
        query = InvoiceGet(self.s.settings.namespace, request.path_params["invoiceId"])
        rows = await self.s.reader.rows(query.on(self.s.invoices_table).to_sql())
        if not rows:
            raise HttpProblem(404, "Not found", "no such invoice")
        require_customer(principal, str(rows[0][0]))
        return str(rows[0][1])

    async def get_invoice(self, request: Request) -> Response:
        document = await self.scoped_invoice(request)
        if (
            preferred(request.headers.get("accept"), ("application/json", "text/html"))
            == "text/html"
        ):
            return HTMLResponse(pages.invoice_html(document))
        return json_response(RawJson(document))

    async def invoice_line_events(self, request: Request) -> Response:
        return await line_events(self.s, await self.scoped_invoice(request), request)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed ``limit``
    bytes: from ``Content-Length``, and again while it streams in (a body without one,
    or one that lies, is never held in full)."""
    declared = request.headers.get("content-length")
    too_large = HttpProblem(413, "Payload too large", f"the body exceeds {limit} bytes")
    if declared is not None:
        if not declared.strip().isdigit():
            raise invalid(InvalidInput.single("request", "Content-Length", "not a number"))
        if int(declared) > limit:
            raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def _period_bound(name: str, text: str | None, problems: list[Problem]) -> int | None:
    if not text:
        return None
    ms = parse_instant(text.strip().replace(" ", "+"))  # a '+' left unescaped in a URL
    if ms is None:
        problems.append(
            Problem(name, "not an RFC 3339 time with an offset", "e.g. 2026-10-01T00:00:00Z")
        )
        return None
    return max(0, min(ms // 1000, 2**32 - 1))


def _count_items(raw: bytes) -> int:
    """How many events a rejected body held, for the metrics (1 if it is not an array)."""
    try:
        payload = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return 1
    return len(payload) if isinstance(payload, list) and payload else 1
