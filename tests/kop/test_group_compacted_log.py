"""CompactedLog: writes, replay, snapshots (incl. in-flight writes, multi-part and interrupted
snapshots), damaged entries and failed writes — on a fake ledger, then on the real stack."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import pytest_twisted
from test_group_fakes import FakeLedger, StorageDown, has_fired, result_of
from twisted.internet import defer

from kop.broker import ReplicationSettings
from kop.configs import BROKER_DEFAULTS
from kop.groups.compacted_log import (
    KIND_CHANGES,
    KIND_SNAPSHOT_PART,
    CompactedLog,
    CompactedLogError,
    EntryHeader,
    decode_entry,
    encode_entry,
)
from kop.groups.storage import ManagedLedgerGroupStorage
from kop.naming import Namespace


def opened(ledger: FakeLedger, **options) -> CompactedLog:
    log = CompactedLog(ledger, **options)  # type: ignore[arg-type]
    result_of(defer.ensureDeferred(log.load()))
    return log


def append_raw(ledger: FakeLedger, header: EntryHeader, changes) -> None:
    result_of(ledger.append(encode_entry(header, changes), len(ledger.entries)))


# -- entry format ---------------------------------------------------------------------------------


def test_entries_round_trip() -> None:
    changes = [(b"k1", b"v1"), (b"k2", None), (b"", b"")]
    header = EntryHeader(KIND_SNAPSHOT_PART, snapshot_id=3, part_index=1, part_count=2)
    assert decode_entry(encode_entry(header, changes), "here") == (header, changes)


@pytest.mark.parametrize("damage, complaint", [
    (lambda data: data[:10], "shorter than its header"),
    (lambda data: bytes([2]) + data[1:], "format version 2"),
    (lambda data: data[:1] + bytes([9]) + data[2:], "unknown kind 9"),
    (lambda data: data[:-1] + bytes([data[-1] ^ 1]), "checksum mismatch"),
])
def test_damaged_entries_are_refused_with_their_position(damage, complaint) -> None:
    data = encode_entry(EntryHeader(KIND_CHANGES), [(b"key", b"value")])
    with pytest.raises(CompactedLogError, match=complaint) as raised:
        decode_entry(damage(data), "ledger 7 entry 3")
    assert "ledger 7 entry 3" in str(raised.value)


def test_a_body_that_lies_about_its_lengths_is_refused() -> None:
    import struct

    import crc32c

    body = struct.pack(">I", 2) + struct.pack(">I", 1) + b"k" + struct.pack(">i", 100) + b"v"
    header = struct.pack(">BBIIII", 1, KIND_CHANGES, crc32c.crc32c(body), 0, 0, 0)
    with pytest.raises(CompactedLogError, match="truncated"):
        decode_entry(header + body, "e")


# -- writing and replaying --------------------------------------------------------------------------


def test_writes_are_visible_once_durable_and_replay_rebuilds_the_table() -> None:
    ledger = FakeLedger()
    log = opened(ledger)
    result_of(log.write([(b"a", b"1"), (b"b", b"2")]))
    ledger.hold = True
    pending = log.write([(b"a", None), (b"c", b"3")])
    assert dict(log.live) == {b"a": b"1", b"b": b"2"} and not has_fired(pending)
    ledger.release()
    result_of(pending)
    assert dict(log.live) == {b"b": b"2", b"c": b"3"}
    assert dict(opened(ledger).live) == {b"b": b"2", b"c": b"3"}


def test_a_failed_write_fails_the_log_for_good() -> None:
    ledger = FakeLedger()
    log = opened(ledger)
    ledger.fail_next_append = StorageDown("gone")
    with pytest.raises(CompactedLogError, match="gone"):
        result_of(log.write([(b"a", b"1")]))
    assert log.failed
    with pytest.raises(CompactedLogError):
        result_of(log.write([(b"b", b"2")]))
    assert ledger.entries == []


def test_replay_stops_at_a_damaged_entry_with_a_clear_error() -> None:
    ledger = FakeLedger()
    log = opened(ledger)
    result_of(log.write([(b"a", b"1")]))
    ledger.entries[0].data = b"garbage"
    with pytest.raises(CompactedLogError, match=r"entry 7:0"):
        result_of(defer.ensureDeferred(CompactedLog(ledger).load()))  # type: ignore[arg-type]


# -- snapshots --------------------------------------------------------------------------------------


def test_a_snapshot_replaces_the_history_before_it() -> None:
    ledger = FakeLedger()
    log = opened(ledger, snapshot_min_changes=10)
    for n in range(9):
        result_of(log.write([(b"counter", str(n).encode())]))
    assert log.snapshots_completed == 0
    result_of(log.write([(b"counter", b"9"), (b"other", b"x")]))
    assert log.snapshots_completed == 1
    kinds = [decode_entry(e.data, "")[0].kind for e in ledger.live_entries]
    assert kinds == [KIND_SNAPSHOT_PART]
    assert dict(opened(ledger).live) == {b"counter": b"9", b"other": b"x"}


def test_snapshots_wait_for_as_many_changes_as_live_keys() -> None:
    ledger = FakeLedger()
    log = opened(ledger, snapshot_min_changes=1)
    result_of(log.write([(str(n).encode(), b"v") for n in range(50)]))
    assert log.snapshots_completed == 1  # 50 changes >= 0 live keys
    for _ in range(49):
        result_of(log.write([(b"0", b"w")]))
    assert log.snapshots_completed == 1
    result_of(log.write([(b"0", b"w")]))
    assert log.snapshots_completed == 2


def test_large_snapshots_are_written_in_parts() -> None:
    ledger = FakeLedger()
    log = opened(ledger, snapshot_part_bytes=100)
    result_of(log.write([(f"key{n}".encode(), b"x" * 20) for n in range(30)]))
    result_of(log.snapshot())
    parts = [decode_entry(e.data, "")[0] for e in ledger.live_entries]
    assert len(parts) > 3 and [p.part_index for p in parts] == list(range(len(parts)))
    assert {p.part_count for p in parts} == {len(parts)}
    assert dict(opened(ledger).live) == dict(log.live) and len(log.live) == 30


def test_a_snapshot_covers_writes_still_in_flight() -> None:
    ledger = FakeLedger()
    log = opened(ledger)
    result_of(log.write([(b"a", b"1")]))
    ledger.hold = True
    in_flight = log.write([(b"b", b"2")])
    snapshot = log.snapshot()
    ledger.release()
    result_of(in_flight)
    result_of(snapshot)
    assert ledger.start > 0  # truncated before the snapshot, which holds b
    assert dict(opened(ledger).live) == {b"a": b"1", b"b": b"2"}


def test_an_interrupted_snapshot_is_ignored_on_replay() -> None:
    ledger = FakeLedger()
    append_raw(ledger, EntryHeader(KIND_CHANGES), [(b"a", b"1"), (b"b", b"1")])
    # Part 0 of 2 made it, part 1 did not: the process died in between.
    append_raw(ledger, EntryHeader(KIND_SNAPSHOT_PART, 5, 0, 2), [(b"a", b"1")])
    append_raw(ledger, EntryHeader(KIND_CHANGES), [(b"c", b"1")])
    # An orphan part of another snapshot, then a complete snapshot.
    append_raw(ledger, EntryHeader(KIND_SNAPSHOT_PART, 6, 1, 2), [(b"zzz", b"1")])
    assert dict(opened(ledger).live) == {b"a": b"1", b"b": b"1", b"c": b"1"}
    append_raw(ledger, EntryHeader(KIND_SNAPSHOT_PART, 7, 0, 2), [(b"x", b"1")])
    append_raw(ledger, EntryHeader(KIND_SNAPSHOT_PART, 7, 1, 2), [(b"y", b"1")])
    append_raw(ledger, EntryHeader(KIND_CHANGES), [(b"x", None)])
    log = opened(ledger)
    assert dict(log.live) == {b"y": b"1"}
    # New snapshots continue the numbering, so their parts never mix with old ones.
    result_of(log.snapshot())
    assert decode_entry(ledger.entries[-1].data, "")[0].snapshot_id == 8


# -- on the real stack ------------------------------------------------------------------------------


async def open_real_stack(data_dir):
    from storage.ledger import LedgerClient, NodePool
    from storage.managed_ledger import ManagedLedgerFactory
    from storage.metadata import open_metadata_store
    from storage.node import LocalStorageNodeClient, StorageNode

    store = open_metadata_store(str(data_dir / "metadata"))
    node = await StorageNode.open(data_dir / "storage")
    pool = NodePool.for_local_node(LocalStorageNodeClient(node))
    factory = ManagedLedgerFactory(store, LedgerClient(store, pool))
    broker = SimpleNamespace(
        store=store, ledgers=factory,
        config=SimpleNamespace(namespace=Namespace("acme", "default"),
                               replication=ReplicationSettings(),
                               settings={**BROKER_DEFAULTS, "offsets.topic.num.partitions": "3"}))

    async def close() -> None:
        await factory.close()
        await node.close()
        await store.close()

    return broker, close


@pytest_twisted.ensureDeferred
async def test_partition_logs_over_managed_ledgers_survive_reopening(tmp_path) -> None:
    broker, close = await open_real_stack(tmp_path)
    storage = ManagedLedgerGroupStorage(broker)
    assert await storage.partition_count() == 3
    log = await storage.open(1)
    assert log.ledger.name == "acme/__kafka/persistent/__consumer_offsets-partition-1"
    log = CompactedLog(log.ledger, snapshot_min_changes=50)
    await log.load()
    for n in range(300):
        await log.write([(b"offset-%d" % (n % 7), b"%d" % n)])
    assert log.snapshots_completed >= 4
    expected = dict(log.live)
    await log.close()
    await close()

    broker, close = await open_real_stack(tmp_path)
    broker.config.settings["offsets.topic.num.partitions"] = "16"  # too late: it is recorded
    storage = ManagedLedgerGroupStorage(broker)
    assert await storage.partition_count() == 3
    reopened = await storage.open(1)
    assert dict(reopened.live) == expected
    assert reopened.ledger.entry_count <= 60  # replay is bounded by the snapshots
    await reopened.close()
    await close()
