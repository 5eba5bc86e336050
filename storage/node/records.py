"""On-disk format of journal segments: the segment header, records, and the scanner
that reads them back after a crash.

A segment file is a header followed by records, nothing else (little-endian):

    segment header (24 bytes)
        magic           8s   b"KOPJSEG\\0"
        format version  u32
        segment number  u64
        header crc      u32  CRC-32C of the 20 bytes before it

    record = header (44 bytes) + payload
        magic           u32  RECORD_MAGIC; lets the scanner find the next record after damage
        header crc      u32  CRC-32C of the header bytes after this field
        payload crc     u32  CRC-32C of the payload
        payload length  u32
        kind            u8   RecordKind
        flags           u8   reserved, 0
        reserved        u16  0
        ledger id       u64
        entry id        i64  -1 for records that are not entries
        last add conf.  i64  the writer's LAC piggybacked on an add, -1 otherwise

Segments are the journal *and* the entry log: an entry's bytes are written
once, and the index points straight into the segment that holds them.
"""

from __future__ import annotations

import logging
import struct
from dataclasses import dataclass, field
from enum import IntEnum
from typing import NamedTuple

from crc32c import crc32c

from storage.node.buffers import Payload, payload_crc32c, payload_length
from storage.node.errors import CorruptEntryError, StorageFormatError

log = logging.getLogger(__name__)

SEGMENT_MAGIC = b"KOPJSEG\x00"
SEGMENT_FORMAT_VERSION = 1
_SEGMENT_HEADER = struct.Struct("<8sIQI")
SEGMENT_HEADER_BYTES = _SEGMENT_HEADER.size

RECORD_MAGIC = 0x4A504F4B  # b"KOPJ" little-endian
_RECORD_MAGIC_BYTES = struct.pack("<I", RECORD_MAGIC)
_RECORD_HEADER = struct.Struct("<IIIIBBHQqq")
RECORD_HEADER_BYTES = _RECORD_HEADER.size
_CHECKED_PART = struct.Struct("<IBBHQqq")  # the header after magic, header crc, payload crc


class RecordKind(IntEnum):
    ADD = 1  # an entry
    FENCE = 2  # the ledger was fenced on this node
    DELETE = 3  # the ledger was deleted on this node


class RecordInfo(NamedTuple):
    """Where a record is and what it says — everything but the payload."""
    kind: int
    ledger_id: int
    entry_id: int
    last_add_confirmed: int
    offset: int  # of the record header within the segment file
    length: int  # header + payload


# --- segment header ------------------------------------------------------------------------------

def encode_segment_header(number: int) -> bytes:
    head = struct.pack("<8sIQ", SEGMENT_MAGIC, SEGMENT_FORMAT_VERSION, number)
    return head + struct.pack("<I", crc32c(head))


def check_segment_header(data: bytes, where: str) -> int:
    """The segment number in a segment header; StorageFormatError if it is not one we can read."""
    if len(data) < SEGMENT_HEADER_BYTES:
        raise StorageFormatError(f"{where}: {len(data)} bytes is too short for a segment header")
    magic, version, number, header_crc = _SEGMENT_HEADER.unpack_from(data)
    if magic != SEGMENT_MAGIC:
        raise StorageFormatError(f"{where}: not a kop journal segment (magic {magic!r})")
    if header_crc != crc32c(data[:SEGMENT_HEADER_BYTES - 4]):
        raise StorageFormatError(f"{where}: segment header fails its checksum")
    if version != SEGMENT_FORMAT_VERSION:
        raise StorageFormatError(f"{where}: segment format version {version}; this node reads "
                                 f"version {SEGMENT_FORMAT_VERSION} only")
    return number


# --- records -------------------------------------------------------------------------------------

def encode_record_header(kind: RecordKind, ledger_id: int, entry_id: int,
                         last_add_confirmed: int, payload: Payload = b"") -> bytes:
    """The 44-byte header to write in front of `payload` (bytes or parts: the journal
    writes the parts after the header as they are)."""
    checked = _CHECKED_PART.pack(payload_length(payload), kind, 0, 0, ledger_id, entry_id,
                                 last_add_confirmed)
    payload_crc = payload_crc32c(payload)
    header_crc = crc32c(checked, crc32c(struct.pack("<I", payload_crc)))
    return struct.pack("<III", RECORD_MAGIC, header_crc, payload_crc) + checked


def _parse_header(data: bytes | memoryview, offset: int) -> tuple[int, ...] | None:
    """The unpacked header at `offset` if its magic and checksum are right, else None."""
    if len(data) - offset < RECORD_HEADER_BYTES:
        return None
    fields = _RECORD_HEADER.unpack_from(data, offset)
    if fields[0] != RECORD_MAGIC:
        return None
    if fields[1] != crc32c(data[offset + 8:offset + RECORD_HEADER_BYTES]):
        return None
    return fields


