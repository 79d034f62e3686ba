"""The on-disk dedupe store (``streams.seen_store``): lookups, purge, legacy entries,
restores, restart reuse, rebalance and hash collisions.  A real RocksDB in a temp dir,
a Faust app that is built but never started; changelog sends are recorded, not sent."""

from __future__ import annotations

import asyncio
import gc
import logging
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import faust
import orjson
import pytest
from faust.types import TP
from rocksdict import Rdict

from streams import seen_codec, seen_filter, seen_options, seen_store
from streams import seen_table as table_module
from streams.dedupe import SeenRecord
from streams.local_state import claim_slot
from streams.seen_codec import index_entries
from streams.seen_store import SeenIndexStore, StoreLimits
from streams.seen_table import PositionedTable, TableSeenStore

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_790_000_000_000
SMALL = StoreLimits(block_cache_bytes=8 << 20, memtable_bytes=4 << 20, write_buffer_bytes=1 << 20)


class RecordingTable(PositionedTable):
    """The worker's table with the changelog send replaced by a list of what was sent."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sent: list[tuple[int | None, bytes, bytes | None]] = []

    def on_key_set(self, key: bytes, value: bytes) -> None:
        self.sent.append((self.partition_for_key(key), key, value))

    def on_key_del(self, key: bytes) -> None:
        self.sent.append((self.partition_for_key(key), key, None))


@dataclass
class Opened:
    table: RecordingTable
    seen: TableSeenStore

    @property
    def store(self) -> SeenIndexStore:
        data = self.table.data
        assert isinstance(data, SeenIndexStore)
        return data

    @property
    def topic(self) -> str:
        return str(self.table.changelog_topic.topics[0])


def open_store(datadir: Path, **options: Any) -> Opened:
    app = faust.App("seen-test", datadir=str(datadir), key_serializer="raw")
    table = app.tables.add(
        RecordingTable(
            app,
            name="dedupe",
            partitions=4,
            key_type=bytes,
            value_type=bytes,
            options={"limits": SMALL, **options},
        )
    )
    return Opened(table, TableSeenStore(table))


@pytest.fixture
def opened(tmp_path: Path) -> Opened:
    return open_store(tmp_path)


def rec(
    partition: int, offset: int, ingested: int = T0, index: int = 0, digest: str = "d"
) -> SeenRecord:
    return SeenRecord(partition, offset, digest, ingested, index)


@dataclass
class Message:
    partition: int
    offset: int
    key: bytes
    value: bytes | None

    @property
    def tp(self) -> TP:
        return TP("seen-test-dedupe-changelog", self.partition)


@dataclass
class ChangelogEvent:
    message: Message


def chunk_keys(store: SeenIndexStore) -> list[bytes]:
    """The table's keys in every open partition (Faust's own iteration covers assigned
    partitions only, and this app is never started)."""
    return sorted(key for db in store._dbs.values() for key in store._visible_keys(db))


def restore(store: SeenIndexStore, *messages: Message) -> None:
    store.apply_changelog_batch([ChangelogEvent(m) for m in messages], None, None)


def test_put_then_get_by_key_across_partitions(opened: Opened) -> None:
    opened.seen.put_many(
        [("a", rec(0, 10)), ("b", rec(0, 11, index=2)), ("c", rec(3, 5, T0 + 9, digest="x"))]
    )
    assert opened.seen.get("a") == rec(0, 10)
    assert opened.seen.get("b") == rec(0, 11, index=2)
    assert opened.seen.get("c") == rec(3, 5, T0 + 9, digest="x")
    assert opened.seen.get("nope") is None
    assert opened.seen.get_many(["c", "nope", "a"]) == [
        rec(3, 5, T0 + 9, digest="x"),
        None,
        rec(0, 10),
    ]
    # one changelog message per partition per chunk, to that partition, in the wire format
    assert [(p, k) for p, k, _ in opened.table.sent] == [(0, b"0:10-11"), (3, b"3:5-5")]
    assert orjson.loads(opened.table.sent[0][2] or b"") == {
        "e": [["a", 10, 0, "d", T0], ["b", 11, 2, "d", T0]]
    }
    # faust sees the chunk entries only: the index families stay out of the table
    assert chunk_keys(opened.store) == [b"0:10-11", b"3:5-5"]


def test_of_one_keys_two_entries_in_a_chunk_the_later_answers(opened: Opened) -> None:
    """A chunk's index entries are put in the order of their key hashes (faster into the
    memtable); two entries for one key (its first copy past the horizon, metered again)
    keep their record order, so the later one is the key's entry, as a restore reads it."""
    keys = [f"k{n}" for n in range(40)]
    opened.seen.put_many(
        [
            ("dup", rec(0, 10)),
            *((key, rec(0, 11 + n)) for n, key in enumerate(keys)),
            ("dup", rec(0, 60, T0 + 5, digest="later")),
        ]
    )
    assert opened.seen.get("dup") == rec(0, 60, T0 + 5, digest="later")
    assert [opened.seen.get(key) for key in keys] == [rec(0, 11 + n) for n in range(40)]


