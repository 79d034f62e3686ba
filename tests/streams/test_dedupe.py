from hypothesis import given
from hypothesis import strategies as st

from streams.dedupe import Candidate, SeenRecord, Verdict, classify, judge


def cand(key: str, offset: int, digest: str = "h", partition: int = 0) -> Candidate:
    return Candidate(key, partition, offset, digest)


def test_first_wins_within_a_batch() -> None:
    verdicts = [
        d.verdict for d in classify([cand("a", 1), cand("a", 2), cand("a", 3, "x")], lambda _: None)
    ]
    assert verdicts == [Verdict.NEW, Verdict.DUPLICATE, Verdict.CONFLICT]


def test_same_position_is_a_replay_not_a_duplicate() -> None:
    store = {"a": SeenRecord(0, 1, "h")}
    (decision,) = classify([cand("a", 1)], store.get)
    assert decision.verdict is Verdict.REPLAY
    assert decision.keep


def test_seen_elsewhere_is_duplicate_or_conflict() -> None:
    store = {"a": SeenRecord(0, 1, "h")}
    dup, conflict = classify([cand("a", 7), cand("a", 8, "other")], store.get)
    assert dup.verdict is Verdict.DUPLICATE
    assert not dup.keep
    assert conflict.verdict is Verdict.CONFLICT
    assert conflict.first == SeenRecord(0, 1, "h")


def test_record_written_by_an_older_worker_decodes() -> None:
    record = SeenRecord(3, 123456789, "abc:def", 1_700_000_000_000)
    assert SeenRecord.decode("3:123456789:1700000000000:abc:def") == record


@given(
    st.lists(st.tuples(st.sampled_from("abcde"), st.sampled_from("xy")), max_size=40),
    st.integers(min_value=0, max_value=40),
)
def test_replaying_from_any_offset_repeats_the_same_decisions(
    items: list[tuple[str, str]], crash_at: int
) -> None:
    """Whatever prefix was recorded before a crash, re-reading gives the same keep set."""
    batch = [cand(key, offset, digest) for offset, (key, digest) in enumerate(items)]
    first = classify(batch, lambda _: None)
    recorded = {}
    for decision in first[:crash_at]:
        if decision.keep:
            c = decision.candidate
            recorded[c.key] = SeenRecord(c.partition, c.offset, c.content_hash)
    again = classify(batch, recorded.get)
    assert [d.keep for d in again] == [d.keep for d in first]
    kept_keys = [d.candidate.key for d in first if d.keep]
    assert len(kept_keys) == len(set(kept_keys)) == len({key for key, _ in items})


def test_records_expire_beyond_the_horizon_but_replays_never_do() -> None:
    day = 86_400_000
    store = {"a": SeenRecord(0, 1, "h", ingested_ms=0)}
    (within,) = classify([Candidate("a", 0, 9, "h", 31 * day)], store.get, horizon_ms=32 * day)
    (beyond,) = classify([Candidate("a", 0, 9, "h", 33 * day)], store.get, horizon_ms=32 * day)
    (replay,) = classify([Candidate("a", 0, 1, "h", 99 * day)], store.get, horizon_ms=32 * day)
    assert within.verdict is Verdict.DUPLICATE
    assert beyond.verdict is Verdict.NEW
    assert replay.verdict is Verdict.REPLAY


POSITIONS = st.tuples(st.integers(0, 1), st.integers(0, 3), st.integers(0, 2))


@given(
    POSITIONS,
    st.sampled_from(["d1", "d2"]),
    st.integers(0, 10),
    POSITIONS,
    st.sampled_from(["d1", "d2"]),
    st.integers(0, 10),
    st.integers(0, 6),
)
def test_judge_agrees_with_classify_for_a_key_it_finds(
    first_at: tuple[int, int, int],
    first_digest: str,
    first_ingested: int,
    at: tuple[int, int, int],
    digest: str,
    ingested: int,
    horizon: int,
) -> None:
    """The hot path's per-event rule is the reference rule for a key already seen."""
    partition, offset, index = first_at
    first = SeenRecord(partition, offset, first_digest, first_ingested, index)
    cand = Candidate("k", at[0], at[1], digest, ingested, at[2])
    [decision] = classify([cand], {"k": first}.get, horizon)
    assert judge(first, at[0], at[1], at[2], digest, ingested, horizon) is decision.verdict
