"""LIST_ENTRIES, the storage-node op auto-recovery uses to learn which entries a node holds:
the bitmap codec, the node's answers (in process and over TCP), and protocol versioning."""

from __future__ import annotations

import pytest
import pytest_twisted
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet import defer

from storage.node import (
    MAX_LIST_ENTRIES,
    InvalidRequestError,
    LocalStorageNodeClient,
    NoSuchLedgerError,
    RemoteStorageNodeClient,
    StorageNode,
    StorageNodeConfig,
    decode_entry_bitmap,
    encode_entry_bitmap,
)
from storage.node import protocol as node_protocol
from storage.node.errors import ProtocolError
from storage.node.protocol import (
    Frame,
    FrameReader,
    ListEntriesRequest,
    Op,
    decode_request,
    decode_response,
    encode_ok_response,
    encode_request,
)
from storage.node.server import listen


@given(st.integers(0, 2**40), st.integers(1, 300), st.sets(st.integers(-20, 320)))
def test_bitmaps_hold_exactly_the_ids_inside_their_range(first, count, offsets):
    entry_ids = {first + offset for offset in offsets}
    bitmap = encode_entry_bitmap(entry_ids, first, count)
    assert len(bitmap) == (count + 7) // 8
    assert decode_entry_bitmap(bitmap, first) == sorted(
        e for e in entry_ids if first <= e < first + count)


def test_list_entries_requests_and_responses_round_trip():
    request = ListEntriesRequest(7, 2**40, MAX_LIST_ENTRIES)
    (frame,) = FrameReader().feed(encode_request(2, 5, request))
    assert decode_request(frame) == request
    layout_bytes = frame.body
    parsed = node_protocol.LIST_ENTRIES_REQUEST.parse(layout_bytes)
    assert (parsed.ledger_id, parsed.first_entry_id, parsed.count) == (7, 2**40, MAX_LIST_ENTRIES)
    (answer,) = FrameReader().feed(encode_ok_response(2, Op.LIST_ENTRIES, 5, b"\x05\x80"))
    assert decode_response(answer).value == b"\x05\x80"


def test_a_version_1_frame_cannot_carry_list_entries():
    frame = Frame(1, Op.LIST_ENTRIES, 3, encode_request(2, 3, ListEntriesRequest(1, 0, 8))[10:])
    with pytest.raises(ProtocolError, match="needs protocol version 2"):
        decode_request(frame)


@pytest.fixture
def node(tmp_path):
    opened = pytest_twisted.blockon(StorageNode.open(
        tmp_path / "node", StorageNodeConfig(gc_interval_seconds=None)))
    yield opened
    pytest_twisted.blockon(opened.close())


@pytest.fixture
def served(node):
    port = listen(node, "127.0.0.1", 0)
    yield f"127.0.0.1:{port.getHost().port}"
    pytest_twisted.blockon(defer.maybeDeferred(port.stopListening))


async def _store(node: StorageNode, ledger_id: int, entry_ids: list[int]) -> None:
    await defer.gatherResults([node.add_entry(ledger_id, e, -1, b"x%d" % e) for e in entry_ids])


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("kind", ["local", "remote"])
async def test_a_node_lists_the_entries_it_holds(node, served, kind):
    client = LocalStorageNodeClient(node) if kind == "local" else RemoteStorageNodeClient(served)
    try:
        await _store(node, 4, [0, 1, 3, 9, 10])
        assert decode_entry_bitmap(await client.list_entries(4, 0, 16), 0) == [0, 1, 3, 9, 10]
        # A window narrower than the ledger, and one reaching past its end.
        assert decode_entry_bitmap(await client.list_entries(4, 2, 3), 2) == [3]
        assert decode_entry_bitmap(await client.list_entries(4, 9, 1000), 9) == [9, 10]
        await node.delete_ledger(4)
        with pytest.raises(NoSuchLedgerError):
            await client.list_entries(4, 0, 16)
        with pytest.raises(NoSuchLedgerError):
            await client.list_entries(5, 0, 16)
        for first, count in ((-1, 8), (0, 0), (0, MAX_LIST_ENTRIES + 1)):
            with pytest.raises(InvalidRequestError):
                await client.list_entries(4, first, count)
    finally:
        await client.close()


@pytest_twisted.ensureDeferred
async def test_a_node_speaking_only_version_1_refuses_listing_politely(node, served,
                                                                        monkeypatch):
    monkeypatch.setattr(node_protocol, "SUPPORTED_VERSIONS", (1,))  # the server picks 1
    await _store(node, 4, [0])
    client = RemoteStorageNodeClient(served)
    try:
        with pytest.raises(InvalidRequestError, match="needs version 2"):
            await client.list_entries(4, 0, 8)
        # The connection is still good for everything version 1 has.
        assert (await client.read_last_add_confirmed(4)).last_entry_id == 0
        with pytest.raises(InvalidRequestError, match="needs version 2"):
            await client.list_entries(4, 0, 8)
    finally:
        await client.close()
