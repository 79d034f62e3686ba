"""What an invoice line bills, in a form a customer can check without trusting us (pure).

Every usage line on a meter carries its *evidence*: which events it bills (the meter's
event type, the customer's subjects, the period's event-time range, the ingestion
cutoff), how many there are, and a digest of them; how they add up (the aggregation and
value property); how the amount was rounded; and the rate-card version that priced it.
With the events (``/api/v1/invoices/{id}/lines/{n}/events``) a customer recomputes:

1. each event's hash: ``sha256_hex(source + "\\0" + id + "\\0" + event)``, ``event`` the
   stored event — its CloudEvents JSON text, as the API serves it, byte for byte;
2. each subject's digest: ``sha256_hex("\\n".join(sorted(hashes of its events)))``;
3. the line's digest: ``sha256_hex("\\n".join(sorted(subject + " " + subject digest)))``
   over every subject of the line, a subject without events taking the digest of
   nothing (``sha256_hex("")``);
4. the quantity: the aggregation of the value property over the events
   (:func:`recompute_quantity`), and from it the amount, with the line's tiers or the
   rate-card version's prices, rounded once as the line says.

Subject digests first, then the line: one query per period reads every subject's digest
at once (``schemas.storage.events_table.LineEvents``), however many customers it bills.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from schemas.documents import parse_json
from schemas.metering.definitions import Aggregation, MeterDefinition
from schemas.metering.paths import MISSING, JsonPath
from schemas.timeutil import format_ms

__all__ = [
    "EMPTY_DIGEST",
    "EvidenceReader",
    "LineEvidence",
    "event_hash",
    "line_digest",
    "recompute_quantity",
    "subject_digest",
]

EMPTY_DIGEST = hashlib.sha256(b"").hexdigest()

EvidenceReader = Callable[[str, int, int, int], Mapping[str, tuple[int, str]]]
"""``read(event_type, start_s, end_s, cutoff_s)`` -> ``{subject: (events, digest)}`` of
every subject with events of that type in the range, ingested before the cutoff."""


def event_hash(source: str, event_id: str, event: str) -> str:
    return hashlib.sha256(f"{source}\0{event_id}\0{event}".encode()).hexdigest()


def subject_digest(hashes: Iterable[str]) -> str:
    return hashlib.sha256("\n".join(sorted(hashes)).encode()).hexdigest()


def line_digest(subjects: Iterable[str], digests: Mapping[str, str]) -> str:
    parts = sorted(f"{subject} {digests.get(subject, EMPTY_DIGEST)}" for subject in subjects)
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class LineEvidence:
    meter: MeterDefinition
    subjects: tuple[str, ...]
    start_s: int
    end_s: int
    cutoff_s: int
    events: int
    digest: str
    minor_units: int
    rate_card_version: str

    @classmethod
    def read(
        cls,
        meter: MeterDefinition,
        subjects: Sequence[str],
        window: tuple[int, int, int],
        read: EvidenceReader,
        minor_units: int,
        rate_card_version: str,
    ) -> LineEvidence:
        """The evidence of a line on ``meter`` for ``subjects`` over ``window`` =
        ``(start_s, end_s, cutoff_s)``."""
        start_s, end_s, cutoff_s = window
        found = read(meter.event_type, start_s, end_s, cutoff_s)
        own = {subject: found[subject] for subject in subjects if subject in found}
        return cls(
            meter=meter,
            subjects=tuple(sorted(subjects)),
            start_s=start_s,
            end_s=end_s,
            cutoff_s=cutoff_s,
            events=sum(count for count, _ in own.values()),
            digest=line_digest(subjects, {s: digest for s, (_, digest) in own.items()}),
            minor_units=minor_units,
            rate_card_version=rate_card_version,
        )

    def to_dict(self) -> dict[str, object]:
        return {
            "meter": self.meter.slug,
            "event_type": self.meter.event_type,
            "aggregation": self.meter.aggregation.value,
            "value_property": self.meter.value_property,
            "subjects": list(self.subjects),
            "events_from": format_ms(self.start_s * 1000),
            "events_to": format_ms(self.end_s * 1000),
            "ingested_before": format_ms(self.cutoff_s * 1000),
            "events": self.events,
            "events_digest": self.digest,
            "rounding": f"ROUND_HALF_UP to {self.minor_units} decimals, once per line",
            "rate_card_version": self.rate_card_version,
        }


def recompute_quantity(
    aggregation: Aggregation, value_property: str | None, events: Sequence[str]
) -> Decimal:
    """The line's quantity from its events' JSON texts, as the meter aggregates the value
    property of their ``data``.  LATEST takes the last event given (the caller orders
    them by event time)."""
    if aggregation is Aggregation.COUNT:
        return Decimal(len(events))
    path = JsonPath.parse(value_property or "$")
    values = [path.find(_data(event)) for event in events]
    present = [value for value in values if value is not MISSING]
    if aggregation is Aggregation.UNIQUE_COUNT:
        return Decimal(len({_text(value) for value in present}))
    numbers = [_number(value) for value in present]
    if not numbers:
        return Decimal(0)
    if aggregation is Aggregation.SUM:
        return sum(numbers, Decimal(0))
    if aggregation is Aggregation.MAX:
        return max(numbers)
    if aggregation is Aggregation.MIN:
        return min(numbers)
    if aggregation is Aggregation.AVG:
        return sum(numbers, Decimal(0)) / len(numbers)
    return numbers[-1]


def _data(event: str) -> Any:
    document = parse_json(event, "event", "event")
    return document.get("data") if isinstance(document, dict) else None


def _number(value: Any) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(str(value))


def _text(value: Any) -> str:
    """A unique value as the meter counts it: text as is, a number in its shortest form."""
    return value if isinstance(value, str) else format(_number(value).normalize(), "f")
