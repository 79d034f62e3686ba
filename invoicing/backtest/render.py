"""The backtest as text (pure): a terminal table and CSV.

Both print amounts exactly as the invoices do (the currency's minor units, no
exponent), a change as a signed percentage rounded half-up to 0.01, and say plainly when
a row was not re-priced.  The CSV holds every row and every total, told apart by
``kind`` (``meter``, ``customer``, ``meter-total``, ``overall``), so a spreadsheet can
filter it without parsing any text.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from decimal import Decimal

from invoicing.backtest.model import Backtest, Row, Status, Total, change_pct

__all__ = [
    "CSV_COLUMNS",
    "backtest_csv",
    "backtest_table",
    "change_text",
    "compared",
    "headline",
    "money",
    "signed",
    "skipped_text",
]

CSV_COLUMNS = (
    "kind",
    "customer_id",
    "subscription_id",
    "period",
    "invoice_id",
    "plan",
    "currency",
    "meter",
    "invoiced",
    "repriced",
    "difference",
    "change_pct",
    "status",
    "note",
)


def plain(value: Decimal) -> str:
    """Plain digits, never an exponent.  ``str`` is four times faster than ``format(v,
    "f")`` and gives the same text for amounts in minor units and percentages; the
    fallback covers anything else (``1E+3``)."""
    text = str(value)
    return format(value, "f") if "E" in text else text


def money(value: Decimal | None) -> str:
    """An amount as printed (plain digits), '' for none."""
    return "" if value is None else plain(value)


def signed(value: Decimal | None) -> str:
    if value is None:
        return ""
    return f"+{plain(value)}" if value > 0 else plain(value)


def change_text(change: Decimal | None, repriced: Decimal | None) -> str:
    """``+12.50 %``; ``new`` when nothing was invoiced; '' when not re-priced."""
    if repriced is None:
        return ""
    if change is None:
        return "new"
    return f"{signed(change)} %"


def headline(backtest: Backtest) -> str:
    """One sentence: what was compared with what."""
    months = ", ".join(backtest.months)
    text = (
        f"pricing backtest of {backtest.rate_card} against the issued invoices of the "
        f"periods ending in {months}: {backtest.invoices} invoices, {len(backtest.rows)} rows"
    )
    if backtest.not_invoiced:
        text += f"; {backtest.not_invoiced} subscription periods have no issued invoice"
    return text


def _status(row: Row) -> str:
    return "" if row.status is Status.OK else f"{row.status}: {row.note}"


def skipped_text(total: Total) -> str:
    """``2 rows not re-priced (invoiced 214)``, or '' when every row was."""
    if not total.skipped:
        return ""
    rows = "1 row" if total.skipped == 1 else f"{total.skipped} rows"
    return f"{rows} not re-priced (invoiced {money(total.skipped_invoiced)})"


def compared(total: Total) -> str:
    """The invoiced amount the re-priced one is set against; '' when nothing was."""
    return "" if total.repriced is None else money(total.invoiced)


def _columns(header: Sequence[str], lines: Sequence[Sequence[str]], numeric: set[int]) -> str:
    """Aligned columns: text left, numbers right; trailing blanks trimmed.  One format
    template for every line (a backtest table can have 600k lines)."""
    everything = [header, *lines]
    widths = [max(map(len, column)) for column in zip(*everything, strict=True)]
    template = "  ".join(
        f"{{{i}:{'>' if i in numeric else '<'}{width}}}" for i, width in enumerate(widths)
    )
    return "\n".join(template.format(*cells).rstrip() for cells in everything)


def backtest_table(backtest: Backtest) -> str:
    """The rows, then the totals per customer, per meter and overall."""
    money_columns = {6, 7, 8, 9}
    rows = [
        [
            r.customer_id,
            r.subscription_id,
            r.period,
            r.plan,
            r.currency,
            r.meter,
            money(r.invoiced),
            money(r.repriced),
            signed(r.difference),
            change_text(r.change_pct, r.repriced),
            _status(r),
        ]
        for r in backtest.rows
    ]
    header = ["customer", "subscription", "period", "plan", "currency", "meter"]
    header += ["invoiced", "re-priced", "difference", "change", "status"]
    parts = [headline(backtest), "", _columns(header, rows, money_columns)]
    for title, first, totals in (
        ("totals per customer", "customer", backtest.customers),
        ("totals per meter", "meter", backtest.meters),
        ("overall", "", backtest.overall),
    ):
        parts += ["", title, _totals(first, totals)]
    return "\n".join(parts) + "\n"


def _totals(first: str, totals: Sequence[Total]) -> str:
    lines = [
        [
            *([t.customer_id or t.meter] if first else []),
            t.currency,
            compared(t),
            money(t.repriced),
            signed(t.difference),
            change_text(t.change_pct, t.repriced),
            skipped_text(t),
        ]
        for t in totals
    ]
    header = [*([first] if first else []), "currency", "invoiced", "re-priced", "difference"]
    header += ["change", "not re-priced"]
    offset = 1 if first else 0
    return _columns(header, lines, {offset + 1, offset + 2, offset + 3, offset + 4})


def _csv_row(r: Row) -> tuple[object, ...]:
    """A row's CSV cells (the hot path: one per customer and meter).  ``r[:7]`` is
    customer, subscription, period, invoice, plan, currency and meter, the columns'
    order.  Amounts and the change go to the writer as Decimals: it writes ``str()`` of
    them, which is plain digits for every value with 0 to 6 decimals — amounts are in
    minor units (at most 4) and the change has 2 — and ``None`` as ''."""
    invoiced, repriced = r.invoiced, r.repriced
    if repriced is None:
        return ("meter", *r[:7], invoiced, None, None, None, r.status, r.note)
    change = change_pct(invoiced, repriced)
    return ("meter", *r[:7], invoiced, repriced, repriced - invoiced, change, r.status, r.note)


def backtest_csv(backtest: Backtest) -> str:
    """Every row, then every total (``kind`` tells them apart); exact decimal strings."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    writer.writerows(_csv_row(r) for r in backtest.rows)
    for kind, totals in (
        ("customer", backtest.customers),
        ("meter-total", backtest.meters),
        ("overall", backtest.overall),
    ):
        for t in totals:
            writer.writerow(
                [
                    kind,
                    t.customer_id,
                    "",
                    "",
                    "",
                    "",
                    t.currency,
                    t.meter,
                    compared(t),
                    money(t.repriced),
                    money(t.difference),
                    money(t.change_pct),
                    "",
                    skipped_text(t),
                ]
            )
    return out.getvalue()
