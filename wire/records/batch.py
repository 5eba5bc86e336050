"""RecordBatch v2 headers: parse, walk, verify and patch batches without touching records.

This is the produce and fetch hot path. A batch stays opaque bytes: its 61-byte header is read
with one ``struct.unpack_from`` into a :class:`BatchHeader`, its CRC-32C is checked with the C
implementation from the ``crc32c`` package, and the broker-assigned fields (base offset,
partition leader epoch) are written in place. Nothing here looks at individual records.

Layout (big-endian), with the byte offset of each field inside the batch::

     0 base_offset int64          27 base_timestamp int64
     8 batch_length int32         35 max_timestamp int64
    12 partition_leader_epoch     43 producer_id int64
    16 magic int8 (= 2)           51 producer_epoch int16
    17 crc uint32                 53 base_sequence int32
    21 attributes int16           57 record_count int32
    23 last_offset_delta int32    61 records...

``batch_length`` counts the bytes after itself, so a batch occupies ``12 + batch_length``
bytes. The CRC covers ``attributes`` to the end of the batch: base offset, length and
partition leader epoch can be rewritten without recomputing it; attributes and max timestamp
(LogAppendTime) cannot.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from enum import IntEnum
from typing import NamedTuple

from crc32c import crc32c

from wire.records.errors import (
    CompressionError,
    CorruptRecordError,
    CrcMismatchError,
    InvalidRecordError,
    TruncatedBatchError,
    UnsupportedMagicError,
)

#: Bytes before every batch or legacy message: base offset (int64) and length (int32).
LOG_OVERHEAD = 12
#: Size of the full v2 batch header, records start right after it.
BATCH_HEADER_SIZE = 61
#: The smallest legal ``batch_length`` (a header with no records).
MIN_BATCH_LENGTH = BATCH_HEADER_SIZE - LOG_OVERHEAD
#: Where the magic byte sits in a batch and in a legacy message alike.
MAGIC_OFFSET = 16
CRC_OFFSET = 17
#: The CRC covers everything from the attributes field to the end of the batch.
ATTRIBUTES_OFFSET = 21
MAX_TIMESTAMP_OFFSET = 35

MAGIC_V2 = 2
NO_PRODUCER_ID = -1
NO_PRODUCER_EPOCH = -1
NO_SEQUENCE = -1
NO_PARTITION_LEADER_EPOCH = -1
NO_TIMESTAMP = -1

_HEADER = struct.Struct(">qiibIhiqqqhii")
_LENGTH = struct.Struct(">i")
_OFFSET_LENGTH_EPOCH = struct.Struct(">qii")
_ATTRIBUTES = struct.Struct(">h")
_TIMESTAMP = struct.Struct(">q")
_CRC = struct.Struct(">I")

_COMPRESSION_MASK = 0x07
_TIMESTAMP_TYPE_BIT = 0x08
_TRANSACTIONAL_BIT = 0x10
_CONTROL_BIT = 0x20
_DELETE_HORIZON_BIT = 0x40

assert _HEADER.size == BATCH_HEADER_SIZE


class Compression(IntEnum):
    """Compression codec ids, as stored in the low three attribute bits."""

    NONE = 0
    GZIP = 1
    SNAPPY = 2
    LZ4 = 3
    ZSTD = 4


class TimestampType(IntEnum):
    """Whether record timestamps were set by the producer or by the broker on append."""

    CREATE_TIME = 0
    LOG_APPEND_TIME = 1


class BatchHeader(NamedTuple):
    """The 61-byte header of a RecordBatch v2, field for field."""

    base_offset: int
    batch_length: int
    partition_leader_epoch: int
    magic: int
    crc: int
    attributes: int
    last_offset_delta: int
    base_timestamp: int
    max_timestamp: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    record_count: int

    @property
    def compression(self) -> int:
        """The codec id (see :class:`Compression`); may be an unknown id 5..7."""
        return self.attributes & _COMPRESSION_MASK

    @property
    def timestamp_type(self) -> TimestampType:
        if self.attributes & _TIMESTAMP_TYPE_BIT:
            return TimestampType.LOG_APPEND_TIME
        return TimestampType.CREATE_TIME

    @property
    def is_transactional(self) -> bool:
        return bool(self.attributes & _TRANSACTIONAL_BIT)

    @property
    def is_control(self) -> bool:
        return bool(self.attributes & _CONTROL_BIT)

    @property
    def has_delete_horizon(self) -> bool:
        return bool(self.attributes & _DELETE_HORIZON_BIT)

    @property
    def has_producer_id(self) -> bool:
        return self.producer_id > NO_PRODUCER_ID

    @property
    def size(self) -> int:
        """Bytes the whole batch occupies, header included."""
        return LOG_OVERHEAD + self.batch_length

    @property
    def last_offset(self) -> int:
        """Offset of the batch's last record (base offset + last offset delta)."""
        return self.base_offset + self.last_offset_delta

    @property
    def next_offset(self) -> int:
        """The offset right after this batch: what the high watermark becomes after it."""
        return self.base_offset + self.last_offset_delta + 1

    @property
    def last_sequence(self) -> int:
        """Sequence number of the last record, wrapping like Kafka; -1 without a sequence."""
        if self.base_sequence == NO_SEQUENCE:
            return NO_SEQUENCE
        return (self.base_sequence + self.last_offset_delta) % 0x80000000


