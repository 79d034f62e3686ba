"""The duplicate-ack commit defect of faust-streaming, and the worker's fix for it."""

from collections import defaultdict
from types import SimpleNamespace
from typing import Any

from faust.transport.consumer import Consumer

from streams import faust_fixes


def consumer_with_acks(acked: list[int]) -> Any:
    fake = SimpleNamespace(
        _acked=defaultdict(list),
        _gap=defaultdict(lambda: None),
        _acked_index=defaultdict(set),
        _committed_offset={},
    )
    fake._acked["tp"] = list(acked)
    fake._acked_index["tp"] = set(acked)
    fake._committed_offset["tp"] = min(acked)
    return fake


def test_duplicate_acks_let_commits_drain_in_one_step() -> None:
    faust_fixes.apply()
    # offsets 10..19 acknowledged, 10 and 11 twice (a record delivered again after a restart)
    fake = consumer_with_acks([10, 10, 11, 11, *range(12, 20)])
    assert Consumer._new_offset(fake, "tp") == 20


def test_without_duplicates_behaviour_is_unchanged() -> None:
    faust_fixes.apply()
    fake = consumer_with_acks([10, 11, 12, 15, 16])
    assert Consumer._new_offset(fake, "tp") == 13
