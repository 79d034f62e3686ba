"""Fixtures of the API's integration tests: one real pipeline run and one API server
process, shared by every test of this package that asks for them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from api.server import BackgroundApi, start_background
from ingest.admin import ensure_topics, meterline_topics
from schemas.settings import Settings
from tests.api.pipeline import Run, run_pipeline
from tests.conftest import settings_env


@pytest.fixture(scope="package")
def run(stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    yield from run_pipeline(stack, tmp_path_factory.mktemp("api-pipeline"))


@pytest.fixture(scope="package")
def server(run: Run, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackgroundApi]:
    log = tmp_path_factory.mktemp("api-server") / "api.log"
    env = {**settings_env(run.settings), "METERLINE_API_DASHBOARD_REFRESH_S": "2"}
    api = start_background(env=env, log_path=log)
    yield api
    api.stop()


@pytest.fixture(scope="package")
def fuzz_server(run: Run, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackgroundApi]:
    """The API on the same data, but ingesting into a topic no worker reads, so fuzzed
    events cannot change what the other tests assert on."""
    settings = run.settings.model_copy(update={"events_topic": run.settings.events_topic + "-fuzz"})
    ensure_topics(settings.kafka_bootstrap, meterline_topics(settings))
    log = tmp_path_factory.mktemp("api-fuzz") / "api.log"
    api = start_background(env=settings_env(settings), log_path=log)
    yield api
    api.stop()
