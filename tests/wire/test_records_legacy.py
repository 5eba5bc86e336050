"""Legacy message sets (magic 0/1): decode client bytes, convert to v2, down-convert for old fetchers.

Message sets come from aiokafka's and kafka-python's legacy record builders (what those
clients send when forced to an old API version); ours are read back with aiokafka's reader.
"""

from __future__ import annotations

import struct
import zlib

import pytest
from aiokafka.record.legacy_records import LegacyRecordBatchBuilder
from aiokafka.record.memory_records import MemoryRecords
from hypothesis import given, settings
from hypothesis import strategies as st
from kafka.record.legacy_records import LegacyRecordBatchBuilder as KafkaPythonLegacyBuilder

from wire.records.batch import Compression, TimestampType, read_header
from wire.records.errors import (
    CompressionError,
    CorruptRecordError,
    CrcMismatchError,
    InvalidRecordError,
    TruncatedBatchError,
    UnsupportedCompressionError,
    UnsupportedMagicError,
)
from wire.records.legacy import (
    batches_to_message_set,
    encode_message_set,
    iter_legacy_messages,
    legacy_to_batch,
)
from wire.records.record import (
    BatchBuilder,
    ControlRecordType,
    Header,
    Record,
    build_control_batch,
    decode_batch,
)

RECORDS = [
    Record(20, 1_700_000_000_000, b"k0", b"v0"),
    Record(21, 1_700_000_000_009, None, b"v1"),
    Record(22, 1_700_000_000_003, b"k2", None),
]
#: aiokafka refuses lz4 in magic 0 (KAFKA-3160), so it is only built for magic 1.
CLIENT_CASES = [(0, c) for c in (0, 1, 2)] + [(1, c) for c in (0, 1, 2, 3)]


def aiokafka_message_set(magic: int, codec: int) -> bytes:
    builder = LegacyRecordBatchBuilder(magic=magic, compression_type=codec, batch_size=1 << 20)
    for index, record in enumerate(RECORDS):
        builder.append(index, timestamp=record.timestamp, key=record.key, value=record.value)
    return bytes(builder.build())


def client_reads(blob: bytes) -> list[tuple]:
    """What aiokafka's consumer reads: (offset, timestamp, key, value) of every message."""
    read = []
    records = MemoryRecords(blob)
    while records.has_next():
        read += [(r.offset, r.timestamp, r.key, r.value) for r in records.next_batch()]
    return read


@pytest.mark.parametrize("magic, codec", CLIENT_CASES)
def test_decodes_client_message_sets(magic: int, codec: int) -> None:
    messages = list(iter_legacy_messages(aiokafka_message_set(magic, codec)))

    assert [(m.key, m.value) for m in messages] == [(r.key, r.value) for r in RECORDS]
    assert all(m.magic == magic and m.compression == codec for m in messages)
    expected_timestamps = [r.timestamp for r in RECORDS] if magic else [-1] * 3
    assert [m.timestamp for m in messages] == expected_timestamps
    if codec == Compression.NONE or magic == 0:
        assert [m.offset for m in messages] == [0, 1, 2]


@pytest.mark.parametrize("magic, codec", [(0, 0), (0, 1), (1, 0), (1, 1)])
def test_decodes_kafka_python_message_sets(magic: int, codec: int) -> None:
    builder = KafkaPythonLegacyBuilder(magic=magic, compression_type=codec, batch_size=1 << 20)
    for index, record in enumerate(RECORDS):
        builder.append(index, timestamp=record.timestamp, key=record.key, value=record.value)

    messages = list(iter_legacy_messages(bytes(builder.build())))

    assert [(m.key, m.value) for m in messages] == [(r.key, r.value) for r in RECORDS]


@pytest.mark.parametrize("magic, codec", CLIENT_CASES)
def test_client_reads_what_we_write(magic: int, codec: int) -> None:
    blob = encode_message_set(RECORDS, magic=magic, compression=codec)

    read = client_reads(blob)

    assert [(o, k, v) for o, _, k, v in read] == [(r.offset, r.key, r.value) for r in RECORDS]
    if magic == 1:
        assert [t for _, t, _, _ in read] == [r.timestamp for r in RECORDS]


@pytest.mark.parametrize("magic", [0, 1])
@pytest.mark.parametrize("codec", [0, 1, 2, 3])
def test_encode_then_decode_keeps_absolute_offsets(magic: int, codec: int) -> None:
    messages = list(
        iter_legacy_messages(encode_message_set(RECORDS, magic=magic, compression=codec))
    )
    assert [(m.offset, m.key, m.value) for m in messages] == [
        (r.offset, r.key, r.value) for r in RECORDS
    ]
    assert {m.compression for m in messages} == {codec}


