"""``bench/baseline_native.py``: a baseline checkout's own native module for a same-run
ablation (the build itself is cargo's; what is decided here is when one is needed and
which build is whose)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

from baseline_native import native_dir, source_digest  # noqa: E402


def _checkout(tmp_path: Path) -> Path:
    code = tmp_path / "checkout"
    shutil.copytree(ROOT / "schemas" / "native" / "src", code / "schemas/native/src")
    for name in ("Cargo.toml", "Cargo.lock", "pyproject.toml"):
        shutil.copy(ROOT / "schemas" / "native" / name, code / "schemas/native" / name)
    return code


def test_the_digest_follows_the_sources_and_nothing_else(tmp_path: Path) -> None:
    code = _checkout(tmp_path)
    native = code / "schemas" / "native"
    before = source_digest(native)
    assert before == source_digest(ROOT / "schemas" / "native")
    (native / "README.md").write_text("not a source\n")
    assert source_digest(native) == before
    lib = native / "src" / "lib.rs"
    lib.write_text(lib.read_text() + "\n// changed\n")
    assert source_digest(native) != before


def test_no_build_where_the_checkout_needs_none(tmp_path: Path) -> None:
    assert native_dir(tmp_path) is None  # no native sources (an older checkout)
    code = _checkout(tmp_path)
    (code / "meterline_native").mkdir()  # a build of its own in its root
    assert native_dir(code) is None


def test_a_build_made_for_these_sources_is_reused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code = _checkout(tmp_path)
    home = tmp_path / "home"
    monkeypatch.setenv("METERLINE_HOME", str(home))
    built = home / "bench-native" / source_digest(code / "schemas" / "native")
    (built / "meterline_native").mkdir(parents=True)
    assert native_dir(code) == built
    other = home / "bench-native" / ("0" * 16)
    (other / "meterline_native").mkdir(parents=True)
    assert native_dir(code) == built  # another source's build is not this checkout's
