"""The Faust floor: records/s a no-op Faust agent receives from a filled topic.

Run as its own process (a Faust app owns its event loop and exits when done):
``python bench/faust_floor.py BOOTSTRAP TOPIC PARTITIONS RECORDS APP_ID DATADIR``.
It prints one JSON line, ``{"records": n, "seconds": s, "records_per_second": r}``,
timed from the first batch the agent receives to the last (group join and the first
batch excluded).
The agent takes batches with ``take_events`` exactly like the metering worker but does
nothing with them, so the figure is the ceiling Faust itself puts on a worker that pays
per record.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

import faust


def main(
    bootstrap: str, topic: str, partitions: int, records: int, app_id: str, datadir: str
) -> None:
    app = faust.App(
        app_id,
        broker=f"kafka://{bootstrap}",
        store="memory://",
        datadir=datadir,
        key_serializer="raw",
        value_serializer="raw",
        consumer_auto_offset_reset="earliest",
        topic_partitions=partitions,
        web_enabled=False,
    )
    source = app.topic(topic, partitions=partitions, internal=False)
    seen = {"n": 0, "start": 0.0}

    async def agent(stream: Any) -> None:
        async for events in stream.take_events(5000, within=0.5):
            if not seen["n"]:
                seen["start"] = time.perf_counter()
            seen["n"] += len(events)
            if seen["n"] >= records:
                elapsed = time.perf_counter() - seen["start"]
                line = {
                    "records": seen["n"],
                    "seconds": elapsed,
                    "records_per_second": seen["n"] / elapsed,
                }
                # Faust redirects sys.stdout to its logger: write to the descriptor.
                os.write(1, (json.dumps(line) + "\n").encode())
                os._exit(0)  # the measurement is done; skip Faust's orderly shutdown

    app.agent(source, name="floor")(agent)
    sys.argv = [sys.argv[0], "worker", "--without-web", "-l", "warn"]
    app.main()


if __name__ == "__main__":
    boot, name, parts, count, app_name, data = sys.argv[1:7]
    main(boot, name, int(parts), int(count), app_name, data)
