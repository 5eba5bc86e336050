"""RecordBatch v2 header handling: parse, walk, CRC, in-place patches, Produce header rules.

Batches come from aiokafka's own record builder (the bytes a real client sends) and are read
back with aiokafka's reader after kop patches them, so both directions are checked against a
real client implementation.
"""

from __future__ import annotations

import struct

import pytest
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.record.memory_records import MemoryRecords

from wire.errors import DecodeError
from wire.records.batch import (
    BATCH_HEADER_SIZE,
    Compression,
    TimestampType,
    assign_offsets,
    check_client_batch,
    check_produce_records,
    iter_batches,
    patch_base_offset,
    patch_partition_leader_epoch,
    peek_magic,
    read_header,
    set_log_append_time,
    verify_crc,
    write_header,
)
from wire.records.errors import (
    CompressionError,
    CorruptRecordError,
    CrcMismatchError,
    InvalidRecordError,
    TruncatedBatchError,
    UnsupportedMagicError,
)
from wire.records.record import BatchBuilder, ControlRecordType, build_control_batch, decode_batch


def client_batch(
    count: int = 3,
    *,
    codec: int = Compression.NONE,
    producer_id: int = -1,
    producer_epoch: int = -1,
    base_sequence: int = -1,
    transactional: bool = False,
    first_timestamp: int = 1_700_000_000_000,
) -> bytes:
    """A batch as aiokafka's producer writes it."""
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=codec,
        is_transactional=int(transactional),
        producer_id=producer_id,
        producer_epoch=producer_epoch,
        base_sequence=base_sequence,
        batch_size=1 << 20,
    )
    for index in range(count):
        builder.append(
            index,
            timestamp=first_timestamp + index,
            key=f"key-{index}".encode(),
            value=f"value-{index}".encode(),
            headers=[("h", b"x")],
        )
    return bytes(builder.build())


def client_reads(blob: bytes) -> list[tuple]:
    """What aiokafka's consumer reads from a records blob: (offset, timestamp, type, key, value)."""
    found = []
    records = MemoryRecords(blob)
    while records.has_next():
        batch = records.next_batch()
        assert batch.validate_crc()
        found += [(r.offset, r.timestamp, r.timestamp_type, r.key, r.value) for r in batch]
    return found


def test_header_fields_match_what_the_client_wrote() -> None:
    blob = client_batch(
        5,
        codec=Compression.GZIP,
        producer_id=42,
        producer_epoch=3,
        base_sequence=7,
        transactional=True,
    )

    header = read_header(blob)

    assert header.base_offset == 0
    assert header.batch_length == len(blob) - 12
    assert header.size == len(blob)
    assert header.magic == 2
    assert header.record_count == 5
    assert header.last_offset_delta == 4
    assert header.base_timestamp == 1_700_000_000_000
    assert header.max_timestamp == 1_700_000_000_004
    assert (header.producer_id, header.producer_epoch, header.base_sequence) == (42, 3, 7)
    assert header.compression == Compression.GZIP
    assert header.timestamp_type == TimestampType.CREATE_TIME
    assert header.is_transactional
    assert not header.is_control
    assert not header.has_delete_horizon
    assert header.has_producer_id
    assert header.last_offset == 4
    assert header.next_offset == 5
    assert header.last_sequence == 11


def test_last_sequence_wraps_like_kafka() -> None:
    header = read_header(client_batch(3, producer_id=1, producer_epoch=0, base_sequence=2**31 - 2))
    assert header.last_sequence == 0
    assert read_header(client_batch(1)).last_sequence == -1


def test_control_batch_flags() -> None:
    header = read_header(
        build_control_batch(
            ControlRecordType.COMMIT, producer_id=9, producer_epoch=1, coordinator_epoch=0
        )
    )
    assert header.is_control and header.is_transactional


