"""Reading what the dashboard rendered out of Chromium's ``--dump-dom`` output."""

from __future__ import annotations

from html.parser import HTMLParser


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.series: list[str] = []
        self.points: dict[tuple[str, str], str] = {}
        self.rows: dict[str, dict[str, dict[str, str]]] = {}
        self._table: str | None = None
        self._row: dict[str, str] | None = None
        self._cell: str | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "g" and "data-series" in a:
            self.series.append(a["data-series"])
        elif tag == "circle" and "data-window-start" in a:
            self.points[(self.series[-1], a["data-window-start"])] = a["data-value"]
        elif tag == "table":
            self._table = a.get("id")
        elif tag == "tr" and self._table and ("data-customer" in a or "data-invoice" in a):
            key = a.get("data-customer") or a.get("data-invoice") or ""
            self._row = self.rows.setdefault(self._table, {}).setdefault(key, {})
            self._col = 0
        elif tag == "td" and self._row is not None:
            self._cell = a.get("data-meter") or ("estimate" if "data-estimate" in a else None)
            self._text = []
            if self._cell == "estimate":
                self._row["estimate"] = a["data-estimate"]
                self._cell = None
            elif "data-credit" in a:  # "USD 37.66 35.66; EUR ..."; its text as shown
                self._row["credit"] = a["data-credit"]
                self._cell = "credit_shown"
            elif self._cell is None and self._table == "invoices":
                self._cell = ["invoice", "customer", "period", "total", "currency"][self._col]
            self._col += 1

    def handle_data(self, data: str) -> None:
        self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._row is not None and self._cell:
            self._row[self._cell] = "".join(self._text).strip()
            self._cell = None
        elif tag == "tr":
            self._row = None
        elif tag == "table":
            self._table = None


def chart_points(dom: str) -> dict[tuple[str, str], str]:
    """``(series, windowStart) → value`` of every point the chart drew."""
    parser = _Collector()
    parser.feed(dom)
    return parser.points


def table_rows(dom: str, table: str) -> dict[str, dict[str, str]]:
    """Rows of the customers or invoices table, keyed by customer / invoice id."""
    parser = _Collector()
    parser.feed(dom)
    return parser.rows.get(table, {})
