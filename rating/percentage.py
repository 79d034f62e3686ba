"""Percentage pricing: a rate on the amount each event transacted.

Per event, in the order the events happened:

1. **Free events** — the first ``free_events`` events cost nothing.  Or, instead,
   **free amount** — the first ``free_amount`` of transacted amount is not charged;
   it is used up event by event, so one event may be partly free.  An event whose whole
   (non-zero) amount is covered is free; a partly covered event is charged on the rest.
2. A charged event's fee is ``billable amount × percent / 100 + fixed_fee``.
3. That fee is raised to ``min_per_event`` or lowered to ``max_per_event`` when set.

The line shows these groups as components so the customer can check the sum: the rate
on the amount of the events charged normally, the fixed fee × their count, and the
count of events charged the minimum or the maximum.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import ClassVar

from rating.lines import Component, Pricing
from rating.money import ZERO, format_decimal
from rating.usage import Usage

__all__ = ["Percentage"]


@dataclass(frozen=True, slots=True)
class Percentage:
    """``percent`` of each event's amount plus a fixed fee, within optional per-event bounds.

    At most one of ``free_events`` and ``free_amount`` is set; ``min_per_event`` is not
    above ``max_per_event`` (both checked by validation).
    """

    kind: ClassVar[str] = "percentage"
    percent: Decimal
    fixed_fee: Decimal = ZERO
    free_events: int = 0
    free_amount: Decimal | None = None
    min_per_event: Decimal | None = None
    max_per_event: Decimal | None = None

    @property
    def rate(self) -> Decimal:
        """The percent as a fraction: 2.9 -> 0.029 (exact: a shift of the exponent)."""
        return self.percent.scaleb(-2)

    def price(self, usage: Usage) -> Pricing:
        rate = self.rate
        free_events_left = self.free_events
        free_amount_left = self.free_amount if self.free_amount is not None else ZERO
        free_count = 0
        free_amount_used = ZERO
        normal_amount = ZERO
        normal_count = 0
        at_min = 0
        at_max = 0
        for amount in usage.event_amounts or ():
            if free_events_left:
                free_events_left -= 1
                free_count += 1
                continue
            covered = min(free_amount_left, amount)
            free_amount_left -= covered
            free_amount_used += covered
            billable = amount - covered
            if covered and not billable:
                free_count += 1
                continue
            fee = billable * rate + self.fixed_fee
            if self.min_per_event is not None and fee < self.min_per_event:
                at_min += 1
            elif self.max_per_event is not None and fee > self.max_per_event:
                at_max += 1
            else:
                normal_amount += billable
                normal_count += 1
        return Pricing(
            components=self._components(
                free_count, free_amount_used, normal_amount, normal_count, at_min, at_max
            )
        )

    def _components(
        self,
        free_count: int,
        free_amount_used: Decimal,
        normal_amount: Decimal,
        normal_count: int,
        at_min: int,
        at_max: int,
    ) -> tuple[Component, ...]:
        parts: list[Component] = []
        if self.free_events:
            parts.append(
                Component.of(
                    f"free events (the first {self.free_events})", Decimal(free_count), ZERO
                )
            )
        if self.free_amount is not None:
            parts.append(
                Component.of(
                    f"free amount (the first {format_decimal(self.free_amount)})",
                    free_amount_used,
                    ZERO,
                )
            )
        parts.append(
            Component.of(
                f"{format_decimal(self.percent)}% of the amount of {normal_count} events",
                normal_amount,
                self.rate,
            )
        )
        if self.fixed_fee:
            parts.append(Component.of("fixed fee per event", Decimal(normal_count), self.fixed_fee))
        if self.min_per_event is not None:
            parts.append(
                Component.of("events charged the minimum", Decimal(at_min), self.min_per_event)
            )
        if self.max_per_event is not None:
            parts.append(
                Component.of("events charged the maximum", Decimal(at_max), self.max_per_event)
            )
        return tuple(parts)
