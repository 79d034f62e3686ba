"""Pricing backtests: closed periods re-priced under a draft rate card, against what was
invoiced — per customer and meter, with totals; nothing is emitted or stored.

The contract::

    from invoicing.backtest import BacktestRequest, run_backtest

    result = run_backtest(BacktestRequest(namespace, database, months, customers,
                                          draft_card, meters, "draft.yaml"), engine)
    backtest_table(result) | backtest_csv(result) | backtest_html(result)

Layout: ``model`` (the values: what was invoiced, a compared row, totals), ``compare``
(re-pricing one period and adding rows up; pure), ``memory`` (the cycle collector
paused for a batch),
``read`` (the invoiced periods and their usage, read in bulk; the only I/O, and
read-only), ``render`` (terminal table, CSV), ``html`` and ``svg`` (the report page and
its charts), ``command`` (``meterline backtest``).  The design, and a worked example,
are in ``docs/invoicing.md`` (*Backtest*).
"""

from invoicing.backtest.compare import meter_key, reprice, summarise
from invoicing.backtest.html import backtest_html
from invoicing.backtest.model import (
    Backtest,
    Invoiced,
    Row,
    Selected,
    Status,
    Total,
    change_pct,
)
from invoicing.backtest.read import BacktestRequest, read_invoiced, run_backtest
from invoicing.backtest.render import backtest_csv, backtest_table

__all__ = [
    "Backtest",
    "BacktestRequest",
    "Invoiced",
    "Row",
    "Selected",
    "Status",
    "Total",
    "backtest_csv",
    "backtest_html",
    "backtest_table",
    "change_pct",
    "meter_key",
    "read_invoiced",
    "reprice",
    "run_backtest",
    "summarise",
]
