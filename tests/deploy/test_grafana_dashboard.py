"""The operators' Grafana dashboard (``deploy/helm/meterline/files/grafana-dashboard.json``).

Every query is PromQL promtool (``make tools``) accepts, every series it reads is one
Meterline exports, and the panels tile the grid without overlapping.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from tests.deploy.manifests_kit import CHART, run, tool
from tests.deploy.test_alert_rules import exported_metrics

DASHBOARD = CHART / "files" / "grafana-dashboard.json"
HISTOGRAM_PARTS = re.compile(r"_(bucket|sum|count)$")


def panels() -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = json.loads(DASHBOARD.read_text())["panels"]
    return found


def queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) for every target, Grafana's ``$__rate_interval`` as 5m."""
    return [
        (panel["title"], target["expr"].replace("$__rate_interval", "5m"))
        for panel in panels()
        for target in panel.get("targets", [])
    ]


def test_every_panel_but_a_row_queries_prometheus() -> None:
    assert json.loads(DASHBOARD.read_text())["uid"] == "meterline-operators"
    ids = [panel["id"] for panel in panels()]
    assert len(ids) == len(set(ids))
    for panel in panels():
        if panel["type"] == "row":
            continue
        assert panel["targets"], panel["title"]
        assert all(target["expr"].strip() for target in panel["targets"]), panel["title"]
        assert panel["description"], panel["title"]


def test_panels_tile_the_grid_without_overlapping() -> None:
    taken: set[tuple[int, int]] = set()
    for panel in panels():
        grid = panel["gridPos"]
        assert grid["x"] >= 0, panel["title"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        cells = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cells & taken, f"{panel['title']} overlaps another panel"
        taken |= cells


def test_every_series_the_dashboard_reads_is_exported() -> None:
    exported = exported_metrics()
    read = {name for _, expr in queries() for name in re.findall(r"\bmeterline_[a-z0-9_]+", expr)}
    assert len(read) >= 20  # the worker's, the API's and the alerts' series
    unknown = {name for name in read if HISTOGRAM_PARTS.sub("", name) not in exported}
    assert not unknown, f"the dashboard reads series nothing exports: {sorted(unknown)}"


def test_promtool_accepts_every_query(tmp_path: Path) -> None:
    """Each query as a recording rule: ``promtool check rules`` parses its PromQL."""
    rules = [
        {"record": f"meterline:dashboard_query_{n}", "expr": expr}
        for n, (_, expr) in enumerate(queries())
    ]
    path = tmp_path / "dashboard_queries.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    done = run([tool("promtool"), "check", "rules", str(path)])
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(rules)} rules found" in done.stdout


def test_a_broken_query_fails_promtool(tmp_path: Path) -> None:
    """The check above can fail: an unclosed bracket is refused."""
    path = tmp_path / "broken.yaml"
    rule = {"record": "meterline:broken", "expr": "sum(rate(meterline_stream_events_total[5m])"}
    path.write_text(yaml.safe_dump({"groups": [{"name": "broken", "rules": [rule]}]}))
    done = run([tool("promtool"), "check", "rules", str(path)])
    assert done.returncode != 0
