"""``GET /api/v1/invoices/{invoiceId}/lines/{lineNo}/events``: the events an invoice line
bills, paged, so that a customer can recompute the line's digest, quantity and amount
(the recipe is in ``invoicing.evidence`` and ``docs/invoicing.md``).

Scoped like the invoice itself (``Handlers.scoped_invoice``): a customer token reads only
its own invoices' events.
Pages are ordered by ``(source, id)``; ``next`` is an opaque cursor (the last event's
source and id) to pass back as ``after``.  Each event carries ``event``, the stored
CloudEvents JSON *text* byte for byte — what the hash covers — and its ``hash``.
"""

from __future__ import annotations

import base64
import binascii

import orjson
from starlette.requests import Request
from starlette.responses import Response

from api.problems import HttpProblem, invalid
from api.responses import json_response
from api.services import Services
from invoicing.document import InvoiceDocument, UsageLine
from schemas.errors import InvalidInput, Problem
from schemas.storage.events_table import EventsTable, LineEvents
from schemas.timeutil import format_ms, parse_instant

__all__ = ["DEFAULT_LIMIT", "MAX_LIMIT", "line_events"]

DEFAULT_LIMIT = 500
MAX_LIMIT = 5000


async def line_events(services: Services, invoice: str, request: Request) -> Response:
    """One page of the events of line ``lineNo`` of ``invoice`` (its stored document,
    already scoped to the caller by ``Handlers.scoped_invoice``)."""
    document = InvoiceDocument.from_json(invoice)
    line = _line(document, request.path_params["lineNo"])
    evidence = line.evidence
    assert evidence is not None
    after, limit = _paging(request)
    events = LineEvents(
        services.settings.namespace,
        evidence.event_type,
        tuple(evidence.subjects),
        _ms(evidence.events_from),
        _ms(evidence.events_to),
        _ms(evidence.ingested_before),
    )
    table = EventsTable(services.settings.clickhouse_database).name
    page = await services.reader.rows(events.page(table, after, limit).to_sql())
    body = {
        "invoice_id": document.invoice_id,
        "line_no": line.line_no,
        "events_digest": evidence.events_digest,
        "events": [
            {
                "source": str(source),
                "id": str(event_id),
                "subject": str(subject),
                "time": format_ms(int(time_ms)),
                "ingested_at": format_ms(int(ingested_ms)),
                "event": str(data),
                "hash": str(hashed),
            }
            for source, event_id, subject, time_ms, ingested_ms, data, hashed in page
        ],
        "next": _cursor(str(page[-1][0]), str(page[-1][1])) if len(page) == limit else None,
    }
    return json_response(body)


def _line(document: InvoiceDocument, line_no: str) -> UsageLine:
    number = int(line_no) if line_no.isdigit() else 0
    for line in document.lines:
        if line.line_no == number:
            if isinstance(line, UsageLine) and line.evidence is not None:
                return line
            raise HttpProblem(
                404,
                "Not found",
                f"line {number} of {document.invoice_id} bills no events (a fixed fee, a "
                "minimum, an adjustment, or an invoice issued before lines carried evidence)",
            )
    raise HttpProblem(
        404, "Not found", f"{document.invoice_id} has lines 1 to {len(document.lines)}"
    )


def _paging(request: Request) -> tuple[tuple[str, str] | None, int]:
    params = request.query_params
    problems: list[Problem] = []
    limit_text = params.get("limit", str(DEFAULT_LIMIT))
    if not limit_text.isdigit() or not 1 <= int(limit_text) <= MAX_LIMIT:
        problems.append(Problem("limit", f"must be an integer from 1 to {MAX_LIMIT}", "e.g. 500"))
    after = None
    if params.get("after"):
        try:
            source, event_id = orjson.loads(base64.urlsafe_b64decode(params["after"]))
            after = (str(source), str(event_id))
        except (ValueError, TypeError, binascii.Error):
            problems.append(
                Problem("after", "not a cursor this API gave", "pass the previous page's next")
            )
    if problems:
        raise invalid(InvalidInput("line events query", problems))
    return after, int(limit_text)


def _ms(text: str) -> int:
    """An instant the invoice document wrote (always valid RFC 3339 UTC)."""
    ms = parse_instant(text)
    assert ms is not None, text
    return ms


def _cursor(source: str, event_id: str) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([source, event_id])).decode()
