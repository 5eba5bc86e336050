"""Index files: a checkpoint of one journal segment's records, without their payloads.

Next to each sealed segment `N.log` sits `N.idx`, listing every record of the
segment (kind, ledger, entry, LAC, offset, length). On restart the node loads
these small files instead of re-reading the segments, and scans only what no
index file covers. An index file that is missing, damaged or of another version
is not an error: the segment is scanned instead and the index rewritten.

Layout (little-endian): magic b"KOPJIDX\\0", format version u32, segment number
u64, segment end offset u64, record count u32, then per record
kind u8 / ledger u64 / entry i64 / LAC i64 / offset u32 / length u32,
and finally a CRC-32C of everything before it.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Sequence
from pathlib import Path

from crc32c import crc32c

from storage.node.files import write_file_atomically
from storage.node.records import RecordInfo

log = logging.getLogger(__name__)

INDEX_MAGIC = b"KOPJIDX\x00"
INDEX_FORMAT_VERSION = 1
_HEADER = struct.Struct("<8sIQQI")
_RECORD = struct.Struct("<BQqqII")
_CRC = struct.Struct("<I")
MAX_SEGMENT_OFFSET = 2**32 - 1
"""Offsets are stored in 32 bits, so segments must stay below 4 GiB."""


def encode_segment_index(segment: int, end_offset: int,
                         records: Sequence[tuple[int, ...]]) -> bytes:
    """`records`: RecordInfo or plain tuples of the same fields."""
    pack = _RECORD.pack
    body = b"".join([pack(*record) for record in records])
    data = _HEADER.pack(INDEX_MAGIC, INDEX_FORMAT_VERSION, segment, end_offset, len(records)) + body
    return data + _CRC.pack(crc32c(data))


def write_segment_index(path: Path, segment: int, end_offset: int,
                        records: Sequence[tuple[int, ...]]) -> None:
    """Write (atomically, durably) the index file of a segment ending at `end_offset`."""
    write_file_atomically(path, encode_segment_index(segment, end_offset, records))


def decode_segment_index(data: bytes, segment: int, end_offset: int,
                         where: str) -> list[RecordInfo] | None:
    """The records listed in an index file, or None (with a log line saying why) when the
    file cannot be trusted for the segment `segment` that ends at `end_offset`."""
    if len(data) < _HEADER.size + _CRC.size:
        log.warning("%s: index file truncated (%d bytes); scanning the segment", where, len(data))
        return None
    (crc,) = _CRC.unpack_from(data, len(data) - _CRC.size)
    if crc != crc32c(memoryview(data)[:-_CRC.size]):
        log.warning("%s: index file fails its checksum; scanning the segment", where)
        return None
    magic, version, stored_segment, stored_end, count = _HEADER.unpack_from(data)
    if magic != INDEX_MAGIC or version != INDEX_FORMAT_VERSION:
        log.warning("%s: not an index file of version %d (magic %r, version %d); "
                    "scanning the segment", where, INDEX_FORMAT_VERSION, magic, version)
        return None
    if (stored_segment, stored_end) != (segment, end_offset):
        log.warning("%s: index describes segment %d up to offset %d, the segment is %d up to "
                    "%d; scanning the segment", where, stored_segment, stored_end, segment,
                    end_offset)
        return None
    body = memoryview(data)[_HEADER.size:len(data) - _CRC.size]
    if len(body) != count * _RECORD.size:
        log.warning("%s: index body holds %d bytes for %d records; scanning the segment",
                    where, len(body), count)
        return None
    make = RecordInfo._make
    return [make(fields) for fields in _RECORD.iter_unpack(body)]


def read_segment_index(path: Path, segment: int, end_offset: int) -> list[RecordInfo] | None:
    """The records of `path`, or None when it is missing or cannot be trusted."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    return decode_segment_index(data, segment, end_offset, str(path))