def test_purge_drops_chunks_past_the_horizon_and_forgets_their_keys(opened: Opened) -> None:
    opened.seen.put_many([("old", rec(0, 1, 1_000)), ("mid", rec(0, 2, 4_000))])
    opened.seen.put_many([("new", rec(0, 3, 9_000)), ("x", rec(0, 4, 2_000))])
    opened.seen.put_many([("other", rec(2, 7, 3_000))])
    assert opened.seen.purge(5_000) == 3
    assert [opened.seen.get(k) for k in ("old", "mid", "other")] == [None, None, None]
    assert opened.seen.get("new") == rec(0, 3, 9_000)
    assert opened.seen.get("x") == rec(0, 4, 2_000)  # its chunk holds a newer event
    assert chunk_keys(opened.store) == [b"0:3-4"]
    tombstones = [(p, k) for p, k, v in opened.table.sent if v is None]
    assert sorted(tombstones) == [(0, b"0:1-2"), (2, b"2:7-7")]
    assert opened.seen.purge(5_000) == 0


def test_a_replayed_key_survives_the_purge_of_its_older_chunk(opened: Opened) -> None:
    """A record re-read after a crash is recorded again in a new chunk; purging the
    first chunk must not forget the key the second one still holds."""
    opened.seen.put_many([("k", rec(1, 5, 1_000)), ("gone", rec(1, 6, 1_000))])
    opened.seen.put_many([("k", rec(1, 5, 1_000)), ("late", rec(1, 9, 8_000))])
    assert opened.seen.purge(5_000) == 2
    assert opened.seen.get("k") == rec(1, 5, 1_000)
    assert opened.seen.get("gone") is None


def test_overwriting_a_chunk_unindexes_the_keys_it_no_longer_holds(opened: Opened) -> None:
    opened.table.data[b"0:1-2"] = orjson.dumps({"e": [["a", 1, 0, "d", T0], ["b", 2, 0, "d", T0]]})
    opened.table.data[b"0:1-2"] = orjson.dumps(
        {"e": [["a", 1, 0, "d", T0 + 1], ["c", 2, 0, "d", T0]]}
    )
    assert opened.seen.get("a") == rec(0, 1, T0 + 1)
    assert opened.seen.get("b") is None
    assert opened.seen.get("c") == rec(0, 2)
    assert opened.store.expired(T0 + 2) == [(b"0:1-2", 0, 2)]  # one expiry entry, the new one


def test_entries_of_older_workers_are_read_and_purged(opened: Opened) -> None:
    legacy = b"ns\x1fs\x1fold"
    restore(opened.store, Message(3, 0, legacy, b"3:12:1000:abc"))
    assert opened.seen.get("ns\x1fs\x1fold") == SeenRecord(3, 12, "abc", 1_000, 0)
    assert opened.seen.purge(2_000) == 1
    assert opened.seen.get("ns\x1fs\x1fold") is None
    assert [(p, k, v) for p, k, v in opened.table.sent] == [(3, legacy, None)]


def test_a_restore_indexes_like_the_writer_and_applies_tombstones(opened: Opened) -> None:
    chunk = orjson.dumps({"e": [["a", 40, 0, "h", T0], ["b", 41, 1, "h", T0]]})
    restore(
        opened.store,
        Message(2, 0, b"2:40-41", chunk),
        Message(2, 1, b"2:42-42", orjson.dumps({"e": [["c", 42, 0, "h", T0]]})),
        Message(2, 2, b"2:40-41", None),
    )
    assert opened.seen.get("a") is None
    assert opened.seen.get("c") == SeenRecord(2, 42, "h", T0, 0)
    assert opened.store.persisted_offset(TP(opened.topic, 2)) == 2
    assert chunk_keys(opened.store) == [b"2:42-42"]