def test_iter_batches_walks_concatenated_batches() -> None:
    batches = [client_batch(n) for n in (1, 4, 2)]
    blob = b"".join(batches)

    walked = list(iter_batches(blob))

    assert [position for position, _ in walked] == [
        0,
        len(batches[0]),
        len(batches[0]) + len(batches[1]),
    ]
    assert [header.record_count for _, header in walked] == [1, 4, 2]


def test_iter_batches_of_nothing_yields_nothing() -> None:
    assert list(iter_batches(b"")) == []


@pytest.mark.parametrize("cut", [1, 11, 12, 16, 17, 30, 60, 61, -1])
def test_truncated_last_batch_is_reported_distinctly(cut: int) -> None:
    first, second = client_batch(2), client_batch(3)
    blob = first + second[:cut]

    with pytest.raises(TruncatedBatchError) as raised:
        list(iter_batches(blob))
    assert raised.value.offset == len(first)
    assert raised.value.available == len(blob) - len(first)

    # A fetch response may end in a partial batch: the complete ones are still returned.
    assert [position for position, _ in iter_batches(blob, allow_truncated_tail=True)] == [0]


def test_batch_length_below_header_size_is_corrupt_not_truncated() -> None:
    blob = bytearray(client_batch(1))
    struct.pack_into(">i", blob, 8, BATCH_HEADER_SIZE - 13)

    with pytest.raises(CorruptRecordError) as raised:
        list(iter_batches(blob, allow_truncated_tail=True))
    assert not isinstance(raised.value, TruncatedBatchError)
    assert raised.value.kafka_error_code == 2


def test_negative_batch_length_is_corrupt() -> None:
    blob = bytearray(client_batch(1))
    struct.pack_into(">i", blob, 8, -5)
    with pytest.raises(CorruptRecordError):
        read_header(blob)


@pytest.mark.parametrize("magic", [0, 1, 3, 255])
def test_other_magic_is_refused(magic: int) -> None:
    blob = bytearray(client_batch(1))
    blob[16] = magic
    with pytest.raises(UnsupportedMagicError) as raised:
        read_header(blob)
    assert raised.value.magic == magic
    assert peek_magic(blob) == magic


def test_peek_magic_of_short_blob_is_none() -> None:
    assert peek_magic(b"\x00" * 16) is None


def test_crc_of_client_batch_verifies() -> None:
    for codec in Compression:
        blob = client_batch(4, codec=codec)
        verify_crc(blob, 0, read_header(blob))


def test_crc_detects_any_change_from_attributes_to_end() -> None:
    blob = client_batch(3)
    for position in range(21, len(blob)):
        damaged = bytearray(blob)
        damaged[position] ^= 0x01
        header = read_header(damaged)
        with pytest.raises(CrcMismatchError):
            verify_crc(damaged, 0, header)


def test_crc_ignores_base_offset_and_leader_epoch() -> None:
    blob = bytearray(client_batch(3))
    patch_base_offset(blob, 0, 123_456_789_012)
    patch_partition_leader_epoch(blob, 0, 77)

    header = read_header(blob)

    verify_crc(blob, 0, header)
    assert header.base_offset == 123_456_789_012
    assert header.partition_leader_epoch == 77


def test_assign_offsets_in_place_is_read_back_by_the_client() -> None:
    first, second = client_batch(2), client_batch(3)
    blob = bytearray(first + second)
    original_crcs = [header.crc for _, header in iter_batches(blob)]

    next_offset = 1000
    for position, header in list(iter_batches(blob)):
        patched = assign_offsets(blob, position, header, next_offset, 5)
        assert patched == read_header(blob, position)
        next_offset = patched.next_offset

    assert [header.crc for _, header in iter_batches(blob)] == original_crcs
    assert [header.partition_leader_epoch for _, header in iter_batches(blob)] == [5, 5]
    assert [entry[0] for entry in client_reads(bytes(blob))] == [1000, 1001, 1002, 1003, 1004]


def test_patches_work_on_a_memoryview_of_a_larger_buffer() -> None:
    prefix = b"\xff" * 7
    buffer = bytearray(prefix + client_batch(2))
    view = memoryview(buffer)[len(prefix) :]
    header = read_header(view)

    assign_offsets(view, 0, header, 42, 3)

    assert buffer[: len(prefix)] == prefix
    assert read_header(view).base_offset == 42
    verify_crc(view, 0, read_header(view))


