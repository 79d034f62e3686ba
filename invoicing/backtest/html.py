"""The backtest as one self-contained HTML page (pure): totals, charts, largest changes.

The page is for reading, not for every row: at 100k customers the rows would be tens of
megabytes, so it shows the totals per currency and per meter, a chart of invoiced
against re-priced per meter (one per currency: amounts in different currencies share no
scale), how many customers each size of change hits, the customers with the largest
differences and the rows that could not be re-priced — and says that the CSV
(``--format csv``) holds every row.  Charts are inline SVG (``invoicing.backtest.svg``);
there is no script and nothing is fetched.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from html import escape

from invoicing.backtest.model import Backtest, Row, Status, Total
from invoicing.backtest.render import change_text, compared, headline, money, signed, skipped_text
from invoicing.backtest.svg import bar_chart

__all__ = ["BUCKETS", "backtest_html", "bucket_of"]

LARGEST = 20
"""Customers listed per currency under the largest differences."""
UNPRICED = 50
"""Rows not re-priced listed (all are counted)."""

BUCKETS = ("< −20 %", "−20 to −5 %", "−5 to 0 %", "0 %", "0 to 5 %", "5 to 20 %", "> 20 %", "new")
"""The change buckets of the customers chart; ``new``: nothing was invoiced before."""

_EDGES = (Decimal(-20), Decimal(-5), Decimal(0), Decimal(0), Decimal(5), Decimal(20))

_STYLE = """
body { font-family: sans-serif; margin: 2em; color: #222; max-width: 80em; }
.muted { color: #666; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border-bottom: 1px solid #ddd; padding: 4px 10px; text-align: left; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.up { color: #a33; } .down { color: #276b3a; }
svg.chart { display: block; margin: 1em 0; }
"""


def bucket_of(total: Total) -> int:
    """The index in :data:`BUCKETS` of a customer's change."""
    change = total.change_pct
    if change is None:
        return len(BUCKETS) - 1
    if change == 0:
        return 3
    if change < 0:
        return 0 if change < _EDGES[0] else 1 if change < _EDGES[1] else 2
    return 4 if change <= _EDGES[4] else 5 if change <= _EDGES[5] else 6


def _cells(values: Sequence[tuple[str, bool]], css: str = "") -> str:
    tds = "".join(
        f'<td class="num">{escape(text)}</td>' if numeric else f"<td>{escape(text)}</td>"
        for text, numeric in values
    )
    return f'<tr class="{css}">{tds}</tr>' if css else f"<tr>{tds}</tr>"


def _header(names: Sequence[tuple[str, bool]]) -> str:
    ths = "".join(
        f'<th class="num">{escape(n)}</th>' if numeric else f"<th>{escape(n)}</th>"
        for n, numeric in names
    )
    return f"<tr>{ths}</tr>"


def _direction(difference: Decimal | None) -> str:
    if difference is None or difference == 0:
        return ""
    return "up" if difference > 0 else "down"


def _totals_table(first: str, totals: Sequence[Total]) -> list[str]:
    names = [(first, False)] if first else []
    names += [("currency", False), ("invoiced", True), ("re-priced", True)]
    names += [("difference", True), ("change", True), ("not re-priced", False)]
    out = ["<table>", _header(names)]
    for t in totals:
        label = [(t.customer_id or t.meter, False)] if first else []
        values = [
            *label,
            (t.currency, False),
            (compared(t), True),
            (money(t.repriced), True),
            (signed(t.difference), True),
            (change_text(t.change_pct, t.repriced), True),
            (skipped_text(t), False),
        ]
        out.append(_cells(values, _direction(t.difference)))
    out.append("</table>")
    return out


def _meter_charts(backtest: Backtest) -> list[str]:
    out = []
    for overall in backtest.overall:
        currency = overall.currency
        groups = [
            (t.meter, [t.invoiced, t.repriced])
            for t in backtest.meters
            if t.currency == currency and t.repriced is not None
        ]
        if not groups:
            continue
        title = f"Invoiced and re-priced per meter, {currency}"
        out.append(f"<h3>{escape(title)}</h3>")
        out.append(bar_chart(title, ["invoiced", "re-priced (draft)"], groups, currency))
    return out


def _customers_chart(backtest: Backtest) -> list[str]:
    counts = [0] * len(BUCKETS)
    for total in backtest.customers:
        if total.repriced is not None:
            counts[bucket_of(total)] += 1
    groups = [(label, [Decimal(n)]) for label, n in zip(BUCKETS, counts, strict=True)]
    title = "Customers by change of their total"
    return [f"<h3>{escape(title)}</h3>", bar_chart(title, ["customers"], groups)]


def _largest(backtest: Backtest) -> list[str]:
    out = [f"<h2>Largest differences (up to {LARGEST} customers per currency)</h2>"]
    for overall in backtest.overall:
        changed = [
            (abs(t.difference), t)
            for t in backtest.customers
            if t.currency == overall.currency and t.difference
        ]
        ranked = [t for _, t in sorted(changed, key=lambda p: (-p[0], p[1].customer_id))]
        ranked = ranked[:LARGEST]
        if ranked:
            out += _totals_table("customer", ranked)
    return out


def _unpriced(rows: Sequence[Row]) -> list[str]:
    skipped = [r for r in rows if r.status is not Status.OK]
    if not skipped:
        return []
    names = [(n, False) for n in ("customer", "period", "plan", "currency", "meter")]
    out = [
        f"<h2>Not re-priced: {len(skipped)} {'row' if len(skipped) == 1 else 'rows'}</h2>",
        "<table>",
        _header([*names, ("invoiced", True), ("status", False)]),
    ]
    for r in skipped[:UNPRICED]:
        values = [(r.customer_id, False), (r.period, False), (r.plan, False)]
        values += [(r.currency, False), (r.meter, False), (money(r.invoiced), True)]
        values.append((f"{r.status}: {r.note}", False))
        out.append(_cells(values))
    out.append("</table>")
    if len(skipped) > UNPRICED:
        out.append(f'<p class="muted">… and {len(skipped) - UNPRICED} more (see the CSV).</p>')
    return out


def backtest_html(backtest: Backtest) -> str:
    """The report page (see the module docstring for what it shows and why)."""
    body = [
        "<h1>Pricing backtest</h1>",
        f"<p>{escape(headline(backtest))}.</p>",
        '<p class="muted">Each period is re-priced from the usage its invoice billed (read '
        "as of the invoice's ingestion cutoff) with the draft card's plan of the same name "
        "and currency. Nothing was emitted or stored. Every row is in the CSV "
        "(<code>--format csv</code>).</p>",
        "<h2>Overall</h2>",
        *_totals_table("", backtest.overall),
        "<h2>Charts</h2>",
        *_meter_charts(backtest),
        *_customers_chart(backtest),
        "<h2>Per meter</h2>",
        *_totals_table("meter", backtest.meters),
        *_largest(backtest),
        *_unpriced(backtest.rows),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>Pricing backtest · {escape(', '.join(backtest.months))}</title>"
        f"<style>{_STYLE}</style></head><body>{''.join(body)}</body></html>\n"
    )
