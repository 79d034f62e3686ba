"""The schema's history, one class per version (``schemas.storage.migrations`` runs them).

1. The layout of the last build before migrations (frozen in ``layouts/v1.sql``).
2. ``meter_windows`` ordered by subject first, copied and swapped in while the worker
   writes.
3. Rollups by hour and by day, and a repair feed per windows table.
4. The aggregated feed (``agg_feed``): a chunk's contributions pre-aggregated per window.
5. ``rate_card_versions``: every rate-card version that priced an invoice.
6. ``credit_ledger``: the append-only balance ledger of prepaid credits.
7. ``webhook_deliveries``: the webhook delivery log, one row per attempt.
8. ``notifications``: every notification raised (thresholds crossed), recorded before it
   is sent.
9. ``meter_windows`` in 1,024-row granules (a customer's reads take fewer rows), copied
   and swapped in like version 2.
10. ``window_state_gaps``: which meters' windows lack a window state added later
    (``schemas.storage.window_states``).

Copies under a live writer use a *cut*: a whole minute M chosen by the migration.  The
worker stores a record's contributions under its ingestion minute (the broker's append
time), and rows of different ingestion minutes are never merged together, so once every
record appended before M is stored, the rows below M are final and can be copied while
the worker goes on writing rows of M and later.  Those are then handled either by a pass
with writes paused (versions 2 and 9: every feed that writes the table is detached, so the
worker's inserts fail and are retried; nothing lands half-way) or by a view that takes
only rows of M and later (version 3).  Without a live writer each copy is one pass with
writes paused.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from schemas.errors import InvariantViolated
from schemas.storage.credits_table import CreditsTable
from schemas.storage.deliveries_table import DeliveriesTable
from schemas.storage.engine import Engine
from schemas.storage.feed import FEED_COLUMNS, feed_ddl
from schemas.storage.migrations import (
    MigrationContext,
    Version,
    index_granularity,
    sorting_key,
    tables_of,
    unknown_layout,
)
from schemas.storage.notifications_table import NotificationsTable
from schemas.storage.rate_cards_table import RateCardsTable
from schemas.storage.rollups import RollupTable, WindowStore
from schemas.storage.sql import Statement
from schemas.storage.window_states import FULL_STATES, GapsTable, states_in
from schemas.storage.windows_table import (
    LATEST_TYPE_MARK,
    MINUTE_GRANULE_ROWS,
    SORTING_KEY,
    WindowsTable,
)

__all__ = ["VERSIONS", "check_baseline", "reattach_feed", "v1_ddl"]

log = logging.getLogger(__name__)

V1_SQL = Path(__file__).with_name("layouts") / "v1.sql"
V1_SORTING_KEY = "namespace,meter,window_start,subject,group_key,ingest_minute,source_partition"


def v1_ddl(database: str) -> list[Statement]:
    """The frozen version-1 layout of ``database``."""
    text = "\n".join(line for line in V1_SQL.read_text().splitlines() if not line.startswith("--"))
    return [
        Statement(part.strip().replace("{database}", database))
        for part in text.split(";")
        if part.strip()
    ]


def next_minute(margin_s: float = 10.0) -> int:
    """The first whole minute at least ``margin_s`` from now (epoch seconds)."""
    return (int(time.time() + margin_s) // 60 + 1) * 60


@contextmanager
def writes_paused(ctx: MigrationContext, *feeds: str) -> Iterator[None]:
    """Detach the feeds: the worker's inserts fail (and are retried) until they are
    attached again, so nothing is written half-way through what runs inside."""
    ctx.report(f"pausing writes (detaching {', '.join(feeds)}); the worker retries meanwhile")
    detached: list[str] = []
    try:
        for feed in feeds:
            ctx.engine.execute(f"DETACH TABLE {feed}")
            detached.append(feed)
        yield
    finally:
        for feed in detached:
            ctx.engine.execute(f"ATTACH TABLE {feed}")
        ctx.report("writes resumed")


def reattach(ctx: MigrationContext, feed: str) -> None:
    reattach_feed(ctx.engine, feed, ctx.report)


def reattach_feed(engine: Engine, feed: str, report: Callable[[str], None]) -> None:
    """A run killed while writes were paused left the feed detached: attach it again.
    (A feed that never existed stays missing: the layout check reports it.)"""
    database, name = feed.split(".", 1)
    if name in tables_of(engine, database):
        return
    try:
        engine.execute(f"ATTACH TABLE {feed}")
    except Exception as exc:  # noqa: BLE001 - not detached either: nothing to attach
        log.debug("%s is not a detached table (%s)", feed, exc)
        return
    report(f"{feed} was left detached by an interrupted run; attached it again")


def check_baseline(tables: dict[str, str], columns: dict[str, dict[str, str]]) -> str | None:
    """Why existing tables are not the version-1 layout, or ``None`` when they are."""
    for table in ("usage_events", "meter_window_feed", "meter_windows", "invoices"):
        if table not in tables:
            return f"table {table} is missing"
    for name in FEED_COLUMNS:
        if name not in columns.get("meter_window_feed", {}):
            return f"meter_window_feed has no column {name} (a build older than version 1)"
    latest = columns.get("meter_windows", {}).get("value_latest", "").replace(" ", "")
    if LATEST_TYPE_MARK not in latest:
        return f"meter_windows keeps value_latest as {latest} (older than version 1)"
    return None


@dataclass(frozen=True, slots=True)
class Baseline:
    number: int = 1
    name: str = "the layout before migrations"

    def apply(self, ctx: MigrationContext) -> None:
        tables = tables_of(ctx.engine, ctx.database)
        if not tables:
            ctx.run(*v1_ddl(ctx.database)[1:])
            return
        raise unknown_layout(ctx.database, "a partial or unknown set of tables")


@dataclass(frozen=True, slots=True)
class SubjectLeadingWindows:
    """Re-sort ``meter_windows`` by subject first: copy into a new table, swap it in.

    The view from the main feed keeps writing to whatever table is *named*
    ``meter_windows`` (both engines resolve a view's target by name at each insert), so
    the swap is a rename while writes are paused; no view is dropped or created."""

    number: int = 2
    name: str = "meter_windows ordered by subject first"

    def apply(self, ctx: MigrationContext) -> None:
        windows = WindowsTable(ctx.database)
        done = sorting_key(ctx.engine, windows.name) == SORTING_KEY.replace(" ", "")
        rewrite_minute_table(ctx, "v2", done, (windows.feed,))


def rewrite_minute_table(
    ctx: MigrationContext, tag: str, done: bool, feeds: tuple[str, ...]
) -> None:
    """Copy ``meter_windows`` into a new table of the current layout and swap it in, with
    ``feeds`` (every feed whose views write it) detached for the last pass; ``done``: the
    table has the layout already (only a killed run's leftover is dropped).  The new table
    keeps the old one's window states."""
    windows = WindowsTable(ctx.database, states_in(ctx.engine, ctx.database) or FULL_STATES)
    new, old = f"{windows.name}_{tag}", f"{windows.name}_pre_{tag}"
    for feed in feeds:
        reattach(ctx, feed)
    if done:
        ctx.run(Statement(f"DROP TABLE IF EXISTS {old}"))  # swapped by a killed run
        return
    ctx.run(Statement(f"DROP TABLE IF EXISTS {new}"), windows.table_ddl(new))
    rest = ""
    if ctx.writer_active():
        cut = next_minute()
        ctx.settle(cut)
        ctx.report("copying the minute windows ingested before the cut (worker writing)")
        ctx.run(_copy(windows.name, new, f"ingest_minute < toDateTime({cut})"))
        rest = f"ingest_minute >= toDateTime({cut})"
    with writes_paused(ctx, *feeds):
        ctx.run(
            _copy(windows.name, new, rest),
            Statement(f"RENAME TABLE {windows.name} TO {old}, {new} TO {windows.name}"),
        )
    ctx.run(Statement(f"DROP TABLE IF EXISTS {old}"))


def _copy(source: str, target: str, where: str) -> Statement:
    condition = f" WHERE {where}" if where else ""
    return Statement(f"INSERT INTO {target} SELECT * FROM {source}{condition}")


@dataclass(frozen=True, slots=True)
class Rollups:
    """Hourly and daily rollups kept by views from the main feed, filled from the minute
    table; a repair feed per windows table.

    With a worker writing, the rollups' views take rows ingested from a cut on and the
    rows below it are rolled up from the minute table once final.  Without one, the
    views take every row and the rollups are filled from everything already stored; a
    worker that starts meanwhile fails the run, and the next run rebuilds the rollups
    (they are derived data, dropped at the start of every run of this step)."""

    number: int = 3
    name: str = "rollups by hour and by day, repair feeds"

    def apply(self, ctx: MigrationContext) -> None:
        windows = WindowsTable(ctx.database)
        rollups = [RollupTable(ctx.database, grain) for grain in ("hourly", "daily")]
        reattach(ctx, windows.feed)
        for rollup in rollups:
            ctx.run(
                Statement(f"DROP TABLE IF EXISTS {rollup.view}"),
                Statement(f"DROP TABLE IF EXISTS {rollup.repair_view}"),
                Statement(f"DROP TABLE IF EXISTS {rollup.name}"),
            )
        ctx.run(
            feed_ddl(windows.repair_feed),
            windows.view_ddl(windows.repair_view, windows.repair_feed),
        )
        live = ctx.writer_active()
        cut = next_minute() if live else 2**32 - 60
        for rollup in rollups:
            ctx.run(*rollup.ddl(windows.feed, since_minute_s=cut if live else 0))
        if live:
            ctx.settle(cut)
        ctx.report("rolling up the minute windows already stored")
        for rollup in rollups:
            ctx.run(rollup.backfill(windows.name, cut))
        if not live and ctx.writer_active():
            raise InvariantViolated(
                "a metering worker started while the rollups were being filled; run the "
                "migration again (it rebuilds them)"
            )


@dataclass(frozen=True, slots=True)
class AggregatedFeed:
    """A feed of rows pre-aggregated per window, with views into every windows table and
    repair feeds of its own.  Only new tables and views: the per-event feed and its views
    stay, so a worker of an earlier build writes on through the upgrade and both feeds
    fill the same tables."""

    number: int = 4
    name: str = "the aggregated feed"

    def apply(self, ctx: MigrationContext) -> None:
        ctx.run(*WindowStore(ctx.database).agg_ddl())


@dataclass(frozen=True, slots=True)
class RateCardVersions:
    """A new table only: nothing reads it before a billing run writes it."""

    number: int = 5
    name: str = "rate-card versions"

    def apply(self, ctx: MigrationContext) -> None:
        ctx.run(*RateCardsTable(ctx.database).ddl())


@dataclass(frozen=True, slots=True)
class CreditLedger:
    """A new table only: nothing reads it before a grant is written."""

    number: int = 6
    name: str = "the credit ledger"

    def apply(self, ctx: MigrationContext) -> None:
        ctx.run(*CreditsTable(ctx.database).ddl())


@dataclass(frozen=True, slots=True)
class WebhookDeliveries:
    """A new table only: nothing reads it before a webhook is delivered."""

    number: int = 7
    name: str = "webhook deliveries"

    def apply(self, ctx: MigrationContext) -> None:
        ctx.run(*DeliveriesTable(ctx.database).ddl())


@dataclass(frozen=True, slots=True)
class Notifications:
    """A new table only: nothing reads it before an evaluator raises a notification."""

    number: int = 8
    name: str = "notifications"

    def apply(self, ctx: MigrationContext) -> None:
        ctx.run(*NotificationsTable(ctx.database).ddl())


@dataclass(frozen=True, slots=True)
class FineGrainedWindows:
    """``meter_windows`` with :data:`MINUTE_GRANULE_ROWS` rows per index mark: copied and
    swapped in as version 2 does, with every feed that writes the table paused for the
    last pass (the main and aggregated feeds and their minute repair feeds).  A database
    created at version 2 or later has it already (version 2 builds the current layout)."""

    number: int = 9
    name: str = "meter_windows in finer index granules"

    def apply(self, ctx: MigrationContext) -> None:
        windows = WindowsTable(ctx.database)
        done = index_granularity(ctx.engine, windows.name) == MINUTE_GRANULE_ROWS
        feeds = (windows.feed, windows.agg_feed, windows.repair_feed, windows.agg_repair_feed)
        rewrite_minute_table(ctx, "v9", done, feeds)


@dataclass(frozen=True, slots=True)
class WindowStateGaps:
    """A new table only: nothing writes it before a window state is added."""

    number: int = 10
    name: str = "window state gaps"

    def apply(self, ctx: MigrationContext) -> None:
        ctx.run(GapsTable(ctx.database).ddl())


VERSIONS: tuple[Version, ...] = (
    Baseline(),
    SubjectLeadingWindows(),
    Rollups(),
    AggregatedFeed(),
    RateCardVersions(),
    CreditLedger(),
    WebhookDeliveries(),
    Notifications(),
    FineGrainedWindows(),
    WindowStateGaps(),
)
