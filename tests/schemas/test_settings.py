"""The settings read from the environment, and refused with an error that names the field
and the fix."""

from __future__ import annotations

import argparse

import pydantic
import pytest

from schemas.cli import run_handler
from schemas.settings import Settings


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1", "0.0.0.0", "::", "::1", "fd00::2", "localhost", "worker-0.metrics.svc"],
)
def test_worker_metrics_host_takes_an_address_or_a_host_name(
    host: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("METERLINE_WORKER_METRICS_HOST", host)
    assert Settings().worker_metrics_host == host


def test_worker_metrics_host_defaults_to_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("METERLINE_WORKER_METRICS_HOST", raising=False)
    assert Settings().worker_metrics_host == "127.0.0.1"


@pytest.mark.parametrize(
    "host",
    ["", " ", "0.0.0.0:9108", "http://0.0.0.0", "[::]", "two words", "999.1.1.1", "a..b", "-a"],
)
def test_worker_metrics_host_refuses_anything_else(
    host: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("METERLINE_WORKER_METRICS_HOST", host)
    with pytest.raises(pydantic.ValidationError) as refused:
        Settings()
    (error,) = refused.value.errors()
    assert error["loc"] == ("worker_metrics_host",)
    assert f"{host!r} is not an IP address or a host name" in error["msg"]
    assert "set METERLINE_WORKER_METRICS_HOST to the address to listen on" in error["msg"]


def test_a_broker_list_is_the_bootstrap_of_every_client(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("METERLINE_KAFKA_BROKERS", raising=False)
    monkeypatch.setenv("METERLINE_KAFKA_PORT", "19092")
    assert Settings().kafka_bootstrap == "127.0.0.1:19092"
    monkeypatch.setenv("METERLINE_KAFKA_BROKERS", " 10.0.0.1:9092, kafka-1:9092,[::1]:9092 ")
    assert Settings().kafka_bootstrap == "10.0.0.1:9092,kafka-1:9092,[::1]:9092"


@pytest.mark.parametrize("brokers", ["kafka-1", "kafka-1:", ":9092", "a:9092,b:99999", "a:x"])
def test_a_malformed_broker_list_names_the_setting_and_the_form(
    brokers: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("METERLINE_KAFKA_BROKERS", brokers)
    with pytest.raises(pydantic.ValidationError) as raised:
        Settings()
    [error] = raised.value.errors()
    assert error["loc"] == ("kafka_brokers",)
    assert "is not host:port: set METERLINE_KAFKA_BROKERS" in error["msg"]


def test_min_insync_replicas_above_the_replication_factor_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("METERLINE_TOPIC_REPLICATION_FACTOR", "3")
    monkeypatch.setenv("METERLINE_TOPIC_MIN_INSYNC_REPLICAS", "2")
    settings = Settings()
    assert (settings.topic_replication_factor, settings.topic_min_insync_replicas) == (3, 2)
    monkeypatch.setenv("METERLINE_TOPIC_MIN_INSYNC_REPLICAS", "4")
    with pytest.raises(pydantic.ValidationError, match="at most the replication factor"):
        Settings()


def test_kafka_compression_defaults_to_zstd_and_takes_every_kafka_codec(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("METERLINE_KAFKA_COMPRESSION", raising=False)
    assert Settings().kafka_compression == "zstd"
    for codec in ("none", "gzip", "snappy", "lz4", "zstd"):
        monkeypatch.setenv("METERLINE_KAFKA_COMPRESSION", codec)
        assert Settings().kafka_compression == codec


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("METERLINE_KAFKA_COMPRESSION", "lz5", "'none', 'gzip', 'snappy', 'lz4' or 'zstd'"),
        ("METERLINE_KAFKA_PORT", "ninety", "valid integer"),
    ],
)
def test_a_command_names_the_wrong_variable_and_what_it_takes(
    variable: str,
    value: str,
    says: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Every command line runs through ``run_handler``: a wrong setting is one line
    naming the variable, its value and what it takes, and exit code 2 — no traceback."""
    monkeypatch.setenv(variable, value)
    code = run_handler(argparse.Namespace(handler=lambda _args: Settings()))
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {variable}={value!r}: ")
    assert says in err
    assert "Traceback" not in err


def test_a_wrong_combination_of_settings_is_one_line_too(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("METERLINE_TOPIC_REPLICATION_FACTOR", "1")
    monkeypatch.setenv("METERLINE_TOPIC_MIN_INSYNC_REPLICAS", "2")
    assert run_handler(argparse.Namespace(handler=lambda _args: Settings())) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: settings: topic_min_insync_replicas (2) is above")
    assert "METERLINE_TOPIC_MIN_INSYNC_REPLICAS" in err


def test_other_validation_errors_are_not_taken_for_settings() -> None:
    class Other(pydantic.BaseModel):
        n: int

    with pytest.raises(pydantic.ValidationError):
        run_handler(argparse.Namespace(handler=lambda _args: Other(n="x")))
