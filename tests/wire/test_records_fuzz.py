"""Fuzzing the record decoders: whatever the bytes, only ``DecodeError`` escapes.

Two kinds of input: arbitrary bytes, and valid batches / message sets / compressed payloads
that are then damaged (bytes flipped, cut, inserted) with their checksums repaired, so the
damage reaches the decoders behind the CRC check. Decompression is capped small, so a
damaged length cannot make a decoder allocate much. Runs are derandomized so that CI is
deterministic; thousands of cases in total.
"""

from __future__ import annotations

import contextlib
import struct
import zlib

from crc32c import crc32c
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wire.errors import DecodeError
from wire.records.batch import Compression, check_produce_records, iter_batches, verify_crc
from wire.records.compression import decompress
from wire.records.legacy import (
    batches_to_message_set,
    encode_message_set,
    iter_legacy_messages,
    legacy_to_batch,
)
from wire.records.record import (
    BatchBuilder,
    Header,
    Record,
    build_control_batch,
    decode_batch,
    decode_control_record,
    validate_records,
)

MAX_SIZE = 64 * 1024
FUZZ = settings(
    max_examples=1500,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def sample_batch(codec: int) -> bytes:
    builder = BatchBuilder(
        base_offset=3, compression=codec, producer_id=1, producer_epoch=0, base_sequence=0
    )
    for index in range(4):
        builder.append(
            b"value-%d" % index * (index + 1),
            key=None if index == 1 else b"key",
            headers=[Header("h", b"x"), Header("n", None)],
            timestamp=1_000 + index,
        )
    return builder.build()


SEEDS_V2 = [sample_batch(codec) for codec in Compression] + [
    build_control_batch(0, producer_id=1, producer_epoch=0, coordinator_epoch=2)
]
SEED_RECORDS = [Record(10 + i, 100 + i, b"k" if i else None, b"v%d" % i) for i in range(3)]
SEEDS_LEGACY = [
    encode_message_set(SEED_RECORDS, magic=magic, compression=codec)
    for magic in (0, 1)
    for codec in (0, 1, 2, 3)
]
#: Compressed records sections (what follows the 61-byte header), per codec.
SEEDS_COMPRESSED = {
    codec: sample_batch(codec)[61:] for codec in Compression if codec != Compression.NONE
}


@st.composite
def damaged(draw, seeds: list[bytes]) -> bytearray:
    """A seed with a few random edits: flips, cuts, insertions, overwritten int32 fields."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        if not data:
            break
        kind = draw(st.sampled_from(["flip", "cut", "insert", "int32"]))
        position = draw(st.integers(min_value=0, max_value=len(data) - 1))
        if kind == "flip":
            data[position] ^= draw(st.integers(min_value=1, max_value=255))
        elif kind == "cut":
            del data[position : position + draw(st.integers(min_value=1, max_value=16))]
        elif kind == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=8))
        elif position + 4 <= len(data):
            value = draw(st.sampled_from([-2, -1, 0, 1, 0x7FFFFFFF, 1 << 20]))
            struct.pack_into(">i", data, position, value)
    return data


def repair_v2_crcs(data: bytearray) -> None:
    """Recompute the CRC of every batch whose declared length still fits."""
    position = 0
    while position + 61 <= len(data):
        (length,) = struct.unpack_from(">i", data, position + 8)
        end = position + 12 + length
        if length < 49 or end > len(data):
            return
        struct.pack_into(">I", data, position + 17, crc32c(bytes(data[position + 21 : end])))
        position = end


def repair_legacy_crcs(data: bytearray) -> None:
    position = 0
    while position + 26 <= len(data):
        (size,) = struct.unpack_from(">i", data, position + 8)
        end = position + 12 + size
        if size < 14 or end > len(data):
            return
        struct.pack_into(">I", data, position + 12, zlib.crc32(bytes(data[position + 16 : end])))
        position = end


def decode_everything_v2(data: bytes | bytearray) -> None:
    """Run every v2 reader over ``data``; a DecodeError is a fine answer, nothing else is."""
    with contextlib.suppress(DecodeError):
        for position, header in iter_batches(data, allow_truncated_tail=True):
            verify_crc(data, position, header)
            records = decode_batch(data, position, header, max_size=MAX_SIZE)
            validate_records(data, position, header, max_size=MAX_SIZE, require_keys=True)
            if header.is_control and records:
                decode_control_record(records[0])
    for reader in (
        check_produce_records,
        lambda blob: batches_to_message_set(blob, magic=1, max_size=MAX_SIZE),
    ):
        with contextlib.suppress(DecodeError):
            reader(data)


def decode_everything_legacy(data: bytes | bytearray) -> None:
    for reader in (
        lambda blob: list(iter_legacy_messages(blob, max_size=MAX_SIZE)),
        lambda blob: list(iter_legacy_messages(blob, max_size=MAX_SIZE, allow_truncated_tail=True)),
        lambda blob: legacy_to_batch(blob, max_size=MAX_SIZE),
    ):
        with contextlib.suppress(DecodeError):
            reader(data)


@FUZZ
@given(st.binary(max_size=600))
def test_arbitrary_bytes_as_record_batches(data: bytes) -> None:
    decode_everything_v2(data)


@FUZZ
@given(damaged(SEEDS_V2), st.booleans())
def test_damaged_record_batches(data: bytearray, repair: bool) -> None:
    if repair:
        repair_v2_crcs(data)
    decode_everything_v2(data)


@FUZZ
@given(st.binary(max_size=600))
def test_arbitrary_bytes_as_legacy_message_sets(data: bytes) -> None:
    decode_everything_legacy(data)


@FUZZ
@given(damaged(SEEDS_LEGACY), st.booleans())
def test_damaged_legacy_message_sets(data: bytearray, repair: bool) -> None:
    if repair:
        repair_legacy_crcs(data)
    decode_everything_legacy(data)


@FUZZ
@given(st.sampled_from(list(Compression) + [5, 7]), st.binary(max_size=300))
def test_arbitrary_bytes_as_compressed_payloads(codec: int, data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        assert len(decompress(codec, data, max_size=MAX_SIZE)) <= MAX_SIZE


@FUZZ
@given(st.data())
def test_damaged_compressed_payloads(data: st.DataObject) -> None:
    codec = data.draw(st.sampled_from(sorted(SEEDS_COMPRESSED)))
    payload = data.draw(damaged([SEEDS_COMPRESSED[codec]]))
    with contextlib.suppress(DecodeError):
        assert len(decompress(codec, payload, max_size=MAX_SIZE)) <= MAX_SIZE
