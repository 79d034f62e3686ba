"""The deploy files, checked without a Docker engine or a Kubernetes cluster: the Helm
chart passes ``helm lint`` and ``kubeconform -strict`` on local schemas (the ServiceMonitor
included), deploy/compose.yaml passes ``docker-compose config``, and what they say
matches the code: every METERLINE_* name they set is a setting, the probes and the
ServiceMonitors reach the health and metrics endpoints the services really serve (the
worker and the API are started with the rendered environment and sent the rendered
probes, the worker's on this machine's own address as to a pod's), the worker replicas
follow the events topic's partitions, and the catalog ConfigMap holds the demo files
byte for byte.

The tools come from `make tools`; a missing one fails the test (never a skip)."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from api.app import create_app
from schemas.settings import Settings
from tests.addresses import own_address
from tests.api.doubles import FakeDelivery, FakeEngine, SyncClient
from tests.conftest import ROOT, wait_until
from tests.deploy.manifests_kit import (
    CHART,
    COMPOSE,
    by_kind,
    compose_config,
    container,
    env_of,
    helm_template,
    kube_versions,
    kubeconform,
    named,
    pod_spec,
    render,
    run,
    tool,
    workloads,
)
from tests.processes import stop_process_group

VALUES = yaml.safe_load((CHART / "values.yaml").read_text())
DEMO = ROOT / "deploy" / "demo"
CATALOG_FILES = {"meters.yaml", "rate-card.yaml", "customers.yaml"}
SETTING_NAMES = {f"METERLINE_{name.upper()}" for name in Settings.model_fields}
#: Every template switched on: the ServiceMonitors, the alerting rules and the API's auth
#: Secret.
FULL = (
    "serviceMonitor.enabled=true",
    "prometheusRule.enabled=true",
    "grafanaDashboard.enabled=true",
    "api.authSecret=meterline-auth",
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- the tools' verdicts ---------------------------------------------------------------


@pytest.mark.parametrize("sets", [(), FULL], ids=["defaults", "full"])
def test_helm_lint_is_clean(sets: tuple[str, ...]) -> None:
    for version in kube_versions():
        args = [tool("helm"), "lint", "--strict", str(CHART), "--kube-version", version]
        for assignment in sets:
            args += ["--set", assignment]
        done = run(args)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "0 chart(s) failed" in done.stdout


@pytest.mark.parametrize("sets", [(), FULL], ids=["defaults", "full"])
def test_rendered_chart_is_valid_for_every_kubernetes_version(sets: tuple[str, ...]) -> None:
    for version in kube_versions():
        done = helm_template(*sets, kube_version=version)
        assert done.returncode == 0, done.stderr
        docs = [d for d in yaml.safe_load_all(done.stdout) if d]
        report = kubeconform(done.stdout, version)
        statuses = {(r["kind"], r["name"]): r["status"] for r in report["resources"]}
        assert len(statuses) == len(docs), report
        bad = [(r["kind"], r["name"], r["msg"]) for r in report["resources"] if r["msg"]]
        assert set(statuses.values()) == {"statusValid"}, (version, bad)
        if sets:
            assert statuses[("ServiceMonitor", "t-meterline-worker")] == "statusValid"
            assert statuses[("ServiceMonitor", "t-meterline-api")] == "statusValid"
            assert statuses[("PrometheusRule", "t-meterline")] == "statusValid"


def test_kubeconform_refuses_what_the_schemas_forbid() -> None:
    """The schemas are in force (a resource without one would be an error, not valid):
    an unknown ServiceMonitor field and a replica count that is not a number fail."""
    docs = render(*FULL)
    named(docs, "ServiceMonitor", "meterline-api")["spec"]["endpoints"][0]["scrapeEvery"] = "1m"
    named(docs, "Deployment", "meterline-worker")["spec"]["replicas"] = "four"
    report = kubeconform(yaml.safe_dump_all(docs), kube_versions()[-1])
    invalid = {(r["kind"], r["name"]) for r in report["resources"] if r["status"] != "statusValid"}
    assert invalid == {("ServiceMonitor", "t-meterline-api"), ("Deployment", "t-meterline-worker")}


def test_the_prometheus_rule_carries_the_rule_file_and_the_labels_asked_for() -> None:
    """What the Operator loads is what promtool tested (tests/deploy/test_alert_rules.py)."""
    docs = render(*FULL, "prometheusRule.labels.release=prometheus")
    (rule,) = by_kind(docs, "PrometheusRule")
    assert rule["spec"] == yaml.safe_load((CHART / "files" / "alerts.yaml").read_text())
    assert rule["metadata"]["labels"]["release"] == "prometheus"
    assert by_kind(render(), "PrometheusRule") == []  # off by default: it needs the CRDs


def test_alerts_are_tuned_from_the_values_and_the_tuned_rules_pass_promtool(
    tmp_path: Path,
) -> None:
    expr = "meterline_stream_dedupe_pending_compaction_bytes > 8 * 1024 * 1024 * 1024"
    docs = render(
        *FULL,
        "prometheusRule.ruleLabels.team=billing",
        "prometheusRule.rules.MeterlineMeteringBehind.for=30m",
        "prometheusRule.rules.MeterlineMeteringBehind.annotations.summary=Behind for 30m",
        "prometheusRule.rules.MeterlineDeadLetters.labels.severity=critical",
        f"prometheusRule.rules.MeterlineDedupeCompactionBehind.expr={expr}",
        "prometheusRule.rules.MeterlineIngestSlowDelivery.enabled=false",
    )
    (rule,) = by_kind(docs, "PrometheusRule")
    rendered = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}
    original = yaml.safe_load((CHART / "files" / "alerts.yaml").read_text())
    expected = {r["alert"]: r for g in original["groups"] for r in g["rules"]}
    del expected["MeterlineIngestSlowDelivery"]
    for alert in expected.values():
        alert["labels"] = {**alert.get("labels", {}), "team": "billing"}
    expected["MeterlineMeteringBehind"]["for"] = "30m"
    expected["MeterlineMeteringBehind"]["annotations"]["summary"] = "Behind for 30m"
    expected["MeterlineDeadLetters"]["labels"]["severity"] = "critical"
    expected["MeterlineDedupeCompactionBehind"]["expr"] = expr
    assert rendered == expected
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump(rule["spec"]))
    done = run([tool("promtool"), "check", "rules", str(rules)])
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(expected)} rules found" in done.stdout  # all but the disabled one


@pytest.mark.parametrize(
    ("assignment", "message"),
    [
        (
            "prometheusRule.rules.MeterlineNope.for=1m",
            "prometheusRule.rules.MeterlineNope: no such alert in files/alerts.yaml; "
            "the alerts are MeterlineWorkerNotReady, MeterlineWorkerMissing",
        ),
        (
            "prometheusRule.rules.MeterlineDeadLetters.threshold=3",
            "prometheusRule.rules.MeterlineDeadLetters.threshold: not a setting of an alert; "
            "use enabled, for, expr, labels, annotations",
        ),
        (
            "prometheusRule.rules.MeterlineDeadLetters=3",
            "prometheusRule.rules.MeterlineDeadLetters: expected a map of enabled, for",
        ),
    ],
)
def test_a_tuning_of_no_alert_or_no_setting_fails_the_install_naming_it(
    assignment: str, message: str
) -> None:
    done = helm_template("prometheusRule.enabled=true", assignment)
    assert done.returncode != 0
    assert message in done.stderr


def test_the_dashboard_configmap_carries_the_dashboard_file_for_the_sidecar() -> None:
    docs = render(*FULL)
    (dashboard,) = [
        d
        for d in by_kind(docs, "ConfigMap")
        if d["metadata"]["name"].endswith("-grafana-dashboard")
    ]
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    text = dashboard["data"]["meterline-operators.json"]
    assert json.loads(text) == json.loads((CHART / "files" / "grafana-dashboard.json").read_text())
    assert not [
        d for d in by_kind(render(), "ConfigMap") if d["metadata"]["name"].endswith("-dashboard")
    ]


def test_compose_file_is_valid() -> None:
    done = run([tool("docker-compose"), "-f", str(COMPOSE), "config", "-q"])
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == ""


def test_a_broken_compose_file_is_caught(tmp_path: Path) -> None:
    broken = tmp_path / "compose.yaml"
    broken.write_text(COMPOSE.read_text().replace("service_healthy", "service_ready", 1))
    done = run([tool("docker-compose"), "-f", str(broken), "config", "-q"])
    assert done.returncode != 0
    assert "service_ready" in done.stderr


# -- the chart says what the code reads ------------------------------------------------


def test_worker_replicas_follow_the_partitions() -> None:
    partitions = VALUES["kafka"]["eventsPartitions"]
    cases = [  # (--set, replicas, partitions)
        ((), partitions, partitions),
        (("kafka.eventsPartitions=6",), 6, 6),
        (("worker.replicas=2",), 2, partitions),
    ]
    for sets, replicas, topic_partitions in cases:
        worker = named(render(*sets), "Deployment", "meterline-worker")
        assert worker["spec"]["replicas"] == replicas, sets
        env = env_of(container(worker, "worker"))
        assert env["METERLINE_EVENTS_PARTITIONS"] == str(topic_partitions), sets
        assert worker["spec"]["strategy"]["rollingUpdate"]["maxSurge"] == 0
    refused = helm_template("kafka.eventsPartitions=6", "worker.replicas=7")
    assert refused.returncode != 0
    assert "worker.replicas (7) is more than kafka.eventsPartitions (6)" in refused.stderr


def settings_from(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The settings a service reads from ``env``, as it reads them: from the environment."""
    for name in [k for k in os.environ if k.startswith("METERLINE_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        if name.startswith("METERLINE_"):
            monkeypatch.setenv(name, value)
    return Settings()


def test_every_env_name_is_a_setting_and_parses(monkeypatch: pytest.MonkeyPatch) -> None:
    docs = render(*FULL, "extraEnv.METERLINE_DEDUPE_HORIZON_DAYS=40")
    containers = [c for d in workloads(docs) for c in pod_spec(d)["containers"]]
    compose = compose_config()["services"]
    ours = [s for s in compose.values() if str(s.get("image", "")).startswith("meterline:")]
    assert len(ours) == 3
    envs = [env_of(c) for c in containers] + [s["environment"] for s in ours]
    for env in envs:
        assert set(env) <= SETTING_NAMES, set(env) - SETTING_NAMES
        settings = settings_from(env, monkeypatch)
        assert settings.clickhouse_database == "meterline"
    refused = helm_template("extraEnv.WORKER_PORT=1")
    assert refused.returncode != 0
    assert "only METERLINE_* settings" in refused.stderr


def test_catalog_configmap_holds_the_demo_files_byte_for_byte() -> None:
    docs = render()
    data = named(docs, "ConfigMap", "meterline-catalog")["data"]
    assert set(data) == CATALOG_FILES
    for name in CATALOG_FILES:
        assert data[name].encode() == (DEMO / name).read_bytes(), name
        assert (CHART / "files" / name).read_bytes() == (DEMO / name).read_bytes(), name
    for doc in by_kind(docs, "Deployment"):
        main = pod_spec(doc)["containers"][0]
        (mount,) = [m for m in main["volumeMounts"] if m["name"] == "catalog"]
        env = env_of(main)
        for setting in ("METERS_FILE", "RATE_CARD_FILE", "CUSTOMERS_FILE"):
            path = Path(env[f"METERLINE_{setting}"])
            assert path.parent == Path(mount["mountPath"])
            assert path.name in data


def test_a_catalog_file_can_be_replaced() -> None:
    draft = DEMO / "rate-card-draft.yaml"
    docs = render(options=("--set-file", f"catalog.rateCard={draft}"))
    data = named(docs, "ConfigMap", "meterline-catalog")["data"]
    assert data["rate-card.yaml"].encode() == draft.read_bytes()
    assert data["meters.yaml"].encode() == (DEMO / "meters.yaml").read_bytes()


def test_containers_run_as_the_systemd_units_do_and_not_as_root() -> None:
    commands = []
    for unit in ("meterline-worker.service", "meterline-api.service"):
        text = (ROOT / "deploy" / "systemd" / unit).read_text()
        found = re.search(r"^ExecStart=\S+/python (.+)$", text, re.M)
        assert found is not None, unit
        commands.append(["python", *found.group(1).split()])
    worker_cmd, api_cmd = commands
    docs = render(*FULL)
    assert (
        container(named(docs, "Deployment", "meterline-worker"), "worker")["command"] == worker_cmd
    )
    assert container(named(docs, "Deployment", "meterline-api"), "api")["command"] == api_cmd
    compose = compose_config()["services"]
    assert compose["worker"]["command"] == worker_cmd
    assert compose["api"]["command"] == api_cmd
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    uid = re.search(r"^USER (\d+):(\d+)$", dockerfile, re.M)
    assert uid is not None
    assert VALUES["podSecurityContext"]["runAsUser"] == int(uid.group(1))
    for doc in workloads(docs):
        assert pod_spec(doc)["securityContext"]["runAsNonRoot"] is True
        for c in pod_spec(doc)["containers"]:
            assert c["securityContext"]["readOnlyRootFilesystem"] is True, c["name"]
            assert c["resources"]["limits"]["memory"], c["name"]


def test_the_image_context_holds_every_package() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    include = project["tool"]["setuptools"]["packages"]["find"]["include"]
    ignore = (ROOT / ".dockerignore").read_text()
    kept = set(re.findall(r"^!(\w+)/$", ignore, re.M))
    assert {p.rstrip("*") for p in include} <= kept
    # the native event decoder's sources are in the context (under schemas/), its build
    # directory is not, and the image installs it beside the package
    assert "schemas" in kept
    assert re.search(r"^schemas/native/target$", ignore, re.M)
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    assert re.search(r"pip install /src /src/schemas/native$", dockerfile, re.M)


# -- compose: health checks, and waiting for them --------------------------------------


def test_compose_services_have_health_checks_and_wait_for_them() -> None:
    services = compose_config()["services"]
    one_shot = {n for n, s in services.items() if s.get("restart") == "no"}
    assert one_shot == {"migrate"}
    for name, service in services.items():
        if name not in one_shot:
            assert service["healthcheck"]["test"][0] == "CMD", name
        for dependency, how in service.get("depends_on", {}).items():
            wanted = (
                "service_completed_successfully" if dependency in one_shot else "service_healthy"
            )
            assert how["condition"] == wanted, (name, dependency)
    for name in ("migrate", "worker", "api"):
        assert {"kafka", "clickhouse"} & set(services[name]["depends_on"]), name


def test_compose_health_checks_use_the_configured_ports() -> None:
    services = compose_config()["services"]
    worker, api = services["worker"], services["api"]
    port = worker["environment"]["METERLINE_WORKER_METRICS_PORT"]
    assert f"http://127.0.0.1:{port}/readyz" in worker["healthcheck"]["test"][-1]
    # the health check runs inside the container: the supervisor must answer on loopback
    default_host = Settings.model_fields["worker_metrics_host"].default
    host = worker["environment"].get("METERLINE_WORKER_METRICS_HOST", default_host)
    assert host in ("127.0.0.1", "0.0.0.0")
    port = api["environment"]["METERLINE_API_PORT"]
    assert f"http://127.0.0.1:{port}/healthz" in api["healthcheck"]["test"][-1]
    # docker-compose 1.29 prints the short forms: HOST_IP:PORT:PORT/tcp, SOURCE:TARGET:MODE
    assert any(p.split(":")[-1] == f"{port}/tcp" for p in api["ports"])
    for service in (worker, api):
        mounted = {}
        for volume in service["volumes"]:
            source, target, _mode = volume.split(":")
            mounted[target] = Path(source)
        for setting in ("METERS_FILE", "RATE_CARD_FILE", "CUSTOMERS_FILE"):
            source = mounted[service["environment"][f"METERLINE_{setting}"]]
            assert source.parent == DEMO
            assert source.is_file()


# -- the probes and ServiceMonitors reach what the services serve ----------------------


def local_env(
    rendered: dict[str, str], tmp_path: Path, docs: list[dict[str, Any]]
) -> dict[str, str]:
    """The container's environment on this machine: the catalog ConfigMap's files written
    under ``tmp_path``; Kafka and ClickHouse on loopback ports where nothing listens."""
    catalog = tmp_path / "catalog"
    catalog.mkdir(exist_ok=True)
    for name, text in named(docs, "ConfigMap", "meterline-catalog")["data"].items():
        (catalog / name).write_text(text)
    env = {k: v for k, v in os.environ.items() if not k.startswith("METERLINE_")}
    for name, value in rendered.items():
        if value.startswith("/etc/meterline/catalog/"):
            value = str(catalog / Path(value).name)
        env[name] = value
    env.update(
        METERLINE_KAFKA_HOST="127.0.0.1",
        METERLINE_KAFKA_PORT=str(free_port()),
        METERLINE_CLICKHOUSE_HOST="127.0.0.1",
        METERLINE_CLICKHOUSE_TCP_PORT=str(free_port()),
    )
    return env


def spawn(command: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    command = [sys.executable if a == "python" else a for a in command]
    return subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in reversed(started):
        stop_process_group(proc)


def test_worker_probes_and_metrics_reach_the_supervisor_on_the_pod_address(
    tmp_path: Path, processes: list[subprocess.Popen[bytes]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker started with the rendered command and environment (Kafka absent, so
    its child never becomes ready) listens on every address.  Sent to a non-loopback
    address of this machine, as the kubelet and Prometheus send them to the pod's: the
    startup and liveness probes pass, readiness fails, and the ServiceMonitor's port and
    path give the supervisor's metrics."""
    docs = render(*FULL, f"worker.metricsPort={free_port()}")
    deployment = named(docs, "Deployment", "meterline-worker")
    assert [c["name"] for c in pod_spec(deployment)["containers"]] == ["worker"]
    worker = container(deployment, "worker")
    env = local_env(env_of(worker), tmp_path, docs)
    env["METERLINE_WORKER_DATA_DIR"] = str(tmp_path / "state")
    settings = settings_from(env, monkeypatch)
    assert settings.worker_metrics_host == "0.0.0.0"
    ports = {p["name"]: p["containerPort"] for p in worker["ports"]}
    assert ports["metrics"] == settings.worker_metrics_port
    pod = own_address()
    if pod is None:
        pytest.fail("this machine has no address but loopback to stand for the pod's")
    processes.append(spawn(worker["command"], env))

    def get(port: int | str, path: str) -> httpx.Response | None:
        """GET the pod's ``port`` (a number, or a container port's name), as the kubelet
        and Prometheus do; None when nothing answers there."""
        number = ports[port] if isinstance(port, str) else port
        try:
            return httpx.get(f"http://{pod}:{number}{path}", timeout=5, trust_env=False)
        except httpx.TransportError:
            return None

    def probe(spec: dict[str, Any]) -> int:
        """The status an httpGet probe sees (0: no answer)."""
        answer = get(spec["httpGet"]["port"], spec["httpGet"]["path"])
        return 0 if answer is None else answer.status_code

    wait_until(lambda: probe(worker["startupProbe"]) == 200, 60, "the worker's startup probe")
    assert probe(worker["livenessProbe"]) == 200
    assert probe(worker["readinessProbe"]) == 503  # no ready child without Kafka

    # the ServiceMonitor selects one Service, which lists the worker pods
    monitor = named(docs, "ServiceMonitor", "meterline-worker")["spec"]
    wanted = monitor["selector"]["matchLabels"].items()
    (service,) = [d for d in by_kind(docs, "Service") if wanted <= d["metadata"]["labels"].items()]
    assert service["metadata"]["name"] == "t-meterline-worker-metrics"
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    (endpoint,) = monitor["endpoints"]
    (port,) = [p for p in service["spec"]["ports"] if p["name"] == endpoint["port"]]
    scrape = get(port["targetPort"], endpoint["path"])
    assert scrape is not None
    assert scrape.status_code == 200
    assert "meterline_worker_restarts_total" in scrape.text


def test_api_probes_and_metrics_reach_the_api(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The API built from the rendered environment (Kafka and ClickHouse replaced)
    answers its probes' path and serves the ServiceMonitor's path; the probes' named port
    is the one METERLINE_API_PORT makes `python -m api serve` listen on."""
    docs = render(*FULL)
    api = container(named(docs, "Deployment", "meterline-api"), "api")
    env = local_env(env_of(api), tmp_path, docs)
    env.pop("METERLINE_API_AUTH_FILE")  # the Secret is not here: the demo credentials
    settings = settings_from(env, monkeypatch)
    assert settings.api_host == "0.0.0.0"
    (port,) = api["ports"]
    assert port["containerPort"] == settings.api_port
    app = create_app(settings, delivery=FakeDelivery(), engine_factory=FakeEngine, lag=dict)
    http = SyncClient(app)
    for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert api[kind]["httpGet"]["port"] == port["name"]
        assert http.get(api[kind]["httpGet"]["path"]).status_code == 200, kind

    (monitor,) = named(docs, "ServiceMonitor", "meterline-api")["spec"]["endpoints"]
    (service_port,) = named(docs, "Service", "meterline-api")["spec"]["ports"]
    assert (service_port["name"], service_port["targetPort"]) == (monitor["port"], port["name"])
    page = http.get(monitor["path"])
    assert page.status_code == 200
    assert "meterline_api_requests_total" in page.text
