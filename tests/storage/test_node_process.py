"""Storage nodes as real processes on loopback: SIGKILL loses nothing acknowledged, torn
tails are truncated, corrupt bytes fail one entry, fences survive crashes, deleted space
is reclaimed by the periodic collector, restarts load index files instead of rescanning,
SIGTERM stops cleanly, and nodes register in ZooKeeper."""

from __future__ import annotations

import json
import random
import re
import signal
import time

import pytest
import pytest_twisted
from twisted.internet import defer, reactor, task

from storage.metadata import open_metadata_store
from storage.node import (
    CorruptEntryError,
    LedgerFencedError,
    NodeUnavailableError,
    NoSuchLedgerError,
    RemoteStorageNodeClient,
)
from storage.node.records import RECORD_HEADER_BYTES, SEGMENT_HEADER_BYTES, scan_records
from storage.node.testing import StorageNodeProcess

SEGMENT_BYTES = 256 * 1024


def payload(entry_id: int) -> bytes:
    size = random.Random(entry_id).randint(1, 20_000)
    return random.Random(-entry_id).randbytes(size)


@pytest.fixture
def node_process(tmp_path):
    process = StorageNodeProcess(tmp_path / "node",
                                 extra_args=("--segment-bytes", str(SEGMENT_BYTES)))
    process.start()
    yield process
    process.kill()


