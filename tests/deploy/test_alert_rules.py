"""The operators' alerting rules (``deploy/helm/meterline/files/alerts.yaml``).

promtool (``make tools``) checks the file and evaluates every alert over series written
here: each fires on the series that should fire it, with the labels and text an operator
reads, only after its ``for``, and stays quiet on the healthy neighbours.  Every series the
rules read is one Meterline exports, and every alert has a case that fires it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.deploy.manifests_kit import CHART, run, tool

RULES = CHART / "files" / "alerts.yaml"
ROOT = CHART.parents[2]


def rules() -> dict[str, dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {rule["alert"]: rule for group in groups for rule in group["rules"]}


@dataclass
class Fires:
    """An alert expected at an evaluation: its own labels and its summary as rendered."""

    labels: dict[str, str]
    summary: str


@dataclass
class Case:
    """Input series (promtool's expanding notation, one sample a minute) and, per
    ``(alert, eval time)``, the alerts expected firing then (none: quiet)."""

    name: str
    series: dict[str, str]
    checks: list[tuple[str, str, list[Fires]]] = field(default_factory=list)


CASES = [
    Case(
        "one worker unready for 10 minutes, another for 3",
        {
            'meterline_worker_ready{instance="w0"}': "1 1 0x10",
            'meterline_worker_ready{instance="w1"}': "1 0 0 0 1x9",
        },
        [
            ("MeterlineWorkerNotReady", "6m", []),  # unready for 4 minutes: pending
            (
                "MeterlineWorkerNotReady",
                "8m",
                [Fires({"instance": "w0"}, "Metering worker w0 not ready for 5 minutes")],
            ),
            ("MeterlineWorkerMissing", "8m", []),
        ],
    ),
    Case(
        "no worker reports",
        {'meterline_stream_events_total{outcome="new"}': "0x10"},
        [
            ("MeterlineWorkerMissing", "4m", []),
            (
                "MeterlineWorkerMissing",
                "6m",
                [Fires({}, "No metering worker reports to Prometheus")],
            ),
        ],
    ),
    Case(
        "a child replaced three times by the watchdog, once after an exit",
        {
            'meterline_worker_restarts_total{instance="w0",reason="stalled"}': "0 1 2 3 3x30",
            'meterline_worker_restarts_total{instance="w0",reason="exited"}': "0 1 1x32",
        },
        [
            (
                "MeterlineWorkerRestarting",
                "5m",
                [
                    Fires(
                        {"instance": "w0", "reason": "stalled"},
                        "Metering worker w0 restarted more than twice in 15 minutes (stalled)",
                    )
                ],
            ),
            ("MeterlineWorkerRestarting", "30m", []),  # the restarts are 27 minutes old
        ],
    ),
    Case(
        "a worker behind and not committing; another committing now and then",
        {
            'meterline_worker_seconds_without_progress{instance="w0"}': "0+60x8",
            'meterline_worker_seconds_without_progress{instance="w1"}': "0 60 0 60 0 60 0 60 0",
        },
        [
            ("MeterlineWorkerStalled", "5m", []),  # above 180 s since 4m: pending
            (
                "MeterlineWorkerStalled",
                "7m",
                [
                    Fires(
                        {"instance": "w0"},
                        "Metering worker w0 behind and not committing for 7m 0s",
                    )
                ],
            ),
        ],
    ),
    Case(
        "lag growing by 1,000 records a minute; a worker whose lag is unknown",
        {
            'meterline_worker_lag_records{instance="w0"}': "0+1000x40",
            'meterline_worker_lag_records{instance="w1"}': "-1x40",
        },
        [
            ("MeterlineMeteringBehind", "25m", []),  # above 10,000 since 11m: pending
            (
                "MeterlineMeteringBehind",
                "27m",
                [Fires({}, "Metering lag above 10,000 records and growing for 15 minutes")],
            ),
        ],
    ),
    Case(
        "one supervisor cannot read offsets for 12 minutes, another for 5 at its start",
        {
            'meterline_worker_lag_records{instance="w0"}': "0 0 -1x12 0",
            'meterline_worker_lag_records{instance="w1"}': "-1x5 0x9",
        },
        [
            ("MeterlineWorkerLagUnknown", "11m", []),  # unknown since 2m: pending
            (
                "MeterlineWorkerLagUnknown",
                "13m",
                [
                    Fires(
                        {"instance": "w0"},
                        "Supervisor of w0 cannot read its group's offsets from Kafka"
                        " for 10 minutes",
                    )
                ],
            ),
            ("MeterlineWorkerLagUnknown", "15m", []),  # read again at 15m
        ],
    ),
    Case(
        "lag high but steady",
        {'meterline_worker_lag_records{instance="w0"}': "20000x40"},
        [("MeterlineMeteringBehind", "30m", [])],
    ),
    Case(
        "one worker's ClickHouse writes retried every minute, another's retried long ago",
        {
            'meterline_clickhouse_flush_retries_total{instance="w0"}': "0+1x20",
            'meterline_clickhouse_flush_retries_total{instance="w1"}': "5x20",
        },
        [
            ("MeterlineClickHouseWritesFailing", "4m", []),
            (
                "MeterlineClickHouseWritesFailing",
                "8m",
                [
                    Fires(
                        {"instance": "w0"},
                        "Metering worker w0 keeps retrying ClickHouse writes",
                    )
                ],
            ),
        ],
    ),
    Case(
        "one event dead-lettered at 3m",
        {
            'meterline_stream_dead_letters_total{instance="w0",reason="value_not_numeric"}': (
                "0 0 0 1 1x20"
            )
        },
        [
            (
                "MeterlineDeadLetters",
                "5m",
                [
                    Fires(
                        {"instance": "w0", "reason": "value_not_numeric"},
                        "Events dead-lettered in the last 15 minutes (value_not_numeric)",
                    )
                ],
            ),
            ("MeterlineDeadLetters", "20m", []),
        ],
    ),
    Case(
        "3 GB of compaction pending on one worker, 1 GB on another",
        {
            'meterline_stream_dedupe_pending_compaction_bytes{instance="w0"}': "3000000000x40",
            'meterline_stream_dedupe_pending_compaction_bytes{instance="w1"}': "1000000000x40",
        },
        [
            ("MeterlineDedupeCompactionBehind", "29m", []),
            (
                "MeterlineDedupeCompactionBehind",
                "31m",
                [
                    Fires(
                        {"instance": "w0"},
                        "Dedupe store compaction on w0 is 2.794GiB behind",
                    )
                ],
            ),
        ],
    ),
    Case(
        "a supervisor whose child does not answer its scrapes",
        {
            'meterline_worker_child_metrics_up{instance="w0"}': "1 0x15",
            'meterline_worker_child_metrics_up{instance="w1"}': "1x15",
        },
        [
            ("MeterlineWorkerSeriesMissing", "10m", []),
            (
                "MeterlineWorkerSeriesMissing",
                "12m",
                [
                    Fires(
                        {"instance": "w0"},
                        "Metering worker w0 scrapes lack its child's series for 10 minutes",
                    )
                ],
            ),
        ],
    ),
    Case(
        "ingest refusing events while Kafka is unavailable",
        {
            'meterline_ingest_events_rejected_total{reason="kafka_unavailable"}': "0+10x20",
            'meterline_ingest_events_rejected_total{reason="invalid"}': "0+100x20",
        },
        [
            (
                "MeterlineIngestRefusing",
                "8m",
                [Fires({}, "The ingest API refuses events for its own reasons")],
            )
        ],
    ),
    Case(
        "a producer whose events are 10 % malformed",
        {
            "meterline_ingest_events_received_total": "0+1000x30",
            'meterline_ingest_events_rejected_total{reason="invalid"}': "0+100x30",
            'meterline_ingest_events_rejected_total{reason="shed"}': "0x30",
        },
        [
            ("MeterlineIngestRefusing", "20m", []),  # the client's fault, not the API's
            (
                "MeterlineIngestInvalidEvents",
                "15m",
                [Fires({}, "More than 5 % of the events posted are refused as malformed")],
            ),
        ],
    ),
    Case(
        "1 % of the events malformed",
        {
            "meterline_ingest_events_received_total": "0+1000x30",
            'meterline_ingest_events_rejected_total{reason="invalid"}': "0+10x30",
        },
        [("MeterlineIngestInvalidEvents", "20m", [])],
    ),
    Case(
        "every ingest batch acknowledged in 1 to 2.5 seconds",
        {
            'meterline_ingest_delivery_seconds_bucket{le="0.5"}': "0x20",
            'meterline_ingest_delivery_seconds_bucket{le="1"}': "0x20",
            'meterline_ingest_delivery_seconds_bucket{le="2.5"}': "0+10x20",
            'meterline_ingest_delivery_seconds_bucket{le="+Inf"}': "0+10x20",
        },
        [
            (
                "MeterlineIngestSlowDelivery",
                "15m",
                [Fires({}, "Kafka takes over a second to acknowledge 1 % of the ingest batches")],
            )
        ],
    ),
    Case(
        "every ingest batch acknowledged within half a second",
        {
            'meterline_ingest_delivery_seconds_bucket{le="0.5"}': "0+10x20",
            'meterline_ingest_delivery_seconds_bucket{le="1"}': "0+10x20",
            'meterline_ingest_delivery_seconds_bucket{le="2.5"}': "0+10x20",
            'meterline_ingest_delivery_seconds_bucket{le="+Inf"}': "0+10x20",
        },
        [("MeterlineIngestSlowDelivery", "15m", [])],
    ),
    Case(
        "5 % of the API's requests answered 503",
        {
            'meterline_api_requests_total{route="/api/v1/events",method="POST",status="204"}': (
                "0+1000x30"
            ),
            'meterline_api_requests_total{route="/api/v1/events",method="POST",status="503"}': (
                "0+50x30"
            ),
        },
        [
            (
                "MeterlineApiErrors",
                "15m",
                [Fires({}, "More than 1 % of API requests fail with a server error")],
            )
        ],
    ),
    Case(
        "0.1 % of the API's requests answered 500",
        {
            'meterline_api_requests_total{route="/api/v1/meters",method="GET",status="200"}': (
                "0+1000x30"
            ),
            'meterline_api_requests_total{route="/api/v1/meters",method="GET",status="500"}': (
                "0+1x30"
            ),
        },
        [("MeterlineApiErrors", "15m", [])],
    ),
]


def description(rule: dict[str, Any], labels: dict[str, str]) -> str:
    """A rule's description as Prometheus renders it for ``labels`` (the descriptions use
    ``{{ $labels.<name> }}`` only)."""
    text: str = rule["annotations"]["description"]
    return re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels[m.group(1)], text)


def unit_tests() -> dict[str, Any]:
    """The cases as a promtool unit-test file."""
    by_name = rules()
    tests = []
    for case in CASES:
        checks = []
        for alert, at, fired in case.checks:
            rule = by_name[alert]
            expected = [
                {
                    "exp_labels": {**rule["labels"], **f.labels},
                    "exp_annotations": {
                        "summary": f.summary,
                        "description": description(rule, f.labels),
                    },
                }
                for f in fired
            ]
            checks.append({"eval_time": at, "alertname": alert, "exp_alerts": expected})
        tests.append(
            {
                "name": case.name,
                "interval": "1m",
                "input_series": [{"series": s, "values": v} for s, v in case.series.items()],
                "alert_rule_test": checks,
            }
        )
    return {"rule_files": [str(RULES)], "evaluation_interval": "1m", "tests": tests}


def test_promtool_accepts_the_rules() -> None:
    done = run([tool("promtool"), "check", "rules", str(RULES)])
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(rules())} rules found" in done.stdout


def test_each_alert_fires_on_its_series_and_only_there(tmp_path: Path) -> None:
    spec = tmp_path / "alert_rules_test.yaml"
    spec.write_text(yaml.safe_dump(unit_tests(), sort_keys=False))
    done = run([tool("promtool"), "test", "rules", str(spec)])
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_a_wrong_expectation_fails_promtool(tmp_path: Path) -> None:
    """The unit tests can fail: a worker unready for 10 minutes expected quiet."""
    spec = unit_tests()
    spec["tests"] = spec["tests"][:1]
    spec["tests"][0]["alert_rule_test"][1]["exp_alerts"] = []
    path = tmp_path / "wrong.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    done = run([tool("promtool"), "test", "rules", str(path)])
    assert done.returncode != 0
    assert "MeterlineWorkerNotReady" in done.stdout + done.stderr


def test_every_alert_has_a_case_that_fires_it() -> None:
    fired = {alert for case in CASES for alert, _, expected in case.checks if expected}
    assert fired == set(rules())


def exported_metrics() -> set[str]:
    """Every metric name Meterline's code registers (its names are string literals)."""
    names: set[str] = set()
    for package in ("api", "streams", "ingest", "alerts", "invoicing"):
        for path in (ROOT / package).rglob("*.py"):
            names |= set(re.findall(r'"(meterline_[a-z0-9_]+)"', path.read_text()))
    return names


def test_every_series_the_rules_read_is_exported() -> None:
    exported = exported_metrics()
    assert "meterline_worker_ready" in exported  # the scan finds the supervisor's series
    read = set()
    for rule in rules().values():
        read |= set(re.findall(r"\bmeterline_[a-z0-9_]+", rule["expr"]))
    histogram_parts = re.compile(r"_(bucket|sum|count)$")
    unknown = {name for name in read if histogram_parts.sub("", name) not in exported}
    assert not unknown, f"the rules read series nothing exports: {sorted(unknown)}"
