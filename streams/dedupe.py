"""Pure deduplication decisions by ``(namespace, source, id)``.

The dedupe store maps an event's key to where the event was *first accepted*: its Kafka
partition, offset and index within the record, and a digest of its content.  Deciding by
position rather than by a bare "seen" flag makes every decision replay-proof:

* the same event read again after a crash (same partition, offset and index) is the
  same event, not a duplicate, so a batch whose write failed is written in full on retry;
* an event at another position with the same key is a duplicate and is dropped; if its
  content digest differs it is also a *conflict* (the first one wins, the conflict is
  counted and logged).

The worker records a key only after the event's effects are durably in ClickHouse, and
Faust flushes those records to the changelog before it commits offsets.  Records older
than the horizon (default 32 days of ingestion time) expire.  Duplicates are
caught within a Kafka partition; the wire key (the subject) puts every retry of an
event on the same partition as the original.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import Enum

import msgspec

__all__ = [
    "DEFAULT_HORIZON_MS",
    "Candidate",
    "Decision",
    "SeenRecord",
    "Verdict",
    "classify",
    "dedupe_key",
    "judge",
]


def dedupe_key(namespace: str, source: str, event_id: str) -> str:
    return f"{namespace}\x1f{source}\x1f{event_id}"


class SeenRecord(msgspec.Struct, gc=False):
    """Where a key was first accepted.  Built per kept event on the worker's hot path: a
    msgspec ``Struct`` is built in C (~0.08 µs against ~0.32 for a slotted dataclass) and,
    holding only ints and a text, is left out of the garbage collector (``gc=False``)."""

    partition: int
    offset: int
    content_hash: str
    ingested_ms: int = 0
    index: int = 0

    @property
    def position(self) -> tuple[int, int, int]:
        return (self.partition, self.offset, self.index)

    @classmethod
    def decode(cls, text: str) -> SeenRecord:
        """A record as workers wrote it before records carried several events
        (``partition:offset:ingested_ms:digest``, one table entry per event): index 0."""
        partition, offset, ingested, digest = text.split(":", 3)
        return cls(int(partition), int(offset), digest, int(ingested))


@dataclass(slots=True)  # not frozen: built per event on the worker's hot path
class Candidate:
    key: str
    partition: int
    offset: int
    content_hash: str
    ingested_ms: int = 0
    index: int = 0

    @property
    def position(self) -> tuple[int, int, int]:
        return (self.partition, self.offset, self.index)


class Verdict(Enum):
    NEW = "new"
    """First time this key is seen: meter and store it."""
    REPLAY = "replay"
    """The very record that was accepted before (re-read after a crash): meter it again;
    writes are idempotent and window progress skips what is already counted."""
    DUPLICATE = "duplicate"
    """Same key, same content, another position: drop."""
    CONFLICT = "conflict"
    """Same key, different content, another position: drop (first wins), count, log."""


@dataclass(slots=True)  # not frozen: built per event on the worker's hot path
class Decision:
    candidate: Candidate
    verdict: Verdict
    first: SeenRecord | None = None

    @property
    def keep(self) -> bool:
        return self.verdict in (Verdict.NEW, Verdict.REPLAY)


DEFAULT_HORIZON_MS = 32 * 86_400_000


def judge(
    first: SeenRecord,
    partition: int,
    offset: int,
    index: int,
    content_hash: str,
    ingested_ms: int,
    horizon_ms: int = DEFAULT_HORIZON_MS,
) -> Verdict:
    """The verdict on one event whose key was first accepted as ``first``: the rule of
    :func:`classify` for a key it finds, without an object per event (the worker's hot
    path; property-tested against :func:`classify`)."""
    if first.partition == partition and first.offset == offset and first.index == index:
        return Verdict.REPLAY
    if ingested_ms - first.ingested_ms > horizon_ms:
        return Verdict.NEW  # the first copy is beyond the dedupe horizon
    if first.content_hash == content_hash:
        return Verdict.DUPLICATE
    return Verdict.CONFLICT


def classify(
    candidates: Iterable[Candidate],
    lookup: Callable[[str], SeenRecord | None],
    horizon_ms: int = DEFAULT_HORIZON_MS,
) -> list[Decision]:
    """Decide each candidate, in order; earlier candidates in the batch count as seen.

    A key first accepted more than ``horizon_ms`` (by ingestion time) before the
    candidate has expired: the candidate is new again.  The same record re-read is
    always a replay, however old.
    """
    in_batch: dict[str, SeenRecord] = {}
    decisions: list[Decision] = []
    for cand in candidates:
        first = in_batch.get(cand.key) or lookup(cand.key)
        if (
            first is not None
            and first.position != cand.position
            and cand.ingested_ms - first.ingested_ms > horizon_ms
        ):
            first = None  # beyond the dedupe horizon
        if first is None:
            verdict = Verdict.NEW
        elif first.position == cand.position:
            verdict = Verdict.REPLAY
        elif first.content_hash == cand.content_hash:
            verdict = Verdict.DUPLICATE
        else:
            verdict = Verdict.CONFLICT
        if first is None:
            in_batch[cand.key] = SeenRecord(
                cand.partition, cand.offset, cand.content_hash, cand.ingested_ms, cand.index
            )
        decisions.append(Decision(cand, verdict, first))
    return decisions
