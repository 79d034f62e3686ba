"""A baseline checkout's own native module, for a same-run ablation against it.

The benches run a baseline's Python from its checkout (``--baseline-code DIR``: the
checkout goes first on the import path).  Its native module (``schemas/native``) must
come from that checkout too: the environment's build is the current code's, and if it
served both sides a change to the native code would measure as no change at all.

:func:`native_dir` builds the checkout's module once per source (a digest of its files)
into ``$METERLINE_HOME/bench-native/<digest>`` and returns that directory, to be put on the
baseline's import path right after the checkout.  A checkout with no native sources, or
with a built ``meterline_native`` package of its own in its root, needs none.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

__all__ = ["native_dir", "source_digest"]

SOURCES = ("Cargo.toml", "Cargo.lock", "pyproject.toml")


def source_digest(native: Path) -> str:
    """A digest of the files a native build reads: ``src/*.rs`` and the manifests."""
    digest = hashlib.sha256()
    files = sorted(native.glob("src/*.rs")) + [native / name for name in SOURCES]
    for path in files:
        if path.exists():
            digest.update(path.relative_to(native).as_posix().encode() + b"\0")
            digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def _cargo_path() -> str:
    """``PATH`` with cargo on it (rustup's default place when it is not there already)."""
    path = os.environ.get("PATH", "")
    if shutil.which("cargo") is None:
        path = f"{Path.home() / '.cargo' / 'bin'}{os.pathsep}{path}"
    return path


def native_dir(code: Path) -> Path | None:
    """The directory holding ``code``'s own ``meterline_native`` build (built here on
    first use), or ``None`` where ``code`` needs none."""
    native = code / "schemas" / "native"
    if not (native / "Cargo.toml").exists() or (code / "meterline_native").is_dir():
        return None
    home = Path(os.environ.get("METERLINE_HOME") or Path.home() / ".cache" / "meterline")
    target = home / "bench-native" / source_digest(native)
    if (target / "meterline_native").is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="build-", dir=target.parent))
    print(f"building the native module of {code} into {target}", file=sys.stderr, flush=True)
    try:
        pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps"]
        subprocess.run(
            [*pip, "--target", staging, native],
            env={**os.environ, "PATH": _cargo_path()},
            check=True,
        )
        if not (staging / "meterline_native").is_dir():
            raise RuntimeError(f"building {native} gave no meterline_native package")
        try:
            staging.rename(target)  # whole or not at all; a racing build may have won
        except OSError:
            if not (target / "meterline_native").is_dir():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
