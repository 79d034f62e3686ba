"""Prometheus metrics of the stream worker (names follow Prometheus conventions)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from schemas.metering.contributions import DeadLetterReason

EVENTS = Counter(
    "meterline_stream_events_total",
    "Events read from the events topic, by outcome "
    "(new, replay, duplicate, conflict, dead_letter).",
    ["outcome"],
)
DEAD_LETTERS = Counter(
    "meterline_stream_dead_letters_total", "Events sent to the dead-letter topic.", ["reason"]
)
for _reason in DeadLetterReason:  # at 0 from the start: increase() then sees the first one
    DEAD_LETTERS.labels(_reason.value)
WINDOW_ROWS = Counter(
    "meterline_stream_window_rows_total",
    "Window contributions by fate (written, skipped_already_stored).",
    ["fate"],
)
BATCHES = Counter("meterline_stream_batches_total", "Batches flushed to ClickHouse.")
STEP_SECONDS = Counter(
    "meterline_stream_step_seconds_total",
    "Seconds the worker's event loop spent metering batches, by step: plan (decode, "
    "dedupe, fold a chunk), write_wait (waiting for the previous chunk's ClickHouse "
    "write), finish (record a written chunk's keys, send its dead letters).  Their rates "
    "say whether a worker that falls behind is bound by its own work or by ClickHouse.",
    ["step"],
)
STEP_PLAN, STEP_WRITE_WAIT, STEP_FINISH = (
    STEP_SECONDS.labels(step) for step in ("plan", "write_wait", "finish")
)  # each at 0 from the start
FLUSH_SECONDS = Histogram(
    "meterline_clickhouse_flush_seconds",
    "Time to write one batch (raw events and windows) to ClickHouse.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
FLUSH_RETRIES = Counter(
    "meterline_clickhouse_flush_retries_total", "ClickHouse writes retried after an error."
)
LAST_OFFSET = Gauge(
    "meterline_stream_stored_offset",
    "Highest events-topic offset whose windows are stored, per partition.",
    ["partition"],
)
LATE = Counter(
    "meterline_stream_late_events_total",
    "Events that arrived after their window's end plus the grace; still counted, marked late.",
)
DEDUPE_EXPIRED = Counter(
    "meterline_stream_dedupe_expired_total", "Dedupe records purged beyond the horizon."
)
DEDUPE_KEYS = Gauge(
    "meterline_stream_dedupe_keys",
    "Dedupe keys retained in the worker's store on disk (RocksDB's estimate).",
)
DEDUPE_SST_BYTES = Gauge(
    "meterline_stream_dedupe_sst_bytes",
    "Bytes of the dedupe store's table files on the worker's disk.",
)
DEDUPE_MEMORY_BYTES = Gauge(
    "meterline_stream_dedupe_memory_bytes",
    "Bytes the dedupe store holds in memory, by part: block_cache (data blocks and the "
    "memtables charged to it, bounded), memtables (inside block_cache), table_readers "
    "(the open table files' bloom filters and indexes, growing with the keys on disk), "
    "key_filter (the index's own Bloom filter).",
    ["part"],
)
DEDUPE_PENDING_COMPACTION_BYTES = Gauge(
    "meterline_stream_dedupe_pending_compaction_bytes",
    "Bytes the dedupe store's compaction still has to rewrite (RocksDB's estimate); "
    "steady growth means compaction falls behind the writes.",
)
