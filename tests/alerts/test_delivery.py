"""Webhook delivery against a real HTTP receiver (``receiver_kit``), with the delivery log
in ClickHouse on both engines: signatures checked by the receiver's own code, a receiver
answering 500 three times then 200 keeps exactly one delivery after four logged attempts,
a receiver that is down gets the schedule's attempts and a logged failure, a refusal is
not retried, and the log reads back through its paged query."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import orjson
import pytest

from alerts.delivery import ClickHouseDeliveryLog, Outcome, RetrySchedule, WebhookSender
from alerts.endpoints import WebhookEndpoint
from alerts.notifications import Notification, NotificationType
from schemas.storage.deliveries_table import COLUMNS, DeliveriesTable, DeliveryCursor
from schemas.storage.engine import Engine
from schemas.timeutil import now_ms
from tests.alerts.receiver_kit import SECRET, closed_port_url, receiver
from tests.conftest import fresh_database

pytestmark = [pytest.mark.integration, pytest.mark.chdb]
NS = "default"
FAST = RetrySchedule(attempts=5, first_delay_s=0.05, max_delay_s=0.2, timeout_s=10.0)


@pytest.fixture(params=["server", "chdb"])
def engine(request: pytest.FixtureRequest) -> Iterator[tuple[Engine, str]]:
    yield from fresh_database(request, "mlw_")


def notification(suffix: str = "1") -> Notification:
    return Notification(
        f"ntf_test{suffix}",
        NotificationType.THRESHOLD_REACHED,
        1_793_707_200_123,
        {"customer": "acme", "threshold": "spend-100", "spend": Decimal("100.01")},
    )


def logged(eng: Engine, database: str, **filters: object) -> list[dict[str, object]]:
    rows = eng.execute(DeliveriesTable(database).page(NS, **filters).to_sql())  # type: ignore[arg-type]
    return [dict(zip(COLUMNS, row, strict=True)) for row in rows]


def test_500_three_times_then_200_is_one_delivery_after_four_logged_attempts(
    engine: tuple[Engine, str],
) -> None:
    eng, database = engine
    note = notification()
    with receiver([500, 500, 500]) as hook:
        endpoint = WebhookEndpoint("ops", hook.url, SECRET)
        with WebhookSender(NS, ClickHouseDeliveryLog(eng, database), FAST) as sender:
            result = sender.deliver(note, endpoint)
    assert result.delivered
    assert [a.status_code for a in result.attempts] == [500, 500, 500, 200]
    # the receiver's own verification accepted every request; it kept the notification once
    assert hook.bad_signatures == 0
    assert list(hook.accepted) == [note.id]
    assert orjson.loads(hook.accepted[note.id]) == orjson.loads(note.body())
    assert [status for _, _, status in hook.requests] == [500, 500, 500, 200]
    # the idempotency key is the same on every attempt, and every body is the same bytes
    assert {headers["webhook-id"] for headers, _, _ in hook.requests} == {note.id}
    assert {body for _, body, _ in hook.requests} == {note.body()}

    rows = sorted(logged(eng, database, notification_id=note.id), key=lambda r: str(r["attempt"]))
    assert [(r["attempt"], r["status_code"], r["outcome"]) for r in rows] == [
        (1, 500, "retrying"),
        (2, 500, "retrying"),
        (3, 500, "retrying"),
        (4, 200, "delivered"),
    ]
    assert {(r["endpoint_id"], r["url"], r["notification_type"]) for r in rows} == {
        ("ops", hook.url, "alert.threshold_reached")
    }
    assert all(r["error"] == "HTTP 500 Internal Server Error" for r in rows[:3])


def test_a_receiver_that_is_down_gets_every_attempt_and_a_logged_failure(
    engine: tuple[Engine, str],
) -> None:
    eng, database = engine
    note = notification("down")
    endpoint = WebhookEndpoint("gone", closed_port_url(), SECRET)
    waits: list[float] = []
    with WebhookSender(
        NS, ClickHouseDeliveryLog(eng, database), FAST, sleep=waits.append, draw=lambda: 0.0
    ) as sender:
        result = sender.deliver(note, endpoint)
    assert not result.delivered
    assert len(result.attempts) == FAST.attempts == 5
    assert waits == [0.05, 0.1, 0.2, 0.2]  # doubling, capped; none after the last attempt
    rows = logged(eng, database, notification_id=note.id)
    assert sorted((r["attempt"], r["status_code"], r["outcome"]) for r in rows) == [
        (1, 0, "retrying"),
        (2, 0, "retrying"),
        (3, 0, "retrying"),
        (4, 0, "retrying"),
        (5, 0, "failed"),
    ]
    assert all("ConnectError" in str(r["error"]) for r in rows)
    assert [r["attempt"] for r in logged(eng, database, outcome="failed")] == [5]


def test_a_refusal_is_not_retried(engine: tuple[Engine, str]) -> None:
    eng, database = engine
    note = notification("refused")
    with (
        receiver([410]) as hook,
        WebhookSender(NS, ClickHouseDeliveryLog(eng, database), FAST) as sender,
    ):
        result = sender.deliver(note, WebhookEndpoint("old", hook.url, SECRET))
    assert [(a.status_code, a.outcome) for a in result.attempts] == [(410, Outcome.FAILED)]
    assert len(hook.requests) == 1
    assert hook.accepted == {}


def test_a_wrong_secret_is_caught_by_the_receiver(engine: tuple[Engine, str]) -> None:
    eng, database = engine
    other = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWY="
    with (
        receiver() as hook,
        WebhookSender(NS, ClickHouseDeliveryLog(eng, database), FAST) as sender,
    ):
        result = sender.deliver(notification("forged"), WebhookEndpoint("x", hook.url, other))
    assert hook.bad_signatures == 1
    assert [a.status_code for a in result.attempts] == [401]  # refused: not retried


def test_the_log_pages_newest_first_with_filters(engine: tuple[Engine, str]) -> None:
    eng, database = engine
    start = now_ms()  # the receiver refuses signatures more than 5 minutes off its clock
    clock = iter(range(start, start + 100_000, 10))
    with receiver([503, 503]) as hook:
        endpoint = WebhookEndpoint("ops", hook.url, SECRET)
        sender = WebhookSender(
            NS,
            ClickHouseDeliveryLog(eng, database),
            FAST,
            clock_ms=lambda: next(clock),
            sleep=lambda _: None,
        )
        with sender:
            for name in ("a", "b"):
                sender.deliver(notification(name), endpoint)
    everything = logged(eng, database, limit=100)
    assert [(r["notification_id"], r["attempt"]) for r in everything] == [
        ("ntf_testb", 1),
        ("ntf_testa", 3),
        ("ntf_testa", 2),
        ("ntf_testa", 1),
    ]
    pages, after = [], None
    while True:
        page = logged(eng, database, limit=3, after=after)
        pages.append([(r["notification_id"], r["attempt"]) for r in page])
        if len(page) < 3:
            break
        last = page[-1]
        after = DeliveryCursor(
            int(str(last["at_ms"])),
            str(last["notification_id"]),
            str(last["endpoint_id"]),
            int(str(last["attempt"])),
        )
    assert [row for page in pages for row in page] == [
        (r["notification_id"], r["attempt"]) for r in everything
    ]
    assert len(pages) == 2
    assert [r["outcome"] for r in logged(eng, database, outcome="retrying")] == ["retrying"] * 2
    assert logged(eng, database, notification_id="ntf_none") == []
    delivered = logged(eng, database, outcome="delivered", notification_id="ntf_testa")
    assert [r["attempt"] for r in delivered] == [3]
