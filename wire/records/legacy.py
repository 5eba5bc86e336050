"""Legacy message sets (magic 0 and 1): decode, convert to a v2 batch, and write for old fetchers.

Clients older than Kafka 0.11 — or new ones forced to an old API version — send magic 0/1
message sets with Produce v0-v2, and Fetch v0-v3 can only carry magic 0/1. Layout of one
entry (big-endian)::

    offset int64, message_size int32,
    crc uint32 (CRC-32 of everything after it), magic int8, attributes int8,
    timestamp int64 (magic 1 only), key bytes (int32 length, -1 null), value bytes

Compression wraps a whole inner message set into the value of one *wrapper* message whose
attributes name the codec. Inner offsets are absolute in magic 0; in magic 1 they are relative
and the wrapper carries the offset of the last inner message, so the absolute offset of an
inner message is ``wrapper_offset - last_inner_relative + inner_relative``. A magic 1 wrapper
marked LogAppendTime gives all its inner messages its timestamp.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable, Iterator
from typing import NamedTuple

from wire.records.batch import (
    LOG_OVERHEAD,
    MAGIC_OFFSET,
    NO_TIMESTAMP,
    Compression,
    TimestampType,
    iter_batches,
)
from wire.records.compression import compress, decompress
from wire.records.errors import (
    CorruptRecordError,
    CrcMismatchError,
    InvalidRecordError,
    TruncatedBatchError,
    UnsupportedCompressionError,
    UnsupportedMagicError,
)
from wire.records.record import DEFAULT_MAX_RECORDS_SIZE, BatchBuilder, Record, decode_batch

MAGIC_V0 = 0
MAGIC_V1 = 1

_ENTRY_HEADER = struct.Struct(">qiIbb")  # offset, size, crc, magic, attributes
_INT32 = struct.Struct(">i")
_INT64 = struct.Struct(">q")
_CRC_OFFSET = 12
_KEY_OFFSET = {MAGIC_V0: 18, MAGIC_V1: 26}  # from the start of the entry
#: Smallest message_size: crc, magic, attributes, (timestamp), key and value lengths.
_MIN_MESSAGE_SIZE = {MAGIC_V0: 14, MAGIC_V1: 22}
_COMPRESSION_MASK = 0x07
_TIMESTAMP_TYPE_BIT = 0x08


class LegacyMessage(NamedTuple):
    """One (inner, if it was compressed) message of a magic 0/1 message set."""

    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    magic: int
    timestamp_type: TimestampType
    compression: Compression
    """The codec of the wrapper the message came in, NONE if it was not compressed."""


class _Entry(NamedTuple):
    """One top-level entry of a message set, its CRC checked, its fields split out."""

    offset: int
    magic: int
    attributes: int
    timestamp: int
    key: bytes | None
    value: bytes | None


def _read_bytes_field(
    data: bytes | bytearray | memoryview, position: int, end: int, what: str, entry_position: int
) -> tuple[bytes | None, int]:
    if position + 4 > end:
        raise CorruptRecordError(f"message {what} length cut short", position=entry_position)
    (length,) = _INT32.unpack_from(data, position)
    position += 4
    if length == -1:
        return None, position
    if length < -1 or position + length > end:
        raise CorruptRecordError(
            f"message {what} length {length} overruns the message", position=entry_position
        )
    return bytes(data[position : position + length]), position + length


def _iter_entries(
    data: bytes | bytearray | memoryview, *, allow_truncated_tail: bool
) -> Iterator[_Entry]:
    """Yield the top-level entries of a message set, each CRC-checked."""
    position = 0
    end = len(data)
    while position < end:
        available = end - position
        if available < LOG_OVERHEAD + _MIN_MESSAGE_SIZE[MAGIC_V0]:
            if allow_truncated_tail:
                return
            raise TruncatedBatchError(
                "message cut short",
                position=position,
                needed=LOG_OVERHEAD + _MIN_MESSAGE_SIZE[MAGIC_V0],
                available=available,
            )
        offset, size, crc, magic, attributes = _ENTRY_HEADER.unpack_from(data, position)
        if magic not in (MAGIC_V0, MAGIC_V1):
            raise UnsupportedMagicError(magic, position=position, expected="0 or 1")
        if size < _MIN_MESSAGE_SIZE[magic]:
            raise CorruptRecordError(
                f"message size {size} is below the minimum {_MIN_MESSAGE_SIZE[magic]} of magic {magic}",
                position=position,
            )
        entry_end = position + LOG_OVERHEAD + size
        if entry_end > end:
            if allow_truncated_tail:
                return
            raise TruncatedBatchError(
                "message cut short",
                position=position,
                needed=LOG_OVERHEAD + size,
                available=available,
            )
        actual = zlib.crc32(memoryview(data)[position + MAGIC_OFFSET : entry_end])
        if actual != crc:
            raise CrcMismatchError(
                f"message CRC-32 is {actual:#010x}, message says {crc:#010x}", position=position
            )
        timestamp = NO_TIMESTAMP
        if magic == MAGIC_V1:
            (timestamp,) = _INT64.unpack_from(data, position + 18)
        cursor = position + _KEY_OFFSET[magic]
        key, cursor = _read_bytes_field(data, cursor, entry_end, "key", position)
        value, cursor = _read_bytes_field(data, cursor, entry_end, "value", position)
        if cursor != entry_end:
            raise CorruptRecordError(
                f"{entry_end - cursor} stray bytes after the message value", position=position
            )
        yield _Entry(offset, magic, attributes, timestamp, key, value)
        position = entry_end


def iter_legacy_messages(
    records: bytes | bytearray | memoryview,
    *,
    max_size: int = DEFAULT_MAX_RECORDS_SIZE,
    allow_truncated_tail: bool = False,
) -> Iterator[LegacyMessage]:
    """Yield every message of a magic 0/1 message set, unwrapping compressed wrappers.

    CRCs are checked (:class:`CrcMismatchError`), compressed wrappers are decompressed with
    at most ``max_size`` bytes of output each, and inner messages get absolute offsets. A
    message cut short at the end raises :class:`TruncatedBatchError` unless
    ``allow_truncated_tail`` (fetch responses) ends the iteration there instead.
    """
    for entry in _iter_entries(records, allow_truncated_tail=allow_truncated_tail):
        codec = entry.attributes & _COMPRESSION_MASK
        if entry.magic == MAGIC_V1 and entry.attributes & _TIMESTAMP_TYPE_BIT:
            timestamp_type = TimestampType.LOG_APPEND_TIME
        else:
            timestamp_type = TimestampType.CREATE_TIME
        if codec == Compression.NONE:
            yield LegacyMessage(
                entry.offset,
                entry.timestamp,
                entry.key,
                entry.value,
                entry.magic,
                timestamp_type,
                Compression.NONE,
            )
            continue
        yield from _unwrap(entry, codec, timestamp_type, max_size)


def _unwrap(
    wrapper: _Entry, codec: int, timestamp_type: TimestampType, max_size: int
) -> Iterator[LegacyMessage]:
    if codec > Compression.LZ4:
        raise UnsupportedCompressionError(
            f"compression codec id {codec} is not allowed in a magic {wrapper.magic} message"
        )
    if wrapper.value is None:
        raise InvalidRecordError("compressed wrapper message has a null value")
    inner_set = decompress(
        codec, wrapper.value, max_size=max_size, legacy_lz4_checksum=wrapper.magic == MAGIC_V0
    )
    inner = list(_iter_entries(inner_set, allow_truncated_tail=False))
    if not inner:
        raise InvalidRecordError("compressed wrapper message holds no message")
    for index, entry in enumerate(inner):
        if entry.magic != wrapper.magic:
            raise InvalidRecordError(
                f"inner message magic {entry.magic} differs from its wrapper's {wrapper.magic}",
                record_index=index,
            )
        if entry.attributes & _COMPRESSION_MASK:
            raise InvalidRecordError("compressed messages may not nest", record_index=index)
    # Magic 1: the wrapper carries the absolute offset of the last inner message.
    shift = wrapper.offset - inner[-1].offset if wrapper.magic == MAGIC_V1 else 0
    log_append = timestamp_type == TimestampType.LOG_APPEND_TIME
    for entry in inner:
        yield LegacyMessage(
            entry.offset + shift,
            wrapper.timestamp if log_append else entry.timestamp,
            entry.key,
            entry.value,
            entry.magic,
            timestamp_type,
            Compression(codec),
        )


def legacy_to_batch(
    records: bytes | bytearray | memoryview,
    *,
    compression: Compression | None = None,
    max_size: int = DEFAULT_MAX_RECORDS_SIZE,
) -> bytes:
    """Convert a Produce request's magic 0/1 message set to one v2 batch, as Kafka does.

    Offsets become deltas 0..n-1 from base offset 0 (the broker assigns real ones); magic 0
    messages get no timestamp (-1). The batch keeps the codec of the first message unless
    ``compression`` names another.
    """
    messages = list(iter_legacy_messages(records, max_size=max_size))
    if not messages:
        raise InvalidRecordError("message set holds no message")
    codec = messages[0].compression if compression is None else compression
    builder = BatchBuilder(compression=codec)
    for message in messages:
        builder.append(message.value, key=message.key, timestamp=message.timestamp)
    return builder.build()


# --- writing ---------------------------------------------------------------------------------


def _message(
    offset: int,
    magic: int,
    attributes: int,
    timestamp: int,
    key: bytes | None,
    value: bytes | None,
) -> bytes:
    body = bytearray((magic, attributes))
    if magic == MAGIC_V1:
        body += _INT64.pack(timestamp)
    for field in (key, value):
        if field is None:
            body += _INT32.pack(-1)
        else:
            body += _INT32.pack(len(field))
            body += field
    return struct.pack(">qiI", offset, len(body) + 4, zlib.crc32(body)) + body


def encode_message_set(
    records: Iterable[Record],
    *,
    magic: int,
    compression: Compression = Compression.NONE,
    timestamp_type: TimestampType = TimestampType.CREATE_TIME,
) -> bytes:
    """Write records as a magic 0/1 message set, compressed into one wrapper if asked.

    Record offsets are kept (absolute); headers cannot be carried and are dropped, as Kafka
    does when down-converting. Raises :class:`UnsupportedCompressionError` for zstd.
    """
    if magic not in (MAGIC_V0, MAGIC_V1):
        raise ValueError(f"legacy magic must be 0 or 1, not {magic}")
    if compression > Compression.LZ4:
        raise UnsupportedCompressionError(
            f"{Compression(compression).name} cannot be written in a magic {magic} message set"
        )
    attributes = (
        _TIMESTAMP_TYPE_BIT
        if (magic == MAGIC_V1 and timestamp_type == TimestampType.LOG_APPEND_TIME)
        else 0
    )
    records = list(records)
    if compression == Compression.NONE:
        return b"".join(
            _message(r.offset, magic, attributes, r.timestamp, r.key, r.value) for r in records
        )
    if not records:
        return b""
    first_offset = records[0].offset
    inner = b"".join(
        _message(
            r.offset - first_offset if magic == MAGIC_V1 else r.offset,
            magic,
            0,
            r.timestamp,
            r.key,
            r.value,
        )
        for r in records
    )
    payload = compress(compression, inner, legacy_lz4_checksum=magic == MAGIC_V0)
    wrapper_timestamp = max(r.timestamp for r in records)
    return _message(
        records[-1].offset, magic, attributes | compression, wrapper_timestamp, None, payload
    )


def batches_to_message_set(
    records: bytes | bytearray | memoryview,
    *,
    magic: int,
    max_size: int = DEFAULT_MAX_RECORDS_SIZE,
) -> bytes:
    """Down-convert v2 batches (as read from the log) to a magic 0/1 message set for Fetch v0-v3.

    Control batches are dropped (old clients do not know them), each batch keeps its codec,
    a partial batch at the end is dropped as a fetch response may end in one. Raises
    :class:`UnsupportedCompressionError` for zstd batches: Kafka answers such a fetch with
    ``UNSUPPORTED_COMPRESSION_TYPE``.
    """
    parts = []
    for position, header in iter_batches(records, allow_truncated_tail=True):
        if header.is_control:
            continue
        if header.compression > Compression.LZ4:
            raise UnsupportedCompressionError(
                f"codec id {header.compression} cannot be down-converted to magic {magic}",
                position=position,
            )
        batch_records = decode_batch(records, position, header, max_size=max_size)
        parts.append(
            encode_message_set(
                batch_records,
                magic=magic,
                compression=Compression(header.compression),
                timestamp_type=header.timestamp_type,
            )
        )
    return b"".join(parts)
