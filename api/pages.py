"""HTML pages: the live dashboard (a static, self-contained page) and an invoice view
(billing's own rendering).

The dashboard has no external assets (no CDN): its chart is SVG drawn by inline script
from the JSON API.  It holds no data itself — it reads the bearer token from the URL
fragment (``/dashboard#token=...``, never sent to the server or its logs) and calls the
API with it, so a customer token shows that customer only.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from invoicing.document import InvoiceDocument
from invoicing.documents import render_html

__all__ = ["dashboard_html", "invoice_html"]


@cache
def _template() -> str:
    return resources.files("api").joinpath("dashboard.html").read_text(encoding="utf-8")


def dashboard_html(refresh_s: int) -> str:
    return _template().replace("__REFRESH_MS__", str(int(refresh_s) * 1000))


def invoice_html(document: bytes | str) -> str:
    """A printable invoice from its stored document: the one rendering billing writes
    (:func:`invoicing.documents.render_html`), every value escaped."""
    return render_html(InvoiceDocument.from_json(document))
