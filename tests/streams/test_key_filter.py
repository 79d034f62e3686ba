"""The dedupe index's key hash and Bloom filter (``meterline_native``): the hash is the one
the index has always stored; the filter never rules out a hash it was given, rules out
most others, and refuses anything but 16-byte hashes."""

from __future__ import annotations

import hashlib
from typing import Any

import meterline_native  # built by `make install` (schemas/native): a failure, not a skip
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams import seen_codec


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=600) | st.text(max_size=200).map(str.encode))
def test_the_native_key_hash_is_the_stored_one(key: bytes) -> None:
    assert meterline_native.key_hash(key) == seen_codec._key_hash(key)
    assert meterline_native.key_hash(key) == hashlib.blake2b(key, digest_size=16).digest()


def test_the_index_hashes_keys_natively() -> None:
    assert seen_codec.key_hash is meterline_native.key_hash


def hashes(prefix: bytes, n: int) -> list[bytes]:
    return [hashlib.blake2b(prefix + b"%d" % i, digest_size=16).digest() for i in range(n)]


def filled(capacity: int, added: list[bytes]) -> Any:
    keys = meterline_native.KeyFilter(capacity)
    keys.add_all(b"".join(added))
    return keys


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(min_size=16, max_size=16), max_size=300), st.integers(0, 10**6))
def test_every_added_hash_may_be_contained(added: list[bytes], capacity: int) -> None:
    keys = filled(capacity, added)
    assert keys.added == len(added)
    assert all(keys.may_contain(h) for h in added)


def test_at_capacity_about_one_in_a_hundred_others_is_a_maybe() -> None:
    keys = filled(100_000, hashes(b"in", 100_000))
    assert keys.capacity == 100_000
    assert keys.nbytes == 125_000  # 10 bits per key
    maybe = sum(keys.may_contain(h) for h in hashes(b"out", 100_000))
    assert 100 < maybe < 2_000  # ~0.8 % measured; 0 would mean the probes are not spread


def test_hashes_one_at_a_time_or_together_give_the_same_filter() -> None:
    added = hashes(b"k", 1_000)
    apart = meterline_native.KeyFilter(0)
    for h in added:
        apart.add_all(h)
    together = filled(0, added)
    probes = hashes(b"probe", 20_000)
    assert [apart.may_contain(h) for h in probes] == [together.may_contain(h) for h in probes]
    assert apart.capacity == together.capacity == 65_536  # the smallest size


@pytest.mark.parametrize("size", [0, 15, 17, 32 + 1])
def test_anything_but_16_byte_hashes_is_refused(size: int) -> None:
    keys = meterline_native.KeyFilter(10)
    with pytest.raises(ValueError, match="16"):
        keys.may_contain(b"x" * size)
    if size % 16:
        with pytest.raises(ValueError, match="16-byte pieces"):
            keys.add_all(b"x" * size)
    assert keys.added == 0


@settings(max_examples=200)
@given(st.lists(st.text(max_size=40), max_size=50), st.lists(st.text(max_size=40), max_size=50))
def test_asking_for_a_key_is_asking_for_its_hash(added: list[str], asked: list[str]) -> None:
    keys = meterline_native.KeyFilter(1_000)
    keys.add_all(b"".join(seen_codec.key_hash(k.encode()) for k in added))
    for key in added + asked:
        assert keys.may_contain_key(key) == keys.may_contain(seen_codec.key_hash(key.encode()))
    assert all(keys.may_contain_key(key) for key in added)
