"""Live telemetry for the demo: a few events a second for the demo's subjects, stamped
now, so the dashboard's current period moves while you watch.

Runs until SIGTERM (``make down``).  Every event is new (a run id in its id), one in ten
is sent twice (a retry the worker must drop), and each second's events go through the
producer SDK and are flushed before the next second.  ``METERLINE_LIVE_EVENTS_PER_SECOND``
sets the rate (default 20).
"""

from __future__ import annotations

import os
import signal
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ingest import UsageProducer
from ingest.telemetry import generate
from schemas.settings import Settings

SUBJECTS = ["acme", "globex", "initech", "umbrella-eu", "umbrella-us"]


def main() -> int:
    settings = Settings()
    rate = int(os.environ.get("METERLINE_LIVE_EVENTS_PER_SECOND") or 20)
    per_subject = max(rate // len(SUBJECTS), 1)
    run = uuid.uuid4().hex[:8]
    stop = False

    def request_stop(_signum: int, _frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    sent = tick = 0
    print(f"live telemetry: {per_subject * len(SUBJECTS)} events/s, run {run}", flush=True)
    with UsageProducer(
        settings.kafka_bootstrap, settings.events_topic, compression=settings.kafka_compression
    ) as producer:
        while not stop:
            started = time.monotonic()
            now = datetime.now(UTC)
            batch = generate(
                SUBJECTS,
                now - timedelta(seconds=1),
                timedelta(seconds=1),
                per_subject,
                seed=tick,
                id_prefix=f"live-{run}-{tick}-",
            )
            producer.send_many(batch.events)
            producer.flush()
            sent += len(batch.events)
            tick += 1
            if tick % 60 == 0:
                print(f"{now:%Y-%m-%dT%H:%M:%SZ} sent {sent} events", flush=True)
            time.sleep(max(0.0, 1.0 - (time.monotonic() - started)))
    print(f"stopped after {sent} events", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
