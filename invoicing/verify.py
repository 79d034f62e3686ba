"""``verify``: check one invoice line from the outside, as a customer would.

``meterline verify INVOICE_ID --line N [--api URL] [--token T] [--rate-card FILE]``
fetches the invoice and the line's events through the HTTP API (nothing else: a customer
with a token can run it), then recomputes what the line claims (:func:`check_line`):

1. every event's hash, each subject's digest and the line's digest, and the event count;
2. the quantity, aggregating the value property over the events as the meter does;
3. the amount: with ``--rate-card`` (the version the line names, e.g. from ``rate-cards
   show``), by pricing the recomputed quantity again with ``rating``; without it, from the
   line's own tiers and terms, rounded once as the line says.

Exit codes: 0 every check holds, 1 a check failed (each is printed), 2 invalid input,
3 the API could not be reached.
"""

from __future__ import annotations

import argparse
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import orjson

from invoicing.document import InvoiceDocument, UsageLine
from invoicing.evidence import event_hash, line_digest, recompute_quantity, subject_digest
from rating import RateCard, Usage, card_version, load_rate_card, rate_plan, round_money
from schemas.errors import InvalidInput, Problem, ServiceUnavailable
from schemas.metering.definitions import Aggregation
from schemas.settings import Settings

__all__ = ["Check", "add_verify_parser", "check_line", "fetch_line"]


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: str

    def __str__(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'} {self.name}: {self.detail}"


def check_line(
    document: InvoiceDocument,
    line_no: int,
    events: Sequence[dict[str, str]],
    card: RateCard | None = None,
) -> list[Check]:
    """Everything line ``line_no`` claims, recomputed from ``events`` (as the API serves
    them) and, when given, the rate card."""
    line = _usage_line(document, line_no)
    evidence = line.evidence
    assert evidence is not None
    checks = []
    bad = [e["id"] for e in events if event_hash(e["source"], e["id"], e["event"]) != e["hash"]]
    checks.append(
        Check("event hashes", not bad, f"{len(events) - len(bad)} of {len(events)} recomputed")
    )
    per_subject: dict[str, list[str]] = {}
    for event in events:
        per_subject.setdefault(event["subject"], []).append(
            event_hash(event["source"], event["id"], event["event"])
        )
    digest = line_digest(evidence.subjects, {s: subject_digest(h) for s, h in per_subject.items()})
    checks.append(
        Check(
            "events digest",
            digest == evidence.events_digest and len(events) == evidence.events,
            f"{len(events)} events, {digest[:16]}… (line says {evidence.events},"
            f" {evidence.events_digest[:16]}…)",
        )
    )
    ordered = sorted(events, key=lambda e: (e["time"], e["source"], e["id"]))
    aggregation = Aggregation(evidence.aggregation)
    texts = [e["event"] for e in ordered]
    quantity = recompute_quantity(aggregation, evidence.value_property, texts)
    checks.append(
        Check(
            "quantity",
            quantity == Decimal(line.quantity),
            f"{aggregation.value} of {evidence.value_property or 'events'} = {quantity}"
            f" (line says {line.quantity})",
        )
    )
    checks.append(_amount(document, line, quantity, texts, card))
    return checks


def _amount(
    document: InvoiceDocument,
    line: UsageLine,
    quantity: Decimal,
    texts: Sequence[str],
    card: RateCard | None,
) -> Check:
    evidence = line.evidence
    assert evidence is not None
    if card is not None:
        version = card_version(card)
        if version != evidence.rate_card_version:
            return Check(
                "amount", False, f"the card given is {version}, the line names"
                f" {evidence.rate_card_version}; pass that version (`rate-cards show`)",
            )  # fmt: skip
        amounts = None
        if line.model == "percentage":
            amounts = tuple(
                recompute_quantity(Aggregation.SUM, evidence.value_property, [t]) for t in texts
            )
        usage = {evidence.meter: Usage(quantity=quantity, event_amounts=amounts)}
        rated = rate_plan(card, document.plan, document.currency, usage)
        again = next(rl for rl in rated.lines if rl.charge_id == line.charge_id)
        ok = again.amount == Decimal(line.amount)
        return Check(
            "amount", ok, f"priced again with {version}: {again.amount} (line says {line.amount})"
        )
    unrounded = sum(
        (Decimal(t.quantity) * Decimal(t.unit_price) + Decimal(t.flat_fee) for t in line.tiers),
        Decimal(0),
    ) + sum((Decimal(c.amount) for c in line.components), Decimal(0))
    amount = round_money(unrounded, document.currency)
    ok = unrounded == Decimal(line.unrounded_amount) and amount == Decimal(line.amount)
    return Check(
        "amount", ok, f"from the line's terms: {unrounded} rounded to {amount}"
        f" (line says {line.unrounded_amount} → {line.amount})",
    )  # fmt: skip


def _usage_line(document: InvoiceDocument, line_no: int) -> UsageLine:
    for line in document.lines:
        if line.line_no == line_no and isinstance(line, UsageLine) and line.evidence:
            return line
    raise InvalidInput(
        "verify", [Problem("--line", f"line {line_no} of {document.invoice_id} bills no events",
                           "choose a usage line priced on a meter")],
    )  # fmt: skip


def fetch_line(
    api: str, token: str | None, invoice_id: str, line_no: int
) -> tuple[InvoiceDocument, list[dict[str, str]]]:
    """The invoice and every event of its line, page by page, through the HTTP API."""
    if urllib.parse.urlsplit(api).scheme not in ("http", "https"):
        raise InvalidInput(
            "verify",
            [Problem("--api", f"{api!r} is not an http(s) URL", "e.g. http://127.0.0.1:8080")],
        )
    base = api.rstrip("/") + "/api/v1/invoices/" + urllib.parse.quote(invoice_id)
    document = InvoiceDocument.from_json(_get(base, token))
    events: list[dict[str, str]] = []
    after = None
    while True:
        query = urllib.parse.urlencode({"limit": 5000, **({"after": after} if after else {})})
        page: dict[str, Any] = orjson.loads(_get(f"{base}/lines/{line_no}/events?{query}", token))
        events += page["events"]
        after = page["next"]
        if after is None:
            return document, events


def _get(url: str, token: str | None) -> bytes:
    request = urllib.request.Request(url, headers={"accept": "application/json"})  # noqa: S310
    if token:
        request.add_header("authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310 - the API's URL
            body: bytes = response.read()
            return body
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")
        raise InvalidInput(
            "verify",
            [Problem(url, f"HTTP {exc.code}: {detail}", "check the invoice id, line and token")],
        ) from None
    except (urllib.error.URLError, OSError) as exc:
        raise ServiceUnavailable(f"cannot reach the API at {url}: {exc}") from None


def add_verify_parser(sub: Any) -> None:
    verify = sub.add_parser("verify", help="recompute an invoice line from its events")
    verify.add_argument("invoice_id")
    verify.add_argument("--line", type=int, required=True, help="line number (line_no)")
    verify.add_argument("--api", help="API base URL (default: this stack's)")
    verify.add_argument("--token", help="API token (default: $METERLINE_API_TOKEN)")
    verify.add_argument("--rate-card", help="the rate-card version the line names (a file)")
    verify.set_defaults(handler=_verify)


def _verify(args: argparse.Namespace) -> int:
    settings = Settings()
    api = args.api or f"http://{settings.api_host}:{settings.api_port}"
    token = args.token or os.environ.get("METERLINE_API_TOKEN")
    card = load_rate_card(args.rate_card) if args.rate_card else None
    document, events = fetch_line(api, token, args.invoice_id, args.line)
    checks = check_line(document, args.line, events, card)
    sys.stdout.write("".join(f"{check}\n" for check in checks))
    return 0 if all(check.ok for check in checks) else 1
