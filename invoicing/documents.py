"""Invoice renderings (pure), all from the JSON document: CSV of the lines, and HTML.

Working from the document (not from the objects that built it) means an invoice read
back from Kafka or ClickHouse renders exactly as the one just issued.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from html import escape

from invoicing.document import InvoiceDocument, RatedLine

__all__ = ["CSV_COLUMNS", "lines_csv", "render_html"]

CSV_COLUMNS = (
    "invoice_id",
    "line_no",
    "kind",
    "adjusts_period",
    "charge_id",
    "name",
    "meter",
    "model",
    "quantity",
    "amount",
    "currency",
    "description",
)


def lines_csv(documents: Sequence[InvoiceDocument]) -> str:
    """One row per line of every invoice; amounts as exact decimal strings."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for doc in documents:
        for line in doc.lines:
            if line.kind == "credit":
                writer.writerow(
                    [
                        doc.invoice_id,
                        line.line_no,
                        "credit",
                        "",
                        line.grant_id,
                        line.name,
                        "",
                        "credit",
                        "",
                        line.amount,
                        doc.currency,
                        line.description,
                    ]
                )
                continue
            adjusted = line.adjusts.period.label if line.kind == "adjustment" else ""
            writer.writerow(
                [
                    doc.invoice_id,
                    line.line_no,
                    line.kind,
                    adjusted,
                    line.charge_id,
                    line.name,
                    line.meter or "",
                    line.model,
                    line.quantity,
                    line.amount,
                    doc.currency,
                    line.description,
                ]
            )
    return out.getvalue()


_STYLE = """
body { font-family: sans-serif; margin: 2em; color: #222; }
h1 { margin-bottom: 0; } .muted { color: #666; }
table { border-collapse: collapse; width: 100%; margin-top: 1em; }
th, td { border-bottom: 1px solid #ddd; padding: 4px 8px; text-align: left; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.detail td { color: #555; font-size: 90%; border-bottom: none; padding-left: 2em; }
tr.total td { font-weight: bold; border-top: 2px solid #222; }
"""


def _row(cells: Sequence[tuple[str, bool]], css: str = "") -> str:
    tds = "".join(
        f'<td class="num">{escape(text)}</td>' if numeric else f"<td>{escape(text)}</td>"
        for text, numeric in cells
    )
    return f'<tr class="{css}">{tds}</tr>' if css else f"<tr>{tds}</tr>"


def _breakdown(line: RatedLine) -> list[str]:
    """Detail rows: each tier's range and arithmetic, then the other terms."""
    rows = []
    for tier in line.tiers:
        upper = "∞" if tier.up_to is None else tier.up_to
        fee = f" + {tier.flat_fee}" if tier.flat_fee not in ("0", "0.0") else ""
        text = f"tier {tier.tier} ({tier.from_}, {upper}]: {tier.quantity} × {tier.unit_price}{fee}"
        rows.append(_row([(text, False), ("", False), ("", True), (tier.amount, True)], "detail"))
    for part in line.components:
        text = f"{part.label}: {part.quantity} × {part.unit_price}"
        rows.append(_row([(text, False), ("", False), ("", True), (part.amount, True)], "detail"))
    return rows


def render_html(doc: InvoiceDocument) -> str:
    """A self-contained HTML page: customer, period, lines with tiers, totals, currency."""
    currency, period = doc.currency, doc.period
    body = [
        f"<h1>Invoice {escape(doc.invoice_id)}</h1>",
        f'<p class="muted">revision {doc.revision} · schema {escape(doc.schema_)}</p>',
        "<table>",
        _row([("Customer", False), (doc.customer_id, False)]),
        _row([("Subscription", False), (f"{doc.subscription_id} ({doc.cadence})", False)]),
        _row([("Subjects", False), (", ".join(doc.subjects), False)]),
        _row([("Plan", False), (doc.plan, False)]),
        _row(
            [
                ("Period", False),
                (f"{period.label}: {period.start} to {period.end} ({period.timezone})", False),
            ]
        ),
        _row([("Usage ingested before", False), (doc.usage_cutoff, False)]),
        _row([("Currency", False), (currency, False)]),
        "</table>",
        "<h2>Lines</h2>",
        "<table>",
        "<tr><th>Charge</th><th>Meter</th><th class=num>Quantity</th>"
        f"<th class=num>Amount ({escape(currency)})</th></tr>",
    ]
    for line in doc.lines:
        if line.kind == "usage":
            body.append(
                _row(
                    [
                        (f"{line.name} ({line.model})", False),
                        (line.meter or "", False),
                        (line.quantity, True),
                        (line.amount, True),
                    ]
                )
            )
            body += _breakdown(line)
        elif line.kind == "credit":
            text = f"Prepaid credit: {line.name} ({line.grant_id})"
            body.append(_row([(text, False), ("", False), ("", True), (line.amount, True)]))
            note = f"grant balance {line.balance_before} → {line.balance_after}"
            body.append(_row([(note, False), ("", False), ("", True), ("", True)], "detail"))
        else:
            label = line.adjusts.period.label
            body.append(
                _row(
                    [
                        (f"Adjustment for {label}: {line.name} ({line.model})", False),
                        (line.meter or "", False),
                        (line.quantity, True),
                        (line.amount, True),
                    ]
                )
            )
            before = line.before.amount if line.before else "0"
            after = line.after.amount if line.after else "0"
            note = (
                f"late usage of {label} (invoice {line.adjusts.invoice_id}):"
                f" re-rated {before} → {after}"
            )
            body.append(_row([(note, False), ("", False), ("", True), ("", True)], "detail"))
            if line.after:
                body += _breakdown(line.after)
    body += [
        _row([("Usage", False), ("", False), ("", True), (doc.usage_total, True)]),
        _row([("Adjustments", False), ("", False), ("", True), (doc.adjustments_total, True)]),
        *(
            [_row([("Credits", False), ("", False), ("", True), (doc.credits_total, True)])]
            if doc.credits_total is not None
            else []
        ),
        _row([(f"Total {currency}", False), ("", False), ("", True), (doc.total, True)], "total"),
        "</table>",
        f'<p class="muted">Issued by Meterline · created {escape(doc.created_at)}</p>',
    ]
    title = f"Invoice {doc.invoice_id} · {doc.customer_id} · {period.label}"
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body>{''.join(body)}</body></html>\n"
    )
