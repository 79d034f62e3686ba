"""Thresholds: reading the file, which apply, when they are crossed, and their ids."""

from __future__ import annotations

from datetime import date
from decimal import Decimal as D
from pathlib import Path

import pytest

from alerts.thresholds import (
    Kind,
    Reading,
    crossings,
    load_thresholds,
    notification_id,
    parse_thresholds,
)
from invoicing.customers import Customer
from invoicing.periods import Period
from schemas.errors import InvalidInput

ACME = Customer.model_validate(
    {"id": "acme", "plan": "pro", "currency": "USD", "start": "2026-01-01", "anchor_day": 1}
)
HOOLI = Customer.model_validate(
    {"id": "hooli", "plan": "team", "currency": "EUR", "start": "2026-01-01", "anchor_day": 15}
)


def period_of(customer: Customer, day: date) -> Period:
    period = customer.schedule.period_containing(day)
    assert period is not None
    return period


THRESHOLDS = parse_thresholds(
    {
        "thresholds": [
            {"id": "calls-100k", "kind": "usage", "meter": "api_calls", "at": 100000},
            {"id": "pro-spend-500", "kind": "spend", "plan": "pro", "at": "500.00"},
            {"id": "acme-credit-20", "kind": "credit", "customer": "acme", "at": 20},
        ]
    },
    known_meters={"api_calls", "storage_gb"},
)


def test_a_usage_threshold_fires_at_its_quantity_not_before() -> None:
    period = period_of(ACME, date(2026, 11, 20))
    below = Reading(ACME, period, {"api_calls": D("99999.999")})
    assert crossings(THRESHOLDS, below) == []
    at = Reading(ACME, period, {"api_calls": D(100000)})
    (crossed,) = crossings(THRESHOLDS, at)
    assert (crossed.threshold.id, crossed.observed) == ("calls-100k", D(100000))
    assert crossed.notification_id == notification_id("calls-100k", ACME, period)


def test_spend_and_credit_thresholds_apply_to_their_plan_and_customer_only() -> None:
    acme = Reading(ACME, period_of(ACME, date(2026, 11, 20)), {}, D("500.00"), (D(200), D(40)))
    assert sorted(c.threshold.id for c in crossings(THRESHOLDS, acme)) == [
        "acme-credit-20",
        "pro-spend-500",
    ]
    hooli = Reading(HOOLI, period_of(HOOLI, date(2026, 11, 20)), {}, D("9999"), (D(10), D(0)))
    assert crossings(THRESHOLDS, hooli) == []  # a team plan, and not acme


def test_credit_is_compared_exactly_and_reported_as_a_percentage() -> None:
    period = period_of(ACME, date(2026, 11, 20))
    just_over = Reading(ACME, period, {}, None, (D(300), D("60.01")))  # 20.0033 % left
    assert crossings(THRESHOLDS, just_over) == []
    (crossed,) = crossings(THRESHOLDS, Reading(ACME, period, {}, None, (D(300), D(60))))
    assert crossed.observed == D("20.00")
    spent = Reading(ACME, period, {}, None, (D(300), D(-5)))  # over-consumed: 0 % left
    assert crossings(THRESHOLDS, spent)[0].observed == D("0.00")
    assert crossings(THRESHOLDS, Reading(ACME, period, {}, None, None)) == []


def test_a_threshold_fires_once_per_subscription_and_period() -> None:
    november = period_of(ACME, date(2026, 11, 20))
    december = period_of(ACME, date(2026, 12, 2))
    reading = Reading(ACME, november, {"api_calls": D(200000)})
    (first,) = crossings(THRESHOLDS, reading)
    assert crossings(THRESHOLDS, reading, fired={first.notification_id}) == []
    (next_period,) = crossings(THRESHOLDS, Reading(ACME, december, {"api_calls": D(200000)}))
    assert next_period.notification_id != first.notification_id
    other = ACME.model_copy(update={"subscription": "second"})
    assert notification_id("calls-100k", other, november) != first.notification_id
    # the id depends on nothing the evaluator holds: recomputed, it is the same
    assert notification_id("calls-100k", ACME, november) == first.notification_id


def test_every_problem_of_a_thresholds_file_is_reported_with_its_path(tmp_path: Path) -> None:
    file = tmp_path / "thresholds.yaml"
    file.write_text(
        "thresholds:\n"
        "  - {id: a, kind: usage, at: 10}\n"
        "  - {id: a, kind: spend, meter: api_calls, at: 5}\n"
        "  - {id: c, kind: credit, at: 120}\n"
        "  - {id: d, kind: usage, meter: api_cals, at: 1}\n"
        "  - {id: e, kind: usage, meter: api_calls, at: -1}\n"
        "  - {id: f, kind: budget, at: 1}\n"
    )
    with pytest.raises(InvalidInput) as caught:
        load_thresholds(file, known_meters={"api_calls"})
    assert [(p.path, p.fix) for p in caught.value.problems] == [
        ("thresholds.4.at", "use 0 or more"),
        ("thresholds.5.kind", "use one of 'usage', 'spend' or 'credit'"),
    ]
    with pytest.raises(InvalidInput) as semantic:
        load_thresholds(_without_shape_errors(file), known_meters={"api_calls"})
    assert [p.path for p in semantic.value.problems] == [
        "thresholds[0].meter",
        "thresholds[1].id",
        "thresholds[1].meter",
        "thresholds[2].at",
        "thresholds[3].meter",
    ]
    assert "use one of: api_calls" in semantic.value.problems[4].fix


def _without_shape_errors(file: Path) -> Path:
    lines = file.read_text().splitlines()[:-2]  # drop the negative quantity and the kind
    out = file.with_name("semantic.yaml")
    out.write_text("\n".join(lines) + "\n")
    return out


def test_kinds_are_the_documented_three() -> None:
    assert [k.value for k in Kind] == ["usage", "spend", "credit"]
    assert parse_thresholds(None) == ()
