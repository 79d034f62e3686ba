"""Step 1 of the metering sink: decode, meter and deduplicate a chunk of records into a
:class:`~streams.plan.BatchPlan` (pure, but for the dedupe store's look-ups).  Nothing is
written; ``streams.sink`` writes the plan and records its keys.

:class:`Planner` makes one pass over a chunk, in record order, and builds no object per
event: raw rows and dedupe entries are tuples, and the kept events' contributions are
folded per aggregated-feed row as they come.  With the native module the pass is one
native call (``schemas/native/src/plan_loop.rs``) that fills the plan exactly as the
Python loop below does; the Python loop runs without it and is its oracle
(``tests/streams/test_plan_native.py``).  Each event goes through the lean path
(``schemas.metering.fastpath``: the native decoder first, then the msgspec decode); what it
does not decide goes through the reference path, with the same outcome either way
(``tests/streams/test_plan_oracle.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from schemas.errors import InvalidInput
from schemas.metering import fastpath
from schemas.metering.contributions import DeadLetterReason, Unmeterable, contributions
from schemas.metering.definitions import MeterSet
from schemas.metering.fastpath import ContributionRow as MeterRow
from schemas.storage.events_table import RawRow
from schemas.timeutil import MINUTE_MS
from schemas.wire import content_hash, decode_event, split_record
from streams.dedupe import DEFAULT_HORIZON_MS, SeenRecord, Verdict, judge
from streams.plan import (
    BatchPlan,
    DeadLetter,
    FoldedGroups,
    GroupKey,
    GroupState,
    NativeGroups,
    NativePendingKeys,
    NativeRawRows,
    PendingSeen,
    Record,
    RowsSeen,
    SeenLookup,
)

__all__ = ["Planner"]


def _undecided(line: bytes, unknown_type_is_error: bool, keep_data: bool) -> None:
    """The native decoder's place in the chain when it is not installed."""
    return None


