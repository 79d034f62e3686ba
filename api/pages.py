"""HTML pages: the live dashboard (a static, self-contained page) and an invoice view.

The dashboard has no external assets (no CDN): its chart is SVG drawn by inline script
from the JSON API.  It holds no data itself — it reads the bearer token from the URL
fragment (``/dashboard#token=...``, never sent to the server or its logs) and calls the
API with it, so a customer token shows that customer only.
"""

from __future__ import annotations

from functools import cache
from html import escape
from importlib import resources
from typing import Any

__all__ = ["dashboard_html", "invoice_html"]


@cache
def _template() -> str:
    return resources.files("api").joinpath("dashboard.html").read_text(encoding="utf-8")


def dashboard_html(refresh_s: int) -> str:
    return _template().replace("__REFRESH_MS__", str(int(refresh_s) * 1000))


def invoice_html(document: dict[str, Any]) -> str:
    """A printable invoice from its stored document (every value escaped)."""

    def e(value: object) -> str:
        return escape("" if value is None else str(value))

    period = document.get("period") or {}
    currency = e(document.get("currency"))
    rows = "".join(
        "<tr>"
        f"<td>{e(line.get('name'))}</td><td>{e(line.get('meter'))}</td>"
        f"<td class=num>{e(line.get('quantity'))}</td>"
        f"<td>{e(line.get('description'))}</td>"
        f"<td class=num>{e(line.get('amount'))} {currency}</td>"
        "</tr>"
        for line in document.get("lines") or []
    )
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>Invoice {e(document.get('invoice_id'))}</title>"
        "<style>body{font:14px system-ui,sans-serif;margin:32px;color:#1d2433}"
        "table{border-collapse:collapse}td,th{padding:6px 10px;border-bottom:1px solid #e4e7ec;"
        "text-align:left}.num{text-align:right}</style></head><body>"
        f"<h1>Invoice {e(document.get('invoice_id'))}</h1>"
        f"<p>Customer <b>{e(document.get('customer_id'))}</b> · plan {e(document.get('plan'))}"
        f" · period {e(period.get('start'))} – {e(period.get('end'))}"
        f" · issued {e(document.get('created_at'))}</p>"
        "<table><thead><tr><th>Charge</th><th>Meter</th><th class=num>Quantity</th>"
        "<th>Calculation</th><th class=num>Amount</th></tr></thead>"
        f"<tbody>{rows}</tbody><tfoot><tr><th colspan=4>Total</th>"
        f"<th class=num id=total>{e(document.get('total'))} {currency}</th></tr></tfoot>"
        "</table></body></html>"
    )
