"""The evaluator service's sender thread: in order, once per id while unsent, and again
after a failure the service survives."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest

from alerts import service
from alerts.evaluator import Raised
from alerts.notifications import Notification, NotificationType
from alerts.service import Sender
from schemas.errors import DeliveryFailed
from schemas.storage.notifications_table import NotificationRow
from tests.conftest import wait_until

NOW_MS = int(datetime(2026, 11, 20, tzinfo=UTC).timestamp() * 1000)


def raised(id_: str) -> Raised:
    notification = Notification(id_, NotificationType.THRESHOLD_REACHED, NOW_MS, {"n": 1})
    row = NotificationRow("ns", id_, notification.type.value, "acme", "main", "t", 0, NOW_MS,
                          notification.body().decode())  # fmt: skip
    return Raised(notification, row)


def test_an_id_queued_or_being_sent_is_not_queued_again() -> None:
    release, calls = threading.Event(), []

    def notify(item: Raised) -> None:
        calls.append(item.row.id)
        release.wait(10)

    sender = Sender(notify)
    sender.put(raised("ntf_a"))
    wait_until(lambda: calls == ["ntf_a"], 10, "the first send started")
    sender.put(raised("ntf_a"))  # being sent: a new term found it pending
    sender.put(raised("ntf_b"))
    sender.put(raised("ntf_b"))  # queued
    release.set()
    wait_until(lambda: calls == ["ntf_a", "ntf_b"], 10, "both sent")
    sender.put(raised("ntf_a"))  # sent, then raised again (not by the evaluator): sent
    sender.close()
    assert calls == ["ntf_a", "ntf_b", "ntf_a"]


def test_a_failed_send_is_tried_again_with_the_same_notification(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(service, "RESEND_PAUSE_S", 0.01)
    seen: list[bytes] = []

    def notify(item: Raised) -> None:
        seen.append(item.notification.body())
        if len(seen) < 3:
            raise DeliveryFailed("Kafka away")

    sender = Sender(notify)
    sender.put(raised("ntf_c"))
    wait_until(lambda: len(seen) == 3, 10, "sent on the third try")
    sender.close()
    assert len(set(seen)) == 1


def test_an_error_the_sender_does_not_retry_ends_it_visibly() -> None:
    """A bug in sending must not leave the service raising alerts nobody sends: the
    thread ends, ``alive`` says so, and the service exits (its notifications stay
    recorded unsent, for the next leader's ``pending``)."""

    def notify(item: Raised) -> None:
        raise RuntimeError("a bug, not a service away")

    sender = Sender(notify)
    assert sender.alive()
    sender.put(raised("ntf_d"))
    wait_until(lambda: not sender.alive(), 10, "the sender to stop")
