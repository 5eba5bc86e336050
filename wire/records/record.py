"""Records inside a v2 batch: decode, encode, control records and per-record validation.

This is for features and tools that need individual records (transaction markers, offset
commits stored as records, down-conversion for old clients, golden tests, admin tools) — not
for the produce and fetch paths, which keep batches opaque (see ``wire.records.batch``).

Record v2 layout (varints are zigzag, as in protobuf's ``sint32``/``sint64``)::

    length varint           bytes after this field
    attributes int8         unused, 0
    timestamp_delta varlong from the batch's base timestamp
    offset_delta varint     from the batch's base offset
    key_length varint, key  -1 for a null key
    value_length varint, value
    header_count varint, then per header:
        key_length varint, key (UTF-8, never null)
        value_length varint, value (-1 for null)

A control batch (transaction marker) holds one record whose key is ``version int16,
type int16`` (0 abort, 1 commit) and whose value is ``version int16, coordinator_epoch
int32``.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Iterable, Iterator, Sequence
from enum import IntEnum
from typing import NamedTuple

from wire.records.batch import (
    BATCH_HEADER_SIZE,
    LOG_OVERHEAD,
    MAGIC_V2,
    NO_PARTITION_LEADER_EPOCH,
    NO_PRODUCER_EPOCH,
    NO_PRODUCER_ID,
    NO_SEQUENCE,
    BatchHeader,
    Compression,
    TimestampType,
    batch_attributes,
    iter_batches,
    read_header,
    verify_crc,
    write_header,
)
from wire.records.compression import compress, decompress
from wire.records.errors import INVALID_RECORD, InvalidRecordError

#: Default cap on a batch's decompressed records, in bytes (Kafka's fetch.max.bytes default).
DEFAULT_MAX_RECORDS_SIZE = 50 * 1024 * 1024

INVALID_TIMESTAMP = 32

_CONTROL_KEY = struct.Struct(">hh")
_CONTROL_VALUE = struct.Struct(">hi")


class Header(NamedTuple):
    """A record header: a UTF-8 key and an optional byte value."""

    key: str
    value: bytes | None


class Record(NamedTuple):
    """One decoded record, with its absolute offset and timestamp."""

    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: tuple[Header, ...] = ()


class ControlRecordType(IntEnum):
    """The kind of a transaction marker."""

    ABORT = 0
    COMMIT = 1


class ControlRecord(NamedTuple):
    """The decoded key and value of a control batch's single record."""

    type: ControlRecordType
    coordinator_epoch: int


class RecordError(NamedTuple):
    """One record rejected by :func:`validate_records`: Kafka's ``batch_index`` and message."""

    index: int
    message: str
    error_code: int


# --- varints ---------------------------------------------------------------------------------