def test_a_write_larger_than_an_entry_is_recorded_as_entries_cut_between_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ClickHouse write may hold more events than a changelog entry: its keys go out as
    several entries of at most ``ENTRY_EVENTS`` (a bigger record alone), each answered
    from disk, and a store restored from those messages answers the same."""
    monkeypatch.setattr(table_module, "ENTRY_EVENTS", 10)
    opened = open_store(tmp_path / "written")
    sizes = {1: 4, 2: 4, 3: 4, 4: 12, 5: 1}  # events per record (offset) on partition 0
    kept = [(f"k{o}-{i}", rec(0, o, T0 + o, i)) for o, n in sizes.items() for i in range(n)]
    opened.seen.put_many([*kept, ("other", rec(2, 9))])

    sent = opened.table.sent
    assert [(p, k) for p, k, _ in sent] == [
        (0, b"0:1-2"),  # 8 events: record 3 would make 12
        (0, b"0:3-3"),
        (0, b"0:4-4"),  # 12 events: a record is never cut
        (0, b"0:5-5"),
        (2, b"2:9-9"),
    ]
    assert [len(orjson.loads(v or b"")["e"]) for _, _, v in sent] == [8, 4, 12, 1, 1]
    keys = [key for key, _ in kept]
    assert opened.seen.get_many(keys) == [record for _, record in kept]

    again = open_store(tmp_path / "restored")
    restore(
        again.store,
        *(Message(p, n, k, v) for n, (p, k, v) in enumerate(sent) if p is not None),
    )
    assert again.seen.get_many(keys) == [record for _, record in kept]
    assert chunk_keys(again.store) == chunk_keys(opened.store)


def test_a_reopened_store_answers_from_disk_and_keeps_its_offsets(tmp_path: Path) -> None:
    first = open_store(tmp_path)
    first.seen.put_many([(f"k{i}", rec(i % 4, i, T0 + i)) for i in range(2_000)])
    restore(
        first.store, Message(1, 7, b"1:5000-5000", orjson.dumps({"e": [["r", 5000, 0, "h", T0]]}))
    )
    first.store.close()

    again = open_store(tmp_path)  # as after a restart: nothing in memory, nothing replayed
    for partition in range(4):
        again.store.persisted_offset(TP(again.topic, partition))  # what recovery does first
    assert again.store.persisted_offset(TP(again.topic, 1)) == 7
    assert again.seen.get("k1999") == rec(3, 1999, T0 + 1999)
    assert again.seen.get("r") == SeenRecord(1, 5000, "h", T0, 0)
    assert again.seen.get_many([f"k{i}" for i in range(2_000)]) == [
        rec(i % 4, i, T0 + i) for i in range(2_000)
    ]
    # its key filter, built from the chunk entries on disk, holds every one of them
    keys = index_filter(again.store)
    assert keys.added == 2_001
    assert all(keys.may_contain(seen_codec.key_hash(f"k{i}".encode())) for i in range(2_000))
    assert again.seen.get("r") == SeenRecord(1, 5000, "h", T0, 0)


def flush_all(store: SeenIndexStore) -> None:
    """Every family of every database into table files."""
    index = store._opened_index()
    for family in (index.seen, index.chunks, index.expiry, *store._dbs.values()):
        family.flush()


def test_the_worker_reports_the_store_on_disk_and_in_memory_once_its_index_is_open(
    opened: Opened,
) -> None:
    """``streams.app.report_store`` sets the dedupe gauges from RocksDB's own figures
    (and the key filter's size), and leaves them alone (never opening the index for it)
    while the index is closed."""
    from prometheus_client import REGISTRY

    from streams import app, metrics

    def gauge(name: str) -> float | None:
        return REGISTRY.get_sample_value(name)

    for g in (
        metrics.DEDUPE_KEYS,
        metrics.DEDUPE_SST_BYTES,
        metrics.DEDUPE_PENDING_COMPACTION_BYTES,
    ):
        g.set(-1)
    app.report_store(opened.seen)  # not open yet: nothing read, nothing opened
    assert opened.store._index is None
    assert gauge("meterline_stream_dedupe_keys") == -1

    opened.seen.put_many([(f"k{i}", rec(i % 4, i, T0 + i)) for i in range(3_000)])
    app.report_store(opened.seen)
    assert gauge("meterline_stream_dedupe_keys") == 3_000  # in memtables: exact
    assert gauge("meterline_stream_dedupe_sst_bytes") == 0  # nothing flushed yet
    assert gauge("meterline_stream_dedupe_pending_compaction_bytes") == 0

    def memory(part: str) -> float:
        figure = REGISTRY.get_sample_value("meterline_stream_dedupe_memory_bytes", {"part": part})
        assert figure is not None, part
        return figure

    memtables = memory("memtables")
    assert 3_000 * 16 < memtables <= memory("block_cache")  # memtables are charged to it
    assert memory("table_readers") == 0  # no table file yet

    flush_all(opened.store)
    app.report_store(opened.seen)
    stats = opened.store.store_stats()
    assert stats is not None
    assert 3_000 * 16 < stats.sst_bytes == gauge("meterline_stream_dedupe_sst_bytes")
    assert gauge("meterline_stream_dedupe_keys") == stats.keys > 0
    assert memory("memtables") < memtables  # flushed to table files, whose readers
    assert memory("table_readers") == stats.memory["table_readers"] > 0  # hold their index
    keys = index_filter(opened.store)  # the key filter, built from the chunk entries
    app.report_store(opened.seen)
    assert memory("key_filter") == keys.nbytes == opened.store.keys.nbytes > 0

    opened.store.close()
    assert opened.store.store_stats() is None
    app.report_store(opened.seen)  # closed: the gauges keep their last figures
    assert gauge("meterline_stream_dedupe_sst_bytes") == stats.sst_bytes


def test_building_the_key_filter_reads_around_the_block_cache(opened: Opened) -> None:
    """The filter's build reads every chunk entry once: the block cache keeps what the
    look-ups read, not those entries (nor does the worker's memory grow by them)."""
    opened.seen.put_many([(f"k{i}", rec(i % 4, i, T0 + i)) for i in range(100_000)])
    index = opened.store._opened_index()
    index_filter(opened.store)
    flush_all(opened.store)  # the chunk entries in table files, read through the cache or not
    cache = opened.store.rocksdb_options.cache
    before = cache.get_usage()
    opened.store.keys.close()
    opened.store.keys.start(index)  # a rebuild, as when the filter outgrows its keys
    keys = index_filter(opened.store)
    assert keys.added == 100_000
    assert cache.get_usage() - before < 64 * 1024  # 1.6 MB of hashes were read


def test_the_worker_keeps_the_dedupe_filters_in_its_cache_when_the_settings_say(
    tmp_path: Path,
) -> None:
    """``METERLINE_WORKER_DEDUPE_BOUNDED_MEMORY``: the table files' filters and indexes go
    to the block cache (``METERLINE_WORKER_DEDUPE_CACHE_MB``) instead of each file's own
    memory, which is what grows with the keys.  Nothing connects: the worker is built."""
    from schemas.settings import Settings
    from streams.app import create_worker
    from tests.streams.sink_kit import METERS

    readers = {}
    for bounded in (False, True):
        settings = Settings().model_copy(
            update={
                "worker_data_dir": str(tmp_path / str(bounded)),
                "worker_dedupe_cache_mb": 64,
                "worker_dedupe_bounded_memory": bounded,
            }
        )
        store = create_worker(settings, METERS).store.table.data
        assert isinstance(store, SeenIndexStore)
        assert store.rocksdb_options.limits == StoreLimits(
            block_cache_bytes=64 << 20, index_and_filters_in_cache=bounded
        )
        chunk = {"e": [[f"k{i}", i, 0, "h", T0] for i in range(20_000)]}
        store[b"0:0-19999"] = orjson.dumps(chunk)  # as a restore writes a chunk
        flush_all(store)
        stats = store.store_stats()
        assert stats is not None
        assert stats.keys == 20_000
        readers[bounded] = stats.memory["table_readers"]
        store.close()
    assert readers[True] < readers[False] / 2, readers


def test_bounded_memory_takes_effect_at_a_restart_on_the_files_already_written(
    tmp_path: Path,
) -> None:
    """The setting is read as the store opens: a store written without it and reopened
    with it keeps its filters in the cache from then on, its old table files too, and
    every key still answers; and back."""
    readers: list[int] = []
    for in_cache in (False, True, False):
        opened = open_store(
            tmp_path,
            limits=StoreLimits(block_cache_bytes=64 << 20, index_and_filters_in_cache=in_cache),
        )
        if not readers:  # written once, without the setting
            opened.seen.put_many([(f"k{i}", rec(i % 4, i, T0 + i)) for i in range(20_000)])
            flush_all(opened.store)
        assert opened.seen.get("k123") == rec(3, 123, T0 + 123)
        assert opened.seen.get("k19999") == rec(3, 19_999, T0 + 19_999)
        stats = opened.store.store_stats()
        assert stats is not None
        readers.append(stats.memory["table_readers"])
        opened.store.close()
        del opened
        gc.collect()  # the handles go with the store, and the database's lock with them
    unbounded, bounded, again = readers
    assert bounded < unbounded / 2 < again, readers


def test_a_hash_collision_never_answers_for_another_key(
    opened: Opened, monkeypatch: pytest.MonkeyPatch
) -> None:
    def same(key: bytes) -> bytes:
        return b"\0" * 16

    monkeypatch.setattr(seen_store, "key_hash", same)  # look-ups
    monkeypatch.setattr(seen_codec, "key_hash", same)  # writes, through the reference
    monkeypatch.setattr(table_module, "encode_chunk", seen_codec._encode_chunk)
    monkeypatch.setattr(seen_filter, "KeyFilter", None)  # the look-up reads the entry
    opened.seen.put_many([("first", rec(0, 1))])
    assert opened.seen.get("first") == rec(0, 1)
    assert opened.seen.get("second") is None  # same hash, different key: a miss
    assert opened.seen.get_many(["second", "first"]) == [None, rec(0, 1)]


def test_a_revoked_partition_is_written_only_to_the_changelog_and_not_purged(
    opened: Opened,
) -> None:
    opened.seen.put_many([("a", rec(0, 1)), ("b", rec(1, 1))])
    p0, p1 = TP(opened.topic, 0), TP(opened.topic, 1)
    restore(opened.store, Message(0, 3, b"0:9-9", orjson.dumps({"e": [["z", 9, 0, "d", T0]]})))

    asyncio.run(opened.store.on_rebalance({p1}, {p0}, set()))
    assert 0 not in opened.store._dbs  # closed on revocation
    # what the disk knows of partition 0 still answers: true, if perhaps not the newest
    assert opened.seen.get("a") == rec(0, 1)
    assert opened.seen.get("z") == SeenRecord(0, 9, "d", T0, 0)
    assert opened.seen.get("b") == rec(1, 1)
    assert opened.store.expired(T0 + 1) == [(b"1:1-1", 1, 1)]  # only owned chunks purge
    opened.seen.put_many([("late", rec(0, 2))])  # a batch finishing through the rebalance
    assert opened.table.sent[-1][:2] == (0, b"0:2-2")  # the changelog has it
    opened.store.set_persisted_offset(p0, 4)  # and its acknowledgement comes in
    assert 0 not in opened.store._dbs  # neither reached the local state
    assert opened.seen.get("late") is None

    # the partition comes back at the offset applied before; the restore replays the late
    # write (here at offset 4) with whatever the other owner wrote meanwhile
    assert opened.store.persisted_offset(p0) == 3
    asyncio.run(opened.store.on_rebalance({p0, p1}, set(), {p0}))
    restore(opened.store, Message(0, 4, b"0:2-2", orjson.dumps({"e": [["late", 2, 0, "d", T0]]})))
    assert opened.seen.get("late") == rec(0, 2)
    assert opened.store.persisted_offset(p0) == 4


def test_an_older_workers_entry_on_another_changelog_partition_is_purged(
    opened: Opened,
) -> None:
    """Entries of older workers name the record's partition, which need not be the
    changelog partition they were written to: the purge must still forget the key."""
    restore(opened.store, Message(1, 0, b"ns\x1fs\x1fx", b"3:12:1000:abc"))
    assert opened.seen.get("ns\x1fs\x1fx") == SeenRecord(3, 12, "abc", 1_000, 0)
    assert opened.seen.purge(2_000) == 1
    assert opened.seen.get("ns\x1fs\x1fx") is None
    assert opened.table.sent == [(1, b"ns\x1fs\x1fx", None)]
    assert opened.store.expired(2_000) == []


def test_an_index_deleted_by_hand_makes_the_partitions_restore_anew(tmp_path: Path) -> None:
    first = open_store(tmp_path)
    first.seen.put_many([("a", rec(2, 1))])
    restore(first.store, Message(2, 5, b"2:7-7", orjson.dumps({"e": [["b", 7, 0, "d", T0]]})))
    first.store.close()
    shutil.rmtree(next(tmp_path.rglob("dedupe-index.db")))
    again = open_store(tmp_path)
    # no persisted offset: Faust restores partition 2 from the start of its changelog
    assert again.store.persisted_offset(TP(again.topic, 2)) is None
    assert chunk_keys(again.store) == []


def test_an_unreadable_entry_is_stored_but_not_indexed(
    opened: Opened, caplog: pytest.LogCaptureFixture
) -> None:
    restore(opened.store, Message(0, 0, b"0:1-1", b"{not json"))
    assert chunk_keys(opened.store) == [b"0:1-1"]
    assert opened.seen.get("anything") is None
    assert "cannot be read" in caplog.text


def test_each_worker_sharing_a_data_directory_gets_its_own_slot(tmp_path: Path) -> None:
    assert claim_slot(tmp_path) == tmp_path / "slot-0"
    assert claim_slot(tmp_path) == tmp_path / "slot-1"  # held: the next one


def test_a_slot_comes_free_when_its_process_exits(tmp_path: Path) -> None:
    code = (
        "import sys; from pathlib import Path; from streams.local_state import claim_slot; "
        "print(claim_slot(Path(sys.argv[1])))"
    )
    child = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=True
    )
    assert child.stdout.strip() == str(tmp_path / "slot-0")
    assert claim_slot(tmp_path) == tmp_path / "slot-0"  # a restarted worker gets it back


CRASH = """
import os, sys
from pathlib import Path
from tests.streams.test_seen_store import open_store, rec
opened = open_store(Path(sys.argv[1]))
opened.seen.put_many([("a", rec(1, 1))])
os._exit(0)  # no close: as a SIGKILL leaves it
"""


def test_a_crash_keeps_the_state_unless_the_host_restarted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash() -> None:
        subprocess.run([sys.executable, "-c", CRASH, str(tmp_path)], check=True, cwd=ROOT)

    crash()
    same_boot = open_store(tmp_path)
    assert same_boot.seen.get("a") == rec(1, 1)  # the write-ahead log brought it back
    same_boot.store.close()

    crash()
    monkeypatch.setattr(seen_options, "boot_id", lambda: b"another boot")
    rebooted = open_store(tmp_path)
    assert rebooted.seen.get("a") is None  # unsynced logs are not trusted: restore anew
    assert rebooted.store.persisted_offset(TP(rebooted.topic, 1)) is None
    rebooted.seen.put_many([("b", rec(1, 2))])
    rebooted.store.close()

    monkeypatch.setattr(seen_options, "boot_id", lambda: b"a third boot")
    after_clean_close = open_store(tmp_path)  # in yet another boot, but closed cleanly
    assert after_clean_close.seen.get("b") == rec(1, 2)


class FailingWrites:
    """A database whose writes fail (a crash at that point, as far as the store sees)."""

    def __init__(self, db: Any) -> None:
        self.db = db

    def write(self, *_: Any) -> None:
        raise OSError("the process died here")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.db, name)


