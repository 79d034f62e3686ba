"""The spend-control handlers: prepaid credits, the entitlement check and the webhook
delivery log.  Thin glue like ``api.routes.Handlers``, whose authentication, services and
usage reader they use; what they decide is in ``api.credits``, ``api.entitlements`` and
``api.deliveries`` (the rules in ``invoicing.credits`` and ``invoicing.entitlements``).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import Response

from api.auth import require_api_key, require_customer
from api.credit_holders import CreditHolders
from api.credits import (
    balance_json,
    grant_state_json,
    keyed_grant_id,
    parse_at,
    parse_body,
    parse_void,
    same_terms,
)
from api.deliveries import deliveries_page, parse_deliveries
from api.entitlements import (
    Entitlement,
    entitlement,
    feature_of,
    merged_usage,
    parse_quantity,
)
from api.problems import HttpProblem, invalid
from api.quotes import (
    plan_meters,
    subscription_holding,
)
from api.responses import json_response
from api.routes import Handlers, read_body
from invoicing.credit_ledger import book_from_rows, entry_row, grant_row
from invoicing.credits import CreditBook, credit_held, void_entry
from invoicing.entitlements import decide
from invoicing.grants import parse_grant
from schemas.errors import InvalidInput
from schemas.storage.credits_table import CreditsTable
from schemas.timeutil import now_ms, truncate_ms

__all__ = ["SpendHandlers"]

log = logging.getLogger(__name__)


class SpendHandlers:
    def __init__(self, handlers: Handlers, holders: CreditHolders | None = None) -> None:
        self.h = handlers
        self.holders = CreditHolders() if holders is None else holders
        self._refresh: asyncio.Task[None] | None = None

    # -- prepaid credits (``api.credits``; the rules in ``invoicing.credits``) ------------

    async def credit_book(self, request: Request, action: str | None) -> tuple[str, CreditBook]:
        """The path's customer and its credit book, for a caller allowed to: an API key,
        or (``action`` None: reading) the customer's own token; 404 for no such customer."""
        principal = self.h.principal(request)
        customer_id = request.path_params["customerId"]
        if action is not None:
            require_api_key(principal, action)
        require_customer(principal, customer_id)
        if not any(c.id == customer_id for c in self.h.s.customers):
            raise HttpProblem(404, "Not found", f"no customer {customer_id!r}")
        table = CreditsTable(self.h.s.settings.clickhouse_database)
        statement = table.entries(self.h.s.settings.namespace, [customer_id])
        book = book_from_rows(await self.h.s.reader.rows(statement.to_sql()))
        self.holders.learn(customer_id, bool(book.grants))
        return customer_id, book

    async def create_grant(self, request: Request) -> Response:
        customer_id, book = await self.credit_book(request, "grant credit")
        raw = await read_body(request, self.h.s.settings.api_max_body_bytes)
        now = truncate_ms(datetime.now(UTC))
        keyed = keyed_grant_id(customer_id, request.headers.get("idempotency-key"))
        grant = parse_grant(
            parse_body(raw, request.headers.get("content-type"), "credit grant"),
            customer_id=customer_id,
            billed_currencies={c.currency for c in self.h.s.customers if c.id == customer_id},
            grant_id=keyed or f"gr_{uuid.uuid4().hex[:20]}",
            now=now,
        )
        stored = next((g for g in book.grants if g.grant_id == grant.grant_id), None)
        if stored is not None:  # a retried request: the grant it made, once
            if not same_terms(stored, grant):
                raise HttpProblem(
                    409,
                    "Conflict",
                    f"grant {grant.grant_id!r} exists with other terms; grants never change "
                    "(void it and grant again under a new id)",
                )
            return json_response(grant_state_json(book.states()[grant.grant_id], now))
        table = CreditsTable(self.h.s.settings.clickhouse_database)
        taken = await self.h.s.reader.rows(
            table.grant(self.h.s.settings.namespace, grant.grant_id).to_sql()
        )
        if taken:
            raise HttpProblem(409, "Conflict", f"grant id {grant.grant_id!r} is taken")
        await self.h.s.reader.insert(
            *table.insert([grant_row(self.h.s.settings.namespace, grant, now_ms())])
        )
        self.holders.learn(customer_id, True)
        state = CreditBook((grant,)).states()[grant.grant_id]
        return json_response(grant_state_json(state, now), status=201)

    async def void_grant(self, request: Request) -> Response:
        customer_id, book = await self.credit_book(request, "void credit")
        raw = await read_body(request, self.h.s.settings.api_max_body_bytes)
        reason = parse_void(parse_body(raw, request.headers.get("content-type"), "grant void"))
        grant_id = request.path_params["grantId"]
        state = book.states().get(grant_id)
        if state is None:
            raise HttpProblem(
                404, "Not found", f"customer {customer_id!r} has no grant {grant_id!r}"
            )
        if state.voided is not None:
            raise HttpProblem(409, "Conflict", f"grant {grant_id!r} is already void")
        now = truncate_ms(datetime.now(UTC))
        entry = void_entry(state, now, reason)
        table = CreditsTable(self.h.s.settings.clickhouse_database)
        await self.h.s.reader.insert(
            *table.insert([entry_row(self.h.s.settings.namespace, entry, now_ms())])
        )
        voided = book.with_entries([entry]).states()[grant_id]
        return json_response(grant_state_json(voided, now))

    async def list_grants(self, request: Request) -> Response:
        _, book = await self.credit_book(request, None)
        at = parse_at(request.query_params.get("at"), truncate_ms(datetime.now(UTC)))
        states = book.states()
        return json_response([grant_state_json(states[g.grant_id], at) for g in book.grants])

    async def credit_balance(self, request: Request) -> Response:
        customer_id, book = await self.credit_book(request, None)
        at = parse_at(request.query_params.get("at"), truncate_ms(datetime.now(UTC)))
        return json_response(balance_json(customer_id, book, at))

    # -- entitlements (``api.entitlements``; the decision in ``invoicing.entitlements``) --

    async def entitlement(self, request: Request) -> Response:
        """Has-access, usage and balance of a customer for a feature, to pre-authorise a
        request: a customer token only its own customer (403 before the lookup), an API
        key any (404 for an unknown customer or feature).  The ledger and the period's
        usage of the feature's meter (the customer's subjects only) are read at once;
        the plan's other priced meters only for a customer holding credit (its balance
        needs the period's spend) — at once with the ledger when the credit-holder hint
        (``api.credit_holders``) expects credit, after it otherwise."""
        principal = self.h.principal(request)
        customer_id = request.path_params["customerId"]
        require_customer(principal, customer_id)
        entries = self.h.s.subscriptions.get(customer_id)
        if not entries:
            raise HttpProblem(404, "Not found", f"no customer {customer_id!r}")
        feature = feature_of(self.h.s.features, request.path_params["feature"])
        quantity = parse_quantity(request.query_params.get("quantity"), feature)
        now = truncate_ms(datetime.now(UTC))
        found = subscription_holding(entries, now)
        if found is None:
            none = Entitlement(feature, customer_id, None, None, now, decide(feature, None))
            return json_response(replace(none, quantity=quantity).to_json())
        index, customer, period = found
        self.refresh_holders()
        subjects, first = customer.subjects, {feature.meter} if feature.meter else set()
        priced = set(plan_meters(self.h.s.card, customer, index))  # for the spend so far
        if self.holders.likely(customer.id):
            first |= priced
        ledger = CreditsTable(self.h.s.settings.clickhouse_database).entries(
            self.h.s.settings.namespace, [customer.id]
        )
        rows, stored = await asyncio.gather(
            self.h.s.reader.rows(ledger.to_sql()),
            self.h.period_usage(period, first, subjects, narrow=True, concurrent=True),
        )
        book = book_from_rows(rows)
        self.holders.learn(customer.id, bool(book.grants))
        rest = priced - first
        if rest and credit_held(book, customer.id, customer.currency, now) is not None:
            more = await self.h.period_usage(period, rest, subjects, narrow=True, concurrent=True)
            stored = merged_usage(stored, more)
        pricing = (self.h.s.card, self.h.s.meters)
        answer = entitlement(feature, found, stored, book, pricing, now, quantity)
        return json_response(answer.to_json())

    def refresh_holders(self) -> None:
        """Start reading the credit-holder hint again when it is due (not waited for)."""
        if self.holders.due(time.monotonic()):
            self._refresh = asyncio.create_task(self._read_holders())

    async def _read_holders(self) -> None:
        settings = self.h.s.settings
        statement = CreditsTable(settings.clickhouse_database).holders(settings.namespace)
        read = False
        try:
            rows = await self.h.s.reader.rows(statement.to_sql())
            self.holders.refreshed((str(r[0]) for r in rows), time.monotonic())
            read = True
        except Exception:  # the hint only saves time: keep the old one, say why
            log.warning("could not read who holds credit; keeping the hint", exc_info=True)
        finally:  # failed, or cancelled with its event loop: try again later
            if not read:
                self.holders.failed(time.monotonic())

    # -- notifications -------------------------------------------------------------------

    async def notification_deliveries(self, request: Request) -> Response:
        """The webhook delivery log (``api.deliveries``): API keys only."""
        require_api_key(self.h.principal(request), "read the webhook delivery log")
        try:
            query = parse_deliveries(list(request.query_params.multi_items()))
        except InvalidInput as exc:
            raise invalid(exc) from None
        settings = self.h.s.settings
        statement = query.statement(settings.clickhouse_database, settings.namespace)
        rows = await self.h.s.reader.rows(statement.to_sql())
        return json_response(deliveries_page(rows, query.limit))
