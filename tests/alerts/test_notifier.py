"""A notification sent everywhere, on the real Kafka and ClickHouse server: the record on
the notifications topic (key = id, value = the body), the webhook at the receiver, the
attempt in the delivery log; and the delivery log's statements as text."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, TopicPartition

from alerts.notifications import Notification, NotificationType
from alerts.notifier import Notifier
from ingest.admin import ensure_topics, meterline_topics
from schemas.settings import Settings
from schemas.storage.bootstrap import ensure_schema
from schemas.storage.deliveries_table import DeliveriesTable, DeliveryCursor
from schemas.storage.engine import ServerEngine
from schemas.storage.migrations import drop_database
from tests.alerts.receiver_kit import SECRET, receiver
from tests.conftest import wait_until


def test_the_delivery_log_statements_as_text() -> None:
    table = DeliveriesTable("db")
    assert "ENGINE = MergeTree() ORDER BY (namespace, notification_id" in table.ddl()[0].to_sql()
    sql = table.page(
        "ns",
        notification_id="ntf_1",
        outcome="failed",
        after=DeliveryCursor(5, "ntf_1", "ops", 2),
        limit=10,
    ).to_sql()
    assert "WHERE namespace = 'ns' AND notification_id = 'ntf_1' AND outcome = 'failed'" in sql
    assert "(at_ms < 5 OR (at_ms = 5 AND (notification_id < 'ntf_1'" in sql
    assert sql.endswith(
        "ORDER BY at_ms DESC, notification_id DESC, endpoint_id DESC, attempt DESC LIMIT 10"
    )
    assert "notification_id = 'it\\'s'" in table.page("ns", notification_id="it's").to_sql()


@pytest.fixture
def settings(isolated: Settings, tmp_path: Path) -> Iterator[Settings]:
    ensure_topics(isolated.kafka_bootstrap, meterline_topics(isolated))
    engine = ServerEngine.of(isolated)
    ensure_schema(engine, isolated.clickhouse_database)
    yield isolated.model_copy(update={"webhook_first_delay_s": 0.05, "webhook_max_delay_s": 0.2})
    engine.execute(drop_database(isolated.clickhouse_database).to_sql())
    engine.close()


def read_topic(settings: Settings, count: int) -> list[Message]:
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": f"test-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(settings.notifications_topic, 0, OFFSET_BEGINNING)])
    found: list[Message] = []

    def more() -> bool:
        message = consumer.poll(0.5)
        if message is not None and message.error() is None:
            found.append(message)
        return len(found) >= count

    try:
        wait_until(more, 60, f"{count} records on {settings.notifications_topic}", every=0)
    finally:
        consumer.close()
    return found


@pytest.mark.integration
def test_a_notification_goes_to_the_topic_and_every_subscribed_endpoint(
    settings: Settings, tmp_path: Path
) -> None:
    note = Notification(
        "ntf_" + uuid.uuid4().hex,
        NotificationType.INVOICE_ISSUED,
        1_793_707_200_000,
        {"invoice_id": "inv_1", "total": Decimal("42.10"), "currency": "USD"},
    )
    with receiver([503]) as hook, receiver() as alerts_only:
        webhooks = tmp_path / "webhooks.yaml"
        webhooks.write_text(
            "endpoints:\n"
            f"  - {{id: billing, url: '{hook.url}', secret: {SECRET}}}\n"
            f"  - {{id: pager, url: '{alerts_only.url}', secret: {SECRET},"
            " types: [alert.threshold_reached]}\n"
        )
        engine = ServerEngine.of(settings)
        notifier = Notifier.of(settings.model_copy(update={"webhooks_file": str(webhooks)}), engine)
        try:
            report = notifier.notify(note)
        finally:
            notifier.close()
    assert report.failed == ()
    assert [d.endpoint_id for d in report.deliveries] == ["billing"]  # pager takes alerts only
    assert list(hook.accepted) == [note.id]
    assert alerts_only.requests == []

    (record,) = read_topic(settings, 1)
    assert record.key() == note.id.encode()
    assert record.value() == note.body()
    assert dict(record.headers() or []) == {"type": b"invoice.issued"}

    table = DeliveriesTable(settings.clickhouse_database)
    rows = engine.execute(table.page(settings.namespace, notification_id=note.id).to_sql())
    engine.close()
    assert sorted((row[5], row[6], row[8]) for row in rows) == [
        (1, 503, "retrying"),
        (2, 200, "delivered"),
    ]
