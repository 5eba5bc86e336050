"""The Kafka primitive constructs: varints, zigzag, strings, bytes, arrays, uuids."""

from __future__ import annotations

import io
import uuid

import pytest
from construct import ConstructError, Int32sb
from hypothesis import given
from hypothesis import strategies as st

from wire.constructs import (
    KafkaArray,
    KafkaBytes,
    KafkaConstructError,
    KafkaString,
    KafkaUuid,
    UVarInt,
    VarInt,
    read_uvarint,
    uvarint_bytes,
)
from wire.errors import InvalidValueError, TruncatedError
from wire.fastpath import FastPathError, _uvarint_bytes, _uvarint_tail


@pytest.mark.parametrize(
    ("value", "encoded"),
    [(0, b"\x00"), (1, b"\x01"), (127, b"\x7f"), (128, b"\x80\x01"), (300, b"\xac\x02"),
     (2**32 - 1, b"\xff\xff\xff\xff\x0f")],
)
def test_unsigned_varint(value: int, encoded: bytes) -> None:
    assert UVarInt().build(value) == encoded
    assert UVarInt().parse(encoded) == value
    assert _uvarint_bytes(value) == encoded


@pytest.mark.parametrize(
    ("bits", "value", "encoded"),
    [
        (32, 0, b"\x00"), (32, -1, b"\x01"), (32, 1, b"\x02"), (32, -2, b"\x03"),
        (32, 2**31 - 1, b"\xfe\xff\xff\xff\x0f"), (32, -(2**31), b"\xff\xff\xff\xff\x0f"),
        (64, -(2**63), b"\xff" * 9 + b"\x01"), (64, 2**63 - 1, b"\xfe" + b"\xff" * 8 + b"\x01"),
    ],
)
def test_zigzag_varint_and_varlong(bits: int, value: int, encoded: bytes) -> None:
    assert VarInt(bits).build(value) == encoded
    assert VarInt(bits).parse(encoded) == value


@given(value=st.integers(-(2**63), 2**63 - 1))
def test_varlong_round_trip(value: int) -> None:
    assert VarInt(64).parse(VarInt(64).build(value)) == value


def test_varints_out_of_range() -> None:
    with pytest.raises(ConstructError):
        VarInt(32).build(2**31)
    with pytest.raises(ConstructError):
        UVarInt().build(-1)
    with pytest.raises(KafkaConstructError, match="longer than 5"):
        UVarInt().parse(b"\x80\x80\x80\x80\x80\x00")
    with pytest.raises(KafkaConstructError, match="2\\*\\*32"):
        UVarInt().parse(b"\xff\xff\xff\xff\x1f")
    with pytest.raises(KafkaConstructError, match="wider than 32"):
        VarInt(32).parse(b"\xff\xff\xff\xff\x1f")
    with pytest.raises(KafkaConstructError) as caught:
        UVarInt().parse(b"\x80")
    assert caught.value.kind is TruncatedError


def _reference_uvarint(data: bytes) -> tuple[int, int] | None:
    stream = io.BytesIO(data)
    try:
        value = read_uvarint(stream, "")
    except KafkaConstructError:
        return None
    return None if value >> 32 else (value, stream.tell())


def _fast_uvarint(data: bytes) -> tuple[int, int] | None:
    if data[0] < 128:
        return data[0], 1
    try:
        return _uvarint_tail(data, 1, data[0])
    except (FastPathError, IndexError):
        return None


@given(data=st.binary(min_size=1, max_size=7))
def test_fast_varint_reader_agrees_with_the_reference(data: bytes) -> None:
    assert _fast_uvarint(data) == _reference_uvarint(data)


def test_uvarint_bytes_helper() -> None:
    assert uvarint_bytes(0) == b"\x00"
    assert uvarint_bytes(16384) == b"\x80\x80\x01"


def test_strings_classic_and_compact() -> None:
    assert KafkaString(compact=False, nullable=True).build(None) == b"\xff\xff"
    assert KafkaString(compact=True, nullable=True).build(None) == b"\x00"
    assert KafkaString(compact=True, nullable=False).build("é") == b"\x03\xc3\xa9"
    assert KafkaString(compact=False, nullable=False).parse(b"\x00\x02\xc3\xa9") == "é"
    with pytest.raises(ConstructError):
        KafkaString(compact=False, nullable=False).build(None)
    with pytest.raises(KafkaConstructError, match="null"):
        KafkaString(compact=False, nullable=False).parse(b"\xff\xff")


def test_bytes_lengths_are_checked_before_reading() -> None:
    with pytest.raises(KafkaConstructError) as caught:
        KafkaBytes(compact=False, nullable=False).parse(b"\x7f\xff\xff\xff" + b"abc")
    assert caught.value.kind is TruncatedError
    assert caught.value.offset == 0
    assert KafkaBytes(compact=True, nullable=True).parse(b"\x00") is None


def test_array_count_bounded_by_the_smallest_element() -> None:
    array = KafkaArray(Int32sb, compact=False, nullable=False, min_element_size=4)
    assert array.parse(b"\x00\x00\x00\x02" + b"\x00\x00\x00\x01\x00\x00\x00\x02") == [1, 2]
    with pytest.raises(KafkaConstructError, match="3 elements cannot fit in the 8 bytes"):
        array.parse(b"\x00\x00\x00\x03" + bytes(8))
    with pytest.raises(KafkaConstructError, match="negative length"):
        array.parse(b"\xff\xff\xff\xfe")


def test_uuid_is_sixteen_big_endian_bytes() -> None:
    value = uuid.UUID("00112233-4455-6677-8899-aabbccddeeff")
    assert KafkaUuid().build(value) == bytes.fromhex("00112233445566778899aabbccddeeff")
    assert KafkaUuid().parse(value.bytes) == value
    with pytest.raises(ConstructError):
        KafkaUuid().build(value.bytes)


def test_error_kind_defaults_to_invalid_value() -> None:
    assert KafkaConstructError("x", path=None).kind is InvalidValueError
