"""Record v2 encode/decode, control records and per-record validation.

Interoperability is checked both ways against real client code: aiokafka's record builder
and reader (every codec) and kafka-python's (the codecs it has without optional packages).
"""

from __future__ import annotations

import struct
import time

import pytest
from aiokafka.record.control_record import ControlRecord as AiokafkaControlRecord
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.record.memory_records import MemoryRecords
from crc32c import crc32c
from hypothesis import given, settings
from hypothesis import strategies as st
from kafka.record.default_records import DefaultRecordBatch as KafkaPythonBatch
from kafka.record.default_records import DefaultRecordBatchBuilder as KafkaPythonBuilder

from wire.records.batch import Compression, TimestampType, read_header, set_log_append_time
from wire.records.errors import DecompressedTooLargeError, InvalidRecordError
from wire.records.record import (
    BatchBuilder,
    ControlRecordType,
    Header,
    Record,
    build_control_batch,
    decode_batch,
    decode_control_record,
    decode_records,
    validate_records,
    write_varint,
)

RECORDS = [
    Record(0, 1_700_000_000_000, b"k0", b"v0", (Header("trace", b"abc"),)),
    Record(1, 1_700_000_000_005, None, b"v1", ()),
    Record(2, 1_699_999_999_999, b"k2", None, (Header("a", None), Header("\u00e9", b""))),
    Record(3, 1_700_000_000_001, b"", b"", ()),
]


def build(records: list[Record], **options) -> bytes:
    builder = BatchBuilder(**options)
    for record in records:
        builder.append(
            record.value, key=record.key, headers=record.headers, timestamp=record.timestamp
        )
    return builder.build()


def shifted(records: list[Record], base_offset: int) -> list[Record]:
    return [record._replace(offset=record.offset + base_offset) for record in records]


@pytest.mark.parametrize("codec", list(Compression))
def test_builder_round_trip(codec: Compression) -> None:
    blob = build(RECORDS, compression=codec, base_offset=100)

    header = read_header(blob)
    assert header.compression == codec
    assert header.base_timestamp == RECORDS[0].timestamp
    assert header.max_timestamp == max(r.timestamp for r in RECORDS)
    assert decode_batch(blob) == shifted(RECORDS, 100)


@pytest.mark.parametrize("codec", list(Compression))
def test_client_reads_what_the_builder_writes(codec: Compression) -> None:
    blob = build(RECORDS, compression=codec, base_offset=7)

    batch = MemoryRecords(blob).next_batch()

    assert batch.validate_crc()
    read = [(r.offset, r.timestamp, r.key, r.value, list(r.headers)) for r in batch]
    assert read == [
        (r.offset + 7, r.timestamp, r.key, r.value, [tuple(h) for h in r.headers]) for r in RECORDS
    ]


@pytest.mark.parametrize("codec", list(Compression))
def test_decoder_reads_what_the_client_writes(codec: Compression) -> None:
    client = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=codec,
        is_transactional=0,
        producer_id=-1,
        producer_epoch=-1,
        base_sequence=-1,
        batch_size=1 << 20,
    )
    for record in RECORDS:
        client.append(
            record.offset,
            timestamp=record.timestamp,
            key=record.key,
            value=record.value,
            headers=[tuple(h) for h in record.headers],
        )

    assert decode_batch(bytes(client.build())) == RECORDS


@pytest.mark.parametrize("codec", [Compression.NONE, Compression.GZIP])
def test_kafka_python_round_trip(codec: Compression) -> None:
    client = KafkaPythonBuilder(
        magic=2, compression_type=codec, is_transactional=0, producer_id=-1,
        producer_epoch=-1, base_sequence=-1, batch_size=1 << 20,
    )  # fmt: skip
    for record in RECORDS:
        client.append(
            record.offset, record.timestamp, record.key, record.value, list(record.headers)
        )
    assert decode_batch(bytes(client.build())) == RECORDS

    ours = KafkaPythonBatch(build(RECORDS, compression=codec))
    assert [(r.offset, r.key, r.value) for r in ours] == [
        (r.offset, r.key, r.value) for r in RECORDS
    ]


