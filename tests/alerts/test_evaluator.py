"""The evaluator on real storage (both engines): crossings read from stored windows,
recorded before they are sent, and raised once per threshold and period — also by a
second evaluator started afterwards, as after a crash."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal as D
from typing import Any

import orjson
import pytest

from alerts.evaluator import Evaluator, Raised, Watch, current_periods
from alerts.notifications import Notification
from alerts.thresholds import parse_thresholds
from invoicing.customers import Customer
from rating import rate_plan
from rating.usage import Usage
from schemas.storage.engine import Engine
from schemas.storage.notifications_table import NotificationsTable
from schemas.timeutil import to_ms
from tests.conftest import fresh_database
from tests.invoicing.backtest_kit import BILLED_CARD, METERS, NAMESPACE, store_usage

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
ACME = Customer.model_validate(
    {"id": "acme", "plan": "pro", "currency": "USD", "start": "2026-01-01", "anchor_day": 1}
)
GLOBEX = Customer.model_validate(
    {"id": "globex", "subjects": ["globex-eu", "globex-us"], "plan": "starter",
     "currency": "USD", "start": "2026-01-01", "anchor_day": 1}
)  # fmt: skip
THRESHOLDS = parse_thresholds(
    {
        "thresholds": [
            {"id": "calls-1000", "kind": "usage", "meter": "api_calls", "at": 1000},
            {"id": "acme-spend", "kind": "spend", "customer": "acme", "at": "2.00"},
            {"id": "credit-low", "kind": "credit", "at": 25},
        ]
    },
    known_meters=METERS.slugs(),
)


@pytest.fixture(params=["server", "chdb"])
def storage(request: pytest.FixtureRequest) -> Iterator[tuple[Engine, str]]:
    yield from fresh_database(request, "mlal_")


def watch(database: str, credit: Any = None) -> Watch:
    return Watch(NAMESPACE, database, METERS, (ACME, GLOBEX), BILLED_CARD, THRESHOLDS, credit)


def ignore(raised: Raised) -> None:
    """A ``send`` that sends nothing (and records nothing as sent)."""


def threshold_of(raised: Raised | Notification) -> str:
    notification = raised.notification if isinstance(raised, Raised) else raised
    return str(orjson.loads(notification.body())["data"]["threshold"])


def at(day: int, hour: int = 12) -> int:
    return int(datetime(2026, 11, day, hour, tzinfo=UTC).timestamp())


def test_crossings_are_read_from_the_windows_recorded_then_sent_once(
    storage: tuple[Engine, str],
) -> None:
    engine, database = storage
    sent: list[Raised] = []
    # October's usage is not this period's; globex's two subjects add up to 1000
    store_usage(engine, database, {"globex-eu": {"api_calls": 5000}}, at(1) - 86400, at(1))
    store_usage(engine, database, {"globex-eu": {"api_calls": 600}}, at(3), at(3))
    store_usage(engine, database, {"globex-us": {"api_calls": 399}}, at(4), at(4))
    store_usage(engine, database, {"acme": {"api_calls": 999}}, at(5), at(5))
    evaluator = Evaluator(engine, watch(database), sent.append)
    evaluator.load_raised(NOW)
    assert evaluator.tick(NOW) == []  # 999 each: nothing crossed, nothing recorded
    store_usage(engine, database, {"globex-us": {"api_calls": 1}}, at(6), at(6))
    (first,) = evaluator.tick(NOW)
    body = orjson.loads(first.notification.body())
    assert body["data"]["customer"] == "globex"
    assert (body["data"]["threshold"], body["data"]["observed"]) == ("calls-1000", "1000")
    assert body["data"]["period"] == {
        "start": "2026-11-01T00:00:00.000Z",
        "end": "2026-12-01T00:00:00.000Z",
    }
    assert evaluator.tick(NOW) == []  # crossed still, but raised already
    assert sent == [first]
    recorded = engine.execute(NotificationsTable(database).listing(NAMESPACE, None, 10).to_sql())
    assert [(row[0], row[2], row[4]) for row in recorded] == [
        (first.notification.id, "globex", "calls-1000")
    ]
    assert recorded[0][7] == first.notification.body().decode()
    assert recorded[0][8] == 0  # not recorded as sent: send did not say so


def test_a_restarted_evaluator_raises_nothing_twice(storage: tuple[Engine, str]) -> None:
    engine, database = storage
    store_usage(engine, database, {"acme": {"api_calls": 1500}}, at(2), at(2))
    first: list[Raised] = []
    Evaluator(engine, watch(database), first.append).tick(NOW)
    assert {threshold_of(n) for n in first} == {"calls-1000", "acme-spend"}
    again: list[Raised] = []
    restarted = Evaluator(engine, watch(database), again.append)
    restarted.load_raised(NOW)
    assert restarted.tick(NOW) == []
    assert again == []
    # the next period is another period: the same thresholds fire again there
    december = datetime(2026, 12, 2, tzinfo=UTC)
    store_usage(engine, database, {"acme": {"api_calls": 1500}}, at(1) + 31 * 86400, at(2))
    raised = restarted.tick(december)
    assert {threshold_of(n) for n in raised} == {"calls-1000", "acme-spend"}
    assert not {r.notification.id for r in raised} & {r.notification.id for r in first}


def test_spend_is_billing_price_of_the_usage_so_far(storage: tuple[Engine, str]) -> None:
    engine, database = storage
    store_usage(engine, database, {"acme": {"api_calls": 200, "llm_tokens": 3}}, at(2), at(2))
    readings = Evaluator(engine, watch(database), ignore).readings(NOW)
    (reading,) = [r for r in readings if r.customer.id == "acme"]
    expected = rate_plan(
        BILLED_CARD, "pro", "USD", {"api_calls": Usage(D(200)), "llm_tokens": Usage(D(3))}
    ).total
    assert reading.spend == expected
    assert reading.usage == {"api_calls": D(200), "llm_tokens": D(3)}


def test_credit_thresholds_read_the_customers_credit(storage: tuple[Engine, str]) -> None:
    engine, database = storage
    asked: list[tuple[str, datetime]] = []

    def credit(customer: Customer, now: datetime) -> tuple[D, D] | None:
        asked.append((customer.id, now))
        return (D(100), D("25.00")) if customer.id == "acme" else None

    sent: list[Raised] = []
    evaluator = Evaluator(engine, watch(database, credit), sent.append)
    evaluator.tick(NOW)
    assert [threshold_of(n) for n in sent] == ["credit-low"]
    assert orjson.loads(sent[0].notification.body())["data"]["observed"] == "25.00"
    assert sorted(asked) == [("acme", NOW), ("globex", NOW)]


def test_only_subscriptions_with_a_period_holding_now_are_watched() -> None:
    ended = ACME.model_copy(update={"end": datetime(2026, 11, 1, tzinfo=UTC)})
    later = GLOBEX.model_copy(update={"start": datetime(2026, 12, 1, tzinfo=UTC)})
    assert current_periods((ended, later, ACME), THRESHOLDS, NOW) == [
        (2, ACME, current_periods((ACME,), THRESHOLDS, NOW)[0][2])
    ]
    assert current_periods((ACME,), (), NOW) == []  # no threshold applies


def test_what_a_crash_left_unsent_is_sent_again_as_it_was_raised(
    storage: tuple[Engine, str],
) -> None:
    engine, database = storage
    store_usage(engine, database, {"acme": {"api_calls": 1500}}, at(2), at(2))
    raised: list[Raised] = []
    Evaluator(engine, watch(database), raised.append).tick(NOW)
    spend, calls = sorted(raised, key=threshold_of)
    table = NotificationsTable(database)
    engine.insert(*table.insert([calls.sent(to_ms(NOW) + 500)]))  # only one was sent
    restarted = Evaluator(engine, watch(database), ignore)
    restarted.load_raised(NOW)
    (left,) = restarted.pending(NOW)
    assert left.row == spend.row  # the same row, and the same notification byte for byte
    assert left.notification.body() == spend.notification.body()
    assert left.notification.id == spend.notification.id
    engine.insert(*table.insert([left.sent(to_ms(NOW) + 900)]))
    assert restarted.pending(NOW) == []
    listed = engine.execute(table.listing(NAMESPACE, "acme", 10).to_sql())
    assert sorted(row[8] for row in listed) == [to_ms(NOW) + 500, to_ms(NOW) + 900]


def test_credit_looks_ahead_by_the_periods_spend_so_far(storage: tuple[Engine, str]) -> None:
    """Credit is taken when the period is invoiced; the alert compares what will be left
    once the period's charges so far are paid: 27.00 - 2.25 (1500 calls on pro) of 100,
    under 25 % only because of the look-ahead."""
    engine, database = storage
    store_usage(engine, database, {"acme": {"api_calls": 1500}}, at(2), at(2))
    sent: list[Raised] = []

    def credit(customer: Customer, now: datetime) -> tuple[D, D] | None:
        return (D(100), D("27.00")) if customer.id == "acme" else None

    Evaluator(engine, watch(database, credit), sent.append).tick(NOW)
    (low,) = [r for r in sent if threshold_of(r) == "credit-low"]
    assert orjson.loads(low.notification.body())["data"]["observed"] == "24.75"
