"""A tiny Faust app that test_faust_on_broker.py runs as a worker subprocess.

It counts events per key in a Table (memory store, so after a restart the only way to
get the counts back is to restore them from the changelog topic) and, for every event,
publishes ``{"key", "count", "partition", "worker"}`` to a results topic that the test
reads. Run as ``python faust_app.py worker``; all names come from the environment so
every test run uses its own app id and topics.
"""

from __future__ import annotations

import os
from typing import Any

import faust

APP_ID = os.environ["FAUST_TEST_APP_ID"]
SOURCE_TOPIC = os.environ["FAUST_TEST_SOURCE_TOPIC"]
RESULT_TOPIC = os.environ["FAUST_TEST_RESULT_TOPIC"]
PARTITIONS = int(os.environ["FAUST_TEST_PARTITIONS"])

app = faust.App(
    APP_ID,
    broker=f"kafka://{os.environ['FAUST_TEST_BOOTSTRAP']}",
    store="memory://",
    processing_guarantee=os.environ["FAUST_TEST_GUARANTEE"],
    topic_partitions=PARTITIONS,
    topic_replication_factor=1,
    web_enabled=False,
    broker_commit_every=1,
)

source = app.topic(
    SOURCE_TOPIC, key_serializer="raw", value_serializer="raw", partitions=PARTITIONS
)
results = app.topic(RESULT_TOPIC, key_serializer="raw", value_serializer="json")
# Assign, never mutate in place: only assignment writes to the changelog.
counts = app.Table("counts", default=int, partitions=PARTITIONS)


async def count_events(stream: faust.StreamT[Any]) -> None:
    """Count each event under its key and publish the new count."""
    async for event in stream.events():
        key = event.key.decode()
        counts[key] = counts[key] + 1
        await results.send(
            key=event.key,
            value={
                "key": key,
                "count": counts[key],
                "partition": event.message.partition,
                "worker": os.getpid(),
            },
        )


app.agent(source)(count_events)

if __name__ == "__main__":
    app.main()
