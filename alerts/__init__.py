"""Spend control's notifications: usage and spend thresholds evaluated from the live
windows, and their delivery as signed webhooks and on a Kafka topic.

``alerts.webhooks`` signs and verifies payloads (Standard Webhooks), ``alerts.delivery``
sends them with retries and keeps the delivery log; both are independent of where a
notification comes from.
"""