def _read_varint(
    data: bytes, position: int, end: int, max_bytes: int, index: int
) -> tuple[int, int]:
    """Read a zigzag varint of at most ``max_bytes`` bytes; returns (value, next position)."""
    result = 0
    shift = 0
    limit = position + max_bytes
    while True:
        if position >= end:
            raise InvalidRecordError("record ends inside a varint", record_index=index)
        if position >= limit:
            raise InvalidRecordError(f"varint longer than {max_bytes} bytes", record_index=index)
        byte = data[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return (result >> 1) ^ -(result & 1), position
        shift += 7


def write_varint(out: bytearray, value: int) -> None:
    """Append ``value`` as a zigzag varint (works for int32 varints and int64 varlongs)."""
    zigzag = (value << 1) ^ (value >> 63)
    while zigzag >= 0x80:
        out.append((zigzag & 0x7F) | 0x80)
        zigzag >>= 7
    out.append(zigzag)


# --- decoding --------------------------------------------------------------------------------


class _RecordReader:
    """Reads the records of one batch from its (decompressed) records section."""

    def __init__(self, data: bytes, header: BatchHeader) -> None:
        self.data = data
        self.header = header

    def read_all(self) -> list[Record]:
        header = self.header
        data = self.data
        end = len(data)
        position = 0
        log_append = header.timestamp_type == TimestampType.LOG_APPEND_TIME
        records = []
        for index in range(header.record_count):
            length, position = _read_varint(data, position, end, 5, index)
            record_end = position + length
            if length < 0 or record_end > end:
                raise InvalidRecordError(
                    f"record length {length} overruns the batch", record_index=index
                )
            record, position = self._read_record(position, record_end, index, log_append)
            if position != record_end:
                raise InvalidRecordError(
                    f"record declares {length} bytes but its fields end elsewhere",
                    record_index=index,
                )
            records.append(record)
        if position != end:
            raise InvalidRecordError(
                f"{end - position} bytes remain after the batch's {header.record_count} records"
            )
        return records

    def _read_record(
        self, position: int, end: int, index: int, log_append: bool
    ) -> tuple[Record, int]:
        data = self.data
        if position >= end:
            raise InvalidRecordError("record has no attributes byte", record_index=index)
        position += 1  # attributes: unused
        timestamp_delta, position = _read_varint(data, position, end, 10, index)
        offset_delta, position = _read_varint(data, position, end, 5, index)
        key, position = self._read_bytes(position, end, index, "key")
        value, position = self._read_bytes(position, end, index, "value")
        header_count, position = _read_varint(data, position, end, 5, index)
        if header_count < 0:
            raise InvalidRecordError(f"negative header count {header_count}", record_index=index)
        headers = []
        for _ in range(header_count):
            raw_key, position = self._read_bytes(position, end, index, "header key")
            if raw_key is None:
                raise InvalidRecordError("null header key", record_index=index)
            try:
                header_key = raw_key.decode("utf-8")
            except UnicodeDecodeError:
                raise InvalidRecordError("header key is not UTF-8", record_index=index) from None
            header_value, position = self._read_bytes(position, end, index, "header value")
            headers.append(Header(header_key, header_value))
        header = self.header
        timestamp = header.max_timestamp if log_append else header.base_timestamp + timestamp_delta
        record = Record(header.base_offset + offset_delta, timestamp, key, value, tuple(headers))
        return record, position

    def _read_bytes(
        self, position: int, end: int, index: int, what: str
    ) -> tuple[bytes | None, int]:
        length, position = _read_varint(self.data, position, end, 5, index)
        if length == -1:
            return None, position
        if length < -1 or position + length > end:
            raise InvalidRecordError(
                f"{what} length {length} overruns the record", record_index=index
            )
        return self.data[position : position + length], position + length


def read_records_section(
    buffer: bytes | bytearray | memoryview,
    position: int,
    header: BatchHeader,
    *,
    max_size: int = DEFAULT_MAX_RECORDS_SIZE,
) -> bytes:
    """The records section of a batch as plain bytes, decompressed if needed (bounded)."""
    section = memoryview(buffer)[position + BATCH_HEADER_SIZE : position + header.size]
    return decompress(header.compression, section, max_size=max_size)


def decode_batch(
    buffer: bytes | bytearray | memoryview,
    position: int = 0,
    header: BatchHeader | None = None,
    *,
    max_size: int = DEFAULT_MAX_RECORDS_SIZE,
    check_crc: bool = True,
) -> list[Record]:
    """Decode every record of the batch at ``position`` (its header is read if not given).

    Raises a ``RecordsError``: :class:`~wire.records.errors.CrcMismatchError` for a bad CRC
    (when ``check_crc``), :class:`InvalidRecordError` (with ``record_index``) for malformed
    records or a record count that disagrees with the bytes, and compression errors.
    """
    if header is None:
        header = read_header(buffer, position)
    if check_crc:
        verify_crc(buffer, position, header)
    if header.record_count < 0:
        raise InvalidRecordError(f"negative record count {header.record_count}", position=position)
    data = read_records_section(buffer, position, header, max_size=max_size)
    return _RecordReader(data, header).read_all()


def decode_records(
    records: bytes | bytearray | memoryview,
    *,
    max_size: int = DEFAULT_MAX_RECORDS_SIZE,
    allow_truncated_tail: bool = False,
    check_crc: bool = True,
) -> Iterator[tuple[BatchHeader, list[Record]]]:
    """Decode every batch of a records blob: yields ``(header, records)`` per batch."""
    for position, header in iter_batches(records, allow_truncated_tail=allow_truncated_tail):
        yield (
            header,
            decode_batch(records, position, header, max_size=max_size, check_crc=check_crc),
        )


def decode_control_record(record: Record) -> ControlRecord:
    """Read a transaction marker's type and coordinator epoch from a control batch's record."""
    key = record.key
    if key is None or len(key) < _CONTROL_KEY.size:
        raise InvalidRecordError("control record key is missing or too short")
    version, type_id = _CONTROL_KEY.unpack_from(key)
    if version < 0:
        raise InvalidRecordError(f"control record key version {version} is invalid")
    if type_id not in (ControlRecordType.ABORT, ControlRecordType.COMMIT):
        raise InvalidRecordError(f"unknown control record type {type_id}")
    value = record.value
    if value is None or len(value) < _CONTROL_VALUE.size:
        raise InvalidRecordError("control record value is missing or too short")
    _, coordinator_epoch = _CONTROL_VALUE.unpack_from(value)
    return ControlRecord(ControlRecordType(type_id), coordinator_epoch)


# --- validation (Produce) --------------------------------------------------------------------


def validate_records(
    buffer: bytes | bytearray | memoryview,
    position: int,
    header: BatchHeader,
    *,
    max_size: int = DEFAULT_MAX_RECORDS_SIZE,
    require_keys: bool = False,
    timestamp_range: tuple[int, int] | None = None,
) -> list[RecordError]:
    """Check each record of a client's batch; returns the records Kafka would reject.

    This is the per-record half of Produce validation (the header half is
    ``batch.check_client_batch``); it decodes every record, so it is for topics that need it
    (compacted topics require keys; a timestamp window needs CreateTime records checked),
    not for every produce. Structural damage raises (the whole batch is rejected, as in
    Kafka); rule breaks are returned with the record's index, as Kafka's
    ``ProduceResponse.record_errors``:

    - offset deltas must run 0, 1, ..., n-1 (``INVALID_RECORD``);
    - with ``require_keys``, every record needs a key (``INVALID_RECORD``);
    - with ``timestamp_range=(low, high)``, CreateTime timestamps must lie inside it
      (``INVALID_TIMESTAMP``).
    """
    records = decode_batch(buffer, position, header, max_size=max_size, check_crc=False)
    errors = []
    check_timestamps = (
        timestamp_range is not None and header.timestamp_type == TimestampType.CREATE_TIME
    )
    for index, record in enumerate(records):
        offset_delta = record.offset - header.base_offset
        if offset_delta != index:
            errors.append(
                RecordError(index, f"offset delta {offset_delta}, expected {index}", INVALID_RECORD)
            )
        if require_keys and record.key is None:
            errors.append(
                RecordError(
                    index, "compacted topic cannot accept a record without a key", INVALID_RECORD
                )
            )
        if check_timestamps:
            low, high = timestamp_range
            if not low <= record.timestamp <= high:
                errors.append(
                    RecordError(
                        index,
                        f"timestamp {record.timestamp} is outside [{low}, {high}]",
                        INVALID_TIMESTAMP,
                    )
                )
    return errors


# --- encoding --------------------------------------------------------------------------------


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _encode_record(
    out: bytearray,
    offset_delta: int,
    timestamp_delta: int,
    key: bytes | None,
    value: bytes | None,
    headers: Sequence[Header],
) -> None:
    body = bytearray(b"\x00")  # attributes
    write_varint(body, timestamp_delta)
    write_varint(body, offset_delta)
    for field in (key, value):
        if field is None:
            write_varint(body, -1)
        else:
            write_varint(body, len(field))
            body += field
    write_varint(body, len(headers))
    for header_key, header_value in headers:
        encoded_key = header_key.encode("utf-8")
        write_varint(body, len(encoded_key))
        body += encoded_key
        if header_value is None:
            write_varint(body, -1)
        else:
            write_varint(body, len(header_value))
            body += header_value
    write_varint(out, len(body))
    out += body


class BatchBuilder:
    """Builds one RecordBatch v2: append records, then :meth:`build` the bytes.

    Offsets are assigned in order from ``base_offset``; timestamps default to now. For an
    idempotent or transactional producer give ``producer_id``, ``producer_epoch`` and
    ``base_sequence``. ``control`` marks a control batch; use :func:`build_control_batch`
    for transaction markers rather than writing control records by hand.
    """

    def __init__(
        self,
        *,
        base_offset: int = 0,
        compression: Compression = Compression.NONE,
        producer_id: int = NO_PRODUCER_ID,
        producer_epoch: int = NO_PRODUCER_EPOCH,
        base_sequence: int = NO_SEQUENCE,
        transactional: bool = False,
        timestamp_type: TimestampType = TimestampType.CREATE_TIME,
        partition_leader_epoch: int = NO_PARTITION_LEADER_EPOCH,
        control: bool = False,
    ) -> None:
        self.base_offset = base_offset
        self.compression = Compression(compression)
        self.producer_id = producer_id
        self.producer_epoch = producer_epoch
        self.base_sequence = base_sequence
        self.transactional = transactional
        self.timestamp_type = TimestampType(timestamp_type)
        self.partition_leader_epoch = partition_leader_epoch
        self.control = control
        self._records: list[tuple[int, bytes | None, bytes | None, tuple[Header, ...]]] = []

    def __len__(self) -> int:
        return len(self._records)

    def append(
        self,
        value: bytes | None,
        *,
        key: bytes | None = None,
        headers: Iterable[Header | tuple[str, bytes | None]] = (),
        timestamp: int | None = None,
    ) -> None:
        """Add a record; ``timestamp`` is milliseconds since the epoch (default: now)."""
        self._records.append(
            (
                _now_ms() if timestamp is None else timestamp,
                None if key is None else bytes(key),
                None if value is None else bytes(value),
                tuple(Header(k, None if v is None else bytes(v)) for k, v in headers),
            )
        )

    def build(self) -> bytes:
        """The batch's bytes, CRC included. Raises ``ValueError`` when no record was added."""
        if not self._records:
            raise ValueError("a record batch needs at least one record")
        base_timestamp = self._records[0][0]
        max_timestamp = max(record[0] for record in self._records)
        section = bytearray()
        for offset_delta, (timestamp, key, value, headers) in enumerate(self._records):
            _encode_record(section, offset_delta, timestamp - base_timestamp, key, value, headers)
        batch = bytearray(BATCH_HEADER_SIZE)
        batch += compress(self.compression, section)
        header = BatchHeader(
            base_offset=self.base_offset,
            batch_length=len(batch) - LOG_OVERHEAD,
            partition_leader_epoch=self.partition_leader_epoch,
            magic=MAGIC_V2,
            crc=0,  # computed by write_header
            attributes=batch_attributes(
                self.compression,
                self.timestamp_type,
                transactional=self.transactional,
                control=self.control,
            ),
            last_offset_delta=len(self._records) - 1,
            base_timestamp=base_timestamp,
            max_timestamp=max_timestamp,
            producer_id=self.producer_id,
            producer_epoch=self.producer_epoch,
            base_sequence=self.base_sequence,
            record_count=len(self._records),
        )
        write_header(batch, 0, header)
        return bytes(batch)


def build_control_batch(
    control_type: ControlRecordType,
    *,
    producer_id: int,
    producer_epoch: int,
    coordinator_epoch: int,
    timestamp: int | None = None,
    base_offset: int = 0,
    partition_leader_epoch: int = NO_PARTITION_LEADER_EPOCH,
) -> bytes:
    """A transaction marker batch (commit or abort) with its single control record."""
    builder = BatchBuilder(
        base_offset=base_offset,
        producer_id=producer_id,
        producer_epoch=producer_epoch,
        transactional=True,
        partition_leader_epoch=partition_leader_epoch,
        control=True,
    )
    builder.append(
        _CONTROL_VALUE.pack(0, coordinator_epoch),
        key=_CONTROL_KEY.pack(0, int(control_type)),
        timestamp=timestamp,
    )
    return builder.build()