async def until(condition, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await task.deferLater(reactor, 0.02, lambda: None)


async def append_rounds(client, ledger_id: int, first: int, rounds: int, width: int = 64) -> int:
    """Append `rounds` × `width` entries, each round pipelined; returns the next entry id."""
    for _ in range(rounds):
        await defer.gatherResults([client.add_entry(ledger_id, e, e - 1, payload(e))
                                   for e in range(first, first + width)])
        first += width
    return first


async def read_all(address: str, ledger_id: int, entry_ids) -> dict[int, bytes]:
    client = RemoteStorageNodeClient(address)
    try:
        return {e: await client.read_entry(ledger_id, e) for e in entry_ids}
    finally:
        await client.close()


def startup_line(process: StorageNodeProcess) -> tuple[int, int, int]:
    """(from index files, scanned, torn bytes) of the node's latest start."""
    found = re.findall(r"\((\d+) from index files, (\d+) scanned, (\d+) torn bytes truncated\)",
                       process.log_text())
    return tuple(map(int, found[-1]))


@pytest_twisted.ensureDeferred
async def test_sigkill_right_after_acknowledgements_loses_no_acknowledged_entry(node_process):
    client = RemoteStorageNodeClient(node_process.address)
    acked: set[int] = set()
    next_id = await append_rounds(client, 1, 0, rounds=20)
    acked.update(range(next_id))

    # One more pipelined batch; SIGKILL the node the moment its first ack arrives.
    first_ack: defer.Deferred[None] = defer.Deferred()

    def acknowledged(_: None, entry_id: int) -> None:
        acked.add(entry_id)
        if not first_ack.called:
            first_ack.callback(None)

    batch = [client.add_entry(1, e, e - 1, payload(e)).addCallbacks(
        acknowledged, lambda failure: failure.trap(NodeUnavailableError), callbackArgs=(e,))
        for e in range(next_id, next_id + 64)]
    await first_ack
    node_process.kill()
    await defer.gatherResults(batch)
    await client.close()
    assert next_id < max(acked) + 1  # some of the last batch was acknowledged before the kill

    node_process.start()
    stored = await read_all(node_process.address, 1, sorted(acked))
    assert all(stored[e] == payload(e) for e in acked)


@pytest_twisted.ensureDeferred
async def test_a_torn_journal_tail_is_truncated_on_restart(node_process):
    client = RemoteStorageNodeClient(node_process.address)
    count = await append_rounds(client, 1, 0, rounds=3)
    await client.close()
    node_process.kill()
    segments = sorted((node_process.data_dir / "journal").glob("*.log"))
    last = segments[-1]
    assert not last.with_suffix(".idx").exists()  # it was being written: no checkpoint yet
    intact = last.stat().st_size
    with open(last, "ab") as file:  # the first part of a record whose write the crash cut off
        file.write(bytes(RECORD_HEADER_BYTES) + b"partial payload")
    node_process.start()
    assert "truncating a torn tail" in node_process.log_text()
    assert startup_line(node_process)[2] == RECORD_HEADER_BYTES + len(b"partial payload")
    assert last.stat().st_size == intact
    stored = await read_all(node_process.address, 1, range(count))
    assert all(stored[e] == payload(e) for e in range(count))


def record_offsets(path) -> dict[tuple[int, int], tuple[int, int]]:
    """(ledger, entry) → (offset, length) of every entry record in a segment file."""
    result = scan_records(path.read_bytes(), SEGMENT_HEADER_BYTES)
    return {(r.ledger_id, r.entry_id): (r.offset, r.length) for r in result.records}


@pytest_twisted.ensureDeferred
async def test_a_corrupted_entry_log_byte_fails_that_entry_only(node_process):
    client = RemoteStorageNodeClient(node_process.address)
    count = await append_rounds(client, 1, 0, rounds=4)
    await client.close()
    assert node_process.stop() == 0
    segment = sorted((node_process.data_dir / "journal").glob("*.log"))[0]
    victim = sorted(key for key in record_offsets(segment))[len(record_offsets(segment)) // 2]
    offset, length = record_offsets(segment)[victim]
    with open(segment, "r+b") as file:
        file.seek(offset + RECORD_HEADER_BYTES + (length - RECORD_HEADER_BYTES) // 2)
        byte = file.read(1)
        file.seek(-1, 1)
        file.write(bytes([byte[0] ^ 0x01]))
    node_process.start()
    client = RemoteStorageNodeClient(node_process.address)
    try:
        with pytest.raises(CorruptEntryError) as error:
            await client.read_entry(*victim)
        assert f"entry {victim[1]} of ledger 1" in str(error.value)
        assert segment.name in str(error.value)
        for entry_id in range(count):
            if entry_id != victim[1]:
                assert await client.read_entry(1, entry_id) == payload(entry_id)
    finally:
        await client.close()


@pytest_twisted.ensureDeferred
async def test_a_fence_survives_sigkill(node_process):
    client = RemoteStorageNodeClient(node_process.address)
    await append_rounds(client, 1, 0, rounds=1, width=5)
    assert await client.read_last_add_confirmed(1, fence=True) == (3, 4)
    await client.close()
    node_process.kill()
    node_process.start()
    client = RemoteStorageNodeClient(node_process.address)
    try:
        with pytest.raises(LedgerFencedError):
            await client.add_entry(1, 5, 4, b"from the deposed writer")
        await client.add_entry(1, 5, 4, b"from recovery", recovery=True)
    finally:
        await client.close()


@pytest_twisted.ensureDeferred
async def test_a_restart_after_sigkill_scans_only_the_unsealed_segment(node_process):
    client = RemoteStorageNodeClient(node_process.address)
    count = await append_rounds(client, 1, 0, rounds=12)
    await client.close()
    segments = len(list((node_process.data_dir / "journal").glob("*.log")))
    assert segments >= 5
    node_process.kill()
    node_process.start()
    from_index, scanned, _ = startup_line(node_process)
    assert scanned == 1 and from_index == segments - 1
    stored = await read_all(node_process.address, 1, [0, count // 2, count - 1])
    assert all(stored[e] == payload(e) for e in stored)


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
async def test_a_stop_signal_stops_cleanly_and_the_next_start_scans_nothing(node_process,
                                                                             stop_signal):
    client = RemoteStorageNodeClient(node_process.address)
    count = await append_rounds(client, 1, 0, rounds=2)
    await client.close()
    assert node_process.stop(stop_signal) == 0
    assert "closed" in node_process.log_text()
    node_process.start()
    assert startup_line(node_process)[1] == 0
    stored = await read_all(node_process.address, 1, range(count))
    assert all(stored[e] == payload(e) for e in range(count))


def journal_bytes(journal) -> int:
    """Bytes in the journal directory; the collector may remove a file while we look."""
    total = 0
    for path in journal.iterdir():
        try:
            total += path.stat().st_size
        except FileNotFoundError:
            continue
    return total


@pytest_twisted.ensureDeferred
async def test_deleted_ledgers_are_reclaimed_by_the_periodic_collector(tmp_path):
    process = StorageNodeProcess(tmp_path / "node", extra_args=(
        "--segment-bytes", str(SEGMENT_BYTES), "--gc-interval", "0.2"))
    process.start()
    journal = process.data_dir / "journal"
    client = RemoteStorageNodeClient(process.address)
    try:
        await append_rounds(client, 1, 0, rounds=10)
        await client.add_entry(2, 0, -1, b"keep me")
        full = journal_bytes(journal)
        await client.delete_ledger(1)

        async def reclaimed() -> bool:
            return journal_bytes(journal) < full // 4

        await until(reclaimed)
        assert await client.read_entry(2, 0) == b"keep me"
    finally:
        await client.close()
        process.kill()


@pytest_twisted.ensureDeferred
async def test_nodes_register_in_zookeeper_and_withdraw_on_sigterm(tmp_path, zookeeper_url):
    process = StorageNodeProcess(tmp_path / "node", metadata_url=zookeeper_url)
    store = open_metadata_store(zookeeper_url)
    try:
        process.start()
        assert await store.children("/storage-nodes") == [process.address]
        info = json.loads((await store.get(f"/storage-nodes/{process.address}")).value)
        assert info["address"] == process.address and info["pid"] == process.pid

        # SIGKILL leaves the entry until the session expires; a restart replaces it at once.
        old_pid = process.pid
        process.kill()
        process.start()
        info = json.loads((await store.get(f"/storage-nodes/{process.address}")).value)
        assert info["pid"] == process.pid != old_pid

        assert process.stop() == 0
        assert await store.children("/storage-nodes") == []
    finally:
        process.kill()
        await store.close()


@pytest_twisted.ensureDeferred
async def test_requests_in_flight_at_sigterm_are_acknowledged_or_fail_as_unavailable(
        node_process):
    client = RemoteStorageNodeClient(node_process.address)
    await client.add_entry(1, 0, -1, payload(0))
    acked, unavailable = {0}, set()
    first_ack: defer.Deferred[None] = defer.Deferred()

    def acknowledged(_: None, entry_id: int) -> None:
        acked.add(entry_id)
        if not first_ack.called:
            first_ack.callback(None)

    def failed(failure, entry_id: int) -> None:
        failure.trap(NodeUnavailableError)
        unavailable.add(entry_id)

    adds = [client.add_entry(1, e, e - 1, payload(e)).addCallbacks(
        acknowledged, failed, callbackArgs=(e,), errbackArgs=(e,)) for e in range(1, 500)]
    await first_ack
    node_process.send_signal(signal.SIGTERM)
    await defer.gatherResults(adds)  # any other error would surface here
    await client.close()
    assert node_process.wait() == 0
    assert len(acked) + len(unavailable) == 500
    node_process.start()
    stored = await read_all(node_process.address, 1, sorted(acked))
    assert all(stored[e] == payload(e) for e in acked)


@pytest_twisted.ensureDeferred
async def test_sigkill_while_the_collector_compacts_loses_nothing_and_undeletes_nothing(
        tmp_path):
    process = StorageNodeProcess(tmp_path / "node", extra_args=(
        "--segment-bytes", str(64 * 1024), "--gc-interval", "0.01"))
    process.start()
    kept: dict[int, int] = {}  # ledger -> entries acknowledged
    deleted: list[int] = []
    try:
        for round_number in range(4):
            client = RemoteStorageNodeClient(process.address)
            doomed, survivor = 100 + round_number, 200 + round_number
            for e in range(24):  # interleaved, 1 in 4 entries survives: compaction has work
                await defer.gatherResults(
                    [client.add_entry(survivor, e, e - 1, payload(e))]
                    + [client.add_entry(doomed, d, d - 1, payload(d))
                       for d in range(3 * e, 3 * e + 3)])
            kept[survivor] = 24
            await client.delete_ledger(doomed)
            deleted.append(doomed)
            await append_rounds(client, 300, 16 * round_number, rounds=1, width=16)
            kept[300] = 16 * (round_number + 1)
            await client.close()
            process.kill()  # the collector runs every 10 ms: often mid-collection
            process.start()

        async def compacted() -> bool:
            return re.search(r"relocated [1-9]", process.log_text()) is not None

        await until(compacted)  # the scenario does give the collector copying to do
        client = RemoteStorageNodeClient(process.address)
        try:
            for ledger_id, count in kept.items():
                for entry_id in range(count):
                    assert await client.read_entry(ledger_id, entry_id) == payload(entry_id)
            for ledger_id in deleted:
                with pytest.raises(NoSuchLedgerError):
                    await client.read_last_add_confirmed(ledger_id)
        finally:
            await client.close()
    finally:
        process.kill()
