"""Customers and their subscriptions, from a YAML file.

Each entry is one subscription of one customer::

```yaml
customers:
  - id: acme                            # the customer id (and, by default, its one subject)
    subjects: [acme-prod, acme-staging] # several event subjects billed to one customer
    subscription: main                  # default "main"
    plan: pro                           # a plan of the rate card
    currency: USD
    cadence: monthly                    # monthly (default) | daily | weekly | quarterly
                                        #   | yearly (or annual)
    anchor_day: 31                      # monthly/quarterly/yearly; default: the start's day
    anchor_weekday: monday              # weekly; default: the start date's weekday
    timezone: Europe/Berlin             # IANA name; default UTC
    start: 2026-01-31                   # first day billed (local date), or an instant:
                                        #   2026-01-31T13:45:00Z (a whole minute)
    end: 2027-01-31                     # optional: first day (or instant) no longer billed
    trial_end: 2026-02-14               # optional: nothing is billed before it
```

A customer may appear several times, one entry per subscription (e.g. a plan change:
one subscription ends on the day the next starts); the subscriptions of one customer may
not overlap, since they would bill the same usage twice.  A yearly cadence renews on the
start date's month at the anchor day.

A customer's usage is the sum of its subjects' usage, which is exact for additive meters
(SUM, COUNT).  Non-additive meters (UNIQUE_COUNT, MAX, MIN, AVG, LATEST) cannot be
combined across subjects, so a customer billed on one must have exactly one subject.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)

from invoicing.periods import WEEKDAYS, Cadence, Schedule, instant
from schemas.documents import load_document
from schemas.errors import InvalidInput, Problem
from schemas.memory import collection_paused

__all__ = ["Cadence", "Customer", "load_customers", "parse_customers"]

Weekday = Literal["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]


class Customer(BaseModel):
    """One subscription of one customer (``id`` is the customer id)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1, max_length=128)
    subjects: tuple[str, ...] = ()
    subscription: str = Field(default="main", min_length=1, max_length=128)
    plan: str = Field(min_length=1)
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    cadence: Cadence = Cadence.MONTHLY
    anchor_day: int | None = Field(default=None, ge=1, le=31)
    anchor_weekday: Weekday | None = None
    timezone: str = "UTC"
    start: AwareDatetime | date = date(1970, 1, 1)
    end: AwareDatetime | date | None = None
    trial_end: AwareDatetime | date | None = None

    @field_validator("start", "end", "trial_end")
    @classmethod
    def _whole_minute(cls, value: object) -> object:
        if isinstance(value, datetime) and (value.second or value.microsecond):
            raise ValueError(
                "a change takes effect on a whole minute (usage is kept per minute); "
                "drop the seconds"
            )
        return value

    @property
    def start_day(self) -> date:
        """The local date the subscription starts on (anchors default to it)."""
        return instant(self.start, self.timezone).astimezone(ZoneInfo(self.timezone)).date()

    def billable_from(self, start: datetime) -> datetime:
        """Where billing of a period starting at ``start`` begins: after the trial."""
        if self.trial_end is None:
            return start
        return max(start, instant(self.trial_end, self.timezone))

    def model_post_init(self, context: object, /) -> None:
        if not self.subjects:
            object.__setattr__(self, "subjects", (self.id,))

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown timezone {value!r}; use an IANA name such as UTC or Europe/Berlin"
            ) from None
        return value

    @property
    def schedule(self) -> Schedule:
        first = self.start_day
        day = self.anchor_day if self.anchor_day is not None else first.day
        return Schedule(
            cadence=self.cadence,
            timezone=self.timezone,
            start=self.start,
            end=self.end,
            anchor_day=day,
            anchor_month=first.month,
            anchor_weekday=(
                WEEKDAYS.index(self.anchor_weekday)
                if self.anchor_weekday is not None
                else first.weekday()
            ),
        )


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid")
    customers: list[Customer]


def _problems(customers: list[Customer]) -> list[Problem]:
    problems: list[Problem] = []
    owner: dict[str, str] = {}
    seen: dict[tuple[str, str], int] = {}
    same_customer: dict[str, list[tuple[int, Customer]]] = {}  # linear, not every pair
    for index, customer in enumerate(customers):
        path = f"customers[{index}]"
        schedule = customer.schedule
        end_at = schedule.end_at
        if end_at is not None and end_at <= schedule.start_at:
            problems.append(
                Problem(f"{path}.end", "ends on or before its start", "set end after start")
            )
        if customer.cadence in (Cadence.DAILY, Cadence.WEEKLY) and customer.anchor_day is not None:
            problems.append(
                Problem(
                    f"{path}.anchor_day",
                    f"a {customer.cadence} cadence has no anchor day",
                    "remove it"
                    + (" (weekly: anchor_weekday)" if customer.cadence is Cadence.WEEKLY else ""),
                )
            )
        if customer.cadence is not Cadence.WEEKLY and customer.anchor_weekday is not None:
            problems.append(
                Problem(
                    f"{path}.anchor_weekday",
                    f"only a weekly cadence has an anchor weekday, not {customer.cadence}",
                    "remove it, or use cadence: weekly",
                )
            )
        key = (customer.id, customer.subscription)
        if key in seen:
            problems.append(
                Problem(
                    f"{path}.subscription",
                    f"subscription {customer.subscription!r} of {customer.id!r} is already"
                    f" defined at customers[{seen[key]}]",
                    "give each subscription of a customer its own id",
                )
            )
        seen[key] = index
        for subject in customer.subjects:
            if owner.get(subject, customer.id) != customer.id:
                problems.append(
                    Problem(
                        f"{path}.subjects",
                        f"subject {subject!r} already belongs to customer {owner[subject]!r}",
                        "bill each subject to one customer",
                    )
                )
            owner[subject] = customer.id
        earlier = same_customer.setdefault(customer.id, [])
        for other_index, other in list(earlier):
            if _overlap(other, customer):
                problems.append(
                    Problem(
                        f"{path}.start",
                        f"overlaps subscription {other.subscription!r}"
                        f" (customers[{other_index}]) of the same customer",
                        "end one subscription on or before the day the other starts",
                    )
                )
        earlier.append((index, customer))
    return problems


def _overlap(a: Customer, b: Customer) -> bool:
    far = datetime.max.replace(tzinfo=UTC)
    first, second = a.schedule, b.schedule
    return first.start_at < (second.end_at or far) and second.start_at < (first.end_at or far)


def parse_customers(document: object) -> tuple[Customer, ...]:
    try:
        with collection_paused():  # 100k customers are one batch (schemas.memory)
            parsed = _File.model_validate(document)
            problems = _problems(parsed.customers)
    except ValidationError as exc:
        raise InvalidInput.from_pydantic("customers", exc.errors()) from None
    if problems:
        raise InvalidInput("customers", problems)
    return tuple(parsed.customers)


def load_customers(path: str | Path) -> tuple[Customer, ...]:
    return parse_customers(load_document(path, "customers"))