def fail_writes(store: SeenIndexStore, where: str) -> Any:
    """Make one database's writes fail; returns a function undoing it."""
    if where == "index":
        index = store._opened_index()
        store._index = index._replace(db=FailingWrites(index.db))  # type: ignore[arg-type]
        return lambda: setattr(store, "_index", index)
    db = store._dbs[0]
    store._dbs[0] = FailingWrites(db)
    return lambda: store._dbs.__setitem__(0, db)


@pytest.mark.parametrize("failing", ["index", "table"])
def test_a_write_cut_short_never_hides_a_recorded_key(opened: Opened, failing: str) -> None:
    opened.seen.put_many([("warm", rec(0, 0))])  # opens both databases
    undo = fail_writes(opened.store, failing)
    with pytest.raises(OSError, match="died"):
        opened.seen.put_many([("k", rec(0, 1))])
    undo()
    # either nothing was recorded, or the index was written first and knows the key
    assert opened.seen.get("k") == (rec(0, 1) if failing == "table" else None)


@pytest.mark.parametrize("failing", ["index", "table"])
def test_a_purge_cut_short_is_finished_by_the_next(opened: Opened, failing: str) -> None:
    opened.seen.put_many([("old", rec(0, 1, 1_000))])
    undo = fail_writes(opened.store, failing)
    with pytest.raises(OSError, match="died"):
        opened.seen.purge(5_000)
    undo()
    opened.seen.purge(5_000)
    assert opened.seen.get("old") is None
    assert chunk_keys(opened.store) == []
    assert opened.store.expired(5_000) == []