def payload_of_entry(record: bytes, ledger_id: int, entry_id: int,
                     where: str) -> memoryview:
    """The payload of the entry record `record` (read from `where`), after checking its
    header and checksums. CorruptEntryError if anything is off: corrupt data is never served.
    A view, not a copy: a 1 MiB entry is not copied again on its way to the client."""
    def corrupt(reason: str) -> CorruptEntryError:
        return CorruptEntryError(f"entry {entry_id} of ledger {ledger_id} at {where} is corrupt "
                                 f"({reason}); refusing to serve it")

    header = _parse_header(record, 0)
    if header is None:
        raise corrupt("record header fails its magic or checksum")
    _, _, payload_crc, declared_length, kind, _, _, stored_ledger, stored_entry, _ = header
    if kind != RecordKind.ADD or (stored_ledger, stored_entry) != (ledger_id, entry_id):
        raise corrupt(f"header names record kind {kind}, ledger {stored_ledger}, "
                      f"entry {stored_entry}")
    if RECORD_HEADER_BYTES + declared_length != len(record):
        raise corrupt(f"payload length {declared_length} does not match the "
                      f"{len(record) - RECORD_HEADER_BYTES} bytes indexed")
    payload = memoryview(record)[RECORD_HEADER_BYTES:]
    if crc32c(payload) != payload_crc:
        raise corrupt("payload fails its CRC-32C")
    return payload


# --- scanning after a crash ----------------------------------------------------------------------

@dataclass
class ScanResult:
    records: list[RecordInfo] = field(default_factory=list)
    valid_end: int = 0  # where the intact part of the segment ends; anything after is a torn tail
    corrupt_entries: list[RecordInfo] = field(default_factory=list)  # kept; reads report them
    damaged_ranges: list[tuple[int, int]] = field(default_factory=list)  # unreadable headers


def _record_at(data: memoryview, offset: int) -> tuple[RecordInfo, bool] | None:
    """The record at `offset` and whether its payload checksum holds, or None if there is
    no whole record with a valid header there."""
    header = _parse_header(data, offset)
    if header is None:
        return None
    _, _, payload_crc, declared_length, kind, _, _, ledger_id, entry_id, lac = header
    end = offset + RECORD_HEADER_BYTES + declared_length
    if end > len(data):
        return None
    intact = crc32c(data[offset + RECORD_HEADER_BYTES:end]) == payload_crc
    return RecordInfo(kind, ledger_id, entry_id, lac, offset, end - offset), intact


def read_record_info(raw: bytes, offset: int = 0) -> RecordInfo | None:
    """What the record header at `offset` says, or None if the header is damaged."""
    record = _record_at(memoryview(raw), offset)
    return None if record is None else record[0]


def _next_intact_record(data: memoryview, raw: bytes, start: int) -> int | None:
    """Offset of the next wholly intact record at or after `start`, or None."""
    while True:
        found = raw.find(_RECORD_MAGIC_BYTES, start)
        if found < 0:
            return None
        record = _record_at(data, found)
        if record is not None and record[1]:
            return found
        start = found + 1


def scan_records(raw: bytes, start: int) -> ScanResult:
    """Read back every record in `raw` (a segment's bytes) from `start`.

    Damage is told apart from a torn tail by what follows it: if an intact record
    comes later, the damage is in the middle (disk corruption) — records with a bad
    payload are kept so reads report them as corrupt, unreadable headers are skipped.
    Anything after the last intact record is a torn tail (an unfinished write from
    before a crash, never acknowledged) and `valid_end` stops before it.
    """
    data = memoryview(raw)
    result = ScanResult(valid_end=start)
    found: list[tuple[RecordInfo, bool]] = []
    offset = start
    while offset < len(raw):
        record = _record_at(data, offset)
        if record is not None:
            found.append(record)
            offset += record[0].length
            continue
        resume = _next_intact_record(data, raw, offset + 1)
        if resume is None:
            break
        result.damaged_ranges.append((offset, resume))
        offset = resume
    last_intact = max((i for i, (_, intact) in enumerate(found) if intact), default=-1)
    for info, intact in found[:last_intact + 1]:
        result.records.append(info)
        if not intact:
            result.corrupt_entries.append(info)
    if last_intact >= 0:
        last = found[last_intact][0]
        result.valid_end = last.offset + last.length
    result.damaged_ranges = [r for r in result.damaged_ranges if r[1] <= result.valid_end]
    return result