def test_v1_relative_offsets_resolve_from_the_wrapper_offset() -> None:
    blob = encode_message_set(RECORDS, magic=1, compression=Compression.GZIP)
    assert struct.unpack_from(">q", blob)[0] == 22  # wrapper carries the last offset
    assert [m.offset for m in iter_legacy_messages(blob)] == [20, 21, 22]


def test_log_append_time_wrapper_stamps_inner_messages() -> None:
    records = [r._replace(timestamp=500) for r in RECORDS]
    blob = encode_message_set(
        records, magic=1, compression=Compression.GZIP, timestamp_type=TimestampType.LOG_APPEND_TIME
    )
    messages = list(iter_legacy_messages(blob))
    assert {(m.timestamp, m.timestamp_type) for m in messages} == {
        (500, TimestampType.LOG_APPEND_TIME)
    }


@pytest.mark.parametrize("magic, codec", CLIENT_CASES)
def test_legacy_produce_converts_to_one_v2_batch(magic: int, codec: int) -> None:
    batch = legacy_to_batch(aiokafka_message_set(magic, codec))

    header = read_header(batch)
    assert header.compression == codec
    assert header.record_count == 3
    records = decode_batch(batch)
    assert [(r.offset, r.key, r.value) for r in records] == [
        (i, r.key, r.value) for i, r in enumerate(RECORDS)
    ]
    expected_timestamps = [r.timestamp for r in RECORDS] if magic else [-1] * 3
    assert [r.timestamp for r in records] == expected_timestamps


def test_legacy_conversion_can_change_codec() -> None:
    batch = legacy_to_batch(aiokafka_message_set(1, 1), compression=Compression.ZSTD)
    assert read_header(batch).compression == Compression.ZSTD


def test_empty_message_set_does_not_convert() -> None:
    with pytest.raises(InvalidRecordError):
        legacy_to_batch(b"")


@pytest.mark.parametrize("magic", [0, 1])
@pytest.mark.parametrize("codec", [0, 1, 2, 3])
def test_down_conversion_for_old_fetchers(magic: int, codec: int) -> None:
    builder = BatchBuilder(base_offset=100, compression=codec)
    for record in RECORDS:
        builder.append(
            record.value,
            key=record.key,
            headers=[Header("h", b"dropped")],
            timestamp=record.timestamp,
        )
    marker = build_control_batch(
        ControlRecordType.COMMIT,
        producer_id=1,
        producer_epoch=0,
        coordinator_epoch=0,
        base_offset=103,
    )
    second = BatchBuilder(base_offset=104)
    second.append(b"last", timestamp=7)
    partial_tail = builder.build()[:30]
    log = builder.build() + marker + second.build() + partial_tail

    down = batches_to_message_set(log, magic=magic)

    if magic == 0 and codec == Compression.LZ4:  # aiokafka cannot read it (KAFKA-3160)
        read = [(m.offset, m.timestamp, m.key, m.value) for m in iter_legacy_messages(down)]
    else:
        read = client_reads(down)
    assert [(o, k, v) for o, _, k, v in read] == [
        (100, b"k0", b"v0"), (101, None, b"v1"), (102, b"k2", None), (104, None, b"last")
    ]  # fmt: skip
    if magic == 1:
        assert [t for _, t, _, _ in read] == [r.timestamp for r in RECORDS] + [7]


def test_down_conversion_of_zstd_is_unsupported_compression_type() -> None:
    builder = BatchBuilder(compression=Compression.ZSTD)
    builder.append(b"x")
    with pytest.raises(UnsupportedCompressionError) as raised:
        batches_to_message_set(builder.build(), magic=1)
    assert raised.value.kafka_error_code == 76
    with pytest.raises(UnsupportedCompressionError):
        encode_message_set(RECORDS, magic=1, compression=Compression.ZSTD)


def test_encode_refuses_magic_two() -> None:
    with pytest.raises(ValueError):
        encode_message_set(RECORDS, magic=2)


# --- damage --------------------------------------------------------------------------------------


def test_crc_damage_is_detected() -> None:
    blob = bytearray(encode_message_set(RECORDS, magic=1))
    blob[30] ^= 0x01
    with pytest.raises(CrcMismatchError) as raised:
        list(iter_legacy_messages(blob))
    assert raised.value.kafka_error_code == 2


