"""Deterministic synthetic telemetry for the demo, the tests and the benchmarks.

:func:`generate` returns the events to send — including exact duplicates (retries) and
out-of-order timestamps — and, computed independently of the pipeline, the truth: what
each (subject, meter) must total once duplicates are removed.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from schemas.events import UsageEvent

__all__ = ["Telemetry", "generate"]

ENDPOINTS = ("/v1/search", "/v1/embed", "/v1/chat")
REGIONS = ("eu-west", "us-east")
MODELS = ("small", "large")


@dataclass(slots=True)
class Telemetry:
    events: list[UsageEvent] = field(default_factory=list)
    unique: int = 0
    duplicates: int = 0
    truth: dict[tuple[str, str], Decimal] = field(default_factory=dict)
    """(subject, meter slug) → exact total: COUNT of api_calls, SUM of the others."""

    def add_truth(self, subject: str, meter: str, value: Decimal) -> None:
        key = (subject, meter)
        self.truth[key] = self.truth.get(key, Decimal(0)) + value


def generate(
    subjects: Sequence[str],
    start: datetime,
    span: timedelta,
    events_per_subject: int,
    *,
    seed: int = 7,
    duplicate_ratio: float = 0.1,
    shuffle: bool = True,
    id_prefix: str = "",
) -> Telemetry:
    """Events spread over ``[start, start + span)``; ``duplicate_ratio`` of them re-sent."""
    rng = random.Random(seed)  # noqa: S311 - reproducible synthetic data, not security
    out = Telemetry()
    span_ms = int(span.total_seconds() * 1000)
    for subject in subjects:
        for n in range(events_per_subject):
            at = start + timedelta(milliseconds=rng.randrange(span_ms))
            kind = rng.random()
            if kind < 0.6:
                event = UsageEvent.create(
                    type="api.request",
                    subject=subject,
                    source="demo-gateway",
                    id=f"{id_prefix}{subject}-req-{n}",
                    time=at,
                    data={"endpoint": rng.choice(ENDPOINTS), "region": rng.choice(REGIONS)},
                )
                out.add_truth(subject, "api_calls", Decimal(1))
            elif kind < 0.9:
                tokens = rng.randrange(1, 4000)
                event = UsageEvent.create(
                    type="llm.completion",
                    subject=subject,
                    source="demo-llm",
                    id=f"{id_prefix}{subject}-llm-{n}",
                    time=at,
                    data={"tokens": tokens, "model": rng.choice(MODELS)},
                )
                out.add_truth(subject, "llm_tokens", Decimal(tokens))
            else:
                gb_hours = Decimal(rng.randrange(1, 100_000)) / Decimal(1000)
                event = UsageEvent.create(
                    type="storage.snapshot",
                    subject=subject,
                    source="demo-storage",
                    id=f"{id_prefix}{subject}-sto-{n}",
                    time=at,
                    data={"gb_hours": str(gb_hours)},
                )
                out.add_truth(subject, "storage_gb_hours", gb_hours)
            out.events.append(event)
            out.unique += 1
    originals = list(out.events)
    for event in originals:
        if rng.random() < duplicate_ratio:
            out.events.append(event)  # a retry: same source, id and content
            out.duplicates += 1
    if shuffle:
        rng.shuffle(out.events)  # out of order in event time, duplicates anywhere
    return out
