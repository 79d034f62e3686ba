"""Usage per subject, read one way everywhere: billing, the dashboard's estimates, the
API's customer view and reconcile ask the same question of the same tables.

:class:`UsageRead` says which meters, which windows and which ingestion bounds; its
:meth:`~UsageRead.statements` are the SQL (:class:`UsageQuery` on the table the planner
picks: the minute table under an ingestion cutoff, the coarsest exact rollup otherwise)
and :meth:`~UsageRead.collect` turns their rows into ``{subject: {meter: value}}``.
:func:`read_usage` runs a read on an engine; the API runs the same statements on its
thread pool and collects the rows the same way.  How a customer's subjects add up is
billing's rule, beside the customers (``invoicing.usage``).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from schemas.metering.definitions import Aggregation, MeterSet
from schemas.storage.engine import Engine
from schemas.storage.planner import Plan, plan_usage_query
from schemas.storage.sql import LISTED_AT_MOST, OnTable, lit
from schemas.storage.windows_table import UsageQuery, finish_value, value_columns

__all__ = ["MetersUsageQuery", "SubjectUsage", "UsageRead", "read_usage"]

SubjectUsage = Mapping[str, Mapping[str, Decimal]]
"""``{subject: {meter slug: value}}``."""

COMBINED_AT_MOST = 64
"""The most ``(meter, subject)`` pairs read in one statement (:class:`MetersUsageQuery`);
more are read one statement per meter."""


@dataclass(frozen=True, slots=True)
class MetersUsageQuery(OnTable):
    """Several meters' values per subject, for a few listed subjects, over ``[start_s,
    end_s)`` in **one** statement: one customer's usage of every meter its plan prices
    (a quote, an entitlement check's balance) costs one query's fixed overhead instead
    of one per meter.  Meant for the minute table, ordered by ``(meter, subject)``: the
    filter names each ``(meter, subject)`` pair, so each is one range of its index.

    Result rows: ``(meter, subject, *`` :attr:`columns` ``)``, every kind's value columns
    once; :meth:`value` finishes one meter's value from a row."""

    namespace: str
    meters: tuple[tuple[str, Aggregation], ...]
    """``(slug, aggregation)`` of each meter read."""
    start_s: int
    end_s: int
    subjects: tuple[str, ...]

    @property
    def columns(self) -> tuple[str, ...]:
        kinds = dict.fromkeys(kind for _, kind in self.meters)
        return tuple(dict.fromkeys(c for kind in kinds for c in value_columns(kind)))

    def value(self, kind: Aggregation, row: Sequence[object]) -> Decimal:
        """A row's value for a meter of ``kind`` (the row as :meth:`on` returns it)."""
        at = {column: n for n, column in enumerate(self.columns, start=2)}
        return finish_value(kind, [row[at[column]] for column in value_columns(kind)])

    def _sql(self, table: str) -> str:
        pairs = " OR ".join(
            f"(meter = {lit(slug)} AND subject = {lit(subject)})"
            for slug, _ in self.meters
            for subject in self.subjects
        )
        return (
            f"SELECT meter, subject, {', '.join(self.columns)} FROM {table}"
            f" WHERE namespace = {lit(self.namespace)} AND ({pairs or '0'})"
            f" AND window_start >= toDateTime({self.start_s})"
            f" AND window_start < toDateTime({self.end_s})"
            " GROUP BY meter, subject ORDER BY meter, subject"
        )


@dataclass(frozen=True, slots=True)
class UsageRead:
    """Each of ``slugs``' usage per subject over windows ``[start_s, end_s)``, ingested in
    ``[ingested_from_s, ingested_before_s)`` when given (whole minutes).

    ``grain`` names the table instead of the planner (``"minute"``: reconcile checks the
    minute table itself).  ``subjects`` narrows the query to a few subjects."""

    namespace: str
    database: str
    meters: MeterSet
    slugs: tuple[str, ...]
    start_s: int
    end_s: int
    ingested_from_s: int | None = None
    ingested_before_s: int | None = None
    grain: str | None = None
    subjects: tuple[str, ...] | None = None
    """Only these subjects (a customer's quote; the subscriptions an alert watches);
    ``None``: all.  Up to :data:`LISTED_AT_MOST` are filtered in the query; more are
    filtered as the rows are collected (an ``IN`` list of 100k subjects passes
    ClickHouse's 256 KiB query limit)."""

    @property
    def listed(self) -> tuple[str, ...] | None:
        """The subjects named in the query, if they are few enough to be."""
        few = self.subjects is not None and len(self.subjects) <= LISTED_AT_MOST
        return self.subjects if few else None

    def combined(self) -> MetersUsageQuery | None:
        """One statement for every meter, when the planner reads the minute table for a
        few listed subjects and there are at most :data:`COMBINED_AT_MOST` pairs."""
        if len(self.slugs) < 2 or self.listed is None or self.grain is not None:
            return None
        if self.ingested_from_s is not None or self.ingested_before_s is not None:
            return None  # billing's reads: per meter, as of their cutoff
        if len(self.slugs) * len(self.listed) > COMBINED_AT_MOST:
            return None
        if any(plan_usage_query(q).grain != "minute" for q in self.queries()):
            return None
        kinds = tuple((slug, self.meters.get(slug).aggregation) for slug in self.slugs)
        return MetersUsageQuery(self.namespace, kinds, self.start_s, self.end_s, self.listed)

    def queries(self) -> list[UsageQuery]:
        return [
            UsageQuery(
                self.namespace,
                slug,
                self.meters.get(slug).aggregation,
                self.start_s,
                self.end_s,
                self.ingested_from_s,
                self.ingested_before_s,
                self.listed,
            )
            for slug in self.slugs
        ]

    def statements(self) -> list[str]:
        """One statement per meter, in the order of ``slugs`` (or one for them all:
        :meth:`combined`)."""
        one = self.combined()
        if one is not None:
            return [one.on(Plan("minute", "combined").table(self.database)).to_sql()]
        out = []
        for query in self.queries():
            plan = plan_usage_query(query) if self.grain is None else Plan(self.grain, "given")
            out.append(query.on(plan.table(self.database)).to_sql())
        return out

    def collect(
        self,
        results: Sequence[Iterable[Sequence[object]]],
        subjects: Collection[str] | None = None,
    ) -> dict[str, dict[str, Decimal]]:
        """The rows of :meth:`statements` (same order) as ``{subject: {meter: value}}``,
        only ``subjects`` when given."""
        if subjects is None and self.subjects is not None and self.listed is None:
            subjects = set(self.subjects)  # too many to name in the query
        usage: dict[str, dict[str, Decimal]] = {}
        one = self.combined()
        if one is not None:
            (rows,) = results
            for row in rows:
                slug, subject = str(row[0]), str(row[1])
                if subjects is None or subject in subjects:
                    usage.setdefault(subject, {})[slug] = one.value(
                        self.meters.get(slug).aggregation, row
                    )
            return usage
        for slug, rows in zip(self.slugs, results, strict=True):
            kind: Aggregation = self.meters.get(slug).aggregation
            for row in rows:
                subject = str(row[0])
                if subjects is None or subject in subjects:
                    usage.setdefault(subject, {})[slug] = finish_value(kind, row[1:])
        return usage


def read_usage(
    engine: Engine, read: UsageRead, subjects: Collection[str] | None = None
) -> dict[str, dict[str, Decimal]]:
    return read.collect([engine.execute(sql) for sql in read.statements()], subjects)