def test_a_purge_in_slices_drops_the_oldest_first_and_finishes(opened: Opened) -> None:
    for n in range(5):  # five chunks of partition 1, the oldest first
        opened.seen.put_many([(f"k{n}", rec(1, n, 1_000 + n))])
    opened.seen.put_many([("fresh", rec(1, 9, 9_000))])
    assert opened.seen.purge(5_000, max_entries=2) == 2
    assert [opened.seen.get(f"k{n}") is None for n in range(5)] == [True, True, False, False, False]
    assert opened.seen.purge(5_000, max_entries=2) == 2
    assert opened.seen.purge(5_000, max_entries=2) == 1
    assert opened.seen.purge(5_000, max_entries=2) == 0
    assert opened.seen.get("fresh") == rec(1, 9, 9_000)


def index_contents(store: SeenIndexStore) -> list[list[tuple[bytes, bytes]]]:
    index = store._opened_index()
    return [
        cast(list[tuple[bytes, bytes]], list(family.items()))
        for family in (index.seen, index.chunks, index.expiry)
    ]


def test_the_writer_indexes_prepared_entries_exactly_as_a_restore_reads_the_bytes(
    tmp_path: Path,
) -> None:
    """The writer indexes the entries it prepared instead of reading the chunk back: the
    index must equal one a restore builds from the changelog bytes alone."""
    writer = open_store(tmp_path / "writer")
    writer.seen.put_many(
        [("a", rec(0, 10)), ("b", rec(0, 11, index=2)), ("c", rec(3, 5, T0 + 9, digest="x"))]
    )
    writer.seen.put_many([("d", rec(0, 12, T0 + 5)), ("a", rec(0, 13, T0 + 7, digest="y"))])
    restored = open_store(tmp_path / "restored")
    restore(
        restored.store,
        *(Message(p or 0, n, k, v) for n, (p, k, v) in enumerate(writer.table.sent)),
    )
    assert index_contents(writer.store) == index_contents(restored.store)
    assert writer.seen.get("a") == rec(0, 13, T0 + 7, digest="y")