@pytest.mark.parametrize("magic", [0, 1])
def test_truncated_last_message(magic: int) -> None:
    blob = encode_message_set(RECORDS, magic=magic)
    last_message_size = len(encode_message_set(RECORDS[-1:], magic=magic))
    for cut in range(1, last_message_size):
        truncated = blob[:-cut]
        with pytest.raises(TruncatedBatchError):
            list(iter_legacy_messages(truncated))
        assert len(list(iter_legacy_messages(truncated, allow_truncated_tail=True))) == 2


def message(
    magic: int, attributes: int, key: bytes | None, value: bytes | None, *, offset: int = 0
) -> bytes:
    body = bytes((magic, attributes)) + (struct.pack(">q", 0) if magic else b"")
    for field in (key, value):
        body += struct.pack(">i", -1) if field is None else struct.pack(">i", len(field)) + field
    return struct.pack(">qiI", offset, len(body) + 4, zlib.crc32(body)) + body


def test_nested_compression_is_invalid() -> None:
    inner = encode_message_set(RECORDS, magic=1, compression=Compression.GZIP)
    wrapper = message(1, Compression.GZIP, None, zlib_gzip(inner))
    with pytest.raises(InvalidRecordError, match="nest"):
        list(iter_legacy_messages(wrapper))


def test_inner_magic_must_match_the_wrapper() -> None:
    wrapper = message(1, Compression.GZIP, None, zlib_gzip(encode_message_set(RECORDS, magic=0)))
    with pytest.raises(InvalidRecordError, match="magic"):
        list(iter_legacy_messages(wrapper))


def test_wrapper_without_value_is_invalid() -> None:
    with pytest.raises(InvalidRecordError):
        list(iter_legacy_messages(message(1, Compression.GZIP, None, None)))


def test_wrapper_with_empty_inner_set_is_invalid() -> None:
    with pytest.raises(InvalidRecordError):
        list(iter_legacy_messages(message(1, Compression.GZIP, None, zlib_gzip(b""))))


def test_zstd_in_a_legacy_wrapper_is_refused() -> None:
    with pytest.raises(CompressionError):
        list(iter_legacy_messages(message(1, Compression.ZSTD, None, b"x")))


def test_key_length_overrunning_the_message_is_corrupt() -> None:
    blob = bytearray(message(1, 0, b"abc", b"xyz"))
    struct.pack_into(">i", blob, 26, 1000)
    struct.pack_into(">I", blob, 12, zlib.crc32(blob[16:]))
    with pytest.raises(CorruptRecordError, match="key length"):
        list(iter_legacy_messages(blob))


def test_stray_bytes_after_the_value_are_corrupt() -> None:
    blob = bytearray(message(0, 0, None, b"xyz"))
    blob += b"!!"
    struct.pack_into(">i", blob, 8, len(blob) - 12)
    struct.pack_into(">I", blob, 12, zlib.crc32(blob[16:]))
    with pytest.raises(CorruptRecordError, match="stray"):
        list(iter_legacy_messages(blob))


def test_message_size_below_minimum_is_corrupt() -> None:
    blob = bytearray(message(1, 0, None, b""))
    struct.pack_into(">i", blob, 8, 10)
    with pytest.raises(CorruptRecordError, match="minimum"):
        list(iter_legacy_messages(blob, allow_truncated_tail=True))


def test_magic_two_is_not_a_legacy_message() -> None:
    builder = BatchBuilder()
    builder.append(b"x")
    with pytest.raises(UnsupportedMagicError):
        list(iter_legacy_messages(builder.build()))


def zlib_gzip(data: bytes) -> bytes:
    packer = zlib.compressobj(6, zlib.DEFLATED, 31)
    return packer.compress(data) + packer.flush()


@settings(max_examples=150, deadline=None)
@given(
    values=st.lists(
        st.tuples(
            st.one_of(st.none(), st.binary(max_size=20)),
            st.one_of(st.none(), st.binary(max_size=40)),
        ),
        min_size=1,
        max_size=6,
    ),
    first_offset=st.integers(min_value=0, max_value=2**40),
    magic=st.sampled_from([0, 1]),
    codec=st.sampled_from([0, 1, 2, 3]),
)
def test_any_message_set_round_trips(
    values: list[tuple[bytes | None, bytes | None]], first_offset: int, magic: int, codec: int
) -> None:
    records = [
        Record(first_offset + index, 1_000 + index, key, value)
        for index, (key, value) in enumerate(values)
    ]
    decoded = list(
        iter_legacy_messages(encode_message_set(records, magic=magic, compression=codec))
    )
    assert [(m.offset, m.key, m.value) for m in decoded] == [
        (r.offset, r.key, r.value) for r in records
    ]
    assert [m.timestamp for m in decoded] == [r.timestamp if magic else -1 for r in records]