def read_header(records: bytes | bytearray | memoryview, position: int = 0) -> BatchHeader:
    """Read the v2 batch header at ``position``, checking it lies inside ``records``.

    Raises :class:`TruncatedBatchError` when the header or the batch it declares does not
    fit, :class:`UnsupportedMagicError` for magic other than 2 and
    :class:`CorruptRecordError` for an impossible batch length.
    """
    available = len(records) - position
    if available < MAGIC_OFFSET + 1:
        raise TruncatedBatchError(
            "record batch cut short before its magic byte",
            position=position,
            needed=MAGIC_OFFSET + 1,
            available=available,
        )
    magic = records[position + MAGIC_OFFSET]
    if magic != MAGIC_V2:
        raise UnsupportedMagicError(magic, position=position, expected="2")
    (batch_length,) = _LENGTH.unpack_from(records, position + 8)
    if batch_length < MIN_BATCH_LENGTH:
        raise CorruptRecordError(
            f"record batch length {batch_length} is below the minimum {MIN_BATCH_LENGTH}",
            position=position,
        )
    if available < LOG_OVERHEAD + batch_length:
        raise TruncatedBatchError(
            "record batch cut short",
            position=position,
            needed=LOG_OVERHEAD + batch_length,
            available=available,
        )
    return BatchHeader._make(_HEADER.unpack_from(records, position))


def iter_batches(
    records: bytes | bytearray | memoryview, *, allow_truncated_tail: bool = False
) -> Iterator[tuple[int, BatchHeader]]:
    """Yield ``(position, header)`` for each v2 batch in a blob of concatenated batches.

    Every length is checked against the blob. A last batch that is cut short raises
    :class:`TruncatedBatchError` — right for a Produce request — unless
    ``allow_truncated_tail`` is set, as for a Fetch response, which Kafka may end with a
    partial batch: iteration then simply stops before it.
    """
    position = 0
    end = len(records)
    while position < end:
        try:
            header = read_header(records, position)
        except TruncatedBatchError:
            if allow_truncated_tail:
                return
            raise
        yield position, header
        position += LOG_OVERHEAD + header.batch_length


def batch_crc(records: bytes | bytearray | memoryview, position: int, header: BatchHeader) -> int:
    """Compute the CRC-32C a batch should carry (attributes to end of batch)."""
    view = memoryview(records)
    return crc32c(
        view[position + ATTRIBUTES_OFFSET : position + LOG_OVERHEAD + header.batch_length]
    )


def verify_crc(records: bytes | bytearray | memoryview, position: int, header: BatchHeader) -> None:
    """Raise :class:`CrcMismatchError` unless the batch's stored CRC-32C matches its bytes."""
    actual = batch_crc(records, position, header)
    if actual != header.crc:
        raise CrcMismatchError(
            f"record batch CRC-32C is {actual:#010x}, header says {header.crc:#010x}",
            position=position,
        )


def patch_base_offset(buffer: bytearray | memoryview, position: int, base_offset: int) -> None:
    """Overwrite a batch's base offset in place; the CRC stays valid (it does not cover it)."""
    _TIMESTAMP.pack_into(buffer, position, base_offset)


def patch_partition_leader_epoch(buffer: bytearray | memoryview, position: int, epoch: int) -> None:
    """Overwrite a batch's partition leader epoch in place; the CRC stays valid."""
    _LENGTH.pack_into(buffer, position + 12, epoch)


def assign_offsets(
    buffer: bytearray | memoryview,
    position: int,
    header: BatchHeader,
    base_offset: int,
    partition_leader_epoch: int,
) -> BatchHeader:
    """Stamp the broker's base offset and leader epoch on a batch with one ``pack_into``.

    Returns the header as it now reads. The CRC is untouched and stays valid.
    """
    _OFFSET_LENGTH_EPOCH.pack_into(
        buffer, position, base_offset, header.batch_length, partition_leader_epoch
    )
    # Rebuilt from a tuple: NamedTuple._replace costs several times more on this hot path.
    return BatchHeader._make((base_offset, header[1], partition_leader_epoch) + header[3:])