def test_prepared_entries_are_ignored_unless_the_written_bytes_are_theirs(
    opened: Opened,
) -> None:
    value = orjson.dumps({"e": [["real", 10, 0, "d", T0]]})
    bogus = index_entries([("bogus", 0, 99, 0, "z", T0)], b"0:99-99")
    opened.store.prepare(value + b" ", bogus)
    opened.table.put_at(b"0:10-10", value, 0)
    assert opened.seen.get("real") == rec(0, 10)
    assert opened.seen.get("bogus") is None
    # entries prepared for a write that went to the changelog only (a partition not
    # ours) are not kept for the next write, even of equal bytes
    opened.store._assigned = {0}
    again = orjson.dumps({"e": [["again", 11, 0, "d", T0]]})
    opened.store.prepare(again, bogus)
    opened.table.put_at(b"1:11-11", again, 1)
    opened.table.put_at(b"0:11-11", again, 0)
    assert opened.seen.get("again") == rec(0, 11)
    assert opened.seen.get("bogus") is None


def test_each_restored_batch_reports_the_messages_it_applied(tmp_path: Path) -> None:
    applied: list[int] = []
    opened = open_store(tmp_path, on_restored=applied.append)
    store = opened.store
    chunk = orjson.dumps({"e": [["a", 40, 0, "h", T0]]})
    restore(store, Message(2, 0, b"2:40-40", chunk), Message(2, 1, b"2:40-40", None))
    restore(store, Message(1, 0, b"1:7-7", orjson.dumps({"e": [["b", 7, 0, "h", T0]]})))
    assert applied == [2, 1]
    assert opened.seen.get("b") == SeenRecord(1, 7, "h", T0, 0)


