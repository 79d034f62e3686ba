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


ATTEMPT_TIMEOUT_S = 120
"""One browser run's limit: a busy 2-core box starts and renders far slower than idle
(10-30 s), but a run past this has hung (seen once in CI: a screenshot run that never
painted, after three runs of the same page had rendered)."""
ATTEMPTS = 3


def headless(target: str, profile: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """Run headless Chromium on ``target`` (a URL) with a fresh profile directory.  A run
    that hangs is killed and started again with a fresh profile (at most ``ATTEMPTS``
    runs); what it renders is checked by the caller either way."""
    for attempt in range(1, ATTEMPTS + 1):
        directory = profile if attempt == 1 else profile.with_name(f"{profile.name}-{attempt}")
        try:
            done = subprocess.run(
                [chromium(), *FLAGS, f"--user-data-dir={directory}", *extra, target],
                capture_output=True,
                text=True,
                timeout=ATTEMPT_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired:
            print(f"chromium hung for {ATTEMPT_TIMEOUT_S} s on {target} (run {attempt}); killed")
            continue
        assert done.returncode == 0, done.stderr[-2000:]
        return done
    pytest.fail(f"chromium hung {ATTEMPTS} times in a row on {target}")