def test_decode_records_walks_every_batch() -> None:
    blob = build(RECORDS[:2], base_offset=0) + build(RECORDS[2:], base_offset=2)

    decoded = list(decode_records(blob))

    assert [header.base_offset for header, _ in decoded] == [0, 2]
    assert [record for _, records in decoded for record in records] == RECORDS


def test_log_append_time_gives_every_record_the_batch_time() -> None:
    blob = build(RECORDS, timestamp_type=TimestampType.LOG_APPEND_TIME)
    header = read_header(blob)
    assert header.timestamp_type == TimestampType.LOG_APPEND_TIME
    assert {r.timestamp for r in decode_batch(blob)} == {header.max_timestamp}

    patched = bytearray(build(RECORDS))
    set_log_append_time(patched, 0, read_header(patched), 5)
    assert {r.timestamp for r in decode_batch(patched)} == {5}


def test_producer_fields_and_transactional_flag_are_written() -> None:
    blob = build(RECORDS, producer_id=11, producer_epoch=2, base_sequence=40, transactional=True)
    header = read_header(blob)
    assert (header.producer_id, header.producer_epoch, header.base_sequence) == (11, 2, 40)
    assert header.is_transactional and not header.is_control


def test_default_timestamp_is_now() -> None:
    builder = BatchBuilder()
    builder.append(b"x")
    assert abs(decode_batch(builder.build())[0].timestamp - time.time() * 1000) < 60_000


def test_empty_builder_refuses_to_build() -> None:
    with pytest.raises(ValueError):
        BatchBuilder().build()


@pytest.mark.parametrize("kind", list(ControlRecordType))
def test_control_batch_round_trip_and_client_view(kind: ControlRecordType) -> None:
    blob = build_control_batch(
        kind, producer_id=77, producer_epoch=4, coordinator_epoch=9, timestamp=123, base_offset=50
    )

    header = read_header(blob)
    assert header.is_control and header.is_transactional and header.record_count == 1
    (record,) = decode_batch(blob)
    control = decode_control_record(record)
    assert (control.type, control.coordinator_epoch) == (kind, 9)

    batch = MemoryRecords(blob).next_batch()
    assert batch.is_control_batch and batch.producer_id == 77
    (client_record,) = list(batch)
    assert AiokafkaControlRecord.parse(client_record.key) == AiokafkaControlRecord(0, int(kind))


@pytest.mark.parametrize(
    "key, value",
    [(None, b"\x00\x00\x00\x00\x00\x00"), (b"\x00\x00\x00\x07", b"\x00\x00\x00\x00\x00\x00"),
     (b"\x00\x00\x00\x01", b"\x00"), (b"\xff\xff\x00\x01", b"\x00\x00\x00\x00\x00\x00")],
)  # fmt: skip
def test_bad_control_records_are_invalid(key: bytes | None, value: bytes) -> None:
    with pytest.raises(InvalidRecordError):
        decode_control_record(Record(0, 0, key, value))


# --- malformed records -----------------------------------------------------------------------


def batch_around(section: bytes, count: int) -> bytes:
    """A batch header (valid CRC) around a hand-made records section."""
    body = struct.pack(">hiqqqhii", 0, count - 1, 0, 0, -1, -1, -1, count) + section
    crc = crc32c(body)
    return struct.pack(">qiibI", 0, len(body) + 9, -1, 2, crc) + body


def record_bytes(*fields: bytes) -> bytes:
    body = b"".join(fields)
    out = bytearray()
    write_varint(out, len(body))
    return bytes(out) + body


def varint(value: int) -> bytes:
    out = bytearray()
    write_varint(out, value)
    return bytes(out)


GOOD = record_bytes(b"\x00", varint(0), varint(0), varint(-1), varint(1), b"v", varint(0))


