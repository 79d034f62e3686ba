"""``reset`` deletes the workers' local dedupe state, never under a running worker."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import pytest

from schemas.errors import MeterlineError
from schemas.settings import Settings
from streams.local_state import claim_slot, delete_local_state, state_root


def test_reset_deletes_the_local_state_of_stopped_workers(tmp_path: Path) -> None:
    settings = Settings(worker_data_dir=str(tmp_path), worker_app_id="meter-test")
    assert delete_local_state(settings) is None  # nothing yet
    slot = state_root(settings) / "slot-0"
    (slot / "tables").mkdir(parents=True)
    (slot / "tables" / "keys.sst").write_bytes(b"x")
    (state_root(settings) / "slot-0.lock").touch()
    assert delete_local_state(settings) == state_root(settings)
    assert not state_root(settings).exists()


def test_reset_is_refused_while_a_worker_holds_its_slot(tmp_path: Path) -> None:
    settings = Settings(worker_data_dir=str(tmp_path), worker_app_id="meter-test")
    root = state_root(settings)
    assert claim_slot(root) == root / "slot-0"  # this process now holds slot 0
    fd = os.open(root / "slot-0.lock", os.O_RDWR)  # a second holder would be refused too
    try:
        with pytest.raises(BlockingIOError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(fd)
    with pytest.raises(MeterlineError, match="stop the workers first"):
        delete_local_state(settings)
    assert root.exists()
