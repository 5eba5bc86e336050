"""The storage-node wire protocol without sockets: layouts agree with their construct
specification, requests and responses round-trip, and malformed bytes raise ProtocolError."""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from storage.node import protocol
from storage.node.errors import (
    CorruptEntryError,
    LedgerFencedError,
    NoSuchEntryError,
    ProtocolError,
    StorageNodeError,
)
from storage.node.protocol import (
    AddEntryRequest,
    DeleteLedgerRequest,
    Frame,
    FrameReader,
    HandshakeRequest,
    Op,
    ReadEntryRequest,
    ReadLacRequest,
    Status,
    decode_request,
    decode_response,
    encode_error_response,
    encode_ok_response,
    encode_request,
)

ledger_ids = st.integers(0, 2**64 - 1)
entry_ids = st.integers(-(2**63), 2**63 - 1)
payloads = st.binary(max_size=300)

requests = st.one_of(
    st.builds(AddEntryRequest, ledger_ids, entry_ids, entry_ids, st.booleans(), payloads),
    st.builds(ReadEntryRequest, ledger_ids, entry_ids, st.booleans()),
    st.builds(ReadLacRequest, ledger_ids, st.booleans()),
    st.builds(DeleteLedgerRequest, ledger_ids),
)


def single_frame(data: bytes) -> Frame:
    frames = FrameReader().feed(data)
    assert len(frames) == 1
    return frames[0]


@given(requests, st.integers(0, 2**32 - 1))
def test_requests_round_trip(request, request_id):
    frame = single_frame(encode_request(1, request_id, request))
    assert (frame.version, frame.request_id) == (1, request_id)
    assert decode_request(frame) == request


@given(requests, st.integers(0, 2**32 - 1))
def test_fast_layouts_match_their_construct_specification(request, request_id):
    data = encode_request(1, request_id, request)
    header = protocol.FRAME_HEADER.parse(data)
    assert header.length == len(data) - 4
    layout = {
        Op.ADD_ENTRY: protocol.ADD_ENTRY_REQUEST,
        Op.READ_ENTRY: protocol.READ_ENTRY_REQUEST,
        Op.READ_LAC: protocol.READ_LAC_REQUEST,
        Op.DELETE_LEDGER: protocol.DELETE_LEDGER_REQUEST,
    }[header.op]
    parsed = layout.parse(data[protocol.HEADER_BYTES:])
    assert parsed.ledger_id == request.ledger_id
    rebuilt = layout.build({key: value for key, value in parsed.items() if key != "_io"})
    assert rebuilt == data[protocol.HEADER_BYTES:]


def test_handshake_round_trip_and_version_choice():
    frame = single_frame(encode_request(0, 0, HandshakeRequest(1, 9)))
    request = decode_request(frame)
    assert request == HandshakeRequest(1, 9)
    assert protocol.choose_version(request) == max(protocol.SUPPORTED_VERSIONS)
    assert protocol.choose_version(HandshakeRequest(50, 60)) is None


@pytest.mark.parametrize(("op", "value"), [
    (Op.ADD_ENTRY, None),
    (Op.DELETE_LEDGER, None),
    (Op.READ_ENTRY, b"payload bytes"),
    (Op.READ_ENTRY, b""),
    (Op.READ_LAC, (41, 42)),
    (Op.READ_LAC, (-1, -1)),
    (Op.HANDSHAKE, 1),
])
def test_ok_responses_round_trip(op, value):
    response = decode_response(single_frame(encode_ok_response(1, op, 7, value)))
    assert (response.request_id, response.op, response.status, response.value) == (
        7, op, Status.OK, value)


def test_error_responses_carry_status_and_message():
    data = encode_error_response(1, Op.READ_ENTRY, 9, Status.CORRUPT_ENTRY, "bad crc é")
    response = decode_response(single_frame(data))
    assert (response.status, response.message) == (Status.CORRUPT_ENTRY, "bad crc é")


@pytest.mark.parametrize(("error", "status"), [
    (LedgerFencedError("x"), Status.LEDGER_FENCED),
    (NoSuchEntryError("x"), Status.NO_SUCH_ENTRY),
    (CorruptEntryError("x"), Status.CORRUPT_ENTRY),
    (StorageNodeError("x"), Status.NODE_ERROR),
    (RuntimeError("x"), Status.NODE_ERROR),
])
def test_errors_map_to_statuses_and_back(error, status):
    assert protocol.status_of_error(error) == status
    back = protocol.error_of_status(status, "message")
    assert isinstance(back, StorageNodeError) and str(back) == "message"
    if status != Status.NODE_ERROR:
        assert type(back) is type(error)


