"""Entry reads asked for in one reactor turn share thread hops (storage.node.entry_reads),
while each read still succeeds or fails on its own. A real node on real files."""

from __future__ import annotations

import pytest
import pytest_twisted
from twisted.internet import defer

from storage.node import CorruptEntryError, NoSuchEntryError, StorageNode, StorageNodeConfig
from storage.node.entry_reads import DEFAULT_MAX_BATCH_BYTES
from storage.node.records import RECORD_HEADER_BYTES


def payload(entry_id: int, size: int) -> bytes:
    stamp = b"entry %d;" % entry_id
    return (stamp * (size // len(stamp) + 1))[:size]


async def node_with_entries(path, count: int, size: int) -> StorageNode:
    node = await StorageNode.open(path, StorageNodeConfig(gc_interval_seconds=None))
    await defer.gatherResults([node.add_entry(1, e, e - 1, payload(e, size))
                               for e in range(count)])
    return node


@pytest_twisted.ensureDeferred
async def test_reads_asked_for_together_share_one_thread_hop(tmp_path):
    node = await node_with_entries(tmp_path / "node", 200, 1000)
    try:
        hops = node._entry_reads.thread_hops
        read = await defer.gatherResults([node.read_entry(1, e) for e in range(200)])
        assert read == [payload(e, 1000) for e in range(200)]
        assert node._entry_reads.thread_hops == hops + 1
    finally:
        await node.close()


@pytest_twisted.ensureDeferred
async def test_large_reads_are_spread_over_hops_of_bounded_size(tmp_path):
    size = DEFAULT_MAX_BATCH_BYTES // 3 - RECORD_HEADER_BYTES  # three records fill a hop
    node = await node_with_entries(tmp_path / "node", 7, size)
    try:
        hops = node._entry_reads.thread_hops
        read = await defer.gatherResults([node.read_entry(1, e) for e in range(7)])
        assert read == [payload(e, size) for e in range(7)]
        assert node._entry_reads.thread_hops == hops + 3  # 3 + 3 + 1 entries
    finally:
        await node.close()


@pytest_twisted.ensureDeferred
async def test_a_corrupt_entry_fails_only_its_own_read_in_a_shared_hop(tmp_path):
    node = await node_with_entries(tmp_path / "node", 10, 1000)
    location = node._state.location(1, 4)
    path = node.data_dir / "journal" / f"{location.segment:020d}.log"
    with open(path, "r+b") as file:
        file.seek(location.offset + location.length - 1)
        file.write(b"\xff" if payload(4, 1000)[-1:] != b"\xff" else b"\x00")
    try:
        reads = [node.read_entry(1, e) for e in range(10)]
        missing = node.read_entry(1, 10)
        for entry_id, reading in enumerate(reads):
            if entry_id == 4:
                with pytest.raises(CorruptEntryError, match="entry 4 of ledger 1"):
                    await reading
            else:
                assert await reading == payload(entry_id, 1000)
        with pytest.raises(NoSuchEntryError):
            await missing
    finally:
        await node.close()


@pytest_twisted.ensureDeferred
async def test_closing_answers_the_reads_already_asked_for(tmp_path):
    node = await node_with_entries(tmp_path / "node", 20, 1000)
    reads = [node.read_entry(1, e) for e in range(20)]
    await node.close()
    assert await defer.gatherResults(reads) == [payload(e, 1000) for e in range(20)]
