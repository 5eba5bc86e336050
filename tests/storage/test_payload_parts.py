"""Payloads carried as parts (storage.node.buffers) through every storage layer: checksums
over parts equal checksums over the joined bytes, each layer's parts join to exactly the
bytes it used to build, the tail cache keeps parts without joining them, and the storage
node writes parts to its journal (real files) with torn-tail and corruption handling
unchanged."""

from __future__ import annotations

import os
from pathlib import Path

import crc32c
import pytest
import pytest_twisted
from hypothesis import given
from hypothesis import strategies as st
from test_managed_ledger import NAME, World
from twisted.internet import defer

from storage.ledger.entry_format import frame_entry, frame_entry_parts, unframe_entry
from storage.ledger.errors import CorruptEntryError as LedgerCorruptEntryError
from storage.managed_ledger import Entry, ManagedLedgerConfig, Position
from storage.managed_ledger.cache import ENTRY_OVERHEAD_BYTES, EntryCache
from storage.managed_ledger.entry_format import (
    HEADER_SIZE,
    decode_entry,
    encode_entry,
    entry_parts,
)
from storage.node import CorruptEntryError, StorageNode, StorageNodeConfig
from storage.node.buffers import (
    as_parts,
    join_payload,
    payload_crc32c,
    payload_length,
)
from storage.node.records import (
    RECORD_HEADER_BYTES,
    RecordKind,
    encode_record_header,
    payload_of_entry,
)

# Parts as callers make them: bytes, bytearray and views (also of part of a buffer), empty too.
part = st.one_of(
    st.binary(max_size=300),
    st.binary(max_size=300).map(bytearray),
    st.binary(max_size=300).map(lambda data: memoryview(data)[1:]),
)
parts_of = st.lists(part, max_size=6)


def joined(parts) -> bytes:
    return b"".join(bytes(p) for p in parts)


# ---------------------------------------------------------------- helpers


@given(parts_of, st.integers(0, 2**32 - 1))
def test_crc_over_parts_equals_crc_over_the_joined_bytes(parts, start):
    assert payload_crc32c(parts, start) == crc32c.crc32c(joined(parts), value=start)
    assert payload_crc32c(joined(parts), start) == crc32c.crc32c(joined(parts), value=start)


@given(parts_of)
def test_length_and_join_of_parts_match_the_joined_bytes(parts):
    assert payload_length(parts) == len(joined(parts))
    assert bytes(join_payload(parts)) == joined(parts)
    assert as_parts(parts) == tuple(parts)


def test_a_single_buffer_is_one_part_and_is_not_copied():
    data = b"payload"
    view = memoryview(bytearray(b"view"))
    assert as_parts(data) == (data,)
    assert join_payload(data) is data
    assert join_payload(view) is view
    assert join_payload([view]) is view
    assert payload_length(view) == 4


# ---------------------------------------------------------------- each layer's framing


@given(parts_of, st.integers(0, 2**40), st.integers(0, 2**40), st.integers(0, 2**40))
def test_ledger_framing_of_parts_is_the_framing_of_the_joined_payload(parts, ledger_id,
                                                                       entry_id, length):
    framed = frame_entry_parts(ledger_id, entry_id, length, parts)
    assert framed[1:] == tuple(parts)  # the payload's parts go on unchanged, not copied
    assert joined(framed) == frame_entry(ledger_id, entry_id, length, joined(parts))
    assert frame_entry(ledger_id, entry_id, length, parts) == joined(framed)
    assert unframe_entry(ledger_id, entry_id, joined(framed)) == (length, joined(parts))


@given(parts_of.filter(lambda parts: len(joined(parts)) > 0), st.data())
def test_a_damaged_byte_in_any_part_fails_the_ledger_checksum(parts, data):
    stored = bytearray(joined(frame_entry_parts(3, 4, 99, parts)))
    offset = data.draw(st.integers(0, len(stored) - 1))
    stored[offset] ^= 0x01
    with pytest.raises(LedgerCorruptEntryError):
        unframe_entry(3, 4, bytes(stored))


@given(parts_of, st.integers(-(2**63), 2**63 - 1))
def test_managed_ledger_entry_parts_are_the_encoded_entry(parts, index):
    stored = entry_parts(index, parts)
    assert stored[1:] == tuple(parts)
    assert joined(stored) == encode_entry(index, joined(parts)) == encode_entry(index, parts)
    assert decode_entry(joined(stored)) == (index, joined(parts))


@given(parts_of, st.integers(0, 2**63 - 1), st.integers(0, 2**63 - 1))
def test_record_header_over_parts_is_the_header_over_the_joined_payload(parts, ledger, entry):
    header = encode_record_header(RecordKind.ADD, ledger, entry, entry - 1, parts)
    assert header == encode_record_header(RecordKind.ADD, ledger, entry, entry - 1,
                                          joined(parts))
    assert payload_of_entry(header + joined(parts), ledger, entry, "here") == joined(parts)


# ---------------------------------------------------------------- entries and the tail cache


def test_an_entry_of_parts_joins_them_only_when_data_is_asked_for():
    head, rest = b"head", memoryview(b"--the rest--")
    entry = Entry(Position(1, 0), 7, [head, rest])
    assert entry.size == 16
    assert entry.parts == (head, rest)
    assert entry.parts[1] is rest  # not copied
    assert entry.data == b"head--the rest--"
    assert entry.parts == (b"head--the rest--",)  # joined once, kept joined
    assert entry.data is entry.data
    assert entry == Entry(Position(1, 0), 7, b"head--the rest--")
    assert entry != Entry(Position(1, 0), 7, b"head--the rest!!")


