"""Debian's headless Chromium for the browser tests (installed by ``make browser``).

Flags: no sandbox (root in CI), no GPU, and none of the background networking that this
machine's closed network would refuse.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def chromium() -> str:
    """The browser's path; a missing browser fails the test (it is never skipped)."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.fail("chromium is not installed: run `make browser` (`make test` does this)")
    return found


def headless(target: str, profile: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """Run headless Chromium on ``target`` (a URL) with a fresh profile directory."""
    done = subprocess.run(
        [chromium(), *FLAGS, f"--user-data-dir={profile}", *extra, target],
        capture_output=True,
        text=True,
        timeout=300,  # generous: a busy 2-core box starts and renders far slower than idle
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done
