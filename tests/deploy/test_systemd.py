"""The systemd units in deploy/systemd pass ``systemd-analyze verify`` (with the install
paths pointed at this checkout, since verify checks that ExecStart exists), restart
always, and a broken directive is caught (verify only warns about those, so the test
reads its output, not just its exit code)."""

from __future__ import annotations

import getpass
import grp
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT

UNITS = sorted((ROOT / "deploy" / "systemd").glob("*.service"))


def render(unit: Path, into: Path, text: str | None = None) -> Path:
    """The unit as installed on this machine: /opt/meterline → the checkout."""
    body = (text if text is not None else unit.read_text()).replace("/opt/meterline", str(ROOT))
    body = body.replace("/etc/meterline/meterline.env", str(ROOT / "deploy/systemd/meterline.env"))
    body = body.replace("User=meterline", f"User={getpass.getuser()}")
    body = body.replace("Group=meterline", f"Group={grp.getgrgid(os.getgid()).gr_name}")
    out = into / unit.name
    out.write_text(body)
    return out


def verify(path: Path) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.fail("systemd-analyze is missing: `make test` installs Debian's systemd")
    return subprocess.run(
        [tool, "verify", str(path)], capture_output=True, text=True, timeout=60, check=False
    )


def test_both_units_exist_and_restart_always() -> None:
    assert [u.name for u in UNITS] == ["meterline-api.service", "meterline-worker.service"]
    for unit in UNITS:
        assert "\nRestart=always\n" in unit.read_text(), unit


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_unit_verifies_cleanly(unit: Path, tmp_path: Path) -> None:
    done = verify(render(unit, tmp_path))
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == "", done.stderr


def test_a_broken_directive_is_caught(tmp_path: Path) -> None:
    unit = UNITS[0]
    broken = unit.read_text().replace("Restart=always", "Restart=sometimes")
    done = verify(render(unit, tmp_path, broken))
    assert "Failed to parse service restart specifier" in done.stderr