@pytest.mark.parametrize(
    "section, count, words",
    [
        (GOOD, 2, "ends inside a varint"),
        (GOOD + GOOD, 1, "remain after"),
        (record_bytes(b"\x00", varint(0), varint(0), varint(-1), varint(5), b"v", varint(0)), 1, "overruns"),
        (record_bytes(b"\x00", varint(0), varint(0), varint(-2), varint(-1), varint(0)), 1, "key length"),
        (record_bytes(b"\x00", varint(0), varint(0), varint(-1), varint(-1), varint(-1)), 1, "header count"),
        (record_bytes(b"\x00", varint(0), varint(0), varint(-1), varint(-1), varint(1), varint(-1), varint(-1)), 1, "null header key"),
        (record_bytes(b"\x00", varint(0), varint(0), varint(-1), varint(-1), varint(1), varint(1), b"\xff", varint(-1)), 1, "UTF-8"),
        (record_bytes(b"\x00", b"\xff" * 11), 1, "longer than"),
        (record_bytes(b"\x00", varint(0), varint(0), varint(-1), varint(-1), varint(0), b"\x00"), 1, "end elsewhere"),
        (varint(100) + b"\x00", 1, "overruns"),
        (varint(0), 1, "no attributes"),
    ],
)  # fmt: skip
def test_malformed_records_raise_invalid_record(section: bytes, count: int, words: str) -> None:
    with pytest.raises(InvalidRecordError, match=words) as raised:
        decode_batch(batch_around(section, count))
    assert raised.value.kafka_error_code == 87


def test_malformed_record_error_names_its_index() -> None:
    bad = record_bytes(b"\x00", varint(0), varint(1), varint(-1), varint(-1), varint(-3))
    with pytest.raises(InvalidRecordError) as raised:
        decode_batch(batch_around(GOOD + bad, 2))
    assert raised.value.record_index == 1


def test_negative_record_count_is_invalid() -> None:
    with pytest.raises(InvalidRecordError):
        decode_batch(batch_around(b"", -1))


def test_decompression_is_bounded_by_max_size() -> None:
    blob = build([Record(0, 0, None, bytes(100_000))], compression=Compression.ZSTD)
    with pytest.raises(DecompressedTooLargeError):
        decode_batch(blob, max_size=10_000)


# --- validation ------------------------------------------------------------------------------


def test_valid_batch_has_no_record_errors() -> None:
    blob = build(RECORDS)
    assert validate_records(blob, 0, read_header(blob), timestamp_range=(0, 2**62)) == []


def test_non_sequential_offset_deltas_are_reported_per_record() -> None:
    def record_with_delta(delta: int) -> bytes:
        return record_bytes(b"\x00", varint(0), varint(delta), varint(-1), varint(0), varint(0))

    blob = batch_around(record_with_delta(0) + record_with_delta(2) + record_with_delta(2), 3)

    errors = validate_records(blob, 0, read_header(blob))

    assert [(e.index, e.error_code) for e in errors] == [(1, 87)]


def test_missing_keys_are_reported_when_keys_are_required() -> None:
    blob = build(RECORDS)
    errors = validate_records(blob, 0, read_header(blob), require_keys=True)
    assert [(e.index, e.error_code) for e in errors] == [(1, 87)]


def test_timestamps_outside_the_window_are_invalid_timestamp() -> None:
    blob = build(RECORDS)
    window = (1_700_000_000_000, 1_700_000_000_004)
    errors = validate_records(blob, 0, read_header(blob), timestamp_range=window)
    assert [(e.index, e.error_code) for e in errors] == [(1, 32), (2, 32)]

    log_append = build(RECORDS, timestamp_type=TimestampType.LOG_APPEND_TIME)
    assert validate_records(log_append, 0, read_header(log_append), timestamp_range=window) == []


# --- property: any records survive a round trip ----------------------------------------------

header_strategy = st.builds(
    Header, st.text(max_size=8), st.one_of(st.none(), st.binary(max_size=16))
)
record_strategy = st.builds(
    Record,
    st.just(0),
    st.integers(min_value=0, max_value=2**48),
    st.one_of(st.none(), st.binary(max_size=32)),
    st.one_of(st.none(), st.binary(max_size=64)),
    st.lists(header_strategy, max_size=3).map(tuple),
)


@settings(max_examples=200, deadline=None)
@given(
    records=st.lists(record_strategy, min_size=1, max_size=8),
    codec=st.sampled_from(list(Compression)),
    base_offset=st.integers(min_value=0, max_value=2**62),
)
def test_any_records_round_trip(
    records: list[Record], codec: Compression, base_offset: int
) -> None:
    records = [record._replace(offset=index) for index, record in enumerate(records)]
    blob = build(records, compression=codec, base_offset=base_offset)
    assert decode_batch(blob) == shifted(records, base_offset)
