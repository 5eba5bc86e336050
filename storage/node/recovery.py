"""Startup: rebuild the node's state from its journal directory.

Sealed segments are loaded from their index files; only segments without a
trustworthy index (normally just the one being written when the node stopped)
are scanned. The last segment's torn tail — records whose write never finished,
so were never acknowledged — is truncated. Damage in the middle of a segment is
logged and left in place: reads of those entries report CorruptEntryError.

This is blocking file work; the node runs it in a thread before it serves.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from storage.node.errors import StorageFormatError
from storage.node.journal import index_path, segment_path
from storage.node.records import SEGMENT_HEADER_BYTES, check_segment_header, scan_records
from storage.node.segment_index import read_segment_index, write_segment_index
from storage.node.state import NodeState

log = logging.getLogger(__name__)


@dataclass
class RecoveryStats:
    """What startup had to do; tests use it to prove index files spare the rescans."""
    segments_from_index: int = 0
    segments_scanned: int = 0
    bytes_scanned: int = 0
    torn_bytes_truncated: int = 0
    corrupt_entries: list[tuple[int, int, int]] = field(default_factory=list)  # (segment, ledger, entry)


@dataclass
class RecoveredJournal:
    state: NodeState
    next_segment: int
    stats: RecoveryStats


def _segment_numbers(directory: Path) -> list[int]:
    numbers = []
    for path in directory.iterdir():
        if path.suffix == ".log" and path.stem.isdigit():
            numbers.append(int(path.stem))
        elif path.suffix == ".tmp":
            path.unlink()  # an index file whose atomic write did not finish
    return sorted(numbers)


def _remove_orphan_indexes(directory: Path, segments: set[int]) -> None:
    for path in directory.glob("*.idx"):
        if not path.stem.isdigit() or int(path.stem) not in segments:
            log.info("removing %s: its segment is gone", path)
            path.unlink()


def _scan_segment(path: Path, number: int, is_last: bool, stats: RecoveryStats):
    """Scan one segment; truncate a torn tail if it is the last one. Returns (records, end)."""
    raw = path.read_bytes()
    stats.segments_scanned += 1
    stats.bytes_scanned += len(raw)
    scan = scan_records(raw, SEGMENT_HEADER_BYTES)
    for start, end in scan.damaged_ranges:
        log.error("%s: bytes %d-%d are unreadable (corrupt record headers); entries there are "
                  "lost on this node", path, start, end)
    for record in scan.corrupt_entries:
        log.error("%s: entry %d of ledger %d at offset %d fails its checksum; reads of it will "
                  "fail", path, record.entry_id, record.ledger_id, record.offset)
        stats.corrupt_entries.append((number, record.ledger_id, record.entry_id))
    end = len(raw)
    if scan.valid_end < len(raw):
        if is_last:
            log.warning("%s: truncating a torn tail of %d bytes at offset %d (a write that "
                        "never completed before a crash)", path, len(raw) - scan.valid_end,
                        scan.valid_end)
            with open(path, "r+b") as file:
                file.truncate(scan.valid_end)
                os.fsync(file.fileno())
            stats.torn_bytes_truncated += len(raw) - scan.valid_end
            end = scan.valid_end
        else:
            log.error("%s: the last %d bytes are unreadable; keeping them for inspection",
                      path, len(raw) - scan.valid_end)
    return scan.records, end


def recover_journal(directory: Path) -> RecoveredJournal:
    """Rebuild the state from every segment in `directory` (created if missing)."""
    directory.mkdir(parents=True, exist_ok=True)
    numbers = _segment_numbers(directory)
    _remove_orphan_indexes(directory, set(numbers))
    state = NodeState()
    stats = RecoveryStats()
    for position, number in enumerate(numbers):
        path = segment_path(directory, number)
        is_last = position == len(numbers) - 1
        size = path.stat().st_size
        with open(path, "rb") as file:
            header = file.read(SEGMENT_HEADER_BYTES)
        try:
            stored_number = check_segment_header(header, str(path))
        except StorageFormatError:
            if is_last and size <= SEGMENT_HEADER_BYTES:
                # Created, but the header's fsync never returned: nothing in it was acknowledged.
                log.warning("%s: removing a segment whose creation did not finish", path)
                path.unlink()
                numbers.pop()
                break
            raise
        if stored_number != number:
            raise StorageFormatError(f"{path}: header says segment {stored_number}")
        records = read_segment_index(index_path(directory, number), number, size)
        if records is None:
            records, end = _scan_segment(path, number, is_last, stats)
            write_segment_index(index_path(directory, number), number, end, records)
        else:
            stats.segments_from_index += 1
        state.segment(number).indexed = True
        for record in records:
            state.apply(number, record)
    next_segment = numbers[-1] + 1 if numbers else 1
    return RecoveredJournal(state, next_segment, stats)
