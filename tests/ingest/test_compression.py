"""Compressed record batches: what the producers ask for is what the broker stores, the
worker reads every codec (records of several codecs in one topic are metered exactly) and
compresses its own writes the same way."""

from __future__ import annotations

import sys
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from aiokafka import codec
from confluent_kafka.admin import AdminClient

from ingest.admin import TopicSpec, ensure_topics
from ingest.config import events_producer_config
from ingest.producer import UsageProducer
from ingest.telemetry import generate
from schemas.errors import MeterlineError
from schemas.settings import Settings
from schemas.wire import COMPRESSION_CODECS, Compression
from streams.cli import require_codecs
from tests.conftest import WorkerProcess
from tests.e2e.pipeline_kit import OCTOBER, SUBJECTS, prepare, stored_totals, wait_caught_up

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "deploy"))
import stack_base  # deploy/ is a directory of scripts, not a package
import stack_kafka


def test_producers_compress_with_zstd_unless_told_otherwise() -> None:
    assert events_producer_config("b:9092", 5, 1000)["compression.type"] == "zstd"
    config = events_producer_config("b:9092", 5, 1000, compression="lz4")
    assert config["compression.type"] == "lz4"


def test_an_unknown_codec_names_the_setting_and_the_codecs() -> None:
    with pytest.raises(ValueError, match="METERLINE_KAFKA_COMPRESSION") as caught:
        events_producer_config("b:9092", 5, 1000, compression="lz5")
    assert "'lz5' is not a Kafka codec: use one of none, gzip, snappy, lz4, zstd" in str(
        caught.value
    )


def test_a_worker_without_the_codecs_refuses_to_start(monkeypatch: pytest.MonkeyPatch) -> None:
    require_codecs()  # installed with Meterline: nothing to refuse
    monkeypatch.setattr(codec, "has_lz4", lambda: False)
    monkeypatch.setattr(codec, "has_zstd", lambda: False)
    with pytest.raises(MeterlineError, match="cannot read lz4, zstd-compressed records") as e:
        require_codecs()
    assert "cramjam" in str(e.value)


@pytest.mark.integration
def test_the_broker_stores_each_batch_as_its_producer_compressed_it(isolated: Settings) -> None:
    telemetry = generate(SUBJECTS, OCTOBER, timedelta(days=31), 200, seed=5)
    node = stack_kafka.single_node(stack_base.Settings.from_env())
    sizes: dict[str, int] = {}
    topics = [f"{isolated.events_topic}.{name}" for name in COMPRESSION_CODECS]
    ensure_topics(isolated.kafka_bootstrap, [TopicSpec(topic, 2) for topic in topics])
    try:
        for name, topic in zip(COMPRESSION_CODECS, topics, strict=True):
            with UsageProducer(isolated.kafka_bootstrap, topic, compression=name) as producer:
                producer.send_many(telemetry.events)
            assert producer.report.delivered == len(telemetry.events)
            batches = stack_kafka.stored_batches(node, topic)
            assert batches, f"no batch of {topic} under {node.data}"
            assert Counter(codec_ for codec_, _ in batches) == {name: len(batches)}
            sizes[name] = sum(size for _, size in batches)
    finally:
        admin = AdminClient({"bootstrap.servers": isolated.kafka_bootstrap})
        for future in admin.delete_topics(topics, request_timeout=30).values():
            future.result(30)
    # packed JSON telemetry is repetitive: every codec stores well under half the bytes
    for name in ("gzip", "snappy", "lz4", "zstd"):
        assert sizes[name] < sizes["none"] / 2, sizes


@pytest.mark.integration
@pytest.mark.e2e
def test_records_of_every_codec_in_one_topic_are_metered_exactly(
    isolated: Settings, workers: WorkerProcess
) -> None:
    """Producers may change codec at any time (``METERLINE_KAFKA_COMPRESSION``): one
    topic then holds batches of several codecs, duplicates across them included."""
    engine = prepare(isolated)
    telemetry = generate(SUBJECTS, OCTOBER, timedelta(days=31), 300, seed=13)
    assert telemetry.duplicates > 0
    codecs: list[Compression] = ["none", "gzip", "snappy", "lz4", "zstd"]
    # each slice keeps the events' order; a subject's events span several codecs
    size = -(-len(telemetry.events) // len(codecs))
    for n, name in enumerate(codecs):
        part = telemetry.events[n * size : (n + 1) * size]
        with UsageProducer(
            isolated.kafka_bootstrap, isolated.events_topic, compression=name
        ) as producer:
            producer.send_many(part)
        assert producer.report.delivered == len(part)
        assert not producer.report.failed
    node = stack_kafka.single_node(stack_base.Settings.from_env())
    stored = {c for c, _ in stack_kafka.stored_batches(node, isolated.events_topic)}
    assert stored == set(codecs)
    workers.start()
    wait_caught_up(isolated, workers)
    assert stored_totals(engine, isolated) == telemetry.truth
    # the worker's own writes (a chunk's dedupe keys per changelog record) are compressed
    # with the same setting
    changelog = stack_kafka.stored_batches(node, f"{isolated.worker_app_id}-dedupe-changelog")
    assert changelog
    assert {c for c, _ in changelog} == {isolated.kafka_compression} == {"zstd"}
