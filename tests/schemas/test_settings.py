"""The settings read from the environment, and refused with an error that names the field
and the fix."""

from __future__ import annotations

import pydantic
import pytest

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