class Planner:
    """The meters and dedupe rules a chunk is planned with."""

    def __init__(
        self,
        *,
        namespace: str,
        meters: MeterSet,
        unknown_type_is_error: bool = False,
        horizon_ms: int = DEFAULT_HORIZON_MS,
        late_grace_ms: int = 300_000,
    ) -> None:
        self.namespace = namespace
        self.meters = meters
        self._fast = fastpath.FastMeters(meters)
        self.unknown_type_is_error = unknown_type_is_error
        self.horizon_ms = horizon_ms
        self.late_grace_ms = late_grace_ms
        native = self._fast.native
        current = NativePendingKeys is not None  # the module built from these sources
        self._native_plan: Callable[..., Any] | None = (
            getattr(native, "plan", None) if current else None
        )
        """The loop below in one native call per chunk (``plan_loop.rs``); ``None`` without
        the native module or with one built from older sources (the loop below then runs)."""

    def plan(self, records: Sequence[Record], store: SeenLookup) -> BatchPlan:
        """Decode, meter and deduplicate a chunk (pure but for the store's lookups).

        One pass, in record order.  Each event goes through the lean path
        (``schemas.metering.fastpath``); what it does not decide goes through the reference path,
        with the same outcome either way.  Rows are plain tuples in their tables' column
        order, and the kept events' contributions are folded per window as they come
        (:func:`schemas.storage.agg_feed.pre_aggregate` is the reference): no object per
        event or contribution."""
        plan = BatchPlan(namespace=self.namespace)
        if self._native_plan is not None:
            return self._plan_natively(self._native_plan, plan, records, store)
        ns, horizon = self.namespace, self.horizon_ms
        grace = MINUTE_MS + self.late_grace_ms
        # a PendingSeen's two look-ups inline: one call less per event
        pending_seen = store.pending if isinstance(store, PendingSeen) else {}
        pending: Callable[[str], SeenRecord | None] = pending_seen.get
        if isinstance(store, PendingSeen) and store.keys:  # native plans' keys too
            pending = store.pending_get
        lookup = store.store.get if isinstance(store, PendingSeen) else store.get
        in_batch: dict[str, SeenRecord] = {}
        positions: set[tuple[int, int]] = set()
        raw_rows: list[RawRow] = []
        plan.raw_rows = raw_rows
        seen: list[tuple[str, SeenRecord]] = []
        plan.seen = seen
        kept, dead = plan.kept, plan.dead
        groups: dict[GroupKey, GroupState] = {}
        plan.groups, spans = groups, plan.spans
        fast_decode, fast_meter, fast_meters = fastpath.decode, fastpath.meter, self._fast
        native = fast_meters.native
        native_decode = native.decode if native is not None else _undecided
        unknown = self.unknown_type_is_error
        new = replay = duplicate = late = 0
        for rec in records:
            partition, offset, ingested = rec.partition, rec.offset, rec.timestamp_ms
            # Faust may deliver a record twice in one batch (a re-fetch after its seek);
            # the progress gate covers earlier batches, this covers the batch itself.
            if (partition, offset) in positions:
                plan.count("redelivered")
                continue
            positions.add((partition, offset))
            lines = split_record(rec.value, rec.batch)
            if not lines:
                dead.append(
                    DeadLetter(
                        rec,
                        DeadLetterReason.SCHEMA,
                        "the batch record holds no events",
                        0,
                        rec.value,
                    )
                )
            minute_s = (ingested - ingested % MINUTE_MS) // 1000
            spanned = False  # a kept event of this record adds to windows
            for index, line in enumerate(lines):
                try:  # native, then lean, then the reference: the first that decides
                    full = native_decode(line, unknown, False)  # no data dict if metered
                    if full is not None:
                        source, event_id, event_type, subject, time_ms, data, digest, rows = full
                        if rows is None:  # decoded natively, metered by the lean path
                            rows = fast_meter(
                                fast_meters, event_type, subject, time_ms, data, unknown
                            )
                    else:
                        fast = fast_decode(line)
                        if fast is not None:
                            source, event_id, event_type, subject, time_ms, data, digest = fast
                            rows = fast_meter(
                                fast_meters, event_type, subject, time_ms, data, unknown
                            )
                        else:
                            source, event_id, event_type, subject, time_ms, rows, digest = (
                                self._reference_line(line)
                            )
                except InvalidInput as exc:
                    dead.append(DeadLetter(rec, DeadLetterReason.SCHEMA, str(exc), index, line))
                    continue
                except Unmeterable as exc:
                    dead.append(DeadLetter(rec, exc.reason, exc.detail, index, line))
                    continue
                key = f"{ns}\x1f{source}\x1f{event_id}"
                first = in_batch.get(key) or pending(key) or lookup(key)
                if first is None:
                    new += 1
                    record = SeenRecord(partition, offset, digest, ingested, index)
                    in_batch[key] = record
                else:
                    verdict = judge(first, partition, offset, index, digest, ingested, horizon)
                    if verdict is Verdict.DUPLICATE:
                        duplicate += 1
                        continue
                    if verdict is Verdict.CONFLICT:
                        plan.count("conflict")
                        plan.conflicts.append(
                            f"{source}/{event_id} at {partition}:{offset}:{index} differs "
                            f"from the first copy at {first.partition}:{first.offset}:"
                            f"{first.index}"
                        )
                        continue
                    record = SeenRecord(partition, offset, digest, ingested, index)
                    if verdict is Verdict.NEW:  # the first copy is past the horizon
                        new += 1
                        in_batch[key] = record
                    else:
                        replay += 1
                seen.append((key, record))
                is_late = ingested > time_ms - time_ms % MINUTE_MS + grace
                if is_late:
                    late += 1
                raw_rows.append(
                    (
                        ns,
                        source,
                        event_id,
                        event_type,
                        subject,
                        time_ms,
                        line,  # its exact bytes (RawRow)
                        ingested,
                        partition,
                        offset,
                        index,
                        digest,
                        is_late,
                    )
                )
                if not rows:
                    continue
                kept.append((partition, offset, index, minute_s, rows))
                spanned = True
                for meter, who, group, window, value, uniq, ms in rows:
                    gkey = (meter, who, group, window, minute_s, partition, uniq)
                    state = groups.get(gkey)
                    if state is None:
                        groups[gkey] = [
                            ns, meter, who, group, window // 1000, minute_s, partition,
                            1, value, value, value, uniq, value, ms, offset, index, offset,
                        ]  # fmt: skip
                        continue
                    state[7] += 1
                    state[8] += value
                    if value > state[9]:
                        state[9] = value
                    if value < state[10]:
                        state[10] = value
                    if ms > state[13] or (
                        ms == state[13] and (offset, index) > (state[14], state[15])
                    ):
                        state[12], state[13], state[14], state[15] = value, ms, offset, index
                    if offset > state[16]:
                        state[16] = offset
            if spanned:  # once per record: its events share its offset
                span = spans.get(partition)
                if span is None:
                    spans[partition] = [offset, offset]
                elif offset < span[0]:
                    span[0] = offset
                elif offset > span[1]:
                    span[1] = offset
        plan.count("new", new)
        plan.count("replay", replay)
        plan.count("duplicate", duplicate)
        plan.count("late", late)
        plan.count("dead_letter", len(dead))
        return plan

    def _plan_natively(
        self,
        native_plan: Callable[..., Any],
        plan: BatchPlan,
        records: Sequence[Record],
        store: SeenLookup,
    ) -> BatchPlan:
        """:meth:`plan` by the native loop: the same rules, objects and order — the raw rows
        as columns (``NativeRawRows``) that read as the same tuples, and the dedupe entries
        read from them (:class:`RowsSeen`): no object per event for either."""
        plan.raw_rows = raw = NativeRawRows()
        folded = NativeGroups()
        pending = store.pending if isinstance(store, PendingSeen) else {}
        pending_keys = store.keys if isinstance(store, PendingSeen) else None
        owner = store.store if isinstance(store, PendingSeen) else store
        filter_of = getattr(owner, "key_filter", None)  # the worker's store has one
        counts, dead = native_plan(
            records if isinstance(records, list) else list(records),
            plan,
            self.namespace,
            self.unknown_type_is_error,
            MINUTE_MS + self.late_grace_ms,
            self.horizon_ms,
            pending_keys,
            pending,
            owner.get,
            self._line,
            filter_of() if filter_of is not None else None,
            folded=folded,
        )
        plan.groups = FoldedGroups(folded)
        plan.seen = RowsSeen(raw)
        redelivered, conflict, new, replay, duplicate, late = counts
        plan.count("redelivered", redelivered)
        plan.count("conflict", conflict)
        plan.count("new", new)
        plan.count("replay", replay)
        plan.count("duplicate", duplicate)
        plan.count("late", late)
        plan.dead.extend(
            DeadLetter(rec, DeadLetterReason.SCHEMA if reason is None else reason, detail, n, line)
            for rec, reason, detail, n, line in dead
        )
        plan.count("dead_letter", len(plan.dead))
        return plan

    def refusal(self, line: bytes) -> tuple[DeadLetterReason, str] | None:
        """The dead-letter reason and detail this planner would give the event ``line``,
        or ``None`` if it meters (or is stored raw): what a resend of a dead letter is
        judged by (``streams.dead_letters``)."""
        answer = self._line(line, None)
        return (answer[0], answer[1]) if len(answer) == 2 else None

    def _line(self, line: bytes, decoded: tuple[Any, ...] | None) -> tuple[Any, ...]:
        """The native loop's way down the chain for a line it did not meter: ``decoded``
        is the native decoder's tuple (with its data) or ``None``.  The event as
        ``(source, id, type, subject, time_ms, contributions, digest, dedupe key)``, or its
        dead letter as ``(reason, detail)``."""
        unknown = self.unknown_type_is_error
        try:
            if decoded is not None:
                source, event_id, event_type, subject, time_ms, data, digest = decoded
                rows = fastpath.meter(self._fast, event_type, subject, time_ms, data, unknown)
            else:
                fast = fastpath.decode(line)
                if fast is not None:
                    source, event_id, event_type, subject, time_ms, data, digest = fast
                    rows = fastpath.meter(self._fast, event_type, subject, time_ms, data, unknown)
                else:
                    source, event_id, event_type, subject, time_ms, rows, digest = (
                        self._reference_line(line)
                    )
        except InvalidInput as exc:
            return (DeadLetterReason.SCHEMA, str(exc))
        except Unmeterable as exc:
            return (exc.reason, exc.detail)
        key = f"{self.namespace}\x1f{source}\x1f{event_id}"
        return (source, event_id, event_type, subject, time_ms, rows, digest, key)

    def _reference_line(self, line: bytes) -> tuple[str, str, str, str, int, list[MeterRow], str]:
        """``(source, id, type, subject, time_ms, contributions, digest)`` of a line the lean
        path left undecided, by the reference path: :class:`InvalidInput` or
        :class:`Unmeterable` as it raises them."""
        event = decode_event(line)
        found = contributions(event, self.meters, unknown_type_is_error=self.unknown_type_is_error)
        rows = [
            (c.meter, c.subject, c.group_key, c.window_start_ms, c.value, c.uniq, c.event_ms)
            for c in found
        ]
        return (
            event.source,
            event.id,
            event.type,
            event.subject,
            event.time_ms,
            rows,
            content_hash(event),
        )