# -- the index's key filter (meterline_native.KeyFilter) ------------------------------------


class CountingReads:
    """An index column family whose point reads are counted."""

    def __init__(self, family: Any) -> None:
        self.family, self.reads = family, 0

    def get(self, key: bytes) -> Any:
        self.reads += 1
        return self.family.get(key)

    def __getattr__(self, name: str) -> Any:  # flush, close, iter: the family's own
        return getattr(self.family, name)


def index_filter(store: SeenIndexStore) -> Any:
    """The store's key filter, once the build its index started when it opened is done."""
    store._opened_index()
    keys = store.keys.wait(timeout=60)
    assert keys is not None, (
        "no key filter: the native module is not installed (`make install` builds it "
        "from schemas/native), or its build failed (see the log)"
    )
    return keys


def count_reads(store: SeenIndexStore) -> CountingReads:
    index = store._opened_index()
    counting = CountingReads(index.seen)
    store._index = index._replace(seen=cast(Rdict, counting))
    return counting


def test_a_key_the_filter_rules_out_reads_no_rocksdb(opened: Opened) -> None:
    index_filter(opened.store)
    opened.seen.put_many([(f"k{i}", rec(0, i)) for i in range(100)])
    reads = count_reads(opened.store)
    assert [opened.seen.get(f"new{i}") for i in range(1_000)] == [None] * 1_000
    assert reads.reads < 50  # a false "maybe" is ~1 % at capacity, far less here
    assert [opened.seen.get(f"k{i}") for i in range(100)] == [rec(0, i) for i in range(100)]
    assert reads.reads >= 100  # every key it holds is looked up on disk