def test_set_log_append_time_rewrites_crc_and_record_timestamps() -> None:
    blob = bytearray(client_batch(3, codec=Compression.LZ4))
    header = read_header(blob)

    patched = set_log_append_time(blob, 0, header, 1_800_000_000_000)

    assert patched == read_header(blob)
    assert patched.timestamp_type == TimestampType.LOG_APPEND_TIME
    assert patched.max_timestamp == 1_800_000_000_000
    assert patched.compression == Compression.LZ4
    verify_crc(blob, 0, patched)
    assert [(ts, kind) for _, ts, kind, _, _ in client_reads(bytes(blob))] == [
        (1_800_000_000_000, 1)
    ] * 3
    assert [r.timestamp for r in decode_batch(blob)] == [1_800_000_000_000] * 3


# --- Produce header rules --------------------------------------------------------------------


def rewrite_header(blob: bytes, **fields: int) -> bytearray:
    """The batch with header fields replaced and its CRC made valid again."""
    out = bytearray(blob)
    write_header(out, 0, read_header(blob)._replace(**fields))
    return out


def test_client_batch_passes_produce_rules() -> None:
    blob = client_batch(3, producer_id=5, producer_epoch=0, base_sequence=0)
    assert check_produce_records(blob) == [(0, read_header(blob))]


@pytest.mark.parametrize(
    "fields, words",
    [
        ({"record_count": 0}, "record count"),
        ({"record_count": 2}, "disagrees"),
        ({"last_offset_delta": -1}, "offset range"),
        ({"attributes": 0x30}, "control"),
        ({"producer_id": 5, "base_sequence": -1}, "sequence"),
    ],
)
def test_produce_rules_reject_with_invalid_record(fields: dict, words: str) -> None:
    blob = rewrite_header(client_batch(3), **fields)

    with pytest.raises(InvalidRecordError, match=words) as raised:
        check_produce_records(blob)
    assert raised.value.kafka_error_code == 87


def test_unknown_codec_is_refused_on_produce() -> None:
    blob = rewrite_header(client_batch(3), attributes=5)
    with pytest.raises(CompressionError):
        check_client_batch(read_header(blob))


def test_produce_with_bad_crc_is_corrupt_message() -> None:
    blob = bytearray(client_batch(3))
    blob[-1] ^= 0xFF
    with pytest.raises(CrcMismatchError) as raised:
        check_produce_records(blob)
    assert raised.value.kafka_error_code == 2
    assert isinstance(raised.value, DecodeError)


def test_produce_with_two_batches_is_invalid_unless_allowed() -> None:
    blob = client_batch(1) + client_batch(2)
    with pytest.raises(InvalidRecordError, match="exactly one"):
        check_produce_records(blob)
    assert len(check_produce_records(blob, single_batch=False)) == 2


def test_produce_v3_with_a_legacy_message_set_is_invalid_record() -> None:
    legacy = bytearray(client_batch(1))
    legacy[16] = 1
    with pytest.raises(InvalidRecordError, match="magic 1") as raised:
        check_produce_records(legacy)
    assert raised.value.kafka_error_code == 87


def test_produce_with_no_batch_is_invalid() -> None:
    with pytest.raises(InvalidRecordError):
        check_produce_records(b"")


def test_produce_ending_in_partial_batch_is_refused() -> None:
    blob = client_batch(3) + client_batch(1)[:40]
    with pytest.raises(TruncatedBatchError):
        check_produce_records(blob, single_batch=False)


def test_builder_batches_follow_the_same_rules() -> None:
    builder = BatchBuilder(producer_id=3, producer_epoch=0, base_sequence=10)
    for index in range(4):
        builder.append(b"v%d" % index, timestamp=index)
    blob = builder.build()
    assert check_produce_records(blob)[0][1].record_count == 4