def test_frame_reader_reassembles_frames_split_anywhere():
    stream = b"".join(encode_request(1, i, ReadLacRequest(i, False)) for i in range(50))
    stream += encode_request(1, 99, AddEntryRequest(1, 2, 1, False, b"x" * 100_000))
    for piece in (1, 7, 4096):
        reader = FrameReader()
        frames = []
        for start in range(0, len(stream), piece):
            frames += reader.feed(stream[start:start + piece])
        assert [frame.request_id for frame in frames] == [*range(50), 99]
        assert decode_request(frames[-1]).payload == b"x" * 100_000
        assert reader.buffered_bytes == 0


@pytest.mark.parametrize("length", [0, 5, protocol.MAX_FRAME_BYTES + 1, 2**32 - 1])
def test_frame_reader_rejects_impossible_lengths(length):
    with pytest.raises(ProtocolError, match="frame length"):
        FrameReader().feed(struct.pack(">IBBI", length, 1, 1, 0))


@pytest.mark.parametrize(("op", "body", "reason"), [
    (Op.ADD_ENTRY, b"\x00" * 10, "does not fit"),
    (Op.READ_ENTRY, b"\x00" * 18, "does not fit"),  # one byte too many
    (Op.READ_LAC, b"\x00" * 8 + b"\x80", "unknown flag"),
    (Op.DELETE_LEDGER, b"", "does not fit"),
    (77, b"", "unknown op"),
    (Op.HANDSHAKE, b"HTTP/1", "magic"),
    (Op.HANDSHAKE, struct.pack(">IBB", protocol.HANDSHAKE_MAGIC, 3, 2), "empty version range"),
])
def test_malformed_requests_raise_protocol_error(op, body, reason):
    with pytest.raises(ProtocolError, match=reason):
        decode_request(Frame(1, op, 1, body))


@pytest.mark.parametrize(("op", "body", "reason"), [
    (Op.READ_LAC, b"", "empty response"),
    (Op.READ_LAC, b"\x00\x01", "does not fit"),
    (Op.ADD_ENTRY, b"\xee", "unknown status"),
    (99, b"\x00", "unknown op"),
])
def test_malformed_responses_raise_protocol_error(op, body, reason):
    with pytest.raises(ProtocolError, match=reason):
        decode_response(Frame(1, op, 1, body))


@given(st.binary(max_size=200))
def test_arbitrary_bytes_either_decode_or_raise_protocol_error(data):
    reader = FrameReader()
    try:
        frames = reader.feed(data)
    except ProtocolError:
        return
    for frame in frames:
        for decode in (decode_request, decode_response):
            with contextlib.suppress(ProtocolError):
                decode(frame)


@given(st.lists(st.binary(max_size=100), max_size=5), st.integers(0, 2**32 - 1))
def test_an_add_entry_of_parts_encodes_as_the_joined_payload(parts, request_id):
    joined = b"".join(parts)
    framed = encode_request(1, request_id, AddEntryRequest(1, 2, 1, False, parts))
    assert framed == encode_request(1, request_id, AddEntryRequest(1, 2, 1, False, joined))
    assert decode_request(single_frame(framed)).payload == joined


def test_frame_bodies_are_views_of_the_received_bytes_not_copies():
    small = [encode_request(1, i, ReadLacRequest(i, False)) for i in range(3)]
    chunk = b"".join(small)
    frames = FrameReader().feed(chunk)
    assert all(frame.body.obj is chunk for frame in frames)  # one read, no copy per frame

    payload = bytes(range(256)) * 1024
    stream = encode_request(1, 9, AddEntryRequest(1, 2, 1, False, payload))
    reader = FrameReader()
    pieces = [stream[start:start + 65536] for start in range(0, len(stream), 65536)]
    received = [frame for piece in pieces for frame in reader.feed(piece)]
    assert len(received) == 1
    request = decode_request(received[0])
    assert isinstance(request.payload, memoryview)  # the payload is not copied out again
    assert request.payload == payload