def batch_attributes(
    compression: int,
    timestamp_type: TimestampType = TimestampType.CREATE_TIME,
    *,
    transactional: bool = False,
    control: bool = False,
) -> int:
    """The attributes field for a batch with these properties."""
    attributes = compression & _COMPRESSION_MASK
    if timestamp_type == TimestampType.LOG_APPEND_TIME:
        attributes |= _TIMESTAMP_TYPE_BIT
    if transactional:
        attributes |= _TRANSACTIONAL_BIT
    if control:
        attributes |= _CONTROL_BIT
    return attributes


def write_header(buffer: bytearray | memoryview, position: int, header: BatchHeader) -> BatchHeader:
    """Write ``header`` at ``position`` with a freshly computed CRC; returns it with that CRC.

    The records must already be in place: the CRC covers them.
    """
    _HEADER.pack_into(buffer, position, *header)
    return _rewrite_crc(buffer, position, header)


def _rewrite_crc(buffer: bytearray | memoryview, position: int, header: BatchHeader) -> BatchHeader:
    crc = batch_crc(buffer, position, header)
    _CRC.pack_into(buffer, position + CRC_OFFSET, crc)
    return header._replace(crc=crc)


def set_log_append_time(
    buffer: bytearray | memoryview, position: int, header: BatchHeader, timestamp: int
) -> BatchHeader:
    """Mark a batch LogAppendTime with ``timestamp`` as its max timestamp, in place.

    Both fields are covered by the CRC, so it is recomputed and rewritten. Returns the header
    as it now reads.
    """
    attributes = header.attributes | _TIMESTAMP_TYPE_BIT
    _ATTRIBUTES.pack_into(buffer, position + ATTRIBUTES_OFFSET, attributes)
    _TIMESTAMP.pack_into(buffer, position + MAX_TIMESTAMP_OFFSET, timestamp)
    return _rewrite_crc(
        buffer, position, header._replace(attributes=attributes, max_timestamp=timestamp)
    )


def check_client_batch(header: BatchHeader, position: int = 0) -> None:
    """Apply Kafka's header-only rules for a batch sent by a client (Produce).

    Raises :class:`InvalidRecordError` when the offset range and record count disagree, for
    a control batch (only the broker writes those) or an idempotent batch without a sequence,
    and :class:`CompressionError` for an unknown codec id. Reads no record.
    """
    if header.last_offset_delta < 0:
        raise InvalidRecordError(
            f"batch has an invalid offset range: last offset delta {header.last_offset_delta}",
            position=position,
        )
    if header.record_count <= 0:
        raise InvalidRecordError(
            f"invalid reported record count {header.record_count}", position=position
        )
    if header.last_offset_delta + 1 != header.record_count:
        raise InvalidRecordError(
            f"offset range of {header.last_offset_delta + 1} records disagrees with the "
            f"record count {header.record_count}",
            position=position,
        )
    if header.is_control:
        raise InvalidRecordError("clients may not write control batches", position=position)
    if header.has_producer_id and header.base_sequence < 0:
        raise InvalidRecordError(
            f"invalid sequence number {header.base_sequence} for producer {header.producer_id}",
            position=position,
        )
    if header.compression > Compression.ZSTD:
        raise CompressionError(
            f"unknown compression codec id {header.compression}", position=position
        )


def check_produce_records(
    records: bytes | bytearray | memoryview, *, single_batch: bool = True
) -> list[tuple[int, BatchHeader]]:
    """Walk, CRC-check and rule-check the batches of one Produce v3+ partition, header-only.

    Returns ``(position, header)`` per batch. This is the Produce hot path: no record is
    decoded. Raises a ``RecordsError`` subclass for the first bad batch; the partition is
    then answered with the error's ``kafka_error_code``. As Kafka does for Produce v3 and
    later, a legacy (magic 0/1) entry or — with ``single_batch`` — more than one batch is
    ``INVALID_RECORD``. (Produce v0-v2 carry legacy message sets: see ``wire.records.legacy``.)
    """
    magic = peek_magic(records)
    if magic is not None and magic != MAGIC_V2:
        raise InvalidRecordError(
            f"produce v3+ must use record batches (magic 2), not magic {magic}", position=0
        )
    batches = []
    for position, header in iter_batches(records):
        verify_crc(records, position, header)
        check_client_batch(header, position)
        batches.append((position, header))
    if not batches:
        raise InvalidRecordError("produce request carries no record batch")
    if single_batch and len(batches) > 1:
        raise InvalidRecordError(
            f"produce v3+ must carry exactly one record batch per partition, not {len(batches)}"
        )
    return batches


def peek_magic(records: bytes | bytearray | memoryview) -> int | None:
    """The magic byte of the first entry in a records blob, or ``None`` if it is too short.

    Batches (magic 2) and legacy messages (magic 0/1) keep the magic at the same offset, so
    this tells a reader which decoder to use.
    """
    if len(records) <= MAGIC_OFFSET:
        return None
    return records[MAGIC_OFFSET]
