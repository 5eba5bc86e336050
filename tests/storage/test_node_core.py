"""StorageNode in-process: durability, group commit, fencing, deletes and space
reclamation, checkpoints, torn tails and corruption. Real files and fsync; no sockets."""

from __future__ import annotations

import errno
import gc
import os
import random
import threading
import time
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import defer, reactor, task

from storage.node import (
    CorruptEntryError,
    InvalidRequestError,
    JournalFailedError,
    LacResult,
    LedgerFencedError,
    NoSuchEntryError,
    NoSuchLedgerError,
    StorageFormatError,
    StorageNode,
    StorageNodeConfig,
    StorageNodeError,
)
from storage.node.records import RECORD_HEADER_BYTES

SEGMENT_BYTES = 64 * 1024


def open_node(path: Path, **config) -> defer.Deferred[StorageNode]:
    config.setdefault("segment_bytes", SEGMENT_BYTES)
    config.setdefault("gc_interval_seconds", None)
    return StorageNode.open(path, StorageNodeConfig(**config))


def payload(ledger_id: int, entry_id: int, size: int = 1000) -> bytes:
    stamp = f"{ledger_id}:{entry_id}:".encode()
    return (stamp * (size // len(stamp) + 1))[:size]


async def add_all(node: StorageNode, ledger_id: int, entry_ids, size: int = 1000) -> None:
    await defer.gatherResults([node.add_entry(ledger_id, e, e - 1, payload(ledger_id, e, size))
                               for e in entry_ids], consumeErrors=True)


async def assert_readable(node: StorageNode, ledger_id: int, entry_ids, size: int = 1000) -> None:
    for entry_id in entry_ids:
        assert await node.read_entry(ledger_id, entry_id) == payload(ledger_id, entry_id, size)


async def until(condition, timeout: float = 10.0) -> None:
    """Let the reactor run until `condition()` holds (polling with a deadline)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await task.deferLater(reactor, 0.001, lambda: None)


async def raises(error_type, deferred):
    with pytest.raises(error_type) as info:
        await deferred
    return info.value


def journal_files(path: Path, suffix: str = ".log") -> list[Path]:
    return sorted((path / "journal").glob(f"*{suffix}"))


def journal_bytes(path: Path) -> int:
    """Bytes of the segment files. (Index files are left out: the node writes them in a
    thread as a temporary file renamed into place, which may vanish while we list.)"""
    return sum(file.stat().st_size for file in journal_files(path))


@pytest.fixture
def node_dir(tmp_path):
    return tmp_path / "node"


@pytest_twisted.ensureDeferred
async def test_entries_read_back_and_lac_tracks_the_highest_seen(node_dir):
    node = await open_node(node_dir)
    try:
        await add_all(node, 5, range(20))
        await assert_readable(node, 5, range(20))
        assert await node.read_last_add_confirmed(5) == LacResult(18, 19)
        await raises(NoSuchLedgerError, node.read_entry(6, 0))
        await raises(NoSuchLedgerError, node.read_last_add_confirmed(6))
        await raises(NoSuchEntryError, node.read_entry(5, 20))
        await raises(InvalidRequestError, node.add_entry(5, -1, -1, b"x"))
    finally:
        await node.close()


@pytest_twisted.ensureDeferred
async def test_an_add_is_acknowledged_only_after_its_fsync_returns(node_dir, monkeypatch):
    node = await open_node(node_dir)
    real_fdatasync = os.fdatasync
    entered, release = threading.Event(), threading.Event()

    def held_fdatasync(fd):
        entered.set()
        assert release.wait(10)
        real_fdatasync(fd)

    monkeypatch.setattr(os, "fdatasync", held_fdatasync)
    try:
        first = node.add_entry(1, 0, -1, b"first")
        await until(entered.is_set)
        assert not first.called  # written, fsync in progress: not acknowledged
        # Everything arriving while that fsync runs goes out together in the next one.
        later = [node.add_entry(1, e, -1, payload(1, e)) for e in range(1, 101)]
        await task.deferLater(reactor, 0.01, lambda: None)  # give a wrong node time to misbehave
        assert not first.called and not any(d.called for d in later)
        fsyncs_before = node._journal.fsync_count
        release.set()
        await first
        await defer.gatherResults(later)
        assert node._journal.fsync_count == fsyncs_before + 2
    finally:
        release.set()
        monkeypatch.undo()
        await node.close()


@pytest_twisted.ensureDeferred
async def test_entries_arriving_together_share_one_fsync(node_dir):
    node = await open_node(node_dir, segment_bytes=16 * 1024 * 1024)
    try:
        before = node._journal.fsync_count
        await add_all(node, 1, range(500))
        assert node._journal.fsync_count - before == 1
    finally:
        await node.close()


@pytest_twisted.ensureDeferred
async def test_fencing_refuses_ordinary_adds_but_not_recovery_adds(node_dir):
    node = await open_node(node_dir)
    try:
        await add_all(node, 1, range(3))
        assert await node.read_last_add_confirmed(1, fence=True) == LacResult(1, 2)
        error = await raises(LedgerFencedError, node.add_entry(1, 3, 2, b"late writer"))
        assert "ledger 1 is fenced" in str(error)
        await node.add_entry(1, 3, 2, payload(1, 3), recovery=True)
        await assert_readable(node, 1, range(4))
        # Fencing twice is harmless; reads keep working.
        assert await node.read_entry(1, 0, fence=True) == payload(1, 0)
    finally:
        await node.close()


@pytest_twisted.ensureDeferred
async def test_fencing_an_unknown_ledger_makes_it_known_empty_and_fenced(node_dir):
    node = await open_node(node_dir)
    try:
        assert await node.read_last_add_confirmed(9, fence=True) == LacResult(-1, -1)
        await raises(LedgerFencedError, node.add_entry(9, 0, -1, b"x"))
        await raises(NoSuchEntryError, node.read_entry(9, 0, fence=True))
    finally:
        await node.close()


@pytest_twisted.ensureDeferred
async def test_a_fence_answer_includes_every_add_accepted_before_it(node_dir):
    node = await open_node(node_dir)
    try:
        adds = [node.add_entry(1, e, e - 1, payload(1, e)) for e in range(10)]
        result = await node.read_last_add_confirmed(1, fence=True)
        assert all(d.called for d in adds)
        assert result == LacResult(8, 9)
    finally:
        await node.close()


@pytest_twisted.ensureDeferred
async def test_fencing_survives_a_restart(node_dir):
    node = await open_node(node_dir)
    await add_all(node, 1, range(3))
    await node.read_last_add_confirmed(1, fence=True)
    await node.read_last_add_confirmed(2, fence=True)
    await node.close()
    node = await open_node(node_dir)
    try:
        await raises(LedgerFencedError, node.add_entry(1, 3, 2, b"x"))
        await raises(LedgerFencedError, node.add_entry(2, 0, -1, b"x"))
        assert await node.read_last_add_confirmed(2) == LacResult(-1, -1)
    finally:
        await node.close()


@pytest_twisted.ensureDeferred
async def test_a_clean_restart_loads_index_files_and_scans_nothing(node_dir):
    node = await open_node(node_dir)
    await add_all(node, 1, range(300))  # about 5 segments of 64 KiB
    await node.close()
    assert len(journal_files(node_dir)) >= 4
    assert len(journal_files(node_dir, ".idx")) == len(journal_files(node_dir))
    node = await open_node(node_dir)
    try:
        stats = node.recovery_stats
        assert stats.segments_scanned == 0 and stats.bytes_scanned == 0
        assert stats.segments_from_index == len(journal_files(node_dir))
        await assert_readable(node, 1, range(300))
        assert await node.read_last_add_confirmed(1) == LacResult(298, 299)
    finally:
        await node.close()


@pytest_twisted.ensureDeferred
async def test_a_segment_without_index_file_is_scanned_and_its_torn_tail_truncated(node_dir):
    node = await open_node(node_dir)
    await add_all(node, 1, range(100))
    await node.close()
    last = journal_files(node_dir)[-1]
    last.with_suffix(".idx").unlink()  # as after a crash: the active segment had no index yet
    intact_size = last.stat().st_size
    with open(last, "ab") as file:  # half a record: a write the crash interrupted
        file.write(os.urandom(RECORD_HEADER_BYTES + 10))
    node = await open_node(node_dir)
    try:
        stats = node.recovery_stats
        assert stats.segments_scanned == 1
        assert stats.torn_bytes_truncated == RECORD_HEADER_BYTES + 10
        assert last.stat().st_size == intact_size
        await assert_readable(node, 1, range(100))
        await add_all(node, 1, range(100, 110))
    finally:
        await node.close()
    node = await open_node(node_dir)
    try:
        await assert_readable(node, 1, range(110))
    finally:
        await node.close()


@pytest_twisted.ensureDeferred
async def test_a_journal_cut_short_mid_record_starts_with_the_records_before_the_cut(node_dir):
    node = await open_node(node_dir)
    await add_all(node, 1, range(10))
    last = node._state.location(1, 9)
    await node.close()
    segment_file = node_dir / "journal" / f"{last.segment:020d}.log"
    segment_file.with_suffix(".idx").unlink()
    os.truncate(segment_file, last.offset + last.length // 2)
    node = await open_node(node_dir)
    try:
        assert node.recovery_stats.torn_bytes_truncated == last.length // 2
        assert segment_file.stat().st_size == last.offset
        await assert_readable(node, 1, range(9))
        await raises(NoSuchEntryError, node.read_entry(1, 9))
        assert await node.read_last_add_confirmed(1) == LacResult(7, 8)
    finally:
        await node.close()


def flip_byte(path: Path, offset: int) -> None:
    with open(path, "r+b") as file:
        file.seek(offset)
        value = file.read(1)[0]
        file.seek(offset)
        file.write(bytes([value ^ 0x5A]))


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("where", ["payload", "header"])
async def test_a_corrupted_byte_fails_that_entry_only_with_a_clear_error(node_dir, where):
    node = await open_node(node_dir)
    await add_all(node, 1, range(120))
    location = node._state.location(1, 50)
    await node.close()
    segment_file = node_dir / "journal" / f"{location.segment:020d}.log"
    inside = RECORD_HEADER_BYTES + 100 if where == "payload" else 30
    flip_byte(segment_file, location.offset + inside)
    for _ in range(2):  # and again after a restart
        node = await open_node(node_dir)
        try:
            error = await raises(CorruptEntryError, node.read_entry(1, 50))
            assert "entry 50 of ledger 1" in str(error) and segment_file.name in str(error)
            await assert_readable(node, 1, [e for e in range(120) if e != 50])
        finally:
            await node.close()


@pytest_twisted.ensureDeferred
async def test_corruption_found_by_a_scan_is_kept_and_reported_on_read(node_dir):
    node = await open_node(node_dir, segment_bytes=1024 * 1024)
    await add_all(node, 1, range(20))
    location = node._state.location(1, 5)
    await node.close()
    segment_file = node_dir / "journal" / f"{location.segment:020d}.log"
    segment_file.with_suffix(".idx").unlink()
    flip_byte(segment_file, location.offset + RECORD_HEADER_BYTES + 1)
    node = await open_node(node_dir)
    try:
        assert node.recovery_stats.corrupt_entries == [(location.segment, 1, 5)]
        assert node.recovery_stats.torn_bytes_truncated == 0
        await raises(CorruptEntryError, node.read_entry(1, 5))
        await assert_readable(node, 1, [e for e in range(20) if e != 5])
    finally:
        await node.close()


@pytest_twisted.ensureDeferred
async def test_deleting_ledgers_reclaims_their_segments(node_dir):
    node = await open_node(node_dir)
    try:
        await add_all(node, 1, range(200))
        await add_all(node, 2, range(5))
        await node.delete_ledger(1)
        await raises(NoSuchLedgerError, node.read_entry(1, 0))
        await raises(NoSuchLedgerError, node.add_entry(1, 200, 199, b"late"))
        await raises(NoSuchLedgerError, node.read_last_add_confirmed(1, fence=True))
        before = journal_bytes(node_dir)
        report = await node.collect_garbage()
        assert report.segments_removed and report.bytes_reclaimed > 150 * 1000
        assert journal_bytes(node_dir) < before - 150 * 1000
        await assert_readable(node, 2, range(5))
    finally:
        await node.close()
    node = await open_node(node_dir)
    try:
        assert node.ledger_ids() == [2]
        await raises(NoSuchLedgerError, node.read_entry(1, 0))
        await assert_readable(node, 2, range(5))
    finally:
        await node.close()


@pytest_twisted.ensureDeferred
async def test_mostly_dead_segments_are_compacted_and_live_entries_survive(node_dir):
    node = await open_node(node_dir)
    try:
        for e in range(150):  # each segment: about 3 bytes of ledger 1 per byte of ledger 2
            await add_all(node, 1, range(3 * e, 3 * e + 3))
            await add_all(node, 2, [e])
        await node.delete_ledger(1)
        before = journal_bytes(node_dir)
        relocated = 0
        while (report := await node.collect_garbage()).segments_removed:
            # Each pass copies at most one segment's worth of live data.
            assert report.entries_relocated * 1000 <= SEGMENT_BYTES
            relocated += report.entries_relocated
        assert relocated >= 100
        assert journal_bytes(node_dir) < before / 2
        await assert_readable(node, 2, range(150))
    finally:
        await node.close()
    node = await open_node(node_dir)
    try:
        assert node.ledger_ids() == [2]
        await assert_readable(node, 2, range(150))
        assert await node.read_last_add_confirmed(2) == LacResult(148, 149)
    finally:
        await node.close()


@pytest_twisted.ensureDeferred
async def test_removing_a_segment_keeps_the_fences_and_deletes_it_held(node_dir):
    node = await open_node(node_dir)
    await add_all(node, 1, range(60))  # ledger 1 keeps the first segment alive
    await add_all(node, 3, range(2))  # ledger 3 will be deleted while segment 1 holds it
    await add_all(node, 2, range(60, 200))  # ledger 2: filler, deleted later
    await node.read_last_add_confirmed(4, fence=True)  # FENCE record in a later segment
    await node.delete_ledger(3)  # DELETE record in that segment too
    fence_segment = node._state.ledgers[4].fence_segment
    await add_all(node, 2, range(200, 300))
    await node.delete_ledger(2)
    await add_all(node, 5, range(70))  # move the journal on
    report = await node.collect_garbage()
    assert fence_segment in report.segments_removed
    await node.close()
    node = await open_node(node_dir)
    try:
        assert node.ledger_ids() == [1, 4, 5]
        await raises(LedgerFencedError, node.add_entry(4, 0, -1, b"x"))
        await raises(NoSuchLedgerError, node.read_entry(3, 0))
        await assert_readable(node, 1, range(60))
    finally:
        await node.close()


@pytest_twisted.ensureDeferred
async def test_an_entry_bigger_than_a_segment_gets_a_segment_of_its_own(node_dir):
    node = await open_node(node_dir)
    try:
        await add_all(node, 1, [0, 1, 2], size=3 * SEGMENT_BYTES)
        await assert_readable(node, 1, [0, 1, 2], size=3 * SEGMENT_BYTES)
    finally:
        await node.close()


@pytest_twisted.ensureDeferred
async def test_a_failed_fsync_fails_the_add_and_every_later_write(node_dir, monkeypatch):
    node = await open_node(node_dir)
    await add_all(node, 1, range(3))

    def failing_fdatasync(fd):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fdatasync", failing_fdatasync)
    reported = []
    node.add_failure_listener(reported.append)
    error = await raises(JournalFailedError, node.add_entry(1, 3, 2, b"x"))
    assert "Input/output error" in str(error)
    assert reported == [error]
    monkeypatch.undo()
    await raises(JournalFailedError, node.add_entry(1, 4, 2, b"x"))
    await raises(JournalFailedError, node.read_last_add_confirmed(1, fence=True))
    await assert_readable(node, 1, range(3))
    await node.close()
    node = await open_node(node_dir)  # a restart recovers
    try:
        await assert_readable(node, 1, range(3))
        await node.add_entry(1, 3, 2, payload(1, 3))
    finally:
        await node.close()


@pytest_twisted.ensureDeferred
async def test_two_nodes_cannot_share_a_data_directory(node_dir):
    node = await open_node(node_dir)
    try:
        error = await raises(StorageNodeError, open_node(node_dir))
        assert "in use by another storage node" in str(error)
    finally:
        await node.close()
    await (await open_node(node_dir)).close()


@pytest_twisted.ensureDeferred
async def test_foreign_or_newer_data_directories_are_refused(tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "photo.jpg").write_bytes(b"...")
    await raises(StorageFormatError, open_node(foreign))
    assert (foreign / "photo.jpg").read_bytes() == b"..."

    newer = tmp_path / "newer"
    await (await open_node(newer)).close()
    (newer / "FORMAT").write_text("kop-storage-node 2\n")
    error = await raises(StorageFormatError, open_node(newer))
    assert "kop-storage-node 2" in str(error)


@pytest_twisted.ensureDeferred
async def test_a_segment_of_an_unknown_format_version_stops_the_node_with_a_clear_error(node_dir):
    node = await open_node(node_dir)
    await add_all(node, 1, range(3))
    await node.close()
    segment = journal_files(node_dir)[0]
    contents = segment.read_bytes()
    import struct

    from crc32c import crc32c
    head = struct.pack("<8sIQ", b"KOPJSEG\x00", 2, 1)
    segment.write_bytes(head + struct.pack("<I", crc32c(head)) + contents[24:])
    error = await raises(StorageFormatError, open_node(node_dir))
    assert segment.name in str(error) and "format version 2" in str(error)
    assert segment.stat().st_size == len(contents)  # nothing was truncated or removed


@pytest_twisted.ensureDeferred
async def test_a_closed_node_refuses_requests(node_dir):
    node = await open_node(node_dir)
    await node.close()
    await raises(StorageNodeError, node.add_entry(1, 0, -1, b"x"))
    await raises(StorageNodeError, node.read_entry(1, 0))


@pytest_twisted.ensureDeferred
async def test_idle_segment_files_are_closed_beyond_the_open_file_budget(node_dir):
    node = await open_node(node_dir, segment_bytes=8192)
    try:
        await add_all(node, 1, range(60))  # about 8 entries a segment
        segments = {node._state.location(1, e).segment for e in range(60)}
        assert len(segments) > 6
        readers = node._readers
        readers._max_open = 4
        held = readers.acquire(node._state.location(1, 0).segment)  # in use: must stay open
        await assert_readable(node, 1, range(60))
        assert readers.open_count <= 4
        assert os.pread(held.fd, 4, 0)  # still a valid descriptor
        readers.release(held)
    finally:
        await node.close()


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("seed", range(6))
async def test_random_operations_with_collections_and_restarts_match_a_model(node_dir, seed):
    """Adds, fences, deletes, garbage collections and restarts in a random order: the node
    always agrees with a plain model of what it should hold."""
    rng = random.Random(seed)
    node = await open_node(node_dir, segment_bytes=4096)
    model: dict[int, dict] = {}  # ledger -> {"entries": {id: bytes}, "fenced": bool}
    next_ledger = 1
    removed = relocated = 0

    async def check_everything() -> None:
        assert node.ledger_ids() == sorted(model)
        for ledger_id, ledger in model.items():
            for entry_id, data in ledger["entries"].items():
                assert await node.read_entry(ledger_id, entry_id) == data
            last = max(ledger["entries"], default=-1)
            expected = LacResult(last - 1 if last >= 0 else -1, last)
            assert await node.read_last_add_confirmed(ledger_id) == expected

    try:
        for _ in range(120):
            operation = rng.choices(["add", "fence", "delete", "gc", "restart"],
                                    weights=[70, 5, 8, 10, 7])[0]
            if operation == "add" or not model:
                if not model or rng.random() < 0.1:  # a new ledger, with this as its first entry
                    ledger_id, next_ledger = next_ledger, next_ledger + 1
                    ledger = model[ledger_id] = {"entries": {}, "fenced": False}
                else:
                    ledger_id = rng.choice(sorted(model))
                    ledger = model[ledger_id]
                entry_id = len(ledger["entries"])
                data = rng.randbytes(rng.randint(1, 3000))
                recovery = ledger["fenced"] and rng.random() < 0.5
                if ledger["fenced"] and not recovery:
                    await raises(LedgerFencedError, node.add_entry(ledger_id, entry_id,
                                                                   entry_id - 1, data))
                else:
                    await node.add_entry(ledger_id, entry_id, entry_id - 1, data,
                                         recovery=recovery)
                    ledger["entries"][entry_id] = data
            elif operation == "fence":
                ledger_id = rng.choice(sorted(model))
                await node.read_last_add_confirmed(ledger_id, fence=True)
                model[ledger_id]["fenced"] = True
            elif operation == "delete":
                ledger_id = rng.choice(sorted(model))
                await node.delete_ledger(ledger_id)
                del model[ledger_id]
            elif operation == "gc":
                report = await node.collect_garbage()
                removed += len(report.segments_removed)
                relocated += report.entries_relocated
            else:
                await node.close()
                node = await open_node(node_dir, segment_bytes=4096)
                await check_everything()
        await node.collect_garbage()
        await check_everything()
        await node.close()
        node = await open_node(node_dir, segment_bytes=4096)
        await check_everything()
        assert removed > 0  # the collector really ran into deleted data
    finally:
        await node.close()


@pytest_twisted.ensureDeferred
async def test_the_per_entry_bookkeeping_is_invisible_to_the_cyclic_garbage_collector(node_dir):
    # Every object the collector tracks lengthens each full collection, a pause of the whole
    # process; a node keeps a location per stored entry and a record per unindexed one.
    node = await open_node(node_dir, segment_bytes=1024 * 1024)
    try:
        await add_all(node, 5, range(50))
        gc.collect()
        ledger = node._state.ledgers[5]
        assert len(ledger.entries) == 50
        assert not any(gc.is_tracked(location) for location in ledger.entries.values())
        assert not gc.is_tracked(ledger.entries)
        [unindexed] = node._unindexed.values()
        assert len(unindexed) == 50 and not any(gc.is_tracked(r) for r in unindexed)
        [segment] = node._unindexed
        location = node._state.location(5, 7)  # what callers get: named fields
        assert (location.segment, location.offset, location.length) == (
            segment, unindexed[7][4], unindexed[7][5])
        await assert_readable(node, 5, [0, 7, 49])
    finally:
        await node.close()
