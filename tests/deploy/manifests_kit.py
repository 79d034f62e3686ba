"""Helpers for the checks of the deploy files (deploy/compose.yaml, deploy/helm/meterline):
where the tools `make tools` installs are, rendering the chart, running kubeconform on
local schemas, and reading containers out of rendered manifests.

A missing tool or schema directory FAILS the test with the command that installs it;
nothing here skips.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT

CHART = ROOT / "deploy" / "helm" / "meterline"
COMPOSE = ROOT / "deploy" / "compose.yaml"
RELEASE = "t"


_HOME = os.environ.get("METERLINE_HOME") or str(Path.home() / ".cache" / "meterline")
"""Read once, at import: a test that rebuilds the environment a service sees (without
``METERLINE_HOME``) still finds the tools of this run's home."""


def tools_dir() -> Path:
    """Where `make tools` puts helm, kubeconform and their schemas."""
    return Path(_HOME).expanduser() / "tools"


def tool(name: str) -> str:
    """The path of a tool: `make tools`'s copy first, then PATH."""
    local = tools_dir() / "bin" / name
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    found = shutil.which(name)
    if found is None:
        pytest.fail(
            f"{name} is missing (looked in {local.parent} and PATH): run `make tools`",
            pytrace=False,
        )
    return found


def schemas_dir() -> Path:
    return tools_dir() / "schemas"


def kube_versions() -> list[str]:
    """The Kubernetes versions whose schemas `make tools` laid out (at least one)."""
    found = sorted(p.name[1:].split("-")[0] for p in schemas_dir().glob("v*-local-strict"))
    if not found:
        pytest.fail(f"no Kubernetes schemas in {schemas_dir()}: run `make tools`", pytrace=False)
    return found


def servicemonitor_schema() -> Path:
    path = schemas_dir() / "monitoring.coreos.com" / "servicemonitor_v1.json"
    if not path.is_file():
        pytest.fail(f"the ServiceMonitor schema {path} is missing: run `make tools`", pytrace=False)
    return path


def run(args: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, input=stdin, capture_output=True, text=True, timeout=120, check=False, cwd=ROOT
    )


def helm_template(
    *sets: str, kube_version: str | None = None, options: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """``helm template`` with ``--set`` assignments and other ``options``, for
    ``kube_version`` (default: the newest with schemas)."""
    version = kube_version or kube_versions()[-1]
    args = [tool("helm"), "template", RELEASE, str(CHART), "--kube-version", version, *options]
    for assignment in sets:
        args += ["--set", assignment]
    return run(args)


def render(
    *sets: str, kube_version: str | None = None, options: tuple[str, ...] = ()
) -> list[dict[str, Any]]:
    """The chart's manifests as ``helm_template`` renders them; fails if helm refuses."""
    done = helm_template(*sets, kube_version=kube_version, options=options)
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def kubeconform(manifests: str, kube_version: str) -> dict[str, Any]:
    """kubeconform's JSON report (every resource listed) on local schemas only."""
    servicemonitor_schema()
    location = str(schemas_dir())
    done = run(
        [
            tool("kubeconform"),
            "-strict",
            "-summary",
            "-verbose",
            "-output",
            "json",
            "-kubernetes-version",
            kube_version,
            "-schema-location",
            location + "/{{ .NormalizedKubernetesVersion }}-local{{ .StrictSuffix }}"
            "/{{ .ResourceKind }}{{ .KindSuffix }}.json",
            "-schema-location",
            location + "/{{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json",
            "-",
        ],
        stdin=manifests,
    )
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def named(docs: list[dict[str, Any]], kind: str, suffix: str) -> dict[str, Any]:
    (doc,) = [d for d in by_kind(docs, kind) if d["metadata"]["name"] == f"{RELEASE}-{suffix}"]
    return doc


def pod_spec(doc: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = doc["spec"]["template"]["spec"]
    return spec


def container(doc: dict[str, Any], name: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [c for c in pod_spec(doc)["containers"] if c["name"] == name]
    (one,) = found
    return one


def env_of(spec: dict[str, Any]) -> dict[str, str]:
    """A container's env as a dict (every entry a plain value here)."""
    return {e["name"]: e["value"] for e in spec.get("env", [])}


def workloads(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] in ("Deployment", "Job")]


def compose_config() -> dict[str, Any]:
    """deploy/compose.yaml as docker-compose resolves it (anchors, merges, paths)."""
    done = run([tool("docker-compose"), "-f", str(COMPOSE), "config"])
    assert done.returncode == 0, done.stderr
    config: dict[str, Any] = yaml.safe_load(done.stdout)
    return config