def test_the_cache_counts_parts_by_their_size_and_hands_them_out_unjoined():
    cache = EntryCache(max_bytes=2 * (100 + ENTRY_OVERHEAD_BYTES))
    entries = [Entry(Position(1, i), i, [b"h" * 10, memoryview(b"r" * 90)]) for i in range(3)]
    for entry in entries:
        cache.add(entry)
    assert cache.bytes_used == 2 * (100 + ENTRY_OVERHEAD_BYTES)
    assert len(cache) == 2  # the oldest was evicted by size
    read = cache.read(Position(1, 1), 10, None)
    assert read == entries[1:]
    assert all(len(entry.parts) == 2 for entry in read)  # nobody joined them


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("cache_bytes", [0, 1 << 20])
async def test_a_managed_ledger_stores_parts_joined_and_reads_them_back(cache_bytes):
    world = World()
    config = ManagedLedgerConfig(max_entries_per_ledger=3, cache_bytes=cache_bytes)
    ledger = await world.factory().open(NAME, config)
    rest = memoryview(b"0123456789" * 10)
    appended = [(b"head-%d" % i, rest[i:]) for i in range(5)]
    for index, parts in enumerate(appended):
        await ledger.append(parts, 100 + index)
    stored = [raw for fake in world.ledgers.ledgers.values() for raw in fake.entries]
    assert stored == [encode_entry(100 + i, joined(parts)) for i, parts in enumerate(appended)]
    assert ledger.total_bytes == sum(HEADER_SIZE + len(joined(p)) for p in appended)
    entries = await ledger.read(ledger.first_position, 10)
    if cache_bytes:  # the tail cache hands out the very parts appended
        assert [entry.parts for entry in entries] == appended
        assert entries[4].parts[1].obj is rest.obj
    assert [bytes(entry.data) for entry in entries] == [joined(p) for p in appended]
    assert [entry.index for entry in entries] == [100, 101, 102, 103, 104]


# ---------------------------------------------------------------- the storage node's journal


def open_node(path: Path) -> defer.Deferred[StorageNode]:
    return StorageNode.open(path, StorageNodeConfig(segment_bytes=64 * 1024,
                                                    gc_interval_seconds=None))


def parts_for(entry_id: int) -> list:
    """Parts like a produce carries: small headers, then a view of a larger buffer."""
    body = bytes(range(256)) * 4
    return [b"L%d|" % entry_id, bytearray(b"M"), b"", memoryview(body)[entry_id:]]


@pytest_twisted.ensureDeferred
async def test_the_node_stores_parts_as_their_joined_bytes_across_a_restart(tmp_path):
    node = await open_node(tmp_path / "node")
    try:
        await defer.gatherResults([node.add_entry(1, e, e - 1, parts_for(e)) for e in range(50)])
        for entry_id in range(50):
            assert await node.read_entry(1, entry_id) == joined(parts_for(entry_id))
    finally:
        await node.close()
    node = await open_node(tmp_path / "node")
    try:
        for entry_id in range(50):
            assert await node.read_entry(1, entry_id) == joined(parts_for(entry_id))
    finally:
        await node.close()


async def ten_entries_as_parts(tmp_path, entry_id: int):
    """Ledger 1's entries 0-9 written as parts by a node, then closed: (location of
    `entry_id`, its segment file)."""
    node = await open_node(tmp_path / "node")
    await defer.gatherResults([node.add_entry(1, e, e - 1, parts_for(e)) for e in range(10)])
    location = node._state.location(1, entry_id)
    await node.close()
    return location, tmp_path / "node" / "journal" / f"{location.segment:020d}.log"


@pytest_twisted.ensureDeferred
async def test_a_torn_tail_written_as_parts_is_truncated_on_restart(tmp_path):
    last, segment_file = await ten_entries_as_parts(tmp_path, 9)
    segment_file.with_suffix(".idx").unlink()  # as after a crash
    os.truncate(segment_file, last.offset + last.length - 5)  # the last part cut short
    node = await open_node(tmp_path / "node")
    try:
        assert node.recovery_stats.torn_bytes_truncated == last.length - 5
        for entry_id in range(9):
            assert await node.read_entry(1, entry_id) == joined(parts_for(entry_id))
        assert (await node.read_last_add_confirmed(1)).last_entry_id == 8
    finally:
        await node.close()


@pytest_twisted.ensureDeferred
async def test_a_damaged_byte_in_the_last_part_fails_that_entry_only(tmp_path):
    location, segment_file = await ten_entries_as_parts(tmp_path, 4)
    with open(segment_file, "r+b") as file:
        file.seek(location.offset + location.length - 1)  # inside the view part
        value = file.read(1)[0]
        file.seek(location.offset + location.length - 1)
        file.write(bytes([value ^ 0xFF]))
    node = await open_node(tmp_path / "node")
    try:
        with pytest.raises(CorruptEntryError, match="entry 4 of ledger 1"):
            await node.read_entry(1, 4)
        for entry_id in (3, 5):
            assert await node.read_entry(1, entry_id) == joined(parts_for(entry_id))
    finally:
        await node.close()
    assert RECORD_HEADER_BYTES + len(joined(parts_for(4))) == location.length