def test_a_filter_past_its_size_is_rebuilt_without_the_purged_keys(opened: Opened) -> None:
    store = opened.store
    first = index_filter(store)
    capacity = first.capacity
    opened.seen.put_many([(f"old{i}", rec(0, i, 1_000)) for i in range(capacity // 2)])
    assert opened.seen.purge(5_000) == capacity // 2  # gone from the index, not the filter
    assert store.keys.current is first
    batch = 10_000
    for start in range(0, capacity // 2 + batch, batch):
        opened.seen.put_many([(f"new{start + i}", rec(1, start + i, 9_000)) for i in range(batch)])
    rebuilt = store.keys.wait(timeout=60)  # built in a thread, put in place by a write
    assert rebuilt is not first
    assert rebuilt is not None
    assert rebuilt.added < first.added  # the purged keys are not in it
    new_keys = [f"new{i}" for i in range(capacity // 2 + batch)]
    assert all(rebuilt.may_contain(seen_codec.key_hash(k.encode())) for k in new_keys)
    assert opened.seen.get(new_keys[0]) == rec(1, 0, 9_000)
    assert opened.seen.get(new_keys[-1]) == rec(1, len(new_keys) - 1, 9_000)
    assert opened.seen.get("old0") is None


def test_keys_indexed_while_the_filter_is_built_are_in_it(tmp_path: Path) -> None:
    """The build reads a snapshot of the chunk entries in a thread; what is indexed
    meanwhile is fed to it by the writes, so the finished filter misses no key."""
    first = open_store(tmp_path)
    first.seen.put_many([(f"k{i}", rec(i % 4, i)) for i in range(200_000)])
    first.store.close()
    again = open_store(tmp_path)
    store = again.store
    store._opened_index()
    assert store.keys.building
    assert store.keys.current is None  # none until the build is done: look-ups read RocksDB
    later = [(f"later{i}", rec(i % 4, 300_000 + i)) for i in range(5_000)]
    again.seen.put_many(later)  # most likely while the thread is still reading
    assert again.seen.get("k7") == rec(3, 7)
    keys = index_filter(store)
    assert keys.added >= 205_000
    for key in ("k0", "k199999", *(k for k, _ in later)):
        assert keys.may_contain(seen_codec.key_hash(key.encode())), key
    assert again.seen.get_many([k for k, _ in later]) == [r for _, r in later]


def test_closing_during_a_build_stops_it_first(tmp_path: Path) -> None:
    first = open_store(tmp_path)
    first.seen.put_many([(f"k{i}", rec(i % 4, i)) for i in range(200_000)])
    first.store.close()
    again = open_store(tmp_path)
    again.store._opened_index()
    build = again.store.keys._build
    assert build is not None
    again.store.close()  # cancels and joins the thread before the index closes
    assert build.done.is_set()
    assert not again.store.keys.building
    assert again.store.keys.current is None
    third = open_store(tmp_path)  # the state is intact
    assert third.seen.get("k199999") == rec(3, 199_999)
    assert index_filter(third.store).added == 200_000


TINY_FILTER = StoreLimits(
    block_cache_bytes=8 << 20,
    memtable_bytes=4 << 20,
    write_buffer_bytes=1 << 20,
    key_filter_bytes=10_000,  # 8,000 keys
)
"""Limits whose key filter holds 8,000 keys at most."""


def test_no_filter_past_its_memory_limit(tmp_path: Path) -> None:
    """Past ``StoreLimits.key_filter_bytes`` there is no filter: look-ups read RocksDB."""
    first = open_store(tmp_path, limits=TINY_FILTER)
    first.seen.put_many([(f"k{i}", rec(i % 4, i)) for i in range(20_000)])
    first.store.close()
    again = open_store(tmp_path, limits=TINY_FILTER)
    again.store._opened_index()
    assert not again.store.keys.building
    assert again.store.keys.wait() is None
    assert again.seen.get("k19999") == rec(3, 19_999)
    assert again.seen.get("unknown") is None


def test_the_filter_comes_back_once_the_purge_brings_the_keys_under_its_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="streams.seen_filter")
    first = open_store(tmp_path, limits=TINY_FILTER)
    first.seen.put_many([(f"old{i}", rec(i % 4, i, ingested=1_000)) for i in range(20_000)])
    first.seen.put_many([(f"new{i}", rec(i % 4, 30_000 + i, ingested=9_000)) for i in range(3_000)])
    first.store.close()
    monkeypatch.setattr(seen_filter, "RETRY_SECONDS", 0.0)  # every write counts the keys
    again = open_store(tmp_path, limits=TINY_FILTER)
    keys = again.store.keys
    again.store._opened_index()
    assert keys.current is None  # over the limit
    assert not keys.building
    assert "look-ups read RocksDB until the purge brings the keys under 8000" in caplog.text
    again.seen.put_many([("one-more", rec(0, 40_000, ingested=9_000))])
    assert keys.current is None  # still over it: no build
    assert not keys.building

    assert again.seen.purge(5_000) == 20_000
    again.store._opened_index().seen.compact_range(None, None)  # the count RocksDB reports
    again.seen.put_many([("after", rec(1, 40_001, ingested=9_000))])  # the write that checks
    assert keys.building or keys.current is not None
    rebuilt = keys.wait(timeout=60)
    assert rebuilt is not None
    assert "back under the key filter's limit" in caplog.text
    for key in ("new0", "new2999", "one-more", "after"):
        assert rebuilt.may_contain(seen_codec.key_hash(key.encode())), key
    assert again.seen.get("new2999") == rec(3, 32_999, ingested=9_000)
    assert again.seen.get("old7") is None


class UnreadableChunks:
    """A ``chunks`` family whose iteration fails."""

    def iter(self) -> Any:
        raise OSError("disk read error")


def test_a_failed_build_leaves_no_filter_and_look_ups_on_rocksdb(
    opened: Opened, caplog: pytest.LogCaptureFixture
) -> None:
    store = opened.store
    index_filter(store)
    opened.seen.put_many([("a", rec(0, 1))])
    store.keys.start(store._opened_index()._replace(chunks=cast(Rdict, UnreadableChunks())))
    assert store.keys.wait(timeout=60) is None
    assert "building the dedupe index filter failed" in caplog.text
    opened.seen.put_many([("b", rec(0, 2))])
    assert not store.keys.building  # no filter, so nothing to rebuild
    assert opened.seen.get("a") == rec(0, 1)
    assert opened.seen.get("b") == rec(0, 2)
    assert opened.seen.get("c") is None
