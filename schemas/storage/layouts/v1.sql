-- The layout of the last Meterline build before schema migrations (commit 16e5b7b),
-- frozen: schema version 1.  Written once from that build's DDL; never edited.

CREATE DATABASE IF NOT EXISTS `{database}`;

CREATE TABLE IF NOT EXISTS {database}.usage_events ( namespace String, source String, id String, type String, subject String, time_ms Int64, data String, ingested_ms Int64, source_partition UInt32, source_offset UInt64, source_index UInt32, content_hash String, late UInt8, event_time DateTime MATERIALIZED toDateTime(intDiv(time_ms, 1000))) ENGINE = ReplacingMergeTree() PARTITION BY toYYYYMM(event_time) ORDER BY (namespace, type, subject, time_ms, source, id);

CREATE TABLE IF NOT EXISTS {database}.meter_window_feed ( namespace String, meter String, subject String, group_key String, window_start_s UInt32, ingest_minute_s UInt32, value Decimal(38, 9), uniq String, event_ms Int64, source_partition UInt32, source_offset UInt64, source_index UInt32) ENGINE = Null;

CREATE TABLE IF NOT EXISTS {database}.meter_windows ( namespace String, meter String, subject String, group_key String, window_start DateTime, ingest_minute DateTime, source_partition UInt32, value_sum AggregateFunction(sum, Decimal(38, 9)), event_count AggregateFunction(count), value_uniq AggregateFunction(uniqExact, String), value_max AggregateFunction(max, Decimal(38, 9)), value_min AggregateFunction(min, Decimal(38, 9)), value_latest AggregateFunction(argMax, Decimal(38, 9), Tuple(Int64, UInt64, UInt32)), max_offset AggregateFunction(max, UInt64)) ENGINE = AggregatingMergeTree() ORDER BY (namespace, meter, window_start, subject, group_key, ingest_minute, source_partition);

CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.meter_windows_mv TO {database}.meter_windows AS SELECT namespace, meter, subject, group_key, toDateTime(window_start_s) AS window_start, toDateTime(ingest_minute_s) AS ingest_minute, source_partition, sumState(value) AS value_sum, countState() AS event_count, uniqExactState(uniq) AS value_uniq, maxState(value) AS value_max, minState(value) AS value_min, argMaxState(value, (event_ms, source_offset, source_index)) AS value_latest, maxState(source_offset) AS max_offset FROM {database}.meter_window_feed GROUP BY namespace, meter, window_start, subject, group_key, ingest_minute, source_partition;

CREATE TABLE IF NOT EXISTS {database}.invoices ( namespace String, invoice_id String, customer_id String, plan String, currency String, period_start_s UInt32, period_end_s UInt32, total Decimal(38, 9), line_count UInt32, created_ms Int64, document String) ENGINE = ReplacingMergeTree() ORDER BY (namespace, invoice_id);

CREATE TABLE IF NOT EXISTS {database}.invoice_lines ( namespace String, invoice_id String, line_no UInt32, meter String, model String, quantity Decimal(38, 9), amount Decimal(38, 9), unrounded_amount String) ENGINE = ReplacingMergeTree() ORDER BY (namespace, invoice_id, line_no);

CREATE TABLE IF NOT EXISTS {database}.invoice_drafts ( namespace String, invoice_id String, customer_id String, subscription_id String, period_start_s UInt32, period_end_s UInt32, revision UInt32, cutoff_s UInt32, covers Array(UInt32), total Decimal(38, 9), created_ms Int64, document String) ENGINE = ReplacingMergeTree() ORDER BY (namespace, invoice_id);

CREATE TABLE IF NOT EXISTS {database}.invoice_status ( namespace String, invoice_id String, status_rank UInt8, status String, reason String, at_ms Int64) ENGINE = MergeTree() ORDER BY (namespace, invoice_id, status_rank);
