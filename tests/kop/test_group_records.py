"""The stored record format: round trips, and damaged input refused with RecordFormatError
(and nothing else, whatever the bytes)."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kop.groups.records import (
    CommittedOffset,
    DecodedKey,
    RecordFormatError,
    StoredGroup,
    StoredMember,
    TopicPartition,
    decode_group,
    decode_key,
    decode_offset,
    encode_group,
    encode_offset,
    group_key,
    offset_key,
)

GROUP = StoredGroup(
    protocol_type="consumer", generation_id=7, protocol_name="range", leader_id="m1",
    state_timestamp_ms=1_700_000_000_000,
    members=(StoredMember("m1", "instance-1", "client", "/10.0.0.1", 300_000, 45_000,
                          b"\x00\x01sub", b"\x00\x01assign"),
             StoredMember("m2", None, "client", "/10.0.0.2", 300_000, 45_000, b"", b"")))


def test_keys_round_trip() -> None:
    assert decode_key(group_key("gröup")) == DecodedKey("gröup", None)
    tp = TopicPartition("orders", 11)
    assert decode_key(offset_key("g", tp)) == DecodedKey("g", tp)
    assert offset_key("g", tp) != offset_key("g", TopicPartition("orders", 12))


def test_values_round_trip() -> None:
    committed = CommittedOffset(42, 5, "meta ✓", 1_700_000_000_000, -1)
    assert decode_offset(encode_offset(committed)) == committed
    assert decode_group(encode_group(GROUP)) == GROUP
    empty = StoredGroup(None, 0, None, None, 0)
    assert decode_group(encode_group(empty)) == empty


@pytest.mark.parametrize("data, complaint", [
    (encode_offset(CommittedOffset(1))[:-1], "truncated"),
    (encode_offset(CommittedOffset(1)) + b"x", "trailing"),
    (b"\x02" + encode_offset(CommittedOffset(1))[1:], "format version 2"),
])
def test_damaged_offsets_are_refused(data: bytes, complaint: str) -> None:
    with pytest.raises(RecordFormatError, match=complaint):
        decode_offset(data)


def test_damaged_keys_and_groups_are_refused() -> None:
    with pytest.raises(RecordFormatError, match="unknown kind 9"):
        decode_key(b"\x09" + group_key("g")[1:])
    data = bytearray(encode_group(GROUP))
    count_at = 1 + (4 + 8) + 4 + (4 + 5) + (4 + 2) + 8
    data[count_at:count_at + 4] = (2**31 - 1).to_bytes(4, "big")
    with pytest.raises(RecordFormatError, match="impossible count"):
        decode_group(bytes(data))
    with pytest.raises(RecordFormatError, match="null where a string"):
        decode_key(b"\x02\xff\xff\xff\xff")


@given(st.binary(max_size=200))
def test_arbitrary_bytes_decode_or_raise_record_format_error(data: bytes) -> None:
    for decode in (decode_key, decode_offset, decode_group):
        with contextlib.suppress(RecordFormatError):
            decode(data)


@given(st.integers(0, len(encode_group(GROUP)) - 1))
def test_truncated_records_are_refused(cut: int) -> None:
    with pytest.raises(RecordFormatError):
        decode_group(encode_group(GROUP)[:cut])
